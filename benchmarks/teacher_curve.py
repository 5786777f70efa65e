"""Learning curve of `train-teacher` with its defaults on point_maze: figure + markdown table.

    python benchmarks/teacher_curve.py --out runs/bench_teacher          # trains, then plots
    python benchmarks/teacher_curve.py --out runs/bench_teacher --plot-only

Writes benchmarks/figures/teacher_point_maze.png and prints the table for BENCHMARKS.md.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import matplotlib
import tyro

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Args:
    out: str = "runs/bench_teacher"
    plot_only: bool = False
    """Plot an existing run's metrics.jsonl; do not train."""
    figure: str = str(Path(__file__).parent / "figures" / "teacher_point_maze.png")
    extra: tuple[str, ...] = ()
    """Extra train-teacher flags, e.g. --extra --seed 1."""


def main(a: Args) -> None:
    if not a.plot_only:
        subprocess.run([sys.executable, "-m", "deepdistill.teacher.cli", "--out", a.out, "--no-progress", *a.extra],
                       check=True)
    rows = [json.loads(l) for l in open(Path(a.out) / "metrics.jsonl")]
    t = [r["wall_s"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    for ax, x, label in ((axes[0], t, "wall time (s)"), (axes[1], [r["env_steps"] / 1e6 for r in rows], "env steps (M)")):
        ax.plot(x, [r["success_rate"] for r in rows], "o-", label="random goals")
        ax.plot(x, [r["hard/success_rate"] for r in rows], "s-", label="hard goals (across the wall)")
        ax.axhline(0.9, color="C0", ls=":", lw=1)
        ax.axhline(0.7, color="C1", ls=":", lw=1)
        ax.set_xlabel(label)
        ax.set_ylabel("success rate")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].axvline(300, color="gray", ls="--", lw=1)
    axes[0].legend(loc="lower right", fontsize=8)
    cfg = json.load(open(Path(a.out) / "config.json"))
    fig.suptitle(f"train-teacher on point_maze: depth {cfg['depth']}, width {cfg['width']}, batch {cfg['batch_size']}, "
                 f"{cfg['num_envs']} envs", fontsize=10)
    fig.tight_layout()
    Path(a.figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.figure)
    print("| env steps | SGD steps | wall (s) | success random | success hard | time at goal |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['env_steps']:,} | {r['sgd_steps']:,} | {r['wall_s']:.0f} | {r['success_rate']:.3f} | "
              f"{r['hard/success_rate']:.3f} | {r['time_at_goal']:.1f} |")
    last3 = rows[-3:]
    print(f"\nmean of the last 3 evals: random {sum(r['success_rate'] for r in last3) / 3:.3f}, "
          f"hard {sum(r['hard/success_rate'] for r in last3) / 3:.3f}; total wall {rows[-1]['wall_s']:.0f} s")


if __name__ == "__main__":
    main(tyro.cli(Args, description=__doc__))
