"""A pipeline preset with several teacher depths: one folder per teacher, one direct run shared by all,
and success against the teacher's depth (a tiny stand-in for ``--preset depth``)."""

import json

import numpy as np
import pytest

from deepdistill.pipeline import PRESETS, PipelineConfig, run_pipeline

SMOKE = PRESETS["smoke"]
TINY_DEPTH = {
    "teacher": {**SMOKE["teacher"], "total_env_steps": 9_600, "eval_every": 8_000},
    "distill": {**SMOKE["distill"], "steps": 50, "eval_every": 50},
    "students": [(0, 32)],
    "teacher_depths": [0, 4],
}


@pytest.mark.slow
def test_teacher_depths_share_one_direct_run_and_plot_success_against_depth(tmp_path, monkeypatch):
    monkeypatch.setitem(PRESETS, "tiny_depth", TINY_DEPTH)
    out = tmp_path / "depth"
    result = run_pipeline(PipelineConfig(preset="tiny_depth", out=str(out), episodes=16, progress=False))
    stages = json.loads((out / "pipeline.json").read_text())["stages"]
    for t in ("t0", "t4"):
        assert {f"{t}/teacher", f"{t}/distill_d0_w32", f"{t}/export_d0_w32", f"{t}/evaluate"} <= set(stages)
    # the depth-0 teacher is the student's network trained with the teachers' recipe and seed: the
    # direct run, reused rather than trained twice
    assert stages["direct_d0_w32"]["same_as"] == str(out / "t0" / "teacher") and not (out / "direct_d0_w32").exists()
    r4 = json.loads((out / "t4" / "report" / "report.json").read_text())
    assert r4["direct"]["name"] == "direct:t0/teacher" and r4["dividend"][0]["direct"] == "direct:t0/teacher"
    doc = json.loads((out / "report" / "depth.json").read_text())
    rows = {(r["teacher_depth"], r["role"]): r for r in doc["rows"]}
    assert set(rows) == {(d, role) for d in (0, 4) for role in ("teacher", "student", "direct", "random")}
    # every report runs the same episodes: the direct run scores the same in both, and as the depth-0 teacher
    for metric in ("success", "time_at_goal"):
        assert rows[(4, "direct")][f"random/{metric}"] == rows[(0, "direct")][f"random/{metric}"] == rows[(0, "teacher")][f"random/{metric}"]
        assert rows[(4, "teacher")][f"random/{metric}"]["mean"] == pytest.approx(np.mean(r4["per_episode"]["teacher"]["random"][metric]))
    assert rows[(4, "teacher")]["actor_depth"] == 4 and rows[(4, "student")]["actor_depth"] == 0
    assert (out / "report" / "success_vs_teacher_depth.png").stat().st_size > 10_000
    md = (out / "report" / "depth.md").read_text()
    assert "| 4 | teacher |" in md and "teacher depth 4: **dividend**" in md
    assert set(result["reports"]) == {"t0", "t4"}
