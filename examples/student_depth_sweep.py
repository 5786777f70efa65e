"""Distill one teacher into students of several depths and compare them on one plot.

    python examples/student_depth_sweep.py runs/teacher --depths 0 4 8 --width 64 --out runs/sweep
"""

import dataclasses
from pathlib import Path

import tyro

from deepdistill.distill import DistillConfig, distill
from deepdistill.evaluate.compare import compare
from deepdistill.evaluate.report import table, write_report
from deepdistill.student import load_student
from deepdistill.teacher import load_teacher


@dataclasses.dataclass(frozen=True)
class Args:
    teacher: tyro.conf.Positional[str]
    """A train-teacher run directory."""
    depths: tuple[int, ...] = (0, 4, 8)
    width: int = 64
    steps: int = 6000
    arch: str = "residual"
    """Student architecture: residual or mlp."""
    out: str = "runs/sweep"


def main(args: Args) -> None:
    out = Path(args.out)
    runs = []
    for depth in args.depths:
        run = out / f"student_{args.arch}_d{depth}_w{args.width}"
        if not (run / "result.json").exists():  # finished students are kept
            resume = (run / "run.json").exists()
            distill(DistillConfig(teacher=args.teacher, out=str(run), arch=args.arch, depth=depth, width=args.width,
                                  steps=args.steps, resume=resume))
        runs.append(load_student(run))

    report = compare(load_teacher(args.teacher), runs)
    paths = write_report(report, out / "report")
    print(table(report))
    print("plots:", ", ".join(paths["plots"]))


if __name__ == "__main__":
    main(tyro.cli(Args, description=__doc__))
