"""The checks every stage config shares (teacher, distill, export, evaluate, pipeline): one set of
rules, so no two commands disagree on what a valid number is."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from deepdistill.core.errors import ConfigError

SEED_RANGE = (0, 2**32 - 1)  # jax.random.PRNGKey keeps 32 bits: larger seeds would collide silently


def flag(name: str) -> str:
    """The command-line flag of a config field (``actor_lr`` -> ``--actor-lr``)."""
    return "--" + name.replace("_", "-")


def check_numbers(cfg: Any) -> None:
    """Refuse a non-finite float field (NaN, inf) and a seed outside :data:`SEED_RANGE`, naming the flag.

    Every config's ``validate()`` calls this first, so later range checks (``lr > 0``, ...) never see
    a NaN, which compares false with everything and would slip through them."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{flag(f.name)} must be a finite number (got {value})")
    if hasattr(cfg, "seed"):
        check_seed(cfg.seed)


def check_seed(seed: int, name: str = "--seed") -> None:
    lo, hi = SEED_RANGE
    if isinstance(seed, bool) or not isinstance(seed, int) or not lo <= seed <= hi:
        raise ConfigError(f"{name} {seed} is out of range: use an integer in [{lo}, {hi}]")
