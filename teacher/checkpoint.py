"""Run directories and Orbax checkpoints (shared by every stage).

A run directory is self-describing::

    <run>/run.json        {"kind": "teacher" | "student", "version": ..., ...}
    <run>/config.json     the stage's config dataclass
    <run>/env_spec.json   the task's EnvSpec
    <run>/metrics.jsonl   one JSON object per line
    <run>/checkpoints/    Orbax CheckpointManager (atomic saves: a killed save leaves only a tmp dir)

Nothing is pickled: arrays go through Orbax, everything else is JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp
from absl import logging as absl_logging

absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax logs routine events as warnings

from deepdistill import __version__


class RunError(ValueError):
    """A run directory is missing, of the wrong kind, or inconsistent; the message says how to fix it."""


# --- small atomic file helpers -------------------------------------------------------------------------


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to a temporary file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


class MetricsLog:
    """Append-only ``metrics.jsonl``; on resume, lines past the restored checkpoint are dropped."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill mid-write
                continue
        return out

    def truncate_after(self, key: str, value: float) -> None:
        """Keep only records with ``record[key] <= value`` (atomically)."""
        kept = [r for r in self.read() if r.get(key, 0) <= value]
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".metrics.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


# --- run metadata ---------------------------------------------------------------------------------------


def write_run_info(run_dir: str | os.PathLike, kind: str, **extra: Any) -> None:
    write_json_atomic(Path(run_dir) / "run.json", {"kind": kind, "deepdistill_version": __version__, **extra})


def check_run(run_dir: str | os.PathLike, kind: str, flag: str) -> Path:
    """Make sure ``run_dir`` is a run of ``kind``; ``flag`` names the CLI option for the message."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{flag} {run_dir}: no such directory; pass the --out of a `{_cmd(kind)}` run")
    info_path = run_dir / "run.json"
    if not info_path.is_file():
        raise RunError(f"{flag} {run_dir}: not a deepdistill run (no run.json); pass the --out of a `{_cmd(kind)}` run")
    try:
        info = read_json(info_path)
    except (OSError, json.JSONDecodeError) as e:
        raise RunError(f"{flag} {run_dir}: run.json is unreadable ({e})") from None
    if info.get("kind") != kind:
        raise RunError(f"{flag} {run_dir}: this is a {info.get('kind')} run, not a {kind} run; pass the --out of a `{_cmd(kind)}` run")
    for name in ("config.json", "env_spec.json"):
        if not (run_dir / name).is_file():
            raise RunError(f"{flag} {run_dir}: {name} is missing; the run directory is incomplete")
    return run_dir


def resolve_run_config(cfg: Any, kind: str, overridable: tuple[str, ...]) -> Any:
    """Validate a stage config; a new run may not reuse an ``--out`` holding a run, and ``--resume``
    merges the command line with the run's saved config: the fields in ``overridable`` follow the
    command line where it sets them, the recipe stays as saved, and a conflicting flag is refused."""
    from deepdistill.teacher.config import ConfigError

    cfg.validate()
    out = Path(cfg.out)
    if not cfg.resume:
        if (out / "run.json").exists() or (out / "checkpoints").exists():
            raise RunError(f"--out {out} already holds a run; pass --resume to continue it or choose another --out")
        return cfg
    check_run(out, kind, "--out")
    cls = type(cfg)
    saved, default, merged = cls.from_dict(read_json(out / "config.json")), cls(), {}
    for f in dataclasses.fields(cls):
        given, was, dflt = getattr(cfg, f.name), getattr(saved, f.name), getattr(default, f.name)
        if f.name in ("resume", "out") or (f.name in overridable and given != dflt):
            merged[f.name] = given
        elif f.name not in overridable and given not in (was, dflt):
            raise ConfigError(
                f"--{f.name.replace('_', '-')} {given!r} differs from the run's saved value {was!r}; a resumed run "
                f"keeps its recipe (only {', '.join('--' + n.replace('_', '-') for n in overridable)} may change)"
            )
        else:
            merged[f.name] = was
    return cls(**merged)


def _cmd(kind: str) -> str:
    return {"teacher": "train-teacher", "student": "distill"}.get(kind, kind)


# --- Orbax checkpoints ---------------------------------------------------------------------------------


class Checkpointer:
    """An Orbax ``CheckpointManager`` over ``<run>/checkpoints``.

    Each step holds ``state`` (everything needed to resume), ``params`` (the three networks alone, so
    later stages load a policy without the optimiser or the replay buffer) and ``meta`` (JSON)."""

    def __init__(self, run_dir: str | os.PathLike, max_to_keep: int = 3, read_only: bool = False):
        self.directory = Path(run_dir).absolute() / "checkpoints"
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=not read_only, read_only=read_only, enable_async_checkpointing=False
            ),
        )

    def save(self, step: int, state: Any, params: Any, meta: dict) -> None:
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(meta)
        )
        self.manager.save(step, args=args, force=True)
        self.manager.wait_until_finished()

    def steps(self) -> list[int]:
        self.manager.reload()
        return sorted(self.manager.all_steps())

    def restore_latest(self, abstract_state: Any) -> Optional[tuple[int, Any, dict]]:
        """Restore the newest readable step (a step broken by a kill is skipped). ``None`` if none."""
        errors = []
        for step in reversed(self.steps()):
            try:
                out = self.manager.restore(
                    step,
                    args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()),
                )
                return step, out["state"], dict(out["meta"])
            except Exception as e:  # noqa: BLE001 - any unreadable step falls back to the previous one
                errors.append(f"step {step}: {type(e).__name__}: {e}")
        if errors:
            raise RunError(f"no readable checkpoint in {self.directory}: " + "; ".join(errors))
        return None

    def restore_params(self, abstract_params: Any, step: Optional[int] = None) -> tuple[int, Any, dict]:
        """The ``params`` and ``meta`` of ``step`` (default: the newest readable step)."""
        steps = self.steps() if step is None else [step]
        if not steps:
            raise RunError(f"{self.directory.parent}: the run has no checkpoint yet")
        errors = []
        for s in reversed(steps):
            try:
                out = self.manager.restore(
                    s, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract_params), meta=ocp.args.JsonRestore())
                )
                return s, out["params"], dict(out["meta"])
            except Exception as e:  # noqa: BLE001
                errors.append(f"step {s}: {type(e).__name__}: {str(e)[:300]}")
        raise RunError(
            f"{self.directory.parent}: no checkpoint matches the saved networks.json (" + "; ".join(errors) + ")"
        )

    def close(self) -> None:
        self.manager.close()


def abstract_like(tree: Any) -> Any:
    """``ShapeDtypeStruct`` tree (keeping shardings) to restore into."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=getattr(a, "sharding", None)), tree)


# --- loading a trained policy (teacher or student) ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PolicyRun:
    """A trained teacher or student: its networks, parameters and the task it acts in."""

    kind: str
    run_dir: Path
    spec: "EnvSpec"
    nets: "CRLNetworks"
    params: dict  # {"actor": ..., "sa_encoder": ..., "goal_encoder": ...}
    step: int
    config: dict
    info: dict

    def num_params(self) -> dict[str, int]:
        return self.nets.num_params()

    def act(self, state: jax.Array, goal: jax.Array) -> jax.Array:
        """Deterministic action ``[B, A]`` for ``state [B, S]``, ``goal [B, G]``."""
        return self.nets.deterministic_action(self.params["actor"], state, goal)


def load_policy_run(run_dir: str | os.PathLike, kind: str, flag: str = "--run", step: Optional[int] = None) -> PolicyRun:
    """Load the networks of a ``kind`` run (``teacher`` or ``student``); refuses anything else clearly."""
    from deepdistill.teacher.envs import EnvSpec
    from deepdistill.teacher.networks import CRLNetworks

    run_dir = check_run(run_dir, kind, flag)
    if not (run_dir / "networks.json").is_file():
        raise RunError(f"{flag} {run_dir}: networks.json is missing; the run directory is incomplete")
    try:
        spec = EnvSpec.from_dict(read_json(run_dir / "env_spec.json"))
        nets = CRLNetworks.from_dict(read_json(run_dir / "networks.json"))
        config = read_json(run_dir / "config.json")
        info = read_json(run_dir / "run.json")
    except (TypeError, KeyError, json.JSONDecodeError) as e:
        raise RunError(f"{flag} {run_dir}: its JSON files are unreadable or of another version ({e})") from None
    if (nets.state_size, nets.goal_size, nets.action_size) != (spec.state_size, spec.goal_size, spec.action_size):
        raise RunError(f"{flag} {run_dir}: networks.json does not match env_spec.json (sizes differ)")
    abstract = jax.eval_shape(nets.init, jax.random.PRNGKey(0))
    ckpt = Checkpointer(run_dir, read_only=True)
    try:
        s, params, _ = ckpt.restore_params(abstract, step)
    finally:
        ckpt.close()
    return PolicyRun(kind, run_dir, spec, nets, params, s, config, info)


def load_teacher(run_dir: str | os.PathLike, step: Optional[int] = None) -> PolicyRun:
    """Load a teacher from a ``train-teacher`` run directory (newest checkpoint unless ``step``)."""
    return load_policy_run(run_dir, "teacher", "--teacher", step)
