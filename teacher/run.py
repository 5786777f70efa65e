"""The ``train-teacher`` driver: run directory, resume, the epoch loop, evaluation, checkpoints."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import jax
import numpy as np

from deepdistill._cli import Progress
from deepdistill.teacher.checkpoint import (
    Checkpointer,
    MetricsLog,
    RunError,
    read_json,
    resolve_run_config,
    write_json_atomic,
    write_run_info,
)
from deepdistill.teacher.config import ConfigError, TeacherConfig
from deepdistill.teacher.envs import EnvSpec, make_env
from deepdistill.teacher.rollout import make_evaluator
from deepdistill.teacher.train import Trainer, TrainState, host_metrics

# Flags that may differ from the saved config when resuming (budgets and logging, not the recipe).
RESUME_OVERRIDABLE = ("total_env_steps", "max_wall_s", "progress", "tensorboard", "max_to_keep")


def resolve_config(cfg: TeacherConfig) -> TeacherConfig:
    """Validate ``cfg``; on ``--resume`` merge it with the run's saved config."""
    return resolve_run_config(cfg, "teacher", RESUME_OVERRIDABLE)


def _saved_state(ts: TrainState, cfg: TeacherConfig):
    return ts if cfg.save_buffer else ts.replace(replay=None)


def train_teacher(cfg: TeacherConfig, devices=None) -> dict:
    """Train (or resume) a teacher; returns the last evaluation. See ``TeacherConfig`` for options."""
    cfg = resolve_config(cfg)
    if cfg.distributed:
        jax.distributed.initialize()
    env = make_env(cfg.env, training=True, episode_length=cfg.episode_length)
    eval_env = make_env(cfg.env, episode_length=cfg.episode_length)
    trainer = Trainer(cfg, env, devices)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if not cfg.resume:
        write_json_atomic(out / "config.json", cfg.to_dict())
        write_json_atomic(out / "env_spec.json", env.spec.to_dict())
        write_json_atomic(out / "networks.json", trainer.nets.to_dict())
        write_run_info(out, "teacher", env=cfg.env, params=trainer.nets.num_params())
    else:
        if EnvSpec.from_dict(read_json(out / "env_spec.json")) != env.spec:
            raise RunError(f"--out {out}: the saved env spec differs from the task {cfg.env!r} of this version; cannot resume")
    write_json_atomic(out / "config.json", cfg.to_dict())  # budgets may have been extended

    ckpt = Checkpointer(out, cfg.max_to_keep)
    log = MetricsLog(out / "metrics.jsonl")
    evaluate = make_evaluator(eval_env, trainer.policy, cfg.num_eval_episodes)
    tb = _tensorboard(out) if cfg.tensorboard else None

    wall0, resumed = 0.0, False
    ts: Optional[TrainState] = None
    if cfg.resume:
        target = trainer.abstract_state if cfg.save_buffer else _saved_state(trainer.abstract_state, cfg)
        restored = ckpt.restore_latest(target)
        if restored is not None:
            step, state, meta = restored
            if not cfg.save_buffer:
                fresh = trainer.init(jax.random.PRNGKey(cfg.seed))
                state = state.replace(replay=fresh.replay)
            ts, wall0, resumed = state, float(meta["wall_s"]), True
            log.truncate_after("env_steps", meta["env_steps"])
    if ts is None:
        ts = trainer.init(jax.random.PRNGKey(cfg.seed))
        log.truncate_after("env_steps", -1)

    t_start = time.perf_counter() - wall0
    progress = Progress(f"teacher {cfg.env} d{cfg.depth}", cfg.total_env_steps, "env steps", cfg.progress)
    last: dict = {}
    with progress.running():
        if int(ts.replay.written) == 0:  # fresh run, or resumed without a saved buffer
            ts = trainer.prefill(ts)
        if resumed:
            progress.log(f"resumed {out} at {ts.env_steps:,} env steps")
        else:
            last = _evaluate_and_log(ts, trainer, evaluate, log, tb, t_start, {}, 0.0)
        progress.update(ts.env_steps, info=_info(last))
        while ts.env_steps < cfg.total_env_steps:
            if cfg.max_wall_s is not None and time.perf_counter() - t_start >= cfg.max_wall_s:
                progress.log(f"wall-time budget of {cfg.max_wall_s:.0f} s reached")
                break
            t0, steps0 = time.perf_counter(), ts.env_steps
            ts, metrics = trainer.epoch(ts)
            metrics = host_metrics(metrics)
            sps = (ts.env_steps - steps0) / (time.perf_counter() - t0)
            last = _evaluate_and_log(ts, trainer, evaluate, log, tb, t_start, metrics, sps)
            params = {"actor": ts.actor, **ts.critic}
            meta = {"env_steps": ts.env_steps, "wall_s": last["wall_s"], "eval": last}
            ckpt.save(ts.env_steps, _saved_state(ts, cfg), params, meta)
            progress.update(ts.env_steps, sps, _info(last))
    ckpt.close()
    if tb is not None:
        tb.close()
    return last


def _info(m: dict) -> str:
    if not m:
        return ""
    s = f"success {m['success_rate']:.2f}"
    if "hard/success_rate" in m:
        s += f" hard {m['hard/success_rate']:.2f}"
    return s


def _evaluate_and_log(ts, trainer, evaluate, log, tb, t_start, metrics, sps) -> dict:
    record = {
        "env_steps": ts.env_steps,
        "sgd_steps": int(ts.sgd_steps),
        **evaluate(ts.actor),
        **{f"train/{k}": v for k, v in metrics.items()},
    }
    if sps:
        record["env_steps_per_s"] = sps
    record["wall_s"] = time.perf_counter() - t_start
    log.append(record)
    if tb is not None:
        for k, v in record.items():
            if k != "env_steps" and np.isscalar(v):
                tb.add_scalar(k, v, record["env_steps"])
    return record


def _tensorboard(out: Path):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs tensorboardX: pip install 'deepdistill[tensorboard]'") from None
    return SummaryWriter(str(out / "tb"))
