"""``evaluate(cfg)``: load the teacher, students and ONNX exports, compare them, write the report."""

from __future__ import annotations

from pathlib import Path

from deepdistill.core.errors import RunError
from deepdistill.core.rundir import check_writable_dir, exclusive
from deepdistill.evaluate.config import EvaluateConfig


def evaluate(cfg: EvaluateConfig) -> dict:
    """Run the comparison and write the report; returns the report (see :func:`compare.compare`)."""
    cfg.validate()
    check_writable_dir(cfg.out, "--out")  # before any work
    with exclusive(cfg.out, "--out"):
        return _evaluate(cfg)


def _evaluate(cfg: EvaluateConfig) -> dict:
    from deepdistill.student.policy import check_compatible, load_policy_run, load_teacher
    from deepdistill.evaluate.compare import compare
    from deepdistill.evaluate.report import write_report
    from deepdistill.export.runtime import OnnxPolicy

    teacher = load_teacher(cfg.teacher)
    students = [load_policy_run(s, "student", "--student") for s in cfg.student]
    for s in students:
        check_compatible(teacher, s)
        if s.sensed:
            raise RunError(f"--student {s.run_dir}: a student with its own sensors (observation_model.json) is not "
                           f"evaluated by this version yet")
    onnx = []
    for d in cfg.onnx:
        policy = OnnxPolicy(str(check_onnx_dir(d)))
        if policy.metadata.get("task") not in (None, teacher.spec.name):
            raise RunError(f"--onnx {d}: exported for task {policy.metadata.get('task')!r}, the teacher acts in {teacher.spec.name!r}")
        onnx.append((f"onnx:{Path(d).name}", policy))
    report = compare(teacher, students, onnx, cfg.episodes, cfg.seed, cfg.latency_samples, viewer=cfg.viewer,
                     native=cfg.native)
    paths = write_report(report, cfg.out, cfg.plots)
    report["paths"] = paths
    return report


def check_onnx_dir(path: str) -> Path:
    p = Path(path)
    f = p / "policy.onnx" if p.is_dir() else p
    if not f.is_file():
        raise RunError(f"--onnx {path}: no policy.onnx there; pass a directory written by `export-onnx`")
    return f
