"""Deep against shallow teachers on a Brax task, for the same env-step budget (meant for a GPU).

Trains one teacher per ``--depths`` entry with ``train-teacher``'s own driver (the paper's GPU
recipe: width 256, 512 envs, batch 256, one SGD step per 40 env steps, constant lr 3e-4), each in a
subprocess so that its peak device memory is its own. The first depth runs until ``--wall-s`` (its
entry) runs out or ``--total-env-steps`` is reached; with ``--match-first`` (default) every later
depth gets exactly the env steps the first one reached, so the comparison is at an equal budget.
Run the deepest first.

Per run it records: env steps reached, wall time, env steps/s of the training epochs (collection +
SGD, evaluation excluded), SGD steps/s, peak device memory (``memory_stats()['peak_bytes_in_use']``,
polled every second; preallocation off), time at goal and success per evaluation split (the
``far`` split is the paper's evaluation layout), and the curve. Results go to
``<out>/results.json``; ``--write`` renders one or more of them into BENCHMARKS.md (section
"## Deep teachers on a GPU") beside the paper's figures, with a curve per task in benchmarks/figures.

    python benchmarks/teacher_depth_gpu.py --out /tmp/depth --depths 64 4 --wall-s 230 150
    python benchmarks/teacher_depth_gpu.py --env ant --depths 4 --wall-s 235 --eval-every 1024000 --out /tmp/ant
    python benchmarks/teacher_depth_gpu.py --write /tmp/depth/results.json /tmp/ant/results.json   # on any machine
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import tyro
from _report import write_section

SECTION = "## Deep teachers on a GPU"
# Time at goal at 100M env steps, depth 4 -> depth 64, width 256 (RL1000, Table/Figure 1).
PAPER = {"ant_big_maze": (61, 441), "humanoid": (12.6, 649), "ant_u4_maze": (11.4, 286),
         "ant_u5_maze": (0.97, 61), "ant_hardest_maze": (215, 387), "arm_push_easy": (308, 762)}


def recipe(env: str, depth: int, out: str, total: int, wall: float, args) -> dict:
    """The teacher config of one run (the paper's GPU recipe, scaled by the flags)."""
    return dict(
        env=env, out=out, seed=args.seed, depth=depth, width=args.width, batch_size=args.batch_size,
        num_envs=args.num_envs, unroll_length=args.unroll_length, env_steps_per_sgd_step=40.0,
        lr_schedule="constant", replay_steps_per_env=args.replay_steps_per_env, min_replay_steps=args.min_replay_steps,
        eval_every=args.eval_every, num_eval_episodes=args.eval_episodes, total_env_steps=total, max_wall_s=wall,
        save_buffer=False, max_to_keep=1, progress=False, episode_length=args.episode_length,
    )


def child(cfg_json: str, mem_path: str) -> None:
    """Train one teacher; a thread writes the device's peak memory to ``mem_path`` every second."""
    import jax
    from deepdistill.teacher.config import TeacherConfig
    from deepdistill.teacher.run import train_teacher

    dev = jax.devices()[0]
    done = threading.Event()

    def poll():
        while not done.is_set():
            stats = dev.memory_stats() or {}
            info = {"device": dev.device_kind, "platform": dev.platform,
                    "peak_bytes_in_use": stats.get("peak_bytes_in_use"), "bytes_limit": stats.get("bytes_limit")}
            tmp = mem_path + ".tmp"
            Path(tmp).write_text(json.dumps(info))
            os.replace(tmp, mem_path)
            done.wait(1.0)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    train_teacher(TeacherConfig(**json.loads(cfg_json)))
    done.set()
    t.join()


def summarize(run_dir: Path, mem_path: Path, cfg: dict, wall: float, rc: int) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()] \
        if (run_dir / "metrics.jsonl").exists() else []
    mem = json.loads(mem_path.read_text()) if mem_path.exists() else {}
    train = [r for r in rows if "env_steps_per_s" in r]
    sps = sorted(r["env_steps_per_s"] for r in train)
    last = rows[-1] if rows else {}
    tail = rows[-5:]
    splits = ["random"] + sorted({k.split("/")[0] for r in rows for k in r if k.endswith("/time_at_goal")})

    def key(split, m):
        return m if split == "random" else f"{split}/{m}"

    sgd_rate = None
    if len(train) >= 2:  # SGD steps per second between the first and last training evals (evals excluded)
        dt = sum(1.0 / r["env_steps_per_s"] * (r["env_steps"] - p["env_steps"]) for p, r in zip(train, train[1:]))
        sgd_rate = (train[-1]["sgd_steps"] - train[0]["sgd_steps"]) / dt if dt > 0 else None
    return {
        "depth": cfg["depth"], "config": cfg, "returncode": rc, "wall_s": wall,
        "env_steps": last.get("env_steps", 0), "sgd_steps": last.get("sgd_steps", 0),
        "train_wall_s": last.get("wall_s"),
        "env_steps_per_s_median": sps[len(sps) // 2] if sps else None,
        "sgd_steps_per_s": sgd_rate,
        "peak_memory_gib": mem["peak_bytes_in_use"] / 2**30 if mem.get("peak_bytes_in_use") else None,
        "device": mem.get("device"), "platform": mem.get("platform"),
        "last": {s: {m: last.get(key(s, m)) for m in ("time_at_goal", "success_rate", "final_distance")} for s in splits},
        "last5_time_at_goal": {s: sum(r[key(s, "time_at_goal")] for r in tail) / len(tail) for s in splits} if tail else {},
        "curve": [{"env_steps": r["env_steps"], "wall_s": r["wall_s"],
                   **{f"{s}_time_at_goal": r.get(key(s, "time_at_goal")) for s in splits},
                   **{f"{s}_success": r.get(key(s, "success_rate")) for s in splits}} for r in rows],
    }


def run(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    walls = list(args.wall_s) + [args.wall_s[-1]] * (len(args.depths) - len(args.wall_s))
    total, results = args.total_env_steps, []
    for i, (depth, wall) in enumerate(zip(args.depths, walls)):
        run_dir, mem_path = out / f"d{depth}", out / f"d{depth}_mem.json"
        cfg = recipe(args.env, depth, str(run_dir), total, wall, args)
        print(f"--- depth {depth}: up to {total:,} env steps, {wall:.0f} s", flush=True)
        t0 = time.perf_counter()
        try:  # a hard cap one epoch past the soft one: an epoch is one compiled call
            rc = subprocess.run([sys.executable, __file__, "--child", json.dumps(cfg), str(mem_path)],
                                timeout=wall + args.grace_s).returncode
        except subprocess.TimeoutExpired:
            rc = -9
        res = summarize(run_dir, mem_path, cfg, time.perf_counter() - t0, rc)
        results.append(res)
        print(json.dumps({k: res[k] for k in ("depth", "env_steps", "wall_s", "env_steps_per_s_median",
                                               "sgd_steps_per_s", "peak_memory_gib", "last5_time_at_goal")}), flush=True)
        if i == 0 and args.match_first and res["env_steps"]:
            total = res["env_steps"]
        doc = {"env": args.env, "date": datetime.date.today().isoformat(), "machine": machine(), "results": results}
        (out / "results.json").write_text(json.dumps(doc, indent=1))
    print(table(doc))


def machine() -> str:
    gpu = ""
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    import jax
    return f"{gpu or platform.processor() or 'cpu'}; {os.cpu_count()} CPUs; jax {jax.__version__} ({jax.default_backend()})"


def table(doc: dict) -> str:
    env = doc["env"]
    paper = PAPER.get(env)
    lines = [
        "| depth | env steps | train wall s | env steps/s | SGD steps/s | peak memory GiB | time at goal (far), last 5 evals | "
        "time at goal (random) | success far / random (last eval) | paper, 100M steps |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["results"]:
        l5 = r["last5_time_at_goal"]
        ref = {4: paper[0], 64: paper[1]}.get(r["depth"]) if paper else None
        far, rnd = r["last"].get("far", {}), r["last"].get("random", {})

        def f(x, fmt):
            return "-" if x is None else format(x, fmt)

        lines.append(
            f"| {r['depth']} | {r['env_steps']:,} | {f(r['train_wall_s'], '.0f')} | {f(r['env_steps_per_s_median'], ',.0f')} | "
            f"{f(r['sgd_steps_per_s'], ',.0f')} | {f(r['peak_memory_gib'], '.2f')} | {f(l5.get('far'), '.1f')} | "
            f"{f(l5.get('random'), '.1f')} | {f(far.get('success_rate'), '.2f')} / {f(rnd.get('success_rate'), '.2f')} | "
            f"{'-' if ref is None else ref} |")
    return "\n".join(lines)


def block(doc: dict, figure: Path | None, link: str = "") -> list[str]:
    """One task's recipe line, table and (optionally) curve figure, linked as ``link``."""
    cfg = doc["results"][0]["config"]
    lines = [
        f"### `{doc['env']}`", "",
        f"Machine: {doc['machine']}. Date: {doc['date']}.", "",
        f"Recipe: width {cfg['width']}, {cfg['num_envs']} envs, batch {cfg['batch_size']}, one SGD step per 40 env "
        f"steps, unroll {cfg['unroll_length']}, constant lr 3e-4, replay {cfg['replay_steps_per_env']} steps per env "
        f"(the first {cfg['min_replay_steps'] * cfg['num_envs']:,} env steps are random-action prefill, counted in the "
        f"budget), {cfg['num_eval_episodes']} evaluation episodes per split every {cfg['eval_every']:,} env steps.", "",
        table(doc), "",
    ]
    if figure is not None:
        plot(doc, figure)
        lines += [f"![time at goal against env steps]({link})", ""]
    return lines


def plot(doc: dict, figure: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for r in doc["results"]:
        for split, style in (("far", "-"), ("random", "--")):
            xs = [c["env_steps"] / 1e6 for c in r["curve"] if c.get(f"{split}_time_at_goal") is not None]
            ys = [c[f"{split}_time_at_goal"] for c in r["curve"] if c.get(f"{split}_time_at_goal") is not None]
            if xs:
                ax.plot(xs, ys, style, marker="o", ms=3, label=f"depth {r['depth']}, {split} goals")
    ax.set_xlabel("env steps (millions)")
    ax.set_ylabel("time at goal (of 1,000 steps)")
    ax.set_title(f"{doc['env']}: {doc['machine'].split(',')[0]}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=120)
    plt.close(fig)


def write(path: Path, results: list[Path], command: str, note: str, figures: Path | None) -> None:
    """Render ``results`` (results.json files) into the section ``SECTION`` of ``path``."""
    text = [f"Command: `{command}`", "",
            "Each depth runs train-teacher's own driver in its own process. Env steps/s are the median over "
            "training epochs (collection and SGD, evaluation excluded); SGD steps/s likewise; peak memory is "
            "XLA's `peak_bytes_in_use` on the device (preallocation off); time at goal is steps out of the "
            "episode's 1,000 within the success threshold, the mean of the last 5 evaluations, on the `far` "
            "split (the paper's evaluation layout) and on random goal cells.", ""]
    for r in results:
        doc = json.loads(r.read_text())
        figure = None if figures is None else figures / f"teacher_gpu_{doc['env']}.png"
        link = "" if figure is None else os.path.relpath(figure.resolve(), path.resolve().parent)
        text += block(doc, figure, link)
    text += [note, ""]
    write_section(path, SECTION, "\n".join(text))


@dataclasses.dataclass(frozen=True)
class Args:
    env: str = "ant_big_maze"
    depths: tuple[int, ...] = (64, 4)
    """Run the deepest first."""
    wall_s: tuple[float, ...] = (230.0, 150.0)
    """Wall budget per depth (the last repeats)."""
    grace_s: float = 60.0
    """Hard kill this long after a run's wall budget."""
    total_env_steps: int = 100_000_000
    match_first: bool = True
    """Give the later depths the first run's env steps (an equal budget)."""
    width: int = 256
    batch_size: int = 256
    num_envs: int = 512
    unroll_length: int = 50
    replay_steps_per_env: int = 4000
    min_replay_steps: int = 1000
    eval_every: int = 128_000
    eval_episodes: int = 128
    episode_length: Optional[int] = None
    """Override (tiny CPU dry runs only)."""
    seed: int = 0
    out: str = "runs/teacher_depth_gpu"
    write: Optional[tuple[str, ...]] = None
    """Render these results.json files into BENCHMARKS.md and exit."""
    figures: str = str(Path(__file__).resolve().parent / "figures")
    """Where --write draws the curves."""
    command: str = "python benchmarks/teacher_depth_gpu.py --depths 64 4 --wall-s 230 150"
    note: str = ""
    output: str = str(Path(__file__).resolve().parent.parent / "BENCHMARKS.md")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2], sys.argv[3])
    args = tyro.cli(Args, description=__doc__.split("\n\n")[0])
    if args.write:
        write(Path(args.output), [Path(w) for w in args.write], args.command, args.note, Path(args.figures))
        for w in args.write:
            print(table(json.loads(Path(w).read_text())))
        return
    run(args)


if __name__ == "__main__":
    main()
