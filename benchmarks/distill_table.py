"""Distillation table on point_maze: each loss alone and combined, teacher-driven vs DAgger,
student depth 0/4/8, with parameter counts. Every student is evaluated on the same goals as its teacher.

    python benchmarks/distill_table.py --teacher runs/bench_teacher --out runs/bench_distill [--steps 6000]

Prints a markdown table for BENCHMARKS.md (finished variants are reused on a rerun).
"""

import dataclasses
import json
import time
from pathlib import Path
from typing import Optional

import tyro

from deepdistill.distill import DistillConfig, distill

OFF = dict(action_mse=0.0, action_kl=0.0, repr=0.0, relational=0.0)
VARIANTS = {
    "default (mse + repr + relational 0.1), DAgger, d4": dict(),
    "action MSE only": {**OFF, "action_mse": 1.0},
    "action KL only": {**OFF, "action_kl": 1.0},
    "representation only": {**OFF, "repr": 1.0},
    "relational only": {**OFF, "relational": 1.0},
    "all four (KL 0.1)": dict(action_kl=0.1),
    "teacher-driven data": dict(data="teacher"),
    "student depth 0": dict(depth=0),
    "student depth 8": dict(depth=8),
    "plain MLP student (--arch mlp), 2 hidden layers": dict(arch="mlp", depth=1),
}


@dataclasses.dataclass(frozen=True)
class Args:
    teacher: str
    """A train-teacher run directory."""
    out: str = "runs/bench_distill"
    steps: Optional[int] = None
    """SGD steps (default: distill's default)."""
    only: Optional[tuple[str, ...]] = None
    """Variant names to run."""


def main(a: Args) -> None:
    rows = []
    for i, (name, over) in enumerate(VARIANTS.items()):
        if a.only and name not in a.only:
            continue
        run = Path(a.out) / f"v{i}"
        if not (run / "result.json").exists():
            extra = {} if a.steps is None else {"steps": a.steps}
            t0 = time.perf_counter()
            distill(DistillConfig(teacher=a.teacher, out=str(run), progress=False, resume=(run / "run.json").exists(),
                                  **extra, **over))
            print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
        r = json.load(open(run / "result.json"))
        cfg = json.load(open(run / "config.json"))
        rows.append((name, cfg, r))
    t = rows[0][2]["teacher"]
    print(f"\nteacher: {t['params']:,} params, success random {t['success_rate']:.3f}, hard {t['hard/success_rate']:.3f}\n")
    print("| variant | student depth x width | params | ratio | success random (% of teacher) | success hard (% of teacher) | wall (s) |")
    print("|---|---|---|---|---|---|---|")
    for name, cfg, r in rows:
        s, t = r["student"], r["teacher"]
        print(f"| {name} | {cfg.get('arch', 'residual')} {cfg['depth']} x {cfg['width']} | {s['params']:,} | {t['params'] / s['params']:.1f}x | "
              f"{s['success_rate']:.3f} ({s['success_rate'] / t['success_rate']:.0%}) | "
              f"{s['hard/success_rate']:.3f} ({s['hard/success_rate'] / max(t['hard/success_rate'], 1e-9):.0%}) | {r['wall_s']:.0f} |")


if __name__ == "__main__":
    main(tyro.cli(Args, description=__doc__))
