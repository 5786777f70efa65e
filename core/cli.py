"""What every console script shares: a tyro CLI from one config dataclass, one-line user errors
(:class:`~deepdistill.core.errors.UserError`) with exit code 2, and a rich progress bar."""

from __future__ import annotations

import dataclasses
import errno
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Optional, TypeVar, Union

from deepdistill.core.errors import UserError
from deepdistill.core.signals import Interrupted, TerminateAsInterrupt, interrupt_signum, signal_name

T = TypeVar("T")


def run_cli(prog: str, config_cls: type[T], main: Callable[[T], object], args: Optional[list[str]] = None,
            resumable: bool = False) -> None:
    """Parse ``config_cls`` from argv with tyro, run ``main(cfg)``, turn user errors into exit code 2.
    ``resumable``: the command has ``--resume`` (its messages after an interrupt say how to continue)."""
    run_commands(prog, {None: (config_cls, main)}, args, resumable=resumable)


def run_commands(prog: str, commands: dict[Optional[str], tuple[type, Callable[[Any], object]]],
                 args: Optional[list[str]] = None, description: Optional[str] = None, resumable: bool = False) -> None:
    """Like :func:`run_cli` for several subcommands ``{name: (config class, main)}`` (tyro subcommands).

    A :class:`UserError` is printed in one line with exit code 2; any other exception is a bug and
    keeps its traceback. SIGINT and SIGTERM stop the command with one line saying how to continue
    (``--resume`` for a training run that saved a checkpoint, else "rerun the same command") and exit
    code 128 + the signal number (130, 143); see :mod:`deepdistill.core.signals`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tyro

    if list(commands) == [None]:
        config_cls, main = commands[None]
        cfg = tyro.cli(config_cls, prog=prog, args=args, description=config_cls.__doc__)
    else:
        union = Union[tuple(Annotated[cls, tyro.conf.subcommand(name, description=cls.__doc__)]
                            for name, (cls, _) in commands.items())]
        cfg = tyro.cli(union, prog=prog, args=args, description=description)
        main = next(fn for cls, fn in commands.values() if type(cfg) is cls)
    try:
        with TerminateAsInterrupt():
            main(cfg)
    except Interrupted as e:
        _exit(f"{prog}: {e}; " + _how_to_continue(e.resume, resumable), e.exit_code)
    except UserError as e:
        resume = getattr(e, "resume", None)
        _exit(f"{prog}: error: {e}" + (f"; then {_how_to_continue(resume, resumable)}" if resume else ""), 2,
              now=getattr(e, "exit_now", False))  # exit_now: another process died; JAX's shutdown at exit would abort
    except OSError as e:
        if not is_user_os_error(e, cfg):
            raise
        where = f": {e.filename}" if e.filename else ""
        _exit(f"{prog}: error: {e.strerror or e}{where}", 2)
    except KeyboardInterrupt as e:  # SIGINT, or SIGTERM (Terminated), outside a training loop
        signum = interrupt_signum(e)
        _exit(f"{prog}: interrupted by {signal_name(signum)}; rerun the same command"
              + (" (a run stopped before its first checkpoint left nothing behind; one stopped later continues "
                 "with --resume)" if resumable else ""), 128 + signum)


def _how_to_continue(resume: Optional[str], resumable: bool) -> str:
    if resume and resumable:
        return f"continue with `{resume}`"
    return "rerun the same command to continue" if resume else "rerun the same command"


def _exit(message: str, code: int, now: bool = False) -> None:
    print(message, file=sys.stderr)
    if now:
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(code)
    sys.exit(code)


# Errors about a path the user chose (or the disk it is on), not bugs: one line and exit code 2.
USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.EROFS, errno.ENOENT}
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
PATH_FIELDS = ("out", "teacher", "student", "onnx")


def is_user_os_error(e: OSError, cfg: Any) -> bool:
    """A full disk, or a permission/type error on a path under one of ``cfg``'s path flags."""
    if e.errno in DISK_ERRNOS:
        return True
    if e.errno not in USER_ERRNOS or not e.filename or not dataclasses.is_dataclass(cfg):
        return False
    roots = []
    for name in PATH_FIELDS:
        value = getattr(cfg, name, None)
        for v in (value if isinstance(value, (tuple, list)) else (value,)):
            if isinstance(v, str):
                roots.append(Path(v).absolute())
    target = Path(os.fsdecode(e.filename)).absolute()
    return any(target == r or r in target.parents for r in roots)


class Progress:
    """A rich progress bar over a step count (env steps, SGD steps, ...), or nothing when disabled."""

    def __init__(self, description: str, total: int, unit: str, enabled: bool = True, quiet: bool = False):
        self.enabled = enabled and total > 0
        self.quiet = quiet  # no log lines either (the processes of a multi-process run other than 0)
        self.total, self.unit = total, unit
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._p = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(unit),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._p.add_task(description, total=total, rate="", info="")

    @contextmanager
    def running(self) -> Iterator["Progress"]:
        if self.enabled:
            with self._p:
                yield self
        else:
            yield self

    def update(self, completed: int, rate: Optional[float] = None, info: str = "") -> None:
        if self.enabled:
            fields = {"info": info}
            if rate is not None:
                fields["rate"] = f"{rate:,.0f} {self.unit}/s"
            self._p.update(self._task, completed=min(completed, self.total), **fields)

    def log(self, message: str) -> None:
        if self.enabled:
            self._p.console.print(message)
        elif not self.quiet:
            print(message, flush=True)
