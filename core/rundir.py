"""Run directories (shared by every stage).

A run directory is self-describing::

    <run>/run.json        {"kind": "teacher" | "student", "deepdistill_version": ..., ...}
    <run>/config.json     the stage's config dataclass
    <run>/env_spec.json   the task's EnvSpec
    <run>/networks.json   the networks' config (see deepdistill.student.interface)
    <run>/metrics.jsonl   one JSON object per line
    <run>/checkpoints/    Orbax CheckpointManager (deepdistill.core.checkpoint)

Nothing is pickled: arrays go through Orbax, everything else is JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from deepdistill import __version__
from deepdistill.core.distributed import LAUNCH_FIELDS, is_writer
from deepdistill.core.errors import ConfigError, RunError

# --- small atomic file helpers -------------------------------------------------------------------------


def write_temp(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to a new temporary file beside ``path`` (same directory, hidden name), fsync it
    and give it the usual permissions; returns the temporary path (rename it over ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` atomically: a reader sees the old file or the new one, never a part.
    In a multi-process run only process 0 writes (the others return at once)."""
    if not is_writer():
        return
    tmp = write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


class MetricsLog:
    """Append-only ``metrics.jsonl``; on resume, lines past the restored checkpoint are dropped.
    In a multi-process run only process 0 writes it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def append(self, record: dict) -> None:
        if not is_writer():
            return
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
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in kept))


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
    command line where it sets them, the recipe stays as saved, and a conflicting flag is refused.
    The process set (:data:`~deepdistill.core.distributed.LAUNCH_FIELDS`) always follows the command
    line: a run may resume on another number of processes."""
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
        if f.name in ("resume", "out", *LAUNCH_FIELDS) or (f.name in overridable and given != dflt):
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


