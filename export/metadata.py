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
=====================  ==========================================================================

Schema 1 files (without the last three fields) still load; they have no native controller.

The policy maps ``observation [B, S], goal [B, G]`` (float32) to ``action [B, A]``:
``tanh(mean)`` of the actor, mapped linearly from ``[-1, 1]`` into ``[action_low, action_high]``.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

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
    if not meta["action_low"] < meta["action_high"]:
        raise MetadataError(f"{where}: metadata action range [{meta['action_low']}, {meta['action_high']}] is empty")
    return meta


def input_sizes(meta: Mapping[str, Any]) -> dict[str, int]:
    """``{input name: feature size}`` from the ``inputs`` field."""
    return {spec["name"]: int(spec["shape"][-1]) for spec in meta["inputs"]}
