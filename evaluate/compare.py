"""Compare a teacher with its students (JAX and ONNX) on the same goals and seeds.

``compare`` returns the report as a dict; ``write_report`` writes ``report.json``, ``report.md`` and
PNG plots (success against parameters and latency, trajectories toward the same goals), and for the
Brax tasks one page of brax's HTML viewer per policy (the same episode: same start, same goal).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from deepdistill.evaluate import viewer as V
from deepdistill.evaluate.metrics import action_agreement, linear_cka, pearson
from deepdistill.student.policy import PolicyRun
from deepdistill.student.interface import ArchitectureError, is_recurrent, networks_from_dict
from deepdistill.envs import GoalEnv, make_env
from deepdistill.core.heads import pairwise_energy
from deepdistill.core.rollout import (host_rollout, make_episode_evaluator, make_host_evaluator, rollout, split_key,
                                     summarize_splits)
from deepdistill.evaluate import dividend as D


def _percentiles_us(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1e6
    return {"latency_us_p50": float(np.percentile(a, 50)), "latency_us_p99": float(np.percentile(a, 99))}


def time_calls(fn: Callable[[], object], n: int) -> dict[str, float]:
    for _ in range(10):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return _percentiles_us(times)


def jax_latency(run: PolicyRun, n: int) -> dict[str, float]:
    """Batch-1 latency of the jitted deterministic action (result fetched to the host); a recurrent
    student's one step, its hidden state in and out."""
    s = jnp.zeros((1, run.nets.state_size))
    g = jnp.zeros((1, run.spec.goal_size))
    actor = run.params["actor"]
    if is_recurrent(run.nets):
        f = jax.jit(lambda p, h, s, g: run.nets.step(p, h, s, g))
        h = run.nets.initial_carry(1)
        return time_calls(lambda: np.asarray(f(actor, h, s, g)[0][0]), n)
    f = jax.jit(lambda p, s, g: run.nets.deterministic_action(p, s, g))
    return time_calls(lambda: np.asarray(f(actor, s, g)), n)


def policy_summary(name: str, kind: str, run: PolicyRun, evaluation: dict, latency: dict,
                   observation: Optional[dict] = None) -> dict:
    return {
        "name": name,
        "kind": kind,
        "run": str(run.run_dir),
        "step": int(run.step),
        **({"skipped_steps": list(run.skipped)} if run.skipped else {}),
        **run.nets.describe(),
        "params": int(sum(run.num_params().values())),
        "actor_params": int(run.num_params()["actor"]),
        "flops_per_action": int(run.nets.flops_per_action()),
        **(observation or {}),
        **evaluation,
        **latency,
    }


def agreement(teacher: PolicyRun, student: PolicyRun, states: np.ndarray, goals: np.ndarray, seed: int) -> dict:
    """Action, representation and critic agreement of a student with the teacher on the same inputs.

    ``states [N, S]``, ``goals [N, G]``: states the teacher visited and the goals it was heading to.
    Representations use the teacher's action at each state; the logit matrices pair each
    state-action with every goal of a 256-sample subset.
    """
    tp, sp = teacher.params, student.params
    s, g = jnp.asarray(states), jnp.asarray(goals)
    a_t = teacher.nets.deterministic_action(tp["actor"], s, g)
    a_s = student.nets.deterministic_action(sp["actor"], s, g)
    act = action_agreement(np.asarray(a_s), np.asarray(a_t))
    out = {"action_mse": act["mse"], "action_cosine": act["cosine"], "num_states": int(len(states))}
    if not (teacher.nets.has_encoders and student.nets.has_encoders):
        return out  # a policy-only student: action agreement alone
    phi_t, phi_s = teacher.nets.phi(tp["sa_encoder"], s, a_t), student.nets.phi(sp["sa_encoder"], s, a_t)
    psi_t, psi_s = teacher.nets.psi(tp["goal_encoder"], g), student.nets.psi(sp["goal_encoder"], g)
    idx = np.random.default_rng(seed).permutation(len(states))[:256]
    energy = teacher.config.get("energy", "l2")
    lt = pairwise_energy(phi_t[idx], psi_t[idx], energy)
    ls = pairwise_energy(phi_s[idx], psi_s[idx], energy)
    return {
        **out,
        "cka_phi": linear_cka(np.asarray(phi_s), np.asarray(phi_t)),
        "cka_psi": linear_cka(np.asarray(psi_s), np.asarray(psi_t)),
        "logits_pearson": pearson(np.asarray(ls), np.asarray(lt)),
    }


def compare(
    teacher: PolicyRun,
    students: Sequence[PolicyRun],
    onnx_policies: Sequence[tuple[str, object]] = (),
    episodes: int = 256,
    seed: int = 12345,
    latency_samples: int = 300,
    env: Optional[GoalEnv] = None,
    viewer: bool = True,
    native: bool = True,
    progress: Optional[Callable[[str, int], None]] = None,
    directs: Sequence[PolicyRun] = (),
) -> dict:
    """Evaluate every policy on identical episodes; returns the report (see ``write_report``).

    ``directs``: runs of a student's network trained directly with contrastive RL (``train-teacher
    --arch/--depth/--width`` of the student, the teacher's recipe): ``report["dividend"]`` pairs each
    student with the direct run of its network, episode by episode (:mod:`deepdistill.evaluate.dividend`).

    ``onnx_policies``: ``(name, policy)`` pairs, ``policy.act(state [B, S], goal [B, G]) -> [B, A]``.
    ``viewer``: on a Brax task, also replay the first trajectory episode of every policy for brax's
    HTML viewer (``report["viewer"]`` lists the pages). ``native``: on a MuJoCo task, also run every ONNX
    policy in native MuJoCo (``report["native_mujoco"]``). Every report has a random-action row.
    ``progress(row name, episodes)`` is told every chunk of episodes evaluated (:func:`evaluation_rows`
    counts the rows).
    """
    from deepdistill.evaluate import sensors as SE
    from deepdistill.evaluate.native import native_controller, native_row, random_row

    env = env or make_env(teacher.spec.name, episode_length=teacher.config.get("episode_length"))

    def tick(name: str) -> Optional[Callable[[int], None]]:
        return (lambda n: progress(name, n)) if progress else None
    S = env.spec.state_size
    entries: list[dict] = []
    trajectories: dict[str, dict] = {}
    host_policies: list[tuple] = []  # (name, act(state [1, S], goal [1, G])[, env, reset]) for the viewer
    split = "hard" if "hard" in env.spec.eval_splits else env.spec.eval_splits[-1]
    split_index = env.spec.eval_splits.index(split)
    per_episode: dict[str, dict] = {}  # name -> {split: episode_metrics}: the same episodes for every policy
    runs = [("teacher", teacher), *(("student", s) for s in students), *(("direct", d) for d in directs)]
    for kind, run in runs:
        name = {"teacher": "teacher", "student": f"student:{Path(run.run_dir).name}", "direct": f"direct:{run_label(run)}"}[kind]
        # a student with sensors runs as deployed: its frames (noise-free), its trained delay, its memory
        run_env, fn = SE.jax_eval(env, run)
        per_episode[name] = make_episode_evaluator(run_env, fn, episodes, seed, tick(name))({"actor": run.params["actor"]})
        observes = SE.observation_fields(SE.observation_of(run, env), is_recurrent(run.nets))
        entry = policy_summary(name, kind, run, summarize_splits(per_episode[name]), jax_latency(run, latency_samples),
                               observes)
        if kind != "student":  # train-teacher runs: their checkpoint step counts env steps
            entry["env_steps"] = int(run.step)
        entries.append(entry)
        traj = jax.jit(lambda p, k, fn=fn, e=run_env: rollout(e, fn, p, k, min(episodes, 8), split))(
            {"actor": run.params["actor"]}, split_key(seed, split_index))
        trajectories[name] = {"states": np.asarray(traj["states"])[..., :S], "goals": np.asarray(traj["goals"])}
        if SE.sensed(run):
            host_policies.append((name, host_act(run, fn), run_env, None))
        else:
            host_policies.append((name, host_act(run)))
    for name, pol in onnx_policies:
        pol_env, act, reset = SE.onnx_eval(env, pol)
        ev = make_host_evaluator(pol_env, episodes, seed, tick(name))(act, reset)
        s1 = np.zeros((1, getattr(pol, "frame_size", S)), np.float32)
        g1 = np.zeros((1, env.spec.goal_size), np.float32)
        if reset is not None:
            reset()
        lat = time_calls(lambda: pol.act(s1, g1), latency_samples)
        meta = getattr(pol, "metadata", {}) or {}
        entry = {"name": name, "kind": "onnx", **ev, **lat}
        if meta.get("observation_model"):
            from deepdistill.envs.observation import ObservationModel

            entry.update(SE.observation_fields(ObservationModel.from_dict(meta["observation_model"]),
                                               bool(meta.get("recurrent"))))
        src = exported_from(meta, students, entries)
        if src is not None:  # the student this file was exported from: its sizes and costs
            entry.update({k: v for k, v in src.items() if k not in entry and k != "run"})
        entries.append(entry)
        traj = host_rollout(pol_env, act, split_key(seed, split_index), min(episodes, 8), split, reset=reset)
        trajectories[name] = {"states": traj["states"][..., :S], "goals": traj["goals"]}
        host_policies.append((name, act, pol_env, reset))
        ctl = native_controller(env, pol) if native else None
        if ctl is not None:  # the same policy file in native MuJoCo, from the same starts and goals
            from deepdistill.evaluate.native import jax_starts

            row = native_row(env, ctl, episodes, seed, tick(f"native:{name.split(':', 1)[-1]}"))
            keep = {k: entry[k] for k in ("arch", "actor_depth", "actor_width", "params", "actor_params",
                                          "flops_per_action", "observation_terms", "history", "history_actions",
                                          "action_delay", "obs_noise", "recurrent", "observes") if k in entry}
            entries.append({"name": f"native:{name.split(':', 1)[-1]}", "kind": "native", "onnx": name, **keep, **row})
            _, starts = jax_starts(env, split_key(seed, split_index), min(episodes, 8), split)
            res = ctl.rollout(starts)
            trajectories[entries[-1]["name"]] = {"states": res["observations"], "goals": res["goals"]}
    row, per_episode["random"] = random_row(env, episodes, seed, tick("random"))
    entries.append(row)

    # agreement on the states the teacher visits (random split) toward its goals; students with sensors
    # see other inputs there (their agreement is the robustness table's teacher row against theirs)
    res = jax.jit(lambda p: rollout(env, lambda p, s, g: teacher.nets.deterministic_action(p, s, g), p,
                                    split_key(seed, 0), min(episodes, 64), env.spec.eval_splits[0]))(teacher.params["actor"])
    T = env.spec.episode_length
    states = np.asarray(res["states"][:T]).reshape(-1, env.spec.state_size)
    goals = np.repeat(np.asarray(res["goals"])[None], T, axis=0).reshape(-1, env.spec.goal_size)
    agreements = {f"student:{Path(s.run_dir).name}": agreement(teacher, s, states, goals, seed) for s in students
                  if not SE.sensed(s)}
    robust = SE.robustness(teacher, students, env, episodes, seed, [f"student:{Path(s.run_dir).name}" for s in students])

    students_e = [e for e in entries if e["kind"] == "student"]
    directs_e = [e for e in entries if e["kind"] == "direct"]
    onnx_e = [e for e in entries if e["kind"] == "onnx"]
    native_e = [e for e in entries if e["kind"] == "native"]
    report = {
        "env": env.spec.name,
        "eval_splits": list(env.spec.eval_splits),
        "episodes": episodes,
        "seed": seed,
        "teacher": entries[0],
        "student": students_e[0] if students_e else None,
        "students": students_e,
        "direct": directs_e[0] if directs_e else None,
        "directs": directs_e,
        "dividend": dividends(students, directs, per_episode),
        "onnx": onnx_e[0] if onnx_e else None,
        "onnx_all": onnx_e,
        "native_mujoco": {e["onnx"]: {k: v for k, v in e.items() if k not in ("name", "kind", "onnx")} for e in native_e},
        "native_all": native_e,
        "random": next(e for e in entries if e["kind"] == "random"),
        "agreement": agreements,
        "per_episode": {name: {split: {m: np.asarray(v).tolist() for m, v in res.items() if m in D.METRICS}
                               for split, res in splits.items()} for name, splits in per_episode.items()},
        "robustness": robust,
        "sensor_students": SE.keeps(robust) if robust else {},
        "machine": _machine(),
    }
    report["_trajectories"] = trajectories  # dropped from report.json; used for the plot
    if viewer and V.is_brax_task(env):
        # the first episode of the trajectory plot, replayed by every policy
        report["viewer"], report["_viewer"] = V.pages(
            env, host_policies, split_key(seed, split_index), min(episodes, 8), split)
    return report


def evaluation_rows(env: GoalEnv, students: int, onnx_policies: Sequence[tuple[str, object]], native: bool = True,
                    directs: int = 0) -> int:
    """Rows of the comparison that evaluate ``episodes`` per split: the teacher, each student, each direct
    run, each ONNX policy (and its native MuJoCo row, where it has one), random actions."""
    natives = sum(bool(native and getattr(env, "native", False) and ((getattr(p, "metadata", None) or {})
                                                                     .get("controller") or {}).get("native"))
                  for _, p in onnx_policies)
    return 1 + students + directs + len(onnx_policies) + natives + 1


def dividends(students: Sequence[PolicyRun], directs: Sequence[PolicyRun], per_episode: dict) -> list[dict]:
    """One entry per student: its dividend over the direct run of the same network, or why there is none
    (no direct run of its network; it observes something else than the teacher)."""
    out = []
    for s in students:
        name = f"student:{Path(s.run_dir).name}"
        reason = D.observation_difference(s)
        match = next((d for d in directs if D.same_network(d.nets, s.nets)), None)
        if reason is None and match is None:
            reason = "no direct run of its network was given (pipeline without --no-direct, or evaluate --direct)"
        if reason is not None:
            out.append({"student": name, "direct": None if match is None else f"direct:{run_label(match)}",
                        "skipped": reason})
            continue
        dname = f"direct:{run_label(match)}"
        splits = D.dividend(per_episode[name], per_episode[dname])
        out.append({"student": name, "direct": dname, "splits": splits, "verdict": D.verdict(splits),
                    "direct_env_steps": int(match.step)})
    return out


def run_label(run: PolicyRun) -> str:
    """A run's name in a report: its folder's name, with the parent's for a folder named ``teacher`` (a
    direct baseline can be another pipeline teacher's run, e.g. ``t4/teacher``)."""
    path = Path(run.run_dir)
    return f"{path.parent.name}/{path.name}" if path.name == "teacher" else path.name


def exported_from(meta: dict, students: Sequence[PolicyRun], entries: list[dict]) -> Optional[dict]:
    """The report entry of the student whose networks an ONNX file's metadata records, if any."""
    arch = meta.get("architecture") or {}
    recorded = arch.get("networks") or arch.get("crl_networks")  # crl_networks: files written before 0.2
    try:
        networks = networks_from_dict(recorded) if recorded else None  # fields added since take their defaults
    except (KeyError, TypeError, ArchitectureError):  # not one of these students: no match
        return None
    by_name = {e["name"]: e for e in entries}
    for s in students:
        if networks is not None and s.nets == networks:
            return by_name.get(f"student:{Path(s.run_dir).name}")
    return None


def host_act(run: PolicyRun, policy: Optional[Callable] = None) -> Callable:
    """``act(state [B, S], goal [B, G]) -> [B, A]``: the run's jitted deterministic action, called from the host.
    ``policy``: a rollout policy of the run instead (:func:`deepdistill.evaluate.sensors.jax_eval`; a recurrent one
    keeps its hidden state between calls, from zeros at the first)."""
    params = {"actor": run.params["actor"]}
    if policy is None:
        f = jax.jit(lambda p, s, g, nets=run.nets: nets.deterministic_action(p, s, g))
        return lambda s, g: f(run.params["actor"], s, g)
    from deepdistill.core.rollout import as_recurrent

    pol = as_recurrent(policy)
    step = jax.jit(pol.step)
    memory: dict = {}

    def act(s, g):
        if "carry" not in memory:
            memory["carry"] = pol.init(params, len(s))
        a, memory["carry"] = step(params, memory["carry"], s, g)
        return a

    return act


def _machine() -> dict:
    import platform

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "jax_backend": jax.default_backend(), "devices": len(jax.devices())}

