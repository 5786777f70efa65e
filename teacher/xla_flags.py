"""XLA GPU flags for deep scanned networks, set before JAX starts its backend (GPU only).

A scan over residual blocks is a device while-loop; XLA GPU runs its control on the host and, by
default, captures fusions and library calls in command buffers (CUDA graphs) but not WHILE or
CONDITIONAL. ``GPU_FLAGS`` captures those too and unrolls loops into the graph. XLA parses
``XLA_FLAGS`` once, when the backend client is created, so the flags must be in the environment
before the first ``jax.devices()`` or array; afterwards they would be silently ignored.

``--xla-gpu-flags auto`` applies them on a GPU only, never on a CPU. It is off by default: no
measurement says yet that they help (benchmarks/teacher_depth_gpu.py --variants measures them).
"""

from __future__ import annotations

import importlib.util
import os
import warnings

GPU_FLAGS = (
    "--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL",
    "--xla_gpu_command_buffer_unroll_loops=true",
)
_CUDA_PLUGINS = ("jax_cuda13_plugin", "jax_cuda12_plugin")


def backend_started() -> bool:
    """Whether JAX has created its backends (after which XLA_FLAGS are no longer read)."""
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def gpu_expected() -> bool:
    """Whether JAX will start on a CUDA GPU, decided without starting it: a CUDA plugin is
    installed, a device node exists, and ``JAX_PLATFORMS`` (if set) allows cuda."""
    platforms = os.environ.get("JAX_PLATFORMS", "").lower()
    if platforms and not any(p in platforms for p in ("cuda", "gpu")):
        return False
    if not os.path.exists("/dev/nvidiactl"):
        return False
    return any(importlib.util.find_spec(m) is not None for m in _CUDA_PLUGINS)


def apply_xla_gpu_flags(mode: str) -> tuple[str, ...]:
    """``mode="auto"``: append ``GPU_FLAGS`` to ``XLA_FLAGS`` when on a GPU and JAX has not started
    yet. Returns the flags added (empty on a CPU, with ``"off"``, or when already present)."""
    if mode == "off" or not gpu_expected():
        return ()
    current = os.environ.get("XLA_FLAGS", "")
    missing = tuple(f for f in GPU_FLAGS if f.split("=")[0] not in current)
    if not missing:
        return ()
    if backend_started():
        warnings.warn("--xla-gpu-flags auto: JAX's backend has already started, so XLA_FLAGS can no longer take effect; "
                      f"set XLA_FLAGS='{' '.join(GPU_FLAGS)}' before starting Python", stacklevel=2)
        return ()
    os.environ["XLA_FLAGS"] = " ".join([current, *missing]).strip()
    return missing
