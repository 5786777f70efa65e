"""Evaluation rollouts of any goal-conditioned policy on a task (shared by every stage)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from deepdistill.envs.base import GoalEnv

# policy(params, state [B, S], goal [B, G]) -> action [B, A]
PolicyFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


class Recurrent(NamedTuple):
    """A policy with memory: ``init(params, n) -> carry`` at the start of every episode, then
    ``step(params, carry, state [B, S], goal [B, G]) -> (action [B, A], carry)`` once per control step."""

    init: Callable[[Any, int], Any]
    step: Callable[[Any, Any, jax.Array, jax.Array], tuple[jax.Array, Any]]


def as_recurrent(policy: Union[PolicyFn, Recurrent]) -> Recurrent:
    """A memoryless policy as a :class:`Recurrent` with an empty carry (a recurrent one unchanged)."""
    if isinstance(policy, Recurrent):
        return policy
    return Recurrent(lambda params, n: (), lambda params, carry, state, goal: (policy(params, state, goal), carry))


def rollout(env: GoalEnv, policy: Union[PolicyFn, Recurrent], params: Any, key: jax.Array, num_episodes: int,
            split: str) -> dict:
    """Run ``num_episodes`` full episodes of ``split``; traceable (jit it with ``env``/``policy``/``split`` static).

    ``policy`` is a function of the state or a :class:`Recurrent` one (its carry starts with the episodes).

    Returns per-step arrays ``success [T, N]``, ``distance [T, N]``, ``states [T+1, N, S]``, the
    goals ``[N, G]`` and the actions ``[T, N, A]``.
    """
    return rollout_keys(env, policy, params, jax.random.split(key, num_episodes), split)


def rollout_keys(env: GoalEnv, policy: Union[PolicyFn, Recurrent], params: Any, keys: jax.Array, split: str) -> dict:
    """:func:`rollout` of the episodes of ``keys [N, 2]`` (rows of ``jax.random.split(key, n)``: a chunk of
    them runs the same episodes as the whole)."""
    S = env.spec.state_size
    pol = as_recurrent(policy)
    s0 = jax.vmap(lambda k: env.reset_split(k, split))(keys)

    def step(sc, _):
        s, carry = sc
        state, goal = s.obs[:, :S], s.obs[:, S:]
        action, carry = pol.step(params, carry, state, goal)
        s2 = jax.vmap(env.step)(s, action)
        return (s2, carry), (s2.metrics["success"], s2.metrics["distance"], s2.obs[:, :S], action)

    _, (success, distance, states, actions) = jax.lax.scan(step, (s0, pol.init(params, keys.shape[0])), None,
                                                           length=env.spec.episode_length)
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


def episode_metrics(result: dict) -> dict[str, np.ndarray]:
    """Per episode ``[N]``: ``success`` (1 if the goal was reached at any step, else 0), ``time_at_goal``
    (steps within the threshold) and ``final_distance``."""
    success = np.asarray(result["success"])
    return {"success": success.max(axis=0).astype(np.float64), "time_at_goal": success.sum(axis=0).astype(np.float64),
            "final_distance": np.asarray(result["distance"])[-1].astype(np.float64)}


def summarize(result: dict) -> dict[str, float]:
    """Success rate (goal reached at any step), time at goal (steps within the threshold), final distance:
    the means over episodes of :func:`episode_metrics`."""
    return mean_metrics(episode_metrics(result))


def mean_metrics(per_episode: dict[str, np.ndarray]) -> dict[str, float]:
    """``success_rate``, ``time_at_goal``, ``final_distance``: the means of :func:`episode_metrics`."""
    names = {"success": "success_rate", "time_at_goal": "time_at_goal", "final_distance": "final_distance"}
    return {names[k]: float(np.mean(v)) for k, v in per_episode.items()}


def summarize_splits(per_split: dict[str, dict[str, np.ndarray]]) -> dict[str, float]:
    """``{split: episode_metrics}`` -> the flat ``{split/metric: mean}`` every evaluation reports."""
    return _flatten({split: mean_metrics(m) for split, m in per_split.items()})


def _episodes_in_chunks(env: GoalEnv, run_chunk: Callable[[str, np.ndarray], dict], num_episodes: int, seed: int,
                        progress: Optional[Callable[[int], None]]) -> dict[str, dict[str, np.ndarray]]:
    """``{split: episode_metrics}`` of ``num_episodes`` per eval split, run ``run_chunk(split, keys)`` at a
    time in chunks of :func:`chunk_size` episodes (one chunk when they fit); ``progress(n)`` after each."""
    size = chunk_size(num_episodes, env.spec.episode_length)
    out = {}
    for i, split in enumerate(env.spec.eval_splits):
        parts = []
        for keys, valid in chunked(np.asarray(jax.random.split(split_key(seed, i), num_episodes)), size):
            parts.append({k: v[:valid] for k, v in episode_metrics(run_chunk(split, keys)).items()})
            if progress:
                progress(valid)
        out[split] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return out


def make_episode_evaluator(env: GoalEnv, policy: PolicyFn, num_episodes: int, seed: int = 12345,
                           progress: Optional[Callable[[int], None]] = None):
    """A function ``params -> {split: episode_metrics}`` (per-episode arrays ``[N]``) over every eval
    split of ``env``: the same episodes (starts and goals) at every call and for every policy. More
    episodes than one call holds (:func:`chunk_size`) run in chunks of the same episodes; ``progress(n)``
    is told each chunk's ``n``."""
    fns = {split: jax.jit(lambda p, keys, split=split: rollout_keys(env, policy, p, keys, split))
           for split in env.spec.eval_splits}
    return lambda params: _episodes_in_chunks(
        env, lambda split, keys: jax.device_get(fns[split](params, keys)), num_episodes, seed, progress)


def make_evaluator(env: GoalEnv, policy: PolicyFn, num_episodes: int, seed: int = 12345,
                   progress: Optional[Callable[[int], None]] = None):
    """A function ``params -> {split/metric: value}`` over every eval split of ``env``.

    Goals and starts are the same at every call (fixed key), so successive evaluations and
    different policies are compared on identical episodes (see :func:`make_episode_evaluator`).
    """
    episodes = make_episode_evaluator(env, policy, num_episodes, seed, progress)
    return lambda params: summarize_splits(episodes(params))


def split_key(seed: int, index: int) -> jax.Array:
    """The episode key of the ``index``-th eval split: every evaluator uses the same goals."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), index)


def _flatten(per_split: dict[str, dict[str, float]]) -> dict[str, float]:
    return {(k if split == "random" else f"{split}/{k}"): v for split, res in per_split.items() for k, v in res.items()}


def host_rollout(env: GoalEnv, act: Callable[[np.ndarray, np.ndarray], np.ndarray], key: jax.Array,
                 num_episodes: int, split: str, first: Optional[int] = None,
                 record: Optional[Callable[[Any], Any]] = None, reset: Optional[Callable[[], None]] = None) -> dict:
    """``rollout`` for a policy that is not JAX (an ONNX session, or any host callable): the env steps
    are jitted, the policy is called once per step on the whole batch of episodes. Same episodes as
    ``rollout`` for ``key``; ``first`` runs only the first episodes of them. ``record(env_state)`` adds
    ``"recorded"``: its values at the reset and after every step (e.g. the bodies' poses). ``reset()``
    is called when the episodes start (a policy that keeps a history or hidden state clears it)."""
    return host_rollout_keys(env, act, jax.random.split(key, num_episodes)[:first], split, record, reset=reset)


def _host_fns(env: GoalEnv, split: str) -> tuple[Callable, Callable]:
    """The jitted batched reset of ``split`` and step of ``env``."""
    return jax.jit(jax.vmap(lambda key: env.reset_split(key, split))), jax.jit(jax.vmap(env.step))


def host_rollout_keys(env: GoalEnv, act: Callable[[np.ndarray, np.ndarray], np.ndarray], keys: Any, split: str,
                      record: Optional[Callable[[Any], Any]] = None, fns: Optional[tuple[Callable, Callable]] = None,
                      reset: Optional[Callable[[], None]] = None) -> dict:
    """:func:`host_rollout` of the episodes of ``keys [N, 2]``; ``fns``: the ``(reset, step)`` of
    :func:`_host_fns` to reuse (compiled once for many calls); ``reset()`` when the episodes start."""
    S = env.spec.state_size
    reset_env, step = fns or _host_fns(env, split)
    s = reset_env(keys)
    if reset is not None:
        reset()
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


def make_host_episode_evaluator(env: GoalEnv, num_episodes: int, seed: int = 12345,
                                progress: Optional[Callable[[int], None]] = None):
    """Like :func:`make_episode_evaluator` (same episodes, same chunks) for a host policy
    ``act(state [B, S], goal [B, G])`` (``reset()``, if given, before each chunk of episodes: a policy with
    a history or hidden state starts them afresh)."""
    fns = {split: _host_fns(env, split) for split in env.spec.eval_splits}
    return lambda act, reset=None: _episodes_in_chunks(
        env, lambda split, keys: host_rollout_keys(env, act, keys, split, fns=fns[split], reset=reset), num_episodes,
        seed, progress)


def make_host_evaluator(env: GoalEnv, num_episodes: int, seed: int = 12345,
                        progress: Optional[Callable[[int], None]] = None):
    """Like :func:`make_evaluator` (same episodes, same chunks) for a host policy ``act(state [B, S], goal [B, G])``
    (``reset()``, if given, before each chunk of episodes)."""
    episodes = make_host_episode_evaluator(env, num_episodes, seed, progress)
    return lambda act, reset=None: summarize_splits(episodes(act, reset))
