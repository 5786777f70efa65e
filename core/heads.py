"""Heads and helpers every stage shares: the tanh-Gaussian policy head and its sampling, the kernel
initialiser of every Dense layer, and the critic's energy (logits) between representations.

Shapes: ``B`` batch, ``A`` action, ``R`` representation dim.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

Energy = Literal["l2", "dot"]

# Range of the actor's log standard deviation: ``gaussian_head`` squashes its raw output into it.
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
# The initialiser of every Dense kernel (the paper's variance scaling 1/3, fan-in, uniform).
KERNEL_INIT = jax.nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def gaussian_head(out: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Actor output ``[B, 2A]`` -> ``mean [B, A]``, ``log_std [B, A]`` (squashed into [LOG_STD_MIN, LOG_STD_MAX])."""
    mean, raw = jnp.split(out, 2, axis=-1)
    return mean, LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(raw) + 1.0)


def sample_tanh_gaussian(key: jax.Array, mean: jax.Array, log_std: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sample ``a = tanh(u)``, ``u ~ N(mean, exp(log_std))``; return ``(a [B, A], log p(a) [B])``."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    return jnp.tanh(u), tanh_gaussian_log_prob(u, mean, log_std)


def tanh_gaussian_log_prob(u: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log-density of ``tanh(u)`` given the pre-tanh sample ``u`` (stable change of variables)."""
    gauss = -0.5 * ((u - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi)
    log_det = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))  # log(1 - tanh(u)^2)
    return jnp.sum(gauss - log_det, axis=-1)


def safe_norm(x: jax.Array, axis: int = -1) -> jax.Array:
    """Euclidean norm with a finite gradient at 0 (the reference code had none)."""
    sq = jnp.sum(x * x, axis=axis)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def pairwise_energy(phi: jax.Array, psi: jax.Array, energy: Energy = "l2") -> jax.Array:
    """Logit matrix ``[B, B]``: ``L[i, j] = -||phi_i - psi_j||`` (``l2``) or ``phi_i . psi_j`` (``dot``)."""
    if energy == "dot":
        return phi @ psi.T
    return -safe_norm(phi[:, None, :] - psi[None, :, :])


def pair_energy(phi: jax.Array, psi: jax.Array, energy: Energy = "l2") -> jax.Array:
    """Row-wise energy ``[B]`` of matched pairs (the critic's Q value)."""
    if energy == "dot":
        return jnp.sum(phi * psi, axis=-1)
    return -safe_norm(phi - psi)
