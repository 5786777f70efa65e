"""Runs that survive a full disk, a signal and a moved teacher; sizes and budgets refused up front
(issue 22, items 3-7).

The toy stage of tests/test_robustness.py (milliseconds an epoch) carries the cases of the shared run
loop through the real command-line wrapper; the real commands run where only they can show it:
SIGTERM mid-run of ``train-teacher`` and ``distill`` (subprocesses: a signal needs a process of its
own), a moved teacher, sizes that would hang. One tiny teacher (point_arena, depth 4, width 16) is
trained by the SIGTERM test's subprocess and resumed; the later tests reuse it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deepdistill.core.checkpoint import Checkpointer
from deepdistill.core.cli import run_cli
from deepdistill.core.runner import run_stage
from deepdistill.core.signals import Interrupted
from deepdistill.core.rundir import read_json

from test_robustness import ToyConfig, ToyStage, params_at, steps_of

TEACHER = ["--env", "point_arena", "--depth", "4", "--width", "16", "--repr-dim", "8", "--num-envs", "8",
           "--unroll-length", "25", "--batch-size", "32", "--env-steps-per-sgd-step", "50", "--replay-steps-per-env", "200",
           "--min-replay-steps", "50", "--eval-every", "200", "--num-eval-episodes", "8", "--lr-schedule", "constant",
           "--no-progress"]  # one collection of 200 env steps and 4 SGD steps an epoch; prefill 400 env steps
STUDENT = ["--depth", "0", "--width", "16", "--batch-size", "32", "--num-envs", "8", "--unroll-length", "25",
           "--sgd-steps-per-unroll", "5", "--replay-steps-per-env", "200", "--eval-every", "5", "--num-eval-episodes", "8",
           "--no-progress"]  # 5 SGD steps an epoch


def toy_cli(cfg: ToyConfig, capsys) -> tuple[int, str]:
    """``run_stage(ToyStage(cfg))`` through the command-line wrapper of train-teacher and distill."""
    capsys.readouterr()
    fields = [f"--{k.replace('_', '-')}={v}" for k, v in cfg.to_dict().items() if not isinstance(v, bool)]
    fields += [f"--{'' if v else 'no-'}{k.replace('_', '-')}" for k, v in cfg.to_dict().items() if isinstance(v, bool)]
    with pytest.raises(SystemExit) as e:
        run_cli("toy", ToyConfig, lambda c: run_stage(ToyStage(c)), fields, resumable=True)
    return e.value.code, capsys.readouterr().err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def checkpoints(run: Path) -> list[int]:
    d = run / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


# --- item 3: a full disk at a checkpoint ---------------------------------------------------------------


def test_a_full_disk_at_a_checkpoint_is_one_line_exit_2_and_loses_nothing(tmp_path, capsys, monkeypatch):
    """Orbax raises what it raises on a full disk (ValueError RESOURCE_EXHAUSTED ... No space left on
    device) while saving step 3, after writing part of it: one line, exit 2, steps 1-2 intact, the partial
    step gone, no lock; --resume then trains steps 3-5 exactly as an uninterrupted run."""
    import orbax.checkpoint as ocp

    save = ocp.CheckpointManager.save

    def full_at_3(self, step, *a, **k):
        if step == 3:
            partial = Path(self.directory) / "3.orbax-checkpoint-tmp"
            (partial / "state").mkdir(parents=True)
            (partial / "state" / "d").write_bytes(b"half")
            raise ValueError(f'RESOURCE_EXHAUSTED: Error writing "step" in OCDBT database at local file "{partial}": '
                             "Failed to write 305466 bytes to file 7: No space left on device [os_error_code='28']")
        return save(self, step, *a, **k)

    cfg = ToyConfig(out=str(tmp_path / "run"), steps=5)
    with monkeypatch.context() as m:
        m.setattr(ocp.CheckpointManager, "save", full_at_3)
        code, err = toy_cli(cfg, capsys)
    line = one_line(err)
    assert code == 2 and "no space left on device while saving the checkpoint of step 3" in line, line
    assert "step 2, the newest checkpoint, is intact" in line and f"continue with `toy --resume --out {cfg.out}`" in line
    run = Path(cfg.out)
    assert checkpoints(run) == [1, 2] and not list((run / "checkpoints").glob("*tmp*")) and not (run / "lock").exists()
    run_stage(ToyStage(ToyConfig(out=cfg.out, steps=5, resume=True)))
    straight = ToyConfig(out=str(tmp_path / "straight"), steps=5)
    run_stage(ToyStage(straight))
    np.testing.assert_array_equal(params_at(cfg.out)[1], params_at(straight.out)[1])
    assert [r["sgd_steps"] for r in map(json.loads, open(run / "metrics.jsonl"))] == [1, 2, 3, 4, 5]


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_really_full_disk_then_more_space_resumes(tmp_path, capsys):
    """The same on a real 2 MiB tmpfs that fills up (root only): Orbax's own error, one line, the steps
    before it readable; with more room, --resume finishes the run."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "2m"):
        pytest.skip("needs root and a tmpfs mount")
    try:
        cfg = ToyConfig(out=str(disk / "run"), steps=40)
        code, err = toy_cli(cfg, capsys)
        line = one_line(err)
        assert code == 2 and "no space left on device while saving the checkpoint of step" in line, line
        kept = checkpoints(Path(cfg.out))
        assert kept and kept == list(range(1, kept[-1] + 1)) and kept[-1] < 40, kept
        assert params_at(cfg.out)[0] == kept[-1] and not (Path(cfg.out) / "lock").exists()
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        run_stage(ToyStage(ToyConfig(out=cfg.out, steps=40, resume=True)))
        assert steps_of(cfg.out)[-1] == 40
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_in_export_and_evaluate_names_the_path_and_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    from deepdistill.core import rundir
    from deepdistill.evaluate import plots

    fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    import matplotlib.pyplot as plt

    fig = plt.figure()
    monkeypatch.setattr(rundir.os, "fsync", full)
    with pytest.raises(OSError) as e:
        plots.save(fig, tmp_path / "success_vs_params.png")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "success_vs_params.png")
    monkeypatch.setattr(rundir.os, "fsync", fsync)
    assert list(tmp_path.iterdir()) == []  # no partial plot, no temporary file

    @__import__("dataclasses").dataclass(frozen=True)
    class Cfg:
        out: str = str(tmp_path / "report")

    def write(cfg):
        monkeypatch.setattr(rundir.os, "fsync", full)
        rundir.atomic_write(Path(cfg.out) / "report.md", "# report\n")

    with pytest.raises(SystemExit) as e:
        run_cli("evaluate", Cfg, write, [])
    line = one_line(capsys.readouterr().err)
    assert e.value.code == 2 and line == f"evaluate: error: No space left on device: {tmp_path / 'report' / 'report.md'}"
    assert not list((tmp_path / "report").iterdir())


# --- item 4: a budget that cannot train ----------------------------------------------------------------


@pytest.mark.parametrize("total", [1000, 20000])
def test_a_budget_below_the_first_epoch_is_refused_with_the_minimum(tmp_path, capsys, total):
    from deepdistill.teacher.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["--out", str(tmp_path / "t"), "--total-env-steps", str(total)])
    line = one_line(capsys.readouterr().err)
    # defaults: prefill 2 unrolls of 50 x 256 envs = 25,600; one epoch round(100,000 / 12,800) = 8 unrolls = 102,400
    assert e.value.code == 2 and f"--total-env-steps {total:,} is below the minimum of this config, 128,000" in line, line
    assert "filling the replay with random actions takes 25,600 env steps" in line and "102,400 more" in line
    assert not (tmp_path / "t").exists()


# --- item 6: SIGTERM mid-run, then --resume -------------------------------------------------------------


def _stop_mid_run(cmd: list[str], run: Path, signum: int = signal.SIGTERM) -> tuple[subprocess.CompletedProcess, int]:
    """Start ``cmd``, wait for its first checkpoint, send ``signum``; returns the finished process and the
    newest checkpoint seen before the signal."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, seen = time.time() + 300, []
    while time.time() < deadline and proc.poll() is None:
        seen = checkpoints(run)
        if seen:
            break
        time.sleep(0.05)
    assert seen, proc.communicate(timeout=60)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), seen[-1]


def _check_stopped(r: subprocess.CompletedProcess, run: Path, before: int, total: int, command: str, unit: str) -> int:
    """A run stopped at an epoch boundary: exit 143, the message names the step saved and how to resume,
    the newest checkpoint is that step (at least the one seen before the signal, short of the budget),
    the lock is gone."""
    assert r.returncode == 143, r.stderr[-3000:]
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert lines[0].startswith("SIGTERM received: finishing the current epoch, then saving a checkpoint"), lines
    last = lines[-1]
    assert last.startswith(f"{command}: stopped by SIGTERM at ") and f"continue with `{command} --resume --out {run}`" in last
    step = checkpoints(run)[-1]
    assert f"at {step:,} {unit}; saved the checkpoint of step {step:,}" in last, last
    assert before <= step < total
    assert not (run / "lock").exists()
    return step


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> dict:
    """train-teacher stopped by SIGTERM mid-run, then resumed to 1,000 env steps past the stop."""
    from deepdistill.teacher.run import train_teacher
    from deepdistill.teacher.config import TeacherConfig
    import tyro

    run = tmp_path_factory.mktemp("teacher") / "t"
    cmd = [sys.executable, "-m", "deepdistill.teacher.cli", "--out", str(run), *TEACHER]
    r, before = _stop_mid_run([*cmd, "--total-env-steps", "10000000"], run)
    stopped = _check_stopped(r, run, before, 10_000_000, "train-teacher", "env steps")
    cfg = tyro.cli(TeacherConfig, args=["--out", str(run), "--resume", "--total-env-steps", str(stopped + 1000), *TEACHER])
    last = train_teacher(cfg)
    return {"run": run, "stopped": stopped, "last": last}


@pytest.mark.slow
def test_sigterm_mid_train_teacher_saves_at_the_epoch_boundary_and_resume_continues(teacher):
    run, stopped = teacher["run"], teacher["stopped"]
    m = [json.loads(l) for l in open(run / "metrics.jsonl")]
    steps = [r["env_steps"] for r in m]
    assert stopped in steps and steps == sorted(set(steps))  # no epoch logged twice or lost
    assert steps[-1] == teacher["last"]["env_steps"] >= stopped + 1000 and checkpoints(run)[-1] == steps[-1]
    assert read_json(run / "config.json")["total_env_steps"] == stopped + 1000


@pytest.fixture(scope="module")
def student(teacher, tmp_path_factory) -> dict:
    """distill stopped by SIGTERM mid-run, then resumed to 10 SGD steps past the stop."""
    from deepdistill.distill.cli import main

    run = tmp_path_factory.mktemp("student") / "s"
    cmd = [sys.executable, "-m", "deepdistill.distill.cli", "--teacher", str(teacher["run"]), "--out", str(run), *STUDENT]
    r, before = _stop_mid_run([*cmd, "--steps", "10000000"], run)
    stopped = _check_stopped(r, run, before, 10_000_000, "distill", "SGD steps")
    main(["--teacher", str(teacher["run"]), "--out", str(run), "--resume", "--steps", str(stopped + 10), *STUDENT])
    return {"run": run, "stopped": stopped}


@pytest.mark.slow
def test_sigterm_mid_distill_saves_at_the_epoch_boundary_and_resume_continues(student):
    run, stopped = student["run"], student["stopped"]
    steps = [json.loads(l)["sgd_steps"] for l in open(run / "metrics.jsonl")]
    assert stopped in steps and steps == sorted(set(steps)) and steps[-1] == stopped + 10 == checkpoints(run)[-1]
    assert (run / "result.json").is_file()


def test_interrupts_outside_a_training_loop_say_rerun_the_same_command(tmp_path, capsys, monkeypatch):
    """export-onnx, evaluate and pipeline have no --resume: a signal says to rerun the same command,
    exits 128 + the signal, and releases the output folder's lock."""
    from deepdistill.evaluate import run as evaluate_run
    from deepdistill.evaluate.cli import main as evaluate
    from deepdistill.export import writer
    from deepdistill.export.cli import main as export
    from deepdistill.pipeline import main as pipeline
    import deepdistill.teacher.run

    def signalled(*a, **k):  # a real signal, delivered to this process mid-command
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise AssertionError("SIGTERM was not raised")

    monkeypatch.setattr(writer, "check_run", lambda *a: None)  # no run needed: the signal comes first
    monkeypatch.setattr(writer, "_export_locked", signalled)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        export(["--student", str(tmp_path / "s"), "--out", str(tmp_path / "onnx")])
    assert e.value.code == 143 and one_line(capsys.readouterr().err) == "export-onnx: interrupted by SIGTERM; rerun the same command"
    assert not (tmp_path / "onnx").exists()  # the folder it created (for its lock) is gone again

    def interrupted(cfg):  # Ctrl-C while evaluate holds --out
        assert (Path(cfg.out) / "lock").is_file()
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_run, "_evaluate", interrupted)
    with pytest.raises(SystemExit) as e:
        evaluate(["--teacher", "t", "--student", "s", "--out", str(tmp_path / "r")])
    assert e.value.code == 130 and one_line(capsys.readouterr().err) == "evaluate: interrupted by SIGINT; rerun the same command"
    assert not (tmp_path / "r").exists()

    def stopped(cfg):  # train-teacher inside the pipeline stopped at an epoch boundary
        raise Interrupted(f"stopped by SIGTERM at 800 env steps; saved the checkpoint of step 800 in --out {cfg.out}",
                          signal.SIGTERM, f"train-teacher --resume --out {cfg.out}")

    monkeypatch.setattr(deepdistill.teacher.run, "train_teacher", stopped)
    with pytest.raises(SystemExit) as e:
        pipeline(["pipeline", "--preset", "smoke", "--out", str(tmp_path / "p")])
    line = one_line(capsys.readouterr().err)
    assert e.value.code == 143 and line.startswith("deepdistill: stopped by SIGTERM at 800 env steps")
    assert line.endswith("; rerun the same command to continue") and not (tmp_path / "p" / "lock").exists()


def test_a_second_signal_stops_at_once_and_keeps_the_last_checkpoint(tmp_path):
    """The toy loop, one epoch made to take 60 s: the first SIGTERM is acknowledged at once, the second
    ends the process at once (exit 143) with the checkpoints before it intact."""
    code = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_robustness import ToyConfig, ToyStage
from deepdistill.core.runner import run_stage

class Slow(ToyStage):
    def epoch(self, state):
        if int(state["step"]) == 2:
            print("slow epoch", flush=True)
            time.sleep(60)
        return super().epoch(state)

run_stage(Slow(ToyConfig(out={str(tmp_path / 'run')!r}, steps=5)))
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "slow epoch"
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)  # well before the 60 s epoch ends
    assert proc.returncode == 143, err
    assert "SIGTERM received again: stopping at once; the last checkpoint is kept" in err
    assert checkpoints(tmp_path / "run") == [1, 2] and params_at(tmp_path / "run")[0] == 2


# --- item 7: a moved teacher ----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_moved_teacher_is_accepted_when_its_identity_matches(teacher, student, tmp_path, capsys):
    from deepdistill.distill.cli import main

    # copies of the teacher and of a student distilled from it, the student's records pointing at the copy
    t, s = tmp_path / "teacher", tmp_path / "s"
    shutil.copytree(teacher["run"], t)
    shutil.copytree(student["run"], s)
    for name, key in (("run.json", "teacher"), ("config.json", None)):
        d = read_json(s / name)
        if key:
            d[key]["run"] = str(t)
        else:
            d["teacher"] = str(t)
        (s / name).write_text(json.dumps(d))
    recorded = read_json(s / "run.json")["teacher"]
    end = student["stopped"] + 15
    assert len(recorded["config_sha256"]) == 64 and len(recorded["params_sha256"]) == 64
    moved = tmp_path / "elsewhere" / "teacher"
    moved.parent.mkdir()
    t.rename(moved)

    def resume(*extra) -> tuple[int, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            main(["--out", str(s), "--resume", "--steps", str(end), *extra, *STUDENT])
        return e.value.code, capsys.readouterr().err

    code, err = resume()
    line = one_line(err)
    assert code == 2 and f"--teacher {t}, the teacher this student was distilled from, no longer exists" in line
    assert f"`distill --resume --out {s} --teacher NEWPATH`" in line
    # another teacher: its recipe differs (config.json edited), or it lacks the recorded step
    other = tmp_path / "other"
    shutil.copytree(moved, other)
    cfg = read_json(other / "config.json")
    (other / "config.json").write_text(json.dumps({**cfg, "gamma": 0.9}))
    code, err = resume("--teacher", str(other))
    assert code == 2 and "is not the teacher this student was distilled from: its config differ" in one_line(err), err
    shutil.rmtree(other)
    shutil.copytree(moved, other)
    shutil.rmtree(other / "checkpoints" / str(recorded["step"]))
    code, err = resume("--teacher", str(other))
    assert code == 2 and f"it has no checkpoint at step {recorded['step']:,}" in one_line(err), err
    # the teacher itself at its new path: accepted, and run.json follows it
    main(["--out", str(s), "--resume", "--steps", str(end), "--teacher", str(moved), *STUDENT])
    info = read_json(s / "run.json")["teacher"]
    assert info["run"] == str(moved) and info["moved_from"] == [str(t)] and checkpoints(s)[-1] == end
    assert read_json(s / "config.json")["teacher"] == str(moved)
    # recorded parameters that differ (another teacher with the same recipe) are refused too
    info_all = read_json(s / "run.json")
    info_all["teacher"]["params_sha256"] = "0" * 64
    (s / "run.json").write_text(json.dumps(info_all))
    shutil.copytree(moved, other, dirs_exist_ok=True)
    code, err = resume("--teacher", str(other))
    assert code == 2 and f"its parameters at step {recorded['step']:,} differ" in one_line(err), err


# --- item 5: sizes that would hang --------------------------------------------------------------------


@pytest.mark.slow
def test_a_student_too_wide_for_memory_is_refused_before_allocating(teacher, tmp_path, capsys):
    from deepdistill.distill.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["--teacher", str(teacher["run"]), "--out", str(tmp_path / "wide"), "--width", "10000000", "--no-progress"])
    line = one_line(capsys.readouterr().err)
    assert e.value.code == 2 and "this run's train state alone needs" in line and "TiB" in line, line
    assert "lower --width or --depth" in line and not (tmp_path / "wide").exists()


@pytest.mark.slow
def test_an_evaluation_too_large_for_memory_is_refused_in_one_line(teacher, student, tmp_path, capsys):
    from deepdistill.evaluate.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["--teacher", str(teacher["run"]), "--student", str(student["run"]), "--out", str(tmp_path / "r"),
              "--episodes", "1000000000000", "--no-progress"])
    line = one_line(capsys.readouterr().err)
    assert e.value.code == 2 and line.startswith("evaluate: error: --episodes 1,000,000,000,000 needs about"), line
    assert "16 bytes per episode" in line and "use at most" in line and not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_long_evaluation_shows_progress_and_stops_on_ctrl_c(teacher, student, tmp_path):
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "deepdistill.evaluate.cli", "--teacher", str(teacher["run"]), "--student",
           str(student["run"]), "--out", str(out), "--episodes", "2000000", "--no-progress", "--latency-samples", "10",
           "--no-plots"]
    # A background job of a non-interactive shell (CI's, say) starts with SIGINT ignored, and Python keeps
    # ignoring it, as the shell meant. An ignored signal stays ignored across exec, a handler does not:
    # with a handler here, the child starts with the default disposition, as under a terminal.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, old)
    first = proc.stdout.readline()
    assert first.startswith("evaluating 3 policies (random actions included) x "), (first, proc.stderr.read() if proc.poll() else "")
    assert "x 2,000,000 episodes of 100 steps: " in first, first
    time.sleep(3)  # inside the first policy's chunks
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)  # heard between chunks (a 2,621-episode chunk is a fraction of a second)
    assert proc.returncode == 130 and one_line(err) == "evaluate: interrupted by SIGINT; rerun the same command", err
    assert not out.exists()  # nothing written, lock released


@pytest.mark.slow
def test_chunked_evaluation_runs_the_same_episodes(teacher, monkeypatch):
    """An evaluation split into chunks gives the one-call figures (the same episodes) and reports each chunk."""
    import jax

    from deepdistill.core import rollout
    from deepdistill.envs import make_env
    from deepdistill.student.policy import load_teacher

    t = load_teacher(teacher["run"])
    env = make_env(t.spec.name)
    fn = lambda p, s, g: t.nets.deterministic_action(p, s, g)  # noqa: E731
    act = jax.jit(lambda s, g: fn(t.params["actor"], s, g))
    whole = rollout.make_evaluator(env, fn, 48)(t.params["actor"])
    host_whole = rollout.make_host_evaluator(env, 48)(lambda s, g: np.asarray(act(s, g)))
    monkeypatch.setattr(rollout, "chunk_size", lambda n, length: 20)  # 20 + 20 + 8 (padded to 20)
    seen = []
    chunked = rollout.make_evaluator(env, fn, 48, progress=seen.append)(t.params["actor"])
    host_chunked = rollout.make_host_evaluator(env, 48)(lambda s, g: np.asarray(act(s, g)))
    assert seen == [20, 20, 8] * len(env.spec.eval_splits)
    for a, b in ((whole, chunked), (host_whole, host_chunked), (whole, host_chunked)):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], abs=1e-5), k
