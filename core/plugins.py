"""User code named on the command line: ``module:attribute`` strings and installed entry points.

A ``module:attribute`` name (``my_pkg.tasks:MyTask``, ``tanh_mlp:TanhMLPNetworks``) is imported with
``importlib``; the module must be importable (installed, or its folder on ``PYTHONPATH``). Installed
packages can instead declare an entry point (``[project.entry-points."deepdistill.envs"]`` or
``"deepdistill.architectures"``) and be named by their short name. Nothing here imports JAX.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

from deepdistill.core.errors import UserError


class PluginError(UserError):
    """A ``module:attribute`` name or an entry point that cannot be loaded (one line, exit code 2)."""


def is_import_path(name: str) -> bool:
    return ":" in name


def load_object(path: str, flag: str) -> Any:
    """Import ``module:attribute`` (the attribute may be dotted: ``module:Outer.Inner``)."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise PluginError(f"{flag} {path!r}: write module:attribute, e.g. my_pkg.tasks:MyTask")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        missing = getattr(e, "name", None) or module_name
        itself = module_name == missing or module_name.startswith(missing + ".")
        where = f"module {module_name!r} cannot be imported" if itself else f"importing {module_name!r} failed ({type(e).__name__}: {e})"
        raise PluginError(f"{flag} {path!r}: {where}; install it or put its folder on PYTHONPATH") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PluginError(f"{flag} {path!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def entry_point_names(group: str) -> tuple[str, ...]:
    """Names of the installed entry points of ``group``."""
    return tuple(sorted({ep.name for ep in importlib.metadata.entry_points(group=group)}))


def load_entry_point(group: str, name: str, flag: str) -> Any:
    for ep in importlib.metadata.entry_points(group=group):
        if ep.name == name:
            try:
                return ep.load()
            except ImportError as e:
                raise PluginError(f"{flag} {name!r}: the installed plugin {ep.value!r} cannot be imported ({e})") from None
    raise PluginError(f"{flag} {name!r}: no installed plugin of that name in the entry-point group {group!r}")
