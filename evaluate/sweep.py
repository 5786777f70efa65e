"""Success against the teacher's depth: one report per teacher depth, gathered into a table and a plot.

``write_depth_sweep({depth: report})`` writes ``depth.json``, ``depth.md`` and
``success_vs_teacher_depth.png``: for each teacher depth, the teacher, its (first) student, the direct
run of the student's network and random actions, per eval split, with 95% intervals over the
episodes (every report runs the same episodes: the same evaluation seed and count).
"""

from __future__ import annotations

from pathlib import Path

from deepdistill.core.rundir import write_json_atomic
from deepdistill.evaluate.dividend import dividend_line, mean_interval

ROLES = ("teacher", "student", "direct", "random")
METRICS = (("success", "success_rate", "success rate"), ("time_at_goal", "time_at_goal", "time at goal (steps)"))


def sweep_rows(reports: dict[int, dict]) -> list[dict]:
    """One row per (teacher depth, role): its report entry's name and params, and per split and metric
    the mean and 95% interval over the episodes."""
    rows = []
    for depth in sorted(reports):
        rep = reports[depth]
        picks = {"teacher": rep["teacher"], "student": (rep["students"] or [None])[0],
                 "direct": (rep.get("directs") or [None])[0], "random": rep.get("random")}
        for role in ROLES:
            entry = picks[role]
            if entry is None:
                continue
            row = {"teacher_depth": depth, "role": role, "name": entry["name"], "params": entry.get("params"),
                   "actor_depth": entry.get("actor_depth"), "actor_width": entry.get("actor_width")}
            for split, res in rep["per_episode"][entry["name"]].items():
                for metric, _, _ in METRICS:
                    row[f"{split}/{metric}"] = mean_interval(res[metric])
            rows.append(row)
    return rows


def write_depth_sweep(reports: dict[int, dict], out_dir: str | Path) -> dict:
    """``depth.json``, ``depth.md`` and the plot in ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = sweep_rows(reports)
    first = reports[min(reports)]
    splits = first["eval_splits"]
    dividends = {d: reports[d].get("dividend", []) for d in sorted(reports)}
    doc = {"env": first["env"], "episodes": first["episodes"], "seed": first["seed"], "eval_splits": splits,
           "rows": rows, "dividend": dividends}
    from deepdistill.evaluate.plots import depth_sweep

    plot = depth_sweep(doc, out_dir)
    write_json_atomic(out_dir / "depth.json", doc)
    (out_dir / "depth.md").write_text(markdown(doc, [plot]))
    return {"json": str(out_dir / "depth.json"), "md": str(out_dir / "depth.md"), "plots": [plot]}


def markdown(doc: dict, plots: list[str]) -> str:
    splits = doc["eval_splits"]
    head = ["teacher depth", "policy", "depth x width", "params"]
    head += [f"success ({s})" for s in splits] + [f"time at goal ({s})" for s in splits]
    out = [f"# Success against teacher depth on `{doc['env']}`", "",
           f"{doc['episodes']} episodes per split (seed {doc['seed']}), the same for every policy; a cell is the mean "
           f"over the episodes and its 95% interval. `direct` is the student's network trained directly with the "
           f"teachers' recipe and budget: the same run at every teacher depth.", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in doc["rows"]:
        size = f"{r['actor_depth']} x {r['actor_width']}" if r.get("actor_depth") is not None else ""
        cells = [str(r["teacher_depth"]), r["role"], size, f"{r['params']:,}" if r.get("params") else ""]
        for metric, digits in (("success", 3), ("time_at_goal", 1)):
            for s in splits:
                m = r[f"{s}/{metric}"]
                cells.append(f"{m['mean']:.{digits}f} [{m['ci_low']:.{digits}f}, {m['ci_high']:.{digits}f}]")
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "## Did distillation pay?", ""]
    for depth, entries in doc["dividend"].items():
        out += [f"teacher depth {depth}: " + dividend_line(e)[2:] for e in entries]
    out += [""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(out) + "\n"
