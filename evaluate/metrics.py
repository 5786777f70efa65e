"""Agreement between two policies on the same inputs (numpy; used by ``evaluate``)."""

from __future__ import annotations

import numpy as np


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear centred kernel alignment of ``x [N, D1]`` and ``y [N, D2]`` (Kornblith et al., 2019).

    1 for representations equal up to rotation and isotropic scaling; invariant to both.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    x = x - x.mean(0)
    y = y - y.mean(0)
    hsic = np.linalg.norm(y.T @ x) ** 2
    norm = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(hsic / norm) if norm > 0 else 0.0


def action_agreement(a: np.ndarray, b: np.ndarray, min_norm: float = 0.1) -> dict[str, float]:
    """MSE and mean cosine similarity of two action batches ``[N, A]``.

    The cosine is taken over the rows where both actions have a norm of at least ``min_norm``: near a
    goal both policies command (almost) nothing and the direction of a tiny action is noise.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    moving = (na >= min_norm) & (nb >= min_norm)
    if moving.any():
        cos = float(np.mean(np.sum(a * b, -1)[moving] / (na * nb)[moving]))
    else:
        cos = float(np.allclose(a, b, atol=1e-6))
    return {"mse": float(np.mean((a - b) ** 2)), "cosine": cos}


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two arrays of the same shape (flattened)."""
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    den = np.sqrt(np.sum(x * x) * np.sum(y * y))
    return float(np.sum(x * y) / den) if den > 0 else 0.0
