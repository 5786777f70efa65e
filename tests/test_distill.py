"""Distillation end to end on a tiny teacher: the teacher is untouched, the student learns, and it reloads."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from deepdistill.distill.cli import main as cli_main
from deepdistill.core.errors import ConfigError
from deepdistill.distill.config import DistillConfig
from deepdistill.student.policy import check_compatible
from deepdistill.distill.run import distill
from deepdistill.student import load_student
from deepdistill.student.policy import load_teacher
from deepdistill.teacher.config import TeacherConfig
from deepdistill.teacher.run import train_teacher


@pytest.fixture(scope="module")
def teacher_run(tiny_teacher):
    return tiny_teacher  # the session's tiny point_arena teacher (conftest.py); tests copy it before changing it


def tiny(teacher_run, out, **kw):
    base = dict(teacher=str(teacher_run), out=str(out), depth=0, width=32, steps=300, batch_size=64, num_envs=16,
                unroll_length=25, sgd_steps_per_unroll=25, replay_steps_per_env=200, eval_every=150,
                num_eval_episodes=32, progress=False, relational=0.1, repr=1.0, action_kl=0.1)
    return DistillConfig(**{**base, **kw})


def test_distill_keeps_the_teacher_and_trains_the_student(teacher_run, tmp_path):
    before = load_teacher(teacher_run)
    snapshot = jax.tree.map(np.array, before.params)
    cfg = tiny(teacher_run, tmp_path / "s", data="dagger", beta_schedule="constant", beta_start=0.3)
    result = distill(cfg)
    after = load_teacher(teacher_run)
    for a, b in zip(jax.tree.leaves(snapshot), jax.tree.leaves(after.params)):
        np.testing.assert_array_equal(a, b)
    metrics = [json.loads(l) for l in open(tmp_path / "s" / "metrics.jsonl")]
    assert len(metrics) == 2
    first, last = metrics[0], metrics[-1]
    assert last["train/loss"] < first["train/loss"]
    assert last["train/action_mse"] < first["train/action_mse"]
    # DAgger with constant beta 0.3: the teacher acted on about 30% of the collected steps
    assert last["teacher_acted_fraction"] == pytest.approx(0.3, abs=0.05)
    assert result["student"]["params"] < result["teacher"]["params"]
    info = json.load(open(tmp_path / "s" / "run.json"))
    assert info["kind"] == "student" and info["teacher"]["step"] == after.step
    assert info["teacher"]["critic_depth"] == 8


@pytest.mark.slow
def test_loaded_student_reproduces_the_saved_one(teacher_run, tmp_path):
    distill(tiny(teacher_run, tmp_path / "s", steps=150, data="teacher"))
    student = load_student(tmp_path / "s")
    check_compatible(load_teacher(teacher_run), student)
    state = jax.random.normal(jax.random.PRNGKey(0), (5, 2))
    goal = jax.random.normal(jax.random.PRNGKey(1), (5, 2))
    a1 = student.act(state, goal)
    a2 = load_student(tmp_path / "s").act(state, goal)
    np.testing.assert_array_equal(a1, a2)
    assert student.nets.actor_depth == 0 and student.nets.actor_width == 32


@pytest.mark.slow
def test_resume_finishes_the_run(teacher_run, tmp_path):
    distill(tiny(teacher_run, tmp_path / "s", steps=150))
    # a resumed run with the same recipe continues where it stopped (nothing to do when finished)
    r = distill(tiny(teacher_run, tmp_path / "s", steps=150, resume=True))
    assert r["student"]["params"] > 0
    steps = [json.loads(l)["sgd_steps"] for l in open(tmp_path / "s" / "metrics.jsonl")]
    assert steps == [150]


@pytest.mark.slow
def test_resume_of_an_unfinished_run_matches_training_in_memory(teacher_run, tmp_path, monkeypatch):
    """Interrupted after its first epoch (of two), its run.json and networks.json lost, resumed: the
    student equals two epochs trained in memory without checkpoints."""
    from deepdistill.distill.run import DistillStage

    cfg = tiny(teacher_run, tmp_path / "s", steps=300)
    epoch, calls = DistillStage.epoch, []

    def interrupted(self, ds):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as Ctrl-C during the second epoch
        return epoch(self, ds)

    with monkeypatch.context() as m:
        m.setattr(DistillStage, "epoch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            distill(cfg)
    for name in ("run.json", "networks.json"):
        (tmp_path / "s" / name).unlink()
    distill(tiny(teacher_run, tmp_path / "s", steps=300, resume=True))
    info = json.load(open(tmp_path / "s" / "run.json"))
    assert info["kind"] == "student" and info["teacher"]["step"] == load_teacher(teacher_run).step
    stage = DistillStage(tiny(teacher_run, tmp_path / "mem", steps=300), load_teacher(teacher_run))
    ds = stage.init()
    for _ in range(2):
        ds, _ = stage.epoch(ds)
    resumed = load_student(tmp_path / "s")
    assert resumed.step == int(ds.sgd_steps) == 300
    for a, b in zip(jax.tree.leaves(jax.device_get(ds.student)), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)
    steps = [json.loads(l)["sgd_steps"] for l in open(tmp_path / "s" / "metrics.jsonl")]
    assert steps == [150, 300]


def test_a_teacher_with_lost_files_is_rebuilt_by_resume(teacher_run, tmp_path):
    import shutil

    from deepdistill.core.errors import RunError

    run = tmp_path / "t"
    shutil.copytree(teacher_run, run)
    before = {n: (run / n).read_text() for n in ("networks.json", "env_spec.json")}
    for name in ("run.json", "networks.json", "env_spec.json"):
        (run / name).unlink()
    with pytest.raises(RunError, match="run.json is missing; `train-teacher --resume --out .*` rebuilds it"):
        load_teacher(run)
    train_teacher(TeacherConfig(out=str(run), resume=True, progress=False))
    assert {n: (run / n).read_text() for n in before} == before
    assert json.load(open(run / "run.json"))["kind"] == "teacher"
    assert load_teacher(run).step == load_teacher(teacher_run).step


def test_a_broken_newest_teacher_step_is_skipped_and_said(teacher_run, tmp_path, capsys):
    import shutil

    from deepdistill.distill.run import teacher_provenance

    run = tmp_path / "t"
    shutil.copytree(teacher_run, run)
    newest = load_teacher(run).step
    for f in (run / "checkpoints" / str(newest) / "params").rglob("*"):
        if f.is_file() and "/d/" in str(f):
            f.write_bytes(b"")
    capsys.readouterr()
    teacher = load_teacher(run)
    assert teacher.step < newest
    assert f"--teacher {run}: using step {teacher.step}; newer checkpoints are unreadable (step {newest}:" in capsys.readouterr().err
    assert teacher_provenance(teacher)["skipped_steps"][0].startswith(f"step {newest}: ")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--action-mse", "-1"], "--action-mse is a loss weight and must be >= 0"),
        (["--action-mse", "0", "--repr", "0", "--relational", "0"], "all loss weights are zero"),
        (["--data", "bogus"], "--data 'bogus' is unknown; choose one of: teacher, dagger"),
        (["--depth", "3"], "--depth=3 is not a multiple of 4"),
        (["--arch", "cnn"], "--arch 'cnn' is not a registered architecture; choose one of: gru, mlp, nnx, residual, or give your own"),
        (["--arch", "no_such_module:Nets"], "--arch 'no_such_module:Nets': module 'no_such_module' cannot be imported; install it or put its folder on PYTHONPATH"),
        (["--arch", "json:dumps"], "--arch 'json:dumps' is not a networks class"),
        (["--arch", "mlp", "--activation", "gelu"], "--activation 'gelu' is unknown"),
    ],
)
def test_bad_input_exits_2(teacher_run, tmp_path, args, needle, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["--teacher", str(teacher_run), "--out", str(tmp_path / "s"), *args])
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_a_teacher_path_that_is_not_a_teacher_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["--teacher", str(tmp_path), "--out", str(tmp_path / "s")])
    assert e.value.code == 2 and "not a deepdistill run" in capsys.readouterr().err


@pytest.mark.slow
def test_distill_cli_end_to_end(teacher_run, tmp_path):
    r = subprocess.run([sys.executable, "-m", "deepdistill.distill.cli", "--teacher", str(teacher_run),
                        "--out", str(tmp_path / "s"), "--depth", "0", "--width", "16", "--steps", "150", "--eval-every", "150", "--num-envs", "16",
                        "--batch-size", "64", "--num-eval-episodes", "16", "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(next(l for l in r.stdout.splitlines() if l.startswith("{")))
    assert 0 <= result["student"]["success_rate"] <= 1 and result["teacher"]["params"] > result["student"]["params"]


@pytest.mark.slow
def test_teacher_replay_buffer_as_extra_data(teacher_run, tmp_path):
    from deepdistill.distill.run import load_teacher_replay
    from deepdistill.distill.train import Distiller
    from deepdistill.student import make_student
    from deepdistill.envs import make_env

    teacher = load_teacher(teacher_run)
    replay = load_teacher_replay(teacher)
    assert int(replay.written) > 0
    cfg = tiny(teacher_run, tmp_path / "s", teacher_buffer_fraction=0.5)
    d = Distiller(cfg, make_env("point_arena", training=True), teacher.nets, make_student("residual", teacher.nets, 0, 16),
                  teacher_replay=replay)
    ds = d.prefill(d.init(jax.random.PRNGKey(0)), teacher.params)
    batch = d.sample_batch(ds, jax.random.PRNGKey(1))
    stored = np.asarray(replay.states[: int(replay.written)].reshape(-1, 2))
    half = cfg.batch_size // 2
    from_teacher = [np.any(np.all(stored == s, axis=1)) for s in np.asarray(batch["state"])]
    assert all(from_teacher[half:]) and not any(from_teacher[:half])


@pytest.mark.slow
def test_two_devices_match_one_device():
    """Distillation is data-parallel like the teacher: 2 forced CPU devices give 1 device's numbers."""
    code = textwrap.dedent(
        """
        import jax, numpy as np
        from deepdistill.distill.config import DistillConfig
        from deepdistill.distill.train import Distiller
        from deepdistill.student import make_student
        from deepdistill.envs import make_env
        from deepdistill.student.residual import CRLNetworks
        assert len(jax.devices()) == 2
        env = make_env("point_arena", training=True)
        s = env.spec
        teacher = CRLNetworks(s.state_size, s.goal_size, s.action_size, repr_dim=8, actor_width=32, actor_depth=4,
                              critic_width=32, critic_depth=4)
        tparams = teacher.init(jax.random.PRNGKey(3))
        cfg = DistillConfig(depth=0, width=16, steps=100, batch_size=64, num_envs=16, unroll_length=25,
                            sgd_steps_per_unroll=25, replay_steps_per_env=200, eval_every=50, data="dagger",
                            beta_schedule="constant", beta_start=0.5, action_kl=0.1)
        out = []
        for devices in (jax.devices()[:1], jax.devices()):
            d = Distiller(cfg, env, teacher, make_student("residual", teacher, 0, 16), devices=devices)
            ds = d.prefill(d.init(jax.random.PRNGKey(0)), tparams)
            ds, m = d.epoch(ds, tparams)
            ds, m = d.epoch(ds, tparams)
            out.append(jax.device_get((ds.student, ds.replay.states, ds.teacher_acted, m)))
        assert len(ds.replay.states.sharding.device_set) == 2, ds.replay.states.sharding
        for a, b in zip(jax.tree.leaves(out[0]), jax.tree.leaves(out[1])):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
        print("MATCH", float(out[0][2]))
        """
    )
    env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip(), "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0 and "MATCH" in r.stdout, r.stderr[-3000:]
    assert float(r.stdout.split()[-1]) > 0  # the teacher acted on some steps: the DAgger mix ran


@pytest.mark.slow
def test_plain_mlp_student_learns_and_reloads(teacher_run, tmp_path):
    result = distill(tiny(teacher_run, tmp_path / "m", arch="mlp", depth=1, width=32, data="teacher"))
    metrics = [json.loads(l) for l in open(tmp_path / "m" / "metrics.jsonl")]
    assert metrics[-1]["train/action_mse"] < metrics[0]["train/action_mse"]
    student = load_student(tmp_path / "m")
    assert student.nets.to_dict()["arch"] == "mlp" and student.nets.actor_depth == 1
    assert result["student"]["params"] == sum(student.num_params().values())
    info = json.load(open(tmp_path / "m" / "run.json"))
    assert info["teacher"]["arch"] == "residual" and info["teacher"]["actor_depth"] == 8


@pytest.mark.slow
def test_a_users_nnx_policy_is_distilled_resumed_and_reloaded(teacher_run, tmp_path, monkeypatch):
    from deepdistill.student import NNXNetworks

    (tmp_path / "my_nets.py").write_text(
        "from flax import nnx\n"
        "class Policy(nnx.Module):\n"
        "    def __init__(self, in_dim, out_dim, rngs, hidden=16):\n"
        "        self.l1 = nnx.Linear(in_dim, hidden, rngs=rngs)\n"
        "        self.l2 = nnx.Linear(hidden, out_dim, rngs=rngs)\n"
        "    def __call__(self, x):\n"
        "        return self.l2(nnx.swish(self.l1(x)))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    teacher = load_teacher(teacher_run)
    student = NNXNetworks.for_task(teacher.spec, "my_nets:Policy", policy_kwargs={"hidden": 24})
    with pytest.raises(ConfigError, match="no encoders: set --repr 0 and --relational 0"):
        distill(tiny(teacher_run, tmp_path / "n"), student=student)
    cfg = tiny(teacher_run, tmp_path / "n", repr=0.0, relational=0.0, action_kl=0.0, steps=150)
    from deepdistill.distill import distill as readme_distill  # the README's snippet: the package-level function

    readme_distill(cfg, student=student)
    distill(tiny(teacher_run, tmp_path / "n", repr=0.0, relational=0.0, action_kl=0.0, steps=300, resume=True))
    steps = [json.loads(l)["sgd_steps"] for l in open(tmp_path / "n" / "metrics.jsonl")]
    assert steps == [150, 300]
    loaded = load_student(tmp_path / "n")
    assert loaded.nets == student and loaded.num_params() == {"actor": (4 * 24 + 24) + (24 * 4 + 4)}
