"""Did distillation pay? The student against the same network trained directly, episode by episode.

A ``direct`` run is the student's network (same architecture, depths and widths) trained by
``train-teacher --arch ... --depth ... --width ...`` with the teacher's recipe and env-step budget.
Every policy of a report runs the same episodes (same starts, same goals), so the student's and the
direct network's results pair up per episode: the dividend is the mean of the per-episode
differences ``student - direct`` with a 95% paired t-interval over the episodes (for success, a 0/1
per episode, the interval is the usual normal-theory approximation; with hundreds of episodes it is
close to exact).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

from deepdistill.student.interface import is_recurrent

CONFIDENCE = 0.95
METRICS = ("time_at_goal", "success")

def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """Mean of ``a - b`` over paired episodes ``[N]`` and its two-sided t-interval at ``confidence``.

    Returns ``mean``, ``ci_low``, ``ci_high``, ``sd`` (of the differences) and ``n``. With ``n == 1``,
    or every difference equal, the interval is the mean itself."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 1 or a.shape != b.shape or not len(a):
        raise ValueError(f"paired_difference needs two equal-length 1-D sequences (got shapes {a.shape}, {b.shape})")
    d = a - b
    n, mean = len(d), float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    half = 0.0 if n < 2 or sd == 0.0 else t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "sd": sd, "n": n}


def mean_interval(x: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """Mean of ``x`` over episodes ``[N]`` with its t-interval (``paired_difference`` against zero)."""
    return paired_difference(x, np.zeros(len(x)), confidence)


def t_quantile(p: float, dof: int) -> float:
    """Quantile of Student's t distribution (scipy, which JAX already depends on)."""
    from scipy.stats import t

    return float(t.ppf(p, dof))


def same_network(a: Any, b: Any) -> bool:
    """Whether two networks are the same architecture at the same sizes (how they run, e.g. ``remat``
    or bf16 products, does not matter)."""
    return type(a) is type(b) and a.describe() == b.describe() and a.num_params() == b.num_params()


def observation_difference(student: Any) -> Optional[str]:
    """Why ``student`` (a loaded run) sees another observation than its teacher, or None when it sees the
    teacher's: its recorded observation model (``observation_model.json``: terms, history, noise, action
    delay) and whether its network is recurrent."""
    obs = getattr(student, "observation", None)
    differs = []
    if obs is not None and not obs.is_identity(student.spec.state_size):
        if obs.frame_indices() != list(range(student.spec.state_size)):
            differs.append("terms " + ", ".join(obs.term_names))
        if obs.history > 1:
            differs.append(f"history {obs.history}" + (" with previous actions" if obs.history_actions else ""))
        elif obs.history_actions:
            differs.append("previous actions")
        if obs.noisy:
            differs.append("noise " + ", ".join(f"{n}={s:g}" for n, s in zip(obs.term_names, obs.sigmas) if s))
        if obs.action_delay:
            differs.append(f"action delay {obs.action_delay}")
    if is_recurrent(student.nets):
        differs.append("a recurrent network (its own memory)")
    if not differs:
        return None
    return ("it sees another observation than the teacher (" + "; ".join(differs) + "), and a network trained "
            "directly sees the teacher's: there is no same-input direct baseline")


def dividend(student_episodes: dict, direct_episodes: dict) -> dict[str, dict[str, dict[str, float]]]:
    """``{split: {metric: paired_difference(student, direct)}}`` from the per-episode results
    ``{split: {"success": [N], "time_at_goal": [N], ...}}`` of the same episodes."""
    return {split: {m: paired_difference(student_episodes[split][m], direct_episodes[split][m]) for m in METRICS}
            for split in student_episodes}


def verdict(per_split: dict[str, dict[str, dict[str, float]]]) -> str:
    """``student better``, ``direct better``, ``mixed`` or ``no clear difference``: the signs of the
    intervals of every split and metric that exclude zero."""
    signs = {(d["ci_low"] > 0) - (d["ci_high"] < 0) for m in per_split.values() for d in m.values()} - {0}
    if signs == {1}:
        return "student better"
    if signs == {-1}:
        return "direct better"
    return "mixed" if signs else "no clear difference"


def dividend_line(entry: dict) -> str:
    """The one line of ``report.md`` for one student: its dividend, or why it has none."""
    if entry.get("skipped"):
        return f"- dividend of {entry['student']}: not measured: {entry['skipped']}."
    parts = []
    for split, metrics in entry["splits"].items():
        t, s = metrics["time_at_goal"], metrics["success"]
        parts.append(f"{split} goals: time at goal {_signed(t['mean'], 1)} [{_signed(t['ci_low'], 1)}, "
                     f"{_signed(t['ci_high'], 1)}], success {_signed(s['mean'], 3)} [{_signed(s['ci_low'], 3)}, "
                     f"{_signed(s['ci_high'], 3)}]")
    n = next(iter(entry["splits"].values()))["time_at_goal"]["n"]
    return (f"- **dividend** of {entry['student']} over {entry['direct']} (student - direct, mean and 95% interval "
            f"over {n} paired episodes per split): " + "; ".join(parts) + f": **{entry['verdict']}**.")


def _signed(x: float, digits: int) -> str:
    return f"{x:+.{digits}f}"
