"""Every pipeline preset resolves to stage configs its task accepts (the ``ant`` preset's first GPU
run stopped at once on an unroll length that did not divide the episode), and the shortening flags
keep them valid."""

import pytest

from deepdistill.distill.config import DistillConfig
from deepdistill.pipeline import PRESETS, PipelineConfig, _stage_overrides
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
    if short:
        assert tcfg.total_env_steps == 250_000 and 0 < tcfg.eval_every <= 250_000 // 4
        assert dcfg.steps == 600 and 0 < dcfg.eval_every <= 300
