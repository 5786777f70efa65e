"""Compare a teacher with one or more students from Python (no CLI).

    python examples/compare_student_teacher.py runs/quickstart/teacher runs/quickstart/student_d4_w64
"""

import argparse

from deepdistill.distill.evaluate import compare, table
from deepdistill.distill.run import check_compatible
from deepdistill.student import load_student
from deepdistill.teacher import load_teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teacher", help="a train-teacher run directory")
    parser.add_argument("students", nargs="+", help="distill run directories")
    parser.add_argument("--episodes", type=int, default=256)
    args = parser.parse_args()

    teacher = load_teacher(args.teacher)
    students = [load_student(s) for s in args.students]
    for s in students:
        check_compatible(teacher, s)  # same task, same observation layout

    report = compare(teacher, students, episodes=args.episodes, viewer=False)  # no report folder: no viewer pages
    print(table(report))
    for name, a in report["agreement"].items():
        print(f"{name}: action MSE {a['action_mse']:.4f}, CKA phi {a['cka_phi']:.3f}, "
              f"CKA psi {a['cka_psi']:.3f}, logit correlation {a['logits_pearson']:.3f}")


if __name__ == "__main__":
    main()
