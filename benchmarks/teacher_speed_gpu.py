"""Speed of the deep teacher's update per block variant, on a GPU, in one run under a wall budget.

For each task x batch x depth x variant (most important first: depth 64, then 4, 256, 1,024; batch
256 before 1,024), in one process per XLA-flag setting:

* **SGD step**: a compiled ``lax.scan`` of ``n`` ``_sgd_step`` calls (replay sampling included) on
  a prefilled replay, the state donated as in the epoch; best of ``--repeats`` calls, divided by ``n``.
* **collection**: one compiled ``_collect`` (``--envs`` envs x ``--unroll`` steps with the stochastic
  actor, replay insert), best of ``--repeats``; cached per task, variant and actor depth.
* **env steps/s** = envs x unroll / (collection + SGD steps per collection x SGD step), at one SGD
  step per 40 env steps (the paper's ratio), evaluation excluded; **h per 100M** env steps from it.
  ``--check-epoch`` also runs one real compiled epoch for the first item and records its rate.
* **compile s**: collection + SGD-scan compile (wall); **memory**: XLA's ``memory_analysis()`` of the
  larger of the two programs (arguments + outputs - donated aliases + temporaries), and the device's
  ``peak_bytes_in_use`` after the item (process-wide, so it only grows within a process).

Variants: ``scan`` (today's default), ``unroll4``/``unroll16`` (``--block-unroll``), ``full``
(blocks in a Python loop, only at depth <= ``--full-unroll-max-depth``), ``bf16`` and
``bf16_unroll4`` (``--matmul-dtype bfloat16``), ``flags`` and ``flags_unroll4`` (XLA GPU
command-buffer flags of ``teacher/xla_flags.py``, in a second process; GPU only), and ``reference``
(``benchmarks/reference_crl.py``: the paper's code style; up to ``--reference-max-depth``, since its
compile grows with depth). Depth 1,024 means critic encoders 1,024 and actor 512, as in the paper.

The default variants are scan, unroll4, bf16, flags and reference. Items left when the budget runs out are recorded as skipped, with the reason; so are failures (for
instance out of memory). Results: ``<out>/results.json``; ``--write`` renders them into BENCHMARKS.md.

    python benchmarks/teacher_speed_gpu.py --out /tmp/speed --budget-s 450          # one H200, <= 8 min
    python benchmarks/teacher_speed_gpu.py --variants scan unroll16 full bf16_unroll4 flags_unroll4 --out /tmp/speed2
    python benchmarks/teacher_speed_gpu.py --depths 4 8 --batch 16 --envs 8 --quick --out /tmp/speed_cpu
    python benchmarks/teacher_speed_gpu.py --write /tmp/speed/results.json          # on any machine
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import tyro

from _report import cpu_model, load_average, write_section

SECTION = "## Deep teachers at GPU speed (block variants)"
ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "scan": {},
    "unroll4": {"block_unroll": 4},
    "unroll16": {"block_unroll": 16},
    "full": {"full_unroll_max_depth": None},  # filled from --full-unroll-max-depth
    "bf16": {"matmul_dtype": "bfloat16"},
    "bf16_unroll4": {"matmul_dtype": "bfloat16", "block_unroll": 4},
    "flags": {"xla_gpu_flags": "auto"},
    "flags_unroll4": {"xla_gpu_flags": "auto", "block_unroll": 4},
    "reference": {},
}
DEPTH_ORDER = (64, 4, 256, 1024)
PAPER_ACTOR_MAX = 512


@dataclasses.dataclass(frozen=True)
class Args:
    tasks: tuple[str, ...] = ("ant_big_maze", "humanoid_u_maze")
    depths: tuple[int, ...] = (4, 64, 256, 1024)
    batch: tuple[int, ...] = (256, 1024)
    variants: tuple[str, ...] = ("scan", "unroll4", "bf16", "flags", "reference")
    """Block variants to time (see VARIANTS in this file)."""
    envs: int = 512
    unroll: int = 50
    width: int = 256
    env_steps_per_sgd_step: float = 40.0
    full_unroll_max_depth: int = 16
    reference_max_depth: int = 64
    steps: int = 20
    """SGD steps per timed scan at depth <= 64 (fewer deeper)."""
    repeats: int = 3
    quick: bool = False
    """2 SGD steps per scan, 1 timed repeat (CPU dry runs)."""
    check_epoch: bool = False
    """Also time one real epoch for the first item."""
    budget_s: float = 450.0
    """Wall budget of the whole run (all processes)."""
    out: str = "runs/teacher_speed_gpu"
    write: Optional[str] = None
    """Render this results.json into BENCHMARKS.md and exit."""
    output: str = str(ROOT / "BENCHMARKS.md")
    child: Optional[str] = None
    """Internal: the group a child process runs (flags,deadline,rows file)."""


def parse_args(argv=None) -> Args:
    args = tyro.cli(Args, args=argv, description=__doc__.split("\n\n")[0])
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    return args


def items(args, flags: bool) -> list[tuple]:
    """(task, batch, depth, variant) of one process, most important first."""
    mine = [v for v in args.variants if v.startswith("flags") == flags]
    order = {d: i for i, d in enumerate(DEPTH_ORDER)}
    depths = sorted(args.depths, key=lambda d: (order.get(d, len(order)), d))
    return [(t, b, d, v) for d in depths for b in sorted(args.batch) for t in args.tasks for v in mine]


def config(args, task: str, batch: int, depth: int, variant: str):
    from deepdistill.teacher.config import TeacherConfig
    from deepdistill.envs import make_env

    env = make_env(task, training=True)
    opts = dict(VARIANTS[variant])
    if "full_unroll_max_depth" in opts:
        opts["full_unroll_max_depth"] = args.full_unroll_max_depth
    per_iter = args.envs * args.unroll
    cfg = TeacherConfig(
        env=task, depth=depth, actor_depth=min(depth, PAPER_ACTOR_MAX), width=args.width, batch_size=batch,
        num_envs=args.envs, unroll_length=args.unroll, env_steps_per_sgd_step=args.env_steps_per_sgd_step,
        eval_every=per_iter, replay_steps_per_env=env.spec.episode_length + 2 * args.unroll,
        min_replay_steps=2 * args.unroll, lr_schedule="constant", progress=False, **opts)
    return cfg, env


def skip_reason(args, depth: int, variant: str, on_gpu: bool):
    if variant == "full" and depth > args.full_unroll_max_depth:
        return f"full unroll only up to depth {args.full_unroll_max_depth}"
    if variant == "reference" and depth > args.reference_max_depth:
        return f"reference compile grows with depth; run up to --reference-max-depth {args.reference_max_depth}"
    if variant.startswith("flags") and not on_gpu:
        return "XLA GPU flags: GPU only"
    return None


def memory(compiled) -> float:
    m = compiled.memory_analysis()
    if m is None:
        return float("nan")
    return (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes) / 2**30


def best_time(fn, make_args, repeats: int) -> float:
    import jax

    best = float("inf")
    for _ in range(repeats):
        a = jax.block_until_ready(make_args())
        t = time.perf_counter()
        jax.block_until_ready(fn(*a))
        best = min(best, time.perf_counter() - t)
    return best


def measure(args, task, batch, depth, variant, collect_cache: dict) -> dict:
    import jax
    import jax.numpy as jnp

    from reference_crl import ReferenceTrainer, update_flops as ref_flops
    from deepdistill.teacher.train import Trainer

    cfg, env = config(args, task, batch, depth, variant)
    trainer = (ReferenceTrainer if variant == "reference" else Trainer)(cfg, env)
    state = trainer.prefill(trainer.init(jax.random.PRNGKey(0)))
    fresh = jax.jit(lambda ts: jax.tree.map(jnp.copy, ts))
    repeats = 1 if args.quick else args.repeats
    n = 2 if args.quick else max(2, args.steps * 64 // max(depth, 64))
    keys = jax.random.split(jax.random.PRNGKey(1), n)

    def steps(ts, keys):
        ts, metrics = jax.lax.scan(trainer._sgd_step, ts, keys)
        return ts, jax.tree.map(jnp.mean, metrics)

    t = time.perf_counter()
    sgd = jax.jit(steps, donate_argnums=0).lower(state, keys).compile()
    sgd_compile = time.perf_counter() - t
    jax.block_until_ready(sgd(fresh(state), keys))
    step_s = best_time(sgd, lambda: (fresh(state), keys), repeats) / n

    ckey = (task, variant, cfg.actor_depth_)
    if ckey not in collect_cache:
        t = time.perf_counter()
        col = jax.jit(lambda ts, k: trainer._collect(ts, k, random_actions=False), donate_argnums=0) \
            .lower(state, jax.random.PRNGKey(2)).compile()
        col_compile = time.perf_counter() - t
        jax.block_until_ready(col(fresh(state), jax.random.PRNGKey(2)))
        col_s = best_time(col, lambda: (fresh(state), jax.random.PRNGKey(2)), repeats)
        collect_cache[ckey] = (col_s, col_compile, memory(col))
    col_s, col_compile, col_mem = collect_cache[ckey]

    sgd_per_iter = trainer.sched.sgd_per_iter
    sps = args.envs * args.unroll / (col_s + sgd_per_iter * step_s)
    flops = ref_flops(trainer, batch) if variant == "reference" else _our_flops(trainer, batch)
    dev = jax.devices()[0]
    stats = dev.memory_stats() or {}
    row = dict(task=task, batch=batch, depth=depth, actor_depth=cfg.actor_depth_, variant=variant, status="ok",
               sgd_step_ms=1e3 * step_s, sgd_steps_timed=n, tflops=flops / step_s / 1e12,
               collect_ms=1e3 * col_s, sgd_per_collection=sgd_per_iter, env_steps_per_s=sps,
               hours_per_100m=1e8 / sps / 3600, sgd_compile_s=sgd_compile, collect_compile_s=col_compile,
               compile_s=sgd_compile + col_compile, memory_gib=max(memory(sgd), col_mem),
               peak_bytes_in_use_gib=stats["peak_bytes_in_use"] / 2**30 if stats.get("peak_bytes_in_use") else None)
    if args.check_epoch and not collect_cache.get("epoch_done"):
        collect_cache["epoch_done"] = True
        epoch = trainer.epoch.lower(trainer.abstract_state).compile()
        s2, _ = epoch(fresh(state))
        jax.block_until_ready(s2)
        t = time.perf_counter()
        jax.block_until_ready(epoch(s2))
        row["epoch_env_steps_per_s"] = trainer.sched.env_steps_per_epoch / (time.perf_counter() - t)
    return row


def _our_flops(trainer, batch: int) -> int:
    n = trainer.nets
    return batch * (3 * n.actor.flops_per_sample() + 5 * n.sa_encoder.flops_per_sample() + 3 * n.goal_encoder.flops_per_sample())


def child(args) -> None:
    """One process: the items of one XLA-flag setting, until ``deadline`` (epoch seconds)."""
    flags, deadline, rows_path = args.child.split(",")
    flags, deadline = flags == "flags", float(deadline)
    import jax

    on_gpu = jax.default_backend() == "gpu"
    cache: dict = {}
    last_s = 0.0  # wall time of the last measured item: the next one is not started if it would overrun
    with open(rows_path, "a") as f:
        for task, batch, depth, variant in items(args, flags):
            base = dict(task=task, batch=batch, depth=depth, variant=variant)
            reason = skip_reason(args, depth, variant, on_gpu)
            if reason is None and time.time() + last_s > deadline:
                reason = "wall budget spent"
            if reason:
                row = {**base, "status": f"skipped: {reason}"}
            else:
                t0 = time.time()
                try:
                    row = measure(args, task, batch, depth, variant, cache)
                    last_s = time.time() - t0
                except (jax.errors.JaxRuntimeError, MemoryError) as e:  # out of memory, mostly: recorded, not hidden
                    row = {**base, "status": f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            print(json.dumps(row), flush=True)
            f.write(json.dumps(row) + "\n")
            f.flush()


def machine() -> str:
    import jax

    dev = jax.devices()[0]
    gpu = dev.device_kind if dev.platform == "gpu" else ""
    return f"{gpu or cpu_model()}; {os.cpu_count()} CPUs; jax {jax.__version__} ({jax.default_backend()}); load {load_average()}"


def run(args, argv) -> None:
    from deepdistill.teacher.xla_flags import GPU_FLAGS

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    rows_path.write_text("")
    start = time.time()
    groups = [g for g in (False, True) if any(v.startswith("flags") == g for v in args.variants)]
    n_items = {g: len(items(args, g)) for g in groups}
    total = sum(n_items.values()) or 1
    for g in groups:  # each process gets the budget left, in proportion to its items
        left = args.budget_s - (time.time() - start)
        share = left * n_items[g] / sum(n_items[h] for h in groups[groups.index(g):])
        env = dict(os.environ)
        if g:
            env["XLA_FLAGS"] = " ".join([env.get("XLA_FLAGS", ""), *GPU_FLAGS]).strip()
        cmd = [sys.executable, __file__, *argv, "--child", f"{'flags' if g else 'plain'},{time.time() + share},{rows_path}"]
        subprocess.run(cmd, env=env, check=False)
    rows = [json.loads(l) for l in rows_path.read_text().splitlines() if l.strip()]
    doc = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine(),
           "command": "python benchmarks/teacher_speed_gpu.py " + " ".join(argv), "budget_s": args.budget_s,
           "wall_s": time.time() - start, "xla_gpu_flags": list(GPU_FLAGS), "items": total, "rows": rows}
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    print(table(doc))
    print(f"wrote {out / 'results.json'} ({sum(r['status'] == 'ok' for r in rows)} of {len(rows)} measured)")


def table(doc: dict) -> str:
    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    lines = ["| task | batch | depth | variant | SGD step ms | TFLOP/s | env steps/s | h per 100M | compile s | memory GiB | status |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in doc["rows"]:
        lines.append(f"| {r['task']} | {r['batch']} | {r['depth']} | {r['variant']} | {f(r.get('sgd_step_ms'), '.2f')} | "
                     f"{f(r.get('tflops'), '.3f')} | {f(r.get('env_steps_per_s'), ',.0f')} | {f(r.get('hours_per_100m'), '.1f')} | "
                     f"{f(r.get('compile_s'), '.1f')} | {f(r.get('memory_gib'), '.2f')} | {r['status']} |")
    return "\n".join(lines)


def write(path: Path, results: Path) -> None:
    doc = json.loads(results.read_text())
    body = [f"Command: `{doc['command']}`", "",
            f"Machine: {doc['machine']}. Date: {doc['date']}. Budget {doc['budget_s']:.0f} s, run took {doc['wall_s']:.0f} s.", "",
            "SGD step: best compiled scan of SGD steps (replay sampling included), per step. Env steps/s: envs x unroll / "
            "(collection + SGD steps per collection x SGD step), one SGD step per 40 env steps, evaluation excluded. "
            "Compile: collection + SGD scan. Memory: XLA memory_analysis of the larger program. Depth 1,024 = critic "
            "1,024, actor 512. `reference` = benchmarks/reference_crl.py (the paper's code style). XLA flags of the "
            f"`flags` variants: `{' '.join(doc['xla_gpu_flags'])}`.", "", table(doc)]
    write_section(path, SECTION, "\n".join(body))


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.write:
        write(Path(args.output), Path(args.write))
        print(f"wrote the section to {args.output}")
        return
    if args.child:
        return child(args)
    run(args, argv)


if __name__ == "__main__":
    main()
