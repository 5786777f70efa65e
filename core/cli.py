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

T = TypeVar("T")


def run_cli(prog: str, config_cls: type[T], main: Callable[[T], object], args: Optional[list[str]] = None) -> None:
    """Parse ``config_cls`` from argv with tyro, run ``main(cfg)``, turn user errors into exit code 2."""
    run_commands(prog, {None: (config_cls, main)}, args)


def run_commands(prog: str, commands: dict[Optional[str], tuple[type, Callable[[Any], object]]],
                 args: Optional[list[str]] = None, description: Optional[str] = None) -> None:
    """Like :func:`run_cli` for several subcommands ``{name: (config class, main)}`` (tyro subcommands).

    A :class:`UserError` is printed in one line with exit code 2; any other exception is a bug and
    keeps its traceback."""
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
        main(cfg)
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        if getattr(e, "exit_now", False):  # another process died: JAX's shutdown at exit would abort
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(2)
        sys.exit(2)
    except OSError as e:
        if not is_user_os_error(e, cfg):
            raise
        where = f": {e.filename}" if e.filename else ""
        print(f"{prog}: error: {e.strerror or e}{where}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; the last checkpoint is kept (rerun with --resume; a run stopped before its "
              "first checkpoint left nothing behind: rerun the same command)", file=sys.stderr)
        sys.exit(130)


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
