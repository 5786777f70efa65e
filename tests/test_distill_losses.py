"""Distillation losses and the DAgger schedule against numbers computed by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepdistill.distill import losses as dl
from deepdistill.distill.config import DistillConfig
from deepdistill.distill.train import beta_at, mix_actions


def test_action_mse_by_hand():
    s, t = np.array([[0.0, 1.0]]), np.array([[0.5, -1.0]])
    expected = ((0 - math.tanh(0.5)) ** 2 + (math.tanh(1) - math.tanh(-1)) ** 2) / 2
    assert float(dl.action_mse(s, t)) == pytest.approx(expected, rel=1e-6)


def test_gaussian_kl_by_hand():
    # KL(N(0, 1) || N(1, 2^2)) = log 2 + (1 + 1) / 8 - 1/2 ; second dim identical -> 0
    t_mean, t_ls = np.array([[0.0, 0.3]]), np.array([[0.0, -0.2]])
    s_mean, s_ls = np.array([[1.0, 0.3]]), np.array([[math.log(2.0), -0.2]])
    expected = math.log(2) + 2 / 8 - 0.5
    assert float(dl.gaussian_kl(t_mean, t_ls, s_mean, s_ls)) == pytest.approx(expected, rel=1e-5)
    assert float(dl.gaussian_kl(t_mean, t_ls, t_mean, t_ls)) == pytest.approx(0.0, abs=1e-7)


def test_repr_losses_by_hand():
    s, t = np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[0.0, 1.0], [0.0, 4.0]])
    assert float(dl.repr_mse(s, t)) == pytest.approx((1 + 1 + 0 + 4) / 4)
    # cos = 0 for row 0, 1 for row 1
    assert float(dl.repr_cosine(s, t)) == pytest.approx(0.5, rel=1e-6)


def test_relational_kl_by_hand():
    t_phi, t_psi = np.array([[0.0], [1.0]]), np.array([[0.0], [2.0]])
    s_phi, s_psi = np.array([[0.0], [0.0]]), np.array([[0.0], [1.0]])
    T = 2.0

    def rows(phi, psi):
        L = np.array([[-abs(a[0] - b[0]) for b in psi] for a in phi]) / T
        return np.exp(L) / np.exp(L).sum(1, keepdims=True)

    p, q = rows(t_phi, t_psi), rows(s_phi, s_psi)
    expected = np.mean(np.sum(p * np.log(p / q), axis=1))
    assert float(dl.relational_kl(s_phi, s_psi, t_phi, t_psi, T)) == pytest.approx(expected, rel=1e-5)
    assert float(dl.relational_kl(t_phi, t_psi, t_phi, t_psi, T)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize(
    "schedule,start,end,at_half",
    [("constant", 0.3, 0.0, 0.3), ("linear", 1.0, 0.0, 0.5), ("exponential", 1.0, 0.01, 0.1)],
)
def test_beta_schedules(schedule, start, end, at_half):
    cfg = DistillConfig(data="dagger", beta_schedule=schedule, beta_start=start, beta_end=end, steps=1000)
    assert float(beta_at(cfg, jnp.array(0))) == pytest.approx(start)
    assert float(beta_at(cfg, jnp.array(500))) == pytest.approx(at_half, rel=1e-5)
    assert float(beta_at(cfg, jnp.array(5000))) == pytest.approx(start if schedule == "constant" else end, rel=1e-5)
    assert float(beta_at(DistillConfig(data="teacher"), jnp.array(500))) == 1.0


def test_mix_actions_picks_the_teacher_at_rate_beta():
    t, s = jnp.ones((20000, 2)), -jnp.ones((20000, 2))
    a, mask = mix_actions(jax.random.PRNGKey(0), jnp.array(0.3), t, s)
    assert float(mask.mean()) == pytest.approx(0.3, abs=0.015)
    np.testing.assert_array_equal(np.asarray(a[:, 0] > 0), np.asarray(mask))
