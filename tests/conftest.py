"""Session-wide set-up: what several test files need is built once per test session.

* ``task_probe(name)``: one compiled probe per task (tests/task_probe.py), shared by the task,
  conformance and Brax checks.
* ``tiny_teacher``: a small trained ``point_arena`` teacher (seconds), shared by the tests that
  need a real teacher run (distillation, extension, evaluation).
* A JAX compilation cache shared by every process of the session (pytest-xdist workers and the CLI
  subprocesses tests start): the many tiny runs of the same recipe compile each program once.
* Under ``pytest -n 2 --dist loadgroup`` (the README's command), the tests of one task run on one
  worker (its probe is compiled once), and the multi-process tests on one worker.
"""

import os

# Tests run on the CPU with two virtual devices available for the data-parallel checks.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import shutil  # noqa: E402
import tempfile  # noqa: E402

import pytest  # noqa: E402

_CACHE_ENV = "DEEPDISTILL_TEST_JAX_CACHE"


def pytest_configure(config):
    """Before any test module imports JAX (and before xdist starts its workers, which inherit the
    environment): one compilation cache directory for the whole session."""
    if _CACHE_ENV not in os.environ:
        os.environ[_CACHE_ENV] = tempfile.mkdtemp(prefix="deepdistill-jax-cache-")
        config._deepdistill_cache_owner = True
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ[_CACHE_ENV])
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")


def pytest_unconfigure(config):
    if getattr(config, "_deepdistill_cache_owner", False):
        shutil.rmtree(os.environ.pop(_CACHE_ENV), ignore_errors=True)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "task_probe" in fixtures and "name" in params:
            item.add_marker(pytest.mark.xdist_group(f"task:{params['name']}"))
        elif item.module.__name__.endswith("test_distributed"):
            item.add_marker(pytest.mark.xdist_group("multi-process"))

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
