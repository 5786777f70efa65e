"""The ``gru`` student: a recurrent policy that carries a hidden state from one control step to the next.

The action of step t comes from a goal-conditioned head ``ResidualMLP(concat(h[t-1], x[t], goal)) ->
[mean, raw log_std]`` (the residual MLP of :mod:`deepdistill.student.residual`, the teacher's: its
LayerNorms put the goal's centimetres and the joint angles' unit circle on one scale) over the memory
of the steps before and this step's input ``x`` (its sensor frame, with history and previous actions if
its observation model has them); the memory then takes this step in, ``h[t] = GRUCell(h[t-1], x[t])``
(flax's ``nn.GRUCell``, hidden size ``hidden``). The head sees the memory *before* this step: a memory
that holds the last frame is enough to tell the velocity (this step's frame minus that one), which a
memory already overwritten by this step's frame could not. The goal enters the head only, so the
memory is a summary of what the robot sensed and did, whatever goal it pursues (hindsight goals can
then be relabelled per step).

The carry starts at zeros with every episode (``initial_carry``). ``step`` is the recurrence;
``policy(params, state, goal)`` is one step from the zero carry (what code that knows nothing of memory
sees). Distillation trains it with truncated backpropagation through time over stored sequences of its
own DAgger rollouts (``distill --seq-len``); the export is ``observation, goal, h_in -> action, h_out``.

``distill --arch gru --width W --depth D``: hidden size W, and a residual head of width W and depth D
(Dense layers in blocks of 4, as ``residual``; 0 = input layer and output only). No CRL encoders:
train it with the action losses (``--repr 0 --relational 0``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from deepdistill.core.heads import gaussian_head
from deepdistill.student.interface import Interface, NetworksBase, Params, Size, register_class
from deepdistill.student.residual import ResidualMLP, validate_depth


@dataclasses.dataclass(frozen=True)
class GRUActor:
    """The GRU cell and the head, as one network (``network("actor")``)."""

    in_dim: int
    goal_dim: int
    out_dim: int
    hidden: int
    head: ResidualMLP

    @property
    def cell(self) -> nn.GRUCell:
        return nn.GRUCell(features=self.hidden)

    def num_params(self) -> int:
        I, H = self.in_dim, self.hidden
        return 3 * (I * H + H) + 3 * H * H + H + self.head.num_params()

    def flops_per_sample(self) -> int:
        I, H = self.in_dim, self.hidden
        return 2 * 3 * (I * H + H * H) + self.head.flops_per_sample()

    def init(self, key: jax.Array) -> Params:
        k_cell, k_head = jax.random.split(key)
        cell = self.cell.init(k_cell, jnp.zeros((1, self.hidden)), jnp.zeros((1, self.in_dim)))["params"]
        return {"gru": cell, "head": self.head.init(k_head)}

    def step(self, params: Params, carry: jax.Array, x: jax.Array, goal: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``carry [B, H], x [B, I], goal [B, G] -> (head output [B, out_dim], new carry [B, H])``."""
        out = self.head.apply(params["head"], jnp.concatenate([carry, x, goal], -1), unroll=True)
        h, _ = self.cell.apply({"params": params["gru"]}, carry, x)
        return out, h


@dataclasses.dataclass(frozen=True)
class GRUNetworks(NetworksBase):
    """A recurrent student: a GRU over the sensor input and a goal-conditioned MLP head (policy only)."""

    arch: ClassVar[str] = "gru"
    mean_only: ClassVar[bool] = False

    hidden: int = 64
    head_width: int = 64
    head_depth: int = 4

    def __post_init__(self):
        validate_depth(self.head_depth, "--depth")
        if min(self.hidden, self.head_width) < 1:
            raise ValueError("the hidden size and the head's width must be positive")

    @classmethod
    def build(cls, interface: Interface, size: Size) -> "GRUNetworks":
        """``distill --arch gru``: ``--width`` is the hidden size and the head's width, ``--depth`` the residual
        head's depth (a multiple of 4)."""
        sizes = size.sizes()
        if size.activation != "swish":
            raise ValueError(f"--activation {size.activation!r}: the gru head is the residual MLP, always swish")
        return cls(interface.state_size, interface.goal_size, interface.action_size, hidden=sizes["actor_width"],
                   head_width=sizes["actor_width"], head_depth=sizes["actor_depth"])

    @property
    def has_encoders(self) -> bool:
        return False

    @property
    def carry_size(self) -> int:
        return self.hidden

    @property
    def actor(self) -> GRUActor:
        head = ResidualMLP(self.hidden + self.state_size + self.goal_size, 2 * self.action_size, self.head_width,
                           self.head_depth)
        return GRUActor(self.state_size, self.goal_size, 2 * self.action_size, self.hidden, head)

    def network(self, name: str) -> GRUActor:
        if name != "actor":
            raise KeyError(f"a gru student has no {name}")
        return self.actor

    def init(self, key: jax.Array) -> dict[str, Params]:
        return {"actor": self.actor.init(key)}

    def initial_carry(self, batch: int) -> jax.Array:
        return jnp.zeros((batch, self.hidden), jnp.float32)

    def step(self, params: Params, carry: jax.Array, state: jax.Array, goal: jax.Array
             ) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
        out, carry = self.actor.step(params, carry, state, goal)
        return gaussian_head(out), carry

    def policy(self, params: Params, state: jax.Array, goal: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.step(params, self.initial_carry(state.shape[0]), state, goal)[0]

    def phi(self, params: Params, state: jax.Array, action: jax.Array) -> jax.Array:
        raise NotImplementedError("a gru student has no encoders")

    def psi(self, params: Params, goal: jax.Array) -> jax.Array:
        raise NotImplementedError("a gru student has no encoders")

    def describe(self) -> dict[str, Any]:
        return {"arch": self.arch, "actor_depth": self.head_depth, "actor_width": self.head_width, "hidden": self.hidden,
                "recurrent": True}

    def export_fn(self, network: str, params: Params, max_unrolled_depth: int):
        """``actor``: ``(observation [B, I], goal [B, G], h_in [B, H]) -> (mean [B, A], h_out [B, H])``."""
        if network != "actor":
            raise KeyError(f"a gru student has no {network}")
        A, actor = self.action_size, self.actor
        head = params["head"]
        mean_params = {"gru": params["gru"], "head": {**head, "output": {k: v[..., :A] for k, v in head["output"].items()}}}
        mean_actor = dataclasses.replace(actor, head=dataclasses.replace(actor.head, out_dim=A))

        def fn(observation, goal, h_in):
            return mean_actor.step(mean_params, h_in, observation, goal)

        return fn, False


register_class(GRUNetworks, description="a recurrent student: GRU over the sensor input, goal-conditioned MLP head")
