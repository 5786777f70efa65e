"""``train-teacher`` as a stage of the shared run loop (:mod:`deepdistill.core.runner`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import jax

from deepdistill.core import distributed
from deepdistill.core.errors import RunError
from deepdistill.core.rollout import make_evaluator
from deepdistill.core.rundir import check_writable_dir, read_json, resolve_run_config
from deepdistill.core.runner import Stage, run_stage
from deepdistill.teacher.config import TeacherConfig
from deepdistill.envs import EnvSpec, make_env
from deepdistill.teacher.plan import check_budget, check_device_memory
from deepdistill.teacher.train import Trainer, TrainState
from deepdistill.teacher.xla_flags import apply_xla_gpu_flags

# Flags that may differ from the saved config when resuming (budgets and logging, not the recipe).
RESUME_OVERRIDABLE = ("total_env_steps", "max_wall_s", "progress", "tensorboard", "max_to_keep", "xla_gpu_flags",
                      "device_memory_gib", "dry_run")


def resolve_config(cfg: TeacherConfig) -> TeacherConfig:
    """Validate ``cfg``; on ``--resume`` merge it with the run's saved config."""
    return resolve_run_config(cfg, "teacher", RESUME_OVERRIDABLE)


class TeacherStage(Stage):
    kind, position_key, unit = "teacher", "env_steps", "env steps"
    command = "train-teacher"

    def __init__(self, cfg: TeacherConfig, devices=None):
        super().__init__(cfg)
        self.env = make_env(cfg.env, training=True, episode_length=cfg.episode_length)
        self.trainer = Trainer(cfg, self.env, devices)
        eval_env = make_env(cfg.env, episode_length=cfg.episode_length)
        self.evaluate = make_evaluator(eval_env, self.trainer.policy, cfg.num_eval_episodes)
        self.total = cfg.total_env_steps
        self.description = f"teacher {cfg.env} {'' if cfg.arch == 'residual' else cfg.arch + ' '}d{cfg.depth}"

    def run_files(self) -> dict[str, Any]:
        return {"env_spec.json": self.env.spec.to_dict(), "networks.json": self.trainer.nets.to_dict()}

    def run_info(self) -> dict[str, Any]:
        return {"env": self.cfg.env, "params": self.trainer.nets.num_params()}

    def check_resumable(self, out: Path) -> None:
        if (out / "env_spec.json").is_file() and EnvSpec.from_dict(read_json(out / "env_spec.json")) != self.env.spec:
            raise RunError(f"--out {out}: the saved env spec differs from the task {self.cfg.env!r} of this version; cannot resume")

    def init(self) -> TrainState:
        return self.trainer.prefill(self.trainer.init(jax.random.PRNGKey(self.cfg.seed)))

    def restore_target(self) -> Any:
        return self.trainer.abstract_state if self.cfg.save_buffer else self.trainer.abstract_state.replace(replay=None)

    def after_restore(self, saved: TrainState) -> TrainState:
        if self.cfg.save_buffer:
            return saved
        fresh = self.trainer.init(jax.random.PRNGKey(self.cfg.seed))  # refill the replay, keep the rest
        return self.trainer.prefill(saved.replace(replay=fresh.replay))

    def position(self, ts: TrainState) -> int:
        return ts.env_steps

    def to_save(self, ts: TrainState) -> tuple[Any, Any]:
        return (ts if self.cfg.save_buffer else ts.replace(replay=None)), {"actor": ts.actor, **ts.critic}

    def epoch(self, ts: TrainState) -> tuple[TrainState, dict]:
        return self.trainer.epoch(ts)

    def record(self, ts: TrainState, metrics: dict) -> dict:
        return {"sgd_steps": int(ts.sgd_steps), **self.evaluate(ts.actor), **{f"train/{k}": v for k, v in metrics.items()}}

    def first_record(self, ts: TrainState) -> Optional[dict]:
        return self.record(ts, {})

    def progress_info(self, m: dict) -> str:
        if "success_rate" not in m:
            return ""
        s = f"success {m['success_rate']:.2f}"
        if "hard/success_rate" in m:
            s += f" hard {m['hard/success_rate']:.2f}"
        return s


def train_teacher(cfg: TeacherConfig, devices=None) -> dict:
    """Train (or resume) a teacher; returns the last evaluation. See ``TeacherConfig`` for options."""
    cfg = resolve_config(cfg)  # reads files only (the process set always follows the command line)
    check_writable_dir(cfg.out, "--out")
    apply_xla_gpu_flags(cfg.xla_gpu_flags)  # before JAX starts its backend (GPU only)
    distributed.initialize(cfg)  # before any JAX computation
    stage = TeacherStage(cfg, devices)
    check_budget(stage.trainer)  # refuse before anything is written
    check_device_memory(stage.trainer, cfg.device_memory_gib)
    return run_stage(stage)
