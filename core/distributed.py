"""The process set of a multi-process run (``jax.distributed``), set up in one place for every stage.

Every training stage's config inherits :class:`DistributedConfig`, so ``train-teacher`` and
``distill`` take the same flags::

    --coordinator-address HOST:PORT --num-processes N --process-id I

(or the variables ``DEEPDISTILL_COORDINATOR_ADDRESS``, ``DEEPDISTILL_NUM_PROCESSES``,
``DEEPDISTILL_PROCESS_ID``; JAX's own ``JAX_COORDINATOR_ADDRESS``), or ``--distributed`` alone under
SLURM, Open MPI or Kubernetes, where JAX detects them. :func:`initialize` runs before any JAX
computation. After it, ``jax.devices()`` lists the devices of every process: the stages' 1-D
``("data",)`` mesh (:class:`deepdistill.core.epoch.DataParallel`) spans all of them, each process
steps the environments of its own devices, and XLA's collectives (gloo on CPU) join the rest.

One writer: only process 0 writes files (:func:`is_writer`, checked by
:mod:`deepdistill.core.rundir` and :mod:`deepdistill.core.runner`); every process takes part in
Orbax's saves and restores, each writing and reading its own shards.

A process that dies makes the collectives of the others fail: :func:`peer_guard` turns that into
:class:`PeerLost`, one line and exit code 2, instead of a hang or a C++ abort.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import sys
import time
from contextlib import contextmanager
from typing import Iterator, Optional

import numpy as np

from deepdistill.core.errors import ConfigError, RunError, UserError

ENV_VARS = {
    "coordinator_address": "DEEPDISTILL_COORDINATOR_ADDRESS",
    "num_processes": "DEEPDISTILL_NUM_PROCESSES",
    "process_id": "DEEPDISTILL_PROCESS_ID",
}
HOW = ("pass --coordinator-address HOST:PORT --num-processes N --process-id I (or set "
       + ", ".join(ENV_VARS.values()) + "), or launch under SLURM, Open MPI or Kubernetes")


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """How this process joins a multi-process run; inherited by every training stage's config.

    These fields describe the launch, not the recipe: a resumed run takes them from the command
    line, never from the saved config (see :data:`LAUNCH_FIELDS`)."""

    distributed: bool = False
    """Run as one process of several (jax.distributed): give the process set below, or launch under
    SLURM, Open MPI or Kubernetes, where it is detected."""
    coordinator_address: Optional[str] = None
    """HOST:PORT of process 0's coordination service (or DEEPDISTILL_COORDINATOR_ADDRESS,
    JAX_COORDINATOR_ADDRESS). This and the next two, or their variables, imply --distributed."""
    num_processes: Optional[int] = None
    """Processes in the run (or DEEPDISTILL_NUM_PROCESSES)."""
    process_id: Optional[int] = None
    """This process's rank, 0 .. num-processes - 1; process 0 writes the run folder (or
    DEEPDISTILL_PROCESS_ID)."""
    join_timeout_s: int = 300
    """Seconds to wait for every process to join."""
    heartbeat_timeout_s: int = 60
    """Seconds without a heartbeat after which a process counts as dead and the others stop."""


LAUNCH_FIELDS = tuple(f.name for f in dataclasses.fields(DistributedConfig))


class PeerLost(RunError):
    """Another process of the run died; this one cannot go on (the CLIs exit at once, skipping
    JAX's shutdown barrier, which would abort)."""

    exit_now = True


def process_set(cfg: DistributedConfig) -> Optional[tuple[Optional[str], Optional[int], Optional[int]]]:
    """``(coordinator address, num processes, process id)`` from the flags, then the
    ``DEEPDISTILL_*`` variables (unset ones are ``None``: cluster detection fills them); ``None`` for
    a single-process run (no --distributed, and none of them set)."""
    given = {name: getattr(cfg, name) for name in ENV_VARS}
    if not cfg.distributed and all(v is None for v in given.values()) and not any(map(os.environ.get, ENV_VARS.values())):
        return None
    for name, var in ENV_VARS.items():
        if given[name] is None and os.environ.get(var):
            value = os.environ[var]
            if name != "coordinator_address":
                try:
                    value = int(value)
                except ValueError:
                    raise ConfigError(f"{var}={value!r} must be an integer") from None
            given[name] = value
    addr, n, pid = given["coordinator_address"], given["num_processes"], given["process_id"]
    if addr is not None and not re.fullmatch(r".+:\d+", addr):
        raise ConfigError(f"--coordinator-address {addr!r} must be HOST:PORT (e.g. 10.0.0.1:12345)")
    if n is not None and n < 1:
        raise ConfigError(f"--num-processes must be positive (got {n})")
    if pid is not None and (pid < 0 or (n is not None and pid >= n)):
        raise ConfigError(f"--process-id {pid} must be in 0 .. {(n or 1) - 1} (--num-processes {n})")
    return addr, n, pid


def initialize(cfg: DistributedConfig) -> None:
    """Join the run's process set (a no-op for a single-process run, or if already joined).

    Must run before any JAX computation; every stage's entry point calls it first."""
    import jax

    pset = process_set(cfg)
    if pset is None or jax.distributed.is_initialized():
        return
    if cfg.join_timeout_s <= 0 or cfg.heartbeat_timeout_s <= 0:
        raise ConfigError("--join-timeout-s and --heartbeat-timeout-s must be positive")
    addr, n, pid = pset
    if addr is not None and pid not in (None, 0):
        _wait_for_coordinator(addr, pid, n, cfg.join_timeout_s)  # JAX aborts (C++) when it gives up
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives across processes
    try:
        jax.distributed.initialize(addr, n, pid, initialization_timeout=cfg.join_timeout_s,
                                   heartbeat_timeout_seconds=cfg.heartbeat_timeout_s)
    except ValueError as e:  # auto-detection found no cluster: jax names the missing argument
        if "defined" not in str(e):
            raise
        raise ConfigError(f"--distributed: no cluster detected and no process set given; {HOW}") from None
    except RuntimeError as e:
        if "before any JAX" in str(e):
            raise  # a bug: something touched JAX first
        raise RunError(f"process {pid} of {n} could not join the run at {addr or 'the detected coordinator'} within "
                       f"{cfg.join_timeout_s} s ({_first_line(e)}); start every process with the same "
                       f"--coordinator-address and --num-processes") from None


def _wait_for_coordinator(addr: str, pid: int, n: Optional[int], timeout_s: float) -> None:
    """Wait until process 0's coordination service accepts connections at ``addr``."""
    host, port = addr.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
            return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise RunError(f"process {pid} of {n}: no coordinator at {addr} after {timeout_s:.0f} s ({e}); start "
                               f"process 0 with the same --coordinator-address (or raise --join-timeout-s)") from None
            time.sleep(1.0)


def is_writer() -> bool:
    """True on the process that writes the run folder: process 0, or the only process (without
    importing JAX: the JAX-free runtime writes files too)."""
    jax = sys.modules.get("jax")
    return jax is None or not jax.distributed.is_initialized() or jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches ``name`` (no-op for one process)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def agree(flag: bool) -> bool:
    """Process 0's ``flag`` on every process (decisions from local clocks, e.g. a wall-time budget,
    must be the same everywhere, or the processes part ways and wait on each other forever)."""
    import jax

    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


# A collective or barrier that failed because a process died: XLA raises it with an absl status
# (as JaxRuntimeError, or ValueError from a gloo collective) naming the transport or the service.
_STATUS = re.compile(r"^(UNKNOWN|INTERNAL|UNAVAILABLE|DEADLINE_EXCEEDED|ABORTED|CANCELLED|FAILED_PRECONDITION): ")
_PEER = re.compile(r"gloo|heartbeat|barrier|coordination|connection (reset|refused|closed)|unavailable|deadline",
                   re.IGNORECASE)


def is_peer_failure(e: BaseException) -> bool:
    """Whether ``e`` is a runtime error of a multi-process run caused by another process's death."""
    import jax

    if isinstance(e, UserError) or not jax.distributed.is_initialized():
        return False
    runtime = isinstance(e, jax.errors.JaxRuntimeError) or (isinstance(e, ValueError) and _STATUS.match(str(e)))
    return bool(runtime and _PEER.search(str(e)))


@contextmanager
def peer_guard() -> Iterator[None]:
    """Around a multi-process run: a runtime error caused by a dead process (a failed collective
    or barrier) becomes :class:`PeerLost`; any other error keeps its traceback."""
    import jax

    try:
        yield
    except (jax.errors.JaxRuntimeError, ValueError) as e:
        if not is_peer_failure(e):
            raise
        raise PeerLost(f"process {jax.process_index()} of {jax.process_count()}: another process of the run is gone "
                       f"({_first_line(e)}); the last checkpoint is kept: restart every process with --resume") from None


def _first_line(e: BaseException, limit: int = 160) -> str:
    line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."
