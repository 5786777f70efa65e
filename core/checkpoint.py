"""Orbax checkpoints of a run (``<run>/checkpoints``), shared by every stage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp
from absl import logging as absl_logging

absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax logs routine events as warnings

from deepdistill.core.errors import RunError  # noqa: E402

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

    def restore_params(self, abstract_params: Any, step: Optional[int] = None) -> tuple[int, Any, dict]:
        """The ``params`` and ``meta`` of ``step`` (default: the newest readable step)."""
        steps = self.steps() if step is None else [step]
        if not steps:
            raise RunError(f"{self.directory.parent}: the run has no checkpoint yet")
        abstract_params = on_local_device(abstract_params)
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
