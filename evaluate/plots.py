"""PNG plots of an evaluation report (matplotlib, no display needed)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from deepdistill.core.rundir import atomic_write  # noqa: E402
from deepdistill.envs import make_env  # noqa: E402

COLORS = {"teacher": "#d62728", "student": "#1f77b4", "direct": "#ff7f0e", "onnx": "#2ca02c", "native": "#9467bd",
          "random": "#7f7f7f"}


def save(fig, path: Path) -> None:
    """Write ``fig`` as a PNG atomically (a full disk leaves the old file or none, never half a plot)."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    atomic_write(path, buf.getvalue())


def _rows(report: dict) -> list[dict]:
    return [report["teacher"], *report["students"], *report.get("directs", []), *report["onnx_all"],
            *report.get("native_all", [])]


def success_vs_cost(report: dict, out_dir: Path) -> list[str]:
    """Success (random and, where present, hard/far goals) against parameters and against latency."""
    splits = [("success_rate", "random goals", "o")]
    for s in report["eval_splits"][1:]:
        splits.append((f"{s}/success_rate", f"{s} goals", "s"))
    paths = []
    for xkey, xlabel, fname in (("params", "parameters (actor + both encoders)", "success_vs_params.png"),
                                ("latency_us_p50", "latency per action, batch 1 (us, p50)", "success_vs_latency.png")):
        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
        for key, label, marker in splits:
            for r in _rows(report):
                if r.get(xkey) is None or r.get(key) is None:
                    continue
                ax.scatter(r[xkey], r[key], color=COLORS[r["kind"]], marker=marker, s=60, edgecolor="black",
                           linewidth=0.5, zorder=3)
                ax.annotate(_short(r), (r[xkey], r[key]), textcoords="offset points", xytext=(6, 4), fontsize=7)
            pts = sorted((r[xkey], r[key]) for r in report["students"] if r.get(xkey) is not None)
            if len(pts) > 1:
                ax.plot(*zip(*pts), color=COLORS["student"], alpha=0.4, linestyle="--" if marker == "s" else "-")
            if report.get("random", {}).get(key) is not None:  # random actions: the floor
                ax.axhline(report["random"][key], color="gray", lw=1, linestyle="--" if marker == "s" else ":")
        ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.05)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("success rate")
        ax.set_title(f"{report['env']}: success against {'size' if xkey == 'params' else 'speed'}")
        handles = [plt.Line2D([], [], color=c, marker="o", linestyle="", label=k) for k, c in COLORS.items()
                   if any(r["kind"] == k for r in _rows(report))]
        handles += [plt.Line2D([], [], color="gray", marker=m, linestyle="", label=l) for _, l, m in splits]
        if report.get("random"):
            handles.append(plt.Line2D([], [], color="gray", lw=1, linestyle=":", label="random actions"))
        ax.legend(handles=handles, fontsize=8, loc="lower right")
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        path = out_dir / fname
        save(fig, path)
        paths.append(str(path))
    return paths


def side_by_side(report: dict, out_dir: Path) -> str:
    """Teacher, students, direct runs and random actions side by side: success and time at goal per eval
    split, with 95% intervals over the episodes (the same episodes for every bar)."""
    from deepdistill.evaluate.dividend import mean_interval

    names = [r["name"] for r in [report["teacher"], *report["students"], *report.get("directs", []), report["random"]]]
    kinds = {r["name"]: r["kind"] for r in _rows(report) + [report["random"]]}
    splits = report["eval_splits"]
    fig, axes = plt.subplots(1, 2, figsize=(4.2 + 1.6 * len(names), 4.2), dpi=120)
    width = 0.8 / len(names)
    for ax, (metric, label) in zip(axes, (("success", "success rate"), ("time_at_goal", "time at goal (steps)"))):
        for i, name in enumerate(names):
            per = report["per_episode"][name]
            stats = [mean_interval(per[s][metric]) for s in splits]
            x = np.arange(len(splits)) + (i - (len(names) - 1) / 2) * width
            ax.bar(x, [st["mean"] for st in stats], width, color=COLORS[kinds[name]], edgecolor="black", linewidth=0.5,
                   yerr=[[st["mean"] - st["ci_low"] for st in stats], [st["ci_high"] - st["mean"] for st in stats]],
                   capsize=2, label=name, alpha=0.6 if kinds[name] == "direct" else 0.9,
                   hatch="//" if kinds[name] == "direct" else None)
        ax.set_xticks(np.arange(len(splits)), [f"{s} goals" for s in splits])
        ax.set_ylabel(label)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylim(0, 1.05)
    fig.suptitle(f"{report['env']}: did distillation pay? (bars: mean over {report['episodes']} episodes, 95% interval)",
                 fontsize=9)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=min(len(names), 4), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.1 + 0.04 * (len(names) > 4), 1, 0.95))
    path = out_dir / "side_by_side.png"
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def _short(r: dict) -> str:
    if r["kind"] == "teacher":
        return f"teacher d{r.get('actor_depth')}"
    tag = r["kind"] if r["kind"] in ("onnx", "native", "direct") else "student"
    return f"{tag} d{r.get('actor_depth', '?')} w{r.get('actor_width', '?')}"


def trajectories(report: dict, trajs: dict[str, dict], out_dir: Path) -> str:
    """Teacher and students toward the same goals (drawn on the maze for the point tasks)."""
    names = list(trajs)
    n_ep = min(4, len(next(iter(trajs.values()))["goals"]))
    fig, axes = plt.subplots(1, n_ep, figsize=(3.2 * n_ep, 3.4), dpi=120, squeeze=False)
    env = make_env(report["env"])
    walls = getattr(env, "walls_np", None)
    cmap = plt.get_cmap("tab10")
    for e, ax in enumerate(axes[0]):
        if walls is not None:
            ax.imshow(walls, cmap="Greys", origin="upper", extent=(0, walls.shape[1] * env.cell_size,
                      walls.shape[0] * env.cell_size, 0), alpha=0.8)
        for i, name in enumerate(names):
            st = trajs[name]["states"][:, e]
            gi = list(env.spec.goal_indices[:2])
            color = COLORS["teacher"] if name == "teacher" else cmap(i % 10)
            # overlapping paths stay visible: the teacher widest, each later policy thinner and dashed
            style = dict(lw=max(3.5 - 1.2 * i, 1.0), ls=("-", "--", ":", "-.")[i % 4], alpha=0.85)
            ax.plot(st[:, gi[0]], st[:, gi[1]], color=color, label=name if e == 0 else None, **style)
            ax.scatter(st[0, gi[0]], st[0, gi[1]], color=color, marker="o", s=18, zorder=3)
        goal = trajs[names[0]]["goals"][e]
        ax.scatter(goal[0], goal[1], marker="*", s=180, color="gold", edgecolor="black", zorder=4,
                   label="goal" if e == 0 else None)
        circle = plt.Circle((goal[0], goal[1]), env.spec.success_threshold, fill=False, color="goldenrod", ls="--")
        ax.add_patch(circle)
        if walls is None:
            allxy = np.concatenate([t["states"][:, e][:, list(env.spec.goal_indices[:2])] for t in trajs.values()])
            pad = 1.0
            ax.set_xlim(min(allxy[:, 0].min(), goal[0]) - pad, max(allxy[:, 0].max(), goal[0]) + pad)
            ax.set_ylim(min(allxy[:, 1].min(), goal[1]) - pad, max(allxy[:, 1].max(), goal[1]) + pad)
        else:
            ax.set_ylim(walls.shape[0] * env.cell_size, 0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"episode {e + 1}", fontsize=9)
    split = "hard" if "hard" in report["eval_splits"] else report["eval_splits"][-1]
    fig.suptitle(f"{report['env']}: trajectories toward the same {split} goals", fontsize=10)
    fig.legend(loc="lower center", ncol=min(len(names) + 1, 5), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    path = out_dir / "trajectories.png"
    save(fig, path)
    return str(path)


def depth_sweep(doc: dict, out_dir: Path) -> str:
    """Success and time at goal against the teacher's depth (log2 axis), per eval split: teacher,
    student and direct runs with 95% intervals over the episodes; random actions as a floor."""
    splits = doc["eval_splits"]
    fig, axes = plt.subplots(2, len(splits), figsize=(4.4 * len(splits), 6.8), dpi=120, squeeze=False)
    for col, split in enumerate(splits):
        for row, (metric, label) in enumerate((("success", "success rate"), ("time_at_goal", "time at goal (steps)"))):
            ax = axes[row, col]
            for role in ("teacher", "student", "direct", "random"):
                pts = [(r["teacher_depth"], r[f"{split}/{metric}"]) for r in doc["rows"] if r["role"] == role]
                if not pts:
                    continue
                x = [max(d, 1) for d, _ in pts]
                y = [m["mean"] for _, m in pts]
                err = [[m["mean"] - m["ci_low"] for _, m in pts], [m["ci_high"] - m["mean"] for _, m in pts]]
                style = dict(color=COLORS[role], marker="o", capsize=3, lw=1.5)
                if role in ("direct", "random"):  # the same run at every teacher depth
                    style.update(linestyle="--" if role == "direct" else ":", marker="")
                ax.errorbar(x, y, yerr=err, label=role, **style)
            ax.set_xscale("log", base=2)
            ax.set_xticks([max(r["teacher_depth"], 1) for r in doc["rows"] if r["role"] == "teacher"])
            ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
            if metric == "success":
                ax.set_ylim(-0.03, 1.05)
            ax.set_xlabel("teacher depth")
            ax.set_ylabel(label)
            ax.set_title(f"{split} goals", fontsize=9)
            ax.grid(True, alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    student = next((r for r in doc["rows"] if r["role"] == "student"), None)
    size = f" (student and direct: depth {student['actor_depth']}, width {student['actor_width']})" if student else ""
    fig.suptitle(f"{doc['env']}: teacher depth against student and direct training{size}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path = out_dir / "success_vs_teacher_depth.png"
    fig.savefig(path)
    plt.close(fig)
    return str(path)
