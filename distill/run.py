"""``distill`` as a stage of the shared run loop: load the frozen teacher, distill, evaluate both on the same goals."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Optional

import jax

from deepdistill.distill.config import DistillConfig
from deepdistill.distill.train import Distiller, DistillState
from deepdistill.student.interface import Interface, PolicyNetworks, build_student, networks_from_dict
from deepdistill.core import replay as rb
from deepdistill.core import distributed
from deepdistill.core.checkpoint import Checkpointer
from deepdistill.core.errors import RunError
from deepdistill.core.memory import check_state_fits
from deepdistill.student.policy import PolicyRun, load_teacher
from deepdistill.core.rollout import make_evaluator
from deepdistill.core.rundir import check_run, check_writable_dir, read_json, resolve_run_config, write_json_atomic
from deepdistill.core.runner import Stage, run_stage
from deepdistill.core.errors import ConfigError
from deepdistill.teacher.config import TeacherConfig
from deepdistill.envs import make_env
from deepdistill.envs.observation import OBSERVATION_FILE, ObservationModel

# Flags that may differ from the saved config when resuming (the budget and logging, not the recipe).
RESUME_OVERRIDABLE = ("steps", "progress", "max_to_keep")


def resolve_config(cfg: DistillConfig) -> DistillConfig:
    """Validate ``cfg``; on ``--resume`` merge it with the run's saved config. ``--teacher`` may name
    another folder than the saved one (the teacher was moved): :func:`check_same_teacher` then makes sure
    it holds the same teacher."""
    merged = resolve_run_config(cfg, "student", RESUME_OVERRIDABLE + ("teacher",))
    if not cfg.resume:
        return merged
    out = Path(cfg.out)
    saved = str(read_json(out / "config.json").get("teacher", merged.teacher))
    given, default = cfg.teacher, DistillConfig.teacher
    # the default --teacher counts as given only when the saved teacher is gone and it exists (it cannot be
    # told apart from no --teacher otherwise)
    if given == saved or (given == default and (Path(saved).is_dir() or not Path(given).is_dir())):
        teacher = saved
    else:
        teacher = given
    if teacher == saved and not Path(saved).is_dir():
        raise RunError(f"--teacher {saved}, the teacher this student was distilled from, no longer exists; if it moved, "
                       f"pass its new folder: `distill --resume --out {out} --teacher NEWPATH` (accepted when its "
                       f"config and checkpoint are the recorded ones)")
    return dataclasses.replace(merged, teacher=teacher)


def teacher_config_sha256(config: dict) -> str:
    """SHA-256 of a teacher's recipe: its config.json without the fields that do not change what it
    learns (``--out``, ``--resume``, budgets and logging, the process set)."""
    from deepdistill.core.distributed import LAUNCH_FIELDS
    from deepdistill.teacher.run import RESUME_OVERRIDABLE as TEACHER_BOOKKEEPING

    drop = {"out", "resume", *TEACHER_BOOKKEEPING, *LAUNCH_FIELDS}
    recipe = {k: v for k, v in config.items() if k not in drop}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def teacher_provenance(teacher: PolicyRun) -> dict:
    """What run.json records of the teacher, its identity included: the digests of its recipe and of the
    parameters of the step distilled from (what a moved teacher is recognised by)."""
    n = teacher.nets
    return {
        "run": str(teacher.run_dir.absolute()),
        "step": int(teacher.step),
        "env": teacher.spec.name,
        **n.describe(),
        "params": teacher.num_params(),
        "config_sha256": teacher_config_sha256(teacher.config),
        "params_sha256": teacher.params_sha256(),
        **({"skipped_steps": list(teacher.skipped)} if teacher.skipped else {}),
    }


def check_same_teacher(teacher: PolicyRun, recorded: dict) -> None:
    """Refuse (one line) a ``--teacher`` that is not the teacher ``recorded`` in a student's run.json: its
    recipe (config) and the parameters of the recorded step must have the recorded digests. A run written
    before the digests were recorded is matched on what it did record (task, step, architecture, sizes)."""
    now = teacher_provenance(teacher)
    keys = [k for k in ("config_sha256", "params_sha256") if k in recorded]
    if not keys:  # recorded by an older version
        keys = [k for k in recorded if k not in ("run", "skipped_steps", "moved_from")]
    differ = [k for k in keys if now.get(k) != recorded[k]]
    if differ:
        what = {"config_sha256": "its config", "params_sha256": f"its parameters at step {teacher.step:,}"}
        raise RunError(f"--teacher {teacher.run_dir} is not the teacher this student was distilled from: "
                       + ", ".join(what.get(k, k) for k in differ) + f" differ from the ones recorded (run.json "
                       f"records the teacher at {recorded.get('run')}); pass that teacher's folder, wherever it is now")


def load_teacher_replay(teacher: PolicyRun) -> rb.Replay:
    """The replay buffer saved with the teacher's checkpoint (``--teacher-buffer-fraction``), read
    alone from the checkpoint's ``state`` item."""
    from deepdistill.teacher.train import Schedule

    tcfg = TeacherConfig.from_dict(teacher.config)
    if not tcfg.save_buffer:
        raise ConfigError("--teacher-buffer-fraction > 0 needs a teacher run saved with its replay buffer (--save-buffer)")
    spec = teacher.spec
    capacity = Schedule.from_config(tcfg, spec.episode_length).capacity
    abstract = jax.eval_shape(lambda: rb.init_replay(capacity, tcfg.num_envs, spec.state_size, spec.action_size))
    part = {"replay": {"states": abstract.states, "actions": abstract.actions, "written": abstract.written}}
    ckpt = Checkpointer(teacher.run_dir, read_only=True)
    try:
        restored = ckpt.restore_part_of_state(part, teacher.step)
    finally:
        ckpt.close()
    return rb.Replay(**restored["replay"])


class DistillStage(Stage):
    kind, position_key, unit = "student", "sgd_steps", "SGD steps"
    command = "distill"

    def __init__(self, cfg: DistillConfig, teacher: PolicyRun, devices=None, student: Optional[PolicyNetworks] = None):
        super().__init__(cfg)
        self.teacher = teacher
        tcfg = teacher.config
        self.env = make_env(teacher.spec.name, training=True, episode_length=tcfg.get("episode_length"))
        if self.env.spec != teacher.spec:
            raise RunError(f"--teacher {cfg.teacher}: its env spec no longer matches the task {teacher.spec.name!r} of this version")
        # what the student sees (its terms, history, noise, delay): refused in one line before anything is written
        self.observation = cfg.observation_model(self.env.observation_terms(), self.env.spec.action_size)
        self.student_nets = student if student is not None else _student_from_config(cfg, teacher, self.observation)
        check_student(self.student_nets, teacher, cfg, self.observation)
        t_replay = load_teacher_replay(teacher) if cfg.teacher_buffer_fraction > 0 else None
        self.distiller = Distiller(cfg, self.env, teacher.nets, self.student_nets, tcfg.get("energy", "l2"), t_replay, devices,
                                   self.observation)
        self.teacher_params = self.distiller.parallel.replicate(teacher.params)  # on every device of every process
        eval_env = make_env(teacher.spec.name, episode_length=tcfg.get("episode_length"))
        # the student under its own sensors (noise and delay included), the teacher as it was trained
        self.evaluate = make_evaluator(self.distiller.sensor_env(eval_env), self.distiller.policy, cfg.num_eval_episodes)
        self.teacher_eval = make_evaluator(eval_env, lambda p, s, g: teacher.nets.deterministic_action(p["actor"], s, g),
                                           cfg.num_eval_episodes)
        self.total = cfg.steps
        d = self.student_nets.describe()
        self.description = f"distill {d['arch']}" + (f" d{d['actor_depth']} w{d['actor_width']}" if "actor_depth" in d else "")

    def run_files(self) -> dict[str, Any]:
        return {"env_spec.json": self.env.spec.to_dict(), "networks.json": self.student_nets.to_dict(),
                OBSERVATION_FILE: self.observation.to_dict()}

    def run_info(self) -> dict[str, Any]:
        return {"env": self.env.spec.name, "params": self.student_nets.num_params(), "teacher": teacher_provenance(self.teacher)}

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"teacher_step": int(self.teacher.step), "networks": self.student_nets.to_dict()}

    def check_resumable(self, out: Path) -> None:
        """A teacher found at a new path (checked by :func:`check_same_teacher`): run.json follows it."""
        if not (out / "run.json").is_file() or not distributed.is_writer():
            return
        info = read_json(out / "run.json")
        recorded = info.get("teacher") or {}
        now = str(self.teacher.run_dir.absolute())
        if recorded.get("run") not in (None, now):
            info["teacher"] = {**recorded, "run": now, "moved_from": [*recorded.get("moved_from", []), recorded["run"]]}
            write_json_atomic(out / "run.json", info)

    def init(self) -> DistillState:
        return self.distiller.prefill(self.distiller.init(jax.random.PRNGKey(self.cfg.seed)), self.teacher_params)

    def restore_target(self) -> Any:
        return self.distiller.abstract_state

    def position(self, ds: DistillState) -> int:
        return int(ds.sgd_steps)

    def to_save(self, ds: DistillState) -> tuple[Any, Any]:
        return ds, ds.student

    def epoch(self, ds: DistillState) -> tuple[DistillState, dict]:
        return self.distiller.epoch(ds, self.teacher_params)

    def record(self, ds: DistillState, metrics: dict) -> dict:
        return {
            "env_steps": ds.env_steps,
            "teacher_acted_fraction": float(ds.teacher_acted) / max(ds.env_steps, 1),
            **self.evaluate(ds.student),
            **{f"train/{k}": v for k, v in metrics.items()},
        }

    def progress_info(self, m: dict) -> str:
        return f"student {m['success_rate']:.2f}" if "success_rate" in m else ""

    def finish(self, ds: DistillState, last: dict, wall_s: float) -> dict:
        t_eval = self.teacher_eval(self.teacher_params)
        s_eval = {k: v for k, v in last.items() if k in t_eval} if last else self.evaluate(ds.student)
        result = {
            "teacher": {**t_eval, "params": sum(self.teacher.num_params().values())},
            "student": {**s_eval, "params": sum(self.student_nets.num_params().values())},
            "wall_s": last.get("wall_s", wall_s),
        }
        write_json_atomic(Path(self.cfg.out) / "result.json", result)
        return result


def _student_from_config(cfg: DistillConfig, teacher: PolicyRun, observation: ObservationModel) -> PolicyNetworks:
    """The ``--arch`` student built for what it observes: its sensor input as the "state" (the teacher's
    state when it sees every term without history), the task's goal and action."""
    t = Interface.of(teacher.nets)
    return build_student(cfg.arch, dataclasses.replace(t, state_size=observation.input_size), cfg.size())


def check_student(student: PolicyNetworks, teacher: PolicyRun, cfg: DistillConfig, observation: ObservationModel) -> None:
    """The student must take its sensor input (the teacher's state without sensors), the teacher's goal and
    action, and have encoders if a representation loss is on."""
    t = teacher.nets
    want = (observation.input_size, t.goal_size, t.action_size)
    if (student.state_size, student.goal_size, student.action_size) != want:
        raise ConfigError(f"the student's sizes (state, goal, action) = {(student.state_size, student.goal_size, student.action_size)} "
                          f"differ from what it observes and emits {want} (state: its sensor input)")
    if (cfg.repr or cfg.relational) and not student.has_encoders:
        raise ConfigError("this student has no encoders: set --repr 0 and --relational 0 (the action losses still apply)")
    if cfg.action_kl and getattr(student, "mean_only", False):
        raise ConfigError("this student returns the action mean only: set --action-kl 0 (use --action-mse)")


def distill(cfg: DistillConfig, devices=None, student: Optional[PolicyNetworks] = None) -> dict:
    """Distill ``cfg.teacher`` into a student in ``cfg.out``; returns the final comparison.

    ``student``: any networks with the student interface (e.g. a user's flax.nnx module through
    :class:`deepdistill.student.NNXNetworks`) instead of the ``--arch`` built from ``cfg``. On
    ``--resume`` the run's saved networks.json is used."""
    distributed.initialize(cfg)  # before any JAX computation (loading the teacher is one)
    cfg = resolve_config(cfg)
    check_writable_dir(cfg.out, "--out")
    teacher_step = None
    if cfg.resume:
        teacher_step, saved_student = _resume_sources(Path(cfg.out))
        student = saved_student if saved_student is not None else student
    recorded = _recorded_teacher(Path(cfg.out)) if cfg.resume else None
    moved = recorded is not None and str(Path(cfg.teacher).absolute()) != recorded.get("run")
    if moved and teacher_step is not None:
        check_run(cfg.teacher, "teacher", "--teacher")
        ckpt = Checkpointer(cfg.teacher, read_only=True)
        try:
            steps = ckpt.steps()
        finally:
            ckpt.close()
        if teacher_step not in steps:
            raise RunError(f"--teacher {cfg.teacher} is not the teacher this student was distilled from: it has no "
                           f"checkpoint at step {teacher_step:,}, the one recorded (run.json records the teacher at "
                           f"{recorded.get('run')}); pass that teacher's folder, wherever it is now")
    teacher = load_teacher(cfg.teacher, teacher_step)
    if moved:
        check_same_teacher(teacher, recorded)
    stage = DistillStage(cfg, teacher, devices, student)
    check_state_fits(stage.distiller.abstract_state, "the student's parameters and optimiser, the replay buffer, the "
                     "environments", "lower --width or --depth, --num-envs or --replay-steps-per-env")  # before allocating
    return run_stage(stage)


def _recorded_teacher(out: Path) -> Optional[dict]:
    """The teacher record of a student's run.json (``None`` when run.json was lost)."""
    return read_json(out / "run.json").get("teacher") if (out / "run.json").is_file() else None


def _resume_sources(out: Path) -> tuple[Optional[int], Optional[PolicyNetworks]]:
    """The teacher step and the student networks of a run being resumed: from run.json and
    networks.json, or, where those were lost, from the newest checkpoint's meta (``None``: the
    newest teacher step / the networks ``--arch`` builds)."""
    info = read_json(out / "run.json") if (out / "run.json").is_file() else None
    nets = read_json(out / "networks.json") if (out / "networks.json").is_file() else None
    meta = None
    if info is None or nets is None:
        ckpt = Checkpointer(out, read_only=True)
        try:
            meta = ckpt.latest_meta() or {}
        finally:
            ckpt.close()
    step = info["teacher"]["step"] if info is not None else meta.get("teacher_step")
    nets = nets if nets is not None else meta.get("networks")
    return step, (networks_from_dict(nets) if nets is not None else None)
