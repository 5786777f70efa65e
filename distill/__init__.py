"""Distillation of a frozen teacher into a shallow student (teacher-driven data or DAgger)."""

from deepdistill.distill.config import DistillConfig

__all__ = ["DistillConfig", "distill"]


def distill(cfg: DistillConfig, devices=None, student=None) -> dict:
    """Run ``distill`` (see :class:`DistillConfig`); returns teacher and student evaluations.

    ``student``: networks of your own (any :class:`deepdistill.student.PolicyNetworks`, e.g. a flax.nnx
    module through ``NNXNetworks``) instead of the ``--arch`` built from ``cfg``."""
    from deepdistill.distill.run import distill as _distill

    return _distill(cfg, devices=devices, student=student)
