"""Losses against numbers computed by hand (numpy, explicit loops)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepdistill.core import heads
from deepdistill.teacher import losses
from deepdistill.core.heads import sample_tanh_gaussian, tanh_gaussian_log_prob

PHI = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], np.float32)
PSI = np.array([[0.0, 1.0], [1.0, 1.0], [3.0, 0.0]], np.float32)


def hand_logits():
    return np.array([[-math.dist(p, q) for q in PSI] for p in PHI])


def test_pairwise_l2_energy_matches_hand_distances():
    np.testing.assert_allclose(heads.pairwise_energy(PHI, PSI, "l2"), hand_logits(), rtol=1e-6)
    np.testing.assert_allclose(heads.pairwise_energy(PHI, PSI, "dot"), PHI @ PSI.T, rtol=1e-6)


def test_forward_infonce_by_hand():
    L = hand_logits()
    lse = [math.log(sum(math.exp(v) for v in row)) for row in L]
    expected = -sum(L[i, i] - lse[i] for i in range(3)) / 3 + 0.1 * sum(v * v for v in lse) / 3
    loss, m = losses.infonce(jnp.asarray(L), "forward", 0.1)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # row 0: -1 vs -1.414 vs -3 -> argmax 0 (correct); row 1: -1.414, -1, -2.236 -> 1 (correct);
    # row 2: -1, -1.414, -3.606 -> 0 (wrong)
    assert float(m["critic_accuracy"]) == pytest.approx(2 / 3)


def test_backward_and_symmetric_infonce_by_hand():
    L = hand_logits()
    lse_col = [math.log(sum(math.exp(L[i, j]) for i in range(3))) for j in range(3)]
    backward = -sum(L[j, j] - lse_col[j] for j in range(3)) / 3
    assert float(losses.infonce(jnp.asarray(L), "backward", 0.0)[0]) == pytest.approx(backward, rel=1e-5)
    forward = float(losses.infonce(jnp.asarray(L), "forward", 0.0)[0])
    assert float(losses.infonce(jnp.asarray(L), "symmetric", 0.0)[0]) == pytest.approx((forward + backward) / 2, rel=1e-5)


def test_safe_norm_has_finite_gradient_at_zero():
    g = jax.grad(lambda x: heads.safe_norm(x))(jnp.zeros(3))
    assert np.all(np.isfinite(g)) and np.all(g == 0)
    g = jax.grad(lambda x: heads.safe_norm(x))(jnp.array([3.0, 4.0]))
    np.testing.assert_allclose(g, [0.6, 0.8], rtol=1e-6)


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    u = np.array([[0.3, -1.2]], np.float32)
    mean = np.array([[0.1, -0.5]], np.float32)
    log_std = np.array([[-0.2, 0.4]], np.float32)
    std = np.exp(log_std)
    gauss = -0.5 * ((u - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    expected = np.sum(gauss - np.log(1 - np.tanh(u) ** 2), axis=-1)
    np.testing.assert_allclose(tanh_gaussian_log_prob(u, mean, log_std), expected, rtol=1e-5)


def test_sampled_actions_are_in_range_and_entropy_follows_std():
    key = jax.random.PRNGKey(0)
    a, logp = sample_tanh_gaussian(key, jnp.zeros((4096, 2)), jnp.full((4096, 2), -3.0))
    assert float(jnp.abs(a).max()) < 1.0
    _, logp_wide = sample_tanh_gaussian(key, jnp.zeros((4096, 2)), jnp.zeros((4096, 2)))
    assert float(-logp_wide.mean()) > float(-logp.mean()) + 4  # log-std up by 3 per dim -> ~6 nats


def test_alpha_loss_pushes_alpha_towards_target_entropy():
    log_prob = jnp.array([-0.2, -0.4])  # entropy 0.3 below a target of 1.0 -> alpha must grow
    g = jax.grad(losses.alpha_loss)(jnp.array(0.0), log_prob, 1.0)
    # d/dlog_alpha mean(exp(la) * (-logp - target)) at la=0 = mean(0.2 - 1, 0.4 - 1) = -0.7
    assert float(g) == pytest.approx(-0.7, rel=1e-6)
