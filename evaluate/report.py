"""Writing an evaluation report: ``report.json``, ``report.md`` (tables), PNG plots, viewer pages."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from deepdistill.core.rundir import atomic_write, write_json_atomic
from deepdistill.evaluate import viewer as V

COLUMNS = [
    ("name", "policy", "{}"),
    ("arch", "arch", "{}"),
    ("actor_depth", "depth", "{}"),
    ("actor_width", "width", "{}"),
    ("observes", "observes", "{}"),
    ("params", "params", "{:,}"),
    ("flops_per_action", "FLOPs/action", "{:,}"),
    ("success_rate", "success (random)", "{:.3f}"),
    ("hard/success_rate", "success (hard)", "{:.3f}"),
    ("far/success_rate", "success (far)", "{:.3f}"),
    ("time_at_goal", "time at goal", "{:.1f}"),
    ("hard/time_at_goal", "time at goal (hard)", "{:.1f}"),
    ("far/time_at_goal", "time at goal (far)", "{:.1f}"),
    ("final_distance", "final dist.", "{:.3f}"),
    ("latency_us_p50", "latency p50 (us)", "{:.1f}"),
    ("latency_us_p99", "latency p99 (us)", "{:.1f}"),
    ("sim2sim_obs_err", "sim2sim obs. err.", "{:.1e}"),
]


def rows(report: dict) -> list[dict]:
    """Every row of the report's table: teacher, students, direct runs, ONNX, native MuJoCo, random actions."""
    return [report["teacher"], *report["students"], *report.get("directs", []), *report["onnx_all"],
            *report.get("native_all", []), *([report["random"]] if report.get("random") else [])]


def table(report: dict) -> str:
    all_rows = rows(report)
    cols = [c for c in COLUMNS if any(c[0] in r for r in all_rows)]
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in all_rows:
        cells = [c[2].format(r[c[0]]) if r.get(c[0]) is not None else "" for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(report: dict) -> str:
    """What the CLIs print: the table, then each student's dividend line."""
    from deepdistill.evaluate.dividend import dividend_line

    return "\n".join([table(report), *(dividend_line(d) for d in report.get("dividend", []))])


def markdown(report: dict, plots: Sequence[str]) -> str:
    t = report["teacher"]
    out = [f"# Student vs teacher on `{report['env']}`", "",
           f"{report['episodes']} episodes per split, seed {report['seed']}, the same goals for every policy.", "",
           table(report), ""]
    if any(r.get("history", 1) > 1 or r.get("action_delay") or r.get("obs_noise") or r.get("recurrent")
           or r.get("observation_terms") not in (None, t.get("observation_terms")) for r in report["students"]):
        out += ["Students with sensors (the observes column: their terms; history, GRU, action delay, training noise) "
                "run as deployed: their frames without noise, their actions applied after their trained delay, "
                "their history or hidden state kept across the episode; noise is in the robustness table.", ""]
    if report["agreement"]:
        out += ["## Agreement with the teacher (on states the teacher visits)", "",
                "| student | action MSE | action cosine | CKA phi | CKA psi | logits Pearson |", "|---|---|---|---|---|---|"]
        for name, a in report["agreement"].items():
            rep = [f"{a[k]:.3f}" if k in a else "n/a" for k in ("cka_phi", "cka_psi", "logits_pearson")]
            out.append(f"| {name} | {a['action_mse']:.4f} | {a['action_cosine']:.3f} | " + " | ".join(rep) + " |")
        out.append("")
    if report.get("dividend"):
        out += dividend_section(report)
    for s in report["students"]:
        keep = s["success_rate"] / t["success_rate"] if t["success_rate"] else float("nan")
        speed = t["latency_us_p50"] / s["latency_us_p50"]
        out.append(f"- {s['name']}: {t['params'] / s['params']:.1f}x fewer parameters, keeps {keep:.0%} of the "
                   f"teacher's random-goal success, {speed:.1f}x faster per action (JAX, batch 1).")
    for o in report["onnx_all"]:
        out.append(f"- {o['name']}: {t['latency_us_p50'] / o['latency_us_p50']:.1f}x faster per action than the JAX teacher.")
    for n in report.get("native_all", []):
        src = next((o for o in report["onnx_all"] if o["name"] == n["onnx"]), None)
        if src is not None:
            out.append(f"- {n['name']}: the ONNX file in native MuJoCo (task.xml) keeps {_ratio(n, src, 'success_rate')} of "
                       f"its success and {_ratio(n, src, 'time_at_goal')} of its time at goal in the MJX env; largest "
                       f"observation gap MJX vs MuJoCo over the first {n['sim2sim_steps']} steps: "
                       f"{n['sim2sim_obs_err']:.1e} of the observation's scale ({n['sim2sim_worst_entry']}).")
    for name, k in (report.get("sensor_students") or {}).items():
        out.append(f"- {name}: under its own sensors (training noise, trained delay) it keeps "
                   f"{k['time_at_goal_kept']:.0%} of the teacher's time at goal ({k['time_at_goal']:.1f} against "
                   f"{k['teacher_time_at_goal']:.1f}; success {k['success_rate']:.2f} against {k['teacher_success_rate']:.2f}).")
    if report.get("random"):
        r = report["random"]
        out.append(f"- random: uniform random actions reach the goal in {r['success_rate']:.0%} of the episodes "
                   f"(time at goal {r['time_at_goal']:.1f}): the floor every policy is measured against.")
    if report.get("robustness"):
        from deepdistill.evaluate.sensors import robustness_markdown

        out += [""] + robustness_markdown(report["robustness"])
    out += [""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    if report.get("viewer"):
        out += [""] + V.markdown(report["viewer"])
    return "\n".join(out) + "\n"


def dividend_section(report: dict) -> list[str]:
    """``## Did distillation pay?``: what the direct rows are, and one dividend line per student."""
    from deepdistill.evaluate.dividend import dividend_line

    t = report["teacher"]
    out = ["## Did distillation pay?", "",
           f"`direct:` rows are the student's network trained directly with contrastive RL, with the teacher's "
           f"recipe and budget (teacher: {t.get('env_steps', 0):,} env steps), evaluated on the same episodes. The "
           f"dividend is the student minus the direct network, episode by episode; an interval that excludes 0 "
           f"is a difference the episodes resolve.", ""]
    for d in report["dividend"]:
        out.append(dividend_line(d))
        steps = d.get("direct_env_steps")
        if steps is not None and steps != t.get("env_steps"):
            out.append(f"  (the direct run trained for {steps:,} env steps, the teacher for {t.get('env_steps', 0):,}: "
                       f"not the same budget)")
    return out + [""]


def _ratio(row: dict, ref: dict, key: str) -> str:
    return f"{row[key] / ref[key]:.0%}" if ref.get(key) else "n/a"


def write_report(report: dict, out_dir: str | Path, plots: bool = True) -> dict:
    """Write ``report.json``, ``report.md``, the plots and the viewer pages; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trajectories = report.pop("_trajectories", {})
    pages = report.pop("_viewer", {})
    for fname, html in pages.items():
        atomic_write(out_dir / fname, html)
    written = []
    if plots:
        from deepdistill.evaluate import plots as P

        written += P.success_vs_cost(report, out_dir)
        if report.get("per_episode"):
            written.append(P.side_by_side(report, out_dir))
        written.append(P.trajectories(report, trajectories, out_dir))
    write_json_atomic(out_dir / "report.json", report)
    atomic_write(out_dir / "report.md", markdown(report, written))
    return {"json": str(out_dir / "report.json"), "md": str(out_dir / "report.md"), "plots": written,
            "viewer": [str(out_dir / f) for f in pages]}
