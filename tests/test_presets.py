"""``--preset paper`` resolves to the paper's numbers; ``--dry-run`` plans without training; a run that
cannot fit the device is refused with one line and exit code 2."""

import json

import pytest

from deepdistill.teacher.cli import main, with_preset
from deepdistill.teacher.config import ConfigError, TeacherConfig
from deepdistill.teacher.presets import apply_preset


def parse(args):
    """The config the CLI would train with (its two parses), without running anything."""
    import tyro

    return with_preset(tyro.cli(TeacherConfig, args=args), args)


@pytest.mark.parametrize("env,budget", [("ant_big_maze", 100_000_000), ("humanoid", 100_000_000),
                                        ("ant_hardest_maze", 200_000_000), ("ant_u5_maze", 400_000_000),
                                        ("humanoid_u_maze", 400_000_000), ("humanoid_big_maze", 400_000_000)])
def test_paper_preset_is_the_papers_table_1_cell(env, budget):
    cfg = parse(["--preset", "paper", "--env", env, "--depth", "64"])
    assert (cfg.env, cfg.depth, cfg.actor_depth_, cfg.critic_depth_) == (env, 64, 64, 64)
    assert (cfg.width, cfg.repr_dim, cfg.num_envs, cfg.batch_size) == (256, 64, 512, 512)
    assert (cfg.actor_lr, cfg.critic_lr, cfg.alpha_lr, cfg.lr_schedule) == (3e-4, 3e-4, 3e-4, "constant")
    assert (cfg.replay_steps_per_env, cfg.min_replay_steps, cfg.gamma) == (10_000, 1_000, 0.99)
    assert cfg.env_steps_per_sgd_step == 40.0 and 1000 % cfg.unroll_length == 0
    assert cfg.total_env_steps == budget
    cfg.validate()


def test_paper_preset_at_1024_layers_keeps_the_actor_at_512():
    cfg = parse(["--preset", "paper", "--env", "humanoid_u_maze", "--depth", "1024"])
    assert (cfg.actor_depth_, cfg.critic_depth_) == (512, 1024)


def test_explicit_flags_override_the_preset_even_at_the_plain_default():
    cfg = parse(["--preset", "paper", "--env", "ant_big_maze", "--depth", "64", "--batch-size", "256",
                 "--num-envs", "256", "--lr-schedule", "cosine", "--matmul-dtype", "bfloat16", "--block-unroll", "4"])
    # 256 envs and the cosine schedule are TeacherConfig's own defaults: still kept, since given explicitly.
    assert (cfg.batch_size, cfg.num_envs, cfg.lr_schedule) == (256, 256, "cosine")
    assert (cfg.matmul_dtype, cfg.block_unroll, cfg.width) == ("bfloat16", 4, 256)


def test_no_preset_changes_nothing():
    assert parse(["--depth", "8"]) == TeacherConfig(depth=8)


def test_paper_preset_refuses_a_task_outside_the_paper(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--preset", "paper", "--env", "point_maze", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "--preset paper covers" in err
    with pytest.raises(ConfigError):
        apply_preset(TeacherConfig(preset="paper", env="reacher"))


TINY = ["--env", "point_maze", "--depth", "4", "--width", "16", "--num-envs", "8", "--batch-size", "16",
        "--unroll-length", "50", "--eval-every", "400", "--replay-steps-per-env", "200", "--min-replay-steps", "50",
        "--num-eval-episodes", "8", "--no-progress"]


@pytest.mark.slow
def test_dry_run_prints_a_memory_figure_and_creates_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    main([*TINY, "--out", str(out), "--dry-run", "--matmul-dtype", "bfloat16", "--block-unroll", "2"])
    text = capsys.readouterr().out
    assert not out.exists()
    resolved = json.loads(text[text.index("{"):text.index("}") + 1])
    assert resolved["matmul_dtype"] == "bfloat16" and resolved["block_unroll"] == 2
    line = next(l for l in text.splitlines() if l.startswith("device memory of the compiled epoch"))
    assert "MiB per device" in line and "fits" in line and "host RAM" in line
    # the train state of this config: replay 200 steps x 8 envs x (state 4 + action 2) floats at least
    assert float(line.split(": ")[1].split(" MiB")[0]) > 200 * 8 * 6 * 4 / 2**20
    assert "no measured rate" in text


def test_a_run_that_cannot_fit_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main([*TINY, "--out", str(out), "--device-memory-gib", "1e-5"])
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert len(err.strip().splitlines()) == 1 and "needs" in err and "--device-memory-gib" in err
    assert not out.exists()


def test_a_paper_preset_that_cannot_fit_is_refused_in_one_line(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "deepdistill.teacher.cli", "--preset", "paper", "--env", "ant_big_maze",
                        "--depth", "1024", "--out", str(tmp_path / "run"), "--device-memory-gib", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    # replay 10,000 steps x 512 envs x (29 state + 8 action) floats = 0.71 GiB, plus 170M parameters
    # with two Adam moments (2.0 GiB): more than 1 GiB before anything compiles.
    assert "train state alone needs 2.6" in r.stderr
    assert not (tmp_path / "run").exists()
