"""A trained policy (teacher or student) loaded from its run directory, through the network interface."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import jax

from deepdistill.core.checkpoint import Checkpointer
from deepdistill.core.errors import RunError
from deepdistill.core.rundir import check_run, read_json

if TYPE_CHECKING:
    from deepdistill.student.interface import PolicyNetworks
    from deepdistill.envs import EnvSpec
    from deepdistill.envs.observation import ObservationModel

# --- loading a trained policy (teacher or student) ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PolicyRun:
    """A trained teacher or student: its networks, parameters and the task it acts in."""

    kind: str
    run_dir: Path
    spec: "EnvSpec"
    nets: "PolicyNetworks"  # any architecture (deepdistill.student.interface)
    params: dict  # {"actor": ...} and, with encoders, "sa_encoder", "goal_encoder"
    step: int
    config: dict
    info: dict
    skipped: tuple[str, ...] = ()  # newer steps that could not be used ("step N: reason"), newest first
    observation: Optional["ObservationModel"] = None
    """What a student sees (``observation_model.json``); None: the task's state, as the teacher."""
    saved_params_sha256: Optional[str] = None  # the checksum saved with the checkpoint's params (verified at load)

    @property
    def sensed(self) -> bool:
        """Whether the policy sees something other than the task's state (terms, history, noise or delay)."""
        return self.observation is not None and not self.observation.is_identity(self.spec.state_size)

    def num_params(self) -> dict[str, int]:
        return self.nets.num_params()

    def params_sha256(self) -> str:
        """SHA-256 of the loaded parameters (:func:`deepdistill.core.checkpoint.tree_digest`): the one saved
        with the checkpoint, else computed."""
        from deepdistill.core.checkpoint import tree_digest

        return self.saved_params_sha256 or tree_digest(self.params)

    def act(self, state: jax.Array, goal: jax.Array) -> jax.Array:
        """Deterministic action ``[B, A]`` for ``state [B, S]`` (a student with sensors: its input ``[B, I]``,
        see :class:`~deepdistill.envs.observation.ObservationModel`), ``goal [B, G]``."""
        return self.nets.deterministic_action(self.params["actor"], state, goal)


def load_policy_run(run_dir: str | os.PathLike, kind: str, flag: str = "--run", step: Optional[int] = None) -> PolicyRun:
    """Load the networks of a ``kind`` run (``teacher`` or ``student``); refuses anything else clearly."""
    from deepdistill.envs import EnvSpec
    from deepdistill.envs.observation import OBSERVATION_FILE, ObservationModel
    from deepdistill.student.interface import ArchitectureError, networks_from_dict

    run_dir = check_run(run_dir, kind, flag)
    if not (run_dir / "networks.json").is_file():
        raise RunError(f"{flag} {run_dir}: networks.json is missing; `{'train-teacher' if kind == 'teacher' else 'distill'} "
                       f"--resume --out {run_dir}` rebuilds it")
    try:
        spec = EnvSpec.from_dict(read_json(run_dir / "env_spec.json"))
        nets = networks_from_dict(read_json(run_dir / "networks.json"))
        config = read_json(run_dir / "config.json")
        info = read_json(run_dir / "run.json")
        observed = run_dir / OBSERVATION_FILE
        observation = ObservationModel.from_dict(read_json(observed)) if observed.is_file() else None
    except ArchitectureError as e:  # its architecture's module does not import here
        raise RunError(f"{flag} {run_dir}: {e}") from None
    except (TypeError, KeyError, ValueError, json.JSONDecodeError) as e:
        raise RunError(f"{flag} {run_dir}: its JSON files are unreadable or of another version ({e})") from None
    inputs = observation.input_size if observation is not None else spec.state_size
    if (nets.state_size, nets.goal_size, nets.action_size) != (inputs, spec.goal_size, spec.action_size):
        raise RunError(f"{flag} {run_dir}: networks.json does not match env_spec.json and {OBSERVATION_FILE} (sizes differ)")
    try:
        abstract = jax.eval_shape(nets.init, jax.random.PRNGKey(0))
    except (ImportError, AttributeError) as e:  # an nnx student whose module does not import here
        raise RunError(f"{flag} {run_dir}: cannot build its networks ({type(e).__name__}: {e}); make the student's "
                       f"module importable (PYTHONPATH)") from None
    ckpt = Checkpointer(run_dir, read_only=True)
    try:
        s, params, meta, skipped = ckpt.restore_params(abstract, step)
    finally:
        ckpt.close()
    if skipped:
        print(f"warning: {flag} {run_dir}: using step {s}; newer checkpoints are unreadable ("
              + "; ".join(map(str, skipped)) + ")", file=sys.stderr, flush=True)
    return PolicyRun(kind, run_dir, spec, nets, params, s, config, info, tuple(map(str, skipped)), observation,
                     (meta.get("checksums") or {}).get("params"))


def load_teacher(run_dir: str | os.PathLike, step: Optional[int] = None) -> PolicyRun:
    """Load a teacher from a ``train-teacher`` run directory (newest checkpoint unless ``step``)."""
    return load_policy_run(run_dir, "teacher", "--teacher", step)


def check_compatible(teacher: PolicyRun, student: PolicyRun) -> None:
    """Refuse a teacher/student pair of different tasks or observation layouts."""
    t, s = teacher.spec, student.spec
    if t.name != s.name:
        raise RunError(f"--student {student.run_dir} was distilled on task {s.name!r}, the teacher acts in {t.name!r}")
    for field in ("state_size", "goal_size", "action_size", "goal_indices"):
        if getattr(t, field) != getattr(s, field):
            raise RunError(
                f"--student {student.run_dir}: {field} {getattr(s, field)} differs from the teacher's {getattr(t, field)}"
            )
