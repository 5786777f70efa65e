"""The one configuration of ``export-onnx`` (its CLI is generated from this dataclass)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from deepdistill.core.errors import ConfigError
from deepdistill.core.validation import check_numbers

MIN_OPSET = 17  # LayerNormalization is a native ONNX operator from opset 17
MODEL_FILES = ("policy.onnx", "sa_encoder.onnx", "goal_encoder.onnx")


def max_opset() -> int:
    """The newest default-domain opset the installed onnx package defines."""
    import onnx

    return int(onnx.defs.onnx_opset_version())


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """Export a student (or teacher) run to ONNX: policy.onnx (+ sa_encoder.onnx, goal_encoder.onnx),
    checked against the JAX model before anything is written."""

    student: Optional[str] = None
    """Student run directory (the --out of `distill`)."""
    teacher: Optional[str] = None
    """Teacher run directory (the --out of `train-teacher`), to export a teacher instead."""
    out: Optional[str] = None
    """Directory for the .onnx files (created if missing; default: the run directory)."""
    overwrite: bool = False
    """Replace .onnx files already in --out (otherwise an existing file stops the export)."""
    step: Optional[int] = None
    """Checkpoint step to export (default: the newest readable one)."""
    encoders: bool = True
    """Also export the encoders phi(s, a) and psi(g) (sa_encoder.onnx, goal_encoder.onnx)."""
    opset: int = MIN_OPSET
    """ONNX opset (at least 17, so LayerNorm is one LayerNormalization node; at most the installed onnx's newest)."""
    max_unrolled_depth: int = 32
    """Networks with at most this many block layers are unrolled (fewest, fused nodes); deeper
    ones run their blocks in one ONNX Loop, so file size and export time do not grow with depth."""
    tolerance: float = 1e-5
    """Largest |ONNX - JAX| allowed on the action (encoders: relative to max(1, |output|))."""
    parity_samples: int = 512
    """Random inputs, and task states, of the parity check (each)."""
    parity_env_steps: int = 8
    """Steps rolled with random actions from the task's resets to collect parity states."""
    seed: int = 0
    """Seed of the parity inputs."""

    def validate(self) -> None:
        check_numbers(self)
        if (self.student is None) == (self.teacher is None):
            raise ConfigError("pass exactly one of --student runs/<student> or --teacher runs/<teacher>")
        if not MIN_OPSET <= self.opset <= max_opset():
            raise ConfigError(f"--opset {self.opset} is outside the supported range [{MIN_OPSET}, {max_opset()}] "
                              f"({MIN_OPSET}: the first with LayerNormalization; {max_opset()}: the newest this onnx knows)")
        if self.max_unrolled_depth < 0:
            raise ConfigError("--max-unrolled-depth must be >= 0")
        if not self.tolerance > 0:
            raise ConfigError("--tolerance must be positive")
        if self.parity_samples < 1 or self.parity_env_steps < 0:
            raise ConfigError("--parity-samples must be positive and --parity-env-steps >= 0")
        if self.step is not None and self.step < 0:
            raise ConfigError("--step must be >= 0")

    @property
    def kind(self) -> str:
        return "student" if self.student is not None else "teacher"

    @property
    def flag(self) -> str:
        return f"--{self.kind}"

    @property
    def run_dir(self) -> Path:
        return Path(self.student if self.student is not None else self.teacher)

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out is not None else self.run_dir

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
