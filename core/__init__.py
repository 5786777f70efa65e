"""What every training stage shares: the run directory, checkpoints, the metrics log, resume,
progress, evaluation rollouts, the compiled epoch shell and its sharding, and the user-error class."""

from deepdistill.core.errors import ConfigError, RunError, UserError

__all__ = ["ConfigError", "RunError", "UserError"]
