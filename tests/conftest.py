"""Session-wide set-up: what several test files need is built once per test session.

* ``task_probe(name)``: one compiled probe per task (tests/task_probe.py), shared by the task,
  conformance and Brax checks.
* ``tiny_teacher``: a small trained ``point_arena`` teacher (seconds), shared by the tests that
  need a real teacher run (distillation, extension, evaluation).
* A JAX compilation cache shared by every process of the session (pytest-xdist workers and the CLI
  subprocesses tests start): the many tiny runs of the same recipe compile each program once.
* Under ``pytest -n 2 --dist loadgroup`` (the README's command), the tests of one task run on one
  worker (its probe is compiled once), the multi-process tests on one worker, and the tests of a module
  that share a module-scoped fixture (a trained run, say) on one worker.
* ``slow``: tests that take more than about 12 CPU-s each (learning runs, multi-process and subprocess
  runs, MJX compilation). ``pytest -m "not slow"`` is the quick loop; CI runs everything.
"""

import os

# Tests run on the CPU with two virtual devices available for the data-parallel checks.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import shutil  # noqa: E402
import tempfile  # noqa: E402

import pytest  # noqa: E402

_CACHE_ENV = "DEEPDISTILL_TEST_JAX_CACHE"
_USER_XLA_FLAGS = "DEEPDISTILL_TEST_USER_XLA_FLAGS"
_FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def pytest_configure(config):
    """Before any test module imports JAX (and before xdist starts its workers, which inherit the
    environment): one compilation cache directory for the whole session."""
    if _CACHE_ENV not in os.environ:
        os.environ[_CACHE_ENV] = tempfile.mkdtemp(prefix="deepdistill-jax-cache-")
        config._deepdistill_cache_owner = True
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ[_CACHE_ENV])
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    # XLA's cheap optimisation level: the suite's tiny programs spend their time compiling, not running.
    # The user's own flags are kept for the runs that measure a recipe's numbers (tests/test_learning.py).
    os.environ.setdefault(_USER_XLA_FLAGS, os.environ.get("XLA_FLAGS", ""))
    os.environ["XLA_FLAGS"] = f"{os.environ[_USER_XLA_FLAGS]} {_FAST_COMPILE}".strip()
    pytest_version = tuple(int(v) for v in pytest.__version__.split(".")[:2] if v.isdigit())
    if getattr(config.option, "dist", "no") == "loadgroup" and pytest_version >= (9, 2):
        raise pytest.UsageError(f"pytest {pytest.__version__} silently stops pytest-xdist's --dist loadgroup (pytest-xdist "
                                "issue 1386; every task probe and shared run would be built on both workers): "
                                "pip install -e '.[test]' (pytest <9.2)")
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False  # keep the order below (longest first), not xdist's by group size


def pytest_unconfigure(config):
    if getattr(config, "_deepdistill_cache_owner", False):
        shutil.rmtree(os.environ.pop(_CACHE_ENV), ignore_errors=True)


# The one MJX task whose probe the quick loop (``-m "not slow"``) compiles: the cheapest (about 20 s);
# every MJX task's probe runs in the full suite.
QUICK_MJX_TASK = "reacher"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups, and before -m deselects
def pytest_collection_modifyitems(config, items):
    from deepdistill.envs.brax_tasks import BACKEND

    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "task_probe" in fixtures and "name" in params:
            item.add_marker(pytest.mark.xdist_group(f"task:{params['name']}"))
            if params["name"] in BACKEND and params["name"] != QUICK_MJX_TASK:
                item.add_marker(pytest.mark.slow)  # compiling MJX physics: 20-45 CPU-s per task
        elif item.module.__name__.endswith("test_distributed"):
            item.add_marker(pytest.mark.xdist_group("multi-process"))
        elif _uses_a_module_fixture(item):  # built once: the module's tests that use it share a worker
            item.add_marker(pytest.mark.xdist_group(f"module:{item.module.__name__}"))


@pytest.hookimpl(trylast=True, specname="pytest_collection_modifyitems")  # after pytest's reordering by fixture
def pytest_collection_modifyitems_longest_first(config, items):
    """Longest first: pytest-xdist hands out each group (else each test) in this order, so the learning
    runs (minutes each) start at once instead of ending the session on one worker."""
    def scope(item):
        groups = [m.args[0] for m in item.iter_markers("xdist_group")]
        return groups[0] if groups else item.nodeid

    rank = {}
    for item in items:
        r = 0 if item.module.__name__.endswith("test_learning") else 1 if item.get_closest_marker("slow") else 2
        rank[scope(item)] = min(rank.get(scope(item), 2), r)
    items.sort(key=lambda item: rank[scope(item)])


def _uses_a_module_fixture(item) -> bool:
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    return any(d.scope == "module" for name in getattr(item, "fixturenames", ()) for d in defs.get(name, ()))


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
