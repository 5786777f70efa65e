"""Before training: the device memory a run needs, whether it fits, and how long it would take.

Memory comes from XLA itself: the training step is lowered with abstract inputs
(``Trainer.abstract_state``, built by ``jax.eval_shape``), so nothing big is allocated, and
compiled; ``memory_analysis()`` gives its arguments (the whole train state: parameters, optimiser
states, replay buffer, environments), outputs, donated aliases and temporaries. The scan over
residual blocks keeps compile time flat in depth, so even a depth-1,024 plan compiles in seconds.

``train-teacher`` refuses a run that does not fit before it trains (``ConfigError``: one line,
exit code 2), and one whose ``--total-env-steps`` cannot reach its first epoch; ``--dry-run`` prints
the plan and exits.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Optional

import jax

from deepdistill.teacher.config import ConfigError, TeacherConfig

from deepdistill.core.memory import GIB, device_memory, fmt_bytes, tree_bytes  # noqa: F401 - re-exported

# Env steps per second of whole training epochs (collection + SGD at the given env steps per SGD
# step, evaluation excluded), measured with train-teacher's own driver. Only an exact match of every
# key is used: other combinations get "no measured rate".
MEASURED_RATES: tuple[dict, ...] = tuple(
    dict(device="NVIDIA H200", env=env, actor_depth=d, critic_depth=d, width=256, batch_size=256, num_envs=512,
         env_steps_per_sgd_step=40.0, matmul_dtype="float32", block_unroll=1, full_unroll_max_depth=0,
         xla_gpu_flags="off", env_steps_per_s=rate,
         source="BENCHMARKS.md 'Deep teachers on a GPU' (benchmarks/teacher_depth_gpu.py, 2026-11-26, jax 0.11.2)")
    for env, d, rate in (("ant_big_maze", 64, 4_648), ("ant_big_maze", 4, 60_703), ("ant", 4, 66_962))
)


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Bytes of one compiled program (per device), from XLA's ``memory_analysis()``."""

    program: str  # "epoch" or "sgd step"
    state_bytes: int  # the train state (exact, from its abstract shapes)
    argument_bytes: int
    output_bytes: int
    alias_bytes: int  # outputs written into donated arguments
    temp_bytes: int
    code_bytes: int
    compile_s: float

    @property
    def total_bytes(self) -> int:
        return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes + self.code_bytes


def state_bytes(trainer) -> int:
    """Per-device bytes of the train state (sharded leaves count their shard)."""
    return tree_bytes(trainer.abstract_state)


def memory_plan(trainer, program: str = "epoch") -> MemoryPlan:
    """Compile ``program`` (the whole ``epoch``, or one donated ``sgd step``) from abstract inputs."""
    t = time.perf_counter()
    if program == "epoch":
        compiled = trainer.epoch.lower(trainer.abstract_state).compile()
    else:
        key = jax.eval_shape(lambda: jax.random.PRNGKey(0))
        compiled = jax.jit(trainer._sgd_step, in_shardings=(trainer.shardings, None), donate_argnums=0) \
            .lower(trainer.abstract_state, key).compile()
    compile_s = time.perf_counter() - t
    m = compiled.memory_analysis()
    if isinstance(m, (list, tuple)):
        m = m[0]
    return MemoryPlan(program, state_bytes(trainer), int(m.argument_size_in_bytes), int(m.output_size_in_bytes),
                      int(m.alias_size_in_bytes), int(m.temp_size_in_bytes), int(m.generated_code_size_in_bytes), compile_s)


def check_fits(plan: MemoryPlan, limit: int, source: str) -> None:
    """Raise ``ConfigError`` (one line) when ``plan`` needs more than ``limit`` bytes."""
    need = plan.total_bytes
    if need > limit:
        raise ConfigError(
            f"this run needs {fmt_bytes(need)} of device memory ({plan.program}: train state "
            f"{fmt_bytes(plan.state_bytes)}, temporaries {fmt_bytes(plan.temp_bytes)}) but the device has "
            f"{fmt_bytes(limit)} ({source}); lower --batch-size, --replay-steps-per-env or --num-envs, or pass --remat"
        )


def check_state_fits(trainer, limit: int, source: str) -> None:
    """The cheap check, before anything compiles: the train state alone must fit."""
    need = state_bytes(trainer)
    if need > limit:
        raise ConfigError(
            f"this run's train state alone needs {fmt_bytes(need)} of device memory (replay buffer, parameters, "
            f"optimiser, environments) but the device has {fmt_bytes(limit)} ({source}); lower "
            f"--replay-steps-per-env or --num-envs"
        )


def check_budget(trainer) -> None:
    """Refuse (``ConfigError``) a ``--total-env-steps`` that the replay's prefill alone would use up: such
    a run would take no SGD step, save no checkpoint and still exit 0."""
    cfg, s = trainer.cfg, trainer.sched
    if cfg.total_env_steps >= s.min_env_steps:
        return
    raise ConfigError(
        f"--total-env-steps {cfg.total_env_steps:,} is below the minimum of this config, {s.min_env_steps:,}: filling the "
        f"replay with random actions takes {s.prefill_env_steps:,} env steps (--min-replay-steps {cfg.min_replay_steps} "
        f"in unrolls of {s.unroll_length}, x {s.num_envs} envs) and the first epoch, with the first SGD steps, "
        f"evaluation and checkpoint, {s.env_steps_per_epoch:,} more (--eval-every); pass --total-env-steps "
        f"{s.min_env_steps:,} or more, or lower --eval-every or --num-envs")


def check_device_memory(trainer, override_gib: Optional[float] = None) -> None:
    """Refuse (``ConfigError``) a run that cannot fit: the train state alone, then one compiled SGD
    step (the epoch's collection adds little; ``--dry-run`` compiles the whole epoch)."""
    limit, source = device_memory(override_gib)
    check_state_fits(trainer, limit, source)
    if override_gib is None and jax.devices()[0].platform == "cpu":
        return  # the host's RAM: XLA's CPU temporaries are small beside it, skip the extra compile
    check_fits(memory_plan(trainer, "sgd step"), limit, source)


def measured_rate(cfg: TeacherConfig, device_kind: str) -> Optional[dict]:
    """The entry of ``MEASURED_RATES`` matching this config on this device exactly, if any."""
    have = dict(device=device_kind, env=cfg.env, actor_depth=cfg.actor_depth_, critic_depth=cfg.critic_depth_,
                width=cfg.width, batch_size=cfg.batch_size, num_envs=cfg.num_envs,
                env_steps_per_sgd_step=float(cfg.env_steps_per_sgd_step), matmul_dtype=cfg.matmul_dtype,
                block_unroll=cfg.block_unroll, full_unroll_max_depth=cfg.full_unroll_max_depth,
                xla_gpu_flags=cfg.xla_gpu_flags)
    if cfg.arch != "residual" or cfg.actor_width_ != cfg.width or cfg.critic_width_ != cfg.width:
        return None
    for r in MEASURED_RATES:
        if all(r[k] == v for k, v in have.items()):
            return r
    return None


def estimate_hours(cfg: TeacherConfig, device_kind: str) -> str:
    r = measured_rate(cfg, device_kind)
    if r is None:
        return f"no measured rate for this configuration on {device_kind} (teacher/plan.py MEASURED_RATES)"
    h = cfg.total_env_steps / r["env_steps_per_s"] / 3600
    return (f"{h:.1f} h for {cfg.total_env_steps:,} env steps at {r['env_steps_per_s']:,} env steps/s "
            f"(measured: {r['source']}; evaluation not included)")


def dry_run(cfg: TeacherConfig) -> str:
    """The resolved config, the compiled epoch's device memory and the estimated hours, as text.
    Nothing is trained and no run directory is created; raises ``ConfigError`` when it cannot fit."""
    from deepdistill.envs import make_env
    from deepdistill.teacher.train import Trainer

    cfg.validate()
    trainer = Trainer(cfg, make_env(cfg.env, training=True, episode_length=cfg.episode_length))
    check_budget(trainer)
    limit, source = device_memory(cfg.device_memory_gib)
    dev = jax.devices()[0]
    lines = ["resolved config:", json.dumps(cfg.to_dict(), indent=1)]
    params = trainer.nets.num_params()
    lines.append(f"parameters: {', '.join(f'{k} {v:,}' for k, v in params.items())} ({sum(params.values()):,} in all)")
    s = trainer.sched
    lines.append(f"schedule: {s.num_envs} envs x {s.unroll_length} steps per collection, {s.sgd_per_iter} SGD steps of "
                 f"batch {cfg.batch_size} each, {s.iters_per_epoch} collections per epoch ({s.env_steps_per_epoch:,} env steps); "
                 f"replay prefill {s.prefill_env_steps:,} env steps; smallest --total-env-steps {s.min_env_steps:,}")
    lines.append(f"device: {dev.device_kind} ({dev.platform}), {len(jax.devices())} device(s); "
                 f"XLA_FLAGS {os.environ.get('XLA_FLAGS', '') or '(none)'}")
    lines.append(f"estimated time: {estimate_hours(cfg, dev.device_kind)}")
    if state_bytes(trainer) > limit:  # do not compile what cannot fit anyway
        print("\n".join(lines), flush=True)
        check_state_fits(trainer, limit, source)
    plan = memory_plan(trainer, "epoch")
    lines.append(
        f"device memory of the compiled epoch: {fmt_bytes(plan.total_bytes)} per device (train state "
        f"{fmt_bytes(plan.state_bytes)}, temporaries {fmt_bytes(plan.temp_bytes)}; XLA memory_analysis, "
        f"compiled in {plan.compile_s:.1f} s) of {fmt_bytes(limit)} ({source}): "
        f"{'fits' if plan.total_bytes <= limit else 'does NOT fit'}")
    report = "\n".join(lines)
    if plan.total_bytes > limit:
        print(report, flush=True)
        check_fits(plan, limit, source)
    return report
