"""``evaluate``: compare a teacher with its students (JAX and ONNX) on the same goals (``evaluate --help``)."""

from __future__ import annotations

from pathlib import Path

from deepdistill._cli import run_cli
from deepdistill.distill.evaluate import EvaluateConfig


def evaluate(cfg: EvaluateConfig) -> dict:
    """Run the comparison and write the report; returns the report (see ``distill.evaluate.compare``)."""
    from deepdistill.distill.evaluate import check_onnx_dir, compare, write_report
    from deepdistill.distill.run import check_compatible
    from deepdistill.teacher.checkpoint import load_policy_run, load_teacher

    cfg.validate()
    teacher = load_teacher(cfg.teacher)
    students = [load_policy_run(s, "student", "--student") for s in cfg.student]
    for s in students:
        check_compatible(teacher, s)
    onnx = []
    for d in cfg.onnx:
        from deepdistill.export.runtime import OnnxPolicy

        policy = OnnxPolicy(str(check_onnx_dir(d)))
        if policy.metadata.get("task") not in (None, teacher.spec.name):
            raise ValueError(f"--onnx {d}: exported for task {policy.metadata.get('task')!r}, the teacher acts in {teacher.spec.name!r}")
        onnx.append((f"onnx:{Path(d).name}", policy))
    report = compare(teacher, students, onnx, cfg.episodes, cfg.seed, cfg.latency_samples, viewer=cfg.viewer)
    paths = write_report(report, cfg.out, cfg.plots)
    report["paths"] = paths
    return report


def _main(cfg: EvaluateConfig) -> None:
    from deepdistill.distill.evaluate import table

    report = evaluate(cfg)
    print(table(report))
    print(f"report: {report['paths']['md']}")


def main(args: list[str] | None = None) -> None:
    run_cli("evaluate", EvaluateConfig, _main, args)


if __name__ == "__main__":
    main()
