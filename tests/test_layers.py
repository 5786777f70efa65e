"""The folders are layered (pyproject's import-linter contract): a folder imports only from folders
below it, so there are no cycles between stages. ``lint-imports`` fails on any upward import."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_layers_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    r = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "1 kept, 0 broken" in r.stdout


def test_the_controller_side_imports_no_jax():
    code = ("import sys; import deepdistill.envs.recipe, deepdistill.export.runtime, deepdistill.export.mujoco_controller, "
            "deepdistill.envs; assert not [m for m in sys.modules if m == 'jax' or m.startswith(('jax.', 'flax', 'brax'))], "
            "sorted(m for m in sys.modules if m.startswith(('jax', 'flax', 'brax')))[:5]")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
