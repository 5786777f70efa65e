"""Evaluation rollouts of any goal-conditioned policy on a task (shared by every stage)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from deepdistill.envs.base import GoalEnv

# policy(params, state [B, S], goal [B, G]) -> action [B, A]
PolicyFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


def rollout(env: GoalEnv, policy: PolicyFn, params: Any, key: jax.Array, num_episodes: int, split: str) -> dict:
    """Run ``num_episodes`` full episodes of ``split``; traceable (jit it with ``env``/``policy``/``split`` static).

    Returns per-step arrays ``success [T, N]``, ``distance [T, N]``, ``states [T+1, N, S]``, the
    goals ``[N, G]`` and the actions ``[T, N, A]``.
    """
    return rollout_keys(env, policy, params, jax.random.split(key, num_episodes), split)


def rollout_keys(env: GoalEnv, policy: PolicyFn, params: Any, keys: jax.Array, split: str) -> dict:
    """:func:`rollout` of the episodes of ``keys [N, 2]`` (rows of ``jax.random.split(key, n)``: a chunk of
    them runs the same episodes as the whole)."""
    S = env.spec.state_size
    s0 = jax.vmap(lambda k: env.reset_split(k, split))(keys)

    def step(s, _):
        state, goal = s.obs[:, :S], s.obs[:, S:]
        action = policy(params, state, goal)
        s2 = jax.vmap(env.step)(s, action)
        return s2, (s2.metrics["success"], s2.metrics["distance"], s2.obs[:, :S], action)

    _, (success, distance, states, actions) = jax.lax.scan(step, s0, None, length=env.spec.episode_length)
    states = jnp.concatenate([s0.obs[None, :, :S], states], axis=0)
    return {"success": success, "distance": distance, "states": states, "goals": s0.obs[:, S:], "actions": actions}


EVAL_CHUNK_STEPS = 262_144
"""Env steps per episode (all envs) of one compiled evaluation call at most (256 episodes of 1,000
steps): longer evaluations run in chunks, so memory stays bounded, progress can be shown and Ctrl-C
is heard between chunks. Evaluations of at most 256 episodes are always one call."""


def chunk_size(num_episodes: int, episode_length: int) -> int:
    """Episodes per compiled evaluation call (:data:`EVAL_CHUNK_STEPS`)."""
    return max(1, min(num_episodes, max(256, EVAL_CHUNK_STEPS // max(episode_length, 1))))


def chunked(keys: np.ndarray, size: int) -> Iterator[tuple[np.ndarray, int]]:
    """``(chunk of exactly size keys, how many of them are real)``: the last chunk is padded with the
    first keys (one compiled shape for every chunk; the padding's results are dropped)."""
    n = len(keys)
    for start in range(0, n, size):
        part = keys[start:start + size]
        valid = len(part)
        if valid < size:
            part = np.concatenate([part, keys[: size - valid]])
        yield part, valid


class Summary:
    """Success rate, time at goal and final distance accumulated over chunks of episodes."""

    def __init__(self):
        self.n, self.success, self.time, self.final = 0, 0.0, 0.0, 0.0

    def add(self, success: np.ndarray, distance: np.ndarray) -> None:
        """``success [T, N]``, ``distance [T, N]`` of ``N`` episodes."""
        success = np.asarray(success, np.float64)
        self.n += success.shape[1]
        self.success += float(success.max(axis=0).sum())
        self.time += float(success.sum())
        self.final += float(np.asarray(distance, np.float64)[-1].sum())

    def result(self) -> dict[str, float]:
        return {"success_rate": self.success / self.n, "time_at_goal": self.time / self.n,
                "final_distance": self.final / self.n}


def summarize(result: dict) -> dict[str, float]:
    """Success rate (goal reached at any step), time at goal (steps within the threshold), final distance."""
    success = np.asarray(result["success"])
    return {
        "success_rate": float(np.mean(success.max(axis=0))),
        "time_at_goal": float(np.mean(success.sum(axis=0))),
        "final_distance": float(np.mean(np.asarray(result["distance"])[-1])),
    }


def make_evaluator(env: GoalEnv, policy: PolicyFn, num_episodes: int, seed: int = 12345,
                   progress: Optional[Callable[[int], None]] = None):
    """A function ``params -> {split/metric: value}`` over every eval split of ``env``.

    Goals and starts are the same at every call (fixed key), so successive evaluations and
    different policies are compared on identical episodes. More episodes than one call holds
    (:func:`chunk_size`) run in chunks of the same episodes; ``progress(n)`` is told each chunk's ``n``.
    """
    size = chunk_size(num_episodes, env.spec.episode_length)
    fns = {split: jax.jit(lambda p, keys, split=split: rollout_keys(env, policy, p, keys, split))
           for split in env.spec.eval_splits}

    def evaluate(params) -> dict[str, float]:
        out = {}
        for i, (split, fn) in enumerate(fns.items()):
            keys = jax.random.split(split_key(seed, i), num_episodes)
            if size == num_episodes:  # one call: the figures of every evaluation before chunks existed
                out[split] = summarize(jax.device_get(fn(params, keys)))
                if progress:
                    progress(num_episodes)
                continue
            total = Summary()
            for part, valid in chunked(np.asarray(keys), size):
                r = jax.device_get(fn(params, part))
                total.add(r["success"][:, :valid], r["distance"][:, :valid])
                if progress:
                    progress(valid)
            out[split] = total.result()
        return _flatten(out)

    return evaluate


def split_key(seed: int, index: int) -> jax.Array:
    """The episode key of the ``index``-th eval split: every evaluator uses the same goals."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), index)


def _flatten(per_split: dict[str, dict[str, float]]) -> dict[str, float]:
    return {(k if split == "random" else f"{split}/{k}"): v for split, res in per_split.items() for k, v in res.items()}


def host_rollout(env: GoalEnv, act: Callable[[np.ndarray, np.ndarray], np.ndarray], key: jax.Array,
                 num_episodes: int, split: str, first: Optional[int] = None,
                 record: Optional[Callable[[Any], Any]] = None) -> dict:
    """``rollout`` for a policy that is not JAX (an ONNX session, or any host callable): the env steps
    are jitted, the policy is called once per step on the whole batch of episodes. Same episodes as
    ``rollout`` for ``key``; ``first`` runs only the first episodes of them. ``record(env_state)`` adds
    ``"recorded"``: its values at the reset and after every step (e.g. the bodies' poses)."""
    return host_rollout_keys(env, act, jax.random.split(key, num_episodes)[:first], split, record)


def _host_fns(env: GoalEnv, split: str) -> tuple[Callable, Callable]:
    """The jitted batched reset of ``split`` and step of ``env``."""
    return jax.jit(jax.vmap(lambda key: env.reset_split(key, split))), jax.jit(jax.vmap(env.step))


def host_rollout_keys(env: GoalEnv, act: Callable[[np.ndarray, np.ndarray], np.ndarray], keys: Any, split: str,
                      record: Optional[Callable[[Any], Any]] = None, fns: Optional[tuple[Callable, Callable]] = None) -> dict:
    """:func:`host_rollout` of the episodes of ``keys [N, 2]``; ``fns``: the ``(reset, step)`` of
    :func:`_host_fns` to reuse (compiled once for many calls)."""
    S = env.spec.state_size
    reset, step = fns or _host_fns(env, split)
    s = reset(keys)
    states, goals = [np.asarray(s.obs[:, :S])], np.asarray(s.obs[:, S:])
    success, distance, actions, recorded = [], [], [], [record(s)] if record else []
    for _ in range(env.spec.episode_length):
        a = np.asarray(act(states[-1], goals), np.float32)
        s = step(s, a)
        success.append(np.asarray(s.metrics["success"]))
        distance.append(np.asarray(s.metrics["distance"]))
        states.append(np.asarray(s.obs[:, :S]))
        actions.append(a)
        if record:
            recorded.append(record(s))
    out = {"success": np.stack(success), "distance": np.stack(distance), "states": np.stack(states),
           "goals": goals, "actions": np.stack(actions)}
    if record:
        out["recorded"] = jax.tree.map(lambda *xs: np.stack(xs), *jax.device_get(recorded))
    return out


def make_host_evaluator(env: GoalEnv, num_episodes: int, seed: int = 12345,
                        progress: Optional[Callable[[int], None]] = None):
    """Like ``make_evaluator`` (same episodes, same chunks) for a host policy ``act(state [B, S], goal [B, G])``."""
    size = chunk_size(num_episodes, env.spec.episode_length)

    fns = {split: _host_fns(env, split) for split in env.spec.eval_splits}

    def evaluate(act) -> dict[str, float]:
        out = {}
        for i, split in enumerate(env.spec.eval_splits):
            keys = jax.random.split(split_key(seed, i), num_episodes)
            if size == num_episodes:
                out[split] = summarize(host_rollout_keys(env, act, keys, split, fns=fns[split]))
                if progress:
                    progress(num_episodes)
                continue
            total = Summary()
            for part, valid in chunked(np.asarray(keys), size):
                r = host_rollout_keys(env, act, part, split, fns=fns[split])
                total.add(r["success"][:, :valid], r["distance"][:, :valid])
                if progress:
                    progress(valid)
            out[split] = total.result()
        return _flatten(out)

    return evaluate
