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
from typing import Any

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


class GoalEnv(Env):
    """Base class of the goal-conditioned tasks.

    Subclasses implement ``_reset(rng, split)`` returning ``(state, goal, pipeline_state)`` and
    ``_physics_step(pipeline_state, action)`` returning ``(pipeline_state, state)``. The base class
    builds observations, distances, the success flag and goal bookkeeping identically for all.
    """

    spec: EnvSpec

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
        pipeline_state, robot, goal = self._reset(key, split)
        return self._make_state(pipeline_state, robot, goal, rng, jnp.zeros((), jnp.int32))

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
