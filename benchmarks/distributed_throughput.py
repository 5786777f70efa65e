"""Multi-process training on one machine: 2 processes x 1 CPU device against 1 process (1 and 2
devices), same teacher config; env steps/s of train-teacher's own driver (issue 12).

    python benchmarks/distributed_throughput.py [--total-env-steps 48000] [--write]

Each layout runs ``train-teacher`` in fresh processes (localhost coordinator for the 2-process
run); the figure is the median ``env_steps_per_s`` of metrics.jsonl over the epochs after the first
(the first includes compilation; evaluation is excluded from the rate)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tyro
from _report import cpu_model, load_average, write_section

CONFIG = ["--env", "point_arena", "--depth", "4", "--width", "32", "--repr-dim", "16", "--num-envs", "32",
          "--unroll-length", "25", "--batch-size", "64", "--env-steps-per-sgd-step", "16",
          "--replay-steps-per-env", "400", "--min-replay-steps", "50", "--eval-every", "8000",
          "--num-eval-episodes", "32", "--lr-schedule", "constant", "--no-progress"]


@dataclasses.dataclass
class Args:
    total_env_steps: int = 48_000
    """Env steps per layout (8,000 per epoch)."""
    write: bool = False
    """Write the section of BENCHMARKS.md."""


def run(out: Path, processes: int, devices: int, total: int) -> tuple[float, float]:
    """(median env steps/s after the first epoch, wall seconds) of one layout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPDISTILL_")}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}" if devices > 1 else "")
    cmd = [sys.executable, "-m", "deepdistill.teacher.cli", *CONFIG, "--total-env-steps", str(total), "--out", str(out)]
    if processes > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmds = [[*cmd, "--coordinator-address", f"127.0.0.1:{port}", "--num-processes", str(processes),
                 "--process-id", str(i)] for i in range(processes)]
    else:
        cmds = [cmd]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in cmds]
    for p in procs:
        _, err = p.communicate(timeout=1800)
        if p.returncode:
            raise SystemExit(err[-3000:])
    wall = time.perf_counter() - t0
    rates = [r["env_steps_per_s"] for r in map(json.loads, open(out / "metrics.jsonl")) if "env_steps_per_s" in r]
    return statistics.median(rates[1:] or rates), wall


def main(args: Args) -> None:
    load0, date = load_average(), datetime.date.today().isoformat()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for processes, devices in ((1, 1), (1, 2), (2, 1)):
            rate, wall = run(Path(tmp) / f"p{processes}d{devices}", processes, devices, args.total_env_steps)
            rows.append((processes, devices, rate, wall))
            print(f"{processes} process(es) x {devices} device(s): {rate:,.0f} env steps/s, {wall:.0f} s", flush=True)
    body = "\n".join([
        "Command: `python benchmarks/distributed_throughput.py --write` (train-teacher, point_arena, depth 4, width 32, "
        f"32 envs, batch 64, {args.total_env_steps:,} env steps; localhost coordinator, gloo collectives).",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} CPUs (nproc). Date: {date}.",
        "",
        "| processes x CPU devices | env steps/s (median after the first epoch) | wall s (compile and eval included) |",
        "|---|---:|---:|",
        *[f"| {p} x {d} | {r:,.0f} | {w:.0f} |" for p, d, r, w in rows],
        "",
        f"Load average (1, 5, 15 min) at start: {load0}; at end: {load_average()}. The machine is shared: a load "
        "above the CPU count means other jobs ran and the figures are low and noisy. On one 2-core box the second "
        "process buys no compute; the row shows what the cross-process collectives cost against the same split "
        "inside one process.",
    ])
    print(body)
    if args.write:
        write_section(Path(__file__).resolve().parents[1] / "BENCHMARKS.md",
                      "## Multi-process training on one CPU (issue 12)", body)


if __name__ == "__main__":
    main(tyro.cli(Args))
