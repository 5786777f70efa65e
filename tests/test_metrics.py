import numpy as np
import pytest

from deepdistill.evaluate.metrics import action_agreement, linear_cka, pearson

RNG = np.random.default_rng(0)


def test_cka_of_a_matrix_with_itself_is_one_and_is_rotation_invariant():
    x = RNG.normal(size=(200, 8))
    assert linear_cka(x, x) == pytest.approx(1.0)
    q, _ = np.linalg.qr(RNG.normal(size=(8, 8)))
    assert linear_cka(x, 3.0 * x @ q) == pytest.approx(1.0)
    assert linear_cka(x, RNG.normal(size=(200, 8))) < 0.2


def test_cka_by_hand_on_a_small_case():
    x = np.array([[1.0], [2.0], [3.0]])
    y = np.array([[1.0], [0.0], [2.0]])
    xc, yc = x - x.mean(), y - y.mean()  # [-1, 0, 1], [0, -1, 1]
    expected = (xc.T @ yc).item() ** 2 / ((xc.T @ xc).item() * (yc.T @ yc).item())  # 1 / (2 * 2)
    assert linear_cka(x, y) == pytest.approx(expected) == pytest.approx(0.25)


def test_action_agreement():
    a = RNG.uniform(-1, 1, size=(50, 2))
    assert action_agreement(a, a) == {"mse": 0.0, "cosine": pytest.approx(1.0)}
    m = action_agreement(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    assert m["mse"] == pytest.approx(1.0) and m["cosine"] == pytest.approx(0.0)


def test_pearson():
    x = RNG.normal(size=(10, 10))
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
