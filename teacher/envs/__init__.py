"""Registry of goal-conditioned tasks.

``make_env(name)`` builds a task for evaluation; ``make_env(name, training=True)`` the variant used
to collect training data (for instance ``point_maze`` then draws a new goal whenever the current one
is reached, which makes trajectories more varied). ``list_envs()`` names every registered task.
"""

from __future__ import annotations

from typing import Callable

from deepdistill.core.errors import ConfigError

from deepdistill.teacher.envs.base import EnvSpec, GoalEnv
from deepdistill.teacher.envs.point_maze import OPEN_ARENA, U_MAZE, PointMaze

_REGISTRY: dict[str, tuple[Callable[..., GoalEnv], str]] = {}


def register(name: str, factory: Callable[..., GoalEnv], description: str = "") -> None:
    """Register ``factory(training: bool, **overrides) -> GoalEnv`` under ``name``.

    ``overrides`` holds only the keys given to ``make_env`` (today: ``episode_length``)."""
    _REGISTRY[name] = (factory, description)


def list_envs() -> dict[str, str]:
    """``{name: one-line description}`` of every registered task."""
    _load_optional()
    return {k: v[1] for k, v in sorted(_REGISTRY.items())}


def make_env(name: str, training: bool = False, episode_length: int | None = None) -> GoalEnv:
    """Build task ``name``; ``episode_length`` overrides the task's default (short smoke runs)."""
    _load_optional()
    if name not in _REGISTRY:
        raise ConfigError(f"--env {name!r} is unknown; choose one of: {', '.join(sorted(_REGISTRY))}")
    overrides = {} if episode_length is None else {"episode_length": int(episode_length)}
    return _REGISTRY[name][0](training, **overrides)


_optional_loaded = False


def _load_optional() -> None:
    """Register the Brax tasks lazily (importing brax's pipelines costs seconds)."""
    global _optional_loaded
    if _optional_loaded:
        return
    _optional_loaded = True
    from deepdistill.teacher.envs import brax_tasks  # noqa: F401  (registers on import)


register(
    "point_maze",
    lambda training, **kw: PointMaze(U_MAZE, "point_maze", resample_goal_on_success=training, **kw),
    "2D point mass in a U maze (pure JAX, CPU-fast); eval splits: random, hard",
)
register(
    "point_arena",
    lambda training, **kw: PointMaze(OPEN_ARENA, "point_arena", hard_arms=None, resample_goal_on_success=training, **kw),
    "2D point mass in an open 3x3 arena (smoke tests)",
)

__all__ = ["EnvSpec", "GoalEnv", "PointMaze", "list_envs", "make_env", "register"]
