"""Contrastive RL losses (pure functions).

Shapes: ``B`` batch, ``S`` state, ``G`` goal, ``A`` action, ``R`` representation dim.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from deepdistill.core.heads import Energy, pair_energy, pairwise_energy, sample_tanh_gaussian
from deepdistill.student.interface import Params, PolicyNetworks

InfoNCE = Literal["forward", "backward", "symmetric"]


def infonce(logits: jax.Array, kind: InfoNCE = "forward", logsumexp_penalty: float = 0.1) -> tuple[jax.Array, dict]:
    """InfoNCE on a ``[B, B]`` logit matrix whose diagonal holds the positive pairs.

    forward:  ``-mean(diag - logsumexp(L, axis=1)) + penalty * mean(logsumexp(L, axis=1)^2)``
    backward: the same with ``axis=0`` (goals classify their state-action); symmetric: the mean of both.
    """
    diag = jnp.diagonal(logits)

    def one(axis: int) -> jax.Array:
        lse = jax.nn.logsumexp(logits, axis=axis)
        return -jnp.mean(diag - lse) + logsumexp_penalty * jnp.mean(lse**2)

    if kind == "forward":
        loss = one(1)
    elif kind == "backward":
        loss = one(0)
    elif kind == "symmetric":
        loss = 0.5 * (one(0) + one(1))
    else:
        raise ValueError(f"unknown InfoNCE kind {kind!r}")
    metrics = {
        "critic_accuracy": jnp.mean(jnp.argmax(logits, axis=1) == jnp.arange(logits.shape[0])),
        "logits_pos": jnp.mean(diag),
        "logits_neg": (jnp.sum(logits) - jnp.sum(diag)) / (logits.size - diag.size),
    }
    return loss, metrics


def critic_loss(
    critic_params: dict[str, Params],
    nets: PolicyNetworks,
    state: jax.Array,
    action: jax.Array,
    future_goal: jax.Array,
    energy: Energy = "l2",
    kind: InfoNCE = "forward",
    logsumexp_penalty: float = 0.1,
) -> tuple[jax.Array, dict]:
    """InfoNCE critic loss. ``state [B, S]``, ``action [B, A]``, ``future_goal [B, G]`` (hindsight).

    ``metrics["psi"]`` holds the goal representations ``[B, R]`` so the actor loss of the same SGD step
    can reuse them instead of running the goal encoder again."""
    phi = nets.phi(critic_params["sa_encoder"], state, action)
    psi = nets.psi(critic_params["goal_encoder"], future_goal)
    loss, metrics = infonce(pairwise_energy(phi, psi, energy), kind, logsumexp_penalty)
    return loss, {"critic_loss": loss, **metrics, "psi": psi}


def actor_loss(
    actor_params: Params,
    critic_params: dict[str, Params],
    nets: PolicyNetworks,
    state: jax.Array,
    goal: jax.Array,
    alpha: jax.Array,
    key: jax.Array,
    energy: Energy = "l2",
    psi: jax.Array | None = None,
) -> tuple[jax.Array, dict]:
    """``mean(alpha * log pi(a|s,g) - Q(s, a, g))`` with ``a ~ pi`` (reparameterised) and
    ``Q = -||phi(s, a) - psi(g)||``. ``state [B, S]``, ``goal [B, G]``, ``alpha`` scalar; ``psi [B, R]``
    may be passed when already computed with the same critic parameters."""
    mean, log_std = nets.policy(actor_params, state, goal)
    action, log_prob = sample_tanh_gaussian(key, mean, log_std)
    phi = nets.phi(critic_params["sa_encoder"], state, action)
    if psi is None:
        psi = nets.psi(critic_params["goal_encoder"], goal)
    psi = jax.lax.stop_gradient(psi)
    q = pair_energy(phi, psi, energy)
    loss = jnp.mean(alpha * log_prob - q)
    return loss, {"actor_loss": loss, "entropy": -jnp.mean(log_prob), "q": jnp.mean(q), "log_prob": log_prob}


def alpha_loss(log_alpha: jax.Array, log_prob: jax.Array, target_entropy: float) -> jax.Array:
    """SAC temperature loss: ``mean(alpha * (-log_prob - target_entropy))`` with ``log_prob`` held fixed."""
    return jnp.mean(jnp.exp(log_alpha) * jax.lax.stop_gradient(-log_prob - target_entropy))
