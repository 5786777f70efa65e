"""Multi-process training on one box: 2 processes x 1 CPU device against 1 process x 2 devices,
one writer, a killed process, and resuming on another process count."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from deepdistill.core.distributed import DistributedConfig, process_set
from deepdistill.core.errors import ConfigError

TEACHER = ["--env", "point_arena", "--depth", "4", "--width", "32", "--repr-dim", "16", "--num-envs", "32",
           "--unroll-length", "25", "--batch-size", "64", "--env-steps-per-sgd-step", "16",
           "--replay-steps-per-env", "400", "--min-replay-steps", "50", "--eval-every", "8000",
           "--num-eval-episodes", "32", "--lr-schedule", "constant", "--no-progress"]
STUDENT = ["--depth", "0", "--width", "32", "--steps", "100", "--batch-size", "64", "--num-envs", "16",
           "--unroll-length", "25", "--sgd-steps-per-unroll", "25", "--replay-steps-per-env", "200",
           "--eval-every", "50", "--num-eval-episodes", "32", "--no-progress"]
TIMEOUT = 400  # seconds for any one command, on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(devices: int = 1) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPDISTILL_", "JAX_COORDINATOR"))}
    e["JAX_PLATFORMS"] = "cpu"
    devs = f"--xla_force_host_platform_device_count={devices}" if devices > 1 else ""
    e["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {devs}".strip()  # the session's flags, and the devices
    return e


def cmd(module: str, out, *args) -> list[str]:
    """A ``train-teacher`` or ``distill`` command line."""
    return [sys.executable, "-m", f"deepdistill.{module}.cli", *args, "--out", str(out)]


def teacher_cmd(out, *args) -> list[str]:
    return cmd("teacher", out, *TEACHER, *args)


def launch(command: list[str], n: int) -> list[subprocess.Popen]:
    """``n`` processes of one run on localhost."""
    port = free_port()
    return [subprocess.Popen([*command, "--coordinator-address", f"127.0.0.1:{port}", "--num-processes", str(n),
                              "--process-id", str(i)], env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
            for i in range(n)]


def finish(procs, timeout=TIMEOUT) -> list[tuple[int, str, str]]:
    out = []
    try:
        for p in procs:
            so, se = p.communicate(timeout=timeout)
            out.append((p.returncode, so, se))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return out


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]


def test_process_set_from_flags_and_environment(monkeypatch):
    assert process_set(DistributedConfig()) is None
    monkeypatch.setenv("DEEPDISTILL_NUM_PROCESSES", "4")
    monkeypatch.setenv("DEEPDISTILL_PROCESS_ID", "3")
    assert process_set(DistributedConfig(coordinator_address="10.0.0.1:1234")) == ("10.0.0.1:1234", 4, 3)
    assert process_set(DistributedConfig()) == (None, 4, 3)  # the variables alone make a multi-process run
    assert process_set(DistributedConfig(distributed=True, process_id=1)) == (None, 4, 1)
    with pytest.raises(ConfigError, match="--process-id 5"):
        process_set(DistributedConfig(num_processes=2, process_id=5))
    with pytest.raises(ConfigError, match="HOST:PORT"):
        process_set(DistributedConfig(coordinator_address="10.0.0.1"))


def test_distributed_outside_a_cluster_says_what_to_set(tmp_path):
    r = subprocess.run(teacher_cmd(tmp_path / "run", "--distributed"), env=env(), capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--coordinator-address" in lines[0], r.stderr
    assert not (tmp_path / "run").exists()


def run_both(tmp_path, module: str, *args) -> tuple:
    """The same run as 2 processes x 1 device (``multi``) and 1 process x 2 devices (``single``)."""
    procs = launch(cmd(module, tmp_path / "multi", *args), 2)
    single = subprocess.Popen(cmd(module, tmp_path / "single", *args), env=env(devices=2),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for rc, _, err in finish([*procs, single]):
        assert rc == 0, err[-3000:]
    return tmp_path / "multi", tmp_path / "single"


def assert_same_metrics(a, b, epochs: int) -> None:
    ma, mb = metrics(a), metrics(b)
    steps = [r["env_steps"] for r in ma]
    assert len(set(steps)) == len(steps) == len(ma)  # one writer: every evaluation once
    assert len(ma) >= epochs and steps == [r["env_steps"] for r in mb]
    for ra, rb in zip(ma, mb):
        assert ra.keys() == rb.keys()
        for k in ra:
            if k != "wall_s" and not k.endswith("_per_s"):
                np.testing.assert_allclose(ra[k], rb[k], rtol=1e-5, atol=1e-5, err_msg=k)
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    return run_both(tmp_path_factory.mktemp("teacher"), "teacher", *TEACHER, "--total-env-steps", "16000")


@pytest.mark.slow
def test_two_processes_match_two_devices_in_one_process(teachers):
    assert_same_metrics(*teachers, epochs=3)  # the untrained policy and 2 epochs


@pytest.mark.slow
def test_distill_two_processes_match_two_devices_in_one_process(teachers, tmp_path):
    multi, single = run_both(tmp_path, "distill", *STUDENT, "--teacher", str(teachers[0]))
    assert_same_metrics(multi, single, epochs=2)
    assert json.load(open(multi / "result.json")).keys() == json.load(open(single / "result.json")).keys()


@pytest.mark.slow
def test_killed_process_stops_the_other_then_resume_on_one_process(tmp_path):
    out = tmp_path / "run"
    procs = launch(teacher_cmd(out, "--total-env-steps", "400000", "--heartbeat-timeout-s", "30"), 2)
    try:
        deadline = time.time() + TIMEOUT
        while time.time() < deadline and all(p.poll() is None for p in procs):
            ckpts = [p for p in (out / "checkpoints").glob("*") if p.name.isdigit()] if (out / "checkpoints").exists() else []
            if ckpts:
                break
            time.sleep(0.2)
        assert ckpts and all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs if p.poll() is not None]
        procs[1].send_signal(signal.SIGKILL)
        t0 = time.time()
        (rc, _, err), = finish(procs[:1], timeout=120)
        assert time.time() - t0 < 120
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1, err[-3000:]
    assert lines[0].startswith("train-teacher: error: process 0 of 2: another process of the run is gone"), err[-3000:]
    # resume on one process (a different process count): the curve continues, each evaluation once
    r = subprocess.run(teacher_cmd(out, "--total-env-steps", "24000", "--resume"), env=env(), capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    steps = [m["env_steps"] for m in metrics(out)]
    assert steps == sorted(steps) and len(set(steps)) == len(steps) and steps[-1] >= 24000


def test_a_process_without_its_coordinator_stops_with_one_line(tmp_path):
    r = subprocess.run(teacher_cmd(tmp_path / "run", "--coordinator-address", f"127.0.0.1:{free_port()}",
                                   "--num-processes", "2", "--process-id", "1", "--join-timeout-s", "3"),
                       env=env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert "no coordinator at 127.0.0.1" in r.stderr
