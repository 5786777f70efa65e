"""What every benchmark script shares: the machine's description and writing its BENCHMARKS.md section.

The scripts run as ``python benchmarks/<name>.py``, so this module imports as ``_report``."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (``lscpu``), or Python's view of it."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.M)
        if m:
            return m.group(1).strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine() or "unknown"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (a shared machine's load explains low figures)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def write_section(path: Path, section: str, body: str) -> None:
    """Replace (or append) the section headed ``section`` (``## ...``) of ``path`` with ``body``.

    The rest of the file is re-read just before writing; a ``### Notes`` subsection at the end of
    the old section (written by hand) is kept."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{section}\n\n{body.strip()}\n"
    start = text.find(section + "\n")
    if start < 0 and text.endswith(section):
        start = len(text) - len(section)
    if start < 0:
        path.write_text(text.rstrip("\n") + "\n\n" + block)
        return
    nxt = re.search(r"^## ", text[start + len(section):], re.M)
    end = start + len(section) + nxt.start() if nxt else len(text)
    old = text[start:end]
    notes = old.find("\n### Notes")
    kept = "\n" + old[notes + 1:].rstrip("\n") + "\n" if notes >= 0 else ""
    rest = text[end:]
    path.write_text(text[:start] + block + kept + ("\n" + rest if rest else ""))
