"""Graph clean-up passes on the ONNX protobuf that jax2onnx writes (needs only ``onnx``).

jax2onnx lowers ``x @ W + b`` to ``Gemm(x, W, 0, beta=0)`` followed by ``Add(b)``, and a
``lax.scan`` to a ``Loop`` whose stacked parameters travel as loop-carried values passed through
an ``Identity`` every iteration. ``simplify`` rewrites both, recursively in subgraphs:

- ``hoist_loop_invariants``: a carried value the body only passes through becomes an outer-scope
  reference (no per-iteration copy of the stacked parameters);
- ``fold_gemm_bias``: ``Gemm(beta=0) -> Add(b)`` becomes one ``Gemm(x, W, b)`` when ``b`` is a
  row ``[N]`` / ``[1, N]`` (a no-op ``Expand`` or a ``Reshape`` to ``[1, N]`` in between is skipped);
- ``remove_noop_casts``: a ``Cast`` to the type its input already has;
- ``remove_dead``: nodes whose outputs nobody reads, then unused initializers.

Every pass keeps the function computed; the export's parity check runs on the rewritten graph.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Iterable, Optional

import onnx
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, numpy_helper


def simplify(model: ModelProto) -> ModelProto:
    """Apply every pass to ``model`` in place (main graph and subgraphs); returns it."""
    _simplify_graph(model.graph, outer_inits={}, is_subgraph=False)
    return model


def op_counts(model: ModelProto) -> Counter:
    """``{op_type: count}`` over the main graph and every subgraph (a ``Loop`` body counts once)."""
    counts: Counter = Counter()
    for node in _walk(model.graph):
        counts[node.op_type] += 1
    return counts


def _walk(graph: GraphProto) -> Iterable[NodeProto]:
    for node in graph.node:
        yield node
        for g in _subgraphs(node):
            yield from _walk(g)


def _subgraphs(node: NodeProto) -> list[GraphProto]:
    out = []
    for a in node.attribute:
        if a.type == AttributeProto.GRAPH:
            out.append(a.g)
        elif a.type == AttributeProto.GRAPHS:
            out.extend(a.graphs)
    return out


def _simplify_graph(graph: GraphProto, outer_inits: dict[str, onnx.TensorProto], is_subgraph: bool) -> None:
    for node in graph.node:
        if node.op_type == "Loop":
            hoist_loop_invariants(graph, node)
    inits = {**outer_inits, **{t.name: t for t in graph.initializer}}
    for node in graph.node:
        for g in _subgraphs(node):
            _simplify_graph(g, inits, is_subgraph=True)
    fold_gemm_bias(graph, inits)
    remove_noop_casts(graph, inits, is_subgraph)
    remove_dead(graph)


# --- Loop: loop-carried pass-through values -> outer-scope references -------------------------------


def hoist_loop_invariants(graph: GraphProto, loop: NodeProto) -> None:
    """Turn carried values that the body passes through unchanged into outer-scope references."""
    body = _subgraphs(loop)[0]
    n_carried = len(loop.input) - 2
    producers = {o: n for n in body.node for o in n.output}
    outer_reads = _reads(graph) | {o.name for o in graph.output}
    body_names = {v for n in body.node for v in n.output} | {i.name for i in body.input} | {t.name for t in body.initializer}
    drop = []
    for k in range(n_carried):
        inner_in = body.input[2 + k].name
        inner_out = body.output[1 + k].name
        outer_in, outer_out = loop.input[2 + k], loop.output[k]
        src = producers.get(inner_out)
        passthrough = inner_out == inner_in or (src is not None and src.op_type == "Identity" and src.input[0] == inner_in)
        if not passthrough or not outer_in or outer_out in outer_reads or outer_in in body_names:
            continue
        _rename_reads(body, inner_in, outer_in)
        drop.append(k)
    for k in reversed(drop):
        del body.input[2 + k]
        del body.output[1 + k]
        del loop.input[2 + k]
        del loop.output[k]


def _reads(graph: GraphProto) -> set[str]:
    """Names read by the nodes of ``graph`` and (as outer-scope references) by their subgraphs."""
    names = set()
    for node in graph.node:
        names.update(i for i in node.input if i)
        for g in _subgraphs(node):
            names |= _reads(g) | {o.name for o in g.output}
    return names


def _rename_reads(graph: GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for g in _subgraphs(node):
            if old not in {t.name for t in g.initializer} | {i.name for i in g.input}:
                _rename_reads(g, old, new)


# --- Gemm(beta=0) + Add(bias) -> Gemm(bias) ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Index:
    """What the bias folding needs to know about one graph."""

    inits: dict[str, onnx.TensorProto]  # this graph's initializers and those of enclosing graphs
    producers: dict[str, NodeProto]
    scalars: frozenset[str]  # integer scalar inputs of the graph (a Loop body's iteration count)

    @classmethod
    def of(cls, graph: GraphProto, inits: dict[str, onnx.TensorProto]) -> _Index:
        scalars = set()
        for v in graph.input:
            t = v.type.tensor_type
            if t.elem_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32) and t.HasField("shape") and not t.shape.dim:
                scalars.add(v.name)
        return cls(inits, {o: n for n in graph.node for o in n.output}, frozenset(scalars))


def fold_gemm_bias(graph: GraphProto, inits: dict[str, onnx.TensorProto]) -> None:
    index = _Index.of(graph, inits)
    consumers: dict[str, list[NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in graph.output}
    subgraph_reads = set().union(*(_reads(g) for n in graph.node for g in _subgraphs(n))) if graph.node else set()
    removed = set()
    for gemm in graph.node:
        if gemm.op_type != "Gemm" or len(gemm.input) != 3:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in gemm.attribute}
        if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 0.0 or attrs.get("transA", 0):
            continue
        y = gemm.output[0]
        users = consumers.get(y, [])
        if len(users) != 1 or users[0].op_type != "Add" or y in graph_outputs or y in subgraph_reads:
            continue
        add = users[0]
        other = add.input[1] if add.input[0] == y else add.input[0]
        bias = _row_bias(other, index)
        n_out = _gemm_columns(gemm, attrs, index)
        if bias is None or n_out is None or bias[1] not in (1, n_out):
            continue
        gemm.input[2] = bias[0]
        for a in gemm.attribute:
            if a.name == "beta":
                a.f = 1.0
        gemm.output[0] = add.output[0]
        removed.add(id(add))
    if removed:
        keep = [n for n in graph.node if id(n) not in removed]
        del graph.node[:]
        graph.node.extend(keep)


def _static_shape(name: str, index: _Index) -> Optional[tuple[int, ...]]:
    """Shape of an initializer, or of ``Gather(initializer, scalar, axis=0)`` (a Loop's slice)."""
    if name in index.inits:
        return tuple(index.inits[name].dims)
    node = index.producers.get(name)
    if node is not None and node.op_type == "Gather":
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        data = _static_shape(node.input[0], index)
        idx = index.inits.get(node.input[1])
        scalar = (idx is not None and len(idx.dims) == 0) or node.input[1] in index.scalars
        if data and axis == 0 and scalar:
            return data[1:]
    return None


def _const_ints(name: str, index: _Index) -> Optional[list[int]]:
    """Value of a constant int tensor: an initializer, or a Concat of initializers."""
    if name in index.inits:
        return [int(v) for v in numpy_helper.to_array(index.inits[name]).reshape(-1)]
    node = index.producers.get(name)
    if node is not None and node.op_type == "Concat":
        parts = [_const_ints(i, index) for i in node.input]
        if all(p is not None for p in parts):
            return [v for p in parts for v in p]
    return None


def _row_bias(name: str, index: _Index) -> Optional[tuple[str, int]]:
    """``(tensor name, N)`` if ``name`` is a row ``[N]`` or ``[1, N]`` usable as Gemm's ``C``."""
    node = index.producers.get(name)
    if node is not None and node.op_type == "Expand":  # Expand to the shape it already has: skip it
        target = _const_ints(node.input[1], index)
        src = index.producers.get(node.input[0])
        if src is None or src.op_type != "Reshape" or target is None:
            return None
        if _const_ints(src.input[1], index) != target:
            return None
        name, node = node.input[0], src
    if node is not None and node.op_type == "Reshape":
        target = _const_ints(node.input[1], index)
        if target is None or len(target) != 2 or target[0] != 1 or target[1] < 1:
            return None
        if _static_shape(node.input[0], index) == (target[1],):
            return node.input[0], target[1]  # Gemm broadcasts a [N] row itself
        return name, target[1]
    shape = _static_shape(name, index)
    if shape is None or len(shape) > 2 or (len(shape) == 2 and shape[0] != 1):
        return None
    if len(shape) == 0:
        return name, 1
    return name, shape[-1]


def _gemm_columns(gemm: NodeProto, attrs: dict, index: _Index) -> Optional[int]:
    shape = _static_shape(gemm.input[1], index)
    if shape is None or len(shape) != 2:
        return None
    return shape[0] if attrs.get("transB", 0) else shape[1]


# --- Cast to the type a value already has -------------------------------------------------------


def remove_noop_casts(graph: GraphProto, inits: dict[str, onnx.TensorProto], is_subgraph: bool) -> None:
    """Drop ``Cast(to=T)`` of a value already of type ``T`` (jax2onnx adds one at the end of a scan
    body). A cast that feeds a subgraph output renames that output (Loop binds outputs by position);
    the main graph's output names are the contract and stay."""
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    types.update({name: t.data_type for name, t in inits.items()})
    outputs = {o.name: o for o in graph.output}
    input_names = {i.name for i in graph.input}
    removed = set()
    for node in graph.node:
        if node.op_type != "Cast" or types.get(node.input[0]) != next((a.i for a in node.attribute if a.name == "to"), None):
            continue
        src, dst = node.input[0], node.output[0]
        if dst in outputs:
            if not is_subgraph or src in input_names or src in outputs or src in inits:
                continue
            outputs[dst].name = src
        _rename_reads(graph, dst, src)
        removed.add(id(node))
    if removed:
        keep = [n for n in graph.node if id(n) not in removed]
        del graph.node[:]
        graph.node.extend(keep)


# --- dead code -----------------------------------------------------------------------------------


def remove_dead(graph: GraphProto) -> None:
    """Drop nodes none of whose outputs is read (in this graph, its subgraphs or its outputs), then
    initializers nobody reads."""
    while True:
        live = _reads(graph) | {o.name for o in graph.output}
        keep = [n for n in graph.node if any(o in live for o in n.output if o)]
        if len(keep) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(keep)
    live = _reads(graph) | {o.name for o in graph.output}
    kept_inits = [t for t in graph.initializer if t.name in live]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    names = {v for n in graph.node for v in n.output} | {t.name for t in graph.initializer} | {i.name for i in graph.input}
    kept_vi = [v for v in graph.value_info if v.name in names]
    del graph.value_info[:]
    graph.value_info.extend(kept_vi)
