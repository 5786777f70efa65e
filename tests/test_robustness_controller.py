"""The controller contract is validated at load, and the native controller's edges (issue 22, items 1-2).

Every case starts from the shipped reacher student (``examples/pretrained/reacher``, a real export
with a native contract), edits its metadata as a hostile user or a buggy writer would, and expects one
line that names the field and says whose fault it is (the policy's metadata, or task.xml). Files are
re-signed after a deliberate edit (``resign``) so that the schema, not the digest, is what answers;
``test_an_edit_that_is_not_re_signed_is_refused_by_the_digest`` covers the digest itself. No JAX here.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from deepdistill.core.cli import run_cli
from deepdistill.export import metadata, schema
from deepdistill.export.mujoco_controller import ControllerError, MujocoController
from deepdistill.export.runtime import OnnxPolicy, PolicyFileError

PRETRAINED = Path(__file__).parent.parent / "examples" / "pretrained" / "reacher"
EXAMPLE = Path(__file__).parent.parent / "examples" / "mujoco_controller.py"


def read_meta(path: Path) -> tuple[onnx.ModelProto, dict]:
    model = onnx.load(path)
    props = {p.key: p.value for p in model.metadata_props}
    return model, {k[len(metadata.PREFIX):]: json.loads(v) for k, v in props.items() if k.startswith(metadata.PREFIX)}


def resign(model: onnx.ModelProto, meta: dict) -> onnx.ModelProto:
    """``model`` with ``meta`` and both digests recomputed, as the exporter writes them."""
    meta = {k: v for k, v in meta.items() if k != metadata.CONTENT_DIGEST}
    props = metadata.encode(meta)
    props[metadata.PREFIX + metadata.CONTENT_DIGEST] = json.dumps(metadata.content_digest(props, model.graph.SerializeToString()))
    del model.metadata_props[:]
    helper.set_model_props(model, props)
    return model


def exported(tmp_path: Path, edit=None, sign: bool = True) -> Path:
    """A copy of the pretrained policy and its task.xml in ``tmp_path/p``, its metadata changed by ``edit(meta)``."""
    out = tmp_path / "p"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(PRETRAINED / "task.xml", out / "task.xml")
    model, meta = read_meta(PRETRAINED / "policy.onnx")
    meta = copy.deepcopy(meta)
    if edit is not None:
        edit(meta)
    if sign:
        model = resign(model, meta)
    else:
        del model.metadata_props[:]
        helper.set_model_props(model, metadata.encode(meta))
    onnx.save(model, out / "policy.onnx")
    return out / "policy.onnx"


def refused(path: Path, match: str, error=PolicyFileError, **kw) -> str:
    with pytest.raises(error, match=match) as e:
        MujocoController(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def delete(*keys):
    def edit(meta):
        d = meta
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]
    return edit


def put(value, *keys):
    def edit(meta):
        d = meta
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return edit


# --- item 1: the whole contract, validated once at load ------------------------------------------------


@pytest.mark.parametrize("edit,needle", [
    (delete("controller", "observation_recipe"), "metadata lacks controller.observation_recipe"),
    (delete("controller", "observation_recipe", 0, "start"), "metadata lacks controller.observation_recipe\\[0\\].start"),
    (delete("controller", "task_xml_sha256"), "metadata lacks controller.task_xml_sha256"),
    (delete("controller", "episode"), "metadata lacks controller.episode"),
    (put("qpos and qvel", "controller"), "metadata field controller is 'qpos and qvel', expected a record"),
    (put("five", "controller", "n_frames"), "metadata field controller.n_frames is 'five', expected an integer >= 1"),
    (put(float("inf"), "controller", "episode", "goals", "random", "r_max"),
     "metadata field controller.episode.goals.random.r_max is inf, expected a finite number >= 0"),
    (put(0, "controller", "n_frames"), "controller.n_frames is 0, expected an integer >= 1"),
    (put("spiral", "controller", "episode", "goals", "random", "kind"),
     "controller.episode.goals.random.kind is 'spiral', expected one of 'ring', 'cells', 'box'"),
    (put("../../etc/passwd", "controller", "task_xml"), "controller.task_xml is '../../etc/passwd', not of the expected form"),
    (put([[-1.0, 1.0]], "controller", "ctrl_range"), "controller.ctrl_range has 1 entries, expected 2"),
    (put(0.5, "controller", "control_dt"), "controller.control_dt is 0.5, not timestep 0.01 x n_frames 2"),
    (put([9, 9, 9], "controller", "episode", "qpos0"), "controller.episode.qpos0 has 3 entries, expected 4"),
    (put([0, 7], "controller", "episode", "qpos_noise", "indices"), "controller.episode.qpos_noise.indices index 7 is outside"),
    (put(None, "controller", "episode", "goals", "random", "z"), "controller.episode.goals.random draws goals of 2 entries"),
    (put(0.3, "controller", "episode", "goals", "random", "r_min"), "controller.episode.goals.random.r_min 0.3 exceeds r_max 0.2"),
    (put([0, 0], "controller", "action_to_ctrl", 0, "ctrl"), "controller.action_to_ctrl writes ctrl entries \\[0, 0, 0\\]|"
                                                                "controller.action_to_ctrl writes ctrl entries \\[0, 0\\]"),
    (delete("env_spec", "episode_length"), "metadata lacks env_spec.episode_length"),
])
def test_a_broken_contract_is_one_line_naming_the_field_and_blaming_the_metadata(tmp_path, edit, needle):
    msg = refused(exported(tmp_path, edit), needle)
    assert "the fault is in this file's metadata" in msg and "task.xml" not in msg.split(": ", 1)[1].split("metadata")[0]
    with pytest.raises(PolicyFileError, match=needle):  # the runtime alone refuses it too: the contract is checked at load
        OnnxPolicy(tmp_path / "p" / "policy.onnx")


def test_the_shipped_export_passes_and_every_recipe_kind_has_a_schema(tmp_path):
    ctl = MujocoController(exported(tmp_path))  # re-signed: content_sha256 present and correct
    assert metadata.CONTENT_DIGEST in ctl.policy.metadata
    plain = MujocoController(PRETRAINED / "policy.onnx")  # written before content_sha256: still loads
    assert metadata.CONTENT_DIGEST not in plain.policy.metadata and plain.task == "reacher"
    for what, (declared, known) in schema.known_kinds().items():
        assert declared == known, what


def test_an_edit_that_is_not_re_signed_is_refused_by_the_digest(tmp_path):
    """A valid-looking edit (a wider goal ring, a slower control rate, other names) is caught by content_sha256."""
    path = exported(tmp_path)
    model, meta = read_meta(path)
    c = copy.deepcopy(meta["controller"])
    c["episode"]["goals"]["random"]["r_max"] = 0.3
    for key, value in (("controller", c), ("controller", {**meta["controller"], "n_frames": 4, "control_dt": 0.04}),
                       ("observation_names", meta["observation_names"][::-1])):
        edited = copy.deepcopy(model)
        for p in edited.metadata_props:
            if p.key == metadata.PREFIX + key:
                p.value = json.dumps(value, sort_keys=True)
        onnx.save(edited, path)
        with pytest.raises(PolicyFileError, match="its metadata no longer matches the digest written at export "
                                                  "\\(content_sha256\\)"):
            OnnxPolicy(path)


def test_metadata_that_does_not_fit_its_own_task_xml_blames_the_metadata(tmp_path):
    """The recipe names a body the exported task.xml lacks: task.xml is intact (its sha256 matches), so
    the policy's metadata is at fault; the same recipe against an edited task.xml blames that file."""
    path = exported(tmp_path, put("hand", "controller", "observation_recipe", 2, "body"))
    msg = refused(path, "the policy's metadata does not fit its own task.xml \\(observation_recipe: the model has no body "
                        "'hand'\\): the fault is in the policy file's metadata", error=ControllerError)
    assert msg.startswith(str(path))
    xml = tmp_path / "edited.xml"
    xml.write_text((tmp_path / "p" / "task.xml").read_text().replace('name="body1"', 'name="forearm"'))
    good = exported(tmp_path / "good")
    refused(good, "edited.xml: observation_recipe: the model has no body 'body1'; use the task.xml exported with this "
                  "policy", error=ControllerError, xml=xml)


# --- item 2: the controller's edges ------------------------------------------------------------------------


def example_main():
    spec = importlib.util.spec_from_file_location("mujoco_controller_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return lambda args: run_cli("mujoco_controller", module.Args, module.main, args)


def cli(args, capsys) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        example_main()(args)
    return e.value.code, capsys.readouterr().err


@pytest.mark.parametrize("episodes", ["0", "-3"])
def test_the_example_refuses_no_episodes(capsys, episodes):
    code, err = cli([str(PRETRAINED / "policy.onnx"), "--episodes", episodes], capsys)
    assert code == 2 and f"--episodes must be at least 1 (got {episodes})" in err and len(err.strip().splitlines()) == 1, err


def test_the_example_checks_its_json_path_before_the_rollout(tmp_path, capsys, monkeypatch):
    rollouts = []
    monkeypatch.setattr(MujocoController, "rollout", lambda self, *a, **k: rollouts.append(1))
    code, err = cli([str(PRETRAINED / "policy.onnx"), "--json", str(tmp_path)], capsys)
    assert code == 2 and f"--json {tmp_path} is a directory, not a file" in err and len(err.strip().splitlines()) == 1, err
    (tmp_path / "file").write_text("x")
    code, err = cli([str(PRETRAINED / "policy.onnx"), "--json", str(tmp_path / "file" / "r.json")], capsys)
    assert code == 2 and "is a file, not a directory" in err, err
    assert not rollouts  # refused before any episode ran
    monkeypatch.undo()
    example_main()([str(PRETRAINED / "policy.onnx"), "--episodes", "1", "--json", str(tmp_path / "new" / "r.json")])
    assert json.loads((tmp_path / "new" / "r.json").read_text())["episodes"] == 1


def test_step_refuses_a_non_finite_action_and_start_a_state_of_the_wrong_length():
    ctl = MujocoController(PRETRAINED / "policy.onnx")
    qpos, qvel, ctrl, goal = ctl.sample_starts(1, seed=0)[0]
    d, obs = ctl.start(qpos, qvel, ctrl)
    before = d.ctrl.copy()
    with pytest.raises(ControllerError, match="action\\[1\\] is nan: the controller writes only finite values"):
        ctl.step(d, np.array([0.1, np.nan], np.float32))
    with pytest.raises(ControllerError, match="action\\[0\\] is inf"):
        ctl.step(d, np.array([np.inf, 0.0]))
    with pytest.raises(ControllerError, match="action has shape \\(3,\\); this model needs \\(2,\\)"):
        ctl.step(d, np.zeros(3))
    np.testing.assert_array_equal(d.ctrl, before)  # nothing was written into MuJoCo
    with pytest.raises(ControllerError, match="qpos has shape \\(3,\\); this model needs \\(4,\\)"):
        ctl.start(qpos[:3], qvel, ctrl)
    with pytest.raises(ControllerError, match="qvel has shape \\(5,\\); this model needs \\(4,\\)"):
        ctl.start(qpos, np.zeros(5), ctrl)
    with pytest.raises(ControllerError, match="ctrl\\[0\\] is nan"):
        ctl.start(qpos, qvel, np.array([np.nan, 0.0]))
    for episodes in (0, -3):
        with pytest.raises(ControllerError, match=f"episodes={episodes}: run at least one episode"):
            ctl.run(episodes=episodes)
    obs2 = ctl.step(d, ctl.policy.act(obs, goal.astype(np.float32)))
    assert obs2.shape == obs.shape and np.isfinite(obs2).all()
