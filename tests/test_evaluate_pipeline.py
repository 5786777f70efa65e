"""evaluate and the one-command pipeline, on the seconds-long `smoke` preset."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deepdistill.evaluate.compare import compare
from deepdistill.pipeline import PipelineConfig, run_pipeline
from deepdistill.student.policy import load_policy_run, load_teacher


@pytest.fixture(scope="module")
def pipeline_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipe") / "smoke"
    run_pipeline(PipelineConfig(preset="smoke", out=str(out), episodes=64, progress=False))
    return out


@pytest.mark.slow
def test_pipeline_writes_every_stage_and_the_report(pipeline_out):
    status = json.loads((pipeline_out / "pipeline.json").read_text())
    assert set(status["stages"]) == {"teacher", "distill_d0_w32", "export_d0_w32", "direct_d0_w32", "evaluate"}
    assert status["direct"] is True
    report = json.loads((pipeline_out / "report" / "report.json").read_text())
    for key in ("success_rate", "params"):
        assert key in report["teacher"] and key in report["student"]
    assert report["onnx"]["success_rate"] == pytest.approx(report["student"]["success_rate"])
    assert report["onnx"]["latency_us_p50"] > 0
    assert report["student"]["params"] < report["teacher"]["params"]
    for png in ("success_vs_params.png", "success_vs_latency.png", "trajectories.png"):
        assert (pipeline_out / "report" / png).stat().st_size > 10_000
    md = (pipeline_out / "report" / "report.md").read_text()
    assert "| teacher |" in md and "onnx:onnx_d0_w32" in md
    assert "viewer" not in report and not list((pipeline_out / "report").glob("*.html"))  # brax tasks only
    # every report shows random actions on the same episodes; point tasks have no native MuJoCo row
    r = report["random"]
    assert r["kind"] == "random" and 0.0 <= r["success_rate"] <= 1.0 and r["time_at_goal"] >= 0.0
    assert "| random |" in md and report["native_mujoco"] == {} and report["native_all"] == []


@pytest.mark.slow
def test_the_direct_run_is_the_students_network_trained_with_the_teachers_recipe(pipeline_out):
    from deepdistill.teacher.config import TeacherConfig

    teacher = TeacherConfig.from_dict(json.loads((pipeline_out / "teacher" / "config.json").read_text()))
    direct = TeacherConfig.from_dict(json.loads((pipeline_out / "direct_d0_w32" / "config.json").read_text()))
    assert (direct.depth, direct.width, direct.arch) == (0, 32, "residual")
    differs = {k for k, v in direct.to_dict().items() if v != teacher.to_dict()[k]}
    assert differs == {"depth", "out"}  # same task, seed, budget and recipe (the smoke teacher's width is the student's)
    student = load_policy_run(pipeline_out / "student_d0_w32", "student")
    assert load_teacher(pipeline_out / "direct_d0_w32").nets == student.nets


@pytest.mark.slow
def test_report_has_a_direct_entry_like_the_students_and_the_dividend_from_its_episodes(pipeline_out):
    from scipy.stats import t as student_t

    report = json.loads((pipeline_out / "report" / "report.json").read_text())
    d, s = report["direct"], report["student"]
    assert d["kind"] == "direct" and d["name"] == "direct:direct_d0_w32" and report["directs"] == [d]
    assert set(s) - {"kind", "name"} <= set(d)  # the same fields as the student's (and its env steps)
    assert d["params"] == s["params"] and d["env_steps"] == report["teacher"]["env_steps"] > 0
    per = report["per_episode"]
    assert set(per) == {"teacher", s["name"], d["name"], "random"}
    for name, entry in ((s["name"], s), (d["name"], d), ("random", report["random"])):
        ep = per[name]["random"]
        assert len(ep["success"]) == len(ep["time_at_goal"]) == report["episodes"]
        assert np.mean(ep["success"]) == pytest.approx(entry["success_rate"])
        assert np.mean(ep["time_at_goal"]) == pytest.approx(entry["time_at_goal"])
    (div,) = report["dividend"]
    assert (div["student"], div["direct"]) == (s["name"], d["name"])
    for metric in ("time_at_goal", "success"):  # recomputed from the per-episode arrays
        diff = np.asarray(per[s["name"]]["random"][metric]) - np.asarray(per[d["name"]]["random"][metric])
        n = len(diff)
        half = student_t.ppf(0.975, n - 1) * diff.std(ddof=1) / np.sqrt(n)
        got = div["splits"]["random"][metric]
        assert got["n"] == n and got["mean"] == pytest.approx(diff.mean())
        assert (got["ci_low"], got["ci_high"]) == pytest.approx((diff.mean() - half, diff.mean() + half))
    t = div["splits"]["random"]["time_at_goal"]
    md = (pipeline_out / "report" / "report.md").read_text()
    assert "## Did distillation pay?" in md and "| direct:direct_d0_w32 |" in md
    line = next(l for l in md.splitlines() if l.startswith("- **dividend**"))
    assert f"time at goal {t['mean']:+.1f} [{t['ci_low']:+.1f}, {t['ci_high']:+.1f}]" in line
    assert line.endswith(f"**{div['verdict']}**.")
    assert (pipeline_out / "report" / "side_by_side.png").stat().st_size > 10_000


@pytest.mark.slow
def test_a_policy_compared_with_itself_agrees_perfectly(pipeline_out):
    teacher = load_teacher(pipeline_out / "teacher")
    as_student = load_policy_run(pipeline_out / "teacher", "teacher")
    report = compare(teacher, [as_student], episodes=32, latency_samples=20)
    t, s = report["teacher"], report["students"][0]
    assert s["success_rate"] == t["success_rate"] and s["time_at_goal"] == t["time_at_goal"]
    a = report["agreement"][next(iter(report["agreement"]))]
    assert a["action_mse"] == 0.0
    assert a["action_cosine"] == pytest.approx(1.0)
    assert a["cka_phi"] == pytest.approx(1.0) and a["cka_psi"] == pytest.approx(1.0)
    assert a["logits_pearson"] == pytest.approx(1.0)


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--episodes", "0"], "--episodes must be positive"),
        (["--student", "/nonexistent/student"], "no such directory"),
    ],
)
@pytest.mark.slow
def test_evaluate_bad_input(pipeline_out, tmp_path, extra, needle):
    args = ["deepdistill.evaluate.cli", "--teacher", str(pipeline_out / "teacher"),
            "--student", str(pipeline_out / "student_d0_w32"), "--out", str(tmp_path / "r"), *extra]
    r = run_cli(*args)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def _copy_as_task(run, dst, task: str):
    """A copy of ``run`` whose env_spec.json names another task."""
    import shutil

    shutil.copytree(run, dst)
    spec = json.loads((dst / "env_spec.json").read_text())
    spec["name"] = task
    (dst / "env_spec.json").write_text(json.dumps(spec))
    return dst


@pytest.mark.slow
def test_evaluate_refuses_a_student_of_another_task(pipeline_out, tmp_path):
    other = _copy_as_task(pipeline_out / "student_d0_w32", tmp_path / "other", "point_maze")
    r = run_cli("deepdistill.evaluate.cli", "--teacher", str(pipeline_out / "teacher"),
                "--student", str(other), "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "was distilled on task 'point_maze'" in r.stderr


def _evaluate_direct(pipeline_out, tmp_path, direct):
    out = tmp_path / "r"
    r = run_cli("deepdistill.evaluate.cli", "--teacher", str(pipeline_out / "teacher"), "--student",
                str(pipeline_out / "student_d0_w32"), "--direct", str(direct), "--out", str(out), "--no-plots")
    return r, out


@pytest.mark.slow
def test_evaluate_refuses_a_direct_run_of_another_task(pipeline_out, tmp_path):
    other = _copy_as_task(pipeline_out / "direct_d0_w32", tmp_path / "other", "point_maze")
    r, out = _evaluate_direct(pipeline_out, tmp_path, other)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"--direct {other} was trained on task 'point_maze', the teacher acts in 'point_arena'" in r.stderr
    assert not (out / "report.json").exists()


@pytest.mark.slow
def test_evaluate_refuses_a_direct_run_whose_network_matches_no_student(pipeline_out, tmp_path):
    r, out = _evaluate_direct(pipeline_out, tmp_path, pipeline_out / "teacher")  # depth 8, the student is depth 0
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "its network (residual: actor_depth 8" in r.stderr and "matches no student (residual: actor_depth 0" in r.stderr
    assert not (out / "report.json").exists()
    r, _ = _evaluate_direct(pipeline_out, tmp_path, pipeline_out / "student_d0_w32")  # a distilled run is no direct run
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--direct" in r.stderr, r.stderr


def _kill_when(cmd, path_glob: str, root: Path, timeout=240):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and not list(root.glob(path_glob)) and proc.poll() is None:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_pipeline_resumes_after_a_kill(tmp_path):
    """Killed (-9) mid-distillation: the rerun skips the finished teacher, resumes the student, and
    finishes. (A kill inside train-teacher is tested in test_teacher_training; an interrupted export
    below.)"""
    out = tmp_path / "p"
    stage_glob = "student_d0_w32/checkpoints/[0-9]*"
    cmd = [sys.executable, "-m", "deepdistill.pipeline", "pipeline", "--preset", "smoke", "--out", str(out),
           "--episodes", "32", "--no-progress"]
    _kill_when(cmd, stage_glob, out)
    status = json.loads((out / "pipeline.json").read_text())
    assert "teacher" in status["stages"] and "evaluate" not in status["stages"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    status = json.loads((out / "pipeline.json").read_text())
    assert "evaluate" in status["stages"]
    for run in ("teacher", "student_d0_w32"):
        key = "env_steps" if run == "teacher" else "sgd_steps"
        steps = [json.loads(l)[key] for l in open(out / run / "metrics.jsonl")]
        assert steps == sorted(set(steps))  # resumed: nothing duplicated, nothing lost


@pytest.mark.slow
def test_pipeline_redoes_an_interrupted_export(pipeline_out):
    status = json.loads((pipeline_out / "pipeline.json").read_text())
    del status["stages"]["export_d0_w32"], status["stages"]["evaluate"]
    (pipeline_out / "pipeline.json").write_text(json.dumps(status))
    (pipeline_out / "onnx_d0_w32" / "policy.onnx").write_bytes(b"truncated")
    run_pipeline(PipelineConfig(preset="smoke", out=str(pipeline_out), episodes=32, progress=False))
    from deepdistill.export.runtime import OnnxPolicy

    student = load_policy_run(pipeline_out / "student_d0_w32", "student")
    policy = OnnxPolicy(str(pipeline_out / "onnx_d0_w32" / "policy.onnx"))
    s = np.random.default_rng(0).uniform(1, 4, (7, 2)).astype(np.float32)
    g = np.random.default_rng(1).uniform(1, 4, (7, 2)).astype(np.float32)
    np.testing.assert_allclose(policy.act(s, g), np.asarray(student.act(s, g)), atol=1e-5)
