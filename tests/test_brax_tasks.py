"""Invariants of every registered Brax task: shapes, goal slices, success flag, walls, goals.

Compiling MJX physics takes seconds per function on the CPU, so each task compiles one probe
(tests/task_probe.py: resets, a goal override, a few steps) shared by the checks of every test file
(conftest.py's session fixture ``task_probe``), with XLA's cheap optimisation level.
"""

import contextlib
import io
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepdistill.envs import list_envs, make_env
from deepdistill.envs.brax_tasks import BACKEND, FINGER_OPEN, HUMANOID_GOAL_Z
from task_probe import jit

TASKS = sorted(BACKEND)
MAZE_TASKS = [n for n in TASKS if "maze" in n]

# name prefix -> (state size, goal size, action size, goal indices, success threshold)
EXPECTED = {
    "ant": (29, 2, 8, (0, 1), 0.5),
    "humanoid": (246, 3, 17, (0, 1, 2), 0.5),
    "arm": (17, 3, 4, (0, 1, 2), 0.1),
    "reacher": (10, 3, 2, (4, 5, 6), 0.05),
    "pusher": (20, 3, 7, (10, 11, 12), 0.1),
}


def expected(name):
    return EXPECTED[name.split("_")[0]]


def test_registry_lists_every_brax_task_with_its_backend():
    envs = list_envs()
    for name in TASKS:
        assert name in envs, name
        assert f"[{BACKEND[name]}]" in envs[name]
    env = make_env("ant")
    assert env.spec.episode_length == 1000 and env.spec.backend == BACKEND["ant"]
    assert make_env("arm_push_easy", episode_length=50).spec.episode_length == 50
    assert make_env("ant_u4_maze").spec.eval_splits == ("random", "far")


def test_commands_stay_free_of_mujocos_warp_notice():
    """Importing the Brax tasks prints nothing (mujoco's MJX says "Failed to import warp" without
    NVIDIA Warp); the filter drops only that notice."""
    code = "from deepdistill.envs import make_env; make_env('ant'); print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "ok\n"
    assert "brax system" not in out.stderr.lower()
    from deepdistill.envs.base import _without_warp_notice

    with contextlib.redirect_stdout(io.StringIO()) as buf:
        with _without_warp_notice():
            print("Failed to import warp: No module named 'warp'")
            print("kept")
    assert buf.getvalue() == "kept\n"


@pytest.mark.parametrize("name", TASKS)
def test_reset_and_step_shapes_goal_slices_success(name, task_probe):
    p = task_probe(name)
    env, s0, obs, success, distance, done, T = (p[k] for k in ("env", "s0", "obs", "success", "distance", "done", "T"))
    S, G, A, idx, thr = expected(name)
    spec, B = env.spec, len(p["roles"])
    assert (spec.state_size, spec.goal_size, spec.action_size, spec.goal_indices) == (S, G, A, idx)
    assert spec.success_threshold == thr and spec.obs_size == S + G and spec.backend == BACKEND[name]
    assert s0.obs.shape == (B, S + G) and obs.shape == (T, B, S + G)
    assert np.isfinite(obs).all() and np.isfinite(s0.obs).all()
    # the distance is measured between state[goal_indices] and the goal at the end of the observation
    np.testing.assert_allclose(distance, np.linalg.norm(obs[..., list(idx)] - obs[..., S:], axis=-1), atol=1e-4)
    np.testing.assert_array_equal(success, (distance < thr).astype(np.float32))
    # the goal stays put within an episode
    np.testing.assert_array_equal(obs[:, :, S:], np.broadcast_to(obs[:1, :, S:], obs[:, :, S:].shape))
    # started at its goal: success fires at the first step
    at_goal = p["roles"] == "at_goal"
    assert (success[0, at_goal] == 1.0).all(), distance[0, at_goal]
    # fixed-length episodes, all in step: done only at the last step (episode_length=T here)
    np.testing.assert_array_equal(done, np.broadcast_to((np.arange(1, T + 1) == T)[:, None], done.shape).astype(np.float32))


@pytest.mark.parametrize("name", TASKS)
def test_goal_entries_are_what_the_task_says(name, task_probe):
    """The goal coordinates of the state are the physical quantity they name."""
    p = task_probe(name)
    env, s0 = p["env"], p["s0"]
    S = env.spec.state_size
    achieved = np.asarray(env.goal_of(s0.obs[:, :S]))
    x = np.asarray(s0.pipeline_state.x.pos)  # [B, links, 3] world positions of the bodies
    if name.startswith("ant"):
        np.testing.assert_allclose(achieved, x[:, 0, :2], atol=1e-5)  # torso x, y
        start = env.maze.start_xy if env.maze is not None else np.zeros(2)
        assert np.abs(achieved - start).max() < 0.2  # at the start (reset noise 0.1)
    elif name.startswith("humanoid"):
        np.testing.assert_allclose(achieved, x[:, 0, :3], atol=1e-5)  # torso x, y, z
    elif name.startswith("arm"):
        np.testing.assert_allclose(achieved, x[:, 0, :3], atol=1e-5)  # the cube (first body)
        np.testing.assert_allclose(achieved[:, 2], 0.02, atol=2e-3)  # resting on the table
    elif name == "pusher":
        np.testing.assert_allclose(achieved, x[:, list(env.physics.sys.link_names).index("object")], atol=1e-5)
    elif name == "reacher":
        np.testing.assert_allclose(achieved[:, 2], 0.01, atol=1e-5)  # in the arm's plane
        assert (np.linalg.norm(achieved[:, :2], axis=-1) < 0.211 + 1e-3).all()  # within reach of the base


@pytest.mark.parametrize("name", MAZE_TASKS)
def test_walls_stop_the_robot(name, task_probe):
    """Torsos shoved into a wall every step for T steps never enter a wall cell."""
    p = task_probe(name)
    maze, push = p["env"].maze, p["roles"] == "push"
    path = p["obs"][:, push, :2]  # [T, n, 2] torso x, y
    assert not maze.is_wall(p["obs"][:, :, :2]).any(), f"{name}: a torso entered a wall cell"
    # not vacuous: every push brought the torso within half a cell of the wall face it was shoved at
    face = p["starts"] + 0.5 * maze.cell_size * p["dirs"]  # a point of the wall face ahead
    gap = np.einsum("nd,nd->n", face - path[-1], p["dirs"])
    assert (gap < 0.5 * maze.cell_size).all() and (gap > 0.0).all(), gap


@pytest.mark.parametrize("name", [n for n in TASKS if n.startswith("arm")])
def test_arm_tasks_are_solvable_by_a_scripted_pick_and_place(name, task_probe):
    p = task_probe(name)
    scripted = p["roles"] == "scripted"
    cube = p["obs"][:, scripted, :3]
    assert cube[50, :, 2].min() > 0.1, cube[50]  # grasped and lifted (over the bin walls)
    assert (p["success"][-10:, scripted] == 1.0).all(), p["distance"][-10:, scripted]
    assert (p["obs"][-1, scripted, 16] > 0.8 * 2 * FINGER_OPEN).all()  # released


@pytest.fixture(scope="module")
def goal_samples():
    cache = {}

    def get(name, split):
        if (name, split) not in cache:
            env = make_env(name)
            keys = jax.random.split(jax.random.PRNGKey(7), 4096)
            fn = (lambda k: env._sample_goal(k, split)) if split != "train" else env._sample_goal
            cache[(name, split)] = (env, np.asarray(jit(jax.vmap(fn))(keys)))
        return cache[(name, split)]

    return get


@pytest.mark.parametrize("name", MAZE_TASKS)
@pytest.mark.parametrize("split", ["train", "random", "far"])
def test_maze_goals_lie_in_goal_cells_never_in_walls(name, split, goal_samples):
    env, goals = goal_samples(name, split)
    maze = env.maze
    assert not maze.is_wall(goals[:, :2]).any()
    cells = {tuple(c) for c in maze.cell_of(goals[:, :2])}
    allowed = {tuple(c) for c in (maze.far_cells if split == "far" else maze.goal_cells)}
    assert cells == allowed  # 4,096 draws cover every allowed cell and nothing else
    # jittered, but never within a quarter cell of the cell's border (the robot fits there)
    offset = goals[:, :2] - maze.cell_center(maze.cell_of(goals[:, :2]))
    assert np.abs(offset).max() <= 0.25 * maze.cell_size + 1e-5
    if name.startswith("humanoid"):
        np.testing.assert_allclose(goals[:, 2], HUMANOID_GOAL_Z)


def test_open_goals_follow_the_paper():
    def sample(name):
        env = make_env(name)
        return np.asarray(jit(jax.vmap(env._sample_goal))(jax.random.split(jax.random.PRNGKey(3), 2048)))

    ant = sample("ant")
    np.testing.assert_allclose(np.linalg.norm(ant, axis=-1), 10.0, rtol=1e-5)  # circle of radius 10
    angles = np.arctan2(ant[:, 1], ant[:, 0])
    assert np.histogram(angles, bins=8, range=(-np.pi, np.pi))[0].min() > 150  # all directions
    hum = sample("humanoid")
    r = np.linalg.norm(hum[:, :2], axis=-1)
    assert r.min() >= 1.0 - 1e-5 and r.max() <= 5.0 + 1e-5 and r.min() < 1.1 and r.max() > 4.9
    np.testing.assert_allclose(hum[:, 2], HUMANOID_GOAL_Z)
    for name in ("arm_push_easy", "arm_push_hard", "arm_binpick_hard"):
        g = sample(name)
        np.testing.assert_allclose(g[:, 2], 0.02)  # the cube's centre when it rests on the table


@pytest.mark.slow
def test_teacher_trains_on_an_mjx_task_then_resumes(tmp_path):
    """A tiny end-to-end run of ``train-teacher`` on an MJX task (reacher, the cheapest to compile) with
    checkpoints, then ``--resume``.

    Both runs are subprocesses sharing a compilation cache, so the resumed run reuses the compiled
    programs of the first one."""
    out = tmp_path / "reacher"
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip(),
    }
    args = ["--env", "reacher", "--out", str(out), "--episode-length", "20", "--unroll-length", "10", "--num-envs", "8",
            "--depth", "4", "--width", "32", "--repr-dim", "16", "--batch-size", "32", "--eval-every", "160",
            "--num-eval-episodes", "4", "--replay-steps-per-env", "40", "--min-replay-steps", "20",
            "--env-steps-per-sgd-step", "16", "--no-progress"]
    cmd = [sys.executable, "-m", "deepdistill.teacher.cli"]
    first = subprocess.run([*cmd, *args, "--total-env-steps", "320"], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    steps = sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit())
    assert steps and steps[-1] >= 320
    second = subprocess.run([*cmd, *args, "--total-env-steps", "640", "--resume"], env=env, capture_output=True,
                            text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    env_steps = [r["env_steps"] for r in records]
    assert env_steps == sorted(env_steps) and env_steps[-1] >= 640 and records[0]["sgd_steps"] == 0
    assert "resumed" in second.stdout + second.stderr
    assert all(np.isfinite(r["final_distance"]) for r in records)
    assert max(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit()) >= 640
