"""Every pipeline preset resolves to stage configs its task accepts (the ``ant`` preset's first GPU
run stopped at once on an unroll length that did not divide the episode), and the shortening flags
keep them valid."""

import pytest

from deepdistill.distill.config import DistillConfig
from deepdistill.pipeline import PRESETS, PipelineConfig, _stage_overrides, _teacher_roots, direct_config
from deepdistill.teacher.config import TeacherConfig
from deepdistill.envs import make_env


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("short", [False, True])
def test_preset_stage_configs_fit_their_task(preset, short):
    cfg = PipelineConfig(preset=preset, teacher_env_steps=250_000 if short else None, distill_steps=600 if short else None)
    cfg.validate()
    teacher, dist = _stage_overrides(cfg, PRESETS[preset])
    tcfg = TeacherConfig(**teacher)
    tcfg.validate()
    episode = make_env(tcfg.env).spec.episode_length
    tcfg.validate_for_env(episode, 1)
    for depth, width in PRESETS[preset]["students"]:
        dcfg = DistillConfig(**{**dist, "teacher": "t", "depth": depth, "width": width})
        dcfg.validate()
        assert episode % dcfg.unroll_length == 0, (preset, dcfg.unroll_length, episode)
        direct = direct_config(tcfg, cfg.arch, depth, width, "d")  # the student's network, the teacher's recipe
        direct.validate()
        assert (direct.depth, direct.width, direct.total_env_steps, direct.env) == (depth, width, tcfg.total_env_steps, tcfg.env)
    for _, over in _teacher_roots(preset):
        TeacherConfig(**{**teacher, **over}).validate()
    if short:
        assert tcfg.total_env_steps == 250_000 and 0 < tcfg.eval_every <= 250_000 // 4
        assert dcfg.steps == 600 and 0 < dcfg.eval_every <= 300


@pytest.mark.parametrize("preset", ["quickstart", "ant"])
def test_a_direct_mlp_drops_the_residual_options_and_keeps_the_recipe(preset):
    teacher, _ = _stage_overrides(PipelineConfig(preset=preset), PRESETS[preset])
    tcfg = TeacherConfig(**teacher)
    direct = direct_config(tcfg, "mlp", 1, 64, "d")
    direct.validate()  # the ant teacher's --remat would be refused for an mlp
    assert direct.arch == "mlp" and direct.residual_options() == {}
    assert {k: v for k, v in direct.to_dict().items() if k not in ("arch", "depth", "width", "out", "remat")} == \
        {k: v for k, v in tcfg.to_dict().items() if k not in ("arch", "depth", "width", "out", "remat")}
