"""The ONNX student in native MuJoCo beside its JAX env: the ``native_mujoco`` rows of ``evaluate``, the
sim-to-sim observation gap, and the random-policy baseline row every report shows."""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import numpy as np

from deepdistill.envs import GoalEnv
from deepdistill.core.rollout import _flatten, chunk_size, chunked, make_host_episode_evaluator, split_key, summarize_splits

SIM2SIM_STEPS = 10
SIM2SIM_EPISODES = 16
SCALE_FLOOR = 0.01
"""An entry's scale is at least this fraction of the observation's largest value (see :func:`sim2sim`)."""


def random_policy(env: GoalEnv, seed: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``act(state [B, S], goal [B, G])``: actions uniform over the action range (seeded)."""
    rng = np.random.default_rng(seed)
    lo, hi, A = env.spec.action_low, env.spec.action_high, env.spec.action_size
    return lambda s, g: rng.uniform(lo, hi, (len(s), A)).astype(np.float32)


def random_row(env: GoalEnv, episodes: int, seed: int, progress: Optional[Callable[[int], None]] = None
               ) -> tuple[dict, dict]:
    """The random policy on the same episodes as every other row: its report row and its per-episode
    results ``{split: episode_metrics}``."""
    per_episode = make_host_episode_evaluator(env, episodes, seed, progress)(random_policy(env, seed))
    return {"name": "random", "kind": "random", **summarize_splits(per_episode)}, per_episode


def jax_starts(env: GoalEnv, key: jax.Array, n: int, split: str, jit: Callable = jax.jit, keys: Any = None
               ) -> tuple[Any, list[tuple[np.ndarray, ...]]]:
    """The env's batch of ``n`` resets of ``split`` and the same starts ``(qpos, qvel, ctrl, goal)`` for MuJoCo
    (``keys``: the episodes' own keys, rows of ``jax.random.split(key, ...)``, instead of ``key`` and ``n``)."""
    keys = jax.random.split(key, n) if keys is None else keys
    s = jit(jax.vmap(lambda k: env.reset_split(k, split)))(keys)
    ps = jax.device_get(s.pipeline_state)
    goals = np.asarray(s.info["goal"])
    return s, [(np.asarray(ps.q[i], np.float64), np.asarray(ps.qd[i], np.float64), np.asarray(ps.ctrl[i], np.float64),
                goals[i]) for i in range(len(keys))]


def native_controller(env: GoalEnv, policy: Any, xml: Optional[str] = None):
    """The native controller of an ONNX policy, or None when the task has no native recipe."""
    from deepdistill.export.mujoco_controller import MujocoController

    if not getattr(env, "native", False) or not (policy.metadata.get("controller") or {}).get("native"):
        return None
    return MujocoController(policy, xml)


def native_row(env: GoalEnv, ctl: Any, episodes: int, seed: int, progress: Optional[Callable[[int], None]] = None) -> dict:
    """Success, time at goal and final distance in native MuJoCo from the same starts and goals as the
    JAX evaluation (every eval split, in the same chunks), and the sim-to-sim observation gap."""
    per_split = {}
    size = chunk_size(episodes, env.spec.episode_length)
    names = ("success_rate", "time_at_goal", "final_distance")
    for i, split in enumerate(env.spec.eval_splits):
        reset = jax.jit(jax.vmap(lambda k, split=split: env.reset_split(k, split)))
        parts = []
        for part, valid in chunked(np.asarray(jax.random.split(split_key(seed, i), episodes)), size):
            _, starts = jax_starts(env, None, 0, split, jit=lambda f: reset, keys=part[:valid])
            parts.append((ctl.run(starts=starts, split=split), valid))
            if progress:
                progress(valid)
        per_split[split] = ({k: parts[0][0][k] for k in names} if len(parts) == 1 else
                            {k: sum(r[k] * n for r, n in parts) / episodes for k in names})
    return {**_flatten(per_split), **sim2sim(env, ctl, split_key(seed, 0), min(episodes, SIM2SIM_EPISODES))}


def sim2sim(env: GoalEnv, ctl: Any, key: jax.Array, episodes: int = SIM2SIM_EPISODES, steps: int = SIM2SIM_STEPS,
            jit: Callable = jax.jit, states: Optional[list] = None) -> dict:
    """Largest observation difference between the MJX env and native MuJoCo over the first ``steps`` control
    steps of the same episodes, each side driven by the policy from its own observations.

    ``sim2sim_obs_err`` is relative to the observation's scale: per recipe entry (a qpos range, a body
    point, ...), ``max |obs_mjx - obs_native| / scale`` over the steps and episodes, then the largest
    over entries; ``scale`` is the entry's largest ``|obs_mjx|``, but at least 1% of the whole
    observation's (an entry that stays near zero, a resting cube's velocity, would otherwise turn
    float32 rounding into a large relative gap). ``sim2sim_obs_err_abs`` is the largest absolute difference. ``states``, when
    given, receives the env's state after the reset and after each step (``jit`` compiles reset and step).

    A student with sensors sees its frame on each side, and its actions land ``action_delay`` steps later
    on each side (the MJX env through :class:`~deepdistill.envs.sensors.SensorEnv`, MuJoCo through the
    controller's queue); each side has its own copy of the policy, so each keeps its own history."""
    from deepdistill.evaluate.sensors import onnx_eval

    S = env.spec.state_size
    nat_policy = ctl.policy
    mjx_policy = type(nat_policy)(nat_policy.path) if getattr(nat_policy, "stateful", False) else nat_policy
    mjx_env, act, reset = onnx_eval(env, mjx_policy)
    s, starts = jax_starts(mjx_env, key, episodes, env.spec.eval_splits[0], jit)
    step = jit(jax.vmap(mjx_env.step))
    if states is not None:
        states.append(jax.device_get(s))
    datas, obs_n = zip(*(ctl.start(q, v, c) for q, v, c, _ in starts))
    obs_n = np.stack(obs_n)
    goals = np.asarray(s.info["goal"], np.float32)
    mjx_obs, nat_obs = [np.asarray(s.obs[:, :S])], [obs_n]
    for p in {id(mjx_policy): mjx_policy, id(nat_policy): nat_policy}.values():
        if hasattr(p, "reset"):
            p.reset()
    queue = [np.zeros((len(starts), env.spec.action_size), np.float32)] * ctl.action_delay
    frame = getattr(nat_policy, "frame", lambda x: x)
    for _ in range(steps):
        s = step(s, np.asarray(act(np.asarray(s.obs[:, :-env.spec.goal_size]), goals), np.float32))
        queue.append(np.asarray(nat_policy.act(frame(obs_n.astype(np.float32)), goals)))
        obs_n = np.stack([ctl.step(d, a) for d, a in zip(datas, queue.pop(0))])
        mjx_obs.append(np.asarray(s.obs[:, :S]))
        nat_obs.append(obs_n)
        if states is not None:
            states.append(jax.device_get(s))
    return {**observation_gap(ctl, np.stack(mjx_obs), np.stack(nat_obs)), "sim2sim_steps": steps, "sim2sim_episodes": episodes}


def observation_gap(ctl: Any, mjx_obs: np.ndarray, native_obs: np.ndarray) -> dict:
    """The sim-to-sim gap between observations ``[..., S]`` of the MJX env and of native MuJoCo (see
    :func:`sim2sim`): the largest relative difference over the recipe's entries, which entry, and the
    largest absolute difference."""
    a, b = np.asarray(mjx_obs), np.asarray(native_obs)
    diff = np.abs(a - b)
    floor = max(SCALE_FLOOR * float(np.abs(a).max()), 1e-12)
    rel = {}
    for entry, sl in zip(ctl.observe.recipe.entries, ctl.observe.slices):
        scale = max(float(np.abs(a[..., sl]).max()), floor)
        rel[f"{entry['kind']} (observation[{sl.start}:{sl.stop}])"] = float(diff[..., sl].max()) / scale
    worst = max(rel, key=rel.get)
    return {"sim2sim_obs_err": rel[worst], "sim2sim_obs_err_abs": float(diff.max()), "sim2sim_worst_entry": worst}
