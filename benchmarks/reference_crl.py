"""The paper's network and update written its way, as a baseline timed in the same process as ours.

What follows the reference code (scaling-crl ``train.py``, read for this file, not copied):

* flax.linen modules with ``nn.compact``; the residual blocks unrolled in a Python loop (so trace
  and compile time grow with depth); Dense(kernel variance_scaling(1/3, fan_in, uniform), zero
  bias) -> LayerNorm -> swish, 4 per block, skip after the block; encoders end in Dense(64); the
  actor has two heads, ``mean`` and ``log_std`` (tanh, rescaled to [-5, 2]);
* the update order per SGD step: actor and alpha first, then the critic, on the same batch; the
  actor loss runs phi(s, pi) and psi(g) itself (no reuse), with the log-prob correction
  ``log(1 - tanh(u)^2 + 1e-6)``; the critic logits are ``-sqrt(sum((phi - psi)^2))`` with no guard,
  and its penalty uses ``logsumexp(L + 1e-6)``; Adam 3e-4 (flax ``TrainState.apply_gradients`` is
  ``optax.adam`` + ``apply_updates``, written out here).

What is ours, so that only the network and update code differ: the task, the collection loop, the
trajectory replay and its future-goal sampling, the epoch (``Trainer._epoch``: a scan over
collect-then-SGD iterations) and the shapes (width, batch, envs, env steps per SGD step).
``ReferenceTrainer`` is a ``Trainer`` whose parameters, policy and SGD step are the reference's.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from deepdistill.core import replay as rb
from deepdistill.teacher.train import Trainer

_LECUN_UNIFORM = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
_ZEROS = nn.initializers.zeros


def _dense(width: int):
    return nn.Dense(width, kernel_init=_LECUN_UNIFORM, bias_init=_ZEROS)


def residual_block(x, width: int):
    identity = x
    for _ in range(4):
        x = nn.swish(nn.LayerNorm()(_dense(width)(x)))
    return x + identity


class Encoder(nn.Module):
    """phi(s, a) on concat(s, a), or psi(g): input layer, ``depth // 4`` blocks, Dense(repr_dim)."""

    width: int
    depth: int
    repr_dim: int = 64

    @nn.compact
    def __call__(self, x):
        x = nn.swish(nn.LayerNorm()(_dense(self.width)(x)))
        for _ in range(self.depth // 4):
            x = residual_block(x, self.width)
        return _dense(self.repr_dim)(x)


class Actor(nn.Module):
    action_size: int
    width: int
    depth: int
    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0

    @nn.compact
    def __call__(self, x):
        x = nn.swish(nn.LayerNorm()(_dense(self.width)(x)))
        for _ in range(self.depth // 4):
            x = residual_block(x, self.width)
        mean = _dense(self.action_size)(x)
        log_std = nn.tanh(_dense(self.action_size)(x))
        return mean, self.LOG_STD_MIN + 0.5 * (self.LOG_STD_MAX - self.LOG_STD_MIN) * (log_std + 1)


class ReferenceNetworks:
    """The three reference modules behind the interface ``Trainer``'s collection and evaluation use."""

    def __init__(self, spec, cfg):
        self.spec = spec
        self.actor = Actor(spec.action_size, cfg.actor_width_, cfg.actor_depth_)
        self.sa_encoder = Encoder(cfg.critic_width_, cfg.critic_depth_, cfg.repr_dim)
        self.g_encoder = Encoder(cfg.critic_width_, cfg.critic_depth_, cfg.repr_dim)

    def init(self, key) -> dict[str, Any]:
        S, G, A = self.spec.state_size, self.spec.goal_size, self.spec.action_size
        k_a, k_sa, k_g = jax.random.split(key, 3)
        return {
            "actor": self.actor.init(k_a, jnp.zeros((1, S + G))),
            "sa_encoder": self.sa_encoder.init(k_sa, jnp.zeros((1, S + A))),
            "goal_encoder": self.g_encoder.init(k_g, jnp.zeros((1, G))),  # the container key of our TrainState
        }

    def policy(self, actor_params, state, goal):
        return self.actor.apply(actor_params, jnp.concatenate([state, goal], axis=-1))

    def deterministic_action(self, actor_params, state, goal):
        return jnp.tanh(self.policy(actor_params, state, goal)[0])

    def num_params(self) -> dict[str, int]:
        p = jax.eval_shape(self.init, jax.random.PRNGKey(0))
        return {k: sum(x.size for x in jax.tree.leaves(v)) for k, v in p.items()}


class ReferenceTrainer(Trainer):
    """Our ``Trainer`` (task, collection, replay, epoch) with the reference's networks and update."""

    def __init__(self, cfg, env, devices=None):
        self.ref = ReferenceNetworks(env.spec, cfg)
        super().__init__(cfg, env, devices)  # traces self._init below
        self.nets = self.ref  # the collection's policy and the evaluation's action

    def _init(self, key):
        ts = super()._init(key)
        params = self.ref.init(jax.random.fold_in(key, 1))
        critic = {"sa_encoder": params["sa_encoder"], "goal_encoder": params["goal_encoder"]}
        return ts.replace(actor=params["actor"], critic=critic, actor_opt=self.actor_tx.init(params["actor"]),
                          critic_opt=self.critic_tx.init(critic))

    def _sgd_step(self, ts, key):
        cfg, spec, ref = self.cfg, self.spec, self.ref
        k_batch, k_actor = jax.random.split(key)
        b = rb.sample(ts.replay, k_batch, cfg.batch_size, spec.episode_length, cfg.gamma, spec.goal_indices)
        state, action, goal = b["state"], b["action"], b["future_goal"]

        # update_actor_and_alpha
        def actor_loss(actor_params, critic_params, log_alpha):
            means, log_stds = ref.actor.apply(actor_params, jnp.concatenate([state, goal], axis=1))
            stds = jnp.exp(log_stds)
            x_ts = means + stds * jax.random.normal(k_actor, shape=means.shape, dtype=means.dtype)
            a = nn.tanh(x_ts)
            log_prob = jax.scipy.stats.norm.logpdf(x_ts, loc=means, scale=stds)
            log_prob -= jnp.log((1 - jnp.square(a)) + 1e-6)
            log_prob = log_prob.sum(-1)
            sa_repr = ref.sa_encoder.apply(critic_params["sa_encoder"], jnp.concatenate([state, a], axis=-1))
            g_repr = ref.g_encoder.apply(critic_params["goal_encoder"], goal)
            qf_pi = -jnp.sqrt(jnp.sum((sa_repr - g_repr) ** 2, axis=-1))
            return jnp.mean(jnp.exp(log_alpha) * log_prob - qf_pi), log_prob

        def alpha_loss(log_alpha, log_prob):
            return jnp.exp(log_alpha) * jnp.mean(jax.lax.stop_gradient(-log_prob - self.target_entropy))

        (a_loss, log_prob), a_grad = jax.value_and_grad(actor_loss, has_aux=True)(ts.actor, ts.critic, ts.log_alpha)
        a_upd, actor_opt = self.actor_tx.update(a_grad, ts.actor_opt, ts.actor)
        al_grad = jax.grad(alpha_loss)(ts.log_alpha, log_prob)
        al_upd, alpha_opt = self.alpha_tx.update(al_grad, ts.alpha_opt, ts.log_alpha)
        ts = ts.replace(actor=optax.apply_updates(ts.actor, a_upd), actor_opt=actor_opt,
                        log_alpha=optax.apply_updates(ts.log_alpha, al_upd), alpha_opt=alpha_opt)

        # update_critic
        def critic_loss(critic_params):
            sa_repr = ref.sa_encoder.apply(critic_params["sa_encoder"], jnp.concatenate([state, action], axis=-1))
            g_repr = ref.g_encoder.apply(critic_params["goal_encoder"], goal)
            logits = -jnp.sqrt(jnp.sum((sa_repr[:, None, :] - g_repr[None, :, :]) ** 2, axis=-1))
            loss = -jnp.mean(jnp.diag(logits) - jax.nn.logsumexp(logits, axis=1))
            lse = jax.nn.logsumexp(logits + 1e-6, axis=1)
            return loss + cfg.logsumexp_penalty * jnp.mean(lse**2)

        c_loss, c_grad = jax.value_and_grad(critic_loss)(ts.critic)
        c_upd, critic_opt = self.critic_tx.update(c_grad, ts.critic_opt, ts.critic)
        ts = ts.replace(critic=optax.apply_updates(ts.critic, c_upd), critic_opt=critic_opt, sgd_steps=ts.sgd_steps + 1)
        return ts, {"actor_loss": a_loss, "critic_loss": c_loss, "alpha": jnp.exp(ts.log_alpha)}


def update_flops(trainer: ReferenceTrainer, batch: int) -> int:
    """Dense-layer FLOPs of one reference SGD step: critic 3F_phi + 3F_psi; actor 3F_actor, phi
    forward + activation backward (2F_phi) and its own psi forward (1F_psi)."""
    from deepdistill.student.residual import ResidualMLP

    cfg, s = trainer.cfg, trainer.spec
    fa = ResidualMLP(s.state_size + s.goal_size, 2 * s.action_size, cfg.actor_width_, cfg.actor_depth_).flops_per_sample()
    fp = ResidualMLP(s.state_size + s.action_size, cfg.repr_dim, cfg.critic_width_, cfg.critic_depth_).flops_per_sample()
    fg = ResidualMLP(s.goal_size, cfg.repr_dim, cfg.critic_width_, cfg.critic_depth_).flops_per_sample()
    return batch * (3 * fa + 5 * fp + 4 * fg)
