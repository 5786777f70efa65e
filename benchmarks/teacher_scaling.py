"""Teacher update scaling on this machine: compile time, SGD step time and GFLOP/s against depth.

For each depth (actor and both encoders at that depth, width ``--width``, batch ``--batch``):

* **compile**: trace + lower + compile of one full jitted training epoch (``Trainer.epoch``; a small
  epoch on ``point_maze``: ``--num-envs`` envs x ``--unroll`` steps of collection, then
  ``--epoch-sgd-steps`` SGD steps), best of ``--compile-repeats`` fresh ``Trainer``s.
* **SGD step**: a jitted ``lax.scan`` of ``n`` ``Trainer._sgd_step`` calls on a prefilled replay,
  the state donated as in ``Trainer.epoch``; all depths are compiled first, then timed in rounds
  (each depth once per round, up to ``--repeats`` rounds within ``--timing-budget-s``; the best call
  is kept) and divided by ``n``. ``n`` is ``--steps``, cut
  so that one timed call stays under ``--call-gflop`` (deep nets take seconds per step). Also
  reported: XLA's temporary memory of that compiled scan, and GFLOP per CPU-second (user + system
  time of the process, all threads), which the load of a shared machine disturbs less than the
  wall clock.
* **GFLOP/s**: model FLOPs of one update counted from the Dense layers (``ResidualMLP.flops_per_sample``:
  ``2 * in * out`` per sample per layer for a forward; a backward costs 2x the forward when it
  computes weight and activation gradients, 1x when it computes only activation gradients). The
  passes counted per sample, with ``F`` the forward FLOPs of a network:

  - critic loss: phi forward + backward (3 F_phi), psi forward + backward (3 F_psi);
  - actor loss: actor forward + backward (3 F_actor), phi forward + activation backward
    (2 F_phi: the action is differentiated, phi's weights are not); it reuses the critic loss's
    psi(g) (``Trainer._sgd_step``), so no psi pass of its own.

  i.e. ``B * (3 F_actor + 5 F_phi + 3 F_psi)``. LayerNorm, swish, InfoNCE, Adam and the replay
  sampling are not counted (O(width), not O(width^2), per sample and layer), nor is any
  recomputation (LayerNorm/swish in the backward pass; the whole block with ``--remat``). The count
  is cross-checked against XLA's ``compile().cost_analysis()["flops"]`` of one SGD step at depth 4,
  where the scan over blocks has one iteration (XLA counts a while-loop body once, so at larger
  depths its figure stays near the depth-4 one and is not comparable).
* **peak**: best GFLOP/s of a jitted ``--peak-size``-square float32 ``jnp.dot``, sampled between
  the other measurements (the machine is shared; its load is printed), and the update's fraction
  of it (wall clock, and per CPU-second).
* ``--compare-keep-all DEPTH ...`` also times, in the same run, the SGD step with residual blocks
  that keep every intermediate for the backward pass (what ``student/residual.py`` did before its
  blocks kept only their matmul outputs).

The results are printed as a table and, unless ``--no-write``, written to the section
``## Teacher scaling (compile time, SGD step, GFLOP/s)`` of ``BENCHMARKS.md`` (other sections are
left as they are).

    python benchmarks/teacher_scaling.py                      # depths 4 64 256 1024, 3-5 minutes
    python benchmarks/teacher_scaling.py --compare-keep-all 64 256 1024   # 7-9 minutes
    python benchmarks/teacher_scaling.py --depths 64 --steps 20 --no-write
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import sys
import time
from pathlib import Path

import tyro
from _report import cpu_model, load_average, write_section

SECTION = "## Teacher scaling (compile time, SGD step, GFLOP/s)"
ROOT = Path(__file__).resolve().parents[1]
COMPILE_TARGET_S = 30.0  # a depth-1024 epoch compiles in under this
FRACTION_TARGET = 0.5  # the depth-64 update at >= this fraction of the matmul peak


@dataclasses.dataclass(frozen=True)
class Args:
    depths: tuple[int, ...] = (4, 64, 256, 1024)
    """Depths (actor and critic)."""
    width: int = 256
    """Hidden width (actor and critic)."""
    batch: int = 256
    """SGD batch size."""
    steps: int = 10
    """SGD steps per timed scan (upper bound, see --call-gflop)."""
    min_steps: int = 2
    """SGD steps per timed scan (lower bound)."""
    call_gflop: float = 1000.0
    """Cut the steps per timed scan to stay under this many GFLOP."""
    repeats: int = 6
    """Timing rounds (each depth timed once per round; the best is kept)."""
    timing_budget_s: float = 150.0
    """Start no new timing round after this many seconds (at least 2 rounds)."""
    compile_repeats: int = 1
    """Epoch compilations per depth (the best is kept)."""
    num_envs: int = 256
    """Environments of the compiled epoch."""
    unroll: int = 50
    """Collection steps per iteration of the compiled epoch."""
    epoch_sgd_steps: int = 4
    """SGD steps of the compiled epoch."""
    env: str = "point_maze"
    """Task."""
    remat: bool = False
    """Rematerialise residual blocks (TeacherConfig.remat)."""
    compare_keep_all: tuple[int, ...] = ()
    """At these depths, also time the SGD step with blocks that keep every intermediate for the backward
    pass (the behaviour before they kept only their matmul outputs), in the same run."""
    peak_size: int = 2048
    """Side of the square matmul of the peak."""
    xla_flags: str = ""
    """Appended to XLA_FLAGS before JAX starts (recorded in the output)."""
    skip_compile: bool = False
    """Do not time the epoch compilation."""
    no_write: bool = False
    """Print only; leave BENCHMARKS.md alone."""
    out: Path = ROOT / "BENCHMARKS.md"
    """The markdown file to update."""


def parse_args(argv=None) -> Args:
    return tyro.cli(Args, args=argv, description=__doc__.split("\n\n")[0])


def timed(fn, args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process: user + system, all threads) of one call."""
    import jax

    t, c = time.perf_counter(), os.times()
    jax.block_until_ready(fn(*args))
    c2 = os.times()
    return time.perf_counter() - t, (c2.user - c.user) + (c2.system - c.system)


class Peak:
    """The matmul peak, sampled again between the other measurements; the best sample is kept."""

    def __init__(self, n: int):
        import jax
        import jax.numpy as jnp

        self.n = n
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
        b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
        self.args = (a, b)
        self.fn = jax.jit(jnp.dot)
        jax.block_until_ready(self.fn(a, b))
        self.best = self.best_cpu = 0.0  # GFLOP/s of wall time, GFLOP per CPU-second

    def sample(self, repeats: int = 3) -> float:
        flop = 2 * self.n**3 / 1e9
        for _ in range(repeats):
            wall, cpu = timed(self.fn, self.args)
            self.best, self.best_cpu = max(self.best, flop / wall), max(self.best_cpu, flop / max(cpu, 1e-9))
        return self.best


def update_flops(nets, batch: int) -> int:
    """Model FLOPs of one SGD step (see the module docstring)."""
    fa, fp, fg = nets.actor.flops_per_sample(), nets.sa_encoder.flops_per_sample(), nets.goal_encoder.flops_per_sample()
    return batch * (3 * fa + 5 * fp + 3 * fg)


def make_trainer(args, depth: int):
    from deepdistill.teacher.config import TeacherConfig
    from deepdistill.envs import make_env
    from deepdistill.teacher.train import Trainer

    env = make_env(args.env, training=True)
    per_iter = args.num_envs * args.unroll
    cfg = TeacherConfig(
        env=args.env,
        depth=depth,
        width=args.width,
        batch_size=args.batch,
        num_envs=args.num_envs,
        unroll_length=args.unroll,
        eval_every=per_iter,  # one collect + SGD iteration per epoch
        env_steps_per_sgd_step=per_iter / args.epoch_sgd_steps,
        replay_steps_per_env=env.spec.episode_length * 2,
        min_replay_steps=env.spec.episode_length,
        remat=args.remat,
        progress=False,
    )
    return Trainer(cfg, env)


def time_compile(args, depth: int) -> dict:
    """Trace + lower and compile of ``Trainer.epoch`` (wall and CPU seconds), best of ``--compile-repeats``."""
    best = {"lower_s": float("inf"), "compile_s": float("inf"), "compile_cpu_s": float("inf")}
    for _ in range(args.compile_repeats):
        trainer = make_trainer(args, depth)  # a fresh Trainer: nothing cached
        t0 = time.perf_counter()
        lowered = trainer.epoch.lower(trainer.abstract_state)
        t1, c1 = time.perf_counter(), os.times()
        lowered.compile()
        t2, c2 = time.perf_counter(), os.times()
        cpu = (c2.user - c1.user) + (c2.system - c1.system)
        for k, v in (("lower_s", t1 - t0), ("compile_s", t2 - t1), ("compile_cpu_s", cpu)):
            best[k] = min(best[k], v)
    return best


@contextlib.contextmanager
def blocks_keep_everything(on: bool):
    """Residual blocks keep every intermediate for the backward pass (no recomputation), as before
    ``networks`` kept only their matmul outputs. Read when a function is traced."""
    import jax
    from deepdistill.student import residual as networks

    saved = networks._SAVE_MATMULS
    if on:
        networks._SAVE_MATMULS = jax.checkpoint_policies.everything_saveable
    try:
        yield
    finally:
        networks._SAVE_MATMULS = saved


class SgdBench:
    """Steady-state SGD steps at one depth: a compiled scan of ``n`` steps on a prefilled replay,
    the state donated as in ``Trainer.epoch`` (each call gets a fresh copy, made outside the timing).

    ``variants``: ``"now"`` (the library's blocks) and, for ``--compare-keep-all``, ``"before"``
    (blocks keeping every intermediate); both run on the same state."""

    def __init__(self, args, depth: int, variants: tuple[str, ...]):
        import jax
        import jax.numpy as jnp

        trainer = make_trainer(args, depth)
        self.depth = depth
        self.flops = update_flops(trainer.nets, args.batch)
        self.n = int(max(args.min_steps, min(args.steps, args.call_gflop * 1e9 // self.flops)))
        self.state = trainer.prefill(trainer.init(jax.random.PRNGKey(0)))
        self.keys = jax.random.split(jax.random.PRNGKey(1), self.n)
        self.fresh = jax.jit(lambda ts: jax.tree.map(jnp.copy, ts))

        def make_steps():  # a new function per variant: jit's trace cache must not hand back the other one
            def steps(ts, keys):
                ts, metrics = jax.lax.scan(trainer._sgd_step, ts, keys)
                return ts, jax.tree.map(jnp.mean, metrics)

            return steps

        self.compiled, self.info, self.best = {}, {}, {}
        for v in variants:
            steps = make_steps()
            t = time.perf_counter()
            with blocks_keep_everything(v == "before"):
                c = jax.jit(steps, donate_argnums=0).lower(self.state, self.keys).compile()
            mem = c.memory_analysis()
            self.info[v] = {"sgd_compile_s": time.perf_counter() - t,
                            "temp_mib": mem.temp_size_in_bytes / 2**20 if mem is not None else float("nan")}
            jax.block_until_ready(c(self.fresh(self.state), self.keys))  # warm-up
            self.compiled[v], self.best[v] = c, (float("inf"), float("inf"))

    def time_once(self, v: str) -> float:
        """One timed call of variant ``v``; returns its wall seconds."""
        import jax

        arg = jax.block_until_ready(self.fresh(self.state))
        wall, cpu = timed(self.compiled[v], (arg, self.keys))
        self.best[v] = (min(self.best[v][0], wall), min(self.best[v][1], cpu))
        return wall

    def result(self, v: str) -> dict:
        wall, cpu = self.best[v]
        step_s = wall / self.n
        return {"depth": self.depth, "n": self.n, "step_s": step_s, "gflop": self.flops / 1e9,
                "gflops": self.flops / step_s / 1e9, "gflops_cpu": self.flops * self.n / cpu / 1e9, **self.info[v]}


def xla_flops_check(args) -> tuple[float, float] | None:
    """(XLA flops, analytic flops) of one SGD step at depth 4 (one block: the scan runs once)."""
    import jax

    trainer = make_trainer(args, 4)
    state = jax.eval_shape(trainer._init, jax.random.PRNGKey(0))
    try:
        cost = jax.jit(trainer._sgd_step).lower(state, jax.random.PRNGKey(0)).compile().cost_analysis()
    except Exception:  # noqa: BLE001  (cost analysis is optional on some backends)
        return None
    if isinstance(cost, list):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"]), float(update_flops(trainer.nets, args.batch))


# --- report ---------------------------------------------------------------------------------------------


def render(args, rows: list[dict], peak, check, meta: dict) -> str:
    lines = []
    cmd = "python benchmarks/teacher_scaling.py " + " ".join(meta["argv"])
    lines.append(f"Command: `{cmd.strip()}`")
    lines.append("")
    lines.append(f"Machine: {meta['cpu']}, nproc {meta['nproc']}; {meta['date']}; jax {meta['jax']} ({meta['backend']}); "
                 f"XLA_FLAGS `{meta['xla_flags'] or '(none)'}`. Load average (1/5/15 min): {meta['load_start']} at the start, "
                 f"{meta['load_end']} at the end. The 2 cores are shared with other jobs, so every time is the best of "
                 f"N calls, and the CPU-second columns (user + system time of this process, all threads) are given "
                 f"beside the wall-clock ones: they are less sensitive to the load.")
    lines.append("")
    keep = "its input only, the whole block recomputed (--remat)" if args.remat else (
        "its 4 matmul outputs, LayerNorm and swish recomputed")
    lines.append(f"Width {args.width}, batch {args.batch}, actor and critic at the given depth; a block keeps for the "
                 f"backward pass: {keep}. Epoch compiled: {args.env}, {args.num_envs} envs x {args.unroll} steps, "
                 f"{args.epoch_sgd_steps} SGD steps. Matmul peak ({args.peak_size}x{args.peak_size} float32 `jnp.dot`, "
                 f"best samples of the run): **{peak.best:.0f} GFLOP/s** wall, {peak.best_cpu:.0f} GFLOP per CPU-second.")
    lines.append("")
    lines.append("| depth | epoch trace+lower s | epoch compile s | compile CPU-s | SGD steps timed | SGD step s | SGD temp MiB | GFLOP / step "
                 "| GFLOP/s | % of peak | GFLOP / CPU-s | % of peak / CPU-s |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        lo = f"{r['lower_s']:.1f}" if "lower_s" in r else "-"
        co = f"{r['compile_s']:.1f}" if "compile_s" in r else "-"
        cc = f"{r['compile_cpu_s']:.1f}" if "compile_cpu_s" in r else "-"
        lines.append(f"| {r['depth']} | {lo} | {co} | {cc} | {r['n']} | {r['step_s']:.3f} | {r['temp_mib']:.0f} | {r['gflop']:.1f} "
                     f"| {r['gflops']:.0f} | {100 * r['gflops'] / peak.best:.0f}% | {r['gflops_cpu']:.0f} "
                     f"| {100 * r['gflops_cpu'] / peak.best_cpu:.0f}% |")
    before = [r for r in rows if "before" in r]
    if before:
        lines.append("")
        lines.append("Same run, SGD step with blocks that keep every intermediate for the backward pass (before; no "
                     "recomputation) against blocks that keep their matmul outputs (now, `student/residual.py`):")
        lines.append("")
        lines.append("| depth | SGD step s before | now | speed-up | SGD temp MiB before | now | GFLOP / CPU-s before | now |")
        lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in before:
            b = r["before"]
            lines.append(f"| {r['depth']} | {b['step_s']:.3f} | {r['step_s']:.3f} | {b['step_s'] / r['step_s']:.2f}x "
                         f"| {b['temp_mib']:.0f} | {r['temp_mib']:.0f} | {b['gflops_cpu']:.0f} | {r['gflops_cpu']:.0f} |")
    lines.append("")
    lines.append("FLOPs counted per sample: critic loss phi and psi forward + backward (3F each), actor loss actor forward + "
                 "backward (3F), phi forward + activation backward (2F), psi(g) reused from the critic loss; i.e. "
                 "3F_actor + 5F_phi + 3F_psi, "
                 "Dense layers only (F = 2 x in x out per layer); recomputation is not counted. SGD temp: XLA's "
                 "temporary buffers of the compiled SGD scan (`memory_analysis().temp_size_in_bytes`).")
    if check:
        xla, ana = check
        lines.append(f"Cross-check at depth 4 (one block, so XLA's count of the scan body is exact): XLA cost_analysis "
                     f"{xla / 1e9:.2f} GFLOP/step vs analytic {ana / 1e9:.2f} (ratio {xla / ana:.2f}; XLA also counts "
                     f"LayerNorm, swish, InfoNCE and Adam).")
    lines.append("")
    lines.append("Targets:")
    deep = [r for r in rows if r["depth"] == 1024 and "compile_s" in r]
    if deep:
        tot = deep[0]["lower_s"] + deep[0]["compile_s"]
        lines.append(f"- depth-1024 epoch compiles (trace + lower + compile) in under {COMPILE_TARGET_S:.0f} s: "
                     f"{tot:.1f} s wall, **{'met' if tot < COMPILE_TARGET_S else 'missed'}** (compile "
                     f"{deep[0]['compile_cpu_s']:.1f} CPU-s).")
    mid = [r for r in rows if r["depth"] == 64]
    if mid:
        frac, frac_cpu = mid[0]["gflops"] / peak.best, mid[0]["gflops_cpu"] / peak.best_cpu
        lines.append(f"- depth-64 update at >= {FRACTION_TARGET:.0%} of the matmul peak: {frac:.0%} of the wall-clock peak, "
                     f"**{'met' if frac >= FRACTION_TARGET else 'missed'}** ({frac_cpu:.0%} per CPU-second).")
        cores = peak.best / max(peak.best_cpu, 1e-9)
        if cores < 0.75 * (meta["nproc"] or 1):
            lines.append(f"  Caution: the machine was busy; even the matmul peak ran on {cores:.1f} of {meta['nproc']} cores' worth, "
                         f"so the wall-clock fraction says little; the per-CPU-second one is the steadier figure.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.xla_flags:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
    import jax

    meta = {
        "argv": sys.argv[1:] if argv is None else list(argv),
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_start": load_average(),
    }
    print(f"{meta['cpu']}, nproc {meta['nproc']}, jax {meta['jax']} {meta['backend']}, load {meta['load_start']}", flush=True)
    peak = Peak(args.peak_size)
    print(f"matmul peak {peak.sample(5):.0f} GFLOP/s", flush=True)

    check = xla_flops_check(args)
    if check:
        print(f"depth 4 flops/step: XLA {check[0] / 1e9:.3f} G, analytic {check[1] / 1e9:.3f} G", flush=True)

    # Compile every depth first, then time in rounds (each depth and variant once per round, a peak
    # sample after each call): the samples of a depth are spread over the run, so the best of them
    # is less at the mercy of a busy minute on a shared machine.
    benches = []
    for depth in args.depths:
        variants = ("now", "before") if depth in args.compare_keep_all and not args.remat else ("now",)
        b = SgdBench(args, depth, variants)
        benches.append(b)
        print(f"depth {depth:5d}: SGD x{b.n} compiled: " + ", ".join(
            f"{v} {b.info[v]['sgd_compile_s']:.1f} s, temp {b.info[v]['temp_mib']:.0f} MiB" for v in variants), flush=True)
    start = time.perf_counter()
    for r in range(args.repeats):
        if r >= 2 and time.perf_counter() - start > args.timing_budget_s:
            break
        for b in benches:
            for v in b.compiled:
                wall = b.time_once(v)
                peak.sample(2)
                print(f"round {r + 1} depth {b.depth:5d} {v:6s}: {wall / b.n:.3f} s/step | peak so far {peak.best:.0f} "
                      f"GFLOP/s | load {load_average()}", flush=True)
    rows = []
    for b in benches:
        row = b.result("now")
        if "before" in b.compiled:
            row["before"] = b.result("before")
        if not args.skip_compile:
            row.update(time_compile(args, b.depth))
        del b.state, b.compiled
        rows.append(row)
        print(f"depth {row['depth']:5d}: epoch lower {row.get('lower_s', float('nan')):.1f} s compile {row.get('compile_s', float('nan')):.1f} s "
              f"({row.get('compile_cpu_s', float('nan')):.1f} CPU-s) | SGD {row['step_s']:.3f} s/step, {row['gflops']:.0f} GFLOP/s, "
              f"{row['gflops_cpu']:.0f} GFLOP/CPU-s | load {load_average()}", flush=True)
    peak.sample(5)
    meta["load_end"] = load_average()
    body = render(args, rows, peak, check, meta)
    print()
    print(body)
    if not args.no_write:
        write_section(args.out, SECTION, body)
        print(f"wrote the section to {args.out}")


if __name__ == "__main__":
    main()
