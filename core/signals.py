"""SIGINT and SIGTERM: a training loop stops at its next epoch boundary with a checkpoint; every
other command stops where it is, releases its locks and says to rerun the same command.

SLURM and Kubernetes send SIGTERM some seconds before they kill a job (SLURM's ``KillWait``,
Kubernetes' ``terminationGracePeriodSeconds``). A compiled epoch cannot be cut short: Python runs a
signal handler only once the main thread is back from XLA. So :class:`GracefulStop` hears the
signal on a watcher thread (through ``signal.set_wakeup_fd``), acknowledges it at once on stderr,
and the run loop saves and stops after the epoch in flight (so within one epoch and its
evaluation). A second signal stops the process at once: the epoch in flight is lost, the
checkpoints before it are kept, and the kernel releases the run's lock.

Exit codes follow the shell's convention, 128 + the signal number: 130 after SIGINT (Ctrl-C), 143
after SIGTERM.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Optional

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Python would raise ``KeyboardInterrupt`` for SIGINT (so ``finally`` blocks
    run: locks released, temporary files removed)."""

    signum = signal.SIGTERM


def interrupt_signum(e: BaseException) -> int:
    return int(getattr(e, "signum", signal.SIGINT))


class Interrupted(KeyboardInterrupt):
    """A command stopped on a signal, with what was kept. ``resume`` is the command that continues it
    (``None``: rerun the same command); the command-line tools exit with ``128 + signum``. A
    ``KeyboardInterrupt``, so that a library caller's ``except Exception`` does not swallow it."""

    def __init__(self, message: str, signum: int, resume: Optional[str] = None):
        super().__init__(message)
        self.signum, self.resume, self.exit_code = int(signum), resume, 128 + int(signum)

    def __str__(self) -> str:
        return str(self.args[0])


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


class TerminateAsInterrupt:
    """While active (main thread only), SIGTERM raises :class:`Terminated` instead of killing the process
    silently; used around every command (``core.cli.run_commands``)."""

    def __enter__(self) -> "TerminateAsInterrupt":
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, _raise_terminated)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


class GracefulStop:
    """While active, the first SIGINT or SIGTERM sets :attr:`signum` (the loop checks it at each epoch
    boundary) and the second stops the process at once with exit code ``128 + signum``. Outside the
    main thread (a library caller's worker thread) it does nothing."""

    def __init__(self, what: str = "the current epoch"):
        self.what = what
        self.signum: Optional[int] = None
        self._active = False

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is not threading.main_thread():
            return self
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._old_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._old = {s: signal.signal(s, self._noop) for s in STOP_SIGNALS}
        self._thread = threading.Thread(target=self._watch, name="deepdistill-signals", daemon=True)
        self._thread.start()
        self._active = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self._active:
            return
        self._active = False
        for s, old in self._old.items():
            signal.signal(s, old)
        signal.set_wakeup_fd(self._old_fd)
        os.write(self._write, b"\0")  # wakes the watcher: done
        self._thread.join(timeout=5)
        os.close(self._read)
        os.close(self._write)

    @staticmethod
    def _noop(signum: int, frame: Any) -> None:
        """The Python-level handler (it runs late, in the main thread): the watcher already acted."""

    def _watch(self) -> None:
        while True:
            try:
                data = os.read(self._read, 1)
            except OSError:
                return
            if not data or data == b"\0":
                return
            signum = data[0]
            if signum not in STOP_SIGNALS:
                continue
            if self.signum is None:
                self.signum = signum
                _say(f"{signal_name(signum)} received: finishing {self.what}, then saving a checkpoint and stopping "
                     f"(send it again to stop at once, losing {self.what})")
            else:
                _say(f"{signal_name(signum)} received again: stopping at once; the last checkpoint is kept")
                os._exit(128 + signum)


def _say(message: str) -> None:
    try:
        os.write(2, (message + "\n").encode())
    except OSError:
        pass
