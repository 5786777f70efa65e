"""Bad input gets one line naming the flag, exit code 2, and never touches existing data."""

import subprocess
import sys

import pytest

from deepdistill.teacher.cli import main

CLI = [sys.executable, "-m", "deepdistill.teacher.cli"]


def run(*args):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def test_help_lists_the_flags():
    r = run("--help")
    assert r.returncode == 0
    for flag in ("--env", "--depth", "--width", "--actor-depth", "--critic-depth", "--total-env-steps",
                 "--num-envs", "--batch-size", "--seed", "--out", "--resume", "--block-unroll", "--full-unroll-max-depth",
                 "--matmul-dtype", "--xla-gpu-flags", "--preset", "--dry-run", "--device-memory-gib", "--arch"):
        assert flag in r.stdout


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--depth", "6"], "--depth=6 is not a multiple of 4"),
        (["--critic-depth", "10"], "--critic-depth=10 is not a multiple of 4"),
        (["--env", "nope"], "--env 'nope' is unknown"),
        (["--num-envs", "0"], "--num-envs must be positive"),
        (["--unroll-length", "30"], "--unroll-length 30 must divide"),
        (["--gamma", "1.5"], "--gamma must be in (0, 1]"),
        (["--block-unroll", "0"], "--block-unroll must be >= 1"),
        (["--device-memory-gib", "0"], "--device-memory-gib must be positive"),
        (["--arch", "mlp", "--remat"], "--remat is an option of the residual network; --arch mlp does not take it"),
        (["--arch", "mlp", "--matmul-dtype", "bfloat16"], "--matmul-dtype bfloat16 is an option of the residual network"),
        (["--arch", "nnx"], "--arch 'nnx' cannot be built from --depth/--width"),
        (["--arch", "nope"], "--arch 'nope' is not a registered architecture"),
        (["--arch", "mlp", "--depth", "-1"], "must be >= 0"),
    ],
)
def test_bad_flags_exit_2_with_one_line(tmp_path, args, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--out", str(tmp_path / "x"), *args])
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x" / "checkpoints").exists()


def test_resume_of_a_directory_that_is_not_a_run(tmp_path):
    r = run("--out", str(tmp_path), "--resume")
    assert r.returncode == 2 and "not a deepdistill run" in r.stderr


def test_existing_run_is_never_overwritten(tmp_path):
    (tmp_path / "run.json").write_text('{"kind": "teacher"}')
    r = run("--out", str(tmp_path))
    assert r.returncode == 2 and "--resume" in r.stderr
    assert (tmp_path / "run.json").read_text() == '{"kind": "teacher"}'


def test_xla_gpu_flags_are_never_set_on_a_cpu(monkeypatch):
    from deepdistill.teacher import xla_flags

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert xla_flags.apply_xla_gpu_flags("auto") == ()
    assert "XLA_FLAGS" not in __import__("os").environ


def test_xla_gpu_flags_are_set_before_the_backend_starts_and_xla_knows_them():
    """With a GPU (faked), ``auto`` puts the flags in XLA_FLAGS before JAX starts; XLA parses them
    when its backend starts (an unknown flag would abort the process)."""
    code = (
        "import os; from deepdistill.teacher import xla_flags as x; x.gpu_expected = lambda: True; "
        "added = x.apply_xla_gpu_flags('auto'); import jax; jax.numpy.ones(2).block_until_ready(); "
        "print(len(added), os.environ['XLA_FLAGS'])"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("2 --xla_gpu_enable_command_buffer=") and "WHILE,CONDITIONAL" in r.stdout
    assert "--xla_gpu_command_buffer_unroll_loops=true" in r.stdout
