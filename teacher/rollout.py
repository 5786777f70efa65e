"""Evaluation rollouts of any goal-conditioned policy on a task (shared by every stage)."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from deepdistill.teacher.envs.base import GoalEnv

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
    key = jax.random.PRNGKey(seed)

    def evaluate(params) -> dict[str, float]:
        out: dict[str, float] = {}
        for i, (split, fn) in enumerate(fns.items()):
            res = summarize(jax.device_get(fn(params, jax.random.fold_in(key, i))))
            for k, v in res.items():
                out[k if split == "random" else f"{split}/{k}"] = v
        return out

    return evaluate
