"""Deep contrastive-RL teachers: environments, residual networks, CRL losses, training, checkpoints."""

from deepdistill.core.errors import RunError
from deepdistill.student.policy import PolicyRun, load_policy_run, load_teacher
from deepdistill.teacher.config import ConfigError, TeacherConfig
from deepdistill.envs import EnvSpec, GoalEnv, list_envs, make_env
from deepdistill.student.residual import CRLNetworks, ResidualMLP

__all__ = [
    "CRLNetworks",
    "ConfigError",
    "EnvSpec",
    "GoalEnv",
    "PolicyRun",
    "ResidualMLP",
    "RunError",
    "TeacherConfig",
    "list_envs",
    "load_policy_run",
    "load_teacher",
    "make_env",
]


def train_teacher(cfg: TeacherConfig) -> dict:
    """Train (or resume) a teacher; see :class:`TeacherConfig`. Returns the last evaluation."""
    from deepdistill.teacher.run import train_teacher as _train

    return _train(cfg)
