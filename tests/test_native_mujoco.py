"""The controller contract on every MJX task: the recipe rebuilds the env's observation from MuJoCo
state, native MuJoCo tracks MJX under the same policy (sim-to-sim), the native controller runs where
JAX cannot be imported, and bad inputs get one line naming the fix.

The policies are tiny random ONNX graphs written with ``onnx.helper`` (``action = tanh(W [obs, goal])``)
carrying the metadata the exporter writes (``export.writer.run_metadata``'s ``controller`` record and
names), so no training or jax2onnx conversion runs here. The per-task checks read the session's task
probe (tests/task_probe.py: one compiled program per task, shared with the task tests).
"""

import functools
import hashlib
import json
import os
import subprocess
import sys

import jax
import mujoco
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deepdistill.evaluate.native import SIM2SIM_STEPS, native_controller, observation_gap, sim2sim
from deepdistill.export import metadata
from deepdistill.export.contract import TASK_XML, controller_metadata
from deepdistill.export.mujoco_controller import ControllerError, MujocoController
from deepdistill.envs import make_env
from deepdistill.envs.brax_tasks import BACKEND

MJX_TASKS = sorted(n for n, b in BACKEND.items() if b == "mjx")
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
SIM2SIM_TOL = 1e-3


def write_policy(env, out, seed=0, task=None):
    """A random ``tanh(W [obs, goal])`` policy of ``env`` with schema-2 metadata, and task.xml beside it."""
    spec = env.spec
    S, G, A = spec.state_size, spec.goal_size, spec.action_size
    controller, names, xml = controller_metadata(env)
    # low gain: the sim-to-sim check measures the physics, not how much a random net amplifies the float32
    # rounding of MJX (with unit gain on the humanoid's inputs, which reach 100s, one step of rounding
    # in an observation already moved an action by 1e-3)
    W = (0.1 * np.random.default_rng(seed).standard_normal((S + G, A)) / np.sqrt(S + G)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Concat", ["observation", "goal"], ["x"], axis=1), helper.make_node("MatMul", ["x", "W"], ["y"]),
         helper.make_node("Tanh", ["y"], ["action"])], "random_policy",
        [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["B", S]),
         helper.make_tensor_value_info("goal", TensorProto.FLOAT, ["B", G])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["B", A])], [numpy_helper.from_array(W, "W")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {
        "schema_version": 2, "model": "policy", "task": task or spec.name, "env_spec": spec.to_dict(),
        "observation_size": S, "goal_size": G, "action_size": A, "goal_indices": list(spec.goal_indices),
        "action_low": spec.action_low, "action_high": spec.action_high, "success_threshold": spec.success_threshold,
        "inputs": [{"name": "observation", "shape": ["B", S]}, {"name": "goal", "shape": ["B", G]}],
        "outputs": [{"name": "action", "shape": ["B", A]}], "architecture": {}, "provenance": {},
        "deepdistill_version": "test", "parity": {}, **names, "controller": controller,
    }
    helper.set_model_props(model, metadata.encode(meta))
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, out / "policy.onnx")
    if xml is not None:
        (out / TASK_XML).write_bytes(xml)
    return out / "policy.onnx"


@functools.lru_cache(maxsize=None)
def env_of(name):
    return make_env(name, episode_length=20)


@pytest.mark.parametrize("name", MJX_TASKS)
def test_recipe_rebuilds_the_observation_and_native_mujoco_tracks_mjx(name, task_probe, tmp_path):
    """On the session's probe of the task (no compile of its own): the recipe rebuilds the env's
    observation from MuJoCo state set to the MJX state, at every step; native MuJoCo started where MJX
    started and given the same actions (open loop) tracks MJX's observations; and task.xml carries the
    solver settings and walls MJX steps with."""
    p = task_probe(name)
    env = p["env"]
    ctl = native_controller(env, MujocoController(write_policy(env, tmp_path)).policy)
    S = env.spec.state_size
    observe = env.recipe.compile(ctl.model)
    random = np.flatnonzero(p["roles"] == "random")
    q, qd, ctrl = (p["mjx"][k] for k in ("q", "qd", "ctrl"))
    worst = 0.0
    for t in range(SIM2SIM_STEPS):
        for i in random:
            d = mujoco.MjData(ctl.model)
            d.qpos[:], d.qvel[:], d.ctrl[:] = q[t, i], qd[t, i], ctrl[t, i]
            mujoco.mj_forward(ctl.model, d)
            ref = p["obs"][t, i, :S]
            worst = max(worst, float(np.max(np.abs(observe.read(d) - ref) / (1.0 + np.abs(ref)))))
    assert worst < 1e-5, f"{name}: recipe differs from the env's observation by {worst:.2g}"
    ps0 = p["s0"].pipeline_state
    native, mjx = [], []
    for i in random:
        d, obs = ctl.start(np.asarray(ps0.q[i], np.float64), np.asarray(ps0.qd[i], np.float64), np.asarray(ps0.ctrl[i], np.float64))
        native.append([obs] + [ctl.step(d, p["actions"][t, i]) for t in range(SIM2SIM_STEPS)])
        mjx.append(np.concatenate([p["s0"].obs[i : i + 1, :S], p["obs"][:SIM2SIM_STEPS, i, :S]]))
    gap = observation_gap(ctl, np.stack(mjx), np.stack(native))
    assert gap["sim2sim_obs_err"] <= SIM2SIM_TOL, f"{name}: {gap}"
    # the XML native MuJoCo loads is the physics MJX steps: same solver settings, walls included
    mj = ctl.model
    assert (mj.opt.timestep, mj.opt.iterations, mj.opt.ls_iterations, mj.opt.solver, mj.opt.disableflags) == (
        env.mj_model.opt.timestep, env.mj_model.opt.iterations, env.mj_model.opt.ls_iterations, env.mj_model.opt.solver,
        env.mj_model.opt.disableflags)
    assert mj.ngeom == env.physics.sys.ngeom and mj.nbody == env.physics.sys.nbody
    if "maze" in name:
        assert sum(mujoco.mj_id2name(mj, mujoco.mjtObj.mjOBJ_GEOM, g).startswith("wall_") for g in range(mj.ngeom)) > 4


@pytest.mark.slow
def test_closed_loop_sim2sim_is_what_evaluate_reports(tmp_path):
    """``evaluate``'s own sim-to-sim measure (each side driven by the policy from its own observations)
    on the cheapest MJX task."""
    env = env_of("reacher")
    ctl = native_controller(env, MujocoController(write_policy(env, tmp_path)).policy)
    states = []
    res = sim2sim(env, ctl, jax.random.PRNGKey(3), episodes=3, steps=10,
                  jit=functools.partial(jax.jit, compiler_options=FAST), states=states)
    assert len(states) == 11 and res["sim2sim_steps"] == 10 and res["sim2sim_episodes"] == 3
    assert 0.0 < res["sim2sim_obs_err"] <= SIM2SIM_TOL, res
    assert res["sim2sim_worst_entry"].split(" (")[0] in {e["kind"] for e in env.recipe.entries}


# --- the exporter writes the contract --------------------------------------------------------------------


def test_export_writes_task_xml_and_the_controller_metadata(tmp_path):
    sys.path.insert(0, os.path.dirname(__file__))
    from test_export import random_params

    from deepdistill.export.config import ExportConfig
    from deepdistill.export.writer import export_run
    from deepdistill.core.checkpoint import Checkpointer
    from deepdistill.core.rundir import write_json_atomic, write_run_info
    from deepdistill.student.residual import CRLNetworks

    env = env_of("reacher")
    s = env.spec
    nets = CRLNetworks(s.state_size, s.goal_size, s.action_size, repr_dim=8, actor_depth=0, critic_depth=0,
                       actor_width=16, critic_width=16)
    run = tmp_path / "student"
    write_json_atomic(run / "config.json", {"env": "reacher", "seed": 0})
    write_json_atomic(run / "env_spec.json", s.to_dict())
    write_json_atomic(run / "networks.json", nets.to_dict())
    write_run_info(run, "student", env="reacher")
    ckpt = Checkpointer(run)
    ckpt.save(1, {"step": 1}, random_params(nets, 0), {"step": 1})
    ckpt.close()
    summary = export_run(ExportConfig(student=str(run), out=str(tmp_path / "onnx"), encoders=False, parity_samples=8,
                                      parity_env_steps=1))
    xml = (tmp_path / "onnx" / TASK_XML).read_bytes()
    ctl = MujocoController(tmp_path / "onnx")
    meta = ctl.policy.metadata
    c = meta["controller"]
    assert meta["schema_version"] == metadata.SCHEMA_VERSION and c["native"] and summary[TASK_XML]["sha256"] == c["task_xml_sha256"]
    assert c["task_xml_sha256"] == hashlib.sha256(xml).hexdigest()
    assert c["actuator_names"] == ["joint0", "joint1"] and c["ctrl_range"] == [[-1.0, 1.0], [-1.0, 1.0]]
    assert (c["timestep"], c["n_frames"]) == (0.01, 2) and c["control_dt"] == pytest.approx(0.02)
    assert meta["observation_names"] == ["cos:joint0", "cos:joint1", "sin:joint0", "sin:joint1", "fingertip_x",
                                         "fingertip_y", "fingertip_z", "fingertip_vel_x", "fingertip_vel_y", "fingertip_vel_z"]
    assert meta["goal_names"] == ["fingertip_x", "fingertip_y", "fingertip_z"]
    assert b'iterations="1"' in xml and b'solver="Newton"' in xml and b'eulerdamp="disable"' in xml
    # goals drawn from the recorded distribution lie where the env puts them, markers on the goal
    starts = ctl.sample_starts(64, seed=1)
    goals = np.stack([g for *_, g in starts])
    assert np.all(np.linalg.norm(goals[:, :2], axis=1) <= 0.2) and np.allclose(goals[:, 2], 0.01)
    assert all(np.allclose(q[2:4], g[:2]) for q, _, _, g in starts)
    r = ctl.run(episodes=2, seed=0)
    assert r["episodes"] == 2 and 0.0 <= r["success_rate"] <= 1.0 and 0.0 <= r["time_at_goal"] <= 20.0


def test_tasks_without_physics_say_so(tmp_path):
    pusher = controller_metadata(env_of("pusher"))
    assert pusher[0] == {"native": False, "reason": "pusher runs on brax's spring pipeline, which native MuJoCo does not "
                         "reproduce: no observation recipe, no task.xml"} and pusher[2] is None
    with pytest.raises(ControllerError, match="task 'pusher' has no native MuJoCo recipe"):
        MujocoController(write_policy(env_of("pusher"), tmp_path))


# --- the native controller: no JAX, one-line errors ----------------------------------------------------------


def test_native_controller_runs_where_jax_cannot_be_imported(tmp_path):
    policy = write_policy(env_of("reacher"), tmp_path / "reacher")
    trap = tmp_path / "trap" / "jax"
    trap.mkdir(parents=True)
    (trap / "__init__.py").write_text("raise ImportError('jax is not installed on this robot')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(trap.parent), os.environ.get("PYTHONPATH", "")])}
    example = os.path.join(os.path.dirname(__file__), "..", "examples", "mujoco_controller.py")
    out = tmp_path / "native.json"
    r = subprocess.run([sys.executable, example, str(policy), "--episodes", "3", "--seed", "5", "--json", str(out)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["task"] == "reacher" and res["episodes"] == 3 and res["episode_length"] == 20
    assert 0.0 <= res["success_rate"] <= 1.0 and 0.0 <= res["time_at_goal"] <= 20.0 and res["final_distance"] > 0.0
    assert "reacher: success" in r.stdout
    # a bad input: one line naming the fix, exit status 1
    (tmp_path / "reacher" / TASK_XML).write_text((tmp_path / "reacher" / TASK_XML).read_text() + "<!-- edited -->\n")
    r = subprocess.run([sys.executable, example, str(policy)], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "differs from the task.xml exported with" in r.stderr and "use that file" in r.stderr


def test_bad_inputs_get_one_line_naming_the_fix(tmp_path):
    reacher = env_of("reacher")
    policy = write_policy(reacher, tmp_path / "ok")
    xml = (tmp_path / "ok" / TASK_XML).read_text()
    MujocoController(policy)  # the pair as exported loads

    def refused(match, **kw):
        with pytest.raises(ControllerError, match=match) as e:
            MujocoController(policy, **kw)
        assert "\n" not in str(e.value)

    edited = tmp_path / "edited.xml"
    edited.write_text(xml.replace('gear="200.0"', 'gear="150.0"'))
    refused("sha256 .* differs from the task.xml exported with .*; use that file", xml=edited)
    renamed = tmp_path / "renamed.xml"
    renamed.write_text(xml.replace('joint="joint1" name="joint1"', 'joint="joint1" name="elbow"'))
    refused("renamed.xml: no actuator 'joint1'; the policy drives \\['joint0', 'joint1'\\] in that order; use the task.xml "
            "exported with this policy",
            xml=renamed)
    ant_xml = tmp_path / "ant.xml"
    ant_xml.write_bytes(controller_metadata(env_of("ant"))[2])
    refused("is the model of 'ant', the policy .* drives 'reacher': use the task.xml exported with this policy", xml=ant_xml)
    refused("no such file; export-onnx writes task.xml beside policy.onnx", xml=tmp_path / "missing.xml")
    # a schema-1 file (no recipe) still loads as a policy, but cannot drive MuJoCo
    model = onnx.load(policy)
    meta = {p.key: p.value for p in model.metadata_props}
    meta["deepdistill.schema_version"] = "1"
    for k in metadata.REQUIRED_V2:
        meta.pop("deepdistill." + k)
    del model.metadata_props[:]
    helper.set_model_props(model, meta)
    (tmp_path / "v1").mkdir()
    onnx.save(model, tmp_path / "v1" / "policy.onnx")
    with pytest.raises(ControllerError, match="no native MuJoCo recipe \\(metadata schema 1\\); re-export the run with `export-onnx`"):
        MujocoController(tmp_path / "v1" / "policy.onnx")
