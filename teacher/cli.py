"""``train-teacher``: train a deep contrastive-RL teacher (flags: ``train-teacher --help``)."""

from __future__ import annotations

import json
import sys

from deepdistill.core.cli import run_cli
from deepdistill.core.distributed import is_writer
from deepdistill.teacher.config import TeacherConfig
from deepdistill.teacher.presets import apply_preset


def _main(cfg: TeacherConfig) -> None:
    if cfg.dry_run:
        from deepdistill.teacher.plan import dry_run
        from deepdistill.teacher.xla_flags import apply_xla_gpu_flags

        apply_xla_gpu_flags(cfg.xla_gpu_flags)  # before JAX starts, so that the plan compiles as training would
        print(dry_run(cfg))
        return
    from deepdistill.teacher.run import train_teacher

    last = train_teacher(cfg)
    if not is_writer():  # in a multi-process run, process 0 reports
        return
    keys = [k for k in ("env_steps", "wall_s", "success_rate", "time_at_goal", "final_distance",
                        "hard/success_rate", "hard/time_at_goal") if k in last]
    print(json.dumps({k: last[k] for k in keys}))
    print(f"teacher run: {cfg.out}")


def with_preset(cfg: TeacherConfig, args: list[str]) -> TeacherConfig:
    """``cfg`` with its ``--preset`` filled in: ``args`` parsed again over the preset's values, so
    the flags given explicitly keep theirs."""
    base = apply_preset(cfg)
    if base is cfg:
        return cfg
    import tyro

    return tyro.cli(TeacherConfig, prog="train-teacher", args=args, default=base)


def main(args: list[str] | None = None) -> None:
    argv = sys.argv[1:] if args is None else list(args)
    run_cli("train-teacher", TeacherConfig, lambda cfg: _main(with_preset(cfg, argv)), argv, resumable=True)


if __name__ == "__main__":
    main()
