"""``distill``: distill a teacher run into a shallow student (flags: ``distill --help``)."""

from __future__ import annotations

import json

from deepdistill.core.cli import run_cli
from deepdistill.core.distributed import is_writer
from deepdistill.distill.config import DistillConfig


def _main(cfg: DistillConfig) -> None:
    from deepdistill.distill.run import distill

    result = distill(cfg)
    if not is_writer():  # in a multi-process run, process 0 reports
        return
    print(json.dumps(result))
    print(f"student run: {cfg.out}")


def main(args: list[str] | None = None) -> None:
    run_cli("distill", DistillConfig, _main, args, resumable=True)


if __name__ == "__main__":
    main()
