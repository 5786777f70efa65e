"""The metadata contract of an exported model (standard library only: the runtime reads it too).

Every exported ``.onnx`` carries its description in ``metadata_props``: one entry per field, the
key prefixed with ``deepdistill.`` and the value JSON-encoded, so any ONNX tool (or a controller in
another language) can read it without our code. Fields of every model:

=====================  ==========================================================================
``schema_version``     integer; bumped when a field changes meaning (readers refuse newer ones)
``model``              ``"policy"``, ``"sa_encoder"`` or ``"goal_encoder"``
``task``               registered task name (``point_maze``, ...)
``env_spec``           the task's full ``EnvSpec`` record
``observation_size``   S: entries of the robot state, the first S entries of the env observation
``goal_size``          G: entries of the goal, the last G entries of the env observation
``action_size``        A
``goal_indices``       the goal is ``state[goal_indices]`` when reached
``action_low/high``    the action range (the policy's output is already inside it)
``success_threshold``  the task's success radius (distance in goal space)
``input_normalization``  how inputs are scaled before the graph (today: none, raw values)
``inputs/outputs``     ``[{"name", "shape" (with "B" for the batch), "description"}]``
``architecture``       ``{"network": "actor" | ..., "arch": "residual" | "mlp" | "nnx", "depth", "width",
                       "num_params", "networks": the networks' to_dict() (networks.json), "blocks_as":
                       "unrolled" | "loop"}`` (files before 0.2: ``crl_networks`` for ``networks``)
``provenance``         ``{"run_kind", "run", "step", "teacher": {"run", "step", "depth", "width"}}``
``deepdistill_version``  version that wrote the file
``parity``             ``{"tolerance", "max_abs_err", "random": {...}, "task": {...}}`` against JAX
``observation_names``  (schema 2) a name per robot-state entry (``state[i]`` when the task has none)
``goal_names``         (schema 2) a name per goal entry: ``observation_names[goal_indices]``
``controller``         (schema 2) how a native MuJoCo controller drives the robot from ``task.xml``
                       (observation recipe, actuators, action map, control rate, episode starts and
                       goals; see :mod:`deepdistill.export.contract`), or ``{"native": false,
                       "reason"}`` for tasks without one
``weights_sha256``     SHA-256 of the serialized graph (nodes and every initializer, i.e. all the
                       weights): :func:`graph_digest`; the runtime refuses a file whose graph no
                       longer matches it (files written before it existed have none)
``content_sha256``     SHA-256 of the metadata (every field but this one) and the graph:
                       :func:`content_digest`; the runtime refuses a file whose metadata or weights
                       were edited after export (schema-2 files written before it existed have none
                       and load as before; from schema 3 on it is required)
``observation_model``  (schema 3) what the policy sees
                       (:class:`deepdistill.envs.observation.ObservationModel`): its ``terms``
                       (name, ``state_indices`` into the task's state, units, meaning, the training
                       ``noise_std``), ``frame_size``, ``history`` K, ``history_actions``,
                       ``input_size`` and ``input_layout`` of the ``observation`` input (K frames
                       oldest first, then K previous actions oldest first), ``initial_history``,
                       ``action_delay`` and its ``action_delay_semantics``, ``task_noise``. A policy
                       that sees the task's state has every term, K = 1, no actions, no delay
``recurrent``          (schema 3) ``null``, or ``{"hidden_size", "input": "h_in", "output": "h_out",
                       "initial"}`` for a policy that carries a hidden state: feed ``h_out`` back as
                       ``h_in`` at the next control step, zeros at every episode start
=====================  ==========================================================================

Schema 1 files (without the schema-2 fields) still load; they have no native controller. Schema 2
files load as policies that see the task's state (no history, no memory). A reader of an older schema
refuses a newer file in one line (its ``schema_version`` is newer than the reader's).

Every field's type, range and finiteness, and from which schema version on it is required, are
declared once in :mod:`deepdistill.export.schema` (the controller record down to each recipe
entry and goal distribution); :func:`decode` checks a file against it at load, and a failure is one
line naming the field and putting the fault in the file's metadata.

The fields must agree with one another (:func:`check_consistency`): a numeric, ordered action
range; ``goal_size`` goal indices inside the observation; ``env_spec`` naming ``task`` and repeating
its sizes, goal indices and action range.

The policy maps ``observation [B, I], goal [B, G]`` (float32; ``I = observation_model.input_size``,
S for a policy that sees the task's state) to ``action [B, A]``: ``tanh(mean)`` of the actor, mapped
linearly from ``[-1, 1]`` into ``[action_low, action_high]``; a recurrent one also takes ``h_in [B, H]``
and returns ``h_out [B, H]``.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Mapping, Optional

from deepdistill.core.errors import UserError
from deepdistill.export import schema

SCHEMA_VERSION = 3
PREFIX = "deepdistill."
MODEL_KINDS = schema.MODEL_KINDS


class MetadataError(UserError):
    """A model file lacks our metadata, or carries a version or shape this code cannot use."""


def _required(version: int) -> tuple[str, ...]:
    return tuple(k for k, f in schema.METADATA.items() if f.since == version)


REQUIRED = _required(1)  # every file
REQUIRED_V2 = _required(2)  # from schema 2 on
CONTENT_DIGEST = "content_sha256"


def encode(meta: Mapping[str, Any]) -> dict[str, str]:
    """``{field: value}`` -> ``{"deepdistill.<field>": json}`` for ``onnx.ModelProto.metadata_props``."""
    return {PREFIX + k: json.dumps(v, sort_keys=True) for k, v in meta.items()}


def decode(props: Mapping[str, str], where: str = "model") -> dict[str, Any]:
    """Inverse of :func:`encode` (other keys are ignored); checks the schema and required fields."""
    meta: dict[str, Any] = {}
    for key, raw in props.items():
        if key.startswith(PREFIX):
            try:
                meta[key[len(PREFIX):]] = json.loads(raw)
            except json.JSONDecodeError as e:
                raise MetadataError(f"{where}: metadata field {key!r} is not valid JSON ({e})") from None
    if not meta:
        raise MetadataError(
            f"{where}: no deepdistill metadata; this file was not written by `export-onnx` "
            f"(export a run with `export-onnx --student runs/<student>`)"
        )
    version = meta.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MetadataError(f"{where}: metadata has no valid schema_version ({version!r})")
    if version > SCHEMA_VERSION:
        raise MetadataError(
            f"{where}: metadata schema {version} is newer than this reader's ({SCHEMA_VERSION}); upgrade deepdistill"
        )
    try:
        schema.check_metadata(meta)
    except schema.SchemaError as e:
        raise MetadataError(field_error(where, e.path, e.problem)) from None
    check_consistency(meta, where)
    return meta


def field_error(where: str, path: str, problem: str) -> str:
    """The one-line message of a metadata field that breaks the schema: it names the field and puts the
    fault in the file's metadata (not in task.xml, nor in the caller's inputs)."""
    what = f"metadata lacks {path}" if problem == "is missing" else f"metadata field {path} {problem}"
    return f"{where}: {what}: the fault is in this file's metadata (edited or damaged); re-export the run with `export-onnx`"


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_index(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_consistency(meta: Mapping[str, Any], where: str = "model") -> None:
    """The metadata fields must agree with one another (an edited or half-written file does not)."""
    low, high = meta["action_low"], meta["action_high"]
    if not (_is_number(low) and _is_number(high)):
        raise MetadataError(f"{where}: metadata action range [{low!r}, {high!r}] is not two finite numbers")
    if not low < high:
        raise MetadataError(f"{where}: metadata action range [{low}, {high}] is empty")
    if not _is_number(meta["success_threshold"]) or meta["success_threshold"] < 0:
        raise MetadataError(f"{where}: metadata success_threshold={meta['success_threshold']!r} is not a number >= 0")
    gi, s, g = meta["goal_indices"], meta["observation_size"], meta["goal_size"]
    if not isinstance(gi, list) or len(gi) != g or not all(_is_index(i) and 0 <= i < s for i in gi):
        raise MetadataError(f"{where}: metadata goal_indices={gi!r} must be {g} (goal_size) indices into the "
                            f"observation of size {s}")
    if not isinstance(meta["task"], str):
        raise MetadataError(f"{where}: metadata task={meta['task']!r} is not a task name")
    spec = meta["env_spec"]
    if not isinstance(spec, dict):
        raise MetadataError(f"{where}: metadata env_spec is not a record")
    pairs = {"name": "task", "state_size": "observation_size", "goal_size": "goal_size", "action_size": "action_size",
             "goal_indices": "goal_indices", "action_low": "action_low", "action_high": "action_high",
             "success_threshold": "success_threshold"}
    for field, top in pairs.items():
        if field in spec and spec[field] != meta[top]:
            raise MetadataError(f"{where}: metadata {top}={meta[top]!r} disagrees with env_spec.{field}={spec[field]!r} "
                                f"(the file was edited or damaged; re-export the run)")
    digest = meta.get("weights_sha256")
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64):
        raise MetadataError(f"{where}: metadata weights_sha256={digest!r} is not a SHA-256 hex digest")


def graph_bytes(model_bytes: bytes) -> Optional[bytes]:
    """The serialized ``graph`` field of an ONNX ``ModelProto`` (all nodes and weights), read with a
    minimal protobuf walker so that a controller needs neither onnx nor JAX; ``None`` if the bytes are
    not a well-formed ModelProto with one graph."""
    graphs = [value for field, value in _fields(model_bytes) if field == _MODEL_GRAPH_FIELD]
    if len(graphs) != 1 or graphs[0] is None:
        return None
    return graphs[0]


def graph_digest(model_bytes: bytes) -> Optional[str]:
    """SHA-256 of :func:`graph_bytes` (``weights_sha256``); ``None`` for a malformed file."""
    graph = graph_bytes(model_bytes)
    return None if graph is None else hashlib.sha256(graph).hexdigest()


def content_digest(props: Mapping[str, str], graph: bytes) -> str:
    """``content_sha256``: SHA-256 over the metadata and the graph. The metadata part is every
    ``deepdistill.*`` entry of ``metadata_props`` except ``deepdistill.content_sha256``, sorted by key,
    each as ``key NUL value NUL`` (the stored JSON text, byte for byte, UTF-8); then the serialized graph.
    Any language can recompute it from the file without parsing the JSON."""
    h = hashlib.sha256()
    for key in sorted(k for k in props if k.startswith(PREFIX) and k != PREFIX + CONTENT_DIGEST):
        h.update(key.encode() + b"\0" + props[key].encode() + b"\0")
    h.update(graph)
    return h.hexdigest()


_MODEL_GRAPH_FIELD = 7  # onnx.proto: ModelProto.graph


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, Optional[bytes]]]:
    """Top-level ``(field number, bytes of a length-delimited value or None)`` of a protobuf message."""
    out, i = [], 0
    try:
        while i < len(buf):
            key, i = _varint(buf, i)
            field, wire = key >> 3, key & 7
            if wire == 0:
                _, i = _varint(buf, i)
                out.append((field, None))
            elif wire == 1:
                i += 8
                out.append((field, None))
            elif wire == 2:
                n, i = _varint(buf, i)
                if i + n > len(buf):
                    raise ValueError("truncated field")
                out.append((field, bytes(buf[i:i + n])))
                i += n
            elif wire == 5:
                i += 4
                out.append((field, None))
            else:
                raise ValueError(f"wire type {wire}")
    except ValueError:
        return []
    return out


def input_sizes(meta: Mapping[str, Any]) -> dict[str, int]:
    """``{input name: feature size}`` from the ``inputs`` field."""
    return {spec["name"]: int(spec["shape"][-1]) for spec in meta["inputs"]}
