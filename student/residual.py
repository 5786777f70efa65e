"""The residual MLP of RL1000, written once and reused by teachers and students.

``ResidualMLP``: input ``Dense(width) -> LayerNorm -> swish``, then ``depth // 4`` residual blocks of
``4 x [Dense(width) -> LayerNorm -> swish]`` with the skip added after the block, then
``Dense(out_dim)``. ``depth`` counts the Dense layers inside blocks (the paper's convention).

The block parameters are stacked along a leading axis and applied with ``lax.scan``, so tracing and
compile time do not grow with depth. For the backward pass each block keeps only the outputs of its
four matmuls and recomputes LayerNorm and swish from them (``jax.checkpoint`` with
``dots_saveable``): the same numbers as keeping every intermediate, with about 4x less temporary
memory and fewer CPU-seconds (benchmarks/teacher_scaling.py, 2-core CPU: the teacher's SGD step
1.2x at depth 64-256, 1.6x at depth 1024, where keeping everything took 9 GB). ``remat=True``
keeps only each block's input and recomputes the whole block, matmuls included (least memory, one
more forward pass). ``unroll=True`` applies the same parameters block by block (used by the ONNX
export of shallow students, and by the test that checks the two agree).

Options for a GPU, where the scan is a device loop of small, launch-bound kernels (none changes the
numbers beyond float rounding; tests/test_networks.py checks forward values and gradients):

* ``block_unroll=k``: ``lax.scan(..., unroll=k)``, k blocks per loop iteration (compile time grows
  with k, not with depth);
* ``full_unroll_max_depth=d``: networks of depth <= d apply their blocks in a Python loop, no scan
  (shallow nets; compile time grows with depth, so keep d small);
* ``matmul_dtype="bfloat16"``: every Dense layer multiplies bfloat16 copies of its input and kernel
  with float32 accumulation (``preferred_element_type``); parameters, bias, LayerNorm, swish and the
  residual sum stay float32. Outputs differ from float32 by bf16 rounding (about 1e-2 relative).

The defaults (unroll 1, no full unroll, float32) are today's: no measurement yet says otherwise.
Each option keeps the per-block checkpoint policy (``dots_saveable``, or whole-block ``remat``).

Parameters are a plain pytree (nested dicts of arrays): nothing framework-specific is saved.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from deepdistill.core.heads import KERNEL_INIT, gaussian_head
from deepdistill.student.interface import Interface, NetworksBase, Size, register_class

Params = dict[str, Any]

LAYERS_PER_BLOCK = 4
LN_EPSILON = 1e-6
MATMUL_DTYPES = ("float32", "bfloat16")

# One unbound flax LayerNorm, applied with explicit parameters: jax2onnx recognises it and emits a
# single ONNX LayerNormalization node.
_LAYER_NORM = nn.LayerNorm(epsilon=LN_EPSILON)
# What a block keeps for its backward pass (without ``remat``): its matmul outputs only.
_SAVE_MATMULS = jax.checkpoint_policies.dots_saveable


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    return _LAYER_NORM.apply({"params": {"scale": scale, "bias": bias}}, x)


def dense(x: jax.Array, kernel: jax.Array, bias: jax.Array, matmul_dtype: str = "float32") -> jax.Array:
    """``x @ kernel + bias``; with ``matmul_dtype="bfloat16"`` the product takes bf16 copies of ``x``
    and ``kernel`` and accumulates in float32 (the result, and the bias add, are float32)."""
    if matmul_dtype == "float32":
        return x @ kernel + bias
    y = jnp.matmul(x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16), preferred_element_type=jnp.float32)
    return y + bias


def _dense_ln_swish(x: jax.Array, p: Params, matmul_dtype: str = "float32") -> jax.Array:
    return nn.swish(layer_norm(dense(x, p["kernel"], p["bias"], matmul_dtype), p["scale"], p["offset"]))


def _block(x: jax.Array, p: Params, matmul_dtype: str = "float32") -> jax.Array:
    """One residual block; ``p`` leaves have a leading axis of ``LAYERS_PER_BLOCK``."""
    h = x
    for i in range(LAYERS_PER_BLOCK):
        h = _dense_ln_swish(h, jax.tree.map(lambda a: a[i], p), matmul_dtype)
    return x + h


def validate_depth(depth: int, what: str = "depth") -> None:
    if depth < 0 or depth % LAYERS_PER_BLOCK:
        raise ValueError(
            f"{what}={depth} is not a multiple of {LAYERS_PER_BLOCK}: depth counts the Dense layers inside "
            f"residual blocks of {LAYERS_PER_BLOCK}; use e.g. {max(LAYERS_PER_BLOCK, depth // 4 * 4)}"
        )


def validate_block_options(block_unroll: int, full_unroll_max_depth: int, matmul_dtype: str) -> None:
    if block_unroll < 1:
        raise ValueError(f"--block-unroll must be >= 1 (got {block_unroll}); 1 is a plain scan over blocks")
    if full_unroll_max_depth < 0:
        raise ValueError(f"--full-unroll-max-depth must be >= 0 (got {full_unroll_max_depth}); 0 never unrolls")
    if matmul_dtype not in MATMUL_DTYPES:
        raise ValueError(f"--matmul-dtype must be one of {', '.join(MATMUL_DTYPES)} (got {matmul_dtype!r})")


@dataclasses.dataclass(frozen=True)
class ResidualMLP:
    """A residual MLP ``[..., in_dim] -> [..., out_dim]`` (see the module docstring)."""

    in_dim: int
    out_dim: int
    width: int = 256
    depth: int = 4
    remat: bool = False
    block_unroll: int = 1
    """Residual blocks per iteration of the scan over blocks (``lax.scan(unroll=...)``)."""
    full_unroll_max_depth: int = 0
    """At this depth or below, apply the blocks in a Python loop instead of a scan (0: never)."""
    matmul_dtype: str = "float32"
    """``float32``, or ``bfloat16`` products with float32 accumulation (parameters stay float32)."""

    def __post_init__(self):
        validate_depth(self.depth)
        if self.width < 1 or self.in_dim < 1 or self.out_dim < 1:
            raise ValueError("width, in_dim and out_dim must be positive")
        validate_block_options(self.block_unroll, self.full_unroll_max_depth, self.matmul_dtype)

    @property
    def num_blocks(self) -> int:
        return self.depth // LAYERS_PER_BLOCK

    def num_params(self) -> int:
        """Closed form: input layer, blocks (Dense + LayerNorm scale/offset), output layer."""
        w, n = self.width, self.depth
        layer = w * w + w + 2 * w
        return (self.in_dim * w + w + 2 * w) + n * layer + (w * self.out_dim + self.out_dim)

    def flops_per_sample(self) -> int:
        """Multiply-adds x 2 of the Dense layers (LayerNorm and swish are O(width))."""
        w = self.width
        return 2 * (self.in_dim * w + self.depth * w * w + w * self.out_dim)

    def init(self, key: jax.Array) -> Params:
        k_in, k_blocks, k_out = jax.random.split(key, 3)
        w, nb, L = self.width, self.num_blocks, LAYERS_PER_BLOCK
        params: Params = {
            "input": {
                "kernel": KERNEL_INIT(k_in, (self.in_dim, w)),
                "bias": jnp.zeros((w,)),
                "scale": jnp.ones((w,)),
                "offset": jnp.zeros((w,)),
            },
            "output": {"kernel": KERNEL_INIT(k_out, (w, self.out_dim)), "bias": jnp.zeros((self.out_dim,))},
        }
        if nb:
            kernels = jax.vmap(lambda k: KERNEL_INIT(k, (w, w)))(jax.random.split(k_blocks, nb * L))
            params["blocks"] = {
                "kernel": kernels.reshape(nb, L, w, w),
                "bias": jnp.zeros((nb, L, w)),
                "scale": jnp.ones((nb, L, w)),
                "offset": jnp.zeros((nb, L, w)),
            }
        return params

    def apply(self, params: Params, x: jax.Array, unroll: bool = False) -> jax.Array:
        """``[..., in_dim] -> [..., out_dim]``. ``unroll=True``: blocks one by one with no checkpoint
        policy (the export's and the tests' reference); otherwise the training path set by the
        fields (scan with ``block_unroll``, or a Python loop up to ``full_unroll_max_depth``)."""
        dt = self.matmul_dtype
        h = _dense_ln_swish(x, params["input"], dt)
        if self.num_blocks:
            blocks = params["blocks"]
            if unroll:
                for i in range(self.num_blocks):
                    h = _block(h, jax.tree.map(lambda a: a[i], blocks), dt)
            else:
                block = functools.partial(_block, matmul_dtype=dt)
                body = jax.checkpoint(block) if self.remat else jax.checkpoint(block, policy=_SAVE_MATMULS)
                if self.depth <= self.full_unroll_max_depth:
                    for i in range(self.num_blocks):
                        h = body(h, jax.tree.map(lambda a: a[i], blocks))
                else:
                    unroll_k = min(self.block_unroll, self.num_blocks)
                    h, _ = jax.lax.scan(lambda c, p: (body(c, p), None), h, blocks, unroll=unroll_k)
        return dense(h, params["output"]["kernel"], params["output"]["bias"], dt)


# --- the three networks of contrastive RL -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CRLNetworks(NetworksBase):
    """phi(s, a), psi(g) and the actor pi(a | s, g): three instances of the one residual MLP.

    The encoders share a class and differ only in their input (state+action, or goal). This is the
    ``residual`` implementation of :class:`deepdistill.student.interface.PolicyNetworks`: the
    teacher, and the default student at any smaller depth and width.
    """

    arch: ClassVar[str] = "residual"
    has_encoders: ClassVar[bool] = True

    repr_dim: int = 64
    actor_width: int = 256
    actor_depth: int = 4
    critic_width: int = 256
    critic_depth: int = 4
    remat: bool = False
    # How the blocks run (see ResidualMLP); defaults keep networks.json files of older runs loadable.
    block_unroll: int = 1
    full_unroll_max_depth: int = 0
    matmul_dtype: str = "float32"

    @classmethod
    def build(cls, interface: Interface, size: Size) -> "CRLNetworks":
        """``distill --arch residual``: depths are Dense layers inside blocks of 4 (0 = no block)."""
        for name, v in (("depth", size.depth), ("actor_depth", size.actor_depth), ("critic_depth", size.critic_depth)):
            if v is not None:
                validate_depth(v, "--" + name.replace("_", "-"))
        if size.activation != "swish":
            raise ValueError(f"--activation {size.activation!r}: the residual MLP always uses swish (mlp students choose)")
        return cls(interface.state_size, interface.goal_size, interface.action_size, repr_dim=interface.repr_dim, **size.sizes())

    def _mlp(self, in_dim: int, out_dim: int, width: int, depth: int) -> ResidualMLP:
        return ResidualMLP(in_dim, out_dim, width, depth, self.remat, self.block_unroll, self.full_unroll_max_depth,
                           self.matmul_dtype)

    @property
    def sa_encoder(self) -> ResidualMLP:
        return self._mlp(self.state_size + self.action_size, self.repr_dim, self.critic_width, self.critic_depth)

    @property
    def goal_encoder(self) -> ResidualMLP:
        return self._mlp(self.goal_size, self.repr_dim, self.critic_width, self.critic_depth)

    @property
    def actor(self) -> ResidualMLP:
        return self._mlp(self.state_size + self.goal_size, 2 * self.action_size, self.actor_width, self.actor_depth)

    def init(self, key: jax.Array) -> dict[str, Params]:
        k_a, k_sa, k_g = jax.random.split(key, 3)
        return {"actor": self.actor.init(k_a), "sa_encoder": self.sa_encoder.init(k_sa), "goal_encoder": self.goal_encoder.init(k_g)}

    def network(self, name: str) -> ResidualMLP:
        return getattr(self, name)

    def describe(self) -> dict[str, Any]:
        return {"arch": self.arch, "actor_depth": self.actor_depth, "actor_width": self.actor_width,
                "critic_depth": self.critic_depth, "critic_width": self.critic_width}

    def export_fn(self, network: str, params: Params, max_unrolled_depth: int):
        """See :meth:`PolicyNetworks.export_fn`. The actor's output layer keeps only its ``mean``
        columns (``log_std`` is never computed); networks deeper than ``max_unrolled_depth`` run
        their blocks in one ``lax.scan`` (-> one ONNX ``Loop``)."""
        mlp = dataclasses.replace(getattr(self, network), matmul_dtype="float32")  # exports compute in float32
        looped = mlp.depth > max_unrolled_depth
        if network == "actor":
            A = self.action_size
            mean_mlp = dataclasses.replace(mlp, out_dim=A)
            mean_params = {**params, "output": {k: v[..., :A] for k, v in params["output"].items()}}
            return (lambda observation, goal: export_forward(mean_mlp, mean_params, jnp.concatenate([observation, goal], -1), looped)), looped
        if network == "sa_encoder":
            return (lambda observation, action: export_forward(mlp, params, jnp.concatenate([observation, action], -1), looped)), looped
        return (lambda goal: export_forward(mlp, params, goal, looped)), looped

    # --- forward passes (``unroll`` only changes how blocks are applied, never the result) ---
    def phi(self, params: Params, state: jax.Array, action: jax.Array, unroll: bool = False) -> jax.Array:
        """``[B, S], [B, A] -> [B, repr_dim]``"""
        return self.sa_encoder.apply(params, jnp.concatenate([state, action], -1), unroll)

    def psi(self, params: Params, goal: jax.Array, unroll: bool = False) -> jax.Array:
        """``[B, G] -> [B, repr_dim]``"""
        return self.goal_encoder.apply(params, goal, unroll)

    def policy(self, params: Params, state: jax.Array, goal: jax.Array, unroll: bool = False) -> tuple[jax.Array, jax.Array]:
        """``[B, S], [B, G] -> mean [B, A], log_std [B, A]`` of the pre-tanh Gaussian."""
        return gaussian_head(self.actor.apply(params, jnp.concatenate([state, goal], -1), unroll))

    def deterministic_action(self, params: Params, state: jax.Array, goal: jax.Array, unroll: bool = False) -> jax.Array:
        """tanh(mean), in [-1, 1]: the action the evaluation and the ONNX export use."""
        return jnp.tanh(self.policy(params, state, goal, unroll)[0])


def export_forward(mlp: ResidualMLP, params: Params, x: jax.Array, loop: bool) -> jax.Array:
    """``mlp.apply`` for the ONNX export, parameters given as numpy constants. Unrolled: the
    network's own code. Looped: the same layers, with the stacked block parameters cut per layer
    beforehand (numpy), so the Loop body indexes nothing."""
    if not loop or mlp.num_blocks == 0:
        return mlp.apply(params, x, unroll=True)
    blocks = params["blocks"]
    per_layer = tuple(jax.tree.map(lambda a, i=i: np.ascontiguousarray(a[:, i]), blocks) for i in range(LAYERS_PER_BLOCK))

    def block(h, layers):
        y = h
        for p in layers:
            y = _dense_ln_swish(y, p)
        return h + y, None

    h = _dense_ln_swish(x, params["input"])
    h, _ = jax.lax.scan(block, h, per_layer)
    return h @ params["output"]["kernel"] + params["output"]["bias"]


register_class(CRLNetworks, description="the residual MLP of RL1000 (Dense -> LayerNorm -> swish blocks); the teacher's")
