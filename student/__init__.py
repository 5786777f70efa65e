"""Shallow students with the teacher's interfaces."""

from deepdistill.student.networks import make_student

__all__ = ["make_student", "load_student"]


def load_student(run_dir, step=None):
    """Load a student from a ``distill`` run directory (newest checkpoint unless ``step``)."""
    from deepdistill.teacher.checkpoint import load_policy_run

    return load_policy_run(run_dir, "student", "--student", step)
