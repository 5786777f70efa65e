"""``evaluate(cfg)``: load the teacher, students and ONNX exports, compare them, write the report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from deepdistill.core.errors import ConfigError, RunError
from deepdistill.core.memory import device_memory, fmt_bytes, tree_bytes
from deepdistill.core.rollout import chunk_size
from deepdistill.core.rundir import check_writable_dir, exclusive
from deepdistill.evaluate.config import EvaluateConfig

if TYPE_CHECKING:
    from deepdistill.student.policy import PolicyRun


def evaluate(cfg: EvaluateConfig) -> dict:
    """Run the comparison and write the report; returns the report (see :func:`compare.compare`)."""
    cfg.validate()
    check_writable_dir(cfg.out, "--out")  # before any work
    with exclusive(cfg.out, "--out"):
        return _evaluate(cfg)


def _evaluate(cfg: EvaluateConfig) -> dict:
    from deepdistill.student.policy import check_compatible, load_policy_run, load_teacher
    from deepdistill.core.cli import Progress
    from deepdistill.envs import make_env
    from deepdistill.evaluate.compare import compare, evaluation_rows
    from deepdistill.evaluate.report import write_report
    from deepdistill.export.runtime import OnnxPolicy

    teacher = load_teacher(cfg.teacher)
    students = [load_policy_run(s, "student", "--student") for s in cfg.student]
    for s in students:
        check_compatible(teacher, s)
    directs = [load_direct(d, teacher, students) for d in cfg.direct]
    onnx = []
    for d in cfg.onnx:
        policy = OnnxPolicy(str(check_onnx_dir(d)))
        if policy.metadata.get("task") not in (None, teacher.spec.name):
            raise RunError(f"--onnx {d}: exported for task {policy.metadata.get('task')!r}, the teacher acts in {teacher.spec.name!r}")
        onnx.append((f"onnx:{Path(d).name}", policy))
    env = make_env(teacher.spec.name, episode_length=teacher.config.get("episode_length"))
    check_evaluation_size(env, cfg.episodes)  # before any rollout allocates
    rows = evaluation_rows(env, len(students), onnx, cfg.native, len(directs))
    splits = len(env.spec.eval_splits)
    total = rows * splits * cfg.episodes
    bar = Progress("evaluate", total, "episodes", cfg.progress)
    bar.log(f"evaluating {rows} policies (random actions included) x {splits} split(s) x {cfg.episodes:,} episodes of "
            f"{env.spec.episode_length:,} steps: {total * env.spec.episode_length:,} env steps")
    done = [0]

    def progress(name: str, n: int) -> None:
        done[0] += n
        bar.update(done[0], info=name)

    with bar.running():
        report = compare(teacher, students, onnx, cfg.episodes, cfg.seed, cfg.latency_samples, env=env,
                         viewer=cfg.viewer, native=cfg.native, progress=progress,
                         directs=directs)
    paths = write_report(report, cfg.out, cfg.plots)
    report["paths"] = paths
    return report


def check_evaluation_size(env, episodes: int) -> None:
    """Refuse (one line) an ``--episodes`` whose evaluation cannot fit in memory: every episode's key is
    held at once (16 bytes, on the device and the host), and one chunk of episodes
    (:func:`~deepdistill.core.rollout.chunk_size`) holds its environments and per-step records three
    times (the device's rollout, its host copy, a host policy's rollout)."""
    import jax

    S, A, T = env.spec.state_size, env.spec.action_size, env.spec.episode_length
    one = jax.eval_shape(lambda k: env.reset_split(k, env.spec.eval_splits[0]), jax.random.PRNGKey(0))
    per_episode = tree_bytes(one) + 4 * (T + 1) * (S + A + 2)
    chunk = chunk_size(episodes, T)
    need = 16 * episodes + 3 * chunk * per_episode
    limit, source = device_memory()
    if need > limit:
        most = max(0, (limit - 3 * chunk * per_episode) // 16)
        raise ConfigError(f"--episodes {episodes:,} needs about {fmt_bytes(need)} of memory (16 bytes per episode "
                          f"for its key, and {fmt_bytes(3 * chunk * per_episode)} for a chunk of {chunk:,} episodes of "
                          f"{T:,} steps) but the device has {fmt_bytes(limit)} ({source}); use at most "
                          f"{most:,} (256 is the usual figure)")


def load_direct(path: str, teacher, students) -> "PolicyRun":
    """A ``--direct`` run: a ``train-teacher`` run of the teacher's task whose network is a student's."""
    from deepdistill.evaluate.dividend import same_network
    from deepdistill.student.policy import load_policy_run

    run = load_policy_run(path, "teacher", "--direct")
    t, d = teacher.spec, run.spec
    if d.name != t.name:
        raise RunError(f"--direct {path} was trained on task {d.name!r}, the teacher acts in {t.name!r}; give a direct "
                       f"run of {t.name!r} (train-teacher --env {t.name} --arch/--depth/--width of the student)")
    for field in ("state_size", "goal_size", "action_size", "goal_indices"):
        if getattr(t, field) != getattr(d, field):
            raise RunError(f"--direct {path}: {field} {getattr(d, field)} differs from the teacher's {getattr(t, field)}")
    if not any(same_network(run.nets, s.nets) for s in students):
        have = ", ".join(_size(s.nets) for s in students)
        raise RunError(f"--direct {path}: its network ({_size(run.nets)}) matches no student ({have}); train it with "
                       f"the student's --arch, --depth and --width")
    return run


def _size(nets) -> str:
    d = nets.describe()
    return f"{d['arch']}: " + " ".join(f"{k} {v}" for k, v in d.items() if k != "arch" and v is not None)


def check_onnx_dir(path: str) -> Path:
    p = Path(path)
    f = p / "policy.onnx" if p.is_dir() else p
    if not f.is_file():
        raise RunError(f"--onnx {path}: no policy.onnx there; pass a directory written by `export-onnx`")
    return f
