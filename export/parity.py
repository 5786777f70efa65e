"""The parity check: an exported model must compute what the JAX model computes.

Inputs come from two places: random normal draws (the whole input space, far from the data too)
and states of the task itself (every reset split, rolled a few steps with random actions), so the
check covers the states a controller will feed. A student with sensors is fed its own input (frames
with history and previous actions, as :class:`~deepdistill.envs.sensors.SensorEnv` builds it, the
training noise included). A recurrent policy also gets hidden states: random ones, those the JAX
model reaches along the task's trajectories, and a ``sequence`` check that steps the ONNX model over
those trajectories feeding its own ``h_out`` back, against the JAX recurrence. The ONNX side runs in
onnxruntime with the runtime's session options, batched and one sample at a time.
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort

from deepdistill.core.errors import ConfigError, RunError
from deepdistill.export.convert import ModelDef
from deepdistill.export.runtime import session_options
from deepdistill.envs import EnvSpec, make_env
from deepdistill.envs.observation import ObservationModel
from deepdistill.envs.sensors import SensorEnv

SINGLE_SAMPLE_CHECKS = 8  # samples also run at batch 1 (another kernel path in onnxruntime)


class ParityError(RuntimeError):
    """The ONNX model disagrees with the JAX model (a bug in the conversion, not the user's fault);
    nothing was written."""


def parity_inputs(spec: EnvSpec, n: int, env_steps: int, seed: int, observation: Optional[ObservationModel] = None,
                  carry_size: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """``{"random": {...}, "task": {...}}``, each ``{"observation" [n, I], "goal" [n, G], "action" [n, A]}``
    (``I``: the observation model's input size, else S), and ``"h_in" [n, H]`` for a recurrent policy
    (``carry_size`` H), whose ``"sequence"`` holds the task's trajectories ``{"observation" [T, N, I],
    "goal" [N, G]}`` (its task ``h_in`` is then filled by :func:`check_parity` from the JAX model)."""
    rng = np.random.default_rng(seed)
    sensed = observation is not None and not observation.is_identity(spec.state_size)
    S, G, A = (observation.input_size if sensed else spec.state_size), spec.goal_size, spec.action_size
    random = {
        "observation": 2.0 * rng.standard_normal((n, S)),
        "goal": 2.0 * rng.standard_normal((n, G)),
        "action": rng.uniform(-1.0, 1.0, (n, A)),
    }
    traj = task_trajectories(spec, n, env_steps, seed, observation if sensed else None)  # [T, N, S (+ I) + G]
    inputs = traj[..., spec.state_size:-G] if sensed else traj[..., : spec.state_size]
    flat, goals = inputs.reshape(-1, S), traj[..., -G:].reshape(-1, G)
    pick = np.random.default_rng(seed + 1).permutation(len(flat))[:n]
    task = {"observation": flat[pick], "goal": goals[pick], "action": rng.uniform(-1.0, 1.0, (len(pick), A))}
    out = {"random": random, "task": task}
    if carry_size:
        random["h_in"] = rng.uniform(-1.0, 1.0, (n, carry_size))
        task["pick"] = pick
        out["sequence"] = {"observation": inputs, "goal": traj[0, :, -G:]}
    return {k: {name: (v if name == "pick" else np.asarray(v, np.float32)) for name, v in d.items()} for k, d in out.items()}


def task_trajectories(spec: EnvSpec, n: int, env_steps: int, seed: int,
                      observation: Optional[ObservationModel] = None) -> np.ndarray:
    """Observations ``[T, N, S + G]`` (with sensors: ``[T, N, S + I + G]``) of ``spec``'s task: resets of
    every split, then ``T - 1 = env_steps`` random-action steps, about ``n`` in all."""
    splits = ("train",) + tuple(spec.eval_splits)
    steps = max(1, env_steps)
    n_envs = max(1, -(-n // (len(splits) * steps)))
    try:
        rollout = _rollout(spec.name, spec.episode_length, splits, n_envs, steps, observation)
    except ConfigError as e:
        raise RunError(f"task {spec.name!r} of the run is not registered in this version ({e}); cannot check parity") from None
    return np.asarray(rollout(jax.random.PRNGKey(seed)), np.float32)


def task_states(spec: EnvSpec, n: int, env_steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (state, goal) pairs visited in ``spec``'s task (:func:`task_trajectories`), a random subset."""
    obs = task_trajectories(spec, n, env_steps, seed).reshape(-1, spec.obs_size)
    pick = np.random.default_rng(seed + 1).permutation(len(obs))[:n]
    return obs[pick, : spec.state_size], obs[pick, spec.state_size :]


@functools.lru_cache(maxsize=16)
def _rollout(task: str, episode_length: int, splits: tuple[str, ...], n_envs: int, steps: int,
             observation: Optional[ObservationModel] = None):
    """Jitted ``key -> obs [steps, len(splits) * n_envs, S + G]``: ``n_envs`` resets of each split, then
    random-action steps of them all (one compiled program, cached across exports); through the
    student's sensors when ``observation`` is given."""
    env = make_env(task, episode_length=episode_length)
    if observation is not None:
        env = SensorEnv(env, observation)
    spec = env.spec

    def rollout(key):
        keys = jax.random.split(key, len(splits) + 1)
        resets = [jax.vmap(lambda k, s=split: env.reset_split(k, s))(jax.random.split(k, n_envs)) for k, split in zip(keys, splits)]
        state = jax.tree.map(lambda *xs: jnp.concatenate(xs), *resets)

        def step(state, k):
            a = jax.random.uniform(k, (len(splits) * n_envs, spec.action_size), minval=spec.action_low, maxval=spec.action_high)
            return jax.vmap(env.step)(state, a), state.obs

        _, obs = jax.lax.scan(step, state, jax.random.split(keys[-1], steps))
        return obs

    return jax.jit(rollout)


def session(model_bytes: bytes) -> ort.InferenceSession:
    """A CPU session with the runtime's options (one thread, all graph optimisations)."""
    return ort.InferenceSession(model_bytes, session_options(1), providers=["CPUExecutionProvider"])


def _reference(d: ModelDef, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    # float32 products on every backend: a GPU's default (TF32 on Hopper) alone is ~5e-4 off, above
    # the tolerance, and says nothing about the conversion (seen on an H200)
    with jax.default_matmul_precision("highest"):
        out = d.reference(*(feeds[p.name] for p in d.inputs))
    return [np.asarray(o, np.float32) for o in (out if d.recurrent else (out,))]


def _sequence(d: ModelDef, sess: ort.InferenceSession, seq: dict[str, np.ndarray]) -> tuple[list, list, np.ndarray]:
    """A recurrent policy stepped over trajectories ``[T, N, I]`` from zeros, each side on its own hidden
    state: ``(JAX outputs per step, ONNX outputs per step, the JAX h_in per step [T, N, H])``."""
    xs, goal = seq["observation"], seq["goal"]
    H = d.outputs[1].size
    h_jax = h_onnx = np.zeros((xs.shape[1], H), np.float32)
    want, got, h_in = [], [], []
    for x in xs:
        h_in.append(h_jax)
        a, h_jax = _reference(d, {"observation": x, "goal": goal, "h_in": h_jax})
        a_o, h_onnx = sess.run([p.name for p in d.outputs], {"observation": x, "goal": goal, "h_in": h_onnx})
        want.append((a, h_jax))
        got.append((a_o, h_onnx))
    return want, got, np.stack(h_in)


def check_parity(d: ModelDef, model: onnx.ModelProto, inputs: dict[str, dict[str, np.ndarray]], tolerance: float) -> dict:
    """Compare ``model`` with ``d.reference`` on every input set (every output); raise :class:`ParityError`
    past the tolerance. Returns the figures recorded in the metadata."""
    sess = session(model.SerializeToString())
    figures: dict = {"tolerance": tolerance, "measure": "abs" if d.name == "policy" else "abs / max(1, max|jax|)"}
    worst = 0.0
    names = [p.name for p in d.outputs]
    inputs = dict(inputs)
    if d.recurrent:  # the task's hidden states: those the JAX recurrence reaches along the trajectories
        want_seq, got_seq, h_in = _sequence(d, sess, inputs["sequence"])
        task = dict(inputs["task"])
        task["h_in"] = h_in.reshape(-1, h_in.shape[-1])[task["pick"]]
        inputs["task"] = task
        err = max(float(np.max(np.abs(g - w))) for gs, ws in zip(got_seq, want_seq) for g, w in zip(gs, ws))
        figures["sequence"] = {"steps": len(want_seq), "episodes": int(h_in.shape[1]), "max_abs_err": err,
                               "max_abs_jax": max(float(np.max(np.abs(w))) for ws in want_seq for w in ws)}
        worst = err if np.isfinite(err) else float("inf")
    for source, arrays in inputs.items():
        if source == "sequence":
            continue
        feeds = {p.name: arrays[p.name] for p in d.inputs}
        want = _reference(d, feeds)
        got = sess.run(names, feeds)
        n = min(SINGLE_SAMPLE_CHECKS, len(want[0]))
        one = [sess.run(names, {k: v[i : i + 1] for k, v in feeds.items()}) for i in range(n)]
        err = 0.0
        for j, w in enumerate(want):
            err = max(err, float(np.max(np.abs(got[j] - w))),
                      float(np.max(np.abs(np.concatenate([o[j] for o in one]) - w[:n]))))
            if not (np.isfinite(got[j]).all() and np.isfinite(w).all()):
                err = float("inf")
        scale = 1.0 if d.name == "policy" else max(1.0, float(np.max(np.abs(want[0]))))
        figures[source] = {"samples": len(want[0]), "max_abs_err": err, "max_abs_jax": max(float(np.max(np.abs(w))) for w in want)}
        worst = max(worst, err / scale)
    figures["max_err"] = worst
    figures["passed"] = worst <= tolerance
    if not figures["passed"]:
        detail = ", ".join(f"{s} {figures[s]['max_abs_err']:.3g}" for s in inputs)
        raise ParityError(
            f"{d.name}.onnx differs from the JAX model by {worst:.3g} > tolerance {tolerance:g} ({detail}); nothing was written"
        )
    return figures
