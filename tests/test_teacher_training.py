"""The teacher trainer: compiled once, learns, checkpoints, resumes, runs data-parallel."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from deepdistill.student.policy import load_teacher
from deepdistill.teacher.config import TeacherConfig
from deepdistill.envs import make_env
from deepdistill.teacher.run import train_teacher
from deepdistill.teacher.train import Trainer

TINY = dict(
    env="point_arena", depth=4, width=32, repr_dim=16, num_envs=32, unroll_length=25, batch_size=64,
    env_steps_per_sgd_step=16.0, replay_steps_per_env=400, min_replay_steps=50, eval_every=8_000,
    num_eval_episodes=64, progress=False, lr_schedule="constant",
)


def tiny(tmp_path, **kw):
    return TeacherConfig(**{**TINY, "out": str(tmp_path / "run"), **kw})


def read_metrics(run):
    return [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]


@pytest.mark.slow
def test_epoch_is_traced_once(tmp_path):
    cfg = tiny(tmp_path)
    trainer = Trainer(cfg, make_env(cfg.env, training=True))
    ts = trainer.prefill(trainer.init(jax.random.PRNGKey(0)))
    for _ in range(3):
        ts, _ = trainer.epoch(ts)
    assert trainer.trace_count == 1
    assert ts.env_steps == (trainer.sched.prefill_iters + 3 * trainer.sched.iters_per_epoch) * 25 * 32


@pytest.mark.slow
def test_short_run_on_open_arena_beats_the_untrained_policy(tmp_path):
    cfg = tiny(tmp_path, total_env_steps=120_000, width=64, eval_every=40_000)
    last = train_teacher(cfg)
    m = read_metrics(cfg.out)
    assert m[0]["sgd_steps"] == 0
    assert last["success_rate"] >= m[0]["success_rate"] + 0.3, [r["success_rate"] for r in m]
    assert last["final_distance"] < m[0]["final_distance"]


@pytest.mark.slow
def test_resume_continues_the_same_curve_bit_exactly(tmp_path):
    straight = tiny(tmp_path, out=str(tmp_path / "straight"), total_env_steps=24_000)
    train_teacher(straight)
    part = tiny(tmp_path, out=str(tmp_path / "part"), total_env_steps=16_000)
    train_teacher(part)
    assert [r["env_steps"] for r in read_metrics(part.out)][-1] < 24_000
    train_teacher(tiny(tmp_path, out=part.out, total_env_steps=24_000, resume=True))
    a, b = load_teacher(straight.out), load_teacher(part.out)
    assert a.step == b.step
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(x, y)
    ma, mb = read_metrics(straight.out), read_metrics(part.out)
    assert [r["env_steps"] for r in ma] == [r["env_steps"] for r in mb]
    assert [r["success_rate"] for r in ma] == [r["success_rate"] for r in mb]


@pytest.mark.slow
def test_kill_9_mid_training_then_resume_matches_an_uninterrupted_run(tmp_path):
    """kill -9 while training (the lock dies with the process), resume: the final parameters and
    every evaluation equal those of the same config and seed trained without interruption."""
    out = tmp_path / "killed"
    recipe = dict(env="point_arena", depth=4, width=32, num_envs=32, unroll_length=25, batch_size=64, eval_every=8000,
                  replay_steps_per_env=400, min_replay_steps=50, num_eval_episodes=32, lr_schedule="constant")
    args = [f"--{k.replace('_', '-')}={v}" for k, v in recipe.items()]
    cmd = [sys.executable, "-m", "deepdistill.teacher.cli", "--out", str(out), "--no-progress", *args]
    proc = subprocess.Popen([*cmd, "--total-env-steps=400000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    ckpts = []
    while time.time() < deadline:
        ckpts = [int(p.name) for p in (out / "checkpoints").glob("*") if p.name.isdigit()] if (out / "checkpoints").exists() else []
        if len(ckpts) >= 2:
            break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(ckpts) >= 2, "no checkpoint appeared"
    total = max(ckpts) + 16_000  # at least two more epochs after the resume
    resumed = subprocess.run([*cmd, f"--total-env-steps={total}", "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = TeacherConfig(**recipe, out=str(tmp_path / "straight"), total_env_steps=total, progress=False)
    train_teacher(straight)
    a, b = load_teacher(straight.out), load_teacher(out)
    assert a.step == b.step >= total
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(x, y)
    ma, mb = read_metrics(straight.out), read_metrics(out)
    assert [r["env_steps"] for r in mb] == [r["env_steps"] for r in ma]  # no duplicated or lost evaluation
    for key in ("success_rate", "final_distance", "train/critic_loss"):
        assert [r.get(key) for r in mb] == [r.get(key) for r in ma], key


@pytest.mark.slow
def test_two_devices_match_one_device():
    code = textwrap.dedent(
        """
        import os, jax, numpy as np
        from deepdistill.teacher.config import TeacherConfig
        from deepdistill.envs import make_env
        from deepdistill.teacher.train import Trainer
        assert len(jax.devices()) == 2
        cfg = TeacherConfig(env="point_arena", depth=4, width=32, repr_dim=16, num_envs=32, unroll_length=25,
                            batch_size=64, env_steps_per_sgd_step=16.0, replay_steps_per_env=400,
                            min_replay_steps=50, eval_every=8000)
        out = []
        for devices in (jax.devices()[:1], jax.devices()):
            tr = Trainer(cfg, make_env(cfg.env, training=True), devices)
            ts = tr.prefill(tr.init(jax.random.PRNGKey(0)))
            ts, m = tr.epoch(ts)
            ts, m = tr.epoch(ts)
            out.append(jax.device_get((ts.actor, ts.critic, ts.replay.states, m)))
        sharded = tr.epoch(ts)[0].replay.states.sharding
        assert len(sharded.device_set) == 2, sharded
        for a, b in zip(jax.tree.leaves(out[0]), jax.tree.leaves(out[1])):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
        print("MATCH")
        """
    )
    env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip(), "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "MATCH" in r.stdout, r.stderr[-3000:]


@pytest.mark.slow
def test_an_mlp_network_trains_directly_and_its_run_loads(tmp_path):
    """``train-teacher --arch mlp``: the registry's network trained with contrastive RL (the pipeline's
    direct baseline); the run records the architecture and loads like any other."""
    from deepdistill.student.interface import Interface, Size, build_student
    from deepdistill.student.mlp import MLPNetworks

    cfg = tiny(tmp_path, arch="mlp", depth=1, width=32, total_env_steps=16_000)
    last = train_teacher(cfg)
    run = load_teacher(cfg.out)
    assert isinstance(run.nets, MLPNetworks) and run.nets.has_encoders
    assert json.load(open(os.path.join(cfg.out, "networks.json")))["arch"] == "mlp"
    spec = run.spec
    built = build_student("mlp", Interface(spec.state_size, spec.goal_size, spec.action_size, 16), Size(1, 32))
    assert run.nets == built and run.num_params() == built.num_params()
    assert run.step == last["env_steps"] >= 16_000 and last["sgd_steps"] > 0
    assert np.isfinite(last["train/critic_loss"]) and np.isfinite(last["train/actor_loss"])
    s = np.zeros((3, spec.state_size), np.float32)
    g = np.ones((3, spec.goal_size), np.float32)
    a = np.asarray(run.act(s, g))
    assert a.shape == (3, spec.action_size) and np.all(np.abs(a) <= 1.0)
