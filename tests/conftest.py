"""Session-wide fixtures: what several test files need is built once per test session.

* ``task_probe(name)``: one compiled probe per task (tests/task_probe.py), shared by the task,
  conformance and Brax checks.
* ``tiny_teacher``: a small trained ``point_arena`` teacher (seconds), shared by the tests that
  need a real teacher run (distillation, extension, evaluation).
"""

import os

# Tests run on the CPU with two virtual devices available for the data-parallel checks.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

TINY_TEACHER = dict(
    env="point_arena", depth=8, width=32, repr_dim=16, num_envs=32, unroll_length=25, batch_size=64,
    env_steps_per_sgd_step=16.0, replay_steps_per_env=400, min_replay_steps=50, eval_every=16_000,
    total_env_steps=32_000, num_eval_episodes=32, progress=False)


@pytest.fixture(scope="session")
def task_probe():
    """``name -> probe arrays`` (tests/task_probe.py), computed once per task per session."""
    from task_probe import run_probe

    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = run_probe(name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory):
    """A trained point_arena teacher (depth 8, width 32, 32,000 env steps). Read-only: copy it to change it."""
    from deepdistill.teacher.config import TeacherConfig
    from deepdistill.teacher.run import train_teacher

    out = tmp_path_factory.mktemp("tiny_teacher") / "run"
    train_teacher(TeacherConfig(**TINY_TEACHER, out=str(out)))
    return out
