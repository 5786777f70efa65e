"""The controller contract of a MuJoCo task: how observations are read from MuJoCo state, how an
action becomes ``ctrl``, and how episodes start. numpy only (no JAX, no mujoco import).

One declaration per task (written next to the task in ``envs/brax_tasks.py``) serves both
sides, so they cannot drift:

- the JAX env builds its observation with :meth:`CompiledRecipe.read` on an ``mjx.Data``, with
  ``xp = jax.numpy``, and its controls with :meth:`ActionMap.ctrl`;
- the exporter writes the same declaration into the ONNX metadata (``controller`` field);
- the native controller (:mod:`deepdistill.export.mujoco_controller`) calls the same functions on a
  ``mujoco.MjData`` with ``xp = numpy``.

``mjx.Data`` and ``mujoco.MjData`` name these arrays alike (``qpos``, ``qvel``, ``xpos``, ``xmat``,
``cinert``, ``cvel``, ``subtree_com``, ``qfrc_actuator``), which is what lets one reader serve both.
The observation is read from one consistent state: after the ``n_frames`` physics steps of an
action, positions and velocities are propagated (``mj_forward``) before any entry is read.

Observation entries (``{"kind": ..., ...}``, concatenated in order):

=====================  =====================================================================
``qpos``, ``qvel``     ``d.qpos[start:stop]``, ``d.qvel[start:stop]``
``cos_qpos``,          ``cos(d.qpos[start:stop])``, ``sin(...)`` (hinge angles without wrap)
``sin_qpos``
``qpos_sum``           ``sum(d.qpos[indices])`` (one entry; e.g. a gripper's opening)
``body_point``         world position of a point fixed in ``body`` at ``offset`` (body frame):
                       ``xpos[b] + xmat[b] @ offset`` (3)
``body_point_vel``     world linear velocity of that point (3): ``cvel[b, 3:] + cvel[b, :3] x
                       (p - subtree_com[rootid[b]])``, which is ``mj_objectVelocity``'s linear part
``cinert``             ``d.cinert[1:]`` flattened: every body but the world, 10 each (MuJoCo's
                       com-based inertia: 6 of the inertia matrix, 3 mass x offset, mass)
``cvel``               ``d.cvel[1:]`` flattened: 6 each (angular, then linear; com-based)
``qfrc_actuator``      ``d.qfrc_actuator`` (nv): the actuator forces of the last ``ctrl``
=====================  =====================================================================

A task without its own ``obs_terms`` gets one observation term per entry (:meth:`CompiledRecipe.terms`),
named by the entry's optional ``term`` key, else its ``name`` (``_vel`` added for ``body_point_vel``),
else its kind.

Action maps (``{"kind": ..., ...}``, each writes some ``ctrl`` entries; the action is first clipped
into the policy's action range):

``affine``     ``ctrl[ctrl_i] = offset + scale * action[action_i]`` (per entry)
``qpos_delta`` ``ctrl[ctrl_i] = clip(qpos[qpos_i] + scale * action[action_i], low, high)``
               (a position servo moved by at most ``scale`` per action)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from deepdistill.core.errors import UserError
from deepdistill.envs.observation import ObsTerm

OBS_KINDS = ("qpos", "qvel", "cos_qpos", "sin_qpos", "qpos_sum", "body_point", "body_point_vel", "cinert", "cvel",
             "qfrc_actuator")
ACTION_KINDS = ("affine", "qpos_delta")
TERM_UNITS = {"qpos": "m or rad (joint coordinates)", "qvel": "m/s or rad/s (joint velocities)",
              "cos_qpos": "unitless (cosine of an angle)", "sin_qpos": "unitless (sine of an angle)",
              "qpos_sum": "m or rad (sum of joint coordinates)", "body_point": "m (world frame)",
              "body_point_vel": "m/s (world frame)", "cinert": "kg m^2, kg m, kg (com-based inertia)",
              "cvel": "rad/s, m/s (com-based velocity)", "qfrc_actuator": "N or N m (generalised force)"}
OBSERVATION_TIMING = (
    "after the n_frames mj_step calls of an action, call mj_forward (or mj_kinematics, mj_comPos, mj_comVel and the "
    "actuation) on the new qpos, qvel and the same ctrl; then read every entry of observation_recipe from that state"
)


class RecipeError(UserError):
    """A recipe names something the model lacks, or is malformed."""


# --- observation -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Recipe:
    """An ordered list of observation entries (dicts as in the module docstring), JSON-ready."""

    entries: tuple[Mapping[str, Any], ...]

    def to_list(self) -> list[dict[str, Any]]:
        return [dict(e) for e in self.entries]

    @classmethod
    def from_list(cls, entries: Sequence[Mapping[str, Any]]) -> "Recipe":
        for e in entries:
            if e.get("kind") not in OBS_KINDS:
                raise RecipeError(f"observation_recipe entry {dict(e)} has unknown kind; known: {', '.join(OBS_KINDS)}")
        return cls(tuple(dict(e) for e in entries))

    @property
    def needs_com(self) -> bool:
        """Whether an entry reads com-based quantities (``cinert``, ``cvel``, ``subtree_com``)."""
        return any(e["kind"] in ("cinert", "cvel", "body_point_vel") for e in self.entries)

    @property
    def needs_actuation(self) -> bool:
        return any(e["kind"] == "qfrc_actuator" for e in self.entries)

    def compile(self, model: Any) -> "CompiledRecipe":
        """Resolve names against ``model`` (a ``mujoco.MjModel``; only its arrays and names are read)."""
        return CompiledRecipe(self, model)


class CompiledRecipe:
    """A :class:`Recipe` with body names resolved to indices; ``read(d, xp)`` builds the observation."""

    def __init__(self, recipe: Recipe, model: Any):
        self.recipe = recipe
        self.nbody, self.nv = int(model.nbody), int(model.nv)
        names = [_name(model, "body", i) for i in range(self.nbody)]
        self._steps: list[tuple[str, Any]] = []
        self.names: list[str] = []
        qpos_names, qvel_names = joint_coordinate_names(model)
        for e in recipe.entries:
            kind = e["kind"]
            if kind in ("qpos", "qvel", "cos_qpos", "sin_qpos"):
                size = model.nq if kind != "qvel" else model.nv
                start, stop = int(e["start"]), int(e["stop"])
                if not 0 <= start < stop <= size:
                    raise RecipeError(f"observation_recipe {kind}[{start}:{stop}] is outside the model's {size} entries")
                self._steps.append((kind, slice(start, stop)))
                base = qvel_names if kind == "qvel" else qpos_names
                prefix = {"qpos": "", "qvel": "vel:", "cos_qpos": "cos:", "sin_qpos": "sin:"}[kind]
                self.names += [prefix + n for n in base[start:stop]]
            elif kind == "qpos_sum":
                idx = np.asarray(e["indices"], np.int64)
                self._steps.append((kind, idx))
                self.names.append(e.get("name") or "+".join(qpos_names[i] for i in idx))
            elif kind in ("body_point", "body_point_vel"):
                body = e["body"]
                if body not in names:
                    raise RecipeError(f"observation_recipe: the model has no body {body!r}")
                b = names.index(body)
                offset = np.asarray(e.get("offset", (0.0, 0.0, 0.0)), np.float64)
                root = int(model.body_rootid[b])
                self._steps.append((kind, (b, offset, root)))
                label = e.get("name") or body
                self.names += [f"{label}{'_vel' if kind == 'body_point_vel' else ''}_{c}" for c in "xyz"]
            elif kind == "cinert":
                self._steps.append((kind, None))
                self.names += [f"cinert:{names[b]}[{k}]" for b in range(1, self.nbody) for k in range(10)]
            elif kind == "cvel":
                self._steps.append((kind, None))
                self.names += [f"cvel:{names[b]}[{k}]" for b in range(1, self.nbody) for k in range(6)]
            elif kind == "qfrc_actuator":
                self._steps.append((kind, None))
                self.names += ["qfrc_actuator:" + n for n in qvel_names]
            else:
                raise RecipeError(f"unknown observation_recipe kind {kind!r}")

    @property
    def size(self) -> int:
        return len(self.names)

    @property
    def slices(self) -> list[slice]:
        """Where each recipe entry lies in the observation."""
        out, start = [], 0
        for (kind, arg) in self._steps:
            n = {"qpos_sum": 1, "body_point": 3, "body_point_vel": 3, "cinert": 10 * (self.nbody - 1),
                 "cvel": 6 * (self.nbody - 1), "qfrc_actuator": self.nv}.get(kind)
            n = n if n is not None else arg.stop - arg.start
            out.append(slice(start, start + n))
            start += n
        return out

    def terms(self) -> tuple[ObsTerm, ...]:
        """One observation term per entry (see the module docstring for the names)."""
        kinds = [e["kind"] for e in self.recipe.entries]
        out = []
        for i, (e, sl) in enumerate(zip(self.recipe.entries, self.slices)):
            kind = e["kind"]
            name = e.get("term") or (e["name"] + ("_vel" if kind == "body_point_vel" else "") if e.get("name") else None)
            name = name or (kind if kinds.count(kind) == 1 else f"{kind}_{i}")
            labels = self.names[sl]
            meaning = f"{kind}: {', '.join(labels[:6])}" + (f", ... ({len(labels)} entries)" if len(labels) > 6 else "")
            out.append(ObsTerm(name, sl.start, sl.stop, e.get("units") or TERM_UNITS[kind], meaning))
        return tuple(out)

    def read(self, d: Any, xp: Any = np) -> Any:
        """The observation ``[size]`` from ``d`` (an ``mjx.Data`` with ``xp=jax.numpy``, or an ``MjData``)."""
        parts = []
        for kind, arg in self._steps:
            if kind == "qpos":
                parts.append(d.qpos[arg])
            elif kind == "qvel":
                parts.append(d.qvel[arg])
            elif kind == "cos_qpos":
                parts.append(xp.cos(d.qpos[arg]))
            elif kind == "sin_qpos":
                parts.append(xp.sin(d.qpos[arg]))
            elif kind == "qpos_sum":
                parts.append(xp.sum(d.qpos[arg])[None])
            elif kind == "body_point":
                b, offset, _ = arg
                parts.append(_point(d, b, offset, xp))
            elif kind == "body_point_vel":
                b, offset, root = arg
                p = _point(d, b, offset, xp)
                cvel = d.cvel[b]
                parts.append(cvel[3:] + xp.cross(cvel[:3], p - d.subtree_com[root]))
            elif kind == "cinert":
                parts.append(xp.reshape(d.cinert[1:], (-1,)))
            elif kind == "cvel":
                parts.append(xp.reshape(d.cvel[1:], (-1,)))
            elif kind == "qfrc_actuator":
                parts.append(d.qfrc_actuator)
        return xp.concatenate([xp.asarray(p, dtype=xp.float32) if xp is np else p for p in parts])


def _point(d: Any, b: int, offset: np.ndarray, xp: Any) -> Any:
    rot = xp.reshape(d.xmat[b], (3, 3))
    return d.xpos[b] + rot @ xp.asarray(offset, dtype=rot.dtype)


# --- actions ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ActionMap:
    """How ``action [A]`` becomes ``ctrl [nu]`` (entries as in the module docstring)."""

    entries: tuple[Mapping[str, Any], ...]
    nu: int

    def to_list(self) -> list[dict[str, Any]]:
        return [dict(e) for e in self.entries]

    @classmethod
    def from_list(cls, entries: Sequence[Mapping[str, Any]], nu: int) -> "ActionMap":
        written: list[int] = []
        for e in entries:
            if e.get("kind") not in ACTION_KINDS:
                raise RecipeError(f"action_to_ctrl entry {dict(e)} has unknown kind; known: {', '.join(ACTION_KINDS)}")
            written += list(e["ctrl"])
        if sorted(written) != list(range(nu)):
            raise RecipeError(f"action_to_ctrl writes ctrl entries {sorted(written)}; the model has {nu} actuators")
        return cls(tuple(dict(e) for e in entries), int(nu))

    @classmethod
    def affine(cls, low: Sequence[float], high: Sequence[float]) -> "ActionMap":
        """``[-1, 1] -> [low, high]`` per actuator (identity when the range is ``[-1, 1]``)."""
        low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        n = len(low)
        return cls.from_list([{"kind": "affine", "action": list(range(n)), "ctrl": list(range(n)),
                               "scale": ((high - low) / 2).tolist(), "offset": ((high + low) / 2).tolist()}], n)

    def ctrl(self, action: Any, qpos: Any, xp: Any = np) -> Any:
        """``ctrl [nu]`` for ``action [A]`` (already clipped into the action range) at ``qpos``."""
        ctrl = xp.zeros((self.nu,), dtype=action.dtype)
        for e in self.entries:
            a = action[np.asarray(e["action"])]
            c = np.asarray(e["ctrl"])
            if e["kind"] == "affine":
                value = xp.asarray(e["offset"], dtype=action.dtype) + xp.asarray(e["scale"], dtype=action.dtype) * a
            else:  # qpos_delta
                value = xp.clip(qpos[np.asarray(e["qpos"])] + e["scale"] * a,
                                xp.asarray(e["low"], dtype=action.dtype), xp.asarray(e["high"], dtype=action.dtype))
            ctrl = ctrl.at[c].set(value) if xp is not np else _set(ctrl, c, value)
        return ctrl


def _set(a: np.ndarray, idx: np.ndarray, value: np.ndarray) -> np.ndarray:
    a[idx] = value
    return a


# --- names ------------------------------------------------------------------------------------------


def _name(model: Any, kind: str, i: int) -> str:
    import importlib

    mujoco = importlib.import_module("mujoco")  # only reached with a real MjModel
    obj = {"body": mujoco.mjtObj.mjOBJ_BODY, "joint": mujoco.mjtObj.mjOBJ_JOINT,
           "actuator": mujoco.mjtObj.mjOBJ_ACTUATOR}[kind]
    return mujoco.mj_id2name(model, obj, i) or f"{kind}{i}"


def joint_coordinate_names(model: Any) -> tuple[list[str], list[str]]:
    """Names of every ``qpos`` and ``qvel`` entry: the joint's name, with a suffix for free and ball joints."""
    qpos, qvel = [""] * model.nq, [""] * model.nv
    for j in range(model.njnt):
        name, typ = _name(model, "joint", j), int(model.jnt_type[j])
        qa, va = int(model.jnt_qposadr[j]), int(model.jnt_dofadr[j])
        if typ == 0:  # free
            for k, s in enumerate(("x", "y", "z", "qw", "qx", "qy", "qz")):
                qpos[qa + k] = f"{name}:{s}"
            for k, s in enumerate(("vx", "vy", "vz", "wx", "wy", "wz")):
                qvel[va + k] = f"{name}:{s}"
        elif typ == 1:  # ball
            for k, s in enumerate(("qw", "qx", "qy", "qz")):
                qpos[qa + k] = f"{name}:{s}"
            for k, s in enumerate(("wx", "wy", "wz")):
                qvel[va + k] = f"{name}:{s}"
        else:
            qpos[qa], qvel[va] = name, name
    return qpos, qvel


def actuator_names(model: Any) -> list[str]:
    return [_name(model, "actuator", i) for i in range(model.nu)]


# --- episodes ---------------------------------------------------------------------------------------

GOAL_KINDS = ("ring", "cells", "box")


def sample_goal(spec: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
    """A goal from a goal distribution of the ``episode`` record (``z`` appended when given):

    ``ring``: ``center + r (cos a, sin a)``, ``r ~ U(r_min, r_max)``, ``a ~ U(0, 2 pi)``;
    ``cells``: a cell of ``cells`` (row, col) uniformly, centred at ``(row, col) * cell_size``, plus
    ``U(-jitter, jitter)`` per axis; ``box``: ``center + U(-half, half)`` per axis."""
    kind = spec.get("kind")
    if kind == "ring":
        r = rng.uniform(spec["r_min"], spec["r_max"])
        a = rng.uniform(0.0, 2.0 * np.pi)
        xy = np.asarray(spec["center"], np.float64) + r * np.array([np.cos(a), np.sin(a)])
    elif kind == "cells":
        cells = np.asarray(spec["cells"], np.float64)
        xy = cells[rng.integers(len(cells))] * spec["cell_size"] + rng.uniform(-spec["jitter"], spec["jitter"], 2)
    elif kind == "box":
        xy = np.asarray(spec["center"], np.float64) + rng.uniform(-spec["half"], spec["half"], 2)
    else:
        raise RecipeError(f"unknown goal distribution {kind!r}; known: {', '.join(GOAL_KINDS)}")
    return np.concatenate([xy, [spec["z"]]]) if spec.get("z") is not None else xy


def sample_episode(episode: Mapping[str, Any], split: str, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(qpos, qvel, ctrl, goal)`` of a new episode of ``split`` from the metadata's ``episode`` record:
    ``qpos0``/``qvel0``/``ctrl0`` plus ``qpos_noise``/``qvel_noise`` (``uniform`` in +-scale or ``normal``
    with std scale, on ``indices``), ``qpos_boxes`` (``indices`` set to ``center + U(-half, half)``),
    the goal from ``goals[split]`` (:func:`sample_goal`), and ``goal_to_qpos`` (goal entries copied into
    qpos: a goal marker)."""
    goals = episode["goals"]
    if split not in goals:
        raise RecipeError(f"split {split!r} is not one of this task's {sorted(goals)}")
    qpos = np.array(episode["qpos0"], np.float64)
    qvel = np.array(episode.get("qvel0") or np.zeros(episode["nv"]), np.float64)
    ctrl = np.array(episode.get("ctrl0") or np.zeros(episode["nu"]), np.float64)
    for arr, key in ((qpos, "qpos_noise"), (qvel, "qvel_noise")):
        noise = episode.get(key)
        if noise:
            idx = np.asarray(noise["indices"], np.int64)
            if noise["kind"] == "uniform":
                arr[idx] += rng.uniform(-noise["scale"], noise["scale"], len(idx))
            elif noise["kind"] == "normal":
                arr[idx] += noise["scale"] * rng.standard_normal(len(idx))
            else:
                raise RecipeError(f"episode {key}: unknown kind {noise['kind']!r} (uniform or normal)")
    for box in episode.get("qpos_boxes") or ():
        idx = np.asarray(box["indices"], np.int64)
        qpos[idx] = np.asarray(box["center"], np.float64) + rng.uniform(-box["half"], box["half"], len(idx))
    goal = sample_goal(goals[split], rng)
    link = episode.get("goal_to_qpos")
    if link:
        qpos[np.asarray(link["qpos"], np.int64)] = goal[np.asarray(link["goal"], np.int64)]
    return qpos, qvel, ctrl, goal
