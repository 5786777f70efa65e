"""The goal-conditioned task interface shared by every registered environment.

A task is a brax ``Env`` (``reset(rng)``, ``step(state, action)``) whose observation is the robot
state followed by the goal: ``obs = concat(state [S], goal [G])``. The goal lives in the space of
``state[goal_indices]``, so hindsight goals can be cut out of any visited state. Episodes have a
fixed length and never terminate early: every environment of a batch starts and ends its episodes
together, which the replay buffer relies on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import sys
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp


@contextlib.contextmanager
def _without_warp_notice():
    """mujoco's MJX prints "Failed to import warp: ..." when importing without NVIDIA Warp (an
    optional backend we don't use); keep those lines off the user's terminal, pass any others."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        sys.stdout.write("".join(line for line in buf.getvalue().splitlines(keepends=True)
                                 if not line.startswith(("Failed to import warp", "Failed to import mujoco_warp"))))


with _without_warp_notice():
    from brax.envs.base import Env, State  # imports mujoco.mjx

from deepdistill.envs.observation import ObsTerm, check_terms, default_terms


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """Everything the networks, the buffer, the export and a robot controller need to know."""

    name: str
    state_size: int
    goal_size: int
    action_size: int
    goal_indices: tuple[int, ...]
    success_threshold: float
    episode_length: int
    action_low: float = -1.0
    action_high: float = 1.0
    eval_splits: tuple[str, ...] = ("random",)
    backend: str = "jax"

    @property
    def obs_size(self) -> int:
        return self.state_size + self.goal_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EnvSpec":
        d = dict(d)
        d["goal_indices"] = tuple(d["goal_indices"])
        d["eval_splits"] = tuple(d["eval_splits"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


class ResetResult(NamedTuple):
    """What :meth:`GoalEnv._reset` returns, in this order (a plain tuple in this order works too)."""

    pipeline_state: Any
    """The simulator's state (a brax/MJX pipeline state, or any pytree of arrays for a pure-JAX task)."""
    state: jax.Array
    """The robot state ``[S]`` the policy observes (``spec.state_size`` entries)."""
    goal: jax.Array
    """The goal ``[G]``, in the space of ``state[spec.goal_indices]``."""


class GoalEnv(Env):
    """Base class of the goal-conditioned tasks.

    A subclass sets ``self.spec`` (an :class:`EnvSpec`) in ``__init__`` and implements:

    * ``_reset(rng, split) -> ResetResult(pipeline_state, state [S], goal [G])``: a new episode of
      ``split`` (``"train"`` or one of ``spec.eval_splits``) with its start and goal. Note the order:
      the simulator state first, then the robot state, then the goal. The first reset checks the
      shapes against ``spec`` and refuses a wrong order in one line.
    * ``_physics_step(pipeline_state, action [A]) -> (pipeline_state, state [S])``: one control step
      with an action already clipped into ``[spec.action_low, spec.action_high]``.
    * ``_sample_goal(rng) -> goal [G]``: a new training goal, drawn when the current one is reached.
      Only called when ``resample_goal_on_success`` is true (``make_env(..., training=True)`` for tasks
      that set it); a task that never resamples may leave it unimplemented.

    A task names the parts of its state in ``obs_terms`` (:class:`deepdistill.envs.observation.ObsTerm`,
    e.g. built with ``declare_terms``): what ``deepdistill envs --obs`` lists and ``distill --student-obs``
    picks from. A task that names none has one term, ``state``.

    Everything else (observations ``concat(state, goal)``, distances, the success flag, the step
    counter and goal bookkeeping) the base class builds identically for every task. A task class
    outside the package is used with ``--env my_module:MyTask``; it is constructed as
    ``MyTask(training=..., episode_length=...)`` (``episode_length`` only when given).
    """

    spec: EnvSpec
    obs_terms: Optional[tuple[ObsTerm, ...]] = None

    def observation_terms(self) -> tuple[ObsTerm, ...]:
        """The named terms of the robot state, in state order (checked to cover it exactly)."""
        return check_terms(self.obs_terms or default_terms(self.spec.state_size), self.spec.state_size, self.spec.name)

    # --- brax Env interface ------------------------------------------------------------------
    @property
    def observation_size(self) -> int:
        return self.spec.obs_size

    @property
    def action_size(self) -> int:
        return self.spec.action_size

    @property
    def backend(self) -> str:
        return self.spec.backend

    def reset(self, rng: jax.Array) -> State:
        """A training episode: start and goal drawn from the task's training distribution."""
        return self.reset_split(rng, "train")

    def reset_split(self, rng: jax.Array, split: str) -> State:
        """An episode whose goal comes from ``split`` (``train`` or one of ``spec.eval_splits``)."""
        if split != "train" and split not in self.spec.eval_splits:
            raise ValueError(f"unknown split {split!r}; this task has {('train',) + self.spec.eval_splits}")
        rng, key = jax.random.split(rng)
        pipeline_state, robot, goal = self._check_reset(self._reset(key, split))
        return self._make_state(pipeline_state, robot, goal, rng, jnp.zeros((), jnp.int32))

    def _check_reset(self, result: Any) -> tuple[Any, jax.Array, jax.Array]:
        """``_reset``'s result, its shapes checked against the spec (at trace time: no run-time cost)."""
        name = f"{type(self).__name__}._reset"
        if not isinstance(result, tuple) or len(result) != 3:
            raise TypeError(f"{name} must return (pipeline_state, state [S], goal [G]); got {type(result).__name__}")
        _, robot, goal = result
        for what, x, size in (("state", robot, self.spec.state_size), ("goal", goal, self.spec.goal_size)):
            shape = getattr(x, "shape", None)
            if shape is None or tuple(shape) != (size,):
                got = f"shape {tuple(shape)}" if shape is not None else type(x).__name__
                raise TypeError(f"{name} returned a {what} of {got}, expected ({size},) from spec.{what}_size: "
                                f"return (pipeline_state, state, goal) in this order (envs/base.py, ResetResult)")
        return result

    def step(self, state: State, action: jax.Array) -> State:
        action = jnp.clip(action, self.spec.action_low, self.spec.action_high)
        pipeline_state, robot = self._physics_step(state.pipeline_state, action)
        goal = state.info["goal"]
        rng, steps = state.info["rng"], state.info["steps"] + 1
        if self.resample_goal_on_success:
            reached = self._distance(robot, goal) < self.spec.success_threshold
            goal = jnp.where(reached, self._sample_goal(jax.random.fold_in(rng, steps)), goal)
        return self._make_state(pipeline_state, robot, goal, rng, steps)

    # --- shared helpers ----------------------------------------------------------------------
    resample_goal_on_success: bool = False

    def goal_of(self, robot_state: jax.Array) -> jax.Array:
        """The goal-space coordinates of a robot state ``[..., S] -> [..., G]``."""
        return robot_state[..., jnp.asarray(self.spec.goal_indices)]

    def _distance(self, robot: jax.Array, goal: jax.Array) -> jax.Array:
        return jnp.linalg.norm(self.goal_of(robot) - goal, axis=-1)

    def _make_state(self, pipeline_state, robot, goal, rng, steps) -> State:
        dist = self._distance(robot, goal)
        success = (dist < self.spec.success_threshold).astype(jnp.float32)
        done = (steps >= self.spec.episode_length).astype(jnp.float32)
        return State(
            pipeline_state=pipeline_state,
            obs=jnp.concatenate([robot, goal], axis=-1),
            reward=success,
            done=done,
            metrics={"success": success, "distance": dist},
            info={"goal": goal, "rng": rng, "steps": steps},
        )

    # --- to implement --------------------------------------------------------------------------
    def _reset(self, rng: jax.Array, split: str) -> tuple[Any, jax.Array, jax.Array]:
        raise NotImplementedError

    def _physics_step(self, pipeline_state: Any, action: jax.Array) -> tuple[Any, jax.Array]:
        raise NotImplementedError

    def _sample_goal(self, rng: jax.Array) -> jax.Array:
        """A training goal; used when goals are resampled on success."""
        raise NotImplementedError
