"""Distillation losses (pure functions of student outputs and frozen teacher outputs).

Shapes: ``B`` batch, ``A`` action, ``R`` representation. Teacher outputs carry no gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from deepdistill.core.heads import pairwise_energy


def action_mse(student_mean: jax.Array, teacher_mean: jax.Array) -> jax.Array:
    """``mean((tanh(mu_s) - tanh(mu_t))^2)`` over ``[B, A]``: the deterministic actions."""
    return jnp.mean((jnp.tanh(student_mean) - jnp.tanh(teacher_mean)) ** 2)


def gaussian_kl(t_mean: jax.Array, t_log_std: jax.Array, s_mean: jax.Array, s_log_std: jax.Array) -> jax.Array:
    """``KL(teacher || student)`` of the diagonal pre-tanh Gaussians ``[B, A]``, summed over A, mean over B.

    The tanh squashing is the same bijection for both, so this is also the KL of the squashed policies.
    """
    var_t, var_s = jnp.exp(2 * t_log_std), jnp.exp(2 * s_log_std)
    kl = s_log_std - t_log_std + (var_t + (t_mean - s_mean) ** 2) / (2 * var_s) - 0.5
    return jnp.mean(jnp.sum(kl, axis=-1))


def repr_mse(student: jax.Array, teacher: jax.Array) -> jax.Array:
    """``mean((z_s - z_t)^2)`` over ``[B, R]``."""
    return jnp.mean((student - teacher) ** 2)


def repr_cosine(student: jax.Array, teacher: jax.Array, eps: float = 1e-8) -> jax.Array:
    """``mean(1 - cos(z_s, z_t))`` over the batch."""
    num = jnp.sum(student * teacher, axis=-1)
    den = jnp.linalg.norm(student, axis=-1) * jnp.linalg.norm(teacher, axis=-1) + eps
    return jnp.mean(1.0 - num / den)


def relational_kl(
    s_phi: jax.Array, s_psi: jax.Array, t_phi: jax.Array, t_psi: jax.Array, temperature: float = 1.0, energy: str = "l2"
) -> jax.Array:
    """Row-wise ``KL(softmax(L_t / T) || softmax(L_s / T))`` of the ``[B, B]`` critic-logit matrices,
    mean over rows: the student keeps the teacher's ranking of goals for each state-action."""
    log_p_t = jax.nn.log_softmax(pairwise_energy(t_phi, t_psi, energy) / temperature, axis=-1)
    log_p_s = jax.nn.log_softmax(pairwise_energy(s_phi, s_psi, energy) / temperature, axis=-1)
    return jnp.mean(jnp.sum(jnp.exp(log_p_t) * (log_p_t - log_p_s), axis=-1))
