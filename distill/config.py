"""The one configuration of ``distill`` (its CLI is generated from this dataclass)."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from deepdistill.core.distributed import DistributedConfig
from deepdistill.core.errors import ConfigError
from deepdistill.core.validation import check_numbers
from deepdistill.envs.observation import ObservationModel, ObsTerm, parse_noise, parse_terms
from deepdistill.student.interface import Size as StudentSize

DATA_MODES = ("teacher", "dagger")
BETA_SCHEDULES = ("constant", "linear", "exponential")
REPR_LOSSES = ("mse", "cosine")
LOSS_WEIGHTS = ("action_mse", "action_kl", "repr", "relational")
ACTIVATIONS = ("swish", "relu", "tanh")


@dataclasses.dataclass(frozen=True)
class DistillConfig(DistributedConfig):
    """Distill a trained teacher into a shallow student (teacher frozen; teacher-driven or DAgger data)."""

    teacher: str = "runs/teacher"
    """A `train-teacher` run directory. With --resume: the teacher's new folder if it was moved (accepted
    when its config and the checkpoint distilled from match the ones recorded in run.json)."""
    out: str = "runs/student"
    """Student run directory (config, provenance, metrics.jsonl, Orbax checkpoints)."""
    resume: bool = False
    """Continue the distillation in --out from its last checkpoint."""
    seed: int = 0
    """Random seed (student initialisation, environments, sampling)."""

    # --- the student ---------------------------------------------------------------------------
    arch: str = "residual"
    """Student architecture: a registered name (residual: the teacher's residual MLP, smaller; mlp: a
    plain MLP without LayerNorm; `deepdistill archs` lists them all) or your own class as module:Class
    (its folder on PYTHONPATH; recorded in the run, so later stages import it again)."""
    depth: int = 4
    """residual: Dense layers inside residual blocks (multiple of 4; 0 = input layer + head only);
    mlp: hidden layers after the first; other architectures: their own meaning."""
    width: int = 64
    """Student hidden width."""
    actor_depth: Optional[int] = None
    """Override --depth for the student's actor."""
    critic_depth: Optional[int] = None
    """Override --depth for the student's encoders."""
    actor_width: Optional[int] = None
    """Override --width for the student's actor."""
    critic_width: Optional[int] = None
    """Override --width for the student's encoders."""
    activation: str = "swish"
    """mlp students: swish, relu or tanh."""

    # --- losses (any combination; each weight >= 0, not all zero) -------------------------------------
    action_mse: float = 1.0
    """Weight of the MSE between deterministic actions tanh(mean)."""
    action_kl: float = 0.0
    """Weight of KL(teacher || student) between the Gaussian policies."""
    repr: float = 1.0
    """Weight of the regression of phi(s,a) and psi(g) onto the teacher's."""
    repr_loss: str = "mse"
    """Representation regression: mse or cosine."""
    relational: float = 0.1
    """Weight of the KL between row-wise softmaxes of the student's and teacher's critic logits."""
    temperature: float = 1.0
    """Softmax temperature of the relational loss."""

    # --- data ------------------------------------------------------------------------------------------
    data: str = "dagger"
    """Who acts while collecting: teacher (teacher-driven rollouts) or dagger (student acts, teacher labels)."""
    beta_schedule: str = "linear"
    """DAgger probability that the teacher acts: constant, linear or exponential from --beta-start to --beta-end."""
    beta_start: float = 1.0
    """Initial DAgger beta (probability that the teacher acts)."""
    beta_end: float = 0.0
    """Final beta (exponential needs > 0; 0 is read as 0.01 there)."""
    future_goal_fraction: float = 0.5
    """Share of each batch whose goal is a future state of the same trajectory (the rest: the task's goal)."""
    teacher_buffer_fraction: float = 0.0
    """Share of each batch drawn from the teacher's saved replay buffer (0 = not used)."""

    # --- what the student observes (its own DAgger rollouts; the teacher labels from its full state) ---
    student_obs: Optional[str] = None
    """Observation terms the student sees, comma-separated (`deepdistill envs --obs TASK` lists a task's
    terms; default: every term, as the teacher). The goal is always a separate input."""
    history: int = 1
    """The student sees its last K observations (frames), oldest first, newest last."""
    history_actions: bool = False
    """The student also sees its K previous actions (the ones it commanded)."""
    obs_noise: tuple[str, ...] = ()
    """Gaussian sensor noise in each term's own units while training: SIGMA for every term and/or
    TERM=SIGMA for one (e.g. --obs-noise 0.01 fingertip=0.005). The teacher's labels stay noise-free."""
    action_delay: int = 0
    """Control steps between the student's action and its application (a robot's latency)."""
    seq_len: int = 8
    """Recurrent students (--arch gru): steps of truncated backpropagation through time; each SGD step
    trains batch-size / seq-len sequences of its own rollouts, from the hidden state stored with them
    (shorter: more independent sequences per step; on reacher 4 learned where 16 did not)."""

    # --- schedule ----------------------------------------------------------------------------------------
    steps: int = 4_000
    """SGD steps."""
    batch_size: int = 256
    """Samples per SGD step (also the relational loss's in-batch goals)."""
    lr: float = 1e-3
    """Adam learning rate of the student."""
    num_envs: int = 128
    """Parallel environments collecting data (a multiple of the device count)."""
    unroll_length: int = 50
    """Steps per environment per collection; must divide the episode length."""
    sgd_steps_per_unroll: int = 25
    """SGD steps between collections."""
    replay_steps_per_env: int = 1_000
    """Replay capacity in time steps per environment (rounded to whole episodes)."""
    eval_every: int = 1_000
    """SGD steps between evaluations and checkpoints."""
    num_eval_episodes: int = 256
    """Episodes per evaluation split (the same goals at every evaluation, and for the teacher)."""
    progress: bool = True
    """Show a progress bar."""
    max_to_keep: int = 2
    """Checkpoints kept."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DistillConfig":
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"config has unknown fields {unknown}: is it a student run of another version?")
        if "obs_noise" in d:
            d = {**d, "obs_noise": tuple(d["obs_noise"])}
        return cls(**d)

    def size(self) -> "StudentSize":
        return StudentSize(self.depth, self.width, self.actor_depth, self.critic_depth, self.actor_width,
                           self.critic_width, self.activation)

    def _noise_parts(self) -> list[tuple[str, float]]:
        """``(term or "", sigma)`` per --obs-noise entry, the numbers checked (term names need the task)."""
        out = []
        for spec in self.obs_noise:
            for part in (p.strip() for p in spec.split(",") if p.strip()):
                term, _, value = part.rpartition("=")
                parse_noise([value], ())  # finite and >= 0, else one line naming --obs-noise
                out.append((term, float(value)))
        return out

    def sensors_requested(self) -> bool:
        """Whether any flag of the student's observation model asks for more than the teacher's view."""
        return bool(self.student_obs or self.history != 1 or self.history_actions or self.action_delay
                    or any(v > 0 for _, v in self._noise_parts()))

    def observation_model(self, terms: tuple[ObsTerm, ...], action_size: int) -> ObservationModel:
        """The student's observation model on a task with these ``terms`` (unknown names refused)."""
        noise = parse_noise(self.obs_noise, terms)
        return ObservationModel(parse_terms(self.student_obs, terms), self.history, self.history_actions,
                                tuple((k, v) for k, v in noise.items() if v), self.action_delay, action_size)

    def weights(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in LOSS_WEIGHTS}

    def validate(self) -> None:
        check_numbers(self)

        def flag(name):
            return "--" + name.replace("_", "-")

        for name in ("depth", "actor_depth", "critic_depth"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ConfigError(f"{flag(name)} must be >= 0 (got {v})")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"--activation {self.activation!r} is unknown; choose one of: {', '.join(ACTIVATIONS)}")
        self.size().check(self.arch)
        for name in ("width", "steps", "batch_size", "num_envs", "unroll_length", "sgd_steps_per_unroll",
                     "replay_steps_per_env", "eval_every", "num_eval_episodes", "max_to_keep"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{flag(name)} must be positive (got {getattr(self, name)})")
        for name in ("actor_width", "critic_width"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"{flag(name)} must be positive")
        for name, w in self.weights().items():
            if not w >= 0:  # also catches NaN
                raise ConfigError(f"{flag(name)} is a loss weight and must be >= 0 (got {w})")
        if sum(self.weights().values()) == 0:
            raise ConfigError("all loss weights are zero: set at least one of " + ", ".join(flag(k) for k in LOSS_WEIGHTS))
        choices = (("data", DATA_MODES), ("beta_schedule", BETA_SCHEDULES), ("repr_loss", REPR_LOSSES))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{flag(name)} {getattr(self, name)!r} is unknown; choose one of: {', '.join(allowed)}")
        for name in ("beta_start", "beta_end", "future_goal_fraction", "teacher_buffer_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{flag(name)} must be in [0, 1] (got {v})")
        if self.temperature <= 0 or self.lr <= 0:
            raise ConfigError("--temperature and --lr must be positive")
        if self.unroll_length < 2:
            raise ConfigError("--unroll-length must be at least 2")
        if self.seq_len < 1:
            raise ConfigError(f"--seq-len must be at least 1 (got {self.seq_len})")
        if self.history < 1:
            raise ConfigError(f"--history must be at least 1 (got {self.history}; 1 = this step's observation only)")
        if self.action_delay < 0:
            raise ConfigError(f"--action-delay must be >= 0 control steps (got {self.action_delay})")
        self._noise_parts()
        if self.sensors_requested() and self.data == "teacher":
            raise ConfigError("--data teacher cannot model what the student senses (--student-obs, --history, "
                              "--history-actions, --obs-noise, --action-delay): the teacher's rollouts are not the "
                              "student's; use --data dagger")
        if self.sensors_requested() and self.teacher_buffer_fraction > 0:
            raise ConfigError("--teacher-buffer-fraction: the teacher's replay holds no sensor readings for a student "
                              "with --student-obs/--history/--obs-noise/--action-delay; set it to 0")
