"""The dividend of distillation: paired per-episode differences, their interval, and which students get one."""

import types
from pathlib import Path

import numpy as np
import pytest

from deepdistill.evaluate import dividend as D
from deepdistill.envs.observation import ObservationModel, declare_terms
from deepdistill.evaluate.compare import dividends
from deepdistill.student.interface import Interface, Size, build_student

T_975_DOF2 = 4.302652729911275  # Student's t, 97.5% quantile, 2 degrees of freedom (printed tables: 4.303)


def test_paired_difference_by_hand():
    d = D.paired_difference([3.0, 5.0, 7.0], [1.0, 2.0, 3.0])  # differences 2, 3, 4: mean 3, sd 1
    half = T_975_DOF2 * 1.0 / np.sqrt(3)
    assert d["n"] == 3 and d["mean"] == pytest.approx(3.0) and d["sd"] == pytest.approx(1.0)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((3.0 - half, 3.0 + half))
    same = D.paired_difference([1.0, 0.0, 1.0], [0.0, -1.0, 0.0])  # every difference 1: no spread
    assert (same["mean"], same["ci_low"], same["ci_high"]) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="equal-length"):
        D.paired_difference([1.0, 2.0], [1.0])


def test_verdict_reads_the_intervals():
    up = {"mean": 2.0, "ci_low": 1.0, "ci_high": 3.0}
    down = {"mean": -2.0, "ci_low": -3.0, "ci_high": -1.0}
    zero = {"mean": 0.1, "ci_low": -1.0, "ci_high": 1.2}
    assert D.verdict({"random": {"time_at_goal": up, "success": zero}}) == "student better"
    assert D.verdict({"random": {"time_at_goal": down, "success": zero}}) == "direct better"
    assert D.verdict({"random": {"time_at_goal": up}, "hard": {"time_at_goal": down}}) == "mixed"
    assert D.verdict({"random": {"time_at_goal": zero, "success": zero}}) == "no clear difference"


def _run(name, nets, observation=None, step=1000):
    return types.SimpleNamespace(run_dir=Path("/runs") / name, nets=nets, config={}, info={}, step=step,
                                 observation=observation, spec=types.SimpleNamespace(state_size=7))


NETS = build_student("residual", Interface(2, 2, 2, 16), Size(0, 32))
OTHER = build_student("residual", Interface(2, 2, 2, 16), Size(4, 32))


def _episodes(seed, n=40):
    rng = np.random.default_rng(seed)
    return {"random": {"success": rng.integers(0, 2, n).astype(float), "time_at_goal": rng.integers(0, 50, n).astype(float)}}


def test_each_student_is_paired_with_the_direct_run_of_its_own_network():
    s0, s4 = _run("student_d0", NETS), _run("student_d4", OTHER)
    d4, d0 = _run("direct_d4", OTHER), _run("direct_d0", NETS)
    per = {"student:student_d0": _episodes(0), "student:student_d4": _episodes(1), "direct:direct_d4": _episodes(2),
           "direct:direct_d0": _episodes(3)}
    out = dividends([s0, s4], [d4, d0], per)
    assert [(e["student"], e["direct"]) for e in out] == [("student:student_d0", "direct:direct_d0"),
                                                        ("student:student_d4", "direct:direct_d4")]
    want = D.paired_difference(per["student:student_d4"]["random"]["time_at_goal"], per["direct:direct_d4"]["random"]["time_at_goal"])
    assert out[1]["splits"]["random"]["time_at_goal"] == want
    lonely = dividends([s4], [d0], per)[0]
    assert lonely["direct"] is None and "no direct run of its network" in lonely["skipped"]
    assert "not measured: no direct run" in D.dividend_line(lonely)


REACHER_LIKE = declare_terms(("angle", 2, "rad", "joint angles"), ("velocity", 2, "rad/s", "joint velocities"),
                             ("tip", 3, "m", "fingertip"))


@pytest.mark.parametrize("changes,needle", [
    (dict(terms=REACHER_LIKE[:1]), "terms angle"),
    (dict(history=3, history_actions=True), "history 3 with previous actions"),
    (dict(noise=(("tip", 0.005),)), "noise tip=0.005"),
    (dict(action_delay=1), "action delay 1"),
])
def test_a_student_that_sees_another_observation_has_no_direct_baseline(changes, needle):
    """The student's recorded observation model (issue 20: observation_model.json) decides."""
    sensed = ObservationModel.full(REACHER_LIKE, 2).replace(**changes)
    s = _run("student_d0", NETS, observation=sensed)
    reason = D.observation_difference(s)
    assert reason is not None and needle in reason and "no same-input direct baseline" in reason
    (entry,) = dividends([s], [_run("direct_d0", NETS)], {})
    assert entry["skipped"] == reason and entry["direct"] == "direct:direct_d0" and "splits" not in entry
    assert D.dividend_line(entry) == f"- dividend of student:student_d0: not measured: {reason}."


def test_the_teachers_observation_recorded_explicitly_is_the_teachers():
    s = _run("student_d0", NETS, observation=ObservationModel.full(REACHER_LIKE, 2))
    assert D.observation_difference(s) is None and D.observation_difference(_run("student_d0", NETS)) is None
    recurrent = _run("student_gru", types.SimpleNamespace(carry_size=8, step=lambda *a: None))
    assert "recurrent" in D.observation_difference(recurrent)


def test_same_network_ignores_how_it_runs_not_what_it_is():
    import dataclasses

    assert D.same_network(NETS, dataclasses.replace(NETS, remat=True, matmul_dtype="bfloat16"))
    assert not D.same_network(NETS, OTHER)
    assert not D.same_network(NETS, build_student("mlp", Interface(2, 2, 2, 16), Size(0, 32)))
    assert not D.same_network(NETS, build_student("residual", Interface(2, 2, 2, 8), Size(0, 32)))  # repr size
