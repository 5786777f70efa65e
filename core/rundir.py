"""Run directories (shared by every stage).

A run directory is self-describing::

    <run>/run.json        {"kind": "teacher" | "student", "deepdistill_version": ..., ...}
    <run>/config.json     the stage's config dataclass
    <run>/env_spec.json   the task's EnvSpec
    <run>/networks.json   the networks' config (see deepdistill.student.interface)
    <run>/metrics.jsonl   one JSON object per line
    <run>/checkpoints/    Orbax CheckpointManager (deepdistill.core.checkpoint); broken steps are
                          moved aside to checkpoints/broken/<step>-<reason>, never deleted
    <run>/lock            held (flock) by the one process writing the run; holds its PID

Nothing is pickled: arrays go through Orbax, everything else is JSON.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

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
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.filename is None:  # a full disk says nothing of where: name the file being written
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
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
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            if e.filename is None:  # a full disk: name the file
                raise OSError(e.errno, e.strerror, str(self.path)) from None
            raise

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


# --- output folders: checked before any work, one writer at a time ----------------------------------

LOCK_FILE = "lock"


def check_writable_dir(path: str | os.PathLike, flag: str) -> Path:
    """Make sure ``path`` is, or can be created as, a directory this process may write into, before
    any work starts; raises a :class:`ConfigError` naming ``flag`` otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a directory; choose another {flag}")
    existing = path
    while not existing.exists():  # the nearest ancestor that exists must be a writable directory
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{flag} {path}: {existing} is a file, not a directory; choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {existing} is not writable by this user; choose another {flag} or fix its permissions")
    return path


def check_writable_file(path: str | os.PathLike, flag: str) -> Path:
    """Make sure ``path`` can be written as a file (it is not a directory; its folder exists, or can be
    created, and is writable) before any work; raises a :class:`ConfigError` naming ``flag``."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a directory, not a file; name a file (e.g. {path / 'result.json'})")
    check_writable_dir(path.parent, flag)
    return path


@contextlib.contextmanager
def exclusive(directory: str | os.PathLike, flag: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``directory`` (created if missing) for the ``with`` block: a second
    writer (another process, or this one) is refused with a :class:`RunError` naming the PID that
    holds it. The lock is ``fcntl.flock`` on ``<directory>/lock``, which holds the PID: the kernel
    releases it when the process dies, so a run killed with ``kill -9`` never blocks its ``--resume``.
    The lock file is removed on exit (and the directory too if this call created it and it is empty)."""
    directory = check_writable_dir(directory, flag)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunError(f"{flag} {directory} is in use by process {holder} (lock file {path}); wait for it to "
                           f"finish or stop it, or choose another {flag}") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder we waited for removed this file on exit: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield directory
    finally:
        try:
            path.unlink(missing_ok=True)  # still holding the lock, so no one else holds this file
            if created and directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
        finally:
            os.close(fd)


# --- run metadata ---------------------------------------------------------------------------------------


def write_run_info(run_dir: str | os.PathLike, kind: str, **extra: Any) -> None:
    write_json_atomic(Path(run_dir) / "run.json", {"kind": kind, "deepdistill_version": __version__, **extra})


def check_run(run_dir: str | os.PathLike, kind: str, flag: str, repairable: bool = False) -> Path:
    """Make sure ``run_dir`` is a run of ``kind``; ``flag`` names the CLI option for the message.
    ``repairable``: a lost run.json or env_spec.json is fine (``--resume`` rebuilds them from config.json)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{flag} {run_dir}: no such directory; pass the --out of a `{_cmd(kind)}` run")
    info_path = run_dir / "run.json"
    if repairable and (run_dir / "config.json").is_file() and not info_path.is_file():
        return run_dir
    if not info_path.is_file():
        if (run_dir / "config.json").is_file():
            raise RunError(f"{flag} {run_dir}: run.json is missing; `{_cmd(kind)} --resume --out {run_dir}` rebuilds it "
                           f"(and any other lost bookkeeping file) from config.json and the checkpoints")
        raise RunError(f"{flag} {run_dir}: not a deepdistill run (no run.json); pass the --out of a `{_cmd(kind)}` run")
    try:
        info = read_json(info_path)
    except (OSError, json.JSONDecodeError) as e:
        raise RunError(f"{flag} {run_dir}: run.json is unreadable ({e})") from None
    if info.get("kind") != kind:
        raise RunError(f"{flag} {run_dir}: this is a {info.get('kind')} run, not a {kind} run; pass the --out of a `{_cmd(kind)}` run")
    if not (run_dir / "config.json").is_file():
        raise RunError(f"{flag} {run_dir}: config.json is missing: it holds the run's recipe and cannot be rebuilt; "
                       f"train a new run")
    if not (run_dir / "env_spec.json").is_file() and not repairable:
        raise RunError(f"{flag} {run_dir}: env_spec.json is missing; `{_cmd(kind)} --resume --out {run_dir}` rebuilds it")
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
    check_run(out, kind, "--out", repairable=True)
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


