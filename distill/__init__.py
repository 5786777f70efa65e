"""Distillation of a frozen teacher into a shallow student (teacher-driven data or DAgger)."""

from deepdistill.distill.config import DistillConfig

__all__ = ["DistillConfig", "distill"]


def distill(cfg: DistillConfig) -> dict:
    """Run ``distill`` (see :class:`DistillConfig`); returns teacher and student evaluations."""
    from deepdistill.distill.run import distill as _distill

    return _distill(cfg)
