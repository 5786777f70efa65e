"""Distillation end to end on a tiny teacher: the teacher is untouched, the student learns, and it reloads."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from deepdistill.distill.cli import main as cli_main
from deepdistill.distill.config import DistillConfig
from deepdistill.distill.run import check_compatible, distill
from deepdistill.student import load_student
from deepdistill.teacher.checkpoint import load_teacher
from deepdistill.teacher.config import TeacherConfig
from deepdistill.teacher.run import train_teacher


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "run"
    train_teacher(TeacherConfig(
        env="point_arena", depth=8, width=32, repr_dim=16, num_envs=32, unroll_length=25, batch_size=64,
        env_steps_per_sgd_step=16.0, replay_steps_per_env=400, min_replay_steps=50, eval_every=16_000,
        total_env_steps=32_000, num_eval_episodes=32, progress=False, out=str(out)))
    return out


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


def test_resume_finishes_the_run(teacher_run, tmp_path):
    distill(tiny(teacher_run, tmp_path / "s", steps=150))
    # a resumed run with the same recipe continues where it stopped (nothing to do when finished)
    r = distill(tiny(teacher_run, tmp_path / "s", steps=150, resume=True))
    assert r["student"]["params"] > 0
    steps = [json.loads(l)["sgd_steps"] for l in open(tmp_path / "s" / "metrics.jsonl")]
    assert steps == [150]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--action-mse", "-1"], "--action-mse is a loss weight and must be >= 0"),
        (["--action-mse", "0", "--repr", "0", "--relational", "0"], "all loss weights are zero"),
        (["--data", "bogus"], "--data 'bogus' is unknown; choose one of: teacher, dagger"),
        (["--depth", "3"], "--depth=3 is not a multiple of 4"),
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


def test_distill_cli_end_to_end(teacher_run, tmp_path):
    r = subprocess.run([sys.executable, "-m", "deepdistill.distill.cli", "--teacher", str(teacher_run),
                        "--out", str(tmp_path / "s"), "--depth", "0", "--width", "16", "--steps", "150", "--eval-every", "150", "--num-envs", "16",
                        "--batch-size", "64", "--num-eval-episodes", "16", "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(next(l for l in r.stdout.splitlines() if l.startswith("{")))
    assert 0 <= result["student"]["success_rate"] <= 1 and result["teacher"]["params"] > result["student"]["params"]


def test_teacher_replay_buffer_as_extra_data(teacher_run, tmp_path):
    from deepdistill.distill.run import load_teacher_replay
    from deepdistill.distill.train import Distiller
    from deepdistill.student.networks import make_student
    from deepdistill.teacher.envs import make_env

    teacher = load_teacher(teacher_run)
    replay = load_teacher_replay(teacher)
    assert int(replay.written) > 0
    cfg = tiny(teacher_run, tmp_path / "s", teacher_buffer_fraction=0.5)
    d = Distiller(cfg, make_env("point_arena", training=True), teacher.nets, make_student(teacher.nets, 0, 16),
                  teacher_replay=replay)
    ds = d.prefill(d.init(jax.random.PRNGKey(0)), teacher.params)
    batch = d.sample_batch(ds, jax.random.PRNGKey(1))
    stored = np.asarray(replay.states[: int(replay.written)].reshape(-1, 2))
    half = cfg.batch_size // 2
    from_teacher = [np.any(np.all(stored == s, axis=1)) for s in np.asarray(batch["state"])]
    assert all(from_teacher[half:]) and not any(from_teacher[:half])
