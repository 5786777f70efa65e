"""Evaluation rollouts of any goal-conditioned policy on a task (shared by every stage)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

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
    S = env.spec.state_size
    s0 = jax.vmap(lambda k: env.reset_split(k, split))(jax.random.split(key, num_episodes))

    def step(s, _):
        state, goal = s.obs[:, :S], s.obs[:, S:]
        action = policy(params, state, goal)
        s2 = jax.vmap(env.step)(s, action)
        return s2, (s2.metrics["success"], s2.metrics["distance"], s2.obs[:, :S], action)

    _, (success, distance, states, actions) = jax.lax.scan(step, s0, None, length=env.spec.episode_length)
    states = jnp.concatenate([s0.obs[None, :, :S], states], axis=0)
    return {"success": success, "distance": distance, "states": states, "goals": s0.obs[:, S:], "actions": actions}


def summarize(result: dict) -> dict[str, float]:
    """Success rate (goal reached at any step), time at goal (steps within the threshold), final distance."""
    success = np.asarray(result["success"])
    return {
        "success_rate": float(np.mean(success.max(axis=0))),
        "time_at_goal": float(np.mean(success.sum(axis=0))),
        "final_distance": float(np.mean(np.asarray(result["distance"])[-1])),
    }


def make_evaluator(env: GoalEnv, policy: PolicyFn, num_episodes: int, seed: int = 12345):
    """A function ``params -> {split/metric: value}`` over every eval split of ``env``.

    Goals and starts are the same at every call (fixed key), so successive evaluations and
    different policies are compared on identical episodes.
    """
    fns = {
        split: jax.jit(lambda p, k, split=split: rollout(env, policy, p, k, num_episodes, split))
        for split in env.spec.eval_splits
    }

    def evaluate(params) -> dict[str, float]:
        return _flatten({split: summarize(jax.device_get(fn(params, split_key(seed, i))))
                         for i, (split, fn) in enumerate(fns.items())})

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
    S = env.spec.state_size
    reset = jax.jit(jax.vmap(lambda k: env.reset_split(k, split)))
    step = jax.jit(jax.vmap(env.step))
    s = reset(jax.random.split(key, num_episodes)[:first])
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


def make_host_evaluator(env: GoalEnv, num_episodes: int, seed: int = 12345):
    """Like ``make_evaluator`` (same episodes) for a host policy ``act(state [B, S], goal [B, G])``."""

    def evaluate(act) -> dict[str, float]:
        return _flatten({split: summarize(host_rollout(env, act, split_key(seed, i), num_episodes, split))
                         for i, split in enumerate(env.spec.eval_splits)})

    return evaluate
