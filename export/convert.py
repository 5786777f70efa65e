"""JAX networks -> lean ONNX graphs with jax2onnx.

Each exported model is a pure function of its named inputs with the parameters baked in as
initializers (numpy constants closed over, so nothing about them is traced): no parameter, RNG or
key inputs. Shallow networks are unrolled block by block; networks deeper than
``max_unrolled_depth`` layers run their residual blocks in one ``lax.scan`` -> one ONNX ``Loop``, so
the trace, the file and the export time do not grow with depth. ``graph.simplify`` then fuses each
bias into its ``Gemm`` and turns the Loop's stacked parameters into outer-scope references.

The policy head is pruned to what the deterministic action needs: the actor's output layer keeps
only its ``mean`` columns (``log_std`` is never computed), then ``tanh`` and the affine map into
``[action_low, action_high]`` (omitted when the range is ``[-1, 1]``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import onnx

from deepdistill.export import graph
from deepdistill.teacher.envs import EnvSpec
from deepdistill.teacher.networks import LAYERS_PER_BLOCK, CRLNetworks, ResidualMLP, _dense_ln_swish


@dataclasses.dataclass(frozen=True)
class Port:
    """One named input or output ``[B, size]`` of an exported model."""

    name: str
    size: int
    description: str

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": ["B", self.size], "dtype": "float32", "description": self.description}


@dataclasses.dataclass(frozen=True)
class ModelDef:
    """What one exported file computes: ``fn`` is traced by jax2onnx, ``reference`` is the JAX model
    (the training code path, jitted) that the parity check compares it with."""

    name: str  # file stem and metadata "model": policy | sa_encoder | goal_encoder
    network: str  # which of the CRL networks: actor | sa_encoder | goal_encoder
    inputs: tuple[Port, ...]
    output: Port
    fn: Callable[..., jax.Array]
    reference: Callable[..., jax.Array]
    looped: bool  # blocks in one ONNX Loop (else unrolled)


def model_defs(nets: CRLNetworks, params: dict, spec: EnvSpec, max_unrolled_depth: int = 32, encoders: bool = True) -> list[ModelDef]:
    """The policy (and the two encoders) of ``nets`` with ``params``, in ``spec``'s action range."""
    S, G, A = spec.state_size, spec.goal_size, spec.action_size
    consts = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    scale = (spec.action_high - spec.action_low) / 2.0
    offset = (spec.action_high + spec.action_low) / 2.0

    def to_range(a):
        return a if (scale, offset) == (1.0, 0.0) else a * np.float32(scale) + np.float32(offset)

    obs = Port("observation", S, f"robot state: the first {S} entries of the {spec.name} observation")
    goal = Port("goal", G, f"goal: the last {G} entries of the {spec.name} observation (state[goal_indices] when reached)")
    action = Port("action", A, f"deterministic action tanh(mean) in [{spec.action_low}, {spec.action_high}]")

    actor_loop = nets.actor_depth > max_unrolled_depth
    mean_mlp = dataclasses.replace(nets.actor, out_dim=A)  # the mean half of the actor's output layer
    mean_params = {**consts["actor"], "output": {k: v[..., :A] for k, v in consts["actor"]["output"].items()}}

    def policy(observation, goal):
        x = jnp.concatenate([observation, goal], axis=-1)
        return to_range(jnp.tanh(mlp_forward(mean_mlp, mean_params, x, actor_loop)))

    defs = [
        ModelDef(
            "policy", "actor", (obs, goal), action, policy,
            _bind(lambda p, o, g: to_range(nets.deterministic_action(p, o, g)), params["actor"]), actor_loop,
        )
    ]
    if encoders:
        critic_loop = nets.critic_depth > max_unrolled_depth
        act_in = Port("action", A, "action in the actor's tanh scale [-1, 1], as phi(s, a) was trained on")
        phi = Port("phi", nets.repr_dim, "representation phi(s, a)")
        psi = Port("psi", nets.repr_dim, "representation psi(g)")
        sa, gc = consts["sa_encoder"], consts["goal_encoder"]
        defs += [
            ModelDef(
                "sa_encoder", "sa_encoder", (obs, act_in), phi,
                lambda observation, action: mlp_forward(nets.sa_encoder, sa, jnp.concatenate([observation, action], -1), critic_loop),
                _bind(nets.phi, params["sa_encoder"]), critic_loop,
            ),
            ModelDef(
                "goal_encoder", "goal_encoder", (goal,), psi,
                lambda goal: mlp_forward(nets.goal_encoder, gc, goal, critic_loop),
                _bind(nets.psi, params["goal_encoder"]), critic_loop,
            ),
        ]
    return defs


def _bind(fn: Callable[..., jax.Array], params: Any) -> Callable[..., jax.Array]:
    """``fn(params, *inputs)`` jitted with the parameters as an argument (not baked-in constants:
    a depth-1,024 network would otherwise be folded into the compiled program)."""
    jitted = jax.jit(fn)
    return lambda *inputs: jitted(params, *inputs)


def mlp_forward(mlp: ResidualMLP, params: dict, x: jax.Array, loop: bool) -> jax.Array:
    """``mlp.apply`` for export. Unrolled: the network's own code. Looped: the same layers, with the
    stacked block parameters cut per layer beforehand (numpy), so the Loop body indexes nothing."""
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


def to_onnx_model(d: ModelDef, opset: int) -> onnx.ModelProto:
    """Trace ``d.fn`` with a dynamic batch ``B`` and return the simplified ONNX model."""
    to_onnx = _jax2onnx()
    model = to_onnx(
        d.fn,
        [("B", p.size) for p in d.inputs],
        model_name=d.name,
        opset=opset,
        normalization_mode="prefer_native",
        input_names=[p.name for p in d.inputs],
        output_names=[d.output.name],
        return_mode="proto",
    )
    graph.simplify(model)
    names = [i.name for i in model.graph.input]
    if names != [p.name for p in d.inputs] or [o.name for o in model.graph.output] != [d.output.name]:
        raise RuntimeError(f"{d.name}: jax2onnx produced inputs {names}; expected only {[p.name for p in d.inputs]}")
    return model


_PLUGINS_READY = False


def _jax2onnx() -> Callable[..., Any]:
    """``jax2onnx.to_onnx``, loading only the jax and flax lowerings.

    On first use jax2onnx imports every plugin it ships; the equinox ones build example modules at
    import time, which compiles ~70 XLA programs (13 s on a 2-core CPU, for nothing we use). We
    import the ``jax`` and ``flax`` plugin trees ourselves and mark the registry loaded; if those
    internals moved, the full import runs as usual.
    """
    global _PLUGINS_READY
    if not _PLUGINS_READY:
        try:
            from jax2onnx.plugins import plugin_system as ps

            if not ps._already_imported_plugins:
                root = Path(ps.__file__).parent
                for tree in ("jax", "flax"):
                    ps._import_tree(root / tree, f"jax2onnx.plugins.{tree}")
                ps._already_imported_plugins = True
        except (ImportError, AttributeError):
            pass
        _PLUGINS_READY = True
    from jax2onnx import to_onnx

    return to_onnx
