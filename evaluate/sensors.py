"""Students with sensors in ``evaluate``: what each row observes, the environments they are evaluated in,
and the robustness table (success and time at goal under more or less sensor noise and action delay).

A student's main row runs it as deployed: its frames without noise, its trained action delay
(:class:`~deepdistill.envs.sensors.SensorEnv`); its ONNX file gets only the frame and keeps its own
history (as a controller does); its native MuJoCo row queues its actions by the same delay. The
robustness table adds the noise: for each student with sensors, the teacher and the student at obs
noise 0, 1x and 2x the student's training noise (at its trained delay) and at action delay 0, 1 and
2 (at its training noise). The teacher sees every term; "the student's noise" gives each of the
teacher's terms the sigma the student was trained with for it (none for the terms it never sensed).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np

from deepdistill.core.rollout import rollout, split_key, summarize
from deepdistill.distill.train import student_policy
from deepdistill.envs import GoalEnv
from deepdistill.envs.observation import ObservationModel
from deepdistill.envs.sensors import SensorEnv
from deepdistill.student.interface import is_recurrent
from deepdistill.student.policy import PolicyRun

NOISE_SCALES = (0.0, 1.0, 2.0)
DELAYS = (0, 1, 2)


def observation_of(run: PolicyRun, env: GoalEnv) -> ObservationModel:
    """The run's observation model (the task's full view for a teacher or an older student)."""
    return run.observation or ObservationModel.full(env.observation_terms(), env.spec.action_size)


def observation_fields(model: ObservationModel, recurrent: bool = False) -> dict[str, Any]:
    """What a report row says about what a policy observes (report.json and the "observes" column)."""
    noise = {t.name: s for t, s in zip(model.terms, model.sigmas) if s}
    return {"observation_terms": list(model.term_names), "history": model.history,
            "history_actions": model.history_actions, "action_delay": model.action_delay, "obs_noise": noise,
            "recurrent": recurrent, "observes": describe(model, recurrent)}


def describe(model: ObservationModel, recurrent: bool = False) -> str:
    """``cos_qpos,sin_qpos; 3 frames + actions; GRU; delay 1; noise 0.01`` (compact, for tables)."""
    parts = [",".join(model.term_names)]
    if model.history > 1 or model.history_actions:
        parts.append(f"{model.history} frame{'s' if model.history > 1 else ''}" + (" + actions" if model.history_actions else ""))
    if recurrent:
        parts.append("GRU")
    if model.action_delay:
        parts.append(f"delay {model.action_delay}")
    sig = sorted({s for s in model.sigmas if s})
    if sig:
        parts.append("noise " + "/".join(f"{s:g}" for s in sig))
    return "; ".join(parts)


def sensed(run: PolicyRun) -> bool:
    """Whether a run needs its own evaluation env or memory (sensors, or a hidden state)."""
    return run.sensed or is_recurrent(run.nets)


def jax_eval(env: GoalEnv, run: PolicyRun) -> tuple[Any, Any]:
    """``(env, policy)`` of a run's main row: the task (wrapped in its sensors, noise-free, trained delay)
    and its deterministic action on that env's rows (a ``Recurrent`` policy for a GRU)."""
    if not run.sensed:
        return env, student_policy(run.nets)
    return SensorEnv(env, run.observation.replace(noise=())), student_policy(run.nets, slice(env.spec.state_size, None))


def onnx_eval(env: GoalEnv, policy: Any) -> tuple[Any, Callable, Optional[Callable[[], None]]]:
    """``(env, act, reset)`` of an ONNX policy's row: its frame alone (noise-free, its trained delay in the
    env); the runtime keeps the history and hidden state, reset at every batch of episodes."""
    meta = getattr(policy, "metadata", {}) or {}
    reset = getattr(policy, "reset", None)
    if not meta.get("observation_model"):
        return env, policy.act, reset
    model = ObservationModel.from_dict(meta["observation_model"])
    if model.is_identity(env.spec.state_size) and not meta.get("recurrent"):
        return env, policy.act, reset
    S = env.spec.state_size
    return SensorEnv(env, model.frames_only()), (lambda s, g: policy.act(s[:, S:], g)), reset


# --- the robustness table -----------------------------------------------------------------------------------


def conditions(model: ObservationModel) -> list[tuple[float, int]]:
    """``(noise scale, delay)``: noise 0, 1x, 2x at the trained delay, then delay 0, 1, 2 at 1x noise."""
    out = [(s, model.action_delay) for s in NOISE_SCALES]
    out += [(1.0, d) for d in DELAYS if (1.0, d) not in out]
    return out


def robustness(teacher: PolicyRun, students: Sequence[PolicyRun], env: GoalEnv, episodes: int, seed: int,
               names: Sequence[str]) -> Optional[dict]:
    """Success and time at goal of every student with sensors and of the teacher under its sensors, for each
    of :func:`conditions` (the same episodes for all: the eval seed); None when no student has sensors.
    Students trained with the same noise and delay share one teacher row."""
    S, split, max_delay = env.spec.state_size, env.spec.eval_splits[0], max(DELAYS)
    teacher_rows: dict[tuple, dict] = {}
    rows = []

    def evaluate(run: PolicyRun, model: ObservationModel, grid: list[tuple[float, int]]) -> list[dict]:
        fn = _conditions_rollout(env, model, student_policy(run.nets, slice(S, None)), episodes, split, max_delay)
        out = []
        for scale, delay in grid:
            res = summarize(jax.device_get(fn(run.params, split_key(seed, 0), scale, delay)))
            out.append({"noise_scale": scale, "action_delay": delay,
                        "obs_noise": {t.name: scale * s for t, s in zip(model.terms, model.sigmas) if s}, **res})
        return out

    for run, name in zip(students, names):
        if not run.sensed:
            continue
        model, grid = run.observation, conditions(run.observation)
        t_model = model.seen_by(env.observation_terms())
        key = (t_model.noise, model.action_delay)
        if key not in teacher_rows:
            teacher_rows[key] = {"name": "teacher", "under": [], "observes": describe(t_model),
                                 "results": evaluate(teacher, t_model, grid)}
            rows.append(teacher_rows[key])
        teacher_rows[key]["under"].append(name)
        rows.append({"name": name, "under": [name], "observes": describe(model, is_recurrent(run.nets)),
                     "results": evaluate(run, model, grid), "teacher_row": rows.index(teacher_rows[key])})
    if not rows:
        return None
    return {"split": split, "episodes": episodes, "noise_scales": list(NOISE_SCALES), "delays": list(DELAYS),
            "rows": rows}


def _conditions_rollout(env: GoalEnv, model: ObservationModel, policy: Any, episodes: int, split: str, max_delay: int):
    """One compiled rollout for every (noise scale, delay): both are traced arguments of the sensors."""

    def run(params, key, scale, delay):
        return rollout(SensorEnv(env, model, noise_scale=scale, delay=delay, max_delay=max_delay), policy, params, key,
                       episodes, split)

    jitted = jax.jit(run)
    return lambda params, key, scale, delay: jitted(params, key, np.float32(scale), np.int32(delay))


def robustness_markdown(table: dict) -> list[str]:
    """The robustness table as markdown lines (success / time at goal per condition)."""
    scales, delays = table["noise_scales"], table["delays"]
    head = [f"noise {s:g}x" for s in scales] + [f"delay {d}" for d in delays]
    out = ["## Robustness: sensor noise and action delay", "",
           f"Success rate / time at goal, {table['episodes']} episodes of the `{table['split']}` split. Noise columns "
           "at each student's trained delay, delay columns at its training noise (1x); the teacher under the same "
           "sensors (the student's noise on each of its terms, the same delay).", "",
           "| policy | under | observes | " + " | ".join(head) + " |", "|" + "---|" * (3 + len(head))]
    for row in table["rows"]:
        by = {(r["noise_scale"], r["action_delay"]): r for r in row["results"]}
        trained = next(r["action_delay"] for r in row["results"] if r["noise_scale"] == 0.0)
        cells = [by.get((s, trained)) for s in scales] + [by.get((1.0, d)) for d in delays]
        out.append(f"| {row['name']} | {', '.join(row['under'])} | {row['observes']} | " + " | ".join(
            f"{c['success_rate']:.2f} / {c['time_at_goal']:.0f}" if c else "" for c in cells) + " |")
    return out + [""]


def keeps(table: dict) -> dict[str, dict[str, float]]:
    """Per student: its success and time at goal, and the teacher's, under the student's own sensors
    (training noise, trained delay), and the share of the teacher's time at goal it keeps."""
    out = {}
    for row in table["rows"]:
        if "teacher_row" not in row:
            continue
        own = _trained(row)
        t = _at(table["rows"][row["teacher_row"]], own["noise_scale"], own["action_delay"])
        out[row["name"]] = {"success_rate": own["success_rate"], "time_at_goal": own["time_at_goal"],
                            "teacher_success_rate": t["success_rate"], "teacher_time_at_goal": t["time_at_goal"],
                            "time_at_goal_kept": own["time_at_goal"] / t["time_at_goal"] if t["time_at_goal"] else float("nan")}
    return out


def _trained(row: dict) -> dict:
    """The row's result at 1x noise and the trained delay (the delay of its noise-0 column)."""
    return _at(row, 1.0, next(r["action_delay"] for r in row["results"] if r["noise_scale"] == 0.0))


def _at(row: dict, scale: float, delay: int) -> dict:
    return next(r for r in row["results"] if r["noise_scale"] == scale and r["action_delay"] == delay)
