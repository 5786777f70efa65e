"""Nothing lost, nothing silently wrong: the shared run loop on a toy stage (no environment, a few
milliseconds an epoch), so every failure mode is cheap to provoke.

Divergence stops before the bad epoch is saved; a broken or garbled checkpoint is moved aside and
the run goes on; a failed start leaves nothing behind; lost bookkeeping files are rebuilt; one
writer per folder; non-finite flags and out-of-range seeds are refused by name."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepdistill.core.checkpoint import Checkpointer, abstract_like
from deepdistill.core.errors import ConfigError, RunError
from deepdistill.core.rundir import check_writable_dir, exclusive, read_json
from deepdistill.core.runner import Stage, TrainingDiverged, run_stage
from deepdistill.core.validation import check_numbers


DATA = np.random.default_rng(0).standard_normal(65536).astype(np.float32)  # incompressible: stored as is


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    out: str
    resume: bool = False
    steps: int = 5
    lr: float = 0.1
    nan_at: int = -1  # the epoch whose loss (or parameters) turn NaN
    nan_params: bool = False
    fail_init: bool = False
    max_to_keep: int = 10
    progress: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class ToyStage(Stage):
    """w <- w - lr * w on a [64] vector; one SGD step an epoch."""

    kind, position_key, unit, description = "toy", "sgd_steps", "steps", "toy"

    def __init__(self, cfg: ToyConfig):
        super().__init__(cfg)
        self.total = cfg.steps

    def run_files(self) -> dict[str, Any]:
        return {"networks.json": {"arch": "toy", "size": 64}}

    def run_info(self) -> dict[str, Any]:
        return {"params": 64}

    def init(self):
        if self.cfg.fail_init:
            raise OverflowError("a late failure while building the state")
        # "data": 256 KB that the epoch carries along (what a replay buffer is to a real stage)
        return {"w": jnp.linspace(1.0, 2.0, 64), "data": jnp.asarray(DATA), "step": jnp.array(0, jnp.int32)}

    def restore_target(self):
        return abstract_like(self.init())

    def position(self, state) -> int:
        return int(state["step"])

    def to_save(self, state):
        return state, {"w": state["w"]}

    def epoch(self, state):
        step = state["step"] + 1
        w = state["w"] * (1 - self.cfg.lr)
        loss = jnp.mean(w**2)
        if int(step) == self.cfg.nan_at:
            if self.cfg.nan_params:
                w = w.at[3].set(jnp.inf)
            else:
                loss = jnp.nan
        return {"w": w, "data": state["data"], "step": step}, {"loss": loss}

    def record(self, state, metrics):
        return {f"train/{k}": v for k, v in metrics.items()}


def toy(tmp_path, **kw) -> ToyConfig:
    return ToyConfig(**{"out": str(tmp_path / "run"), **kw})


def steps_of(run) -> list[int]:
    ckpt = Checkpointer(run, read_only=True)
    try:
        return ckpt.steps()
    finally:
        ckpt.close()


def params_at(run, step=None):
    ckpt = Checkpointer(run, read_only=True)
    try:
        s, params, _, skipped = ckpt.restore_params({"w": jax.ShapeDtypeStruct((64,), jnp.float32)}, step)
        return s, np.asarray(params["w"]), skipped
    finally:
        ckpt.close()


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in open(Path(run) / "metrics.jsonl")]


# --- divergence ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("nan_params", [False, True])
def test_a_non_finite_epoch_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, nan_params):
    cfg = toy(tmp_path, nan_at=3, nan_params=nan_params)
    with pytest.raises(TrainingDiverged) as e:
        run_stage(ToyStage(cfg))
    msg = str(e.value)
    assert "epoch ending at 3 steps" in msg and "last good checkpoint (step 2) is kept" in msg, msg
    assert ("non-finite parameters" if nan_params else "non-finite loss=nan") in msg
    assert steps_of(cfg.out) == [1, 2]  # the bad epoch was not saved
    assert [r["sgd_steps"] for r in metrics(cfg.out)] == [1, 2]
    step, w, _ = params_at(cfg.out)
    assert step == 2 and np.isfinite(w).all()
    assert isinstance(e.value, RunError)  # a UserError: one line, exit code 2 from the CLIs


# --- broken checkpoints ---------------------------------------------------------------------------------


def _data_files(item_dir: Path) -> list[Path]:
    """The files holding an Orbax item's array data (OCDBT data files)."""
    files = [p for p in [*item_dir.glob("d/*"), *item_dir.glob("ocdbt.process_*/d/*")] if p.is_file()]
    assert files, list(item_dir.rglob("*"))
    return files


@pytest.mark.parametrize("damage", ["truncate", "garble", "checksum"])
def test_resume_moves_a_broken_step_aside_and_goes_on(tmp_path, damage):
    straight = toy(tmp_path, out=str(tmp_path / "straight"), steps=5)
    run_stage(ToyStage(straight))
    cfg = toy(tmp_path, steps=4)
    run_stage(ToyStage(cfg))
    step_dir = Path(cfg.out) / "checkpoints" / "4"
    if damage == "truncate":
        for f in _data_files(step_dir / "state"):
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif damage == "garble":  # 2 KB changed inside the largest data file, size kept
        f = max((p for p in (step_dir / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
        data = bytearray(f.read_bytes())
        at = len(data) // 3
        data[at:at + 2048] = bytes(range(256)) * 8
        f.write_bytes(bytes(data))
    else:  # the checksum saved with the step disagrees with the data
        meta = next(p for p in (step_dir / "meta").rglob("*") if p.is_file())
        saved = json.loads(meta.read_text())
        saved["checksums"]["state"] = "0" * 64
        meta.write_text(json.dumps(saved))
    # a reader skips the step and says so
    if damage == "checksum":
        assert params_at(cfg.out)[0] == 4  # the params item itself is intact
    for attempt in range(2):  # the second resume must not trip over what the first left
        run_stage(ToyStage(toy(tmp_path, steps=5, resume=True)))
        assert steps_of(cfg.out)[-2:] == [4, 5] if attempt == 0 else True
    broken = sorted(p.name for p in (Path(cfg.out) / "checkpoints" / "broken").iterdir())
    assert len(broken) == 1 and broken[0].startswith("4-"), broken
    if damage == "checksum":
        assert broken[0] == "4-ChecksumError", broken
    # garbled data: Orbax's decoder notices some of it, the checksum the rest (bytes that still decode)
    assert any("step 4" in b for b in read_json(Path(cfg.out) / "run.json")["broken_checkpoints"])
    np.testing.assert_array_equal(params_at(cfg.out)[1], params_at(straight.out)[1])  # retrained step 4 and 5 exactly
    assert [r["sgd_steps"] for r in metrics(cfg.out)] == [1, 2, 3, 4, 5]


def test_a_reader_falls_back_and_reports_the_skipped_step(tmp_path):
    cfg = toy(tmp_path, steps=3)
    run_stage(ToyStage(cfg))
    for f in _data_files(Path(cfg.out) / "checkpoints" / "3" / "params"):
        f.write_bytes(b"")
    step, _, skipped = params_at(cfg.out)
    assert step == 2 and [s.step for s in skipped] == [3]
    assert (Path(cfg.out) / "checkpoints" / "3").is_dir()  # readers never move anything


def test_no_readable_step_moves_nothing(tmp_path):
    cfg = toy(tmp_path, steps=1)
    run_stage(ToyStage(cfg))
    for f in _data_files(Path(cfg.out) / "checkpoints" / "1" / "state"):
        f.write_bytes(b"")
    with pytest.raises(RunError, match="no readable checkpoint"):
        run_stage(ToyStage(toy(tmp_path, steps=2, resume=True)))
    assert (Path(cfg.out) / "checkpoints" / "1").is_dir()


# --- starts that fail, files that went missing ------------------------------------------------------------


def test_a_failed_start_leaves_nothing_that_blocks_the_next_one(tmp_path):
    with pytest.raises(OverflowError):
        run_stage(ToyStage(toy(tmp_path, fail_init=True)))
    assert not (tmp_path / "run").exists()
    (tmp_path / "run").mkdir()  # a folder the user made: kept, emptied of what the run wrote
    with pytest.raises(OverflowError):
        run_stage(ToyStage(toy(tmp_path, fail_init=True)))
    assert (tmp_path / "run").is_dir() and not list((tmp_path / "run").iterdir())
    run_stage(ToyStage(toy(tmp_path)))
    assert steps_of(tmp_path / "run")[-1] == 5


def test_resume_rebuilds_lost_bookkeeping_files(tmp_path, capsys):
    cfg = toy(tmp_path, steps=2)
    run_stage(ToyStage(cfg))
    for name in ("run.json", "networks.json"):
        (Path(cfg.out) / name).unlink()
    run_stage(ToyStage(toy(tmp_path, steps=3, resume=True)))
    assert "rebuilt networks.json, run.json" in capsys.readouterr().out
    assert read_json(Path(cfg.out) / "networks.json") == {"arch": "toy", "size": 64}
    assert read_json(Path(cfg.out) / "run.json")["kind"] == "toy"
    assert steps_of(cfg.out)[-1] == 3


# --- one writer per folder --------------------------------------------------------------------------------


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    with exclusive(tmp_path / "run", "--out"):
        assert (tmp_path / "run" / "lock").read_text().strip() == str(os.getpid())
        with pytest.raises(RunError, match=f"--out {tmp_path / 'run'} is in use by process {os.getpid()}"):
            run_stage(ToyStage(toy(tmp_path)))
    assert not (tmp_path / "run" / "lock").exists()  # released and removed on exit
    run_stage(ToyStage(toy(tmp_path)))


def test_a_lock_left_by_a_killed_process_never_blocks(tmp_path):
    code = textwrap.dedent(f"""
        import time
        from deepdistill.core.rundir import exclusive
        with exclusive({str(tmp_path / 'run')!r}, "--out"):
            print("locked", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunError, match=f"in use by process {proc.pid}"):
            with exclusive(tmp_path / "run", "--out"):
                pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (tmp_path / "run" / "lock").exists()  # left behind by kill -9 ...
    with exclusive(tmp_path / "run", "--out"):  # ... and no obstacle
        pass


# --- output folders checked up front ------------------------------------------------------------------


def test_output_folders_are_checked_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        check_writable_dir(tmp_path / "file", "--out")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        check_writable_dir(tmp_path / "file" / "sub", "--out")
    assert check_writable_dir(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="is not writable"):
        check_writable_dir(ro / "run", "--out")


# --- numbers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_floats_are_refused_by_name(tmp_path, value):
    with pytest.raises(ConfigError, match=f"--lr must be a finite number \\(got {value}\\)"):
        check_numbers(toy(tmp_path, lr=value))


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70])
def test_seeds_outside_32_bits_are_refused(seed):
    @dataclasses.dataclass(frozen=True)
    class C:
        seed: int

    with pytest.raises(ConfigError, match=f"--seed {seed} is out of range"):
        check_numbers(C(seed))


# --- the command lines ------------------------------------------------------------------------------


def cli_exit(main, args, capsys) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--actor-lr", "nan"], "--actor-lr must be a finite number (got nan)"),
        (["--actor-lr", "inf"], "--actor-lr must be a finite number (got inf)"),
        (["--critic-lr", "nan"], "--critic-lr must be a finite number"),
        (["--logsumexp-penalty", "nan"], "--logsumexp-penalty must be a finite number"),
        (["--target-entropy-scale", "nan"], "--target-entropy-scale must be a finite number"),
        (["--env-steps-per-sgd-step", "nan"], "--env-steps-per-sgd-step must be a finite number"),
        (["--max-wall-s", "inf"], "--max-wall-s must be a finite number"),
        (["--seed", str(2**70)], f"--seed {2**70} is out of range"),
    ],
)
def test_train_teacher_refuses_non_finite_flags_and_huge_seeds(tmp_path, capsys, args, needle):
    from deepdistill.teacher.cli import main

    code, err = cli_exit(main, ["--out", str(tmp_path / "t"), *args], capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--lr", "nan"], "--lr must be a finite number (got nan)"),
        (["--lr", "inf"], "--lr must be a finite number (got inf)"),
        (["--temperature", "nan"], "--temperature must be a finite number"),
        (["--repr", "inf"], "--repr must be a finite number"),
        (["--seed", "-1"], "--seed -1 is out of range"),
    ],
)
def test_distill_refuses_non_finite_flags(tmp_path, capsys, args, needle):
    from deepdistill.distill.cli import main

    code, err = cli_exit(main, ["--teacher", str(tmp_path / "no-teacher"), "--out", str(tmp_path / "s"), *args], capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s").exists()


def test_export_refuses_a_non_finite_tolerance_and_an_unknown_opset(tmp_path, capsys):
    from deepdistill.export.cli import main
    from deepdistill.export.config import MIN_OPSET, max_opset

    code, err = cli_exit(main, ["--student", str(tmp_path), "--tolerance", "nan"], capsys)
    assert code == 2 and "--tolerance must be a finite number" in err, err
    code, err = cli_exit(main, ["--student", str(tmp_path), "--opset", "99"], capsys)
    assert code == 2 and f"--opset 99 is outside the supported range [{MIN_OPSET}, {max_opset()}]" in err, err


def _commands():
    from deepdistill.distill.cli import main as distill
    from deepdistill.evaluate.cli import main as evaluate
    from deepdistill.pipeline import main as pipeline
    from deepdistill.teacher.cli import main as teacher

    return {
        "train-teacher": (teacher, []),
        "distill": (distill, ["--teacher", "/nonexistent"]),
        "evaluate": (evaluate, ["--teacher", "/nonexistent", "--student", "/nonexistent"]),
        "pipeline": (pipeline, ["pipeline"]),
    }


@pytest.mark.parametrize("command", ["train-teacher", "distill", "evaluate", "pipeline"])
def test_an_out_that_is_a_file_is_refused_up_front(tmp_path, capsys, command):
    main, args = _commands()[command]
    (tmp_path / "f").write_text("precious")
    code, err = cli_exit(main, [*args, "--out", str(tmp_path / "f")], capsys)
    assert code == 2 and "is a file, not a directory" in err and len(err.strip().splitlines()) == 1, err
    code, err = cli_exit(main, [*args, "--out", str(tmp_path / "f" / "sub")], capsys)
    assert code == 2 and "is a file, not a directory" in err, err
    assert (tmp_path / "f").read_text() == "precious"


@pytest.mark.parametrize("command", ["train-teacher", "pipeline"])
def test_a_second_writer_on_the_command_line_names_the_pid(tmp_path, capsys, command):
    main, args = _commands()[command]
    with exclusive(tmp_path / "out", "--out"):
        code, err = cli_exit(main, [*args, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and f"is in use by process {os.getpid()}" in err, err


def test_os_errors_on_the_users_paths_are_one_line_and_others_keep_their_traceback(tmp_path, capsys):
    import errno

    from deepdistill.core.cli import run_cli

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        out: str = str(tmp_path / "out")

    def fail(path, err=errno.EACCES):
        def main(cfg):
            raise OSError(err, os.strerror(err), str(path))
        return main

    for err_no in (errno.EACCES, errno.EISDIR, errno.ENOTDIR, errno.EROFS):
        with pytest.raises(SystemExit) as e:
            run_cli("tool", Cfg, fail(tmp_path / "out" / "x.json", err_no), [])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("tool: error: ") and len(err.strip().splitlines()) == 1, err
    with pytest.raises(SystemExit) as e:  # a full disk is never a bug, whatever the path
        run_cli("tool", Cfg, fail("/somewhere/else", errno.ENOSPC), [])
    assert e.value.code == 2 and "No space left on device" in capsys.readouterr().err
    with pytest.raises(PermissionError):  # a path the user did not choose: a bug, with its traceback
        run_cli("tool", Cfg, fail("/etc/deepdistill-internal"), [])


def test_pipeline_refuses_another_seed_or_preset_unless_restarted(tmp_path, capsys, monkeypatch):
    from deepdistill.pipeline import main

    out = tmp_path / "p"
    (out / "teacher").mkdir(parents=True)
    (out / "pipeline.json").write_text(json.dumps({"stages": {"teacher": {"done": True}}, "preset": "smoke", "seed": 0}))
    for args, needle in ((["--seed", "1"], "--seed 0"), (["--preset", "quickstart"], "--preset 'smoke'")):
        code, err = cli_exit(main, ["pipeline", "--preset", "smoke", "--out", str(out), *args], capsys)
        assert code == 2 and needle in err and "--restart" in err and len(err.strip().splitlines()) == 1, err
    # a pipeline.json written before seeds were recorded: the teacher's config.json tells
    (out / "pipeline.json").write_text(json.dumps({"stages": {"teacher": {"done": True}}, "preset": "smoke"}))
    (out / "teacher" / "config.json").write_text(json.dumps({"seed": 0}))
    code, err = cli_exit(main, ["pipeline", "--preset", "smoke", "--out", str(out), "--seed", "3"], capsys)
    assert code == 2 and "--seed 0" in err, err

    import deepdistill.teacher.run

    class Started(Exception):
        pass

    def train_teacher(cfg):
        raise Started(cfg.seed, cfg.resume)

    monkeypatch.setattr(deepdistill.teacher.run, "train_teacher", train_teacher)
    with pytest.raises(Started) as e:
        main(["pipeline", "--preset", "smoke", "--out", str(out), "--seed", "3", "--restart"])
    assert e.value.args == (3, False)  # started again from scratch with the new seed
    assert not (out / "teacher").exists()
    assert read_json(out / "pipeline.json") == {"stages": {}, "preset": "smoke", "seed": 3, "arch": "residual",
                                                "teacher_env_steps": None, "distill_steps": None, "direct": True}
