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
