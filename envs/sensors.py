"""A task seen through a student's sensors: noise, history, previous actions and action delay (JAX).

``SensorEnv(env, model)`` steps ``env`` and gives every policy two views of each control step in its
observation ``concat(state [S], sensed [I], goal [G])``:

- ``state``: the task's full, noise-free robot state (what the teacher labels from);
- ``sensed``: the student's input (:class:`deepdistill.envs.observation.ObservationModel`): its last K
  frames (the chosen terms plus Gaussian noise in each term's units), oldest first, then its K previous
  commanded actions when ``history_actions``.

Its ``spec`` is the task's with ``state_size = S + I`` and the same ``goal_indices`` (into the true
state), so rollouts, the replay buffer and hindsight goals work unchanged, and success is measured on
the true state. An action passed to :meth:`step` is the command of this control step: it is clipped
into the action range, queued, and the command of ``action_delay`` steps ago is applied (zeros for
the first ``action_delay`` steps of an episode). The sensor buffers and the noise key live in
``State.info`` (``sensor_frames [K, F]``, ``sensor_actions [K, A]``, ``sensor_queue [N, A]``,
``sensor_key``), present only when used (Orbax refuses zero-size arrays).

The noise of an episode follows from its reset key alone: the same key gives the same noise.

For robustness sweeps, ``noise_scale`` multiplies every sigma and ``delay`` replaces the model's
action delay; both may be traced values (one compiled rollout for every condition), with the queue
sized by the static ``max_delay``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from deepdistill.envs.base import GoalEnv, State
from deepdistill.envs.observation import ObservationModel


class SensorEnv:
    """``env`` seen through ``model`` (see the module docstring); ``reset``, ``reset_split``, ``step``, ``spec``."""

    def __init__(self, env: GoalEnv, model: ObservationModel, noise_scale: Any = 1.0, delay: Any = None,
                 max_delay: int | None = None):
        self.env, self.model = env, model
        self.noise_scale = noise_scale
        self.delay = model.action_delay if delay is None else delay
        self.max_delay = int(max_delay if max_delay is not None else (model.action_delay if delay is None else delay))
        spec = env.spec
        if model.action_size != spec.action_size:
            model = model.replace(action_size=spec.action_size)
            self.model = model
        if max(model.frame_indices(), default=-1) >= spec.state_size:
            raise ValueError(f"observation model reads state entries past the task's {spec.state_size}")
        self.true_size = spec.state_size
        self.spec = dataclasses.replace(spec, state_size=spec.state_size + model.input_size)
        self._idx = jnp.asarray(model.frame_indices(), jnp.int32)
        self._sigma = jnp.asarray(model.frame_sigmas(), jnp.float32)

    # --- views of an observation ---------------------------------------------------------------------
    def true_state(self, state: jax.Array) -> jax.Array:
        """``[..., S + I] -> [..., S]``: the full, noise-free robot state."""
        return state[..., : self.true_size]

    def sensed(self, state: jax.Array) -> jax.Array:
        """``[..., S + I] -> [..., I]``: the student's input."""
        return state[..., self.true_size:]

    # --- brax Env interface -------------------------------------------------------------------------------
    def reset(self, rng: jax.Array) -> State:
        return self.reset_split(rng, "train")

    def reset_split(self, rng: jax.Array, split: str) -> State:
        k_env, k_noise = jax.random.split(rng)
        s = self.env.reset_split(k_env, split)
        m, A = self.model, self.spec.action_size
        key, k = jax.random.split(k_noise)
        frame = self._frame(s.obs[: self.true_size], k)
        sensor = {"sensor_frames": jnp.tile(frame[None], (m.history, 1)), "sensor_key": key}
        if m.history_actions:
            sensor["sensor_actions"] = jnp.zeros((m.history, A), jnp.float32)
        if self.max_delay:
            sensor["sensor_queue"] = jnp.zeros((self.max_delay, A), jnp.float32)
        return self._observe(s, sensor)

    def step(self, state: State, action: jax.Array) -> State:
        spec, m = self.spec, self.model
        command = jnp.clip(action, spec.action_low, spec.action_high)
        sensor = {k: v for k, v in state.info.items() if k.startswith("sensor_")}
        if self.max_delay:  # the commands of the last max_delay steps, oldest first, then this one
            queue = jnp.concatenate([sensor["sensor_queue"], command[None]])
            applied, sensor["sensor_queue"] = queue[self.max_delay - self.delay], queue[1:]
        else:
            applied = command
        S, I = self.true_size, self.model.input_size
        inner = state.replace(obs=jnp.concatenate([state.obs[:S], state.obs[S + I:]]),
                              info={k: v for k, v in state.info.items() if not k.startswith("sensor_")})
        s = self.env.step(inner, applied)
        key, k = jax.random.split(sensor["sensor_key"])
        frame = self._frame(s.obs[: self.true_size], k)
        sensor["sensor_key"] = key
        sensor["sensor_frames"] = jnp.concatenate([sensor["sensor_frames"][1:], frame[None]])
        if m.history_actions:
            sensor["sensor_actions"] = jnp.concatenate([sensor["sensor_actions"][1:], command[None]])
        return self._observe(s, sensor)

    # --- internals ----------------------------------------------------------------------------------------
    def _frame(self, true_state: jax.Array, key: jax.Array) -> jax.Array:
        frame = true_state[self._idx]
        if self.model.noisy:
            frame = frame + (self.noise_scale * self._sigma) * jax.random.normal(key, frame.shape, frame.dtype)
        return frame

    def _observe(self, s: State, sensor: dict[str, Any]) -> State:
        """The task's state with the student's input inserted before the goal, and the buffers in ``info``."""
        S = self.true_size
        parts = [sensor["sensor_frames"].reshape(-1)]
        if self.model.history_actions:
            parts.append(sensor["sensor_actions"].reshape(-1))
        obs = jnp.concatenate([s.obs[:S], *parts, s.obs[S:]])
        return s.replace(obs=obs, info={**s.info, **sensor})
