"""Environment steps per second of every registered task on this machine.

Each task is stepped as ``--num-envs`` vectorised environments inside one jitted ``lax.scan`` of
``--steps`` steps with uniform random actions; compile time is measured apart and excluded. The
table is printed and written into the "## Environment throughput" section of BENCHMARKS.md.

    python benchmarks/env_throughput.py                      # every Brax task, 1,024 envs
    python benchmarks/env_throughput.py --tasks ant pusher   # a few
    python benchmarks/env_throughput.py --compare-backends   # also time the other physics pipelines

``--compare-backends`` times representative tasks (ant, ant_u4_maze, humanoid, reacher, pusher) on
every brax pipeline (mjx, spring, positional, generalized): the figures behind each task's
``spec.backend`` (the arm tasks run on MJX only).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import tyro
from _report import cpu_model, write_section
from deepdistill.envs import list_envs, make_env
from deepdistill.envs.brax_tasks import BACKEND, BACKENDS, make_task

SECTION = "## Environment throughput"
COMPARE = ("ant", "ant_u4_maze", "humanoid", "reacher", "pusher")
# (task, pipeline) pairs not timed at 1,024 envs, and why (measured separately, at 16 envs).
SKIP = {
    ("pusher", "mjx"): "not timed: on this CPU one mjx.step of the pusher took about 0.3 s per env "
    "(mjx.kinematics alone 4.6 s for 16 envs; the ant's whole step takes 4 ms for 16 envs)",
}


def measure(env, num_envs: int, steps: int, repeats: int, seed: int = 0) -> dict:
    """Compile time (s) and env steps/s of a jitted scan of ``steps`` vectorised steps."""
    A = env.spec.action_size

    def run(state, key):
        def body(s, k):
            a = jax.random.uniform(k, (num_envs, A), minval=-1.0, maxval=1.0)
            return jax.vmap(env.step)(s, a), None

        state, _ = jax.lax.scan(body, state, jax.random.split(key, steps))
        return state

    keys = jax.random.split(jax.random.PRNGKey(seed), num_envs)
    t0 = time.perf_counter()
    state = jax.block_until_ready(jax.jit(jax.vmap(env.reset))(keys))
    step = jax.jit(run, donate_argnums=0).lower(state, jax.random.PRNGKey(1)).compile()
    compile_s = time.perf_counter() - t0
    times = []
    for i in range(repeats + 1):  # the first call is a warm-up
        t0 = time.perf_counter()
        state = jax.block_until_ready(step(state, jax.random.PRNGKey(2 + i)))
        if i:
            times.append(time.perf_counter() - t0)
    finite = bool(jnp.isfinite(state.obs).all())
    best = min(times)
    return {"compile_s": compile_s, "steps_per_s": num_envs * steps / best, "step_ms": 1e3 * best / steps, "finite": finite}


def machine() -> str:
    return f"{cpu_model()}, {len(os.sched_getaffinity(0))} CPUs (nproc), jax {jax.__version__} on {jax.default_backend()}"


@dataclasses.dataclass(frozen=True)
class Args:
    tasks: Optional[tuple[str, ...]] = None
    """Task names (default: every Brax task)."""
    num_envs: int = 1024
    steps: int = 20
    """Env steps per timed scan."""
    repeats: int = 2
    """Timed scans per task (the best is reported)."""
    compare_backends: bool = False
    """Also time the other brax pipelines."""
    output: str = str(Path(__file__).resolve().parent.parent / "BENCHMARKS.md")
    no_write: bool = False
    """Print only."""
    note: str = ""
    """A line added under the table (e.g. the machine's load)."""


def main(args: Args) -> None:

    tasks = args.tasks or [n for n in list_envs() if n in BACKEND]
    load0, t0 = os.getloadavg()[0], time.time()
    rows = []
    for name in tasks:
        backends = [BACKEND.get(name, "jax")]
        if args.compare_backends and name in COMPARE:
            backends = [BACKEND[name]] + [b for b in BACKENDS if b != BACKEND[name]]
        for backend in backends:
            chosen = "yes" if backend == BACKEND.get(name, "jax") else ""
            if (name, backend) in SKIP:
                rows.append((name, backend, chosen, {"error": SKIP[(name, backend)]}))
                print(f"{name:18s} {backend:12s} {SKIP[(name, backend)]}", flush=True)
                continue
            try:
                env = make_env(name) if chosen else make_task(name, backend=backend)
                r = measure(env, args.num_envs, args.steps, args.repeats)
            except Exception as e:  # noqa: BLE001  (a pipeline that cannot run a task is a result too)
                rows.append((name, backend, chosen, {"error": f"failed: {type(e).__name__}: {e}"[:120]}))
                print(f"{name:18s} {backend:12s} {rows[-1][-1]['error']}", flush=True)
                continue
            rows.append((name, backend, chosen, r))
            print(f"{name:18s} {backend:12s} {r['steps_per_s']:>10,.0f} steps/s  {r['step_ms']:8.1f} ms/step  "
                  f"compile {r['compile_s']:6.1f} s  finite {r['finite']}", flush=True)

    lines = [
        f"Command: `python benchmarks/env_throughput.py{' --compare-backends' if args.compare_backends else ''}"
        f"{' --tasks ' + ' '.join(args.tasks) if args.tasks else ''}` "
        f"({args.num_envs:,} envs, jitted scan of {args.steps} steps, random actions, best of {args.repeats}, compile excluded).",
        "",
        f"Machine: {machine()}. Date: {datetime.date.today().isoformat()}.",
        "",
        "| task | pipeline | used | env steps/s | ms per vectorised step | compile s (reset + step) |",
        "|---|---|---|---:|---:|---:|",
    ]
    for name, backend, chosen, r in rows:
        if "error" in r:
            lines.append(f"| {name} | {backend} | {chosen} | {r['error']} | | |")
        else:
            finite = "" if r["finite"] else " (non-finite states!)"
            lines.append(f"| {name} | {backend} | {chosen} | {r['steps_per_s']:,.0f}{finite} | {r['step_ms']:.1f} | {r['compile_s']:.1f} |")
    lines += ["", f"Load average (1 min) at start / end: {load0:.1f} / {os.getloadavg()[0]:.1f} on "
              f"{len(os.sched_getaffinity(0))} CPUs; the run took {(time.time() - t0) / 60:.0f} min. A load above "
              "the CPU count means other jobs shared the machine and the figures are low."]
    if args.note:
        lines += ["", args.note]
    text = "\n".join(lines) + "\n"
    print(f"\n{SECTION}\n\n{text}")
    if not args.no_write:
        write_section(Path(args.output), SECTION, text)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main(tyro.cli(Args, description=__doc__))
