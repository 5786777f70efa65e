"""``train-teacher``: train a deep contrastive-RL teacher (flags: ``train-teacher --help``)."""

from __future__ import annotations

import json

from deepdistill.core.cli import run_cli
from deepdistill.teacher.config import TeacherConfig


def _main(cfg: TeacherConfig) -> None:
    from deepdistill.teacher.run import train_teacher

    last = train_teacher(cfg)
    keys = [k for k in ("env_steps", "wall_s", "success_rate", "time_at_goal", "final_distance",
                        "hard/success_rate", "hard/time_at_goal") if k in last]
    print(json.dumps({k: last[k] for k in keys}))
    print(f"teacher run: {cfg.out}")


def main(args: list[str] | None = None) -> None:
    run_cli("train-teacher", TeacherConfig, _main, args)


if __name__ == "__main__":
    main()
