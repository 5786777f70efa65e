"""Every pipeline preset resolves to stage configs its task accepts (the ``ant`` preset's first GPU
run stopped at once on an unroll length that did not divide the episode), and the shortening flags
keep them valid."""

import pytest

from deepdistill.distill.config import DistillConfig
from deepdistill.pipeline import PRESETS, PipelineConfig, _stage_overrides, _teacher_roots, direct_config, preset_students
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
    env = make_env(tcfg.env)
    episode = env.spec.episode_length
    tcfg.validate_for_env(episode, 1)
    for st in preset_students(PRESETS[preset]):
        dcfg = DistillConfig(**{**dist, **st.distill_settings(), "teacher": "t"})
        dcfg.validate()
        dcfg.observation_model(env.observation_terms(), env.spec.action_size)  # its terms exist in the task
        assert episode % dcfg.unroll_length == 0, (preset, dcfg.unroll_length, episode)
        if st.sensors(PRESETS[preset]):  # no direct run: CRL learns from the full state, not its sensors
            continue
        direct = direct_config(tcfg, st.arch, st.depth, st.width, "d")  # the student's network, the teacher's recipe
        direct.validate()
        assert (direct.depth, direct.width, direct.total_env_steps, direct.env) == (st.depth, st.width, tcfg.total_env_steps, tcfg.env)
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


def test_preset_students_are_tuples_or_named_dicts():
    sensors = PRESETS["reacher_sensors"]
    students = preset_students(sensors)
    assert [s.name for s in students] == ["hist3_actions", "gru", "hist1"]
    assert all(s.sensors(sensors) for s in students)  # no same-input network trained directly exists for them
    assert [s.arch for s in students] == ["residual", "gru", "residual"]
    assert preset_students(sensors, "mlp")[0].arch == "mlp" and preset_students(sensors, "mlp")[1].arch == "gru"
    assert dict(students[0].overrides) == {"history": 3, "history_actions": True}
    (plain,) = preset_students(PRESETS["reacher"])
    assert (plain.name, plain.depth, plain.width, plain.overrides) == ("d4_w64", 4, 64, ())
    assert not plain.sensors(PRESETS["reacher"])
    assert preset_students(PRESETS["sweep"], "mlp")[0].name == "mlp_d0_w64"
