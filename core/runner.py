"""The one run loop of every training stage (``train-teacher``, ``distill``).

:func:`run_stage` owns the run directory (config, provenance), the Orbax checkpointer, the metrics
log, resume and truncation, the wall-time budget, TensorBoard and the progress bar. In a
multi-process run (:mod:`deepdistill.core.distributed`) every process runs it; process 0 alone
writes files, logs and shows progress, and all of them save and restore checkpoints together. A stage
subclasses :class:`Stage` and supplies its state, its compiled epoch and its evaluation, nothing
else (rsl_rl's one runner for every algorithm is the model).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from deepdistill.core import distributed
from deepdistill.core.checkpoint import Checkpointer
from deepdistill.core.cli import Progress
from deepdistill.core.errors import ConfigError, DiskFull, RunError
from deepdistill.core.signals import GracefulStop, Interrupted, interrupt_signum, signal_name
from deepdistill.core.rundir import MetricsLog, exclusive, read_json, write_json_atomic, write_run_info


class TrainingDiverged(RunError):
    """A loss or a parameter became NaN or inf; the checkpoints saved before it are kept."""


class Stage:
    """What a training stage plugs into :func:`run_stage`.

    ``cfg`` is the stage's resolved config dataclass (``out``, ``resume``, ``max_to_keep``,
    ``progress``; optionally ``max_wall_s`` and ``tensorboard``). ``position_key`` names the counter
    the budget ``total`` is counted in (``env_steps`` or ``sgd_steps``)."""

    kind: str  # "teacher" | "student": run.json's kind
    command: str = ""  # the console script that runs it ("train-teacher", "distill"): how to resume it
    position_key: str
    total: int
    description: str  # progress bar label
    unit: str  # progress bar unit

    def __init__(self, cfg: Any):
        self.cfg = cfg

    # --- the run directory ---
    def run_files(self) -> dict[str, Any]:
        """JSON files written when a run starts (besides config.json and run.json)."""
        return {}

    def run_info(self) -> dict[str, Any]:
        """Extra fields of run.json (provenance)."""
        return {}

    def check_resumable(self, out: Path) -> None:
        """Refuse to resume a run this version cannot continue (raise a UserError)."""

    def checkpoint_meta(self) -> dict[str, Any]:
        """Extra JSON saved with every checkpoint (what rebuilds run.json if it is lost)."""
        return {}

    # --- the state ---
    def init(self) -> Any:
        """A fresh state, ready for its first epoch (replay prefilled)."""
        raise NotImplementedError

    def restore_target(self) -> Any:
        """The abstract saved state to restore into (``ShapeDtypeStruct``s with shardings)."""
        raise NotImplementedError

    def after_restore(self, saved: Any) -> Any:
        """The state to continue from, given the restored saved state."""
        return saved

    def position(self, state: Any) -> int:
        raise NotImplementedError

    def to_save(self, state: Any) -> tuple[Any, Any]:
        """``(saved state, params)``: the checkpoint's ``state`` item and its ``params`` item."""
        raise NotImplementedError

    # --- one epoch and its record ---
    def epoch(self, state: Any) -> tuple[Any, dict]:
        raise NotImplementedError

    def record(self, state: Any, metrics: dict) -> dict:
        """The metrics.jsonl record after an epoch (evaluation included), without position and wall time."""
        raise NotImplementedError

    def first_record(self, state: Any) -> Optional[dict]:
        """A record logged before the first epoch of a fresh run (e.g. the untrained policy), or None."""
        return None

    def progress_info(self, record: dict) -> str:
        return ""

    def finish(self, state: Any, last: dict, wall_s: float) -> dict:
        """What the stage returns (and writes) once the budget is spent."""
        return last


def run_stage(stage: Stage) -> dict:
    """Train ``stage`` from scratch or resume it from its newest good checkpoint; see :class:`Stage`.

    The run directory is locked (:func:`~deepdistill.core.rundir.exclusive`) for the whole run. A
    fresh run that fails before its first checkpoint removes what it wrote, so the same command can
    simply be run again. A resumed run rewrites bookkeeping files that went missing. An epoch whose
    losses or parameters are not finite stops the run before it is saved (:class:`TrainingDiverged`).
    SIGINT or SIGTERM stops the run at the next epoch boundary, after that epoch's checkpoint
    (:class:`~deepdistill.core.signals.Interrupted`, with the command that resumes it); a full disk
    at a checkpoint keeps the ones before it (:class:`~deepdistill.core.errors.DiskFull`)."""
    out = Path(stage.cfg.out)
    created = not out.exists()
    writer = distributed.is_writer()  # one writer (process 0) locks, writes and cleans up
    distributed.barrier("deepdistill:resolved")  # every process has checked --out before process 0 writes
    resume = f"{stage.command or stage.kind} --resume --out {out}"
    with exclusive(out, "--out") if writer else contextlib.nullcontext():
        written: list[str] = []
        try:
            return _run_locked(stage, out, written)
        except BaseException as e:
            kept = _has_checkpoint(out)
            if writer and not stage.cfg.resume and not kept:  # a failed start: leave nothing that blocks the next one
                if created:
                    shutil.rmtree(out, ignore_errors=True)
                else:
                    for name in written:
                        if (out / name).is_dir():
                            shutil.rmtree(out / name, ignore_errors=True)
                        else:
                            (out / name).unlink(missing_ok=True)
            if isinstance(e, DiskFull):
                raise DiskFull(f"{e}; free space on that disk" + ("" if kept else ", then rerun the same command"),
                               resume=resume if kept else None) from None
            if isinstance(e, KeyboardInterrupt) and not isinstance(e, Interrupted):  # a second signal, or Ctrl-C outside the loop
                signum = interrupt_signum(e)
                raise Interrupted(f"interrupted by {signal_name(signum)}; " + (
                    f"the newest checkpoint of --out {out} is kept" if kept else "no checkpoint was saved, nothing was kept"),
                    signum, resume if kept else None) from None
            raise


def _has_checkpoint(out: Path) -> bool:
    d = out / "checkpoints"
    return d.is_dir() and any(p.name.isdigit() for p in d.iterdir())


def _run_locked(stage: Stage, out: Path, written: list[str]) -> dict:
    cfg, key = stage.cfg, stage.position_key
    writer = distributed.is_writer()  # one writer: process 0 (rundir's writes check it too)
    if cfg.resume:
        stage.check_resumable(out)
        if writer:
            _repair(stage, out)
    else:
        if writer and ((out / "run.json").exists() or _has_checkpoint(out)):  # checked again under the lock
            raise RunError(f"--out {out} already holds a run; pass --resume to continue it or choose another --out")
        written += ["metrics.jsonl", "checkpoints", "tb"]
        for name, obj in stage.run_files().items():
            written.append(name)
            write_json_atomic(out / name, obj)
        written += ["run.json", "config.json"]
        write_run_info(out, stage.kind, **stage.run_info())
    write_json_atomic(out / "config.json", cfg.to_dict())  # budgets may have been extended

    ckpt = Checkpointer(out, cfg.max_to_keep)
    log = MetricsLog(out / "metrics.jsonl")
    tb = _tensorboard(out) if writer and getattr(cfg, "tensorboard", False) else None
    max_wall_s = getattr(cfg, "max_wall_s", None)
    progress = Progress(stage.description, stage.total, stage.unit, cfg.progress and writer, quiet=not writer)

    try:
        saved, wall0, good_step = None, 0.0, None
        if cfg.resume:
            restored = ckpt.restore_latest(stage.restore_target(), move_broken=writer)
            if restored is not None:
                good_step, saved, meta, skipped = restored
                wall0 = float(meta["wall_s"])
                log.truncate_after(key, meta[key])
                if skipped:
                    progress.log(f"warning: {len(skipped)} broken checkpoint(s) moved to {ckpt.directory / 'broken'} ("
                                 + "; ".join(map(str, skipped)) + f"); resuming from step {good_step}")
                    if writer:
                        _note_broken(out, skipped)
        if saved is None:
            log.truncate_after(key, -1)

        t_start = time.perf_counter() - wall0
        last: dict = {}

        def append(record: dict) -> dict:
            record = {**record, "wall_s": time.perf_counter() - t_start}
            log.append(record)
            if tb is not None:
                for k, v in record.items():
                    if k != key and np.isscalar(v):
                        tb.add_scalar(k, v, record[key])
            return record

        with distributed.peer_guard(), progress.running(), GracefulStop("the current epoch") as stop:
            if saved is None:
                state = stage.init()
                first = stage.first_record(state)
                if first is not None:
                    last = append({key: stage.position(state), **first})
            else:
                state = stage.after_restore(saved)
                progress.log(f"resumed {out} at {stage.position(state):,} {stage.unit}")
            progress.update(stage.position(state), info=stage.progress_info(last))
            while stage.position(state) < stage.total:
                if distributed.agree(stop.signum is not None):  # SIGINT/SIGTERM: stop at this epoch boundary
                    raise _stopped(stage, out, state, stop.signum or signal.SIGTERM, good_step)
                if max_wall_s is not None and distributed.agree(time.perf_counter() - t_start >= max_wall_s):
                    progress.log(f"wall-time budget of {max_wall_s:.0f} s reached")
                    break
                t0, p0 = time.perf_counter(), stage.position(state)
                state, metrics = stage.epoch(state)
                metrics = host_metrics(metrics)
                position = stage.position(state)
                to_save, params = stage.to_save(state)
                check_finite(metrics, params, f"{position:,} {stage.unit}", out, good_step)
                rate = (position - p0) / (time.perf_counter() - t0)
                last = append({key: position, **stage.record(state, metrics), f"{key}_per_s": rate})
                ckpt.save(position, to_save, params,
                          {key: position, "wall_s": last["wall_s"], "eval": last, **stage.checkpoint_meta()})
                good_step = position
                progress.update(position, rate, stage.progress_info(last))
    finally:
        ckpt.close()
        if tb is not None:
            tb.close()
    return stage.finish(state, last, time.perf_counter() - t_start)


def _stopped(stage: Stage, out: Path, state: Any, signum: int, good_step: Optional[int]) -> Interrupted:
    """What a run stopped by a signal at an epoch boundary reports (its newest epoch is saved)."""
    where = f"stopped by {signal_name(signum)} at {stage.position(state):,} {stage.unit}"
    if good_step is None:
        return Interrupted(f"{where}, before its first checkpoint: nothing was kept", signum)
    return Interrupted(f"{where}; saved the checkpoint of step {good_step:,} in --out {out}", signum,
                       f"{stage.command or stage.kind} --resume --out {out}")


def _repair(stage: Stage, out: Path) -> None:
    """Rewrite the bookkeeping files a resumed run lost (they follow from its config and checkpoints)."""
    rebuilt = []
    for name, obj in stage.run_files().items():
        if not (out / name).is_file():
            write_json_atomic(out / name, obj)
            rebuilt.append(name)
    if not (out / "run.json").is_file():
        write_run_info(out, stage.kind, **stage.run_info(), rebuilt_from="config.json and checkpoints")
        rebuilt.append("run.json")
    if rebuilt:
        print(f"--out {out}: rebuilt {', '.join(rebuilt)} from config.json and the checkpoints", flush=True)


def _note_broken(out: Path, skipped: list) -> None:
    """Record moved-aside checkpoints in run.json (provenance)."""
    info = read_json(out / "run.json")
    info["broken_checkpoints"] = [*info.get("broken_checkpoints", []), *map(str, skipped)]
    write_json_atomic(out / "run.json", info)


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.isfinite(x).all() for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.stack(leaves).all() if leaves else jnp.array(True)


def check_finite(metrics: dict[str, float], params: Any, where: str, out: Path, good_step: Optional[int]) -> None:
    """Raise :class:`TrainingDiverged` if a metric or a parameter is NaN or inf (one fused reduction)."""
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if not bad and bool(_all_finite(params)):
        return
    what = f"non-finite {', '.join(f'{k}={metrics[k]}' for k in bad)}" if bad else "non-finite parameters"
    kept = f"the last good checkpoint (step {good_step:,}) is kept" if good_step is not None else "no checkpoint was saved"
    raise TrainingDiverged(f"--out {out}: training diverged in the epoch ending at {where} ({what}); not saved; {kept}. "
                           f"Lower the learning rates or loss weights and start a new run")


def host_metrics(metrics: dict) -> dict[str, float]:
    """Device scalars -> Python floats."""
    return {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}


def _tensorboard(out: Path):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs tensorboardX: pip install 'deepdistill[tensorboard]'") from None
    return SummaryWriter(str(out / "tb"))
