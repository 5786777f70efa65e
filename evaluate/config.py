"""The one configuration of ``evaluate`` (its CLI is generated from this dataclass)."""

from __future__ import annotations

import dataclasses

from deepdistill.core.errors import ConfigError
from deepdistill.core.validation import check_numbers


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """Compare a teacher with one or more students (and their ONNX exports) on the same goals."""

    teacher: str = "runs/teacher"
    """A `train-teacher` run directory."""
    student: tuple[str, ...] = ("runs/student",)
    """One or more `distill` run directories (a sweep is drawn on one plot)."""
    direct: tuple[str, ...] = ()
    """`train-teacher` runs of a student's network trained directly (`--arch/--depth/--width` of the student,
    the teacher's recipe): the report pairs each student with the run of its network, episode by episode,
    and states the dividend (student - direct). Each must be of the teacher's task and match a student's size."""
    onnx: tuple[str, ...] = ()
    """Directories written by `export-onnx` (each holds policy.onnx) to evaluate as well."""
    episodes: int = 256
    """Episodes per evaluation split."""
    out: str = "runs/report"
    """Report directory (report.json, report.md, PNG plots)."""
    seed: int = 12345
    """Seed of the evaluation episodes (the same for every policy)."""
    latency_samples: int = 300
    """Timed single-sample calls per policy."""
    plots: bool = True
    """Draw the PNG plots."""
    viewer: bool = True
    """Brax tasks: also write one page of brax's HTML viewer per policy (one episode, the same goal for all)."""
    native: bool = True
    """MuJoCo tasks: also run each ONNX policy in native MuJoCo (task.xml beside it) from the same starts and
    goals, and measure the sim-to-sim observation gap (report.json `native_mujoco`)."""
    progress: bool = True
    """Show a progress bar over the episodes evaluated."""

    def validate(self) -> None:
        check_numbers(self)
        if self.episodes <= 0:
            raise ConfigError(f"--episodes must be positive (got {self.episodes})")
        if self.latency_samples <= 0:
            raise ConfigError(f"--latency-samples must be positive (got {self.latency_samples})")
        if not self.student:
            raise ConfigError("--student: give at least one student run directory")
