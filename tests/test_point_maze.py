"""Invariants of the embedded point_maze task."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepdistill.core.errors import ConfigError
from deepdistill.envs import list_envs, make_env

ENV = make_env("point_maze")


def cell_is_wall(env, xy):
    xy = np.asarray(xy)
    col = np.floor(xy[..., 0] / env.cell_size).astype(int)
    row = np.floor(xy[..., 1] / env.cell_size).astype(int)
    return env.walls_np[row, col]


def test_registry_lists_the_embedded_tasks():
    envs = list_envs()
    assert "point_maze" in envs and "point_arena" in envs
    with pytest.raises(ConfigError, match="--env 'nope' is unknown"):
        make_env("nope")


@pytest.mark.parametrize("split", ["train", "random", "hard"])
def test_starts_and_goals_lie_in_free_space(split):
    s = jax.vmap(lambda k: ENV.reset_split(k, split))(jax.random.split(jax.random.PRNGKey(0), 2000))
    assert s.obs.shape == (2000, 4)
    assert not cell_is_wall(ENV, s.obs[:, :2]).any()
    assert not cell_is_wall(ENV, s.obs[:, 2:]).any()


def test_hard_goals_are_across_the_wall():
    s = jax.vmap(lambda k: ENV.reset_split(k, "hard"))(jax.random.split(jax.random.PRNGKey(1), 1000))
    start_row = np.floor(np.asarray(s.obs[:, 1])).astype(int)
    goal_row = np.floor(np.asarray(s.obs[:, 3])).astype(int)
    assert set(zip(start_row, goal_row)) == {(1, 3), (3, 1)}
    assert np.all(np.asarray(s.obs[:, [0, 2]]) < 3.0)  # both in the blocked columns 1-2


@pytest.mark.parametrize("action", [(0.0, 1.0), (0.0, -1.0), (1.0, 0.0), (-1.0, 0.0), (0.7, 1.0), (-1.0, -1.0)])
def test_scripted_push_into_walls_never_passes(action):
    """Push from every free cell in one direction for 50 steps: the point never enters a wall cell."""
    starts = jnp.asarray([[c + 0.5, r + 0.5] for r, c in np.argwhere(~ENV.walls_np)], jnp.float32)
    a = jnp.asarray(action, jnp.float32)

    def run(xy):
        return jax.lax.scan(lambda p, _: (ENV.move(p, a),) * 2, xy, None, length=50)[1]

    path = jax.vmap(run)(starts)  # [N, 50, 2]
    assert not cell_is_wall(ENV, path).any()
    # the point in the top arm pushed down cannot reach the bottom arm through the wall
    if action == (0.0, 1.0):
        top_left = jnp.array([1.5, 1.5])
        assert float(run(top_left)[-1, 1]) < 2.0


def test_random_walk_never_enters_walls():
    key = jax.random.PRNGKey(3)
    s = jax.vmap(ENV.reset)(jax.random.split(key, 512))

    def step(s, k):
        a = jax.random.uniform(k, (512, 2), minval=-1, maxval=1) * 3  # out-of-range actions are clipped
        s = jax.vmap(ENV.step)(s, a)
        return s, s.obs[:, :2]

    _, path = jax.lax.scan(step, s, jax.random.split(key, 300))
    assert not cell_is_wall(ENV, path).any()
    assert float(jnp.abs(path[1:] - path[:-1]).max()) <= ENV.max_step + 1e-5


def test_success_flag_and_episode_end():
    s = ENV.reset_split(jax.random.PRNGKey(0), "random")
    goal = s.info["goal"]
    near = s.replace(pipeline_state=goal + jnp.array([0.05, 0.0]), obs=s.obs)
    far = s.replace(pipeline_state=goal + jnp.array([0.0, 0.5]))
    stay = jnp.zeros(2)
    assert float(ENV.step(near, stay).metrics["success"]) == 1.0
    # 0.5 away is beyond the 0.3 threshold (a wall may also stop it short: still no success)
    assert float(ENV.step(far, stay).metrics["success"]) == 0.0
    for _ in range(ENV.spec.episode_length - 1):
        s = ENV.step(s, stay)
    assert float(s.done) == 0.0
    assert float(ENV.step(s, stay).done) == 1.0


def test_training_variant_resamples_goals_on_success():
    env = make_env("point_maze", training=True)
    s = env.reset(jax.random.PRNGKey(0))
    at_goal = s.replace(pipeline_state=s.info["goal"])
    s2 = env.step(at_goal, jnp.zeros(2))
    assert not np.allclose(s2.info["goal"], s.info["goal"])
    assert not cell_is_wall(env, s2.info["goal"])


@pytest.mark.parametrize("name", ["point_u4_maze", "point_u5_maze", "point_big_maze", "point_hardest_maze"])
def test_paper_layout_mazes_start_far_episodes_at_s_and_aim_at_far_cells(name):
    """The paper's layouts as point mazes: every split starts and aims in free space; ``far`` episodes
    start in the layout's S cell and aim at one of its F cells (row = y, column = x)."""
    from deepdistill.envs.mazes import LAYOUTS

    env = make_env(name)
    layout = LAYOUTS[name.removeprefix("point_")]
    assert env.spec.eval_splits == ("random", "far") and env.spec.episode_length % 50 == 0
    for split in ("train", "random", "far"):
        s = jax.vmap(lambda k: env.reset_split(k, split))(jax.random.split(jax.random.PRNGKey(2), 500))
        assert not cell_is_wall(env, s.obs[:, :2]).any() and not cell_is_wall(env, s.obs[:, 2:]).any()
    cells = lambda xy: {(int(y), int(x)) for x, y in np.floor(np.asarray(xy))}  # noqa: E731
    assert cells(s.obs[:, :2]) == {tuple(c) for c in np.argwhere(np.array([list(r) for r in layout]) == "S")}
    far = {tuple(c) for c in np.argwhere(np.array([list(r) for r in layout]) == "F")}
    assert cells(s.obs[:, 2:]) == far  # 500 draws cover every far cell
