"""The two places deepdistill reaches into a third-party package's private API, each in one function.

``tests/test_compat.py`` checks both against the installed versions and fails loudly when upstream
changes them; in use, each falls back to the public (slower) path.

- :func:`jax2onnx_converter`: jax2onnx imports every plugin it ships on first use, and its equinox
  plugins build example modules at import time (about 70 XLA compilations, 13 s on a 2-core CPU, for
  nothing we export). We import the ``jax`` and ``flax`` plugin packages with ``pkgutil`` and mark
  jax2onnx's registry loaded (``plugin_system._already_imported_plugins``, private).
- :func:`bound_runner`: onnxruntime's ``InferenceSession.run_with_iobinding`` checks for CUDA graph
  capture on every call (about 1 us of a 12-30 us batch-1 call); a CPU session never captures, so
  the one-sample path calls the C++ session (``session._sess``, private) directly.

This module must not import JAX at import time (the runtime imports it on a controller).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Any, Callable

JAX2ONNX_PLUGIN_TREES = ("jax", "flax")


@functools.lru_cache(maxsize=1)
def jax2onnx_converter() -> Callable[..., Any]:
    """``jax2onnx.to_onnx`` with only the jax and flax lowerings loaded (see the module docstring)."""
    try:
        from jax2onnx.plugins import plugin_system as ps

        if not ps._already_imported_plugins:
            import jax2onnx.plugins as plugins

            for tree in JAX2ONNX_PLUGIN_TREES:
                pkg = importlib.import_module(f"{plugins.__name__}.{tree}")
                for mod in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg.__name__}."):
                    importlib.import_module(mod.name)
            ps._already_imported_plugins = True
    except (ImportError, AttributeError):  # upstream moved: the full (slower) import runs on first use
        pass
    from jax2onnx import to_onnx

    return to_onnx


def bound_runner(session: Any, binding: Any) -> Callable[[], None]:
    """A no-argument call that runs ``session`` on its ``binding`` (see the module docstring)."""
    try:
        return functools.partial(session._sess.run_with_iobinding, binding._iobinding, None)
    except AttributeError:  # upstream moved: the public call
        return functools.partial(session.run_with_iobinding, binding)
