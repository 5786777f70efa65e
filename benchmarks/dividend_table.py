"""Did distillation pay? Teacher, student, direct and random from finished pipeline folders, over seeds.

    python benchmarks/dividend_table.py runs/quickstart                       # one seed
    python benchmarks/dividend_table.py runs/depth_s0 runs/depth_s1 runs/depth_s2   # --preset depth, 3 seeds

Each folder is the ``--out`` of one ``deepdistill pipeline`` run (the same preset, one seed each). For a
one-teacher preset the table has one row per policy; for a preset with ``teacher_depths`` one row per
teacher depth and policy. A cell is the mean over the evaluation episodes of each seed, then the mean
over seeds with its range (min-max) when there are several; the dividend columns are the paired
student - direct difference per seed (mean over episodes, with the seeds' verdicts). Prints markdown
for BENCHMARKS.md.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import tyro

ROLES = ("teacher", "student", "direct", "random")


@dataclasses.dataclass(frozen=True)
class Args:
    pipelines: tyro.conf.Positional[tuple[str, ...]]
    """Pipeline folders (one seed each, the same preset)."""


def _picks(report: dict) -> dict[str, dict]:
    return {"teacher": report["teacher"], "student": (report["students"] or [None])[0],
            "direct": (report.get("directs") or [None])[0], "random": report["random"]}


def _reports(folder: Path) -> dict[int | None, dict]:
    """``{teacher depth: report}`` (``None`` for a one-teacher pipeline)."""
    single = folder / "report" / "report.json"
    if single.is_file():
        return {None: json.loads(single.read_text())}
    out = {}
    for path in sorted(folder.glob("t*/report/report.json")):
        rep = json.loads(path.read_text())
        out[rep["teacher"]["actor_depth"]] = rep
    if not out:
        raise SystemExit(f"{folder}: no report/report.json and no t*/report/report.json: not a finished pipeline")
    return out


def _cell(values: list[float], digits: int) -> str:
    mean = float(np.mean(values))
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def table(pipelines: list[Path]) -> str:
    seeds = [_reports(p) for p in pipelines]
    first = next(iter(seeds[0].values()))
    splits = first["eval_splits"]
    head = (["teacher depth"] if None not in seeds[0] else []) + ["policy", "depth x width", "params"]
    head += [f"success ({s})" for s in splits] + [f"time at goal ({s})" for s in splits]
    head += [f"dividend: time at goal ({s})" for s in splits] + ["verdicts"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for depth in sorted(seeds[0], key=lambda d: -1 if d is None else d):
        for role in ROLES:
            entries = [_picks(s[depth])[role] for s in seeds]
            if any(e is None for e in entries):
                continue
            e = entries[0]
            size = f"{e['actor_depth']} x {e['actor_width']}" if e.get("actor_depth") is not None else ""
            cells = ([str(depth)] if depth is not None else []) + [role, size, f"{e['params']:,}" if e.get("params") else ""]
            for key, digits in (("success_rate", 3), ("time_at_goal", 1)):
                for s in splits:
                    k = key if s == "random" else f"{s}/{key}"
                    cells.append(_cell([x[k] for x in entries], digits))
            if role == "student":
                divs = [s[depth]["dividend"][0] for s in seeds]
                for s in splits:
                    cells.append(_cell([d["splits"][s]["time_at_goal"]["mean"] for d in divs if "splits" in d], 1)
                                 if all("splits" in d for d in divs) else "n/a")
                cells.append(", ".join(d.get("verdict", "skipped") for d in divs))
            else:
                cells += [""] * (len(splits) + 1)
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(a: Args) -> None:
    paths = [Path(p) for p in a.pipelines]
    rep = next(iter(_reports(paths[0]).values()))
    print(f"{rep['env']}: {len(paths)} seed(s) ({', '.join(str(p) for p in paths)}), {rep['episodes']} episodes per split; "
          f"cells: mean over seeds (min-max over seeds)\n")
    print(table(paths))


if __name__ == "__main__":
    main(tyro.cli(Args, description=__doc__))
