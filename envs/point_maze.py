"""``point_maze``: a pure-JAX 2D point mass in a U-shaped maze (the CPU-fast embedded default).

The arena is a grid of square cells (``True`` = wall). The point moves by ``max_step * action``
per step; each axis is moved and resolved in turn, and a move that would enter a wall cell stops a
hair short of it. Because ``max_step`` is below one cell, a move can cross at most one cell
boundary per axis, so walls (the arena's edge included) can never be crossed or slid through.

``point_maze`` evaluates on two splits: ``random`` (start and goal anywhere in free space) and
``hard`` (start and goal in opposite arms of the U, so the straight line is blocked by the wall):
random goals alone hide a policy that only goes straight.

The larger mazes (``point_u4_maze``, ``point_u5_maze``, ``point_big_maze``, ``point_hardest_maze``)
use the paper's layouts (``envs/mazes.py``: ``S`` start cell, ``F`` far goal cells) with this point
mass: training and the ``random`` split start and aim anywhere in free space, and the ``far`` split
starts in the ``S`` cell and aims at a far cell (the paper's evaluation), so the shortest path runs
7 to 16 cells around walls. A row of the layout is ``y``, a column ``x`` (the ant mazes' layouts,
transposed: the same graph of cells).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from deepdistill.envs import register
from deepdistill.envs.base import EnvSpec, GoalEnv
from deepdistill.envs.mazes import LAYOUTS
from deepdistill.envs.observation import declare_terms

U_MAZE = (
    "#####",
    "#...#",
    "###.#",
    "#...#",
    "#####",
)
OPEN_ARENA = (
    "#####",
    "#...#",
    "#...#",
    "#...#",
    "#####",
)
# Cells (row, col) of the two arms of the U; "hard" episodes start in one and aim at the other.
U_ARMS = (((1, 1), (1, 2)), ((3, 1), (3, 2)))

_EPS = 1e-3  # how far short of a wall a blocked move stops


def parse_layout(layout: tuple[str, ...]) -> np.ndarray:
    """``'#'`` = wall, anything else free. Returns a bool grid ``[rows, cols]``."""
    grid = np.array([[c == "#" for c in row] for row in layout], dtype=bool)
    if not (grid[0].all() and grid[-1].all() and grid[:, 0].all() and grid[:, -1].all()):
        raise ValueError("a maze layout must be closed by walls on every side")
    return grid


def cells_marked(layout: tuple[str, ...], marks: str) -> np.ndarray:
    """``[N, 2]`` (row, col) of the cells whose symbol is one of ``marks``."""
    return np.argwhere(np.array([[c in marks for c in row] for row in layout]))


class PointMaze(GoalEnv):
    """A point mass in a walled grid. State: ``(x, y)``; goal: ``(x, y)``; action in ``[-1, 1]^2``."""

    def __init__(
        self,
        layout: tuple[str, ...] = U_MAZE,
        name: str = "point_maze",
        cell_size: float = 1.0,
        max_step: float = 0.2,
        success_threshold: float = 0.3,
        episode_length: int = 100,
        hard_arms: tuple | None = U_ARMS,
        resample_goal_on_success: bool = False,
        margin: float = 0.1,
        far_split: bool = False,
    ):
        """``far_split``: evaluate also on ``far`` episodes, from the layout's ``S`` cell to its ``F`` cells."""
        if not 0 < max_step < cell_size:
            raise ValueError("max_step must be in (0, cell_size): a step may cross at most one cell boundary")
        self.walls_np = parse_layout(layout)
        self.walls = jnp.asarray(self.walls_np)
        self.cell_size = float(cell_size)
        self.max_step = float(max_step)
        self.margin = float(margin)
        self.resample_goal_on_success = resample_goal_on_success
        self.free_cells = jnp.asarray(np.argwhere(~self.walls_np), dtype=jnp.int32)  # [F, 2] (row, col)
        self.hard_arms = None if hard_arms is None else jnp.asarray(hard_arms, dtype=jnp.int32)
        splits = ("random", "hard") if hard_arms is not None else ("random",)
        if far_split:
            starts, far = cells_marked(layout, "S"), cells_marked(layout, "F")
            if len(starts) != 1 or not len(far):
                raise ValueError("far_split needs a layout with one 'S' cell and at least one 'F' cell")
            self.start_cell, self.far_cells = jnp.asarray(starts[0], jnp.int32), jnp.asarray(far, jnp.int32)
            splits += ("far",)
        self.spec = EnvSpec(
            name=name,
            state_size=2,
            goal_size=2,
            action_size=2,
            goal_indices=(0, 1),
            success_threshold=float(success_threshold),
            episode_length=int(episode_length),
            eval_splits=splits,
            backend="jax",
        )
        self.obs_terms = declare_terms(
            ("position", 2, f"maze length units (a cell is {self.cell_size:g} wide)", "x, y of the point (the goal entries)"))

    # --- geometry ---------------------------------------------------------------------------------
    def _blocked(self, x: jax.Array, y: jax.Array) -> jax.Array:
        rows, cols = self.walls.shape
        col = jnp.clip(jnp.floor(x / self.cell_size).astype(jnp.int32), 0, cols - 1)
        row = jnp.clip(jnp.floor(y / self.cell_size).astype(jnp.int32), 0, rows - 1)
        return self.walls[row, col]

    def _move_axis(self, pos: jax.Array, new: jax.Array, blocked: jax.Array) -> jax.Array:
        """Resolve a 1D move from ``pos`` to ``new`` that would enter a wall cell if ``blocked``."""
        c = self.cell_size
        boundary = jnp.where(new > pos, jnp.floor(new / c) * c - _EPS, (jnp.floor(new / c) + 1) * c + _EPS)
        return jnp.where(blocked, boundary, new)

    def move(self, xy: jax.Array, action: jax.Array) -> jax.Array:
        """One step of the point: ``xy [2]``, ``action [2]`` in [-1, 1] -> new ``xy [2]``."""
        d = jnp.clip(action, -1.0, 1.0) * self.max_step
        x, y = xy[0], xy[1]
        nx = x + d[0]
        x = self._move_axis(x, nx, self._blocked(nx, y))
        ny = y + d[1]
        y = self._move_axis(y, ny, self._blocked(x, ny))
        return jnp.stack([x, y])

    def _point_in_cell(self, u: jax.Array, cell: jax.Array) -> jax.Array:
        """The point at relative position ``u`` in [0, 1)^2 of ``cell`` (row, col), kept off the walls."""
        u = self.margin + (1.0 - 2.0 * self.margin) * u
        return (cell[::-1].astype(jnp.float32) + u) * self.cell_size  # (row, col) -> (x, y)

    def _sample_free(self, rng: jax.Array) -> jax.Array:
        # One draw of three uniforms (cell, x, y): goal resampling runs every env step.
        u = jax.random.uniform(rng, (3,))
        n = self.free_cells.shape[0]
        cell = self.free_cells[jnp.minimum((u[0] * n).astype(jnp.int32), n - 1)]
        return self._point_in_cell(u[1:], cell)

    def _sample_goal(self, rng: jax.Array) -> jax.Array:
        return self._sample_free(rng)

    # --- GoalEnv hooks ------------------------------------------------------------------------------
    def _reset(self, rng: jax.Array, split: str):
        k_start, k_goal, k_hard = jax.random.split(rng, 3)
        if split == "hard":
            u = jax.random.uniform(k_hard, (7,))
            side = (u[0] < 0.5).astype(jnp.int32)
            n = self.hard_arms.shape[1]
            start_cell = self.hard_arms[side, jnp.minimum((u[1] * n).astype(jnp.int32), n - 1)]
            goal_cell = self.hard_arms[1 - side, jnp.minimum((u[2] * n).astype(jnp.int32), n - 1)]
            start = self._point_in_cell(u[3:5], start_cell)
            goal = self._point_in_cell(u[5:7], goal_cell)
        elif split == "far":
            u = jax.random.uniform(k_hard, (5,))
            n = self.far_cells.shape[0]
            start = self._point_in_cell(u[0:2], self.start_cell)
            goal = self._point_in_cell(u[2:4], self.far_cells[jnp.minimum((u[4] * n).astype(jnp.int32), n - 1)])
        else:
            start = self._sample_free(k_start)
            goal = self._sample_free(k_goal)
        return start, start, goal

    def _physics_step(self, pipeline_state, action):
        xy = self.move(pipeline_state, action)
        return xy, xy


register(
    "point_maze",
    lambda training, **kw: PointMaze(U_MAZE, "point_maze", resample_goal_on_success=training, **kw),
    "2D point mass in a U maze (pure JAX, CPU-fast); eval splits: random, hard",
)
for _name, _episode_length in (("u4_maze", 200), ("u5_maze", 200), ("big_maze", 200), ("hardest_maze", 250)):
    register(
        f"point_{_name}",
        lambda training, _name=_name, _T=_episode_length, **kw: PointMaze(
            LAYOUTS[_name], f"point_{_name}", hard_arms=None, far_split=True, resample_goal_on_success=training,
            **{"episode_length": _T, **kw}),
        f"2D point mass in the paper's {_name.replace('_', ' ')} layout (pure JAX); eval splits: random, far",
    )

register(
    "point_arena",
    lambda training, **kw: PointMaze(OPEN_ARENA, "point_arena", hard_arms=None, resample_goal_on_success=training, **kw),
    "2D point mass in an open 3x3 arena (smoke tests)",
)
