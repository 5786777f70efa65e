"""The network interface every policy provides, teacher or student, and the architecture registry.

Checkpoint loading (:mod:`deepdistill.core.policy`), distillation, the ONNX export and ``evaluate``
use a policy's networks only through :class:`PolicyNetworks`; none of them names an architecture.
Implementations:

============  ===================================================================================
``residual``  the teacher's residual MLP (``teacher/networks.py``, ``CRLNetworks``): actor and
              both encoders; the default student, at any depth (0 included) and width
``mlp``       a plain MLP without LayerNorm (``student/mlp.py``): Gemm + activation only, for
              small embedded controllers; actor and optionally both encoders
``nnx``       any ``flax.nnx`` Module a user passes from Python (``student/nnx.py``)
============  ===================================================================================

A new architecture implements the protocol and calls :func:`register_architecture`; its
``to_dict()`` must carry ``"arch"`` and round-trip through JSON (it is saved as ``networks.json``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Optional, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

Params = dict[str, Any]
NETWORKS = ("actor", "sa_encoder", "goal_encoder")


@runtime_checkable
class PolicyNetworks(Protocol):
    """A goal-conditioned policy ``pi(a | s, g)`` and, optionally, the CRL encoders phi(s, a), psi(g).

    Parameters are a dict ``{"actor": ..., "sa_encoder": ..., "goal_encoder": ...}`` of plain
    pytrees (the encoders only when ``has_encoders``). Shapes: ``state [B, S]``, ``goal [B, G]``,
    ``action [B, A]``, representations ``[B, repr_dim]``."""

    arch: str
    state_size: int
    goal_size: int
    action_size: int

    @property
    def has_encoders(self) -> bool: ...

    def init(self, key: jax.Array) -> dict[str, Params]: ...

    def policy(self, params: Params, state: jax.Array, goal: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``actor params, [B, S], [B, G] -> mean [B, A], log_std [B, A]`` of the pre-tanh Gaussian."""
        ...

    def deterministic_action(self, params: Params, state: jax.Array, goal: jax.Array) -> jax.Array:
        """``tanh(mean)`` in [-1, 1]: the action evaluation and the ONNX export use."""
        ...

    def phi(self, params: Params, state: jax.Array, action: jax.Array) -> jax.Array: ...

    def psi(self, params: Params, goal: jax.Array) -> jax.Array: ...

    def num_params(self) -> dict[str, int]:
        """Parameters per network (``actor`` and, with encoders, ``sa_encoder``, ``goal_encoder``)."""
        ...

    def flops_per_action(self) -> int:
        """FLOPs of one deterministic action (Dense layers, 2 per multiply-add)."""
        ...

    def describe(self) -> dict[str, Any]:
        """A short summary for reports: ``arch`` and what sizes it has (depth, width, ...)."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable config with ``"arch"``; :func:`networks_from_dict` inverts it."""
        ...

    def export_fn(self, network: str, params: Params, max_unrolled_depth: int) -> tuple[Callable[..., jax.Array], bool]:
        """What the ONNX exporter traces for ``network`` with ``params`` baked in as numpy constants:
        ``actor``: ``(observation [B, S], goal [B, G]) -> mean [B, A]`` (the pre-tanh mean only);
        ``sa_encoder``: ``(observation, action) -> phi``; ``goal_encoder``: ``(goal) -> psi``.
        Returns ``(fn, looped)``: ``looped`` when deep blocks run in one ONNX Loop."""
        ...


@dataclasses.dataclass(frozen=True)
class NetworksBase:
    """What implementations share: the task's sizes and the code around ``network(name)`` (an
    object with ``num_params()`` and ``flops_per_sample()``); a subclass is a frozen dataclass that
    names ``arch`` and implements ``network``, ``init``, ``policy`` (and the encoders)."""

    arch: ClassVar[str]

    state_size: int
    goal_size: int
    action_size: int

    def _networks(self) -> tuple[str, ...]:
        return NETWORKS if self.has_encoders else NETWORKS[:1]

    def network(self, name: str) -> Any:
        raise NotImplementedError

    def deterministic_action(self, params: Params, state: jax.Array, goal: jax.Array) -> jax.Array:
        return jnp.tanh(self.policy(params, state, goal)[0])

    def num_params(self) -> dict[str, int]:
        return {n: self.network(n).num_params() for n in self._networks()}

    def flops_per_action(self) -> int:
        return self.network("actor").flops_per_sample()

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        return cls(**{k: v for k, v in d.items() if k != "arch"})


_ARCHITECTURES: dict[str, Callable[[dict[str, Any]], PolicyNetworks]] = {}


def register_architecture(name: str, from_dict: Callable[[dict[str, Any]], PolicyNetworks]) -> None:
    """Make ``networks.json`` files with ``"arch": name`` loadable (``from_dict(d)`` builds the networks)."""
    _ARCHITECTURES[name] = from_dict


def architectures() -> tuple[str, ...]:
    _load_builtin()
    return tuple(sorted(_ARCHITECTURES))


def networks_from_dict(d: dict[str, Any]) -> PolicyNetworks:
    """Rebuild networks from their ``to_dict()`` (a ``networks.json`` without ``arch`` is ``residual``)."""
    _load_builtin()
    arch = d.get("arch", "residual")
    if arch not in _ARCHITECTURES:
        raise KeyError(f"unknown network architecture {arch!r} (known: {', '.join(sorted(_ARCHITECTURES))})")
    return _ARCHITECTURES[arch]({k: v for k, v in d.items() if k != "arch"})


def _load_builtin() -> None:
    from deepdistill.student import mlp, nnx  # noqa: F401  (register on import)
    from deepdistill.teacher import networks  # noqa: F401


def make_student(arch: str, teacher: PolicyNetworks, depth: int, width: int, actor_depth: Optional[int] = None,
                 critic_depth: Optional[int] = None, actor_width: Optional[int] = None,
                 critic_width: Optional[int] = None, **options: Any) -> PolicyNetworks:
    """A built-in student of ``arch`` (``residual`` or ``mlp``) with the teacher's interface sizes
    (state, goal, action and, when the teacher has encoders, representation size)."""
    from deepdistill.student.mlp import MLPNetworks
    from deepdistill.teacher.networks import CRLNetworks, validate_depth

    sizes = dict(state_size=teacher.state_size, goal_size=teacher.goal_size, action_size=teacher.action_size,
                 actor_width=width if actor_width is None else actor_width,
                 actor_depth=depth if actor_depth is None else actor_depth,
                 critic_width=width if critic_width is None else critic_width,
                 critic_depth=depth if critic_depth is None else critic_depth)
    repr_dim = getattr(teacher, "repr_dim", None) or 64
    if arch == "residual":
        for name, v in (("depth", depth), ("actor_depth", actor_depth), ("critic_depth", critic_depth)):
            if v is not None:
                validate_depth(v, "--" + name.replace("_", "-"))
        return CRLNetworks(repr_dim=repr_dim, **sizes, **options)
    if arch == "mlp":
        return MLPNetworks(repr_dim=repr_dim, **sizes, **options)
    raise ValueError(f"--arch {arch!r} is unknown; choose residual or mlp (an nnx student is passed from Python)")
