"""Goal-conditioned tasks: the registry, the task interface and the observation recipe.

``make_env(name)`` builds a task for evaluation; ``make_env(name, training=True)`` the variant used
to collect training data (for instance ``point_maze`` then draws a new goal whenever the current one
is reached, which makes trajectories more varied). ``list_envs()`` names every registered task.

A name is either a registered task (``point_maze``, ``ant``, ...) or ``module:Class`` / ``module:factory``:
user code outside the package, imported on first use. The name is what every run folder records
(``config.json``, ``env_spec.json``), so each later stage imports it again; the module must be
importable there too (``PYTHONPATH``). Installed packages can also register tasks through the
entry-point group ``deepdistill.envs`` (``name = "module:Class"``).

Importing this package imports no JAX (the JAX-free controller imports :mod:`deepdistill.envs.recipe`):
the task modules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from deepdistill.core.errors import ConfigError
from deepdistill.core.plugins import PluginError, entry_point_names, load_entry_point, load_object

if TYPE_CHECKING:
    from deepdistill.envs.base import EnvSpec, GoalEnv

ENTRY_POINT_GROUP = "deepdistill.envs"

_REGISTRY: dict[str, tuple[Callable[..., "GoalEnv"], str]] = {}


def register(name: str, factory: Callable[..., "GoalEnv"], description: str = "") -> None:
    """Register ``factory(training: bool, **overrides) -> GoalEnv`` under ``name``.

    ``overrides`` holds only the keys given to ``make_env`` (today: ``episode_length``)."""
    if ":" in name:
        raise ValueError(f"task name {name!r}: ':' is reserved for module:Class names")
    _REGISTRY[name] = (factory, description)


def list_envs() -> dict[str, str]:
    """``{name: one-line description}`` of every registered task (installed plugins included)."""
    _load_builtin()
    names = {k: v[1] for k, v in _REGISTRY.items()}
    for name in entry_point_names(ENTRY_POINT_GROUP):
        names.setdefault(name, "(installed plugin)")
    return dict(sorted(names.items()))


def builtin_envs() -> tuple[str, ...]:
    """The tasks this package ships (what the conformance tests run over)."""
    _load_builtin()
    return tuple(sorted(_REGISTRY))


def make_env(name: str, training: bool = False, episode_length: int | None = None) -> "GoalEnv":
    """Build task ``name``; ``episode_length`` overrides the task's default (short smoke runs)."""
    factory = _factory(name)
    overrides = {} if episode_length is None else {"episode_length": int(episode_length)}
    env = factory(training, **overrides)
    from deepdistill.envs.base import GoalEnv

    if not isinstance(env, GoalEnv):
        raise ConfigError(f"--env {name!r} built a {type(env).__name__}, not a deepdistill.envs.GoalEnv; "
                          "subclass GoalEnv (see envs/base.py)")
    if env.spec.name != name and name not in _REGISTRY:  # a plugin is known by the name it was loaded with
        import dataclasses

        env.spec = dataclasses.replace(env.spec, name=name)
    return env


def _factory(name: str) -> Callable[..., "GoalEnv"]:
    _load_builtin()
    if name in _REGISTRY:
        return _REGISTRY[name][0]
    try:
        if ":" in name:
            obj = load_object(name, "--env")
        elif name in entry_point_names(ENTRY_POINT_GROUP):
            obj = load_entry_point(ENTRY_POINT_GROUP, name, "--env")
        else:
            raise ConfigError(f"--env {name!r} is unknown; choose one of: {', '.join(sorted(_REGISTRY))}, "
                              "or give your own task as module:Class")
    except PluginError as e:
        raise ConfigError(str(e)) from None
    return _as_factory(obj, name)


def _as_factory(obj: Any, name: str) -> Callable[..., "GoalEnv"]:
    """A GoalEnv subclass is called as ``Class(training=..., **overrides)``; any other callable as
    ``factory(training, **overrides)``."""
    from deepdistill.envs.base import GoalEnv

    if isinstance(obj, type):
        if not issubclass(obj, GoalEnv):
            raise ConfigError(f"--env {name!r} names the class {obj.__name__}, which is not a subclass of "
                              "deepdistill.envs.GoalEnv")
        return lambda training, **kw: obj(training=training, **kw)
    if not callable(obj):
        raise ConfigError(f"--env {name!r} names {type(obj).__name__}, not a GoalEnv class or a factory")
    return obj


_builtin_loaded = False


def _load_builtin() -> None:
    """Register the built-in tasks on first use (their modules import JAX; brax's pipelines cost seconds)."""
    global _builtin_loaded
    if _builtin_loaded:
        return
    _builtin_loaded = True
    from deepdistill.envs import base, point_maze  # noqa: F401  (base first: it keeps mujoco's warp notice quiet)
    from deepdistill.envs import brax_tasks  # noqa: F401  (register on import)


def __getattr__(name: str) -> Any:  # the task classes import JAX: load them on first use
    if name in ("EnvSpec", "GoalEnv", "ResetResult"):
        from deepdistill.envs import base

        return getattr(base, name)
    if name == "PointMaze":
        from deepdistill.envs.point_maze import PointMaze

        return PointMaze
    raise AttributeError(f"module 'deepdistill.envs' has no attribute {name!r}")


__all__ = ["EnvSpec", "GoalEnv", "PointMaze", "ResetResult", "builtin_envs", "list_envs", "make_env", "register"]
