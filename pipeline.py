"""``deepdistill pipeline``: train-teacher -> distill -> export-onnx -> direct -> evaluate, into one folder.

Each stage runs into its own sub-folder and records its completion in ``<out>/pipeline.json``;
rerunning the same command skips finished stages and resumes an interrupted one from its last
checkpoint.

The ``direct`` stage trains each student's network (its architecture, depth and width) directly with
contrastive RL, with the teacher's recipe, seed and env-step budget, into ``direct_<student>/``; the
report then states whether distillation paid (``--no-direct`` skips it). A preset with
``teacher_depths`` trains one teacher per depth, each in its own folder ``t<depth>/`` (teacher,
students, ONNX files, report), shares the direct runs between them, and draws success against the
teacher's depth in ``report/``.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path
from typing import Any, Optional

from deepdistill.core.cli import run_commands
from deepdistill.core.errors import ConfigError
from deepdistill.core.rundir import check_writable_dir, exclusive, read_json, write_json_atomic
from deepdistill.core.validation import check_numbers

# Presets: overrides of TeacherConfig and DistillConfig, and the students to distill: (depth, width) of
# --arch, or a dict {"name": folder suffix, "depth", "width", and any other DistillConfig field, "arch"
# included} (a student of its own: another architecture, what it senses).
PRESETS: dict[str, dict[str, Any]] = {
    "quickstart": {
        "teacher": {},
        "distill": {},
        "students": [(4, 64)],
    },
    "sweep": {
        "teacher": {},
        "distill": {},
        "students": [(0, 64), (4, 64), (8, 64)],
    },
    # A robot on 2 CPU cores: reacher learns fastest of the Brax tasks on a CPU (cheapest physics, 2
    # actuators, a goal within 0.2 m; a depth-4 teacher reached 0.98 success in ~90 s). A deep teacher
    # (depth 16, 827k parameters) and a 13x smaller depth-4 student; see BENCHMARKS.md.
    "reacher": {
        "teacher": dict(env="reacher", depth=16, width=128, batch_size=128, num_envs=256, unroll_length=50,
                        env_steps_per_sgd_step=32.0, replay_steps_per_env=1_000, total_env_steps=600_000,
                        eval_every=200_000, num_eval_episodes=64),
        "distill": dict(steps=3_000, eval_every=1_500, num_eval_episodes=64),
        "students": [(4, 64)],
        "episodes": 128,
    },
    # One GPU (an H200 trains the teacher at ~4,560 env steps/s: ~3 h; BENCHMARKS.md). The paper's ant setting at depth 64
    # (width 256, 512 envs, batch 256, 1 SGD step per 40 env steps), 50M env steps; students of depth 4.
    "ant": {
        "teacher": dict(env="ant", depth=64, width=256, batch_size=256, num_envs=512, unroll_length=50,
                        env_steps_per_sgd_step=40.0, replay_steps_per_env=10_000, total_env_steps=50_000_000,
                        eval_every=1_000_000, num_eval_episodes=128, remat=True),
        "distill": dict(steps=20_000, batch_size=512, num_envs=256, eval_every=5_000, num_eval_episodes=128),
        "students": [(4, 256), (4, 64)],
        "episodes": 128,
    },
    # Does a deeper teacher make a better small network than direct training? point_u5_maze (the paper's U5
    # layout; far goals 9-16 cells around walls): teachers of depth 4-32 at width 128 on the same 1M env steps,
    # each distilled into a depth-4, width-64 student, and that network trained directly (BENCHMARKS.md,
    # "Did distillation pay?").
    "depth": {
        "teacher": dict(env="point_u5_maze", width=128, total_env_steps=1_000_000, eval_every=250_000),
        "distill": {},
        "students": [(4, 64)],
        "teacher_depths": [4, 8, 16, 32],
    },
    # Students for real sensors (issue 20): the reacher teacher (full state, as --preset reacher) teaches
    # three students that each see only the joint angles (cos and sin; no velocities, no fingertip), with
    # encoder noise and a 1-step action delay: (a) its last 3 frames and actions, (b) a GRU, (c) the current
    # frame alone. See BENCHMARKS.md, "Students for real sensors".
    "reacher_sensors": {
        "teacher": dict(env="reacher", depth=16, width=128, batch_size=128, num_envs=256, unroll_length=50,
                        env_steps_per_sgd_step=32.0, replay_steps_per_env=1_000, total_env_steps=600_000,
                        eval_every=200_000, num_eval_episodes=64),
        "distill": dict(steps=3_000, eval_every=1_500, num_eval_episodes=64, repr=0.0, relational=0.0,
                        student_obs="cos_qpos,sin_qpos", obs_noise=("cos_qpos=0.01", "sin_qpos=0.01"),
                        action_delay=1),
        "students": [
            {"name": "hist3_actions", "depth": 4, "width": 64, "history": 3, "history_actions": True},
            {"name": "gru", "arch": "gru", "depth": 4, "width": 64, "history_actions": True, "seq_len": 4},
            {"name": "hist1", "depth": 4, "width": 64},
        ],
        "episodes": 128,
    },
    # seconds on a laptop: for tests and a first look at the outputs, not for results
    "smoke": {
        "teacher": dict(env="point_arena", depth=8, width=32, repr_dim=16, num_envs=32, unroll_length=25,
                        batch_size=64, env_steps_per_sgd_step=16.0, replay_steps_per_env=400, min_replay_steps=50,
                        eval_every=16_000, total_env_steps=32_000, num_eval_episodes=32),
        "distill": dict(steps=300, batch_size=64, num_envs=16, unroll_length=25, sgd_steps_per_unroll=25,
                        replay_steps_per_env=200, eval_every=150, num_eval_episodes=32),
        "students": [(0, 32)],
    },
}


# What pipeline.json records: rerunning a folder with other values is refused unless --restart.
RECORDED = ("preset", "seed", "arch", "teacher_env_steps", "distill_steps")
# Recorded too, but a rerun may change it: --no-direct after a run with it leaves the direct runs out of
# the report (their folders stay); a rerun without --no-direct adds the stage to a folder run without it.
RECORDED_FREE = ("direct",)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Train a teacher, distill students, export them to ONNX and compare everything, in one folder."""

    preset: str = "quickstart"
    """quickstart (point_maze, one depth-4 student), sweep (students of depth 0, 4, 8), reacher (a robot on 2
    CPU cores, about 12 min), reacher_sensors (the reacher teacher, three students that see only noisy joint
    angles with a 1-step delay: history, GRU, none), depth (teachers of depth 4, 8, 16, 32 on point_u5_maze,
    each distilled into a depth-4 student; success against teacher depth), ant (one GPU, about 3 h on an H200)
    or smoke (seconds)."""
    out: str = "runs/quickstart"
    """Folder for every stage: teacher/, student_d*_w*/, onnx_d*_w*/, direct_d*_w*/, report/ (presets with
    several teachers: t<depth>/ holding each teacher's teacher/, student_*/, onnx_*/ and report/)."""
    seed: int = 0
    arch: str = "residual"
    """Student architecture of every student of the preset: a registered name (`deepdistill archs`) or your
    own class as module:Class (see `distill --help`)."""
    episodes: Optional[int] = None
    """Evaluation episodes per split (default: the preset's, else 256)."""
    teacher_env_steps: Optional[int] = None
    """Train the teacher for this many env steps instead of the preset's (evaluating at least 4 times): a
    short look at a preset, e.g. a few minutes of ``--preset ant`` on one GPU."""
    distill_steps: Optional[int] = None
    """Distill each student for this many SGD steps instead of the preset's (evaluating at least twice)."""
    direct: bool = True
    """Also train each student's network directly with contrastive RL (the teacher's recipe, seed and env-step
    budget: a teacher-length run of a small network), so that the report says whether distillation paid;
    --no-direct skips it."""
    progress: bool = True
    restart: bool = False
    """Discard the pipeline in --out (its stage folders and pipeline.json) and start again; needed to
    rerun a folder with another --seed or --preset."""

    def validate(self) -> None:
        check_numbers(self)
        if self.preset not in PRESETS:
            raise ConfigError(f"--preset {self.preset!r} is unknown; choose one of: {', '.join(PRESETS)}")
        from deepdistill.student.interface import Size

        for st in preset_students(PRESETS[self.preset], self.arch):
            Size(st.depth, st.width).check(st.arch)
        for name in ("episodes", "teacher_env_steps", "distill_steps"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive (got {v})")


def _stage_overrides(cfg: PipelineConfig, preset: dict) -> tuple[dict, dict]:
    """The preset's teacher and distill settings with ``--teacher-env-steps`` / ``--distill-steps`` applied."""
    teacher, dist = dict(preset["teacher"]), dict(preset["distill"])
    if cfg.teacher_env_steps is not None:
        from deepdistill.teacher.config import TeacherConfig

        every = teacher.get("eval_every", TeacherConfig.eval_every)
        teacher.update(total_env_steps=cfg.teacher_env_steps, eval_every=max(1, min(every, cfg.teacher_env_steps // 4)))
    if cfg.distill_steps is not None:
        from deepdistill.distill.config import DistillConfig

        every = dist.get("eval_every", DistillConfig.eval_every)
        dist.update(steps=cfg.distill_steps, eval_every=max(1, min(every, cfg.distill_steps // 2)))
    return teacher, dist


def _stage_status(out: Path) -> dict:
    path = out / "pipeline.json"
    return read_json(path) if path.exists() else {"stages": {}}


@dataclasses.dataclass(frozen=True)
class StudentSpec:
    """One student of a preset: its stage name (``student_<name>``, ``onnx_<name>``), architecture, size,
    and any other ``distill`` settings (``overrides``: what it senses, ...)."""

    name: str
    arch: str
    depth: int
    width: int
    overrides: tuple[tuple[str, Any], ...] = ()

    def distill_settings(self) -> dict[str, Any]:
        return {"arch": self.arch, "depth": self.depth, "width": self.width, **dict(self.overrides)}

    def sensors(self, preset: dict) -> bool:
        """Whether, in ``preset`` (its ``distill`` settings and this student's own), it senses something other
        than the teacher's observation (terms, history, noise, delay): a network trained directly on the
        teacher's observation is then no same-input baseline for it."""
        from deepdistill.distill.config import DistillConfig

        return DistillConfig(**{**preset.get("distill", {}), **dict(self.overrides)}).sensors_requested()


def preset_students(preset: dict, arch: str = "residual") -> list[StudentSpec]:
    """The preset's students: ``(depth, width)`` entries take ``arch`` (``--arch``); a dict entry names itself
    and may set its own ``arch`` and any other distill field."""
    out = []
    for entry in preset["students"]:
        if isinstance(entry, dict):
            d = dict(entry)
            name, depth, width = d.pop("name"), d.pop("depth"), d.pop("width")
            out.append(StudentSpec(name, d.pop("arch", arch), depth, width, tuple(sorted(d.items()))))
        else:
            depth, width = entry
            out.append(StudentSpec(_student_name(arch, depth, width), arch, depth, width))
    return out


def _student_name(arch: str, depth: int, width: int) -> str:
    """``d4_w64`` for the default architecture, ``mlp_d1_w64`` or ``TanhMLPNetworks_d4_w64`` for others."""
    tag = "" if arch == "residual" else re.sub(r"[^A-Za-z0-9_]+", "_", arch.rpartition(":")[2].rpartition(".")[2]) + "_"
    return f"{tag}d{depth}_w{width}"


def _teacher_roots(preset: str) -> list[tuple[str, dict]]:
    """``(folder, teacher overrides)`` of each teacher of ``preset``: ``""`` (the pipeline's own folder) for
    one teacher, ``t<depth>`` for each depth of ``teacher_depths``."""
    depths = PRESETS[preset].get("teacher_depths")
    return [("", {})] if not depths else [(f"t{d}", {"depth": d}) for d in depths]


def _students(preset: str, arch: str) -> list[StudentSpec]:
    """Each student of ``preset`` (:func:`preset_students`; its name also names its direct run)."""
    return preset_students(PRESETS[preset], arch)


def _stage_dirs(out: Path, preset: str, arch: str = "residual") -> list[Path]:
    dirs = [out / "report"] + [out / f"direct_{st.name}" for st in _students(preset, arch)]
    for root, _ in _teacher_roots(preset):
        base = out / root if root else out
        names = ["teacher", "report"] + [f"{kind}_{st.name}" for st in _students(preset, arch)
                                         for kind in ("student", "onnx")]
        dirs += [base / n for n in names] + ([base] if root else [])
    return dirs


def _mark(out: Path, status: dict, stage: str, info: Optional[dict] = None) -> None:
    status["stages"][stage] = {"done": True, **(info or {})}
    write_json_atomic(out / "pipeline.json", status)


def run_pipeline(cfg: PipelineConfig) -> dict:
    """Run (or continue) the pipeline of ``cfg`` in ``cfg.out``, which stays locked throughout."""
    cfg.validate()
    out = check_writable_dir(cfg.out, "--out")
    with exclusive(out, "--out"):
        return _run_locked(cfg, out)


def direct_config(teacher_cfg: Any, arch: str, depth: int, width: int, out: Path) -> Any:
    """The teacher's config with the student's network: what a direct run trains (a non-residual
    architecture drops the residual network's speed options, which change no number)."""
    from deepdistill.teacher.config import RESIDUAL_OPTIONS

    network: dict[str, Any] = dict(arch=arch, depth=depth, width=width, actor_depth=None, critic_depth=None,
                                   actor_width=None, critic_width=None, out=str(out))
    if arch != "residual":
        network.update(RESIDUAL_OPTIONS)
    return dataclasses.replace(teacher_cfg, **network)


def _recipe(cfg: Any) -> dict:
    """A teacher config without its bookkeeping: two runs of equal recipes train the same numbers."""
    return {k: v for k, v in cfg.to_dict().items() if k not in ("out", "resume", "progress", "tensorboard", "max_to_keep")}


def _run_locked(cfg: PipelineConfig, out: Path) -> dict:
    from deepdistill.distill.config import DistillConfig
    from deepdistill.distill.run import distill
    from deepdistill.evaluate.config import EvaluateConfig
    from deepdistill.evaluate.report import summary
    from deepdistill.evaluate.run import evaluate
    from deepdistill.teacher.config import TeacherConfig
    from deepdistill.teacher.run import train_teacher

    preset = PRESETS[cfg.preset]
    episodes = cfg.episodes or preset.get("episodes", 256)
    status = _stage_status(out)
    teacher_over, distill_over = _stage_overrides(cfg, preset)
    recorded = {k: status[k] for k in RECORDED if k in status}
    if "seed" not in recorded and (out / "teacher" / "config.json").is_file():  # a pipeline.json of an older version
        recorded["seed"] = read_json(out / "teacher" / "config.json").get("seed")
    if cfg.restart:
        archs = {recorded.get("arch", "residual"), cfg.arch}
        for d in [p for name in {recorded.get("preset"), cfg.preset} & set(PRESETS) for a in archs for p in _stage_dirs(out, name, a)]:
            shutil.rmtree(d, ignore_errors=True)
        status = {"stages": {}}
    elif status["stages"] or recorded:
        for key in RECORDED:
            value = getattr(cfg, key)
            if key in recorded and recorded[key] != value:
                flag = "--" + key.replace("_", "-")
                raise ConfigError(f"--out {out} holds a pipeline run with {flag} {recorded[key]!r}, not {value!r}; rerun "
                                  f"with {flag} {recorded[key]!r} to continue it, pass --restart to discard it, or choose another --out")
    status.update({key: getattr(cfg, key) for key in RECORDED + RECORDED_FREE})
    write_json_atomic(out / "pipeline.json", status)

    def started(d: Path) -> bool:
        return (d / "run.json").exists()

    # 1. the teacher(s); 2. their students, distilled and exported
    teachers: dict[str, Any] = {}
    students: dict[str, list[tuple[str, str, str]]] = {}
    for root, over in _teacher_roots(cfg.preset):
        base, key = (out / root, f"{root}/") if root else (out, "")
        tdir = base / "teacher"
        tcfg = TeacherConfig(**{**teacher_over, **over, "out": str(tdir), "seed": cfg.seed, "progress": cfg.progress,
                                "resume": started(tdir)})
        teachers[root] = tcfg
        if f"{key}teacher" not in status["stages"]:
            _mark(out, status, f"{key}teacher", {"eval": train_teacher(tcfg)})
        students[root] = []
        for st in _students(cfg.preset, cfg.arch):
            name = st.name
            sdir, odir = base / f"student_{name}", base / f"onnx_{name}"
            if f"{key}distill_{name}" not in status["stages"]:
                dcfg = DistillConfig(**{**distill_over, **st.distill_settings(), "teacher": str(tdir), "out": str(sdir),
                                        "seed": cfg.seed, "progress": cfg.progress, "resume": started(sdir)})
                _mark(out, status, f"{key}distill_{name}", {"result": distill(dcfg)})
            if f"{key}export_{name}" not in status["stages"]:
                from deepdistill.export.config import ExportConfig
                from deepdistill.export.writer import export_run

                # a student trained without the representation losses has untrained encoders: the policy only
                weights = {**distill_over, **st.distill_settings()}
                encoders = bool(weights.get("repr", DistillConfig.repr) or weights.get("relational", DistillConfig.relational))
                export_run(ExportConfig(student=str(sdir), out=str(odir), overwrite=True, encoders=encoders))
                _mark(out, status, f"{key}export_{name}")
            students[root].append((name, str(sdir), str(odir)))

    # 3. each student's network trained directly, with the teachers' recipe, seed and budget
    directs: dict[str, str] = {}
    for st in (_students(cfg.preset, cfg.arch) if cfg.direct else []):
        name, ddir = st.name, out / f"direct_{st.name}"
        if st.sensors(preset):  # CRL trains on the full observation: no same-input direct network exists
            reason = ("it senses other inputs than the teacher's full state (its observation model), and a network "
                      "trained directly with contrastive RL learns from the full state: no same-input baseline")
            if f"direct_{name}" not in status["stages"]:
                _mark(out, status, f"direct_{name}", {"skipped": reason})
                print(f"direct_{name}: not trained: {reason}")
            continue
        dcfg = direct_config(next(iter(teachers.values())), st.arch, st.depth, st.width, ddir)
        same = next((t.out for t in teachers.values() if _recipe(t) == _recipe(dcfg)), None)
        if same is not None:  # a teacher is this network trained with this recipe and seed: the same run
            directs[name] = same
            _mark(out, status, f"direct_{name}", {"same_as": same})
            continue
        if f"direct_{name}" not in status["stages"]:
            _mark(out, status, f"direct_{name}", {"eval": train_teacher(dataclasses.replace(dcfg, resume=started(ddir)))})
        directs[name] = str(ddir)

    # 4. one report per teacher, and over teacher depths, success against depth
    reports = {}
    for root, _ in _teacher_roots(cfg.preset):
        base = out / root if root else out
        mine = tuple(dict.fromkeys(directs[name] for name, _, _ in students[root] if name in directs))
        reports[root] = evaluate(EvaluateConfig(
            teacher=teachers[root].out, student=tuple(s for _, s, _ in students[root]),
            onnx=tuple(o for _, _, o in students[root]), direct=mine, episodes=episodes, out=str(base / "report"),
            progress=cfg.progress))
        _mark(out, status, f"{root}/evaluate" if root else "evaluate")
        print(f"\n{summary(reports[root])}")
    if len(reports) > 1:
        from deepdistill.evaluate.sweep import write_depth_sweep

        paths = write_depth_sweep({teachers[root].depth: rep for root, rep in reports.items()}, out / "report")
        print(f"\nsuccess against teacher depth: {paths['md']} (plots beside it); runs under {out}/")
        return {"reports": reports, "paths": paths}
    report = reports[""]
    print(f"\nreport: {report['paths']['md']} (plots beside it); runs under {out}/")
    return report


@dataclasses.dataclass(frozen=True)
class EnvsConfig:
    """List the registered tasks (name, physics, observation sizes), or one task's observation terms."""

    obs: Optional[str] = None
    """A task (registered name or module:Class): list its observation terms (name, state entries, size,
    units, meaning), what `distill --student-obs` and `--obs-noise TERM=SIGMA` take."""


def list_envs_main(cfg: EnvsConfig = EnvsConfig()) -> None:
    from deepdistill.envs import list_envs

    if cfg.obs is not None:
        print(describe_terms(cfg.obs))
        return
    for name, desc in list_envs().items():
        print(f"{name:22s} {desc}")


def describe_terms(task: str) -> str:
    """The observation terms of ``task`` as a table, then the goal."""
    from deepdistill.envs import make_env

    try:
        env = make_env(task)
    except ConfigError as e:
        raise ConfigError(str(e).replace("--env", "--obs", 1)) from None
    spec, terms = env.spec, env.observation_terms()
    rows = [("term", "state", "size", "units", "meaning")]
    rows += [(t.name, f"[{t.start}:{t.stop}]", str(t.size), t.units, t.meaning) for t in terms]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]
    goal_terms = sorted({t.name for t in terms for i in spec.goal_indices if t.start <= i < t.stop})
    lines += ["", f"{spec.name}: state {spec.state_size} entries in {len(terms)} term{'s' if len(terms) > 1 else ''}; goal {spec.goal_size} entries "
                  f"= state{list(spec.goal_indices)} (from {', '.join(goal_terms)}), a separate input of every policy"]
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class ArchsConfig:
    """List the student architectures (registered names; module:Class names work too)."""


def list_archs_main(_: ArchsConfig = ArchsConfig()) -> None:
    from deepdistill.student.interface import architectures, get_architecture

    for name in architectures():
        a = get_architecture(name)
        how = "" if a.build is not None else "  (from Python only)"
        print(f"{name:22s} {a.description}{how}")
    print("module:Class           your own networks class (a NetworksBase subclass with build), e.g. "
          "tanh_mlp:TanhMLPNetworks")


def main(args: list[str] | None = None) -> None:
    run_commands(
        "deepdistill",
        {"pipeline": (PipelineConfig, run_pipeline), "envs": (EnvsConfig, list_envs_main),
         "archs": (ArchsConfig, list_archs_main)},
        args,
        description="The whole deep-teacher -> shallow-student pipeline in one command. The stages are also "
                    "separate commands: train-teacher, distill, export-onnx, evaluate.",
    )


if __name__ == "__main__":
    main()
