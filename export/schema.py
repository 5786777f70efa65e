"""The declared schema of an exported model's metadata and of its controller contract, and the one
validator that checks a file against it at load (standard library only: the runtime reads it).

Each field is one line: its type, range, finiteness, and from which ``schema_version`` on it is
required. A tagged record (``{"kind": ...}`` entries of the observation recipe, the action map and
the goal distributions; ``controller`` by ``native``) declares the fields of each tag. Cross-field
rules (sizes that must agree, indices inside the arrays they index) follow the structural check in
:func:`check_controller`. Every failure names the field by its path (``controller.episode.goals.random.r_max``)
and says that the fault is in the file's metadata (a fault in ``task.xml`` is reported by the
controller, naming that file).

Adding a field: one line in :data:`METADATA` or :data:`CONTROLLER` (with ``since=`` the schema version
that introduces it, so older files stay loadable).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Mapping, Optional

MODEL_KINDS = ("policy", "sa_encoder", "goal_encoder")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
FILE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # a plain file name beside the policy: no folders, no '..'


class SchemaError(ValueError):
    """A field breaks the schema: ``path`` names it, ``problem`` says how."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


@dataclasses.dataclass(frozen=True)
class F:
    """One field: ``kind`` is ``int``, ``number`` (finite unless ``finite=False``), ``str``, ``bool``,
    ``list`` (of ``items``), ``record`` (``fields``; ``tag`` + ``variants`` for a tagged record),
    ``map`` (any keys, ``values``) or ``any``."""

    kind: str
    since: Optional[int] = 1  # required from this schema version on; None: always optional
    nullable: bool = False
    min: Optional[float] = None
    max: Optional[float] = None
    positive: bool = False  # > 0 (numbers)
    finite: bool = True
    choices: tuple = ()
    pattern: Optional[re.Pattern] = None
    items: Optional["F"] = None
    length: Optional[int] = None
    min_length: int = 0
    fields: Optional[Mapping[str, "F"]] = None
    tag: Optional[str] = None
    variants: Optional[Mapping[Any, Mapping[str, "F"]]] = None
    values: Optional["F"] = None
    check: Optional[Callable[[Any], Optional[str]]] = None  # a record-level rule: a problem, or None

    def describe(self) -> str:
        what = {"int": "an integer", "number": "a finite number" if self.finite else "a number", "str": "a string",
                "bool": "true or false", "list": "a list", "record": "a record", "map": "a record", "any": "a value"}[self.kind]
        if self.positive:
            what += " > 0"
        elif self.min is not None:
            what += f" >= {self.min:g}"
        if self.max is not None:
            what += f" <= {self.max:g}"
        if self.length is not None:
            what += f" of {self.length}"
        return what


def Int(min: Optional[int] = None, **kw) -> F:  # noqa: A002 - the schema's own word
    return F("int", min=min, **kw)


def Num(**kw) -> F:
    return F("number", **kw)


def Str(**kw) -> F:
    return F("str", **kw)


def List(items: F, **kw) -> F:
    return F("list", items=items, **kw)


def Record(fields: Mapping[str, F], **kw) -> F:
    return F("record", fields=fields, **kw)


def Tagged(tag: str, variants: Mapping[Any, Mapping[str, F]], **kw) -> F:
    return F("record", tag=tag, variants=variants, **kw)


INDEX = Int(min=0)
OPTIONAL = dict(since=None)
NUMBERS = List(Num())


def _same_lengths(*names: str) -> Callable[[Any], Optional[str]]:
    def check(rec: Mapping[str, Any]) -> Optional[str]:
        lengths = {n: len(rec[n]) for n in names if isinstance(rec.get(n), list)}
        if len(set(lengths.values())) > 1:
            return "lists of different lengths (" + ", ".join(f"{n}: {k}" for n, k in lengths.items()) + ")"
        return None
    return check


def _ordered(low: str, high: str) -> Callable[[Any], Optional[str]]:
    def check(rec: Mapping[str, Any]) -> Optional[str]:
        lo, hi = rec.get(low), rec.get(high)
        lo, hi = (lo, hi) if isinstance(lo, list) else ([lo], [hi])
        if any(a > b for a, b in zip(lo, hi)):
            return f"{low} {rec.get(low)} exceeds {high} {rec.get(high)}"
        return None
    return check


def _start_before_stop(rec: Mapping[str, Any]) -> Optional[str]:
    return None if rec["start"] < rec["stop"] else f"start {rec['start']} is not below stop {rec['stop']}"


# --- the observation recipe, the action map, the goal distributions (deepdistill.envs.recipe) -------------

_RANGE = {"start": INDEX, "stop": Int(min=1)}
_POINT = {"body": Str(), "offset": List(Num(), length=3, **OPTIONAL), "name": Str(**OPTIONAL)}
RECIPE_ENTRY: dict[str, dict[str, F]] = {
    "qpos": _RANGE, "qvel": _RANGE, "cos_qpos": _RANGE, "sin_qpos": _RANGE,
    "qpos_sum": {"indices": List(INDEX, min_length=1), "name": Str(**OPTIONAL, nullable=True)},
    "body_point": _POINT, "body_point_vel": _POINT,
    "cinert": {}, "cvel": {}, "qfrc_actuator": {},
}
ACTION_MAP: dict[str, dict[str, F]] = {
    "affine": {"action": List(INDEX, min_length=1), "ctrl": List(INDEX, min_length=1), "scale": NUMBERS, "offset": NUMBERS},
    "qpos_delta": {"action": List(INDEX, min_length=1), "ctrl": List(INDEX, min_length=1), "qpos": List(INDEX),
                   "scale": Num(), "low": NUMBERS, "high": NUMBERS},
}
_Z = Num(**OPTIONAL, nullable=True)
_XY = List(Num(), length=2)
GOAL: dict[str, dict[str, F]] = {
    "ring": {"center": _XY, "r_min": Num(min=0), "r_max": Num(min=0), "z": _Z},
    "cells": {"cells": List(_XY, min_length=1), "cell_size": Num(positive=True), "jitter": Num(min=0), "z": _Z},
    "box": {"center": _XY, "half": Num(min=0), "z": _Z},
}
_NOISE = Record({"kind": Str(choices=("uniform", "normal")), "scale": Num(min=0), "indices": List(INDEX)},
                **OPTIONAL, nullable=True)
EPISODE = Record({
    "nq": INDEX, "nv": INDEX, "nu": INDEX,
    "qpos0": NUMBERS,
    "qvel0": List(Num(), **OPTIONAL, nullable=True),
    "ctrl0": List(Num(), **OPTIONAL, nullable=True),
    "qpos_noise": _NOISE,
    "qvel_noise": _NOISE,
    "qpos_boxes": List(Record({"indices": List(INDEX), "center": NUMBERS, "half": Num(min=0)},
                              check=_same_lengths("indices", "center")), **OPTIONAL, nullable=True),
    "goals": F("map", values=Tagged("kind", GOAL), min_length=1),
    "goal_to_qpos": Record({"qpos": List(INDEX), "goal": List(INDEX)}, check=_same_lengths("qpos", "goal"),
                           **OPTIONAL, nullable=True),
})

# --- the controller record (schema 2 on) -----------------------------------------------------------------

CONTROLLER = Tagged("native", {
    False: {"reason": Str()},
    True: {
        "task_xml": Str(pattern=FILE_NAME),
        "task_xml_sha256": Str(pattern=HEX64),
        "mujoco_version": Str(),
        "observation_recipe": List(Tagged("kind", RECIPE_ENTRY), min_length=1),
        "observation_timing": Str(),
        "actuator_names": List(Str(), min_length=1),
        "ctrl_range": List(List(Num(), length=2)),
        "action_to_ctrl": List(Tagged("kind", ACTION_MAP), min_length=1),
        "timestep": Num(positive=True),
        "n_frames": Int(min=1),
        "control_dt": Num(positive=True),
        "episode": EPISODE,
    },
}, since=2)

# --- what the policy observes, and its memory (schema 3 on) ---------------------------------------------

_TERM = Record({"name": Str(), "size": Int(min=1), "state_indices": List(INDEX, length=2), "units": Str(),
                "meaning": Str(), "noise_std": Num(min=0)})
OBSERVATION_MODEL = Record({
    "terms": List(_TERM, min_length=1),
    "frame_size": Int(min=1),
    "history": Int(min=1),
    "history_actions": F("bool"),
    "action_size": Int(min=1),
    "input_size": Int(min=1),
    "input_layout": List(Record({"part": Str(choices=("frame", "previous_action")), "age": INDEX, "start": INDEX,
                                 "stop": Int(min=1)}), min_length=1),
    "initial_history": Str(),
    "action_delay": Int(min=0),
    "action_delay_semantics": Str(),
    "noise": Str(),
    "task_noise": F("map", values=Num(min=0)),
}, since=3)
RECURRENT = Record({"hidden_size": Int(min=1), "input": Str(), "output": Str(), "initial": Str()},
                   since=3, nullable=True)

# --- every model's metadata ------------------------------------------------------------------------------

_PORT = Record({"name": Str(), "shape": List(F("any"), min_length=1)})
METADATA: dict[str, F] = {
    "schema_version": Int(min=1),
    "model": Str(choices=MODEL_KINDS),
    "task": Str(),
    "env_spec": Record({"name": Str(**OPTIONAL), "episode_length": Int(min=1, **OPTIONAL),
                        "eval_splits": List(Str(), **OPTIONAL)}),
    "observation_size": Int(min=1),
    "goal_size": Int(min=1),
    "action_size": Int(min=1),
    "goal_indices": List(INDEX),
    "action_low": Num(),
    "action_high": Num(),
    "success_threshold": Num(min=0),
    "input_normalization": Str(**OPTIONAL),
    "inputs": List(_PORT, min_length=1),
    "outputs": List(_PORT, min_length=1),  # the action, and a recurrent policy's h_out
    "architecture": Record({}),
    "provenance": Record({}),
    "deepdistill_version": Str(),
    "parity": Record({}),
    "observation_names": List(Str(), since=2),
    "goal_names": List(Str(), since=2),
    "controller": CONTROLLER,
    "weights_sha256": Str(pattern=HEX64, **OPTIONAL),
    "content_sha256": Str(pattern=HEX64, since=3),  # optional in schema 2 files (written before it existed)
    "observation_model": OBSERVATION_MODEL,
    "recurrent": RECURRENT,
}


# --- the validator -----------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate(value: Any, spec: F, path: str, version: int) -> None:
    """Raise :class:`SchemaError` at the first field of ``value`` that breaks ``spec``."""
    if value is None:
        if spec.nullable:
            return
        raise SchemaError(path, f"is null, expected {spec.describe()}")
    kind = spec.kind
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(path, f"is {_show(value)}, expected {spec.describe()}")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (spec.finite and not math.isfinite(value)):
            raise SchemaError(path, f"is {_show(value)}, expected {spec.describe()}")
    elif kind == "str":
        if not isinstance(value, str):
            raise SchemaError(path, f"is {_show(value)}, expected {spec.describe()}")
        if spec.pattern is not None and not spec.pattern.match(value):
            raise SchemaError(path, f"is {_show(value)}, not of the expected form ({spec.pattern.pattern})")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise SchemaError(path, f"is {_show(value)}, expected {spec.describe()}")
    elif kind == "list":
        if not isinstance(value, list):
            raise SchemaError(path, f"is {_show(value)}, expected {spec.describe()}")
        if spec.length is not None and len(value) != spec.length:
            raise SchemaError(path, f"has {len(value)} entries, expected {spec.length}")
        if len(value) < spec.min_length:
            raise SchemaError(path, f"has {len(value)} entries, expected at least {spec.min_length}")
        for i, item in enumerate(value):
            validate(item, spec.items, f"{path}[{i}]", version)
    elif kind in ("record", "map"):
        if not isinstance(value, dict):
            raise SchemaError(path, f"is {_show(value)}, expected a record")
        if kind == "map":
            if len(value) < spec.min_length:
                raise SchemaError(path, f"has {len(value)} entries, expected at least {spec.min_length}")
            for k, v in value.items():
                validate(v, spec.values, f"{path}.{k}", version)
        else:
            fields = spec.fields or {}
            if spec.tag is not None:
                tag = value.get(spec.tag)
                match = [k for k in spec.variants if type(k) is type(tag) and k == tag]
                if not match:
                    known = ", ".join(map(json_name, spec.variants))
                    raise SchemaError(f"{path}.{spec.tag}" if path else spec.tag,
                                      ("is missing" if spec.tag not in value else f"is {_show(tag)}") + f", expected one of {known}")
                fields = spec.variants[match[0]]
            check_fields(value, fields, path, version)
    if spec.kind in ("int", "number"):
        if spec.positive and not value > 0:
            raise SchemaError(path, f"is {_show(value)}, expected {spec.describe()}")
        if spec.min is not None and value < spec.min or spec.max is not None and value > spec.max:
            raise SchemaError(path, f"is {_show(value)}, expected {spec.describe()}")
    if spec.choices and value not in spec.choices:
        raise SchemaError(path, f"is {_show(value)}, expected one of {', '.join(map(str, spec.choices))}")
    if spec.check is not None:
        problem = spec.check(value)
        if problem:
            raise SchemaError(path, problem)


def check_fields(record: Mapping[str, Any], fields: Mapping[str, F], path: str, version: int) -> None:
    """The declared ``fields`` of ``record`` (others are left alone: newer writers may add some)."""
    for name, spec in fields.items():
        where = f"{path}.{name}" if path else name
        if name not in record:
            if spec.since is not None and version >= spec.since:
                raise SchemaError(where, "is missing")
            continue
        validate(record[name], spec, where, version)


def json_name(value: Any) -> str:
    return {True: "true", False: "false"}.get(value, repr(value)) if isinstance(value, bool) else repr(value)


# --- rules across fields ---------------------------------------------------------------------------------


def check_controller(c: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """The sizes inside a native ``controller`` record must agree with one another and with the
    policy's (after :func:`validate`); raises :class:`SchemaError` naming the field."""
    if "episode_length" not in meta["env_spec"]:
        raise SchemaError("env_spec.episode_length", "is missing")  # a native controller runs whole episodes
    ep = c["episode"]
    nq, nv, nu = ep["nq"], ep["nv"], ep["nu"]
    A, G = meta["action_size"], meta["goal_size"]

    def below(path: str, indices: list, n: int, of: str) -> None:
        bad = [i for i in indices if i >= n]
        if bad:
            raise SchemaError(path, f"index {bad[0]} is outside the {n} entries of {of}")

    def sized(path: str, values: Optional[list], n: int, of: str) -> None:
        if values is not None and len(values) != n:
            raise SchemaError(path, f"has {len(values)} entries, expected {n} ({of})")

    sized("controller.actuator_names", c["actuator_names"], nu, "controller.episode.nu")
    sized("controller.ctrl_range", c["ctrl_range"], nu, "controller.episode.nu")
    for i, (lo, hi) in enumerate(c["ctrl_range"]):
        if lo > hi:
            raise SchemaError(f"controller.ctrl_range[{i}]", f"[{lo}, {hi}] is empty")
    if not math.isclose(c["timestep"] * c["n_frames"], c["control_dt"], rel_tol=1e-6):
        raise SchemaError("controller.control_dt", f"is {c['control_dt']}, not timestep {c['timestep']} x n_frames {c['n_frames']}")
    for i, e in enumerate(c["observation_recipe"]):
        p = f"controller.observation_recipe[{i}]"
        if e["kind"] in ("qpos", "cos_qpos", "sin_qpos", "qvel"):
            n, of = (nv, "qvel") if e["kind"] == "qvel" else (nq, "qpos")
            below(f"{p}.stop", [e["stop"] - 1], n, of)
        elif e["kind"] == "qpos_sum":
            below(f"{p}.indices", e["indices"], nq, "qpos")
    written: list[int] = []
    for i, e in enumerate(c["action_to_ctrl"]):
        p = f"controller.action_to_ctrl[{i}]"
        below(f"{p}.action", e["action"], A, "the action")
        below(f"{p}.ctrl", e["ctrl"], nu, "ctrl")
        n = len(e["ctrl"])
        for name in ("action", "scale", "offset", "qpos", "low", "high"):
            if isinstance(e.get(name), list):
                sized(f"{p}.{name}", e[name], n, f"one per entry of {p}.ctrl")
        if e["kind"] == "qpos_delta":
            below(f"{p}.qpos", e["qpos"], nq, "qpos")
            problem = _ordered("low", "high")(e)
            if problem:
                raise SchemaError(p, problem)
        written += e["ctrl"]
    if sorted(written) != list(range(nu)):
        raise SchemaError("controller.action_to_ctrl", f"writes ctrl entries {sorted(written)}, expected each of the {nu} once")
    sized("controller.episode.qpos0", ep["qpos0"], nq, "controller.episode.nq")
    sized("controller.episode.qvel0", ep.get("qvel0"), nv, "controller.episode.nv")
    sized("controller.episode.ctrl0", ep.get("ctrl0"), nu, "controller.episode.nu")
    for key, n, of in (("qpos_noise", nq, "qpos"), ("qvel_noise", nv, "qvel")):
        if ep.get(key):
            below(f"controller.episode.{key}.indices", ep[key]["indices"], n, of)
    for i, box in enumerate(ep.get("qpos_boxes") or ()):
        below(f"controller.episode.qpos_boxes[{i}].indices", box["indices"], nq, "qpos")
    if ep.get("goal_to_qpos"):
        below("controller.episode.goal_to_qpos.qpos", ep["goal_to_qpos"]["qpos"], nq, "qpos")
        below("controller.episode.goal_to_qpos.goal", ep["goal_to_qpos"]["goal"], G, "the goal")
    for split, g in ep["goals"].items():
        p = f"controller.episode.goals.{split}"
        dims = 2 + (g.get("z") is not None)
        if dims != G:
            raise SchemaError(p, f"draws goals of {dims} entries, the policy's goal has {G}")
        if g["kind"] == "ring" and g["r_min"] > g["r_max"]:
            raise SchemaError(f"{p}.r_min", f"{g['r_min']} exceeds r_max {g['r_max']}")
    missing = [s for s in meta["env_spec"].get("eval_splits", ()) if s not in ep["goals"]]
    if missing:
        raise SchemaError("controller.episode.goals", f"has no split {missing[0]!r} (env_spec.eval_splits lists it)")


def check_observation(meta: Mapping[str, Any]) -> None:
    """The observation model and the recurrence must agree with themselves and with the graph's ports
    (after :func:`validate`); raises :class:`SchemaError` naming the field."""
    m, p = meta["observation_model"], "observation_model"
    S, A = meta["observation_size"], meta["action_size"]
    for i, t in enumerate(m["terms"]):
        start, stop = t["state_indices"]
        if not (start < stop <= S and stop - start == t["size"]):
            raise SchemaError(f"{p}.terms[{i}].state_indices", f"[{start}, {stop}] is not {t['size']} (size) entries "
                              f"of the state of {S} (observation_size)")
    F_, K = sum(t["size"] for t in m["terms"]), m["history"]
    want = {"frame_size": F_, "action_size": A, "input_size": K * F_ + (K * A if m["history_actions"] else 0)}
    for name, value in want.items():
        if m[name] != value:
            raise SchemaError(f"{p}.{name}", f"is {m[name]}, expected {value}")
    at = 0
    for i, part in enumerate(m["input_layout"]):
        size = F_ if part["part"] == "frame" else A
        if (part["start"], part["stop"]) != (at, at + size):
            raise SchemaError(f"{p}.input_layout[{i}]", f"spans [{part['start']}, {part['stop']}], expected [{at}, {at + size}]")
        at += size
    if at != m["input_size"]:
        raise SchemaError(f"{p}.input_layout", f"covers {at} entries, expected input_size {m['input_size']}")
    ports = {port["name"]: port["shape"][-1] for port in meta["inputs"]}
    if "observation" in ports and ports["observation"] != m["input_size"]:
        raise SchemaError("inputs", f"observation has {ports['observation']} entries, expected {p}.input_size "
                          f"{m['input_size']}")
    r = meta.get("recurrent")
    if r is not None and meta["model"] == "policy":
        outputs = {port["name"]: port["shape"][-1] for port in meta["outputs"]}
        for name, where in ((r["input"], ports), (r["output"], outputs)):
            if where.get(name) != r["hidden_size"]:
                raise SchemaError("recurrent", f"{name} must be a port of {r['hidden_size']} (hidden_size) entries")
    elif meta["model"] == "policy" and len(meta["outputs"]) != 1:
        raise SchemaError("outputs", f"has {len(meta['outputs'])} entries; a policy without recurrent has one (the action)")


def check_metadata(meta: Mapping[str, Any]) -> None:
    """The whole metadata record against :data:`METADATA` (and a native controller's and the observation
    model's cross-field rules)."""
    version = meta.get("schema_version")
    validate(version, METADATA["schema_version"], "schema_version", 1)
    check_fields(meta, METADATA, "", version)
    c = meta.get("controller")
    if isinstance(c, dict) and c.get("native") is True:
        check_controller(c, meta)
    if version >= 3:
        check_observation(meta)
    elif len(meta["outputs"]) != 1:
        raise SchemaError("outputs", f"has {len(meta['outputs'])} entries, expected 1 before schema 3")


def known_kinds() -> dict[str, tuple[set, set]]:
    """``{what: (declared here, known to deepdistill.envs.recipe)}``: a test keeps them equal."""
    from deepdistill.envs.recipe import ACTION_KINDS, GOAL_KINDS, OBS_KINDS

    return {"observation_recipe": (set(RECIPE_ENTRY), set(OBS_KINDS)), "action_to_ctrl": (set(ACTION_MAP), set(ACTION_KINDS)),
            "goals": (set(GOAL), set(GOAL_KINDS))}
