"""A trajectory replay buffer that lives on the device.

Layout: time-major rings ``states [T, E, S]`` and ``actions [T, E, A]`` for ``E`` environments.
All environments of a batch start and end their fixed-length episodes together, so the episode of
a logical time ``t`` (the ``t``-th step ever written) spans ``[t - t % L, t - t % L + L)``.
Training goals are future states of the same episode, ``t + k`` with ``P(k) ∝ gamma^(k-1)`` over the
steps that remain (truncated geometric, sampled exactly by inverting its CDF).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class Replay:
    states: jax.Array  # [T, E, S]
    actions: jax.Array  # [T, E, A]
    written: jax.Array  # scalar int32: time steps written so far (logical)

    @property
    def capacity(self) -> int:
        return self.states.shape[0]


def init_replay(capacity: int, num_envs: int, state_size: int, action_size: int) -> Replay:
    return Replay(
        states=jnp.zeros((capacity, num_envs, state_size), jnp.float32),
        actions=jnp.zeros((capacity, num_envs, action_size), jnp.float32),
        written=jnp.zeros((), jnp.int32),
    )


def insert(replay: Replay, states: jax.Array, actions: jax.Array) -> Replay:
    """Append ``U`` time steps ``states [U, E, S]``, ``actions [U, E, A]``. ``capacity % U == 0``."""
    row = replay.written % replay.capacity
    return replay.replace(
        states=jax.lax.dynamic_update_slice_in_dim(replay.states, states, row, axis=0),
        actions=jax.lax.dynamic_update_slice_in_dim(replay.actions, actions, row, axis=0),
        written=replay.written + states.shape[0],
    )


def truncated_geometric(u: jax.Array, gamma: float, max_k: jax.Array) -> jax.Array:
    """``k`` in ``[1, max_k]`` with ``P(k) ∝ gamma^(k-1)``, from uniforms ``u`` in [0, 1)."""
    if gamma >= 1.0:
        k = 1 + jnp.floor(u * max_k)
    else:
        mass = 1.0 - gamma ** max_k.astype(jnp.float32)
        k = 1 + jnp.floor(jnp.log1p(-u * mass) / jnp.log(gamma))
    return jnp.clip(k.astype(jnp.int32), 1, max_k)


def sample(
    replay: Replay, key: jax.Array, batch_size: int, episode_length: int, gamma: float, goal_indices: tuple[int, ...],
    ahead: int = 0,
) -> dict[str, jax.Array]:
    """A batch of ``(state [B, S], action [B, A], future_goal [B, G])``; with ``ahead > 0`` also
    ``ahead_state [B, S]``: the row ``ahead`` steps later in the same episode (its last stored row
    where the episode, or what is written of it, ends sooner).

    Needs at least two written steps. Steps that end an episode have no future and are shifted back
    by one (the insert granularity is at least 2 steps, so the earlier step is always still stored).
    """
    k_t, k_e, k_g = jax.random.split(key, 3)
    cap, num_envs = replay.states.shape[:2]
    n = replay.written
    lo = jnp.maximum(0, n - cap)
    t = lo + jax.random.randint(k_t, (batch_size,), 0, jnp.maximum(n - 1 - lo, 1))
    t = jnp.where(t % episode_length == episode_length - 1, t - 1, t)
    env = jax.random.randint(k_e, (batch_size,), 0, num_envs)
    return _gather(replay, t, env, k_g, episode_length, gamma, goal_indices, ahead)


def sample_sequences(
    replay: Replay, key: jax.Array, num_sequences: int, length: int, episode_length: int, gamma: float,
    goal_indices: tuple[int, ...], ahead: int = 0,
) -> dict[str, jax.Array]:
    """``num_sequences`` runs of ``length`` consecutive steps of one environment each: every field of
    :func:`sample` with a leading ``[N, L]``, and ``first [N, L]``: whether a step starts an episode (a
    sequence may cross into the next episode; a recurrent policy's memory restarts there). A step that
    ends an episode takes itself as its future goal. Needs at least ``length`` written steps."""
    k_t, k_e, k_g = jax.random.split(key, 3)
    cap, num_envs = replay.states.shape[:2]
    n = replay.written
    lo = jnp.maximum(0, n - cap)
    t0 = lo + jax.random.randint(k_t, (num_sequences,), 0, jnp.maximum(n - length - lo + 1, 1))
    t = t0[:, None] + jnp.arange(length)[None, :]
    env = jnp.broadcast_to(jax.random.randint(k_e, (num_sequences,), 0, num_envs)[:, None], t.shape)
    out = _gather(replay, t, env, k_g, episode_length, gamma, goal_indices, ahead)
    return {**out, "first": t % episode_length == 0}


def _gather(replay: Replay, t: jax.Array, env: jax.Array, key: jax.Array, episode_length: int, gamma: float,
            goal_indices: tuple[int, ...], ahead: int) -> dict[str, jax.Array]:
    """The rows of logical steps ``t`` of environments ``env`` (any equal shapes), a future goal of each."""
    cap = replay.states.shape[0]
    episode_end = jnp.minimum(t - t % episode_length + episode_length - 1, replay.written - 1)
    k = truncated_geometric(jax.random.uniform(key, t.shape), gamma, episode_end - t)
    row, future_row = t % cap, (t + k) % cap
    future = replay.states[future_row, env]
    out = {
        "state": replay.states[row, env],
        "action": replay.actions[row, env],
        "future_goal": future[..., jnp.asarray(goal_indices)],
    }
    if ahead:
        out["ahead_state"] = replay.states[jnp.minimum(t + ahead, episode_end) % cap, env]
    return out
