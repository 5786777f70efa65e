"""A student architecture kept outside the package: a tanh MLP without LayerNorm.

Nothing in deepdistill is edited to use it. With this folder on ``PYTHONPATH``:

    PYTHONPATH=examples/custom_student distill --teacher runs/teacher --arch tanh_mlp:TanhMLPNetworks \\
        --depth 2 --width 64 --out runs/tanh
    PYTHONPATH=examples/custom_student export-onnx --student runs/tanh --out runs/tanh_onnx
    PYTHONPATH=examples/custom_student evaluate --teacher runs/teacher --student runs/tanh --onnx runs/tanh_onnx

The run records ``"arch": "tanh_mlp:TanhMLPNetworks"`` in ``networks.json``; every later stage
imports the class from there. What a class provides is listed in
``deepdistill.student.PolicyNetworks``; ``NetworksBase`` supplies the rest.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from deepdistill.core.heads import KERNEL_INIT, gaussian_head
from deepdistill.student import Interface, NetworksBase, Size


@dataclasses.dataclass(frozen=True)
class TanhMLP:
    """``[B, in_dim] -> [B, out_dim]``: ``depth`` hidden tanh layers of ``width`` (at least one)."""

    in_dim: int
    out_dim: int
    width: int
    depth: int

    def dims(self) -> list[tuple[int, int]]:
        hidden = max(1, self.depth)
        return [(self.in_dim, self.width)] + [(self.width, self.width)] * (hidden - 1) + [(self.width, self.out_dim)]

    def num_params(self) -> int:
        return sum(i * o + o for i, o in self.dims())

    def flops_per_sample(self) -> int:
        return sum(2 * i * o for i, o in self.dims())

    def init(self, key: jax.Array) -> list[dict[str, jax.Array]]:
        keys = jax.random.split(key, len(self.dims()))
        return [{"kernel": KERNEL_INIT(k, (i, o)), "bias": jnp.zeros((o,))} for k, (i, o) in zip(keys, self.dims())]

    def apply(self, params: list[dict[str, jax.Array]], x: jax.Array) -> jax.Array:
        *hidden, last = params
        for p in hidden:
            x = jnp.tanh(x @ p["kernel"] + p["bias"])
        return x @ last["kernel"] + last["bias"]


@dataclasses.dataclass(frozen=True)
class TanhMLPNetworks(NetworksBase):
    """Actor and both CRL encoders as tanh MLPs (no LayerNorm)."""

    arch = "tanh_mlp"  # what reports show; networks.json records the import path it was loaded by
    has_encoders = True

    repr_dim: int = 64
    actor_depth: int = 2
    actor_width: int = 64
    critic_depth: int = 2
    critic_width: int = 64

    @classmethod
    def build(cls, interface: Interface, size: Size) -> "TanhMLPNetworks":
        sizes = size.sizes()
        if min(sizes["actor_depth"], sizes["critic_depth"]) < 1:
            raise ValueError("--depth must be at least 1 (hidden tanh layers)")
        return cls(interface.state_size, interface.goal_size, interface.action_size, repr_dim=interface.repr_dim, **sizes)

    def network(self, name: str) -> TanhMLP:
        S, G, A = self.state_size, self.goal_size, self.action_size
        if name == "actor":
            return TanhMLP(S + G, 2 * A, self.actor_width, self.actor_depth)
        if name == "sa_encoder":
            return TanhMLP(S + A, self.repr_dim, self.critic_width, self.critic_depth)
        return TanhMLP(G, self.repr_dim, self.critic_width, self.critic_depth)

    def init(self, key: jax.Array) -> dict[str, Any]:
        keys = jax.random.split(key, 3)
        return {n: self.network(n).init(k) for n, k in zip(("actor", "sa_encoder", "goal_encoder"), keys)}

    def policy(self, params, state, goal):
        return gaussian_head(self.network("actor").apply(params, jnp.concatenate([state, goal], -1)))

    def phi(self, params, state, action):
        return self.network("sa_encoder").apply(params, jnp.concatenate([state, action], -1))

    def psi(self, params, goal):
        return self.network("goal_encoder").apply(params, goal)

    def describe(self) -> dict[str, Any]:
        return {"arch": self.arch, "actor_depth": self.actor_depth, "actor_width": self.actor_width,
                "critic_depth": self.critic_depth, "critic_width": self.critic_width}

    def export_fn(self, network: str, params, max_unrolled_depth: int):
        mlp = self.network(network)
        if network == "actor":
            A = self.action_size
            mean = [*params[:-1], {k: v[..., :A] for k, v in params[-1].items()}]  # the mean columns only
            return (lambda observation, goal: mlp.apply(mean, jnp.concatenate([observation, goal], -1))), False
        if network == "sa_encoder":
            return (lambda observation, action: mlp.apply(params, jnp.concatenate([observation, action], -1))), False
        return (lambda goal: mlp.apply(params, goal)), False
