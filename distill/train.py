"""Distillation: the frozen teacher labels states that the teacher (or, with DAgger, the student) visits.

The distiller's state, data step and SGD step, plugged into the shared epoch shell
(:mod:`deepdistill.core.epoch`): one jitted epoch = ``lax.scan`` over (collect ``unroll_length``
steps with the beta-mixed policy, insert into a trajectory replay, ``sgd_steps_per_unroll`` student
updates), data-parallel over devices as the teacher's. The teacher's parameters are a (replicated)
argument of the compiled call, never part of the updated state, so they stay bit-identical.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.struct
import jax
import jax.numpy as jnp
import optax

from deepdistill.distill import losses as dl
from deepdistill.distill.config import DistillConfig
from deepdistill.core import replay as rb
from deepdistill.core.epoch import DataParallel, collect, make_epoch, replay_capacity
from deepdistill.core.errors import ConfigError
from deepdistill.envs import GoalEnv
from deepdistill.envs.observation import ObservationModel
from deepdistill.student.interface import PolicyNetworks
from deepdistill.core.heads import sample_tanh_gaussian


@flax.struct.dataclass
class DistillState:
    student: Any  # {"actor", "sa_encoder", "goal_encoder"}
    opt: Any
    replay: rb.Replay  # whole observations [T, E, S + G], or [T, E, S + I + G] with sensors (envs/sensors.py)
    env_state: Any
    key: jax.Array
    sgd_steps: jax.Array  # int32
    teacher_acted: jax.Array  # float32: env steps on which the teacher acted (all envs)

    @property
    def env_steps(self) -> int:
        return int(self.replay.written) * self.replay.states.shape[1]


def beta_at(cfg: DistillConfig, step: jax.Array) -> jax.Array:
    """Probability that the teacher acts after ``step`` SGD steps (1 for teacher-driven data)."""
    if cfg.data == "teacher":
        return jnp.ones(())
    p = jnp.clip(step / cfg.steps, 0.0, 1.0)
    if cfg.beta_schedule == "constant":
        return jnp.full((), cfg.beta_start)
    if cfg.beta_schedule == "linear":
        return cfg.beta_start + (cfg.beta_end - cfg.beta_start) * p
    end = max(cfg.beta_end, 0.01)
    return cfg.beta_start * (end / max(cfg.beta_start, 1e-12)) ** p


def mix_actions(key: jax.Array, beta: jax.Array, teacher_action: jax.Array, student_action: jax.Array):
    """Per environment and step, the teacher's action with probability ``beta``. ``[E, A] -> [E, A], mask [E]``."""
    mask = jax.random.bernoulli(key, beta, teacher_action.shape[:1])
    return jnp.where(mask[:, None], teacher_action, student_action), mask


class Distiller:
    def __init__(
        self,
        cfg: DistillConfig,
        env: GoalEnv,
        teacher_nets: PolicyNetworks,
        student_nets: PolicyNetworks,
        energy: str = "l2",
        teacher_replay: Optional[rb.Replay] = None,
        devices=None,
        observation: Optional[ObservationModel] = None,
    ):
        if env.spec.episode_length % cfg.unroll_length:
            raise ConfigError(f"--unroll-length {cfg.unroll_length} must divide the task's episode length {env.spec.episode_length}")
        self.parallel = DataParallel(devices)
        for name in ("num_envs", "batch_size"):
            if getattr(cfg, name) % self.parallel.size:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(cfg, name)} must be a multiple of the {self.parallel.size} devices")
        self.cfg, self.task_env = cfg, env
        # The student's sensors: its rollouts run in a SensorEnv whose rows hold the true state (the teacher's
        # input) and the student's input; without sensors both read the task's state.
        S = env.spec.state_size
        self.observation = observation
        self.sensed = observation is not None and not observation.is_identity(S)
        self.env = self.sensor_env(env)
        self.spec, self.S, self.Sx = self.env.spec, S, self.env.spec.state_size
        self.student_in = slice(S, self.Sx) if self.sensed else slice(0, S)
        self.delay = observation.action_delay if self.sensed else 0
        self.teacher, self.student, self.energy = teacher_nets, student_nets, energy
        self.weights = cfg.weights()
        self.tx = optax.adam(cfg.lr)
        self.capacity = replay_capacity(cfg.replay_steps_per_env, env.spec.episode_length, cfg.unroll_length)
        self.iters_per_epoch = max(1, round(cfg.eval_every / cfg.sgd_steps_per_unroll))
        # on every device of every process (a closed-over array of one process's device is not)
        self.teacher_replay = None if teacher_replay is None else self.parallel.replicate(teacher_replay)
        self.trace_count = 0
        epoch = make_epoch(self._collect, self._sgd_step, self.iters_per_epoch, cfg.sgd_steps_per_unroll)

        def counted_epoch(ds, teacher_params):
            self.trace_count += 1
            ds, metrics = epoch(ds, teacher_params)
            return ds, {**metrics, "beta": beta_at(self.cfg, ds.sgd_steps)}

        _, self.abstract_state, self.init, self.epoch, self.prefill = self.parallel.compile(
            self._init, counted_epoch, self._prefill, num_frozen=1)

    def sensor_env(self, env: GoalEnv):
        """``env`` as the student senses it (itself when the student sees the teacher's observation)."""
        if not self.sensed:
            return env
        from deepdistill.envs.sensors import SensorEnv

        return SensorEnv(env, self.observation)

    # --- state -----------------------------------------------------------------------------------------
    def _init(self, key: jax.Array) -> DistillState:
        k_net, k_env, k_run = jax.random.split(key, 3)
        student = self.student.init(k_net)
        return DistillState(
            student=student,
            opt=self.tx.init(student),
            replay=rb.init_replay(self.capacity, self.cfg.num_envs, self.spec.obs_size, self.spec.action_size),
            env_state=jax.vmap(self.env.reset)(jax.random.split(k_env, self.cfg.num_envs)),
            key=k_run,
            sgd_steps=jnp.zeros((), jnp.int32),
            teacher_acted=jnp.zeros((), jnp.float32),
        )

    # --- data --------------------------------------------------------------------------------------------
    def _collect(self, ds: DistillState, key: jax.Array, teacher_params) -> DistillState:
        """``unroll_length`` steps with the teacher's stochastic action (teacher-driven), or the
        beta-mix of teacher and student (DAgger); whole observations go into the replay. The teacher
        acts on the true state, the student on its own input (its sensors)."""
        S, E = self.S, self.cfg.num_envs
        beta = beta_at(self.cfg, ds.sgd_steps)

        def act(obs, k):
            k_t, k_mix = jax.random.split(k)
            state, goal = obs[:, :S], obs[:, self.Sx:]
            t_action, _ = sample_tanh_gaussian(k_t, *self.teacher.policy(teacher_params["actor"], state, goal))
            if self.cfg.data == "teacher":
                return t_action, jnp.full((E,), True).sum()
            s_action = self.student.deterministic_action(ds.student["actor"], obs[:, self.student_in], goal)
            action, mask = mix_actions(k_mix, beta, t_action, s_action)
            return action, mask.sum()

        env_state, replay, acted = collect(self.env, ds.env_state, ds.replay, key, act, self.cfg.unroll_length)
        return ds.replace(env_state=env_state, replay=replay, teacher_acted=ds.teacher_acted + acted.sum())

    def _prefill(self, ds: DistillState, teacher_params) -> DistillState:
        key, k = jax.random.split(ds.key)
        return self._collect(ds.replace(key=key), k, teacher_params)

    def sample_batch(self, ds: DistillState, key: jax.Array) -> dict[str, jax.Array]:
        """``state [B, S or I]`` (the student's input), ``teacher_state [B, S]`` (the true state the teacher
        labels: ``action_delay`` steps later, when the student's action is applied), ``goal [B, G]``
        (hindsight future state or the task's goal), ``action [B, A]`` (the one commanded)."""
        S, B = self.S, self.cfg.batch_size
        k_own, k_mix, k_tb = jax.random.split(key, 3)
        b = rb.sample(ds.replay, k_own, B, self.spec.episode_length, 1.0 - 1e-2, self.spec.goal_indices, self.delay)
        use_future = jax.random.uniform(k_mix, (B,)) < self.cfg.future_goal_fraction
        batch = {
            "state": b["state"][:, self.student_in],
            "teacher_state": (b["ahead_state"] if self.delay else b["state"])[:, :S],
            "goal": jnp.where(use_future[:, None], b["future_goal"], b["state"][:, self.Sx:]),
            "action": b["action"],
        }
        n_tb = round(self.cfg.teacher_buffer_fraction * B) if self.teacher_replay is not None else 0
        if n_tb:  # the teacher's own rollouts (refused for students with sensors: no readings of theirs there)
            tb = rb.sample(self.teacher_replay, k_tb, n_tb, self.spec.episode_length, 0.99, self.spec.goal_indices)
            tb = {"state": tb["state"], "teacher_state": tb["state"], "goal": tb["future_goal"], "action": tb["action"]}
            batch = jax.tree.map(lambda own, t: jnp.concatenate([own[: B - n_tb], t]), batch, tb)
        return batch

    # --- learning ---------------------------------------------------------------------------------------
    def teacher_outputs(self, teacher_params, batch) -> dict[str, jax.Array]:
        T = self.teacher
        mean, log_std = T.policy(teacher_params["actor"], batch["teacher_state"], batch["goal"])
        out = {"mean": mean, "log_std": log_std}
        if self.weights["repr"] or self.weights["relational"]:
            out["phi"] = T.phi(teacher_params["sa_encoder"], batch["teacher_state"], batch["action"])
            out["psi"] = T.psi(teacher_params["goal_encoder"], batch["goal"])
        return jax.lax.stop_gradient(out)

    def loss(self, student_params, teacher_out: dict, batch: dict) -> tuple[jax.Array, dict]:
        """Weighted sum of the enabled distillation losses; ``metrics`` has each term unweighted."""
        w, St, m = self.weights, self.student, {}
        mean, log_std = St.policy(student_params["actor"], batch["state"], batch["goal"])
        if w["action_mse"]:
            m["action_mse"] = dl.action_mse(mean, teacher_out["mean"])
        if w["action_kl"]:
            m["action_kl"] = dl.gaussian_kl(teacher_out["mean"], teacher_out["log_std"], mean, log_std)
        if w["repr"] or w["relational"]:
            phi = St.phi(student_params["sa_encoder"], batch["state"], batch["action"])
            psi = St.psi(student_params["goal_encoder"], batch["goal"])
            if w["repr"]:
                f = dl.repr_mse if self.cfg.repr_loss == "mse" else dl.repr_cosine
                m["repr"] = f(phi, teacher_out["phi"]) + f(psi, teacher_out["psi"])
            if w["relational"]:
                m["relational"] = dl.relational_kl(phi, psi, teacher_out["phi"], teacher_out["psi"], self.cfg.temperature, self.energy)
        total = sum(w[k] * v for k, v in m.items())
        return total, {"loss": total, **m}

    def _sgd_step(self, ds: DistillState, key: jax.Array, teacher_params):
        batch = self.sample_batch(ds, key)
        t_out = self.teacher_outputs(teacher_params, batch)
        (_, metrics), grads = jax.value_and_grad(self.loss, has_aux=True)(ds.student, t_out, batch)
        updates, opt = self.tx.update(grads, ds.opt, ds.student)
        ds = ds.replace(student=optax.apply_updates(ds.student, updates), opt=opt, sgd_steps=ds.sgd_steps + 1)
        return ds, metrics

    def policy(self, params, state, goal):
        """The student's action on a row of :meth:`sensor_env` (``state [B, S or S + I]``)."""
        return self.student.deterministic_action(params["actor"], state[:, self.student_in], goal)
