"""Distill one teacher into students of several depths and compare them on one plot.

    python examples/student_depth_sweep.py runs/teacher --depths 0 4 8 --width 64 --out runs/sweep
"""

import argparse
from pathlib import Path

from deepdistill.distill import DistillConfig, distill
from deepdistill.distill.evaluate import compare, table, write_report
from deepdistill.student import load_student
from deepdistill.teacher import load_teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teacher")
    parser.add_argument("--depths", type=int, nargs="+", default=[0, 4, 8])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--out", default="runs/sweep")
    args = parser.parse_args()

    out = Path(args.out)
    runs = []
    for depth in args.depths:
        run = out / f"student_d{depth}_w{args.width}"
        if not (run / "result.json").exists():  # finished students are kept
            resume = (run / "run.json").exists()
            distill(DistillConfig(teacher=args.teacher, out=str(run), depth=depth, width=args.width,
                                  steps=args.steps, resume=resume))
        runs.append(load_student(run))

    report = compare(load_teacher(args.teacher), runs)
    paths = write_report(report, out / "report")
    print(table(report))
    print("plots:", ", ".join(paths["plots"]))


if __name__ == "__main__":
    main()
