"""Named observation terms of a task, and the observation model of a student that sees only some of them.

Standard library only (no JAX, no numpy): the JAX-free runtime and a controller read the same records
from an exported file's metadata.

A task's robot state ``[S]`` is a concatenation of named **terms** (:class:`ObsTerm`): ``position``
of the point tasks, ``cos_qpos``, ``sin_qpos``, ``fingertip``, ``fingertip_vel`` of the reacher, ...
Each term is a contiguous range ``state[start:stop]`` in its own units. ``deepdistill envs --obs TASK``
lists them. The goal is never a term: it is a separate input of every policy.

A student's :class:`ObservationModel` says what it sees of the task, as data (recorded in the
student's run folder as ``observation_model.json`` and in the ONNX metadata, schema 3):

- ``terms``: the terms it sees; one control step's **frame** is their entries concatenated in this
  order (``frame_size`` F entries);
- ``history`` K: it sees its last K frames, oldest first, newest last;
- ``history_actions``: it also sees its K previous actions (the actions it commanded, oldest first);
- ``noise``: Gaussian noise of standard deviation ``sigma`` per term, in the term's own units, added
  to every frame in training (the runtime adds none);
- ``action_delay`` N: an action commanded at control step t is applied at step t + N (the first N
  steps of an episode apply zeros).

The student's input vector (``input_size`` entries) is, in this order: the K frames ``frame[t-K+1] ..
frame[t]``, then (with ``history_actions``) the K actions ``action[t-K] .. action[t-1]``
(:meth:`ObservationModel.input_layout`). At the first step of an episode the history holds K copies
of the first frame and zero actions.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional, Sequence

from deepdistill.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ObsTerm:
    """One named part of a task's robot state: ``state[start:stop]``."""

    name: str
    start: int
    stop: int
    units: str
    meaning: str

    @property
    def size(self) -> int:
        return self.stop - self.start

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "state_indices": [self.start, self.stop], "units": self.units,
                "meaning": self.meaning}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ObsTerm":
        start, stop = d["state_indices"]
        return cls(str(d["name"]), int(start), int(stop), str(d.get("units", "")), str(d.get("meaning", "")))


def declare_terms(*specs: tuple[str, int, str, str]) -> tuple[ObsTerm, ...]:
    """Terms from ``(name, size, units, meaning)`` in state order (start and stop follow from the sizes)."""
    out, start = [], 0
    for name, size, units, meaning in specs:
        out.append(ObsTerm(name, start, start + int(size), units, meaning))
        start += int(size)
    return tuple(out)


def default_terms(state_size: int) -> tuple[ObsTerm, ...]:
    """The one term of a task that names none: the whole state."""
    return (ObsTerm("state", 0, state_size, "task units", "the whole robot state (the task names no terms)"),)


def check_terms(terms: Sequence[ObsTerm], state_size: int, where: str = "task") -> tuple[ObsTerm, ...]:
    """Terms must have unique names and cover ``[0, state_size)`` in order, without gaps or overlaps."""
    names = [t.name for t in terms]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: observation term names repeat: {names}")
    at = 0
    for t in terms:
        if t.start != at or t.stop <= t.start or not t.name or "," in t.name or "=" in t.name:
            raise ValueError(f"{where}: observation term {t} must start at {at}, be non-empty and have a name "
                             f"without ',' or '='")
        at = t.stop
    if at != state_size:
        raise ValueError(f"{where}: observation terms cover {at} entries, the state has {state_size}")
    return tuple(terms)


# --- the student's observation model --------------------------------------------------------------------

OBSERVATION_FILE = "observation_model.json"
"""Where a student run records its :class:`ObservationModel` (beside ``networks.json``)."""
INITIAL_HISTORY = "at the first step of an episode the history holds K copies of the first frame and zero actions"
DELAY_SEMANTICS = (
    "an action commanded at control step t is applied at step t + action_delay (the first action_delay steps of an "
    "episode apply zeros). The student was trained with this latency: on a robot whose actuation has it, send each "
    "action at once (the delay is physical); in a simulator, queue the actions to model it"
)


@dataclasses.dataclass(frozen=True)
class ObservationModel:
    """What a student sees of its task (see the module docstring)."""

    terms: tuple[ObsTerm, ...]
    history: int = 1
    history_actions: bool = False
    noise: tuple[tuple[str, float], ...] = ()
    """``(term, sigma)`` for terms of the task (those of ``terms`` and any other; missing: no noise). The
    other terms' sigmas say what "the student's noise" means for a policy that sees them (the teacher in
    ``evaluate``'s robustness table)."""
    action_delay: int = 0
    action_size: int = 0

    def __post_init__(self):
        if self.history < 1 or self.action_delay < 0 or any(not (s >= 0 and math.isfinite(s)) for _, s in self.noise):
            raise ValueError(f"invalid observation model {self}")

    # --- sizes -------------------------------------------------------------------------------------
    @property
    def frame_size(self) -> int:
        return sum(t.size for t in self.terms)

    @property
    def action_inputs(self) -> int:
        return self.history * self.action_size if self.history_actions else 0

    @property
    def input_size(self) -> int:
        return self.history * self.frame_size + self.action_inputs

    @property
    def term_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.terms)

    @property
    def sigmas(self) -> tuple[float, ...]:
        """The noise's standard deviation per term of ``terms``."""
        table = dict(self.noise)
        return tuple(float(table.get(t.name, 0.0)) for t in self.terms)

    @property
    def noisy(self) -> bool:
        return any(s > 0 for s in self.sigmas)

    def frame_indices(self) -> list[int]:
        """State entries of one frame, in frame order."""
        return [i for t in self.terms for i in range(t.start, t.stop)]

    def frame_sigmas(self) -> list[float]:
        """The noise's standard deviation per frame entry."""
        return [s for t, s in zip(self.terms, self.sigmas) for _ in range(t.size)]

    def is_identity(self, state_size: int) -> bool:
        """Whether the student sees exactly the task's state (every entry in order, no history, noise or delay)."""
        return (self.frame_indices() == list(range(state_size)) and self.history == 1 and not self.history_actions
                and not self.noisy and self.action_delay == 0)

    def input_layout(self) -> list[dict[str, Any]]:
        """The student's input vector, part by part: ``{"part": "frame" | "previous_action", "age": steps back
        (0: this step's frame, 1: the last action), "start", "stop"}``, in input order."""
        K, F, A = self.history, self.frame_size, self.action_size
        out = [{"part": "frame", "age": K - 1 - k, "start": k * F, "stop": (k + 1) * F} for k in range(K)]
        if self.history_actions:
            out += [{"part": "previous_action", "age": K - k, "start": K * F + k * A, "stop": K * F + (k + 1) * A}
                    for k in range(K)]
        return out

    # --- variants ----------------------------------------------------------------------------------------
    def replace(self, **changes: Any) -> "ObservationModel":
        return dataclasses.replace(self, **changes)

    def with_noise_scale(self, scale: float) -> "ObservationModel":
        return self.replace(noise=tuple((n, scale * s) for n, s in self.noise))

    def frames_only(self) -> "ObservationModel":
        """What a deployed controller feeds each step: this step's frame alone, noise-free, the same delay
        (the runtime keeps the history and previous actions itself)."""
        return self.replace(history=1, history_actions=False, noise=())

    def seen_by(self, terms: Sequence[ObsTerm], history: int = 1, history_actions: bool = False) -> "ObservationModel":
        """The same sensors (noise table, delay) for a policy that sees ``terms`` (e.g. the teacher: all)."""
        return self.replace(terms=tuple(terms), history=history, history_actions=history_actions)

    # --- records -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON record (``observation_model.json``, metadata ``observation_model``)."""
        return {
            "terms": [{**t.to_dict(), "noise_std": s} for t, s in zip(self.terms, self.sigmas)],
            "frame_size": self.frame_size,
            "history": self.history,
            "history_actions": self.history_actions,
            "action_size": self.action_size,
            "input_size": self.input_size,
            "input_layout": self.input_layout(),
            "initial_history": INITIAL_HISTORY,
            "action_delay": self.action_delay,
            "action_delay_semantics": DELAY_SEMANTICS,
            "noise": "Gaussian, standard deviation noise_std per term in its own units, added to every frame in "
                     "training only (a controller adds none)",
            "task_noise": dict(self.noise),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ObservationModel":
        terms = tuple(ObsTerm.from_dict(t) for t in d["terms"])
        table = {t.name: float(e.get("noise_std", 0.0)) for t, e in zip(terms, d["terms"])}
        table.update({str(k): float(v) for k, v in (d.get("task_noise") or {}).items()})
        noise = tuple((k, v) for k, v in table.items() if v)
        return cls(terms, int(d["history"]), bool(d["history_actions"]), noise, int(d["action_delay"]),
                   int(d["action_size"]))

    @classmethod
    def full(cls, task_terms: Sequence[ObsTerm], action_size: int) -> "ObservationModel":
        """The teacher's view: every term, no history, noise or delay."""
        return cls(tuple(task_terms), action_size=action_size)


def parse_terms(text: Optional[str], task_terms: Sequence[ObsTerm], flag: str = "--student-obs") -> tuple[ObsTerm, ...]:
    """``"a,b"`` -> those terms of the task (None or empty: every term); an unknown name lists the task's terms."""
    if not text:
        return tuple(task_terms)
    by_name = {t.name: t for t in task_terms}
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(f"{flag}: unknown observation term {unknown[0]!r}; this task's terms are: {', '.join(by_name)} "
                          f"(`deepdistill envs --obs TASK` describes them)")
    if len(set(names)) != len(names):
        raise ConfigError(f"{flag}: a term is named twice in {text!r}")
    return tuple(by_name[n] for n in names)


def parse_noise(specs: Sequence[str], task_terms: Sequence[ObsTerm], flag: str = "--obs-noise") -> dict[str, float]:
    """``("0.01", "fingertip=0.005")`` -> ``{term: sigma}`` for every task term: a bare number sets every
    term, ``term=sigma`` one term (later entries win). Refuses negative, non-finite or unknown entries."""
    names = [t.name for t in task_terms]
    out = {n: 0.0 for n in names}
    for spec in specs:
        for part in (p.strip() for p in str(spec).split(",")):
            if not part:
                continue
            term, _, value = part.rpartition("=")
            try:
                sigma = float(value)
            except ValueError:
                raise ConfigError(f"{flag} {part!r}: give a standard deviation (0.01) or term=sigma "
                                  f"(fingertip=0.005)") from None
            if not (math.isfinite(sigma) and sigma >= 0):
                raise ConfigError(f"{flag} {part!r}: the standard deviation must be a finite number >= 0")
            if term and term not in out:
                raise ConfigError(f"{flag}: unknown observation term {term!r}; this task's terms are: {', '.join(names)}")
            for n in ([term] if term else names):
                out[n] = sigma
    return out
