"""Orbax checkpoints of a run (``<run>/checkpoints``), shared by every stage.

Each step's ``meta`` holds a SHA-256 checksum of its ``state`` and ``params`` items (every array's
dtype, shape and bytes, in tree order), verified on restore: bytes garbled inside a checkpoint are
caught, not trained on. A resumed run moves an unreadable step aside to
``checkpoints/broken/<step>-<reason>`` (kept for inspection, out of Orbax's way) and continues from
the newest good one; readers (distill, export, evaluate) skip it and say so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging

absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax logs routine events as warnings

from deepdistill.core.errors import DiskFull, RunError, is_disk_full  # noqa: E402

BROKEN_DIR = "broken"


@contextlib.contextmanager
def _quiet_orbax():
    """Orbax logs a failed write (a full disk) with its traceback at ERROR level before raising it; the
    caller reports it in one line, so the log is silenced for the duration of the save."""
    level = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.FATAL)
    try:
        yield
    finally:
        absl_logging.set_verbosity(level)


def tree_digest(tree: Any) -> Optional[str]:
    """SHA-256 over every array of ``tree`` (dtype, shape, bytes, in tree order); ``None`` when an
    array is not fully addressable here (a multi-process run: each process holds only its shards)."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return None
        a = np.asarray(jax.device_get(leaf))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A checkpoint step that could not be used, and why."""

    step: int
    reason: str

    def __str__(self) -> str:
        return f"step {self.step}: {self.reason}"


class ChecksumError(Exception):
    """A restored item's bytes differ from the checksum saved with it."""


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__


def _verify(meta: dict, item: str, restored: Any) -> None:
    want = (meta.get("checksums") or {}).get(item)
    if want is None:  # saved before checksums existed, or by a multi-process run
        return
    got = tree_digest(restored)
    if got is not None and got != want:
        raise ChecksumError(f"the {item} item's checksum differs from the one saved with it (bytes garbled on disk)")


# --- Orbax checkpoints ---------------------------------------------------------------------------------


class Checkpointer:
    """An Orbax ``CheckpointManager`` over ``<run>/checkpoints``.

    Each step holds ``state`` (everything needed to resume), ``params`` (the three networks alone, so
    later stages load a policy without the optimiser or the replay buffer) and ``meta`` (JSON).

    In a multi-process run every process constructs it and calls ``save`` and the restores together:
    each writes and reads the shards of its own devices, process 0 the directories and the JSON
    (Orbax's default ``MultiprocessingOptions(primary_host=0)``). Arrays restore into the target's
    shardings, so a run resumes on another number of processes or devices."""

    def __init__(self, run_dir: str | os.PathLike, max_to_keep: int = 3, read_only: bool = False):
        self.directory = Path(run_dir).absolute() / "checkpoints"
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=not read_only, read_only=read_only, enable_async_checkpointing=False
            ),
        )

    def save(self, step: int, state: Any, params: Any, meta: dict) -> None:
        meta = {**meta, "checksums": {"state": tree_digest(state), "params": tree_digest(params)}}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(meta)
        )
        try:
            with _quiet_orbax():  # a failure is raised below, in one line; Orbax would also log its traceback
                self.manager.save(step, args=args, force=True)
                self.manager.wait_until_finished()
        except Exception as e:
            if not is_disk_full(e):
                raise
            self._remove_partial(step)
            kept = [s for s in self.steps() if s != step]
            raise DiskFull(f"{self.directory}: no space left on device while saving the checkpoint of step {step:,} "
                           f"(its partial files were removed; "
                           + (f"step {kept[-1]:,}, the newest checkpoint, is intact)" if kept else "no checkpoint was saved before it)")
                           ) from None

    def _remove_partial(self, step: int) -> None:
        """Remove what a failed save of ``step`` left (Orbax's temporary folder, or the step itself)."""
        for p in self.directory.glob(f"{step}.orbax-checkpoint-tmp*"):
            shutil.rmtree(p, ignore_errors=True)
        if (self.directory / str(step)).exists():
            shutil.rmtree(self.directory / str(step), ignore_errors=True)
        self.manager.reload()

    def steps(self) -> list[int]:
        self.manager.reload()
        return sorted(self.manager.all_steps())

    def restore_latest(self, abstract_state: Any, move_broken: bool = True) -> Optional[tuple[int, Any, dict, list[Skipped]]]:
        """Restore the newest good step (``None`` if there is none yet): ``(step, state, meta, skipped)``.

        Newer steps that fail to restore or to verify are moved aside to
        ``checkpoints/broken/<step>-<reason>`` and listed in ``skipped``. When no step restores,
        nothing is moved (the target itself may be what is wrong) and a :class:`RunError` lists why."""
        skipped: list[Skipped] = []
        for step in reversed(self.steps()):
            try:
                out = self.manager.restore(
                    step,
                    args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()),
                )
                meta = dict(out["meta"])
                _verify(meta, "state", out["state"])
            except Exception as e:  # noqa: BLE001 - any unreadable step falls back to the previous one
                skipped.append(Skipped(step, _reason(e)))
                continue
            for s in skipped if move_broken else ():  # move_broken: the one writing process of a run
                self.move_aside(s)
            return step, out["state"], meta, skipped
        if skipped:
            raise RunError(
                f"no readable checkpoint in {self.directory} (" + "; ".join(map(str, skipped)) + "); nothing was "
                f"moved: if the steps are broken, move them out of {self.directory} and start again"
            )
        return None

    def move_aside(self, broken: Skipped) -> Path:
        """Move a broken step to ``checkpoints/broken/<step>-<reason>`` (kept, but out of Orbax's way)."""
        tag = re.sub(r"[^A-Za-z0-9]+", "-", broken.reason.split(":")[0]).strip("-")[:40] or "unreadable"
        dest = self.directory / BROKEN_DIR / f"{broken.step}-{tag}"
        n = 1
        while dest.exists():
            n += 1
            dest = dest.with_name(f"{broken.step}-{tag}-{n}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        src = self.directory / str(broken.step)
        if src.exists():
            shutil.move(str(src), str(dest))
        self.manager.reload()
        return dest

    def latest_meta(self) -> Optional[dict]:
        """The ``meta`` item of the newest step whose meta reads, or ``None``."""
        for step in reversed(self.steps()):
            try:
                return dict(self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])
            except Exception:  # noqa: BLE001 - a broken step: try the one before
                continue
        return None

    def restore_part_of_state(self, part: dict[str, Any], step: Optional[int] = None) -> Any:
        """Only the fields ``part`` names of the ``state`` item (``{"replay": abstract}``: the replay
        buffer alone, without rebuilding the rest of the training state), from ``step`` (default:
        the newest step)."""
        steps = self.steps() if step is None else [step]
        if not steps:
            raise RunError(f"{self.directory.parent}: the run has no checkpoint yet")
        part = on_local_device(part)
        restore_args = ocp.checkpoint_utils.construct_restore_args(part)
        out = self.manager.restore(steps[-1], args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(item=part, restore_args=restore_args, partial_restore=True)))
        return out["state"]

    def restore_params(self, abstract_params: Any, step: Optional[int] = None) -> tuple[int, Any, dict, list[Skipped]]:
        """``(step, params, meta, skipped)`` of ``step`` (default: the newest good step; ``skipped``
        lists the newer ones that failed to restore or verify). Read-only: nothing is moved."""
        steps = self.steps() if step is None else [step]
        if not steps:
            raise RunError(f"{self.directory.parent}: the run has no checkpoint yet")
        abstract_params = on_local_device(abstract_params)
        skipped: list[Skipped] = []
        for s in reversed(steps):
            try:
                out = self.manager.restore(
                    s, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract_params), meta=ocp.args.JsonRestore())
                )
                meta = dict(out["meta"])
                _verify(meta, "params", out["params"])
                return s, out["params"], meta, skipped
            except Exception as e:  # noqa: BLE001
                skipped.append(Skipped(s, _reason(e)))
        raise RunError(
            f"{self.directory.parent}: no checkpoint is readable and matches networks.json (" + "; ".join(map(str, skipped)) + ")"
        )

    def close(self) -> None:
        self.manager.close()


def abstract_like(tree: Any) -> Any:
    """``ShapeDtypeStruct`` tree (keeping shardings) to restore into."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=getattr(a, "sharding", None)), tree)




def on_local_device(abstract: Any) -> Any:
    """``abstract`` with every leaf that has no sharding placed whole on this process's first device:
    without one, Orbax restores into the topology it was saved with, which a run saved by several
    processes or devices does not have here ("Topology mismatch")."""
    device = jax.local_devices()[0]

    def place(a):
        if getattr(a, "sharding", None) is not None:
            return a
        return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=jax.sharding.SingleDeviceSharding(device))

    return jax.tree.map(place, abstract)
