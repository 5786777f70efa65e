"""Learning quality of the real recipes (``slow``: several CPU-minutes; CI runs them, ``-m 'not slow'``
skips them). The figures are the targets of BENCHMARKS.md ("Teacher learning curve on point_maze",
"The whole pipeline on a CPU")."""

import json

import pytest

from deepdistill.pipeline import PipelineConfig, run_pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart") / "run"
    # the recipe's targets; the direct baseline (its own tests: test_dividend.py) is left out here
    report = run_pipeline(PipelineConfig(preset="quickstart", out=str(out), progress=False, direct=False))
    return out, report


def test_the_quickstart_teacher_reaches_its_targets(quickstart):
    out, _ = quickstart
    evals = [json.loads(line) for line in open(out / "teacher" / "metrics.jsonl")][-3:]
    random = sum(r["success_rate"] for r in evals) / 3
    hard = sum(r["hard/success_rate"] for r in evals) / 3
    assert random >= 0.90 and hard >= 0.70, (random, hard)


def test_the_quickstart_student_retains_the_teachers_success(quickstart):
    _, report = quickstart
    teacher, student, onnx = report["teacher"], report["student"], report["onnx"]
    for key in ("success_rate", "hard/success_rate"):
        assert student[key] >= 0.95 * teacher[key], (key, student[key], teacher[key])
        assert onnx[key] == pytest.approx(student[key], abs=0.02), key  # the exported file acts like the student
