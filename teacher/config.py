"""The one configuration of ``train-teacher`` (its CLI is generated from this dataclass)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Optional

from deepdistill.core.distributed import DistributedConfig
from deepdistill.core.errors import ConfigError
from deepdistill.core.validation import check_numbers
from deepdistill.student.interface import Size as StudentSize
from deepdistill.student.residual import validate_block_options, validate_depth

__all__ = ["ConfigError", "TeacherConfig"]

# Options only the residual network has, with their defaults (a non-residual --arch refuses the others).
RESIDUAL_OPTIONS: dict[str, Any] = {"remat": False, "block_unroll": 1, "full_unroll_max_depth": 0, "matmul_dtype": "float32"}


@dataclasses.dataclass(frozen=True)
class TeacherConfig(DistributedConfig):
    """Train a deep contrastive-RL (CRL) teacher on a goal-conditioned task.

    The defaults train a depth-16, width-128 teacher on point_maze in about four minutes on a 2-core
    CPU (see BENCHMARKS.md); the paper's GPU settings are width 256, batch 256-512, 512 envs."""

    env: str = "point_maze"
    """Task name (see `deepdistill.envs.list_envs()`)."""
    out: str = "runs/teacher"
    """Run directory: config, metrics.jsonl and Orbax checkpoints are written here."""
    resume: bool = False
    """Continue the run in --out from its last checkpoint (its saved config is used)."""
    seed: int = 0
    """Random seed (environments, initialisation, sampling)."""
    episode_length: Optional[int] = None
    """Override the task's episode length (short smoke runs; evaluation uses it too)."""

    # --- architecture -------------------------------------------------------------------------
    arch: str = "residual"
    """Network architecture: residual (the paper's residual MLP, the default teacher) or any architecture
    with encoders that `distill --arch` builds (`deepdistill archs`; module:Class works too), e.g. `--arch mlp`
    to train a small student's network directly with contrastive RL (the pipeline's `direct` baseline)."""
    depth: int = 16
    """residual: Dense layers inside residual blocks (multiple of 4, 0 allowed), for actor and critic;
    other architectures: their own meaning (mlp: hidden layers after the first)."""
    width: int = 128
    """Hidden width, for actor and critic."""
    actor_depth: Optional[int] = None
    """Override --depth for the actor."""
    critic_depth: Optional[int] = None
    """Override --depth for both encoders phi(s,a) and psi(g)."""
    actor_width: Optional[int] = None
    """Override --width for the actor."""
    critic_width: Optional[int] = None
    """Override --width for the encoders."""
    repr_dim: int = 64
    """Dimension of the representations phi(s,a) and psi(g)."""
    remat: bool = False
    """Rematerialise residual blocks in the backward pass (less memory for very deep nets; residual only)."""

    # --- speed options of the residual network (same numbers; bf16 within bf16 rounding) -------------
    block_unroll: int = 1
    """Residual blocks per iteration of the scan over blocks (lax.scan unroll; fewer, larger GPU loop steps)."""
    full_unroll_max_depth: int = 0
    """Networks of at most this depth apply their blocks in a Python loop, no scan (0: never)."""
    matmul_dtype: Literal["float32", "bfloat16"] = "float32"
    """Dense products in bfloat16 with float32 accumulation (parameters stay float32), or float32."""
    xla_gpu_flags: Literal["off", "auto"] = "off"
    """auto: on a GPU, set XLA's command-buffer flags (WHILE/CONDITIONAL captured, loops unrolled into
    the graph) before JAX starts its backend; never on a CPU. Unmeasured so far, hence off."""

    # --- losses -------------------------------------------------------------------------------
    energy: Literal["l2", "dot"] = "l2"
    """Critic logits: -||phi - psi|| (l2, the paper's) or phi . psi (dot)."""
    infonce: Literal["forward", "backward", "symmetric"] = "forward"
    """InfoNCE direction."""
    logsumexp_penalty: float = 0.1
    """Weight of the logsumexp^2 regulariser of the critic."""
    target_entropy_scale: float = -0.5
    """SAC target entropy = scale * action_size."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the encoders phi and psi."""
    alpha_lr: float = 3e-4
    """Adam learning rate of the entropy temperature log(alpha)."""
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    """Actor and critic learning rates: constant, or cosine decay to a tenth over --total-env-steps."""
    gamma: float = 0.99
    """Discount of the geometric future-goal sampling."""

    # --- data and schedule ----------------------------------------------------------------------
    total_env_steps: int = 720_000
    """Stop after this many environment steps."""
    max_wall_s: Optional[float] = None
    """Also stop after this many seconds of training (compile and eval included)."""
    num_envs: int = 256
    """Parallel environments (a multiple of the device count)."""
    unroll_length: int = 50
    """Steps per environment per collection; must divide the task's episode length."""
    env_steps_per_sgd_step: float = 64.0
    """Environment steps collected per SGD step (the data-to-update ratio)."""
    batch_size: int = 128
    """Transitions per SGD step (also the number of InfoNCE negatives + 1)."""
    replay_steps_per_env: int = 2_000
    """Replay capacity in time steps per environment (rounded to whole episodes)."""
    min_replay_steps: int = 100
    """Time steps per environment collected with random actions before training."""
    eval_every: int = 100_000
    """Environment steps between evaluations (and checkpoints): one compiled epoch."""
    num_eval_episodes: int = 256
    """Episodes per evaluation split (same goals at every evaluation)."""

    # --- presets and planning ------------------------------------------------------------------------
    preset: Optional[Literal["paper"]] = None
    """paper: the RL1000 recipe of the Table-1 cell of --env and --depth (teacher/presets.py);
    explicit flags still override it."""
    dry_run: bool = False
    """Print the resolved config, the device memory of the compiled epoch and the estimated hours; train nothing."""
    device_memory_gib: Optional[float] = None
    """Device memory to plan against (default: the GPU's bytes_limit, or the host's RAM on a CPU)."""

    # --- bookkeeping -----------------------------------------------------------------------------
    max_to_keep: int = 3
    """Checkpoints kept."""
    save_buffer: bool = True
    """Save the replay buffer in checkpoints (exact resume); otherwise refill it on resume."""
    tensorboard: bool = False
    """Also log metrics to TensorBoard (<out>/tb; needs tensorboardX)."""
    progress: bool = True
    """Show a progress bar."""

    # --- derived -------------------------------------------------------------------------------------
    @property
    def actor_depth_(self) -> int:
        return self.depth if self.actor_depth is None else self.actor_depth

    @property
    def critic_depth_(self) -> int:
        return self.depth if self.critic_depth is None else self.critic_depth

    @property
    def actor_width_(self) -> int:
        return self.width if self.actor_width is None else self.actor_width

    @property
    def critic_width_(self) -> int:
        return self.width if self.critic_width is None else self.critic_width

    def size(self) -> StudentSize:
        """Depths and widths as the architecture registry takes them (``build_student``)."""
        return StudentSize(self.depth, self.width, self.actor_depth, self.critic_depth, self.actor_width, self.critic_width)

    def residual_options(self) -> dict[str, Any]:
        """The options of the residual network that differ from their defaults (``--remat``, ...)."""
        return {name: getattr(self, name) for name, default in RESIDUAL_OPTIONS.items() if getattr(self, name) != default}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TeacherConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"config has unknown fields {unknown}: is it a teacher run of another version?")
        return cls(**d)

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the field and the fix."""
        check_numbers(self)
        if self.arch != "residual":
            self._validate_arch()
        for name in ("depth", "actor_depth", "critic_depth"):
            v = getattr(self, name)
            if v is not None and self.arch == "residual":
                try:
                    validate_depth(v, "--" + name.replace("_", "-"))
                except ValueError as e:
                    raise ConfigError(str(e)) from None
        positive = ("width", "repr_dim", "total_env_steps", "num_envs", "unroll_length", "batch_size",
                    "replay_steps_per_env", "eval_every", "num_eval_episodes", "max_to_keep")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive (got {getattr(self, name)})")
        for name in ("actor_width", "critic_width"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive (got {v})")
        if self.unroll_length < 2:
            raise ConfigError("--unroll-length must be at least 2")
        if self.env_steps_per_sgd_step <= 0:
            raise ConfigError("--env-steps-per-sgd-step must be positive")
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"--gamma must be in (0, 1] (got {self.gamma})")
        for name in ("actor_lr", "critic_lr", "alpha_lr"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive")
        if self.episode_length is not None and self.episode_length < 2:
            raise ConfigError("--episode-length must be at least 2")
        if self.min_replay_steps < 0:
            raise ConfigError("--min-replay-steps must be >= 0")
        if self.max_wall_s is not None and self.max_wall_s <= 0:
            raise ConfigError("--max-wall-s must be positive")
        if self.device_memory_gib is not None and self.device_memory_gib <= 0:
            raise ConfigError("--device-memory-gib must be positive")
        try:
            validate_block_options(self.block_unroll, self.full_unroll_max_depth, self.matmul_dtype)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def _validate_arch(self) -> None:
        """A non-residual ``--arch``: no residual-only option, buildable at this size, with encoders."""
        from deepdistill.student.interface import Interface, build_student, get_architecture

        for name, value in self.residual_options().items():
            flag = "--" + name.replace("_", "-")
            given = flag if value is True else f"{flag} {value}"
            raise ConfigError(f"{given} is an option of the residual network; --arch {self.arch} does not take it "
                              f"(drop {flag} or use --arch residual)")
        if get_architecture(self.arch).build is None:
            raise ConfigError(f"--arch {self.arch!r} cannot be built from --depth/--width (it has no build method); "
                              f"train-teacher needs an architecture that can (`deepdistill archs`)")
        nets = build_student(self.arch, Interface(1, 1, 1, 1), self.size())  # tiny stand-in sizes: refuse early
        if not nets.has_encoders:
            raise ConfigError(f"--arch {self.arch}: contrastive RL trains the encoders phi(s,a) and psi(g), and this "
                              f"architecture has none; choose one with encoders (`deepdistill archs`)")

    def validate_for_env(self, episode_length: int, num_devices: int) -> None:
        if episode_length % self.unroll_length:
            raise ConfigError(
                f"--unroll-length {self.unroll_length} must divide the task's episode length {episode_length} "
                f"(e.g. {max(d for d in range(2, episode_length + 1) if episode_length % d == 0 and d <= self.unroll_length) if self.unroll_length >= 2 else episode_length})"
            )
        if self.num_envs % num_devices:
            raise ConfigError(f"--num-envs {self.num_envs} must be a multiple of the {num_devices} devices")
        if self.batch_size % num_devices:
            raise ConfigError(f"--batch-size {self.batch_size} must be a multiple of the {num_devices} devices")
