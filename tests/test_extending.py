"""Extending deepdistill from your own code, with no file of the package edited: a student
architecture (``--arch module:Class``) and a task (``--env module:Class``) kept in a folder on
``PYTHONPATH`` go through every command, which import them again from the name the run records."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DISTILL_TINY = ["--steps", "100", "--batch-size", "64", "--num-envs", "16", "--unroll-length", "25",
                "--sgd-steps-per-unroll", "25", "--replay-steps-per-env", "200", "--eval-every", "50",
                "--num-eval-episodes", "16", "--no-progress"]


def run(cmd: list[str], pythonpath: Path | None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, "-m", *cmd], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_a_student_kept_outside_the_package(tiny_teacher, tmp_path):
    """The README's command: `distill --arch tanh_mlp:TanhMLPNetworks` with the example's folder on
    PYTHONPATH (a copy of the file in a temporary folder), then export-onnx and evaluate."""
    mine = tmp_path / "my_code"
    mine.mkdir()
    shutil.copy(ROOT / "examples" / "custom_student" / "tanh_mlp.py", mine / "tanh_mlp.py")
    student, onnx_dir, report = tmp_path / "tanh", tmp_path / "tanh_onnx", tmp_path / "report"

    r = run(["deepdistill.distill.cli", "--teacher", str(tiny_teacher), "--arch", "tanh_mlp:TanhMLPNetworks",
             "--depth", "2", "--width", "32", "--out", str(student), *DISTILL_TINY], mine)
    assert r.returncode == 0, r.stderr[-3000:]
    nets = json.loads((student / "networks.json").read_text())
    assert nets["arch"] == "tanh_mlp:TanhMLPNetworks" and nets["actor_depth"] == 2 and nets["actor_width"] == 32

    # without the folder on PYTHONPATH the recorded class cannot be imported: one line saying so
    r = run(["deepdistill.export.cli", "--student", str(student), "--out", str(onnx_dir)], None)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "tanh_mlp" in r.stderr and "PYTHONPATH" in r.stderr and not onnx_dir.exists()

    r = run(["deepdistill.export.cli", "--student", str(student), "--out", str(onnx_dir), "--parity-samples", "64"], mine)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run(["deepdistill.evaluate.cli", "--teacher", str(tiny_teacher), "--student", str(student), "--onnx", str(onnx_dir),
             "--episodes", "16", "--out", str(report), "--latency-samples", "20", "--no-plots"], mine)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((report / "report.json").read_text())
    assert rep["student"]["arch"] == "tanh_mlp" and rep["student"]["actor_depth"] == 2
    # the exported file computes what the JAX student computes, on the same episodes
    assert rep["onnx"]["success_rate"] == pytest.approx(rep["student"]["success_rate"])
    assert rep["onnx"]["time_at_goal"] == pytest.approx(rep["student"]["time_at_goal"], abs=1e-3)


TASK_MODULE = textwrap.dedent(
    '''
    """A user's task: a point in the open unit square with a speed sensor (state x, y, speed; goal x, y)."""
    import jax
    import jax.numpy as jnp

    from deepdistill.envs import EnvSpec, GoalEnv


    class OpenSquare(GoalEnv):
        def __init__(self, training=False, episode_length=50):
            self.resample_goal_on_success = training
            self.spec = EnvSpec(name="open_square", state_size=3, goal_size=2, action_size=2, goal_indices=(0, 1),
                                success_threshold=0.1, episode_length=episode_length)

        def _sample_goal(self, rng):
            return jax.random.uniform(rng, (2,))

        def _reset(self, rng, split):
            k1, k2 = jax.random.split(rng)
            xy = jax.random.uniform(k1, (2,))
            state = jnp.concatenate([xy, jnp.zeros(1)])
            return state, state, self._sample_goal(k2)  # (pipeline_state, state, goal)

        def _physics_step(self, pipeline_state, action):
            xy = jnp.clip(pipeline_state[:2] + 0.1 * action, 0.0, 1.0)
            state = jnp.concatenate([xy, jnp.linalg.norm(xy - pipeline_state[:2])[None]])
            return state, state


    class Swapped(OpenSquare):
        """Returns its reset in the order the old docstring gave: (state, goal, pipeline_state)."""

        def _reset(self, rng, split):
            ps, state, goal = super()._reset(rng, split)
            return state, goal, ps
    '''
)


@pytest.mark.slow
def test_a_task_kept_outside_the_package(tmp_path):
    """`train-teacher --env my_tasks:OpenSquare`: the name is recorded, and distill, export-onnx and
    evaluate build the task again from it."""
    mine = tmp_path / "my_code"
    mine.mkdir()
    (mine / "my_tasks.py").write_text(TASK_MODULE)
    teacher, student, onnx_dir, report = (tmp_path / n for n in ("t", "s", "o", "r"))
    r = run(["deepdistill.teacher.cli", "--env", "my_tasks:OpenSquare", "--out", str(teacher), "--depth", "4",
             "--width", "32", "--repr-dim", "16", "--num-envs", "16", "--unroll-length", "25", "--batch-size", "64",
             "--env-steps-per-sgd-step", "8", "--replay-steps-per-env", "200", "--min-replay-steps", "50",
             "--eval-every", "3200", "--total-env-steps", "6400", "--num-eval-episodes", "16", "--no-progress"], mine)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((teacher / "config.json").read_text())["env"] == "my_tasks:OpenSquare"
    assert json.loads((teacher / "env_spec.json").read_text())["name"] == "my_tasks:OpenSquare"
    r = run(["deepdistill.distill.cli", "--teacher", str(teacher), "--out", str(student), "--depth", "0", "--width", "16",
             *DISTILL_TINY], mine)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run(["deepdistill.export.cli", "--student", str(student), "--out", str(onnx_dir), "--parity-samples", "64"], mine)
    assert r.returncode == 0, r.stderr[-3000:]
    from deepdistill.export.runtime import OnnxPolicy

    assert OnnxPolicy(onnx_dir / "policy.onnx").metadata["task"] == "my_tasks:OpenSquare"
    r = run(["deepdistill.evaluate.cli", "--teacher", str(teacher), "--student", str(student), "--onnx", str(onnx_dir),
             "--episodes", "16", "--out", str(report), "--latency-samples", "20", "--no-plots"], mine)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((report / "report.json").read_text())
    assert rep["env"] == "my_tasks:OpenSquare"
    assert rep["onnx"]["success_rate"] == pytest.approx(rep["student"]["success_rate"])
    # without the folder on PYTHONPATH: one line naming the module and the fix
    r = run(["deepdistill.evaluate.cli", "--teacher", str(teacher), "--student", str(student), "--episodes", "4",
             "--out", str(tmp_path / "r2")], None)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "my_tasks" in r.stderr and "PYTHONPATH" in r.stderr


@pytest.fixture()
def my_tasks(tmp_path, monkeypatch):
    (tmp_path / "my_tasks.py").write_text(TASK_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("my_tasks", None)


def test_a_reset_in_the_wrong_order_fails_at_the_first_reset(my_tasks):
    from deepdistill.envs import make_env

    env = make_env("my_tasks:OpenSquare")
    s = env.reset(jax.random.PRNGKey(0))
    assert s.obs.shape == (5,) and env.spec.name == "my_tasks:OpenSquare"
    np.testing.assert_array_equal(s.obs[3:], s.info["goal"])
    with pytest.raises(TypeError, match=r"Swapped._reset returned a state of shape \(2,\), expected \(3,\) from "
                                        r"spec.state_size: return \(pipeline_state, state, goal\) in this order"):
        make_env("my_tasks:Swapped").reset(jax.random.PRNGKey(0))


@pytest.mark.parametrize("name,needle", [
    ("no_such_tasks:Task", "--env 'no_such_tasks:Task': module 'no_such_tasks' cannot be imported; install it or put its folder on PYTHONPATH"),
    ("my_tasks:Nope", "--env 'my_tasks:Nope': module 'my_tasks' has no attribute 'Nope'"),
    ("json:JSONDecoder", "--env 'json:JSONDecoder' names the class JSONDecoder, which is not a subclass of deepdistill.envs.GoalEnv"),
    ("point_mase", "--env 'point_mase' is unknown; choose one of: "),
])
def test_an_unknown_or_unimportable_task_is_one_line(name, needle, my_tasks, tmp_path, capsys):
    from deepdistill.teacher.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--env", name, "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert needle in err and not (tmp_path / "t").exists()
