"""The ``mlp`` student: a plain MLP without LayerNorm, for small embedded controllers.

``MLP``: ``Dense(width) -> act``, then ``depth`` more ``Dense(width) -> act`` layers, then
``Dense(out_dim)``; ``act`` is swish (the teacher's), relu or tanh. Exported, a layer is one Gemm
and its activation: nothing a microcontroller's inference library lacks. ``MLPNetworks`` holds the
actor and, unless ``encoders=False``, both CRL encoders, with the interface of
:class:`deepdistill.student.interface.PolicyNetworks`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from deepdistill.student.interface import Interface, NetworksBase, Params, Size, register_class
from deepdistill.core.heads import KERNEL_INIT, gaussian_head

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"swish": nn.swish, "relu": nn.relu, "tanh": jnp.tanh}


@dataclasses.dataclass(frozen=True)
class MLP:
    """``[..., in_dim] -> [..., out_dim]`` through ``depth + 1`` hidden layers of ``width``."""

    in_dim: int
    out_dim: int
    width: int = 64
    depth: int = 1
    activation: str = "swish"

    def __post_init__(self):
        if min(self.in_dim, self.out_dim, self.width) < 1 or self.depth < 0:
            raise ValueError(f"MLP sizes must be positive and depth >= 0 (got width {self.width}, depth {self.depth})")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"--activation {self.activation!r} is unknown; choose one of {', '.join(ACTIVATIONS)}")

    def _dims(self) -> list[tuple[int, int]]:
        return [(self.in_dim, self.width)] + [(self.width, self.width)] * self.depth + [(self.width, self.out_dim)]

    def num_params(self) -> int:
        return sum(i * o + o for i, o in self._dims())

    def flops_per_sample(self) -> int:
        return sum(2 * i * o for i, o in self._dims())

    def init(self, key: jax.Array) -> Params:
        keys = jax.random.split(key, len(self._dims()))
        return {"layers": [{"kernel": KERNEL_INIT(k, (i, o)), "bias": jnp.zeros((o,))} for k, (i, o) in zip(keys, self._dims())]}

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        *hidden, last = params["layers"]
        for p in hidden:
            x = act(x @ p["kernel"] + p["bias"])
        return x @ last["kernel"] + last["bias"]


@dataclasses.dataclass(frozen=True)
class MLPNetworks(NetworksBase):
    """Actor (and CRL encoders) as plain MLPs; ``depth`` counts the hidden layers after the first."""

    arch: ClassVar[str] = "mlp"

    repr_dim: int = 64
    actor_width: int = 64
    actor_depth: int = 1
    critic_width: int = 64
    critic_depth: int = 1
    activation: str = "swish"
    encoders: bool = True

    @classmethod
    def build(cls, interface: Interface, size: Size) -> "MLPNetworks":
        """``distill --arch mlp``: depth counts the hidden layers after the first (>= 0)."""
        sizes = size.sizes()
        for name in ("actor_depth", "critic_depth"):
            if sizes[name] < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0 (got {sizes[name]})")
        if size.activation not in ACTIVATIONS:
            raise ValueError(f"--activation {size.activation!r} is unknown; choose one of {', '.join(ACTIVATIONS)}")
        return cls(interface.state_size, interface.goal_size, interface.action_size, repr_dim=interface.repr_dim,
                   activation=size.activation, **sizes)

    @property
    def has_encoders(self) -> bool:
        return self.encoders

    @property
    def actor(self) -> MLP:
        return MLP(self.state_size + self.goal_size, 2 * self.action_size, self.actor_width, self.actor_depth, self.activation)

    @property
    def sa_encoder(self) -> MLP:
        return MLP(self.state_size + self.action_size, self.repr_dim, self.critic_width, self.critic_depth, self.activation)

    @property
    def goal_encoder(self) -> MLP:
        return MLP(self.goal_size, self.repr_dim, self.critic_width, self.critic_depth, self.activation)

    def network(self, name: str) -> MLP:
        return getattr(self, name)

    def init(self, key: jax.Array) -> dict[str, Params]:
        keys = jax.random.split(key, 3)
        return {n: getattr(self, n).init(k) for n, k in zip(self._networks(), keys)}

    def policy(self, params: Params, state: jax.Array, goal: jax.Array) -> tuple[jax.Array, jax.Array]:
        return gaussian_head(self.actor.apply(params, jnp.concatenate([state, goal], -1)))

    def phi(self, params: Params, state: jax.Array, action: jax.Array) -> jax.Array:
        return self.sa_encoder.apply(params, jnp.concatenate([state, action], -1))

    def psi(self, params: Params, goal: jax.Array) -> jax.Array:
        return self.goal_encoder.apply(params, goal)

    def describe(self) -> dict[str, Any]:
        return {"arch": self.arch, "actor_depth": self.actor_depth, "actor_width": self.actor_width,
                "critic_depth": self.critic_depth if self.encoders else None,
                "critic_width": self.critic_width if self.encoders else None, "activation": self.activation}

    def export_fn(self, network: str, params: Params, max_unrolled_depth: int):
        if network == "actor":
            A = self.action_size
            mean_mlp = dataclasses.replace(self.actor, out_dim=A)
            last = params["layers"][-1]
            mean_params = {"layers": [*params["layers"][:-1], {k: v[..., :A] for k, v in last.items()}]}
            return (lambda observation, goal: mean_mlp.apply(mean_params, jnp.concatenate([observation, goal], -1))), False
        if network == "sa_encoder":
            return (lambda observation, action: self.sa_encoder.apply(params, jnp.concatenate([observation, action], -1))), False
        return (lambda goal: self.goal_encoder.apply(params, goal)), False


register_class(MLPNetworks, description="a plain MLP without LayerNorm (Gemm + activation only)")
