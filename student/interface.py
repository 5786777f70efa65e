"""The network interface every policy provides, teacher or student, and the architecture registry.

Checkpoint loading (:mod:`deepdistill.student.policy`), distillation, the ONNX export and ``evaluate``
use a policy's networks only through :class:`PolicyNetworks`; none of them names an architecture.
Built-in implementations, each registering itself (name, ``from_dict``, builder):

============  ===================================================================================
``residual``  the residual MLP of RL1000 (``student/residual.py``, ``CRLNetworks``): the teacher,
              and the default student at any depth (0 included) and width
``mlp``       a plain MLP without LayerNorm (``student/mlp.py``): Gemm + activation only, for
              small embedded controllers; actor and optionally both encoders
``nnx``       any ``flax.nnx`` Module a user passes from Python (``student/nnx.py``; no builder:
              it has no depth/width to build from)
``gru``       a recurrent student (``student/gru.py``): a GRU over the sensor input and a
              goal-conditioned MLP head, carrying a hidden state between control steps
============  ===================================================================================

An architecture outside the package needs no registration: ``distill --arch my_pkg.nets:MyNetworks``
imports the class (a :class:`NetworksBase` subclass with a ``build`` classmethod), and its
``to_dict()`` records that import path as ``"arch"`` in ``networks.json``, so ``export-onnx``,
``evaluate`` and ``--resume`` import it again (the module must be importable there too:
``PYTHONPATH``). Installed packages can register a short name through the entry-point group
``deepdistill.architectures`` (``name = "module:Class"``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Optional, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from deepdistill.core.errors import UserError

Params = dict[str, Any]
NETWORKS = ("actor", "sa_encoder", "goal_encoder")


class Network(Protocol):
    """One network of a policy (what ``PolicyNetworks.network(name)`` returns), for reports and plans."""

    def num_params(self) -> int:
        """Parameters of this network."""
        ...

    def flops_per_sample(self) -> int:
        """FLOPs of one forward pass of one sample (Dense layers: 2 per multiply-add)."""
        ...


@runtime_checkable
class PolicyNetworks(Protocol):
    """A goal-conditioned policy ``pi(a | s, g)`` and, optionally, the CRL encoders phi(s, a), psi(g).

    Everything a new architecture provides (subclass :class:`NetworksBase`, a frozen dataclass whose
    fields are its sizes, and it inherits ``deterministic_action``, ``num_params``,
    ``flops_per_action``, ``to_dict`` and ``from_dict``):

    * ``init``, ``policy`` and, when ``has_encoders``, ``phi`` and ``psi``: pure functions of plain
      pytree parameters ``{"actor": ..., "sa_encoder": ..., "goal_encoder": ...}`` (the encoders only
      when ``has_encoders``). Shapes: ``state [B, S]``, ``goal [B, G]``, ``action [B, A]``,
      representations ``[B, repr_dim]``.
    * ``network(name) -> Network``: for ``name`` in ``actor`` (and ``sa_encoder``, ``goal_encoder``
      with encoders), an object with ``num_params()`` and ``flops_per_sample()``.
    * ``describe() -> dict``: for reports. Must carry ``"arch"``; the report's columns read
      ``actor_depth`` and ``actor_width`` when present (``-`` otherwise); any other key is kept in
      ``report.json``.
    * ``export_fn(network, params, max_unrolled_depth)``: what the ONNX exporter traces.
    * ``build(interface, size)`` (a classmethod, optional): how ``distill --arch`` makes one from
      :class:`Interface` and :class:`Size`; raise ``ValueError`` naming the flag for a size it cannot
      take. Without it the networks are passed from Python.
    * ``mean_only`` (optional attribute, default false): the actor gives the mean alone and
      ``policy`` returns a fixed ``log_std``; distillation then refuses ``--action-kl``.
    * ``log_std``: ``policy``'s second output, already in ``[LOG_STD_MIN, LOG_STD_MAX]`` =
      ``[-5, 2]`` (``deepdistill.core.heads.gaussian_head`` squashes a raw output into it).
    * ``to_dict()`` must be JSON-serialisable and carry ``"arch"`` (``NetworksBase`` writes the
      registered name, or the class's import path).
    * Recurrence (optional; :func:`is_recurrent`): ``carry_size`` (> 0), ``initial_carry(batch) ->
      [B, H]`` (where every episode starts) and ``step(params, carry, state, goal) -> ((mean, log_std),
      carry)``. ``policy`` is then one step from the initial carry, and ``export_fn("actor", ...)``
      traces ``(observation, goal, h_in) -> (mean, h_out)``. Feed-forward architectures define none
      of these and nothing about them changes.
    """

    arch: str
    state_size: int
    goal_size: int
    action_size: int

    @property
    def has_encoders(self) -> bool:
        """Whether ``phi``/``psi`` exist (needed by the representation and relational losses)."""
        ...

    def init(self, key: jax.Array) -> dict[str, Params]:
        """Fresh parameters ``{"actor": ...}`` (and the encoders')."""
        ...

    def network(self, name: str) -> Network:
        """``actor``, ``sa_encoder`` or ``goal_encoder``: an object with ``num_params()`` and ``flops_per_sample()``."""
        ...

    def policy(self, params: Params, state: jax.Array, goal: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``actor params, [B, S], [B, G] -> mean [B, A], log_std [B, A]`` of the pre-tanh Gaussian
        (``log_std`` within ``[-5, 2]``)."""
        ...

    def deterministic_action(self, params: Params, state: jax.Array, goal: jax.Array) -> jax.Array:
        """``tanh(mean)`` in [-1, 1]: the action evaluation and the ONNX export use."""
        ...

    def phi(self, params: Params, state: jax.Array, action: jax.Array) -> jax.Array:
        """``sa_encoder params, [B, S], [B, A] -> [B, repr_dim]``."""
        ...

    def psi(self, params: Params, goal: jax.Array) -> jax.Array:
        """``goal_encoder params, [B, G] -> [B, repr_dim]``."""
        ...

    def num_params(self) -> dict[str, int]:
        """Parameters per network (``actor`` and, with encoders, ``sa_encoder``, ``goal_encoder``)."""
        ...

    def flops_per_action(self) -> int:
        """FLOPs of one deterministic action (Dense layers, 2 per multiply-add)."""
        ...

    def describe(self) -> dict[str, Any]:
        """A short summary for reports: ``arch`` and what sizes it has (``actor_depth``, ``actor_width``, ...)."""
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
        return {"arch": architecture_name(type(self)), **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        return cls(**{k: v for k, v in d.items() if k != "arch"})


@dataclasses.dataclass(frozen=True)
class Interface:
    """The sizes a student is built for: what it observes and emits (the task's, or a sensor model's)."""

    state_size: int
    goal_size: int
    action_size: int
    repr_dim: int = 64

    @classmethod
    def of(cls, nets: Any) -> "Interface":
        """The interface of existing networks (a teacher's): its sizes and representation size."""
        return cls(nets.state_size, nets.goal_size, nets.action_size, getattr(nets, "repr_dim", None) or 64)


@dataclasses.dataclass(frozen=True)
class Size:
    """How big a student is, as the ``distill`` flags say: ``depth``/``width`` for every network unless
    the actor's or the critic's own value is given; ``activation`` for architectures that choose one."""

    depth: int
    width: int
    actor_depth: Optional[int] = None
    critic_depth: Optional[int] = None
    actor_width: Optional[int] = None
    critic_width: Optional[int] = None
    activation: str = "swish"

    def check(self, arch: str, flag: str = "--arch") -> None:
        """Refuse, in one line, a size ``arch`` cannot be built at (before any work: tiny stand-in sizes)."""
        build_student(arch, Interface(1, 1, 1, 1), self, flag)

    def sizes(self) -> dict[str, int]:
        """``actor_depth``, ``actor_width``, ``critic_depth``, ``critic_width`` with the defaults applied."""
        pick = lambda v, d: d if v is None else v  # noqa: E731
        return dict(actor_depth=pick(self.actor_depth, self.depth), actor_width=pick(self.actor_width, self.width),
                    critic_depth=pick(self.critic_depth, self.depth), critic_width=pick(self.critic_width, self.width))


Builder = Callable[[Interface, Size], PolicyNetworks]


def is_recurrent(nets: Any) -> bool:
    """Whether ``nets`` carries a hidden state between steps (``carry_size``, ``initial_carry``, ``step``)."""
    return int(getattr(nets, "carry_size", 0) or 0) > 0 and callable(getattr(nets, "step", None))


class ArchitectureError(UserError):
    """An ``--arch`` that is not registered, cannot be imported, or cannot be built (one line, exit 2)."""


@dataclasses.dataclass(frozen=True)
class Architecture:
    name: str
    from_dict: Callable[[dict[str, Any]], PolicyNetworks]
    build: Optional[Builder] = None
    description: str = ""


_ARCHITECTURES: dict[str, Architecture] = {}
_NAMES: dict[type, str] = {}
ENTRY_POINT_GROUP = "deepdistill.architectures"


def register_architecture(name: str, from_dict: Callable[[dict[str, Any]], PolicyNetworks],
                          build: Optional[Builder] = None, description: str = "", cls: Optional[type] = None) -> None:
    """Make ``networks.json`` files with ``"arch": name`` loadable (``from_dict(d)`` rebuilds the
    networks) and, with ``build(interface, size)``, ``distill --arch name`` buildable. ``cls``: the
    networks class, whose ``to_dict()`` then records ``name``."""
    _ARCHITECTURES[name] = Architecture(name, from_dict, build, description)
    if cls is not None:
        _NAMES[cls] = name


def register_class(cls: type, name: Optional[str] = None, description: str = "") -> str:
    """Register a :class:`NetworksBase` subclass (its ``from_dict`` and, if it has one, its ``build``
    classmethod) under ``name`` (default: its ``arch``, else its import path); returns the name."""
    name = name or getattr(cls, "arch", None) or f"{cls.__module__}:{cls.__qualname__}"
    register_architecture(name, cls.from_dict, getattr(cls, "build", None), description or (cls.__doc__ or "").strip().split("\n")[0], cls)
    return name


def architecture_name(cls: type) -> str:
    """The name ``networks.json`` records for ``cls``: its registered name, else its import path."""
    for klass in cls.__mro__:
        if klass in _NAMES:
            return _NAMES[klass] if klass is cls else f"{cls.__module__}:{cls.__qualname__}"
    return f"{cls.__module__}:{cls.__qualname__}"


def architectures(buildable: bool = False) -> tuple[str, ...]:
    """Registered architecture names (the built-in ones and installed plugins'; classes loaded by their
    ``module:Class`` path are not choices to offer); ``buildable``: only those ``distill --arch`` can build."""
    _load_builtin()
    names = {n for n, a in _ARCHITECTURES.items() if (a.build is not None or not buildable) and ":" not in n}
    from deepdistill.core.plugins import entry_point_names

    names.update(entry_point_names(ENTRY_POINT_GROUP))
    return tuple(sorted(names))


def get_architecture(name: str, flag: str = "--arch") -> Architecture:
    """The registered architecture ``name``, importing ``module:Class`` or an installed plugin first."""
    _load_builtin()
    if name in _ARCHITECTURES:
        return _ARCHITECTURES[name]
    from deepdistill.core.plugins import PluginError, entry_point_names, load_entry_point, load_object

    try:
        if ":" in name:
            obj = load_object(name, flag)
        elif name in entry_point_names(ENTRY_POINT_GROUP):
            obj = load_entry_point(ENTRY_POINT_GROUP, name, flag)
        else:
            raise ArchitectureError(f"{flag} {name!r} is not a registered architecture; choose one of: "
                                    f"{', '.join(architectures())}, or give your own as module:Class")
    except PluginError as e:
        raise ArchitectureError(str(e)) from None
    if not (isinstance(obj, type) and callable(getattr(obj, "from_dict", None))):
        raise ArchitectureError(f"{flag} {name!r} is not a networks class (a NetworksBase subclass with from_dict "
                                f"and build; see student/interface.py)")
    register_class(obj, name)
    return _ARCHITECTURES[name]


def networks_from_dict(d: dict[str, Any]) -> PolicyNetworks:
    """Rebuild networks from their ``to_dict()`` (a ``networks.json`` without ``arch`` is ``residual``)."""
    arch = get_architecture(d.get("arch", "residual"), "networks.json arch")
    return arch.from_dict({k: v for k, v in d.items() if k != "arch"})


def build_student(arch: str, interface: Interface, size: Size, flag: str = "--arch") -> PolicyNetworks:
    """A student of architecture ``arch`` built for ``interface`` at ``size`` (the architecture's own
    builder; a size it cannot take is an :class:`ArchitectureError` naming the flag)."""
    a = get_architecture(arch, flag)
    if a.build is None:
        raise ArchitectureError(f"{flag} {arch!r} cannot be built from --depth/--width (it has no build method); "
                                f"pass its networks from Python: distill(cfg, student=...)")
    try:
        return a.build(interface, size)
    except ValueError as e:
        raise ArchitectureError(f"{flag} {arch}: {e}") from None


def _load_builtin() -> None:
    from deepdistill.student import gru, mlp, nnx, residual  # noqa: F401  (register on import)


def make_student(arch: str, teacher: PolicyNetworks, depth: int, width: int, actor_depth: Optional[int] = None,
                 critic_depth: Optional[int] = None, actor_width: Optional[int] = None,
                 critic_width: Optional[int] = None, **options: Any) -> PolicyNetworks:
    """A student of ``arch`` with the teacher's interface sizes (state, goal, action and
    representation size): :func:`build_student` for callers that hold a teacher."""
    size = Size(depth, width, actor_depth, critic_depth, actor_width, critic_width, **options)
    return build_student(arch, Interface.of(teacher), size)
