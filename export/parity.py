"""The parity check: an exported model must compute what the JAX model computes.

Inputs come from two places: random normal draws (the whole input space, far from the data too)
and states of the task itself (every reset split, rolled a few steps with random actions), so the
check covers the states a controller will feed. The ONNX side runs in onnxruntime with the
runtime's session options, batched and one sample at a time.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort

from deepdistill.core.errors import ConfigError, RunError
from deepdistill.export.convert import ModelDef
from deepdistill.export.runtime import session_options
from deepdistill.envs import EnvSpec, make_env

SINGLE_SAMPLE_CHECKS = 8  # samples also run at batch 1 (another kernel path in onnxruntime)


class ParityError(RuntimeError):
    """The ONNX model disagrees with the JAX model (a bug in the conversion, not the user's fault);
    nothing was written."""


def parity_inputs(spec: EnvSpec, n: int, env_steps: int, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """``{"random": {...}, "task": {...}}``, each ``{"observation" [n, S], "goal" [n, G], "action" [n, A]}``."""
    rng = np.random.default_rng(seed)
    S, G, A = spec.state_size, spec.goal_size, spec.action_size
    random = {
        "observation": 2.0 * rng.standard_normal((n, S)),
        "goal": 2.0 * rng.standard_normal((n, G)),
        "action": rng.uniform(-1.0, 1.0, (n, A)),
    }
    states, goals = task_states(spec, n, env_steps, seed)
    task = {"observation": states, "goal": goals, "action": rng.uniform(-1.0, 1.0, (n, A))}
    return {k: {name: np.asarray(v, np.float32) for name, v in d.items()} for k, d in (("random", random), ("task", task))}


def task_states(spec: EnvSpec, n: int, env_steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (state, goal) pairs visited in ``spec``'s task: resets of every split, then ``env_steps``
    random-action steps; a random subset of ``n`` of them."""
    splits = ("train",) + tuple(spec.eval_splits)
    steps = max(1, env_steps)
    n_envs = max(1, -(-n // (len(splits) * steps)))
    try:
        rollout = _rollout(spec.name, spec.episode_length, splits, n_envs, steps)
    except ConfigError as e:
        raise RunError(f"task {spec.name!r} of the run is not registered in this version ({e}); cannot check parity") from None
    obs = np.asarray(rollout(jax.random.PRNGKey(seed)), np.float32)
    pick = np.random.default_rng(seed + 1).permutation(len(obs))[:n]
    return obs[pick, : spec.state_size], obs[pick, spec.state_size :]


@functools.lru_cache(maxsize=16)
def _rollout(task: str, episode_length: int, splits: tuple[str, ...], n_envs: int, steps: int):
    """Jitted ``key -> obs [steps * len(splits) * n_envs, S + G]``: ``n_envs`` resets of each split,
    then random-action steps of them all (one compiled program, cached across exports)."""
    env = make_env(task, episode_length=episode_length)
    spec = env.spec

    def rollout(key):
        keys = jax.random.split(key, len(splits) + 1)
        resets = [jax.vmap(lambda k, s=split: env.reset_split(k, s))(jax.random.split(k, n_envs)) for k, split in zip(keys, splits)]
        state = jax.tree.map(lambda *xs: jnp.concatenate(xs), *resets)

        def step(state, k):
            a = jax.random.uniform(k, (len(splits) * n_envs, spec.action_size), minval=spec.action_low, maxval=spec.action_high)
            return jax.vmap(env.step)(state, a), state.obs

        _, obs = jax.lax.scan(step, state, jax.random.split(keys[-1], steps))
        return obs.reshape(-1, obs.shape[-1])

    return jax.jit(rollout)


def session(model_bytes: bytes) -> ort.InferenceSession:
    """A CPU session with the runtime's options (one thread, all graph optimisations)."""
    return ort.InferenceSession(model_bytes, session_options(1), providers=["CPUExecutionProvider"])


def check_parity(d: ModelDef, model: onnx.ModelProto, inputs: dict[str, dict[str, np.ndarray]], tolerance: float) -> dict:
    """Compare ``model`` with ``d.reference`` on every input set; raise :class:`ParityError` past the
    tolerance. Returns the figures recorded in the metadata."""
    sess = session(model.SerializeToString())
    figures: dict = {"tolerance": tolerance, "measure": "abs" if d.name == "policy" else "abs / max(1, max|jax|)"}
    worst = 0.0
    for source, arrays in inputs.items():
        feeds = {p.name: arrays[p.name] for p in d.inputs}
        # float32 products on every backend: a GPU's default (TF32 on Hopper) alone is ~5e-4 off, above
        # the tolerance, and says nothing about the conversion (seen on an H200)
        with jax.default_matmul_precision("highest"):
            want = np.asarray(d.reference(*feeds.values()), np.float32)
        got = sess.run([d.output.name], feeds)[0]
        one = np.concatenate(
            [sess.run([d.output.name], {k: v[i : i + 1] for k, v in feeds.items()})[0] for i in range(min(SINGLE_SAMPLE_CHECKS, len(want)))]
        )
        err = max(float(np.max(np.abs(got - want))), float(np.max(np.abs(one - want[: len(one)]))))
        if not (np.isfinite(got).all() and np.isfinite(want).all()):
            err = float("inf")
        scale = 1.0 if d.name == "policy" else max(1.0, float(np.max(np.abs(want))))
        figures[source] = {"samples": len(want), "max_abs_err": err, "max_abs_jax": float(np.max(np.abs(want)))}
        worst = max(worst, err / scale)
    figures["max_err"] = worst
    figures["passed"] = worst <= tolerance
    if not figures["passed"]:
        detail = ", ".join(f"{s} {figures[s]['max_abs_err']:.3g}" for s in inputs)
        raise ParityError(
            f"{d.name}.onnx differs from the JAX model by {worst:.3g} > tolerance {tolerance:g} ({detail}); nothing was written"
        )
    return figures
