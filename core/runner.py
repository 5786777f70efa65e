"""The one run loop of every training stage (``train-teacher``, ``distill``).

:func:`run_stage` owns the run directory (config, provenance), the Orbax checkpointer, the metrics
log, resume and truncation, the wall-time budget, TensorBoard and the progress bar. In a
multi-process run (:mod:`deepdistill.core.distributed`) every process runs it; process 0 alone
writes files, logs and shows progress, and all of them save and restore checkpoints together. A stage
subclasses :class:`Stage` and supplies its state, its compiled epoch and its evaluation, nothing
else (rsl_rl's one runner for every algorithm is the model).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np

from deepdistill.core import distributed
from deepdistill.core.checkpoint import Checkpointer
from deepdistill.core.cli import Progress
from deepdistill.core.errors import ConfigError
from deepdistill.core.rundir import MetricsLog, write_json_atomic, write_run_info


class Stage:
    """What a training stage plugs into :func:`run_stage`.

    ``cfg`` is the stage's resolved config dataclass (``out``, ``resume``, ``max_to_keep``,
    ``progress``; optionally ``max_wall_s`` and ``tensorboard``). ``position_key`` names the counter
    the budget ``total`` is counted in (``env_steps`` or ``sgd_steps``)."""

    kind: str  # "teacher" | "student": run.json's kind
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
    """Train ``stage`` from scratch or resume it from its newest readable checkpoint; see :class:`Stage`."""
    cfg, key = stage.cfg, stage.position_key
    out = Path(cfg.out)
    writer = distributed.is_writer()  # one writer: process 0 (rundir's writes check it too)
    distributed.barrier("deepdistill:resolved")  # every process has checked --out before process 0 writes
    if writer:
        out.mkdir(parents=True, exist_ok=True)
    if cfg.resume:
        stage.check_resumable(out)
    else:
        for name, obj in stage.run_files().items():
            write_json_atomic(out / name, obj)
        write_run_info(out, stage.kind, **stage.run_info())
    write_json_atomic(out / "config.json", cfg.to_dict())  # budgets may have been extended

    ckpt = Checkpointer(out, cfg.max_to_keep)
    log = MetricsLog(out / "metrics.jsonl")
    tb = _tensorboard(out) if writer and getattr(cfg, "tensorboard", False) else None
    max_wall_s = getattr(cfg, "max_wall_s", None)

    saved, wall0 = None, 0.0
    if cfg.resume:
        restored = ckpt.restore_latest(stage.restore_target())
        if restored is not None:
            _, saved, meta = restored
            wall0 = float(meta["wall_s"])
            log.truncate_after(key, meta[key])
    if saved is None:
        log.truncate_after(key, -1)

    t_start = time.perf_counter() - wall0
    progress = Progress(stage.description, stage.total, stage.unit, cfg.progress and writer, quiet=not writer)
    last: dict = {}

    def append(record: dict) -> dict:
        record = {**record, "wall_s": time.perf_counter() - t_start}
        log.append(record)
        if tb is not None:
            for k, v in record.items():
                if k != key and np.isscalar(v):
                    tb.add_scalar(k, v, record[key])
        return record

    try:
        with distributed.peer_guard(), progress.running():
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
                if max_wall_s is not None and distributed.agree(time.perf_counter() - t_start >= max_wall_s):
                    progress.log(f"wall-time budget of {max_wall_s:.0f} s reached")
                    break
                t0, p0 = time.perf_counter(), stage.position(state)
                state, metrics = stage.epoch(state)
                metrics = host_metrics(metrics)
                position = stage.position(state)
                rate = (position - p0) / (time.perf_counter() - t0)
                last = append({key: position, **stage.record(state, metrics), f"{key}_per_s": rate})
                to_save, params = stage.to_save(state)
                ckpt.save(position, to_save, params, {key: position, "wall_s": last["wall_s"], "eval": last})
                progress.update(position, rate, stage.progress_info(last))
    finally:
        ckpt.close()
        if tb is not None:
            tb.close()
    return stage.finish(state, last, time.perf_counter() - t_start)


def host_metrics(metrics: dict) -> dict[str, float]:
    """Device scalars -> Python floats."""
    return {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}


def _tensorboard(out: Path):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs tensorboardX: pip install 'deepdistill[tensorboard]'") from None
    return SummaryWriter(str(out / "tb"))
