"""The one user-error class of deepdistill.

Anything a user can fix (a flag, a path, a run directory, a file) raises a :class:`UserError`
whose message names the flag or path and the fix. The command-line tools print it in one line and
exit with code 2; every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """A bad flag, path or file; the message names it and says how to fix it (CLIs: exit code 2)."""


class ConfigError(UserError):
    """A configuration value is invalid; the message names the field and the fix."""


class RunError(UserError):
    """A run directory is missing, of the wrong kind, or inconsistent; the message says how to fix it."""


DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded")


def is_disk_full(e: BaseException) -> bool:
    """A full disk or quota, whether raised as an ``OSError`` or as the ``ValueError`` of Orbax and
    TensorStore (``RESOURCE_EXHAUSTED: ... No space left on device [os_error_code='28']``)."""
    import errno

    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(t in str(e) for t in DISK_FULL_TEXTS)


class DiskFull(RunError):
    """The disk filled up while a checkpoint was being saved; the checkpoints saved before it are intact.
    ``resume``: the command that continues the run once there is space (``None``: nothing was kept)."""

    def __init__(self, message: str, resume: "str | None" = None):
        super().__init__(message)
        self.resume = resume
