"""Inference latency: the ONNX student against JAX students and teachers, on this CPU.

For each model (random parameters: timing does not depend on their values; point_maze sizes,
state 2 + goal 2 -> action 2):

* **batch 1**: p50 / p99 of one call returning one action, over ``--calls`` calls (fewer for slow
  models, time-boxed by ``--seconds``) after a warm-up. ONNX: ``OnnxPolicy.act(state [S], goal [G])``,
  the runtime a controller uses (input checks included, one intra-op thread); the ``ORT only``
  column is the bare ``run_with_iobinding`` call under it. JAX: a jitted
  ``deterministic_action(params, state [1, S], goal [1, G])`` converted to numpy (XLA's default
  threads).
* **batch 1,024**: the time of one call on 1,024 samples, divided by 1,024, and the actions per
  second it implies; ONNX with ``threads=1`` (as at batch 1) and with one thread per core.

ONNX models are written by the exporter itself (``export_policy``: conversion, parity check, metadata)
from an in-memory run; shallow nets are unrolled, nets deeper than 32 layers use one ONNX ``Loop``
(a depth-64 teacher is also timed unrolled, to show what the Loop costs).

The table is printed and, unless ``--no-write``, written to the section ``## Inference latency`` of
``BENCHMARKS.md`` (other sections are left as they are).

    python benchmarks/latency.py                  # about 4 minutes on 2 cores
    python benchmarks/latency.py --quick --no-write
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tyro
from _report import cpu_model, load_average, write_section

SECTION = "## Inference latency"
ROOT = Path(__file__).resolve().parents[1]
P50_TARGET_US = 30.0  # depth-4, width-256 ONNX student at batch 1
SPEEDUP_TARGET = 50.0  # ... against the depth-64 JAX teacher


@dataclasses.dataclass
class Args:
    calls: int = 5000
    """Batch-1 calls per model (upper bound)."""
    seconds: float = 6.0
    """Time box per model and batch size."""
    teacher_depths: tuple[int, ...] = (4, 64, 256)
    """JAX teacher depths (width 256)."""
    onnx_teacher_depths: tuple[int, ...] = (64, 256)
    """ONNX teacher depths (width 256)."""
    student_widths: tuple[int, ...] = (256, 128, 64)
    """ONNX student widths (depth 4)."""
    quick: bool = False
    """Fewer calls, shorter time boxes (a smoke run)."""
    no_write: bool = False
    """Print only; leave BENCHMARKS.md alone."""
    out: Path = ROOT / "BENCHMARKS.md"
    """The markdown file to update."""


def parse_args(argv=None) -> Args:
    return tyro.cli(Args, args=argv, description=__doc__.split("\n\n")[0])


def time_calls(fn, calls: int, seconds: float, warmup: int = 50) -> np.ndarray:
    """Seconds per call of ``fn()``: up to ``calls`` calls or ``seconds``, whichever comes first (>= 5)."""
    t_end = time.perf_counter() + seconds / 4
    for i in range(warmup):
        fn()
        if time.perf_counter() > t_end and i >= 2:
            break
    out = []
    t_end = time.perf_counter() + seconds
    while len(out) < calls and (time.perf_counter() < t_end or len(out) < 5):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return np.array(out)


def row(name: str, runtime: str, params: int, one: np.ndarray, batch: np.ndarray, raw: np.ndarray | None = None,
        batch_1thread: np.ndarray | None = None, note: str = "") -> dict:
    return {
        "model": name,
        "runtime": runtime,
        "params": params,
        "p50_us": float(np.percentile(one, 50) * 1e6),
        "p99_us": float(np.percentile(one, 99) * 1e6),
        "calls": len(one),
        "raw_p50_us": None if raw is None else float(np.percentile(raw, 50) * 1e6),
        "b1024_1t_us_per_action": None if batch_1thread is None else float(np.median(batch_1thread) / 1024 * 1e6),
        "b1024_us_per_action": float(np.median(batch) / 1024 * 1e6),
        "b1024_actions_per_s": float(1024 / np.median(batch)),
        "note": note,
    }


def bench_jax(name: str, nets, params, spec, args) -> dict:
    import jax

    act = jax.jit(nets.deterministic_action)
    p = params["actor"]
    s1, g1 = np.ones((1, spec.state_size), np.float32), np.ones((1, spec.goal_size), np.float32)
    rng = np.random.default_rng(0)
    sb, gb = (rng.standard_normal((1024, n)).astype(np.float32) for n in (spec.state_size, spec.goal_size))
    call = lambda: np.asarray(act(p, s1, g1))  # noqa: E731
    one = time_calls(call, args.calls, args.seconds)
    batch = time_calls(lambda: np.asarray(act(p, sb, gb)), 200, args.seconds, warmup=3)
    return row(name, "JAX jit", nets.actor.num_params(), one, batch), call


def bench_onnx(name: str, nets, params, spec, args, workdir: Path, max_unrolled_depth: int = 32) -> dict:
    from deepdistill.export.config import ExportConfig
    from deepdistill.export.runtime import OnnxPolicy
    from deepdistill.export.writer import export_policy
    from deepdistill.student.policy import PolicyRun

    out = workdir / name.replace(" ", "_").replace(",", "")
    run = PolicyRun("student", out, spec, nets, params, 0, {}, {"kind": "student", "teacher": None})
    cfg = ExportConfig(student=str(out), out=str(out), encoders=False, parity_samples=128, max_unrolled_depth=max_unrolled_depth)
    t0 = time.perf_counter()
    summary = export_policy(run, out, cfg, log=lambda m: None)["policy"]
    export_s = time.perf_counter() - t0
    policy = OnnxPolicy(out)
    s, g = np.ones(spec.state_size, np.float32), np.ones(spec.goal_size, np.float32)
    call = lambda: policy.act(s, g)  # noqa: E731
    one = time_calls(call, args.calls, args.seconds)
    raw = time_calls(lambda: policy.session.run_with_iobinding(policy._binding), args.calls, args.seconds / 2)
    rng = np.random.default_rng(0)
    sb, gb = (rng.standard_normal((1024, n)).astype(np.float32) for n in (spec.state_size, spec.goal_size))
    batch_1t = time_calls(lambda: policy.act(sb, gb), 200, args.seconds, warmup=3)
    wide = OnnxPolicy(out, threads=os.cpu_count() or 1)
    batch = time_calls(lambda: wide.act(sb, gb), 200, args.seconds, warmup=3)
    note = (f"{summary['nodes']} nodes ({summary['blocks_as']}), {summary['bytes'] / 1e6:.2f} MB, "
            f"export {export_s:.1f} s, parity {summary['parity_max_err']:.1g}")
    return row(name, "ONNX Runtime", nets.actor.num_params(), one, batch, raw, batch_1t, note), call


def interleaved(fast, slow, rounds: int, fast_calls: int = 200, slow_calls: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Per-call seconds of ``fast()`` and ``slow()`` timed in alternating rounds, so that both see
    the same load on a shared machine (their ratio is then steadier than separate runs')."""
    a, b = [], []
    for r in range(rounds):
        for fn, n, acc in ((fast, fast_calls, a), (slow, slow_calls, b))[:: 1 if r % 2 else -1]:
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                acc.append(time.perf_counter() - t0)
    return np.array(a), np.array(b)


def table(rows: list[dict]) -> str:
    lines = [
        "| model | runtime | actor params | batch 1 p50 (us) | batch 1 p99 (us) | ORT only p50 (us) "
        "| batch 1,024, 1 thread (us / action) | batch 1,024, all cores (us / action) | batch 1,024, all cores (actions / s) | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        raw = "" if r["raw_p50_us"] is None else f"{r['raw_p50_us']:,.1f}"
        one_thread = "" if r["b1024_1t_us_per_action"] is None else f"{r['b1024_1t_us_per_action']:,.2f}"
        lines.append(
            f"| {r['model']} | {r['runtime']} | {r['params']:,} | {r['p50_us']:,.1f} | {r['p99_us']:,.1f} | {raw} | {one_thread} | "
            f"{r['b1024_us_per_action']:,.2f} | {r['b1024_actions_per_s']:,.0f} | {r['note']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.quick:
        args.calls, args.seconds = min(args.calls, 500), min(args.seconds, 1.5)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import onnxruntime
    from deepdistill.envs import make_env
    from deepdistill.student.residual import CRLNetworks

    spec = make_env("point_maze").spec
    started = time.time()
    load_before = load_average()

    def nets_of(depth: int, width: int) -> tuple:
        nets = CRLNetworks(spec.state_size, spec.goal_size, spec.action_size, actor_depth=depth, actor_width=width,
                           critic_depth=4, critic_width=64)
        return nets, nets.init(jax.random.PRNGKey(depth * 1000 + width))

    rows, calls = [], {}

    def add(result: tuple[dict, object]) -> None:
        rows.append(result[0])
        calls[(result[0]["model"], result[0]["runtime"])] = result[1]
        print(result[0], flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        for w in args.student_widths:
            add(bench_onnx(f"student d4 w{w}", *nets_of(4, w), spec, args, Path(tmp)))
        add(bench_jax("student d4 w256 (= teacher d4)", *nets_of(4, 256), spec, args))
        for d in args.teacher_depths:
            if d != 4:
                add(bench_jax(f"teacher d{d} w256", *nets_of(d, 256), spec, args))
        for d in args.onnx_teacher_depths:
            nets, params = nets_of(d, 256)
            add(bench_onnx(f"teacher d{d} w256", nets, params, spec, args, Path(tmp)))
            if d == 64:
                add(bench_onnx(f"teacher d{d} w256 unrolled", nets, params, spec, args, Path(tmp), max_unrolled_depth=d))
        pair = calls.get(("student d4 w256", "ONNX Runtime")), calls.get(("teacher d64 w256", "JAX jit"))
        mixed = interleaved(*pair, rounds=10 if args.quick else 40) if all(pair) else None

    by = {(r["model"], r["runtime"]): r for r in rows}
    student = by.get(("student d4 w256", "ONNX Runtime"))
    teacher64 = by.get(("teacher d64 w256", "JAX jit"))
    verdict = []
    if student:
        ok = student["p50_us"] <= P50_TARGET_US
        verdict.append(f"- ONNX student (depth 4, width 256) batch-1 p50: **{student['p50_us']:.1f} us** "
                       f"(target <= {P50_TARGET_US:.0f} us: {'met' if ok else 'missed'}).")
    if student and teacher64:
        speedup = teacher64["p50_us"] / student["p50_us"]
        verdict.append(f"- Against the depth-64 JAX teacher ({teacher64['p50_us']:,.0f} us in the table): **{speedup:.0f}x** faster "
                       f"(target >= {SPEEDUP_TARGET:.0f}x: {'met' if speedup >= SPEEDUP_TARGET else 'missed'}).")
    if mixed is not None:
        fast, slow = (np.percentile(x, 50) * 1e6 for x in mixed)
        verdict.append(
            f"- The same two, timed in {10 if args.quick else 40} alternating rounds (both under the same load): student "
            f"p50 {fast:.1f} us, teacher p50 {slow:,.0f} us, **{slow / fast:.0f}x** "
            f"({len(mixed[0])} and {len(mixed[1])} calls).")
    cmd = "python benchmarks/latency.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    body = "\n".join([
        f"Command: `{cmd.strip()}`  ",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores (shared: load average {load_before} before, "
        f"{load_average()} after); Python {platform.python_version()}, jax {jax.__version__}, "
        f"onnxruntime {onnxruntime.__version__}  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, "
        f"{time.time() - started:.0f} s",
        "",
        *verdict,
        "",
        table(rows),
        "",
        "Random parameters, point_maze sizes (state 2, goal 2, action 2). Batch 1: one call for one action; "
        "ONNX through `OnnxPolicy.act` (input checks, IOBinding, 1 intra-op thread), *ORT only* the bare "
        "`run_with_iobinding` under it; JAX: a jitted `deterministic_action`, result copied to numpy, XLA's "
        "default threads. Batch 1,024: one call on 1,024 samples, divided by 1,024; ONNX with 1 intra-op thread "
        "(the runtime's default) and with one per core (`OnnxPolicy(..., threads=2)`), JAX with XLA's default threads. "
        "Teachers deeper than 32 layers export with one ONNX `Loop` (the unrolled depth-64 row shows its cost). "
        "The machine is shared with other jobs, so p99 figures and the JAX rows carry noise.",
        "",
    ])
    print(body)
    if not args.no_write:
        write_section(args.out, SECTION, body)
        print(f"wrote section {SECTION!r} of {args.out}")


if __name__ == "__main__":
    main()
