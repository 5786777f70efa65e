"""The ``evaluate`` stage: a teacher, its students and their ONNX exports on the same episodes
(success, time at goal, agreement metrics, latency), report.json / report.md, plots and viewer pages."""

from deepdistill.evaluate.config import EvaluateConfig

__all__ = ["EvaluateConfig", "evaluate"]


def evaluate(cfg: EvaluateConfig) -> dict:
    """Run the comparison of ``cfg`` and write the report; returns the report."""
    from deepdistill.evaluate.run import evaluate as _evaluate

    return _evaluate(cfg)
