"""The ``distill`` driver: load the frozen teacher, distill, evaluate both on the same goals, save."""

from __future__ import annotations

import time
from pathlib import Path

import jax

from deepdistill._cli import Progress
from deepdistill.distill.config import DistillConfig
from deepdistill.distill.train import Distiller
from deepdistill.student.networks import make_student
from deepdistill.teacher.checkpoint import (
    Checkpointer,
    MetricsLog,
    PolicyRun,
    RunError,
    load_teacher,
    read_json,
    resolve_run_config,
    write_json_atomic,
    write_run_info,
)
from deepdistill.teacher.config import ConfigError, TeacherConfig
from deepdistill.teacher.envs import make_env
from deepdistill.teacher.rollout import make_evaluator
from deepdistill.teacher.train import host_metrics

RESUME_OVERRIDABLE = ("progress", "max_to_keep")


def resolve_config(cfg: DistillConfig) -> DistillConfig:
    return resolve_run_config(cfg, "student", RESUME_OVERRIDABLE)


def teacher_provenance(teacher: PolicyRun) -> dict:
    n = teacher.nets
    return {
        "run": str(teacher.run_dir.absolute()),
        "step": int(teacher.step),
        "env": teacher.spec.name,
        "actor_depth": n.actor_depth,
        "actor_width": n.actor_width,
        "critic_depth": n.critic_depth,
        "critic_width": n.critic_width,
        "params": teacher.num_params(),
    }


def load_teacher_replay(teacher: PolicyRun):
    """The replay buffer saved with the teacher's newest checkpoint (``--teacher-buffer-fraction``)."""
    from deepdistill.teacher.train import Trainer

    tcfg = TeacherConfig.from_dict(teacher.config)
    if not tcfg.save_buffer:
        raise ConfigError("--teacher-buffer-fraction > 0 needs a teacher run saved with its replay buffer (--save-buffer)")
    trainer = Trainer(tcfg, make_env(tcfg.env, training=True, episode_length=tcfg.episode_length), jax.devices()[:1])
    ckpt = Checkpointer(teacher.run_dir, read_only=True)
    try:
        restored = ckpt.restore_latest(trainer.abstract_state)
    finally:
        ckpt.close()
    if restored is None:
        raise RunError(f"--teacher {teacher.run_dir}: no checkpoint with a replay buffer")
    return restored[1].replay


def distill(cfg: DistillConfig) -> dict:
    """Distill ``cfg.teacher`` into a student in ``cfg.out``; returns the final comparison."""
    cfg = resolve_config(cfg)
    out = Path(cfg.out)
    teacher_step = read_json(out / "run.json")["teacher"]["step"] if cfg.resume else None
    teacher = load_teacher(cfg.teacher, teacher_step)
    tcfg = teacher.config
    env = make_env(teacher.spec.name, training=True, episode_length=tcfg.get("episode_length"))
    eval_env = make_env(teacher.spec.name, episode_length=tcfg.get("episode_length"))
    if env.spec != teacher.spec:
        raise RunError(f"--teacher {cfg.teacher}: its env spec no longer matches the task {teacher.spec.name!r} of this version")
    try:
        student_nets = make_student(teacher.nets, cfg.depth, cfg.width, cfg.actor_depth, cfg.critic_depth,
                                    cfg.actor_width, cfg.critic_width)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    t_replay = load_teacher_replay(teacher) if cfg.teacher_buffer_fraction > 0 else None
    distiller = Distiller(cfg, env, teacher.nets, student_nets, tcfg.get("energy", "l2"), t_replay)

    out.mkdir(parents=True, exist_ok=True)
    if not cfg.resume:
        write_json_atomic(out / "env_spec.json", env.spec.to_dict())
        write_json_atomic(out / "networks.json", student_nets.to_dict())
        write_run_info(out, "student", env=env.spec.name, params=student_nets.num_params(),
                       teacher=teacher_provenance(teacher))
    write_json_atomic(out / "config.json", cfg.to_dict())

    ckpt = Checkpointer(out, cfg.max_to_keep)
    log = MetricsLog(out / "metrics.jsonl")
    evaluate = make_evaluator(eval_env, distiller.policy, cfg.num_eval_episodes)
    teacher_eval = make_evaluator(eval_env, lambda p, s, g: teacher.nets.deterministic_action(p["actor"], s, g), cfg.num_eval_episodes)

    ds, wall0 = None, 0.0
    if cfg.resume:
        abstract = jax.eval_shape(distiller._init, jax.random.PRNGKey(0))
        restored = ckpt.restore_latest(abstract)
        if restored is not None:
            _, ds, meta = restored
            wall0 = meta["wall_s"]
            log.truncate_after("sgd_steps", meta["sgd_steps"])
    if ds is None:
        log.truncate_after("sgd_steps", -1)
        ds = distiller.prefill(distiller.init(jax.random.PRNGKey(cfg.seed)), teacher.params)

    t_start = time.perf_counter() - wall0
    progress = Progress(f"distill d{student_nets.actor_depth} w{student_nets.actor_width}", cfg.steps, "SGD steps", cfg.progress)
    last: dict = {}
    with progress.running():
        progress.update(int(ds.sgd_steps))
        while int(ds.sgd_steps) < cfg.steps:
            t0, s0 = time.perf_counter(), int(ds.sgd_steps)
            ds, metrics = distiller.epoch(ds, teacher.params)
            rate = (int(ds.sgd_steps) - s0) / (time.perf_counter() - t0)
            metrics = host_metrics(metrics)
            last = {
                "sgd_steps": int(ds.sgd_steps),
                "env_steps": ds.env_steps,
                "teacher_acted_fraction": float(ds.teacher_acted) / max(ds.env_steps, 1),
                **evaluate(ds.student),
                **{f"train/{k}": v for k, v in metrics.items()},
                "sgd_steps_per_s": rate,
                "wall_s": time.perf_counter() - t_start,
            }
            log.append(last)
            ckpt.save(int(ds.sgd_steps), ds, ds.student, {"sgd_steps": int(ds.sgd_steps), "wall_s": last["wall_s"], "eval": last})
            progress.update(int(ds.sgd_steps), rate, f"student {last['success_rate']:.2f}")
    ckpt.close()
    t_eval = teacher_eval(teacher.params)
    s_eval = {k: v for k, v in last.items() if k in t_eval} if last else evaluate(ds.student)
    result = {
        "teacher": {**t_eval, "params": sum(teacher.num_params().values())},
        "student": {**s_eval, "params": sum(student_nets.num_params().values())},
        "wall_s": last.get("wall_s", time.perf_counter() - t_start),
    }
    write_json_atomic(out / "result.json", result)
    return result


def check_compatible(teacher: PolicyRun, student: PolicyRun) -> None:
    """Refuse a teacher/student pair of different tasks or observation layouts."""
    t, s = teacher.spec, student.spec
    if t.name != s.name:
        raise RunError(f"--student {student.run_dir} was distilled on task {s.name!r}, the teacher acts in {t.name!r}")
    for field in ("state_size", "goal_size", "action_size", "goal_indices"):
        if getattr(t, field) != getattr(s, field):
            raise RunError(
                f"--student {student.run_dir}: {field} {getattr(s, field)} differs from the teacher's {getattr(t, field)}"
            )
