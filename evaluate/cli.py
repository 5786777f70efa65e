"""``evaluate``: compare a teacher with its students (JAX and ONNX) on the same goals (``evaluate --help``)."""

from __future__ import annotations

from deepdistill.core.cli import run_cli
from deepdistill.evaluate.config import EvaluateConfig


def _main(cfg: EvaluateConfig) -> None:
    from deepdistill.evaluate.report import summary
    from deepdistill.evaluate.run import evaluate

    report = evaluate(cfg)
    print(summary(report))
    print(f"report: {report['paths']['md']}")


def main(args: list[str] | None = None) -> None:
    run_cli("evaluate", EvaluateConfig, _main, args)


if __name__ == "__main__":
    main()
