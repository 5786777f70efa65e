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
=====================  ==========================================================================

Schema 1 files (without the schema-2 fields) still load; they have no native controller.

The fields must agree with one another (:func:`check_consistency`): a numeric, ordered action
range; ``goal_size`` goal indices inside the observation; ``env_spec`` naming ``task`` and repeating
its sizes, goal indices and action range.

The policy maps ``observation [B, S], goal [B, G]`` (float32) to ``action [B, A]``:
``tanh(mean)`` of the actor, mapped linearly from ``[-1, 1]`` into ``[action_low, action_high]``.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Mapping, Optional

from deepdistill.core.errors import UserError

SCHEMA_VERSION = 2
PREFIX = "deepdistill."
MODEL_KINDS = ("policy", "sa_encoder", "goal_encoder")

REQUIRED = (
    "schema_version",
    "model",
    "task",
    "env_spec",
    "observation_size",
    "goal_size",
    "action_size",
    "goal_indices",
    "action_low",
    "action_high",
    "success_threshold",
    "inputs",
    "outputs",
    "architecture",
    "provenance",
    "deepdistill_version",
    "parity",
)
REQUIRED_V2 = ("observation_names", "goal_names", "controller")


class MetadataError(UserError):
    """A model file lacks our metadata, or carries a version or shape this code cannot use."""


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
    if not isinstance(version, int) or version < 1:
        raise MetadataError(f"{where}: metadata has no valid schema_version ({version!r})")
    if version > SCHEMA_VERSION:
        raise MetadataError(
            f"{where}: metadata schema {version} is newer than this reader's ({SCHEMA_VERSION}); upgrade deepdistill"
        )
    missing = [k for k in REQUIRED + (REQUIRED_V2 if version >= 2 else ()) if k not in meta]
    if missing:
        raise MetadataError(f"{where}: metadata lacks {', '.join(missing)}; re-export the run with `export-onnx`")
    if meta["model"] not in MODEL_KINDS:
        raise MetadataError(f"{where}: unknown model kind {meta['model']!r} (expected one of {MODEL_KINDS})")
    for k in ("observation_size", "goal_size", "action_size"):
        if not isinstance(meta[k], int) or meta[k] < 1:
            raise MetadataError(f"{where}: metadata {k}={meta[k]!r} is not a positive integer")
    check_consistency(meta, where)
    return meta


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


def graph_digest(model_bytes: bytes) -> Optional[str]:
    """SHA-256 of the serialized ``graph`` field of an ONNX ``ModelProto`` (all nodes and weights),
    read with a minimal protobuf walker so that a controller needs neither onnx nor JAX; ``None``
    if the bytes are not a well-formed ModelProto with one graph."""
    graphs = [value for field, value in _fields(model_bytes) if field == _MODEL_GRAPH_FIELD]
    if len(graphs) != 1 or graphs[0] is None:
        return None
    return hashlib.sha256(graphs[0]).hexdigest()


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
