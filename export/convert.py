"""JAX networks -> lean ONNX graphs with jax2onnx.

Each exported model is a pure function of its named inputs with the parameters baked in as
initializers (numpy constants closed over, so nothing about them is traced): no parameter, RNG or
key inputs. What is traced comes from the networks' interface (``PolicyNetworks.export_fn``): the
residual MLP unrolls shallow networks block by block and runs deeper ones (``max_unrolled_depth``)
in one ``lax.scan`` -> one ONNX ``Loop``, so the trace, the file and the export time do not grow
with depth. ``graph.simplify`` then fuses each bias into its ``Gemm`` and turns the Loop's stacked
parameters into outer-scope references.

The policy head is pruned to what the deterministic action needs: the actor's ``mean`` only
(``log_std`` is never computed), then ``tanh`` and the affine map into ``[action_low,
action_high]`` (omitted when the range is ``[-1, 1]``).

Networks trained with ``matmul_dtype="bfloat16"`` are exported with float32 math (the parameters
are float32 already): the ONNX model and its parity reference both compute in float32, so parity
holds at the usual float32 tolerance, and both differ from the bf16 training-time forward by bf16
rounding (about 1e-2 relative; tests/test_networks.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import onnx

from deepdistill.export import graph
from deepdistill.export.compat import jax2onnx_converter
from deepdistill.envs import EnvSpec
from deepdistill.envs.observation import ObservationModel
from deepdistill.student.interface import PolicyNetworks, is_recurrent


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
    (the training code path, jitted) that the parity check compares it with. A recurrent policy has
    two outputs (``action``, ``h_out``) and its ``fn``/``reference`` return both."""

    name: str  # file stem and metadata "model": policy | sa_encoder | goal_encoder
    network: str  # which of the CRL networks: actor | sa_encoder | goal_encoder
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    fn: Callable[..., Any]
    reference: Callable[..., Any]
    looped: bool  # blocks in one ONNX Loop (else unrolled)

    @property
    def output(self) -> Port:
        return self.outputs[0]

    @property
    def recurrent(self) -> bool:
        return len(self.outputs) > 1


def model_defs(nets: PolicyNetworks, params: dict, spec: EnvSpec, max_unrolled_depth: int = 32, encoders: bool = True,
               observation: Optional[ObservationModel] = None) -> list[ModelDef]:
    """The policy (and, when ``nets`` has them, the two encoders) with ``params``, in ``spec``'s
    action range. Each architecture says what to trace (:meth:`PolicyNetworks.export_fn`). The
    ``observation`` input is what the policy observes (``observation``: a student's sensor input;
    default the task's state)."""
    S, G, A = spec.state_size, spec.goal_size, spec.action_size
    if observation is not None:
        S = observation.input_size
    if getattr(nets, "matmul_dtype", "float32") != "float32":  # exported (and checked) in float32
        nets = dataclasses.replace(nets, matmul_dtype="float32")
    consts = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    scale = (spec.action_high - spec.action_low) / 2.0
    offset = (spec.action_high + spec.action_low) / 2.0

    def to_range(a):
        return a if (scale, offset) == (1.0, 0.0) else a * np.float32(scale) + np.float32(offset)

    if observation is None or observation.is_identity(spec.state_size):
        obs = Port("observation", S, f"robot state: the first {S} entries of the {spec.name} observation")
    else:
        obs = Port("observation", S, f"the student's input: its last {observation.history} frame(s) of "
                   f"{', '.join(observation.term_names)}" + (" and previous actions" if observation.history_actions else "")
                   + " (metadata observation_model.input_layout)")
    goal = Port("goal", G, f"goal: the last {G} entries of the {spec.name} observation (state[goal_indices] when reached)")
    action = Port("action", A, f"deterministic action tanh(mean) in [{spec.action_low}, {spec.action_high}]")

    mean_fn, actor_loop = nets.export_fn("actor", consts["actor"], max_unrolled_depth)
    if is_recurrent(nets):
        H = int(nets.carry_size)
        h_in = Port("h_in", H, "hidden state: h_out of the previous control step (zeros at an episode start)")
        h_out = Port("h_out", H, "hidden state after this step: feed it back as h_in at the next control step")

        def policy_fn(observation, goal, h_in):
            mean, h = mean_fn(observation, goal, h_in)
            return to_range(jnp.tanh(mean)), h

        def reference(p, o, g, h):
            (mean, _), h = nets.step(p, h, o, g)
            return to_range(jnp.tanh(mean)), h

        defs = [ModelDef("policy", "actor", (obs, goal, h_in), (action, h_out), policy_fn, _bind(reference, params["actor"]),
                         actor_loop)]
    else:
        defs = [
            ModelDef(
                "policy", "actor", (obs, goal), (action,),
                lambda observation, goal: to_range(jnp.tanh(mean_fn(observation, goal))),
                _bind(lambda p, o, g: to_range(nets.deterministic_action(p, o, g)), params["actor"]), actor_loop,
            )
        ]
    if encoders and nets.has_encoders:
        act_in = Port("action", A, "action in the actor's tanh scale [-1, 1], as phi(s, a) was trained on")
        repr_dim = getattr(nets, "repr_dim", None)
        sa_fn, sa_loop = nets.export_fn("sa_encoder", consts["sa_encoder"], max_unrolled_depth)
        g_fn, g_loop = nets.export_fn("goal_encoder", consts["goal_encoder"], max_unrolled_depth)
        defs += [
            ModelDef("sa_encoder", "sa_encoder", (obs, act_in), (Port("phi", repr_dim, "representation phi(s, a)"),),
                     sa_fn, _bind(nets.phi, params["sa_encoder"]), sa_loop),
            ModelDef("goal_encoder", "goal_encoder", (goal,), (Port("psi", repr_dim, "representation psi(g)"),),
                     g_fn, _bind(nets.psi, params["goal_encoder"]), g_loop),
        ]
    return defs


def _bind(fn: Callable[..., jax.Array], params: Any) -> Callable[..., jax.Array]:
    """``fn(params, *inputs)`` jitted with the parameters as an argument (not baked-in constants:
    a depth-1,024 network would otherwise be folded into the compiled program)."""
    jitted = jax.jit(fn)
    return lambda *inputs: jitted(params, *inputs)


def to_onnx_model(d: ModelDef, opset: int) -> onnx.ModelProto:
    """Trace ``d.fn`` with a dynamic batch ``B`` and return the simplified ONNX model."""
    to_onnx = jax2onnx_converter()
    model = to_onnx(
        d.fn,
        [("B", p.size) for p in d.inputs],
        model_name=d.name,
        opset=opset,
        normalization_mode="prefer_native",
        input_names=[p.name for p in d.inputs],
        output_names=[p.name for p in d.outputs],
        return_mode="proto",
    )
    graph.simplify(model)
    names = [i.name for i in model.graph.input]
    if names != [p.name for p in d.inputs] or [o.name for o in model.graph.output] != [p.name for p in d.outputs]:
        raise RuntimeError(f"{d.name}: jax2onnx produced inputs {names}; expected only {[p.name for p in d.inputs]}")
    return model
