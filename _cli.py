"""What every console script shares: a tyro CLI from one config dataclass, one-line errors with exit
code 2, and a rich progress bar."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, TypeVar

T = TypeVar("T")

# Errors a user can fix from the command line: reported in one line, exit code 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, FileNotFoundError, NotADirectoryError)


def run_cli(prog: str, config_cls: type[T], main: Callable[[T], object], args: Optional[list[str]] = None) -> None:
    """Parse ``config_cls`` from argv with tyro, run ``main(cfg)``, turn user errors into exit code 2."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tyro

    cfg = tyro.cli(config_cls, prog=prog, args=args, description=config_cls.__doc__)
    try:
        main(cfg)
    except USER_ERRORS as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"{prog}: error: {msg}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; the last checkpoint is kept (rerun with --resume)", file=sys.stderr)
        sys.exit(130)


class Progress:
    """A rich progress bar over a step count (env steps, SGD steps, ...), or nothing when disabled."""

    def __init__(self, description: str, total: int, unit: str, enabled: bool = True):
        self.enabled = enabled and total > 0
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
        else:
            print(message, flush=True)
