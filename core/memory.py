"""How much memory a training state needs, and how much the device has: checked before anything is
allocated, so that a size that cannot fit is refused in one line instead of hanging in the allocator.

The state's size comes from its abstract shapes (``jax.eval_shape``), exactly, per device (a leaf
sharded over devices counts its shard). ``teacher/plan.py`` adds XLA's own figure for the compiled
step on a GPU; every stage refuses a state that alone exceeds the device.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax

from deepdistill.core.errors import ConfigError

GIB = 2**30


def fmt_bytes(n: float) -> str:
    if n >= 2**40 * 10:
        return f"{n / 2**40:,.0f} TiB"
    return f"{n / GIB:.2f} GiB" if n >= GIB / 10 else f"{n / 2**20:.1f} MiB"


def tree_bytes(abstract: Any) -> int:
    """Per-device bytes of a tree of arrays or ``ShapeDtypeStruct``s (sharded leaves count their shard)."""
    total = 0
    for a in jax.tree.leaves(abstract):
        shape = a.sharding.shard_shape(a.shape) if getattr(a, "sharding", None) is not None else a.shape
        n = 1
        for s in shape:
            n *= int(s)
        total += n * a.dtype.itemsize
    return total


def device_memory(override_gib: Optional[float] = None) -> tuple[int, str]:
    """(bytes, where the figure comes from): the override, a GPU's ``bytes_limit``, or on a CPU the
    host's total RAM."""
    if override_gib is not None:
        return int(override_gib * GIB), "--device-memory-gib"
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        if stats.get("bytes_limit"):
            return int(stats["bytes_limit"]), f"{dev.device_kind} memory_stats()['bytes_limit']"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "host RAM (CPU backend)"


def check_state_fits(abstract_state: Any, what: str, fix: str, override_gib: Optional[float] = None) -> int:
    """Refuse (``ConfigError``, one line) a training state that alone needs more than the device has;
    ``what`` lists what the state holds, ``fix`` the flags that shrink it. Returns the state's bytes."""
    need = tree_bytes(abstract_state)
    limit, source = device_memory(override_gib)
    if need > limit:
        raise ConfigError(f"this run's train state alone needs {fmt_bytes(need)} of device memory ({what}) but the "
                          f"device has {fmt_bytes(limit)} ({source}); {fix}")
    return need
