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

COLORS = {"teacher": "#d62728", "student": "#1f77b4", "onnx": "#2ca02c", "native": "#9467bd"}


def save(fig, path: Path) -> None:
    """Write ``fig`` as a PNG atomically (a full disk leaves the old file or none, never half a plot)."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    atomic_write(path, buf.getvalue())


def _rows(report: dict) -> list[dict]:
    return [report["teacher"], *report["students"], *report["onnx_all"], *report.get("native_all", [])]


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


def _short(r: dict) -> str:
    if r["kind"] == "teacher":
        return f"teacher d{r.get('actor_depth')}"
    tag = r["kind"] if r["kind"] in ("onnx", "native") else "student"
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
