"""Students that see only what the robot senses: named observation terms, the observation model (terms,
history, previous actions, noise, action delay) in training rollouts, and its bad input."""

import pytest

from deepdistill.core.errors import ConfigError
from deepdistill.envs import builtin_envs, make_env
from deepdistill.envs.observation import ObservationModel, declare_terms, parse_noise, parse_terms
from deepdistill.pipeline import describe_terms, main as deepdistill_main

# --- named terms -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", builtin_envs())
def test_every_task_names_terms_that_tile_its_state(task):
    env = make_env(task)
    terms = env.observation_terms()
    assert terms[0].start == 0 and terms[-1].stop == env.spec.state_size
    assert all(a.stop == b.start for a, b in zip(terms, terms[1:]))
    assert all(t.units and t.meaning for t in terms)
    if task != "point_maze" and task != "point_arena":
        assert len(terms) > 1, "a Brax task names the parts of its state"
    observe = getattr(env, "_observe", None)
    if observe is not None:  # no term straddles two entries of the native observation recipe
        bounds = {b for sl in observe.slices for b in (sl.start, sl.stop)}
        for t in terms:
            within = any(sl.start <= t.start and t.stop <= sl.stop for sl in observe.slices)
            assert within or {t.start, t.stop} <= bounds, (task, t)


def test_reacher_and_point_terms():
    reacher = make_env("reacher").observation_terms()
    assert [(t.name, t.start, t.stop) for t in reacher] == [
        ("cos_qpos", 0, 2), ("sin_qpos", 2, 4), ("fingertip", 4, 7), ("fingertip_vel", 7, 10)]
    assert reacher[2].units == "m (world frame)"
    (pos,) = make_env("point_maze").observation_terms()
    assert (pos.name, pos.start, pos.stop) == ("position", 0, 2)


def test_envs_obs_lists_the_terms(capsys):
    deepdistill_main(["envs", "--obs", "reacher"])
    out = capsys.readouterr().out
    for name in ("cos_qpos", "sin_qpos", "fingertip", "fingertip_vel"):
        assert name in out
    assert "goal 3 entries = state[4, 5, 6] (from fingertip)" in out
    assert describe_terms("point_arena").splitlines()[1].split()[:3] == ["position", "[0:2]", "2"]
    with pytest.raises(SystemExit) as e:
        deepdistill_main(["envs", "--obs", "nope"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--obs 'nope' is unknown" in err and len(err.strip().splitlines()) == 1


# --- the observation model as data ---------------------------------------------------------------------------

TERMS = declare_terms(("a", 2, "m", "first"), ("b", 1, "rad", "second"), ("c", 3, "m/s", "third"))


def test_parse_terms_and_noise():
    assert [t.name for t in parse_terms("c,a", TERMS)] == ["c", "a"]
    assert parse_terms(None, TERMS) == TERMS
    with pytest.raises(ConfigError, match="unknown observation term 'd'; this task's terms are: a, b, c"):
        parse_terms("a,d", TERMS)
    assert parse_noise(["0.1", "b=0.5"], TERMS) == {"a": 0.1, "b": 0.5, "c": 0.1}
    assert parse_noise(["c=0.2,a=0.3"], TERMS) == {"a": 0.3, "b": 0.0, "c": 0.2}
    for bad, needle in ((["-0.1"], "must be a finite number >= 0"), (["x=0.1"], "unknown observation term 'x'"),
                        (["a=nan"], "finite number"), (["a=big"], "give a standard deviation")):
        with pytest.raises(ConfigError, match=needle):
            parse_noise(bad, TERMS)


def test_model_layout_and_round_trip():
    m = ObservationModel((TERMS[2], TERMS[0]), history=3, history_actions=True, noise=(("a", 0.1), ("b", 0.2)),
                         action_delay=1, action_size=2)
    assert m.frame_size == 5 and m.input_size == 3 * 5 + 3 * 2
    assert m.frame_indices() == [3, 4, 5, 0, 1]
    assert m.frame_sigmas() == [0.0, 0.0, 0.0, 0.1, 0.1]
    layout = m.input_layout()
    assert [(p["part"], p["age"], p["start"], p["stop"]) for p in layout] == [
        ("frame", 2, 0, 5), ("frame", 1, 5, 10), ("frame", 0, 10, 15),
        ("previous_action", 3, 15, 17), ("previous_action", 2, 17, 19), ("previous_action", 1, 19, 21)]
    assert ObservationModel.from_dict(m.to_dict()) == m
    full = ObservationModel.full(TERMS, 2)
    assert full.is_identity(6) and not m.is_identity(6)
    assert m.seen_by(TERMS).sigmas == (0.1, 0.2, 0.0)
    assert m.with_noise_scale(2.0).sigmas == (0.0, 0.2)
