"""The ``nnx`` student: any ``flax.nnx`` Module a user passes from Python.

::

    # my_robot/nets.py (importable by every process that loads the run)
    class TinyPolicy(nnx.Module):
        def __init__(self, in_dim, out_dim, rngs):
            self.l1 = nnx.Linear(in_dim, 32, rngs=rngs)
            self.l2 = nnx.Linear(32, out_dim, rngs=rngs)
        def __call__(self, x):                # x = concat(state, goal) [B, S + G]
            return self.l2(nnx.relu(self.l1(x)))

    student = NNXNetworks.for_task(spec, policy_module="my_robot.nets:TinyPolicy")
    distill(DistillConfig(teacher="runs/teacher", out="runs/tiny", repr=0, relational=0), student=student)

The policy module is built as ``cls(in_dim=S + G, out_dim=..., **policy_kwargs, rngs=nnx.Rngs(0))``
and maps ``concat(state, goal) [B, S + G]`` to either ``[B, 2A]`` (mean and the raw log-std, as the
teacher's actor) or ``[B, A]`` (the mean alone; ``log_std`` is then the constant ``fixed_log_std``,
so leave ``--action-kl`` at 0). Encoders are optional (``sa_module``/``goal_module``, built with
``in_dim`` and ``out_dim=repr_dim``). The class is saved by its import path ``"module:Class"``, so a
run (``networks.json``) loads wherever that module imports. Parameters are the module's
``nnx.Param`` state as a plain dict: Orbax saves them like any other pytree.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, ClassVar, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from deepdistill.student.interface import NetworksBase, Params, register_class
from deepdistill.core.heads import gaussian_head


def _import(path: str) -> type:
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"{path!r} is not an import path 'package.module:Class'")
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


@dataclasses.dataclass(frozen=True)
class _Module:
    """One nnx module, built abstractly: its graph definition and parameter structure."""

    path: str
    in_dim: int
    out_dim: int
    kwargs: tuple[tuple[str, Any], ...]

    def build(self, key: jax.Array) -> nnx.Module:
        return _import(self.path)(in_dim=self.in_dim, out_dim=self.out_dim, **dict(self.kwargs),
                                  rngs=nnx.Rngs(params=key))

    def split(self, key: jax.Array):
        return nnx.split(self.build(key), nnx.Param)

    def init(self, key: jax.Array) -> Params:
        return nnx.to_pure_dict(self.split(key)[1])

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        graphdef, state = nnx.eval_shape(lambda: self.split(jax.random.PRNGKey(0)))
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graphdef, state)(x)

    def num_params(self) -> int:
        shapes = jax.eval_shape(self.init, jax.random.PRNGKey(0))
        return int(sum(a.size for a in jax.tree.leaves(shapes)))

    def flops_per_sample(self) -> int:
        """XLA's count for one sample (every op, not only the matmuls)."""
        params = jax.eval_shape(self.init, jax.random.PRNGKey(0))
        x = jax.ShapeDtypeStruct((1, self.in_dim), jnp.float32)
        cost = jax.jit(self.apply).lower(params, x).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return int((cost or {}).get("flops", 0))


@dataclasses.dataclass(frozen=True)
class NNXNetworks(NetworksBase):
    """A user's flax.nnx policy (and optional encoders) behind the student interface."""

    arch: ClassVar[str] = "nnx"

    policy_module: str
    """Import path ``"package.module:Class"`` of the policy module."""
    policy_kwargs: dict = dataclasses.field(default_factory=dict)
    mean_only: bool = False
    """The policy returns the mean alone ``[B, A]`` (else mean and raw log-std, ``[B, 2A]``)."""
    fixed_log_std: float = -1.0
    sa_module: Optional[str] = None
    goal_module: Optional[str] = None
    """Import paths of the encoder modules phi(s, a) and psi(g) (both, or neither)."""
    encoder_kwargs: dict = dataclasses.field(default_factory=dict)
    repr_dim: int = 64

    def __post_init__(self):
        if (self.sa_module is None) != (self.goal_module is None):
            raise ValueError("give both sa_module and goal_module, or neither")

    @classmethod
    def for_task(cls, spec, policy_module: str, **kwargs: Any) -> "NNXNetworks":
        """Networks sized for an ``EnvSpec`` (or a teacher's networks: anything with the three sizes)."""
        return cls(state_size=spec.state_size, goal_size=spec.goal_size, action_size=spec.action_size,
                   policy_module=policy_module, **kwargs)

    @property
    def has_encoders(self) -> bool:
        return self.sa_module is not None

    def network(self, name: str) -> _Module:
        S, G, A = self.state_size, self.goal_size, self.action_size
        if name == "actor":
            return _Module(self.policy_module, S + G, A if self.mean_only else 2 * A, tuple(sorted(self.policy_kwargs.items())))
        kwargs = tuple(sorted(self.encoder_kwargs.items()))
        if name == "sa_encoder":
            return _Module(self.sa_module, S + A, self.repr_dim, kwargs)
        return _Module(self.goal_module, G, self.repr_dim, kwargs)

    def init(self, key: jax.Array) -> dict[str, Params]:
        keys = jax.random.split(key, 3)
        return {n: self.network(n).init(k) for n, k in zip(self._networks(), keys)}

    def policy(self, params: Params, state: jax.Array, goal: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = self.network("actor").apply(params, jnp.concatenate([state, goal], -1))
        if self.mean_only:
            return out, jnp.full_like(out, self.fixed_log_std)
        return gaussian_head(out)

    def phi(self, params: Params, state: jax.Array, action: jax.Array) -> jax.Array:
        return self.network("sa_encoder").apply(params, jnp.concatenate([state, action], -1))

    def psi(self, params: Params, goal: jax.Array) -> jax.Array:
        return self.network("goal_encoder").apply(params, goal)

    def describe(self) -> dict[str, Any]:
        return {"arch": self.arch, "policy_module": self.policy_module}

    def export_fn(self, network: str, params: Params, max_unrolled_depth: int):
        module = self.network(network)
        if network == "actor":
            A = self.action_size
            return (lambda observation, goal: module.apply(params, jnp.concatenate([observation, goal], -1))[..., :A]), False
        if network == "sa_encoder":
            return (lambda observation, action: module.apply(params, jnp.concatenate([observation, action], -1))), False
        return (lambda goal: module.apply(params, goal)), False


register_class(NNXNetworks, description="a flax.nnx Module passed from Python (distill(cfg, student=...))")
