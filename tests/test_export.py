"""export-onnx end to end on point_maze: parity with JAX through the runtime, dynamic batch,
metadata, lean graphs (unrolled and Loop), the ONNX checker and reference evaluator, atomic writes,
CLI errors, and the runtime in a process where JAX cannot be imported.

The runs are written with the checkpoint helpers and random parameters (a student of depth 4 and a
depth-64 teacher of width 8), once per module: training is tested elsewhere; here only the run
layout matters, which is the same for both kinds."""

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

from deepdistill.export import metadata
from deepdistill.export.cli import main as cli_main
from deepdistill.export.config import ExportConfig
from deepdistill.export.convert import model_defs, to_onnx_model
from deepdistill.export.parity import ParityError
from deepdistill.export.parity import session as parity_session
from deepdistill.export.runtime import OnnxModel, OnnxPolicy, PolicyFileError
from deepdistill.export.writer import export_run
from deepdistill.core.checkpoint import Checkpointer
from deepdistill.student.policy import load_policy_run
from deepdistill.core.rundir import write_json_atomic, write_run_info
from deepdistill.envs import make_env
from deepdistill.student.residual import CRLNetworks

ROOT = Path(__file__).resolve().parents[1]
STEP = 100
PARITY_SAMPLES = 64  # one value for every export here: the parity rollout compiles once


def random_params(nets: CRLNetworks, seed: int) -> dict:
    """Parameters of ``nets`` drawn with numpy (no XLA compile): kernels of variance 1/fan_in, and
    biases, LayerNorm scales and offsets away from their 0/1 initial values, so that every one of
    them shows in the outputs (a bias folded into the wrong Gemm would fail parity)."""
    rng = np.random.default_rng(seed)

    def leaf(path, s):
        name = path[-1].key
        if name == "kernel":
            v = rng.uniform(-1.0, 1.0, s.shape) * np.sqrt(3.0 / s.shape[-2])
        elif name == "scale":
            v = 1.0 + 0.2 * rng.standard_normal(s.shape)
        else:
            v = 0.2 * rng.standard_normal(s.shape)
        return v.astype(np.float32)

    return jax.tree_util.tree_map_with_path(leaf, jax.eval_shape(nets.init, jax.random.PRNGKey(0)))


def make_run(run_dir: Path, kind: str, depth: int, width: int, seed: int, **info) -> Path:
    """A run directory of ``kind`` with random parameters, in the layout train-teacher/distill write."""
    env = make_env("point_maze")
    s = env.spec
    nets = CRLNetworks(s.state_size, s.goal_size, s.action_size, repr_dim=16, actor_depth=depth, critic_depth=depth,
                       actor_width=width, critic_width=width)
    params = random_params(nets, seed)
    write_json_atomic(run_dir / "config.json", {"env": "point_maze", "seed": seed})
    write_json_atomic(run_dir / "env_spec.json", s.to_dict())
    write_json_atomic(run_dir / "networks.json", nets.to_dict())
    write_run_info(run_dir, kind, env="point_maze", **info)
    ckpt = Checkpointer(run_dir)
    ckpt.save(STEP, {"step": STEP}, params, {"step": STEP})
    ckpt.close()
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    teacher = make_run(root / "teacher", "teacher", depth=64, width=8, seed=1)
    student = make_run(root / "student", "student", depth=4, width=32, seed=2,
                       teacher={"run": str(teacher), "step": STEP, "depth": 64, "width": 8})
    return {"teacher": teacher, "student": student, "root": root}


@pytest.fixture(scope="module")
def exported(runs):
    out = runs["root"] / "student_onnx"
    summary = export_run(ExportConfig(student=str(runs["student"]), out=str(out), parity_samples=PARITY_SAMPLES))
    return out, summary


@pytest.fixture(scope="module")
def student(runs):
    return load_policy_run(runs["student"], "student")


def task_states(n: int, steps: int = 5, seed: int = 0):
    """States and goals of point_maze: resets of every split, then a few random steps."""
    env = make_env("point_maze")

    @jax.jit
    def roll(key, split_keys):
        out = []
        for split, k in zip(("train",) + env.spec.eval_splits, split_keys):
            state = jax.vmap(lambda k, s=split: env.reset_split(k, s))(jax.random.split(k, n))
            for t in range(steps):
                out.append(state.obs)
                a = jax.random.uniform(jax.random.fold_in(key, t), (n, 2), minval=-1, maxval=1)
                state = jax.vmap(env.step)(state, a)
        return jax.numpy.concatenate(out)

    obs = np.asarray(roll(jax.random.PRNGKey(seed), jax.random.split(jax.random.PRNGKey(seed + 1), 3)), np.float32)
    return obs[:, :2], obs[:, 2:]


@pytest.mark.slow
def test_round_trip_matches_jax_on_task_states(exported, student):
    out, _ = exported
    policy = OnnxPolicy(out)
    obs, goal = task_states(32, steps=3)
    want = np.asarray(student.act(obs, goal))
    got = policy.act(obs, goal)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.max(np.abs(got - want)) <= 1e-5
    one = np.stack([policy.act(obs[i], goal[i]) for i in range(32)])
    assert np.max(np.abs(one - want[:32])) <= 1e-5
    assert np.all(got >= -1) and np.all(got <= 1)


@pytest.mark.parametrize("batch", [1, 7, 1024])
def test_dynamic_batch(exported, student, batch):
    out, _ = exported
    rng = np.random.default_rng(batch)
    obs, goal, act = (rng.standard_normal((batch, 2)).astype(np.float32) for _ in range(3))
    p, n = student.params, student.nets
    np.testing.assert_allclose(OnnxPolicy(out).act(obs, goal), np.asarray(student.act(obs, goal)), atol=1e-5)
    np.testing.assert_allclose(OnnxModel(out, model="sa_encoder").run(observation=obs, action=act),
                               np.asarray(n.phi(p["sa_encoder"], obs, act)), atol=1e-5)
    np.testing.assert_allclose(OnnxModel(out, model="goal_encoder").run(goal=goal),
                               np.asarray(n.psi(p["goal_encoder"], goal)), atol=1e-5)


def test_metadata_is_present_and_correct(exported, runs, student):
    out, _ = exported
    model = onnx.load(out / "policy.onnx", load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    meta = metadata.decode(props)
    spec = student.spec
    assert meta["schema_version"] == metadata.SCHEMA_VERSION and meta["model"] == "policy"
    assert (meta["task"], meta["observation_size"], meta["goal_size"], meta["action_size"]) == ("point_maze", 2, 2, 2)
    assert meta["goal_indices"] == [0, 1] and (meta["action_low"], meta["action_high"]) == (-1.0, 1.0)
    assert meta["success_threshold"] == spec.success_threshold and meta["env_spec"]["episode_length"] == spec.episode_length
    assert [i["name"] for i in meta["inputs"]] == ["observation", "goal"] and meta["outputs"][0]["shape"] == ["B", 2]
    arch = meta["architecture"]
    assert arch["networks"] == json.loads((runs["student"] / "networks.json").read_text())
    assert (arch["network"], arch["arch"], arch["depth"], arch["width"], arch["blocks_as"]) == ("actor", "residual", 4, 32, "unrolled")
    prov = meta["provenance"]
    assert prov["run_kind"] == "student" and prov["step"] == STEP and Path(prov["run"]) == runs["student"].resolve()
    assert prov["teacher"] == {"run": str(runs["teacher"]), "step": STEP, "depth": 64, "width": 8}
    from deepdistill import __version__

    assert meta["deepdistill_version"] == __version__ == model.producer_version
    parity = meta["parity"]
    assert parity["passed"] and parity["max_err"] <= 1e-5 and parity["tolerance"] == 1e-5
    assert parity["random"]["samples"] == parity["task"]["samples"] == PARITY_SAMPLES
    for name in ("sa_encoder", "goal_encoder"):
        m = OnnxModel(out / f"{name}.onnx", model=name).metadata
        assert m["model"] == name and m["parity"]["passed"] and m["provenance"] == prov
    assert oct((out / "policy.onnx").stat().st_mode)[-3:] != "600"


def test_policy_graph_is_lean(exported):
    out, summary = exported
    model = onnx.load(out / "policy.onnx")
    ops = [n.op_type for n in model.graph.node]
    # input layer + 4 block layers + mean head: one Gemm each (bias fused), one LayerNormalization each
    assert sorted(set(ops)) == ["Add", "Concat", "Gemm", "LayerNormalization", "Mul", "Sigmoid", "Tanh"]
    assert ops.count("Gemm") == 6 and ops.count("LayerNormalization") == 5 and ops.count("Add") == 1
    assert len(ops) == summary["policy"]["nodes"] == 24
    assert all(a.f == 1.0 for n in model.graph.node if n.op_type == "Gemm" for a in n.attribute if a.name == "beta")
    assert [i.name for i in model.graph.input] == ["observation", "goal"]  # no parameter, RNG or key inputs
    for i in model.graph.input:
        assert [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] == ["B", 2]
        assert i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in model.graph.output] == ["action"]
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert (out / "policy.onnx").stat().st_size < 200_000  # ~37k float32 parameters
    assert not list(out.glob("*.tmp"))


@pytest.mark.parametrize("name", ["policy", "sa_encoder", "goal_encoder"])
def test_checker_and_reference_evaluator_agree(exported, name):
    out, _ = exported
    model = onnx.load(out / f"{name}.onnx")
    onnx.checker.check_model(model, full_check=True)
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal((5, i.type.tensor_type.shape.dim[1].dim_value)).astype(np.float32) for i in model.graph.input}
    ref = ReferenceEvaluator(model).run(None, feeds)[0]
    got = OnnxModel(out / f"{name}.onnx", model=name).run(**feeds)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_deep_teacher_exports_as_one_loop(runs, tmp_path):
    t0 = time.perf_counter()
    summary = export_run(ExportConfig(teacher=str(runs["teacher"]), out=str(tmp_path), parity_samples=PARITY_SAMPLES))
    wall = time.perf_counter() - t0
    teacher = load_policy_run(runs["teacher"], "teacher")
    for name, s in summary.items():
        model = onnx.load(tmp_path / f"{name}.onnx")
        assert s["blocks_as"] == "loop" and s["ops"]["Loop"] == 1
        loop = next(n for n in model.graph.node if n.op_type == "Loop")
        body = loop.attribute[0].g
        # the body: per-layer parameter slices, 4 x (Gemm, LayerNorm, swish), the skip; nothing else
        assert sorted({n.op_type for n in body.node}) == ["Add", "Gather", "Gemm", "Identity", "LayerNormalization", "Mul", "Sigmoid"]
        assert len(loop.input) == 3 and len(body.input) == 3  # the parameters are outer-scope references
        assert s["nodes"] < 50 and s["bytes"] < 150_000  # 16 blocks x 4 layers of 8x8
        assert s["convert_s"] < 15
        onnx.checker.check_model(model, full_check=True)
    obs, goal = task_states(32, steps=3)
    np.testing.assert_allclose(OnnxPolicy(tmp_path).act(obs, goal), np.asarray(teacher.act(obs, goal)), atol=1e-5)
    ref = ReferenceEvaluator(onnx.load(tmp_path / "policy.onnx")).run(None, {"observation": obs[:4], "goal": goal[:4]})[0]
    np.testing.assert_allclose(ref, OnnxPolicy(tmp_path).act(obs[:4], goal[:4]), atol=1e-5)
    assert OnnxPolicy(tmp_path).metadata["provenance"]["teacher"] is None
    assert wall < 90


def test_actions_are_mapped_into_the_task_range():
    spec = dataclasses.replace(make_env("point_maze").spec, action_low=-2.0, action_high=3.0)
    nets = CRLNetworks(2, 2, 2, repr_dim=8, actor_depth=4, actor_width=16, critic_depth=4, critic_width=16)
    params = random_params(nets, 3)
    (policy,) = model_defs(nets, params, spec, encoders=False)
    model = to_onnx_model(policy, opset=17)
    rng = np.random.default_rng(0)
    obs, goal = (5 * rng.standard_normal((64, 2)).astype(np.float32) for _ in range(2))
    got = parity_session(model.SerializeToString()).run(["action"], {"observation": obs, "goal": goal})[0]
    unit = np.asarray(jax.jit(nets.deterministic_action)(params["actor"], obs, goal))
    np.testing.assert_allclose(got, -2.0 + (unit + 1.0) * 2.5, atol=1e-5)
    assert got.min() >= -2.0 and got.max() <= 3.0 and got.min() < -1.0
    assert [n.op_type for n in model.graph.node][-3:] == ["Tanh", "Mul", "Add"]


def test_existing_files_are_kept_and_failed_parity_writes_nothing(runs, exported, tmp_path):
    out, _ = exported
    before = {p.name: p.read_bytes() for p in out.glob("*.onnx")}
    with pytest.raises(ValueError, match="already holds policy.onnx, sa_encoder.onnx, goal_encoder.onnx; pass --overwrite"):
        export_run(ExportConfig(student=str(runs["student"]), out=str(out)))
    with pytest.raises(ParityError, match="policy.onnx differs from the JAX model by .* > tolerance 1e-12 .*nothing was written"):
        export_run(ExportConfig(student=str(runs["student"]), out=str(out), overwrite=True, tolerance=1e-12, parity_samples=PARITY_SAMPLES))
    assert {p.name: p.read_bytes() for p in out.glob("*.onnx")} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(before)  # no temporary file left behind


# --- the CLI -------------------------------------------------------------------------------------

CLI = [sys.executable, "-m", "deepdistill.export.cli"]


def cli(*args):
    """The CLI in a fresh process, as a user runs it."""
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def cli_in_process(capsys, *args) -> tuple[int, str]:
    """``export-onnx`` in this process (no interpreter start-up): exit code and stderr."""
    capsys.readouterr()
    try:
        cli_main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_cli_help_and_a_bad_path_in_a_fresh_process(tmp_path):
    r = cli("--help")
    assert r.returncode == 0
    for flag in ("--student", "--teacher", "--out", "--overwrite", "--step", "--opset", "--tolerance", "--max-unrolled-depth"):
        assert flag in r.stdout
    r = cli("--student", str(tmp_path / "missing"))
    assert r.returncode == 2 and r.stderr.strip() == (
        f"export-onnx: error: --student {tmp_path / 'missing'}: no such directory; pass the --out of a `distill` run"
    )


def test_cli_bad_input_exits_2_with_one_line(runs, exported, tmp_path, capsys):
    out, _ = exported
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([], "pass exactly one of --student"),
        (["--student", str(runs["student"]), "--teacher", str(runs["teacher"])], "pass exactly one of"),
        (["--student", str(runs["student"]), "--opset", "13"], "--opset 13 is outside the supported range [17, "),
        (["--student", str(runs["student"]), "--opset", "99"], "--opset 99 is outside the supported range [17, "),
        (["--student", str(runs["student"]), "--tolerance", "0"], "--tolerance must be positive"),
        (["--teacher", str(tmp_path / "missing")], "no such directory"),
        (["--student", str(empty)], "not a deepdistill run (no run.json)"),
        (["--student", str(runs["teacher"])], "this is a teacher run, not a student run"),
        (["--teacher", str(runs["student"])], "this is a student run, not a teacher run"),
        (["--student", str(runs["student"]), "--out", str(out)], "already holds policy.onnx, sa_encoder.onnx, goal_encoder.onnx; pass --overwrite"),
        (["--student", str(runs["student"]), "--out", str(out / "policy.onnx")], "is a file, not a directory"),
        (["--student", str(runs["student"]), "--step", "7", "--out", str(tmp_path / "s")], "--step 7: --student"),
    ]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for args, needle in cases:
        code, err = cli_in_process(capsys, *args)
        assert code == 2, (args, err)
        assert needle in err and err.startswith("export-onnx: error: "), (args, err)
        assert len(err.strip().splitlines()) == 1, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_cli_parity_failure_keeps_its_traceback_and_writes_nothing(runs, tmp_path, capsys):
    """A parity failure is a conversion bug, not the user's: the CLI lets it raise (traceback, exit 1)."""
    with pytest.raises(ParityError, match="policy.onnx differs from the JAX model.*nothing was written"):
        cli_in_process(capsys, "--student", str(runs["student"]), "--out", str(tmp_path / "x"),
                       "--tolerance", "1e-12", "--parity-samples", str(PARITY_SAMPLES), "--no-encoders")
    assert not (tmp_path / "x").exists() or not list((tmp_path / "x").iterdir())


def test_a_second_export_into_a_folder_in_use_is_refused(runs, tmp_path, capsys):
    from deepdistill.core.rundir import exclusive

    with exclusive(tmp_path / "o", "--out"):
        code, err = cli_in_process(capsys, "--student", str(runs["student"]), "--out", str(tmp_path / "o"))
    assert code == 2 and f"--out {tmp_path / 'o'} is in use by process {os.getpid()}" in err, err


def test_garbled_weights_are_refused_by_the_runtime(exported, tmp_path):
    out, _ = exported
    model = onnx.load(out / "policy.onnx")
    meta = metadata.decode({p.key: p.value for p in model.metadata_props})
    assert meta["weights_sha256"] == metadata.graph_digest((out / "policy.onnx").read_bytes())
    data = bytearray((out / "policy.onnx").read_bytes())
    biggest = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    at = data.find(biggest.raw_data)
    assert at > 0 and len(biggest.raw_data) >= 256
    data[at + 64:at + 128] = bytes(range(64))  # 64 garbled bytes inside a weight matrix
    (tmp_path / "policy.onnx").write_bytes(bytes(data))
    with pytest.raises(PolicyFileError, match="do not match the digest in its metadata"):
        OnnxPolicy(tmp_path / "policy.onnx")


def test_a_broken_newest_step_is_skipped_and_recorded(runs, tmp_path, capsys):
    import shutil

    run = tmp_path / "student"
    shutil.copytree(runs["student"], run)
    nets = load_policy_run(run, "student").nets
    ckpt = Checkpointer(run)
    ckpt.save(2 * STEP, {"step": 2 * STEP}, random_params(nets, 9), {"step": 2 * STEP})
    ckpt.close()
    for f in (run / "checkpoints" / str(2 * STEP) / "params").rglob("*"):
        if f.is_file() and "ocdbt" in str(f) and "/d/" in str(f):
            f.write_bytes(b"")
    capsys.readouterr()
    export_run(ExportConfig(student=str(run), out=str(tmp_path / "o"), encoders=False, parity_samples=PARITY_SAMPLES))
    assert f"using step {STEP}; newer checkpoints are unreadable (step {2 * STEP}:" in capsys.readouterr().err
    prov = OnnxPolicy(tmp_path / "o").metadata["provenance"]
    assert prov["step"] == STEP and prov["skipped_steps"][0].startswith(f"step {2 * STEP}: ")


# --- the runtime without JAX ----------------------------------------------------------------------


def test_runtime_runs_where_jax_cannot_be_imported(exported, tmp_path):
    out, _ = exported
    trap = tmp_path / "trap" / "jax"
    trap.mkdir(parents=True)
    (trap / "__init__.py").write_text("raise ImportError('jax is not installed on this robot')\n")
    script = (
        "import json, sys\n"
        "try:\n    import jax\n    sys.exit('the jax trap did not work')\nexcept ImportError:\n    pass\n"
        "import deepdistill.export\n"
        "from deepdistill.export.runtime import OnnxPolicy\n"
        f"p = OnnxPolicy({str(out)!r})\n"
        "a = p.act([1.5, 1.5], [3.5, 1.5])\n"
        "print(json.dumps({'action': a.tolist(), 'task': p.task, 'jax_loaded': 'jax' in sys.modules and sys.modules['jax'] is not None}))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(trap.parent), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    want = OnnxPolicy(out).act(np.array([1.5, 1.5], np.float32), np.array([3.5, 1.5], np.float32))
    assert res["task"] == "point_maze" and not res["jax_loaded"]
    np.testing.assert_array_equal(np.array(res["action"], np.float32), want)


def test_robot_controller_example(exported):
    out, _ = exported
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "robot_controller.py"), "--policy", str(out), "--episodes", "2", "--rate-hz", "0"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert r.returncode == 0, r.stderr
    assert "success" in r.stdout and "latency" in r.stdout


@pytest.mark.parametrize("loop", [False, True])
def test_a_bf16_network_exports_with_float32_math(loop):
    """A teacher trained with bf16 products (and scan unroll 2) exports in float32: the ONNX model
    matches the float32 forward of the same parameters at the usual tolerance, and the bf16 forward
    of training within bf16 rounding."""
    spec = make_env("point_maze").spec
    nets = CRLNetworks(spec.state_size, spec.goal_size, spec.action_size, repr_dim=8, actor_depth=8, actor_width=16,
                       critic_depth=8, critic_width=16, matmul_dtype="bfloat16", block_unroll=2)
    params = random_params(nets, 4)
    (policy,) = model_defs(nets, params, spec, max_unrolled_depth=4 if loop else 32, encoders=False)
    assert policy.looped == loop
    model = to_onnx_model(policy, opset=17)
    rng = np.random.default_rng(1)
    obs, goal = (rng.standard_normal((64, n)).astype(np.float32) for n in (spec.state_size, spec.goal_size))
    got = parity_session(model.SerializeToString()).run(["action"], {"observation": obs, "goal": goal})[0]
    f32 = np.asarray(jax.jit(dataclasses.replace(nets, matmul_dtype="float32").deterministic_action)(params["actor"], obs, goal))
    bf16 = np.asarray(jax.jit(nets.deterministic_action)(params["actor"], obs, goal))
    np.testing.assert_allclose(got, f32, atol=1e-5)
    np.testing.assert_allclose(np.asarray(policy.reference(obs, goal)), f32, atol=1e-6)  # the parity reference is float32 too
    assert 0 < np.abs(bf16 - f32).max() < 5e-2  # training's bf16 forward: within bf16 rounding, and really bf16
