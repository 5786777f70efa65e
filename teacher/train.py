"""Contrastive RL: the teacher's state, data step and SGD step, plugged into the shared epoch shell.

All training state lives in one pytree (``TrainState``). One jitted epoch = ``lax.scan`` over
(collect, insert, SGD steps) (:mod:`deepdistill.core.epoch`, which also shards it over devices);
Python only evaluates, logs and checkpoints between epochs (:mod:`deepdistill.core.runner`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from deepdistill.core import replay as rb
from deepdistill.core.epoch import DataParallel, collect, make_epoch, replay_capacity
from deepdistill.teacher import losses
from deepdistill.teacher.config import TeacherConfig
from deepdistill.envs import GoalEnv
from deepdistill.core.heads import sample_tanh_gaussian
from deepdistill.student.interface import Interface, PolicyNetworks, build_student
from deepdistill.student.residual import CRLNetworks


@flax.struct.dataclass
class TrainState:
    actor: Any
    critic: Any  # {"sa_encoder": ..., "goal_encoder": ...}
    log_alpha: jax.Array
    actor_opt: Any
    critic_opt: Any
    alpha_opt: Any
    replay: rb.Replay
    env_state: Any  # batched brax State, [E, ...]
    key: jax.Array
    sgd_steps: jax.Array  # int32 scalar

    @property
    def env_steps(self) -> int:
        return int(self.replay.written) * self.replay.states.shape[1]


def make_networks(cfg: TeacherConfig, spec) -> PolicyNetworks:
    """The networks of ``cfg.arch`` for the task ``spec``: the residual MLP with its speed options, or
    any other architecture through the registry (:func:`deepdistill.student.interface.build_student`)."""
    if cfg.arch != "residual":
        return build_student(cfg.arch, Interface(spec.state_size, spec.goal_size, spec.action_size, cfg.repr_dim),
                             cfg.size())
    return CRLNetworks(
        state_size=spec.state_size,
        goal_size=spec.goal_size,
        action_size=spec.action_size,
        repr_dim=cfg.repr_dim,
        actor_width=cfg.actor_width_,
        actor_depth=cfg.actor_depth_,
        critic_width=cfg.critic_width_,
        critic_depth=cfg.critic_depth_,
        remat=cfg.remat,
        block_unroll=cfg.block_unroll,
        full_unroll_max_depth=cfg.full_unroll_max_depth,
        matmul_dtype=cfg.matmul_dtype,
    )


@dataclasses.dataclass
class Schedule:
    """How the env-step budget maps onto compiled calls."""

    episode_length: int
    unroll_length: int
    num_envs: int
    iters_per_epoch: int
    sgd_per_iter: int
    capacity: int
    prefill_iters: int

    @property
    def env_steps_per_epoch(self) -> int:
        return self.iters_per_epoch * self.unroll_length * self.num_envs

    @property
    def prefill_env_steps(self) -> int:
        """Env steps of random actions that fill the replay before the first SGD step."""
        return self.prefill_iters * self.unroll_length * self.num_envs

    @property
    def min_env_steps(self) -> int:
        """The smallest ``--total-env-steps`` that trains at all: the prefill and one whole epoch (the
        first SGD steps, evaluation and checkpoint); the run counts in whole epochs beyond it."""
        return self.prefill_env_steps + self.env_steps_per_epoch

    @classmethod
    def from_config(cls, cfg: TeacherConfig, episode_length: int) -> "Schedule":
        U, E = cfg.unroll_length, cfg.num_envs
        per_iter = U * E
        sgd = max(1, round(per_iter / cfg.env_steps_per_sgd_step))
        iters = max(1, round(cfg.eval_every / per_iter))
        cap = replay_capacity(cfg.replay_steps_per_env, episode_length, cfg.min_replay_steps)
        prefill = max(1, -(-max(cfg.min_replay_steps, 2) // U))
        return cls(episode_length, U, E, iters, sgd, cap, prefill)


def learning_rate(lr: float, schedule: str, total_steps: int):
    """``constant``, or ``cosine`` decay from ``lr`` to ``lr / 10`` over the run's SGD steps (the
    budget is known up front; the decay settles the policy for the final evaluations)."""
    if schedule == "cosine":
        return optax.cosine_decay_schedule(lr, total_steps, alpha=0.1)
    return lr


class Trainer:
    """Builds the compiled functions of one configuration on a device mesh."""

    def __init__(self, cfg: TeacherConfig, env: GoalEnv, devices=None):
        self.cfg, self.env, self.spec = cfg, env, env.spec
        self.nets = make_networks(cfg, env.spec)
        self.sched = Schedule.from_config(cfg, env.spec.episode_length)
        self.parallel = DataParallel(devices)
        cfg.validate_for_env(env.spec.episode_length, self.parallel.size)
        self.mesh = self.parallel.mesh
        total_sgd = max(1, cfg.total_env_steps // (self.sched.unroll_length * cfg.num_envs) * self.sched.sgd_per_iter)
        self.actor_tx = optax.adam(learning_rate(cfg.actor_lr, cfg.lr_schedule, total_sgd))
        self.critic_tx = optax.adam(learning_rate(cfg.critic_lr, cfg.lr_schedule, total_sgd))
        self.alpha_tx = optax.adam(cfg.alpha_lr)
        self.target_entropy = cfg.target_entropy_scale * env.spec.action_size
        self.trace_count = 0  # incremented each time the epoch function is traced
        epoch = make_epoch(lambda ts, k: self._collect(ts, k, random_actions=False), self._sgd_step,
                           self.sched.iters_per_epoch, self.sched.sgd_per_iter)

        def counted_epoch(ts):
            self.trace_count += 1
            return epoch(ts)

        self.shardings, self.abstract_state, self.init, self.epoch, self.prefill = self.parallel.compile(
            self._init, counted_epoch, self._prefill)

    # --- state ----------------------------------------------------------------------------------------
    def _init(self, key: jax.Array) -> TrainState:
        k_net, k_env, k_run = jax.random.split(key, 3)
        params = self.nets.init(k_net)
        critic = {"sa_encoder": params["sa_encoder"], "goal_encoder": params["goal_encoder"]}
        log_alpha = jnp.zeros((), jnp.float32)
        env_state = jax.vmap(self.env.reset)(jax.random.split(k_env, self.cfg.num_envs))
        return TrainState(
            actor=params["actor"],
            critic=critic,
            log_alpha=log_alpha,
            actor_opt=self.actor_tx.init(params["actor"]),
            critic_opt=self.critic_tx.init(critic),
            alpha_opt=self.alpha_tx.init(log_alpha),
            replay=rb.init_replay(self.sched.capacity, self.cfg.num_envs, self.spec.state_size, self.spec.action_size),
            env_state=env_state,
            key=k_run,
            sgd_steps=jnp.zeros((), jnp.int32),
        )

    # --- data collection -------------------------------------------------------------------------------
    def _collect(self, ts: TrainState, key: jax.Array, random_actions: bool) -> TrainState:
        """``unroll_length`` steps of every env with the stochastic actor (or uniform random actions
        while prefilling); the robot states and actions go into the replay."""
        S, A = self.spec.state_size, self.spec.action_size

        def act(obs, k):
            if random_actions:
                return jax.random.uniform(k, (obs.shape[0], A), minval=-1.0, maxval=1.0), ()
            return sample_tanh_gaussian(k, *self.nets.policy(ts.actor, obs[:, :S], obs[:, S:]))[0], ()

        env_state, replay, _, _ = collect(self.env, ts.env_state, ts.replay, key, act, self.cfg.unroll_length,
                                          store=lambda obs: obs[:, :S])
        return ts.replace(env_state=env_state, replay=replay)

    def _prefill(self, ts: TrainState) -> TrainState:
        def body(ts, _):
            key, k = jax.random.split(ts.key)
            return self._collect(ts.replace(key=key), k, random_actions=True), None

        return jax.lax.scan(body, ts, None, length=self.sched.prefill_iters)[0]

    # --- learning --------------------------------------------------------------------------------------
    def _sgd_step(self, ts: TrainState, key: jax.Array) -> tuple[TrainState, dict]:
        cfg = self.cfg
        k_batch, k_actor = jax.random.split(key)
        batch = rb.sample(ts.replay, k_batch, cfg.batch_size, self.spec.episode_length, cfg.gamma, self.spec.goal_indices)

        # Actor and alpha, then critic, on the same batch (the paper's order; no target networks).
        # Neither update sees the other's result, so the critic's gradient is taken first and its goal
        # representations psi(g) are reused by the actor loss (one goal-encoder pass fewer per step).
        (_, c_metrics), c_grads = jax.value_and_grad(losses.critic_loss, has_aux=True)(
            ts.critic, self.nets, batch["state"], batch["action"], batch["future_goal"],
            cfg.energy, cfg.infonce, cfg.logsumexp_penalty,
        )
        psi = c_metrics.pop("psi")
        alpha = jnp.exp(ts.log_alpha)
        (_, a_metrics), a_grads = jax.value_and_grad(losses.actor_loss, has_aux=True)(
            ts.actor, ts.critic, self.nets, batch["state"], batch["future_goal"], alpha, k_actor, cfg.energy, psi
        )
        log_prob = a_metrics.pop("log_prob")
        al_grad = jax.grad(losses.alpha_loss)(ts.log_alpha, log_prob, self.target_entropy)
        a_upd, actor_opt = self.actor_tx.update(a_grads, ts.actor_opt, ts.actor)
        al_upd, alpha_opt = self.alpha_tx.update(al_grad, ts.alpha_opt, ts.log_alpha)
        c_upd, critic_opt = self.critic_tx.update(c_grads, ts.critic_opt, ts.critic)
        ts = ts.replace(
            actor=optax.apply_updates(ts.actor, a_upd),
            critic=optax.apply_updates(ts.critic, c_upd),
            log_alpha=optax.apply_updates(ts.log_alpha, al_upd),
            actor_opt=actor_opt,
            critic_opt=critic_opt,
            alpha_opt=alpha_opt,
            sgd_steps=ts.sgd_steps + 1,
        )
        return ts, {**a_metrics, **c_metrics, "alpha": alpha}

    # --- evaluation ------------------------------------------------------------------------------------
    def policy(self, actor_params, state, goal):
        return self.nets.deterministic_action(actor_params, state, goal)
