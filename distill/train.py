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
from deepdistill.student.interface import PolicyNetworks, is_recurrent
from deepdistill.core.heads import sample_tanh_gaussian
from deepdistill.core.rollout import Recurrent


@flax.struct.dataclass
class DistillState:
    student: Any  # {"actor", "sa_encoder", "goal_encoder"}
    opt: Any
    replay: rb.Replay  # whole observations [T, E, S + G], or [T, E, S + I + G] with sensors (envs/sensors.py)
    env_state: Any
    key: jax.Array
    sgd_steps: jax.Array  # int32
    teacher_acted: jax.Array  # float32: env steps on which the teacher acted (all envs)
    carry: Any = None  # a recurrent student's hidden state [E, H] in its rollouts (None: feed-forward)

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
        # Replay rows: state (and the student's input), goal, then a recurrent student's hidden state
        # before the step (where truncated backpropagation through time starts).
        self.goal_in = slice(self.Sx, self.Sx + env.spec.goal_size)
        self.recurrent = is_recurrent(student_nets)
        self.carry_size = int(student_nets.carry_size) if self.recurrent else 0
        if self.recurrent:
            if cfg.seq_len > cfg.unroll_length or cfg.batch_size % cfg.seq_len:
                raise ConfigError(f"--seq-len {cfg.seq_len} must divide --batch-size {cfg.batch_size} and be at most "
                                  f"--unroll-length {cfg.unroll_length} (a recurrent student trains on sequences)")
            if teacher_replay is not None:
                raise ConfigError("--teacher-buffer-fraction: a recurrent student trains on sequences of its own "
                                  "rollouts; the teacher's replay has none of its hidden states: set it to 0")
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
            replay=rb.init_replay(self.capacity, self.cfg.num_envs, self.spec.obs_size + self.carry_size,
                                  self.spec.action_size),
            env_state=jax.vmap(self.env.reset)(jax.random.split(k_env, self.cfg.num_envs)),
            key=k_run,
            sgd_steps=jnp.zeros((), jnp.int32),
            teacher_acted=jnp.zeros((), jnp.float32),
            carry=self.student.initial_carry(self.cfg.num_envs) if self.recurrent else None,
        )

    # --- data --------------------------------------------------------------------------------------------
    def _collect(self, ds: DistillState, key: jax.Array, teacher_params) -> DistillState:
        """``unroll_length`` steps with the teacher's stochastic action (teacher-driven), or the
        beta-mix of teacher and student (DAgger); whole observations go into the replay. The teacher
        acts on the true state, the student on its own input (its sensors)."""
        S, E = self.S, self.cfg.num_envs
        beta = beta_at(self.cfg, ds.sgd_steps)

        def act(obs, k, carry=None):
            k_t, k_mix = jax.random.split(k)
            state, goal = obs[:, :S], obs[:, self.Sx:]
            t_action, _ = sample_tanh_gaussian(k_t, *self.teacher.policy(teacher_params["actor"], state, goal))
            if self.recurrent:  # the student's memory follows what it senses, whoever acts
                (mean, _), carry = self.student.step(ds.student["actor"], carry, obs[:, self.student_in], goal)
                s_action = jnp.tanh(mean)
            elif self.cfg.data != "teacher":
                s_action = self.student.deterministic_action(ds.student["actor"], obs[:, self.student_in], goal)
            if self.cfg.data == "teacher":
                action, acted = t_action, jnp.full((E,), True).sum()
            else:
                action, mask = mix_actions(k_mix, beta, t_action, s_action)
                acted = mask.sum()
            return (action, acted, carry) if self.recurrent else (action, acted)

        env_state, replay, acted, carry = collect(self.env, ds.env_state, ds.replay, key, act, self.cfg.unroll_length,
                                                  memory=ds.carry)
        return ds.replace(env_state=env_state, replay=replay, teacher_acted=ds.teacher_acted + acted.sum(), carry=carry)

    def _prefill(self, ds: DistillState, teacher_params) -> DistillState:
        key, k = jax.random.split(ds.key)
        return self._collect(ds.replace(key=key), k, teacher_params)

    def sample_batch(self, ds: DistillState, key: jax.Array) -> dict[str, jax.Array]:
        """``state [B, S or I]`` (the student's input), ``teacher_state [B, S]`` (the true state the teacher
        labels: ``action_delay`` steps later, when the student's action is applied), ``goal [B, G]``
        (hindsight future state or the task's goal), ``action [B, A]`` (the one commanded)."""
        S, B = self.S, self.cfg.batch_size
        k_own, k_mix, k_tb = jax.random.split(key, 3)
        if self.recurrent:  # B / seq_len sequences, flattened to [B, ...] (sequence-major)
            n, L = B // self.cfg.seq_len, self.cfg.seq_len
            b = rb.sample_sequences(ds.replay, k_own, n, L, self.spec.episode_length, 1.0 - 1e-2,
                                    self.spec.goal_indices, self.delay)
            carry0 = b["state"][:, 0, self.goal_in.stop:]
            b = jax.tree.map(lambda x: x.reshape(n * L, *x.shape[2:]), b)
        else:
            b = rb.sample(ds.replay, k_own, B, self.spec.episode_length, 1.0 - 1e-2, self.spec.goal_indices, self.delay)
        use_future = jax.random.uniform(k_mix, (B,)) < self.cfg.future_goal_fraction
        batch = {
            "state": b["state"][:, self.student_in],
            "teacher_state": (b["ahead_state"] if self.delay else b["state"])[:, :S],
            "goal": jnp.where(use_future[:, None], b["future_goal"], b["state"][:, self.goal_in]),
            "action": b["action"],
        }
        if self.recurrent:
            return {**batch, "first": b["first"], "carry0": carry0}
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
        mean, log_std = self.student_policy(student_params["actor"], batch)
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

    def student_policy(self, actor, batch: dict) -> tuple[jax.Array, jax.Array]:
        """The student's ``mean, log_std [B, A]`` on the batch; a recurrent student runs each sequence from
        its stored hidden state (truncated backpropagation through time), restarting at episode starts."""
        if not self.recurrent:
            return self.student.policy(actor, batch["state"], batch["goal"])
        n, L = self.cfg.batch_size // self.cfg.seq_len, self.cfg.seq_len

        def step(carry, x):
            state, goal, first = x
            carry = jnp.where(first[:, None], jnp.zeros_like(carry), carry)
            out, carry = self.student.step(actor, carry, state, goal)
            return carry, out

        seq = lambda x: x.reshape(n, L, *x.shape[1:]).swapaxes(0, 1)  # noqa: E731  [B, ...] -> [L, n, ...]
        xs = (seq(batch["state"]), seq(batch["goal"]), seq(batch["first"]))
        _, (mean, log_std) = jax.lax.scan(step, jax.lax.stop_gradient(batch["carry0"]), xs)
        flat = lambda x: x.swapaxes(0, 1).reshape(n * L, -1)  # noqa: E731
        return flat(mean), flat(log_std)

    def _sgd_step(self, ds: DistillState, key: jax.Array, teacher_params):
        batch = self.sample_batch(ds, key)
        t_out = self.teacher_outputs(teacher_params, batch)
        (_, metrics), grads = jax.value_and_grad(self.loss, has_aux=True)(ds.student, t_out, batch)
        updates, opt = self.tx.update(grads, ds.opt, ds.student)
        ds = ds.replace(student=optax.apply_updates(ds.student, updates), opt=opt, sgd_steps=ds.sgd_steps + 1)
        return ds, metrics

    @property
    def policy(self):
        """The student's action on a row of :meth:`sensor_env` (``state [B, S or S + I]``): a function of
        ``(params, state, goal)``, or a :class:`~deepdistill.core.rollout.Recurrent` one."""
        return student_policy(self.student, self.student_in)


def student_policy(nets: PolicyNetworks, inputs: slice = slice(None)):
    """``nets``' deterministic action on ``state[:, inputs]`` for :mod:`deepdistill.core.rollout`:
    ``(params, state, goal) -> action``, or a :class:`~deepdistill.core.rollout.Recurrent` policy."""
    if is_recurrent(nets):
        def step(params, carry, state, goal):
            (mean, _), carry = nets.step(params["actor"], carry, state[:, inputs], goal)
            return jnp.tanh(mean), carry

        return Recurrent(lambda params, n: nets.initial_carry(n), step)
    return lambda params, state, goal: nets.deterministic_action(params["actor"], state[:, inputs], goal)
