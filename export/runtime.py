"""Run an exported policy with numpy and onnxruntime only: what a robot controller imports.

::

    from deepdistill.export.runtime import OnnxPolicy

    policy = OnnxPolicy("runs/student/policy.onnx")      # or the directory holding it
    action = policy.act(observation, goal)               # [F], [G] -> [A]   (one sample)
    actions = policy.act(observations, goals)            # [B, F], [B, G] -> [B, A]
    policy.reset()                                       # at the start of every episode

``observation`` is this control step's sensor frame: the policy's observation terms (metadata
``observation_model.terms``, in that order; ``policy.frame(state)`` cuts them from the task's robot
state). For a policy that sees the task's state it is the robot state, the first
``policy.observation_size`` entries of the task's observation (``policy.split(env_obs)`` cuts one).
A student with a history, previous actions or a hidden state keeps them itself, per batch row:
call ``act`` once per control step and ``reset()`` when episodes start (the first call after a
reset starts the history with copies of the first frame, zero previous actions and a zero hidden
state). It adds no noise and no delay. Inputs may be float32, float64 or integers (cast
to float32); anything else, a wrong shape, or a NaN/inf raises :class:`PolicyInputError`. A missing
or corrupted file, an ONNX file without our metadata, metadata that breaks the declared schema
(:mod:`deepdistill.export.schema`: every field's type, range and finiteness, the controller contract
included) or whose fields disagree, and weights or metadata that no longer match the digests written
at export (``weights_sha256``, ``content_sha256``) raise :class:`PolicyFileError`, in one line naming
the field. Both are ``ValueError`` subclasses of :class:`PolicyError`.

This module must not import JAX (a test runs it where JAX cannot be imported).
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import onnxruntime as ort

from deepdistill.core.errors import UserError
from deepdistill.export.compat import bound_runner
from deepdistill.export.metadata import CONTENT_DIGEST, MetadataError, content_digest, decode, graph_bytes, input_sizes

__all__ = ["OnnxModel", "OnnxPolicy", "PolicyError", "PolicyFileError", "PolicyInputError", "default_providers"]


class PolicyError(UserError):
    """Base class of the errors of this module."""


class PolicyFileError(PolicyError):
    """The model file is missing, unreadable, not ONNX, or not an export of ours."""


class PolicyInputError(PolicyError):
    """An input has the wrong type, shape, or holds NaN/inf."""


def default_providers() -> list[str]:
    """CUDA when this onnxruntime build offers it (onnxruntime-gpu), else the CPU."""
    available = ort.get_available_providers()
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if "CUDAExecutionProvider" in available else ["CPUExecutionProvider"]


def session_options(threads: int = 1) -> ort.SessionOptions:
    """The options of every session we create: ``threads`` intra-op threads, sequential execution,
    all graph optimisations, errors only in the log."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


class OnnxModel:
    """Any exported model (policy or encoder): metadata, validated inputs, batched or single calls.

    Args:
        path: the ``.onnx`` file, or a directory holding ``<model>.onnx``.
        providers: onnxruntime execution providers (default: :func:`default_providers`).
        threads: intra-op threads (1 keeps latency steady beside a control loop; raise it for
            large batches).
        check_finite: refuse NaN/inf inputs (costs about a microsecond per call).
    """

    model: Optional[str] = None  # the metadata "model" this class accepts (None: any)

    def __init__(self, path: str | os.PathLike, *, providers: Optional[Sequence[str]] = None, threads: int = 1,
                 check_finite: bool = True, model: Optional[str] = None):
        model = model or self.model
        path = Path(path)
        if path.is_dir():
            path = path / f"{model or 'policy'}.onnx"
        if not path.is_file():
            raise PolicyFileError(f"{path}: no such file; export a run first (`export-onnx --student runs/<student>`)")
        if threads < 1:
            raise PolicyError(f"threads={threads} must be at least 1")
        providers = list(providers or default_providers())
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise PolicyError(f"execution providers {missing} are not in this onnxruntime build (it has {ort.get_available_providers()})")
        self.path = path
        self.check_finite = check_finite
        try:
            data = path.read_bytes()
        except OSError as e:
            raise PolicyFileError(f"{path}: cannot be read ({e.strerror or e})") from None
        try:
            self.session = ort.InferenceSession(data, session_options(threads), providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types for every kind of bad file
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PolicyFileError(f"{path}: not a loadable ONNX model ({reason[:300]})") from None
        try:
            props = self.session.get_modelmeta().custom_metadata_map
            self.metadata: dict[str, Any] = decode(props, str(path))
        except MetadataError as e:
            raise PolicyFileError(str(e)) from None
        self._check_digests(data, props)
        if model is not None and self.metadata["model"] != model:
            raise PolicyFileError(f"{path}: holds a {self.metadata['model']} model, not a {model}")
        try:
            self.input_sizes = input_sizes(self.metadata)
            self.output_names = [str(o["name"]) for o in self.metadata["outputs"]]
            self.output_sizes = [int(o["shape"][-1]) for o in self.metadata["outputs"]]
            self.output_name, self.output_size = self.output_names[0], self.output_sizes[0]
        except (KeyError, TypeError, IndexError, ValueError) as e:
            raise PolicyFileError(f"{path}: metadata inputs/outputs are malformed ({type(e).__name__}: {e})") from None
        self._check_graph()

    # --- metadata shortcuts ------------------------------------------------------------------------
    @property
    def task(self) -> str:
        return self.metadata["task"]

    @property
    def observation_size(self) -> int:
        return self.metadata["observation_size"]

    @property
    def goal_size(self) -> int:
        return self.metadata["goal_size"]

    @property
    def action_size(self) -> int:
        return self.metadata["action_size"]

    @property
    def provider(self) -> str:
        """The execution provider that runs the model (``CPUExecutionProvider``, ...)."""
        return self.session.get_providers()[0]

    def split(self, env_observation: Any) -> tuple[np.ndarray, np.ndarray]:
        """Cut a task observation ``[..., S + G]`` into ``(observation [..., S], goal [..., G])``."""
        obs = np.asarray(env_observation)
        s, g = self.observation_size, self.goal_size
        if obs.ndim not in (1, 2) or obs.shape[-1] != s + g:
            raise PolicyInputError(f"env observation has shape {obs.shape}; expected ({s + g},) or (B, {s + g}) = state {s} + goal {g}")
        return obs[..., :s], obs[..., s:]

    # --- running -----------------------------------------------------------------------------------
    def run(self, **inputs: Any) -> Any:
        """Run on named inputs, all ``[F]`` (one sample -> ``[out]``) or all ``[B, F]`` (-> ``[B, out]``);
        a model with several outputs (a recurrent policy: ``action``, ``h_out``) returns a tuple."""
        feeds, single = self._prepare(inputs)
        outs = [o[0] if single else o for o in self.session.run(self.output_names, feeds)]
        return outs[0] if len(outs) == 1 else tuple(outs)

    __call__ = run

    def _prepare(self, inputs: dict[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
        if set(inputs) != set(self.input_sizes):
            raise PolicyInputError(f"{self.metadata['model']} takes inputs {sorted(self.input_sizes)}, got {sorted(inputs)}")
        feeds, ndims, batches = {}, set(), set()
        for name, size in self.input_sizes.items():
            a = _as_float32(name, inputs[name])
            if a.ndim not in (1, 2) or a.shape[-1] != size or (a.ndim == 2 and a.shape[0] < 1):
                raise PolicyInputError(
                    f"{name} has shape {a.shape}; expected ({size},) for one sample or (B, {size}) for a batch "
                    f"({self._meaning(name)})"
                )
            if self.check_finite:
                _check_finite(name, a)
            ndims.add(a.ndim)
            batches.add(a.shape[0] if a.ndim == 2 else 1)
            feeds[name] = a if a.ndim == 2 else a[None]
        if len(ndims) > 1:
            raise PolicyInputError("mix of one sample and a batch: pass every input as [F], or every input as [B, F]")
        if len(batches) > 1:
            raise PolicyInputError(f"inputs have different batch sizes {sorted(batches)}")
        return feeds, ndims == {1}

    def _meaning(self, name: str) -> str:
        for spec in self.metadata["inputs"]:
            if spec["name"] == name:
                return spec.get("description", name)
        return name

    def _check_digests(self, data: bytes, props: dict[str, str]) -> None:
        """The graph must match ``weights_sha256``, and metadata and graph together ``content_sha256``."""
        graph = graph_bytes(data)
        want = self.metadata.get("weights_sha256")
        if want is not None and (graph is None or hashlib.sha256(graph).hexdigest() != want):
            raise PolicyFileError(f"{self.path}: the graph's weights do not match the digest in its metadata "
                                  f"(weights_sha256): the file is damaged or was edited; re-export the run")
        want = self.metadata.get(CONTENT_DIGEST)
        if want is not None and (graph is None or content_digest(props, graph) != want):
            raise PolicyFileError(f"{self.path}: its metadata no longer matches the digest written at export "
                                  f"({CONTENT_DIGEST}): a field was edited after export or the file is damaged; "
                                  f"re-export the run")

    def _check_graph(self) -> None:
        """The graph's inputs and output must be the ones the metadata describes."""
        where = str(self.path)
        graph_inputs = {i.name: i for i in self.session.get_inputs()}
        if set(graph_inputs) != set(self.input_sizes):
            raise PolicyFileError(f"{where}: graph inputs {sorted(graph_inputs)} differ from the metadata's {sorted(self.input_sizes)}")
        for name, size in self.input_sizes.items():
            i = graph_inputs[name]
            if i.type != "tensor(float)" or len(i.shape) != 2 or i.shape[1] != size:
                raise PolicyFileError(f"{where}: graph input {name} is {i.type}{i.shape}, metadata says float32 [B, {size}]")
        outputs = self.session.get_outputs()
        if [(o.name, o.shape[-1]) for o in outputs] != list(zip(self.output_names, self.output_sizes)):
            raise PolicyFileError(f"{where}: graph outputs differ from the metadata's "
                                  + ", ".join(f"{n} [B, {k}]" for n, k in zip(self.output_names, self.output_sizes)))


class OnnxPolicy(OnnxModel):
    """The exported policy: ``act(observation, goal) -> action`` inside the task's action range, one call
    per control step; a policy with a history or a hidden state keeps it (``reset()`` per episode).

    One-sample calls on the CPU reuse bound input/output buffers (onnxruntime IOBinding), which
    halves the per-call overhead; calls are serialised by a lock, so one instance may be shared by
    threads (one stream of control steps per instance). See :class:`OnnxModel` for the constructor's
    arguments.
    """

    model = "policy"

    def __init__(self, path: str | os.PathLike, **kwargs: Any):
        super().__init__(path, **kwargs)
        meta = self.metadata
        self.action_low = float(meta["action_low"])
        self.action_high = float(meta["action_high"])
        model = meta.get("observation_model")  # schema 3; older files see the task's state
        self.observation_model: Optional[dict[str, Any]] = model
        self.frame_size = int(model["frame_size"]) if model else self.observation_size
        self.history = int(model["history"]) if model else 1
        self.history_actions = bool(model["history_actions"]) if model else False
        self.action_delay = int(model["action_delay"]) if model else 0
        self.input_size = int(model["input_size"]) if model else self.observation_size
        recurrent = meta.get("recurrent")
        self.hidden_size = int(recurrent["hidden_size"]) if recurrent else 0
        self.frame_indices = (np.concatenate([np.arange(*t["state_indices"]) for t in model["terms"]]) if model
                              else np.arange(self.observation_size))
        self.stateful = self.history > 1 or self.history_actions or self.hidden_size > 0
        want = {"observation": self.input_size, "goal": self.goal_size}
        outputs = [("action", self.action_size)]
        if self.hidden_size:
            want["h_in"] = self.hidden_size
            outputs.append(("h_out", self.hidden_size))
        if list(self.input_sizes.items()) != list(want.items()) or list(zip(self.output_names, self.output_sizes)) != outputs:
            raise PolicyFileError(
                f"{self.path}: a policy takes " + " and ".join(f"{k} [B, {v}]" for k, v in want.items())
                + " and returns " + " and ".join(f"{k} [B, {v}]" for k, v in outputs) + f"; the file has inputs "
                f"{self.input_sizes} and outputs {dict(zip(self.output_names, self.output_sizes))}")
        self._obs_name, self._goal_name = "observation", "goal"
        self._lock = threading.Lock()
        self._memory: Optional[dict[str, np.ndarray]] = None  # per batch row: "x" [B, I], "h" [B, H]
        self._binding = None
        if self.provider == "CPUExecutionProvider":
            I, G, A, H = self.input_size, self.goal_size, self.action_size, self.hidden_size
            self._in_buf = np.zeros(I + G + H, np.float32)  # every input, contiguous (one finiteness check)
            self._obs_buf = self._in_buf[:I].reshape(1, -1)
            self._goal_buf = self._in_buf[I:I + G].reshape(1, -1)
            self._h_buf = self._in_buf[I + G:].reshape(1, -1)
            self._out_buf = np.zeros((1, A), np.float32)
            self._hout_buf = np.zeros((1, H), np.float32)
            binding = self.session.io_binding()
            binding.bind_cpu_input(self._obs_name, self._obs_buf)
            binding.bind_cpu_input(self._goal_name, self._goal_buf)
            binding.bind_output(self.output_name, "cpu", 0, np.float32, list(self._out_buf.shape), self._out_buf.ctypes.data)
            if H:
                binding.bind_cpu_input("h_in", self._h_buf)
                binding.bind_output("h_out", "cpu", 0, np.float32, list(self._hout_buf.shape), self._hout_buf.ctypes.data)
            self._binding = binding
            self._obs_shape, self._goal_shape = (self.frame_size,), (self.goal_size,)
            self._run_bound = bound_runner(self.session, binding)

    # --- the sensor frame ---------------------------------------------------------------------------
    def frame(self, state: Any) -> np.ndarray:
        """This policy's frame ``[..., F]`` (its terms, in its order) cut from a task's robot state ``[..., S]``."""
        a = np.asarray(state)
        if a.ndim not in (1, 2) or a.shape[-1] != self.observation_size:
            raise PolicyInputError(f"state has shape {a.shape}; expected ({self.observation_size},) or "
                                   f"(B, {self.observation_size}): the task's robot state")
        return a[..., self.frame_indices]

    def reset(self) -> None:
        """Forget the history and hidden state: call it when new episodes start (a stateless policy has none)."""
        with self._lock:
            self._memory = None

    # --- acting -------------------------------------------------------------------------------------
    def act(self, observation: Any, goal: Any) -> np.ndarray:
        """``[F], [G] -> [A]`` or ``[B, F], [B, G] -> [B, A]`` (float32, in the action range), once per control
        step: ``observation`` is this step's frame (the robot state for a policy that sees it)."""
        if self._binding is not None:
            if not (type(observation) is np.ndarray and observation.dtype == np.float32):
                observation = _as_float32(self._obs_name, observation)
            if not (type(goal) is np.ndarray and goal.dtype == np.float32):
                goal = _as_float32(self._goal_name, goal)
            if observation.shape == self._obs_shape and goal.shape == self._goal_shape:
                return self._act_one(observation, goal)
        if not self.stateful:
            feeds, single = self._prepare({self._obs_name: observation, self._goal_name: goal})
            out = self.session.run([self.output_name], feeds)[0]
            return out[0] if single else out
        frame, goal = self._check_frame(observation, goal)
        with self._lock:
            x, h = self._advance(frame)
            feeds = {self._obs_name: x, self._goal_name: goal[None] if goal.ndim == 1 else goal}
            if self.hidden_size:
                feeds["h_in"] = h
            outs = self.session.run(self.output_names, feeds)
            self._remember(outs[0], outs[1] if self.hidden_size else None)
            return outs[0][0] if frame.ndim == 1 else outs[0]

    __call__ = act

    def _check_frame(self, frame: Any, goal: Any) -> tuple[np.ndarray, np.ndarray]:
        frame, goal = _as_float32(self._obs_name, frame), _as_float32(self._goal_name, goal)
        for name, a, size in ((self._obs_name, frame, self.frame_size), (self._goal_name, goal, self.goal_size)):
            if a.ndim not in (1, 2) or a.shape[-1] != size or (a.ndim == 2 and a.shape[0] < 1):
                raise PolicyInputError(f"{name} has shape {a.shape}; expected ({size},) for one sample or (B, {size}) "
                                       f"for a batch ({self._meaning(name) if name == 'goal' else 'this step' + chr(39) + 's frame'})")
            if self.check_finite:
                _check_finite(name, a)
        if frame.ndim != goal.ndim or (frame.ndim == 2 and frame.shape[0] != goal.shape[0]):
            raise PolicyInputError(f"observation {frame.shape} and goal {goal.shape}: pass both as one sample or as "
                                   f"batches of the same size")
        return frame, goal

    def _advance(self, frame: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """The input ``[B, I]`` of this step (the history shifted by one frame and the last action) and ``h_in``."""
        F, K, A = self.frame_size, self.history, self.action_size
        f = frame[None] if frame.ndim == 1 else frame
        m = self._memory
        if m is None:  # the first step of an episode: K copies of the first frame, zero actions and hidden state
            x = np.zeros((len(f), self.input_size), np.float32)
            x[:, :K * F] = np.tile(f, (1, K))
            m = self._memory = {"x": x, "h": np.zeros((len(f), self.hidden_size), np.float32)}
        elif len(m["x"]) != len(f):
            raise PolicyInputError(f"a batch of {len(f)} after a batch of {len(m['x'])}: this policy keeps a history "
                                   f"per batch row; call reset() when new episodes start")
        else:
            x = m["x"]
            x[:, :(K - 1) * F] = x[:, F:K * F]
            x[:, (K - 1) * F:K * F] = f
            if self.history_actions:
                x[:, K * F:K * F + (K - 1) * A] = x[:, K * F + A:]
                x[:, K * F + (K - 1) * A:] = m["action"]
        return m["x"], m["h"]

    def _remember(self, action: np.ndarray, h_out: Optional[np.ndarray]) -> None:
        self._memory["action"] = np.array(action, np.float32, copy=True)
        if h_out is not None:
            self._memory["h"] = np.array(h_out, np.float32, copy=True)

    def _act_one(self, obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
        with self._lock:
            if self.stateful:  # checked before it enters the history
                if self.check_finite and not math.isfinite(obs.dot(obs) + goal.dot(goal)):
                    _check_finite(self._obs_name, obs)
                    _check_finite(self._goal_name, goal)
                x, h = self._advance(obs)
                self._obs_buf[0] = x[0]
                if self.hidden_size:
                    self._h_buf[0] = h[0]
                self._goal_buf[0] = goal
            else:
                self._obs_buf[0] = obs
                self._goal_buf[0] = goal
                # One dot product over both inputs is non-finite if any entry is (or if it overflows,
                # when the exact check below passes): the cheapest check there is for a few floats.
                if self.check_finite and not math.isfinite(self._in_buf.dot(self._in_buf)):
                    _check_finite(self._obs_name, obs)
                    _check_finite(self._goal_name, self._goal_buf[0])
            self._run_bound()
            if self.stateful:
                self._remember(self._out_buf, self._hout_buf if self.hidden_size else None)
            return self._out_buf[0].copy()


def _as_float32(name: str, x: Any) -> np.ndarray:
    try:
        a = np.asarray(x)
    except (ValueError, TypeError) as e:
        raise PolicyInputError(f"{name} is not an array of numbers ({e})") from None
    if a.dtype == np.float32:
        return a
    if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
        raise PolicyInputError(f"{name} has dtype {a.dtype}; pass float32 (float64 and integers are converted)")
    with np.errstate(over="ignore"):
        return a.astype(np.float32)


def _check_finite(name: str, a: np.ndarray) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise PolicyInputError(
            f"{name}{list(where)} is {a[where]} (of {int(bad.sum())} non-finite entries): the policy needs finite inputs"
        )
