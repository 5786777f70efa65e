"""Compare a teacher with one or more students from Python (no CLI).

    python examples/compare_student_teacher.py runs/quickstart/teacher runs/quickstart/student_d4_w64 \
        --direct runs/quickstart/direct_d4_w64
"""

import dataclasses

import tyro

from deepdistill.student.policy import check_compatible
from deepdistill.evaluate.compare import compare
from deepdistill.evaluate.report import summary
from deepdistill.evaluate.run import load_direct
from deepdistill.student import load_student
from deepdistill.teacher import load_teacher


@dataclasses.dataclass(frozen=True)
class Args:
    teacher: tyro.conf.Positional[str]
    """A train-teacher run directory."""
    students: tyro.conf.Positional[tuple[str, ...]]
    """Distill run directories."""
    direct: tuple[str, ...] = ()
    """Optional: the students' networks trained directly (train-teacher --arch/--depth/--width of a student)."""
    episodes: int = 256


def main(args: Args) -> None:
    teacher = load_teacher(args.teacher)
    students = [load_student(s) for s in args.students]
    for s in students:
        check_compatible(teacher, s)  # same task, same observation layout
    directs = [load_direct(d, teacher, students) for d in args.direct]  # same task, a student's network

    report = compare(teacher, students, episodes=args.episodes, viewer=False, directs=directs)  # no viewer pages
    print(summary(report))  # the table, then each student's dividend over its direct run
    for name, a in report["agreement"].items():
        rep = ", ".join(f"{k} {a[k]:.3f}" for k in ("cka_phi", "cka_psi", "logits_pearson") if k in a)
        print(f"{name}: action MSE {a['action_mse']:.4f}" + (f", {rep}" if rep else ""))


if __name__ == "__main__":
    main(tyro.cli(Args, description=__doc__))
