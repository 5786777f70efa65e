"""Brax's HTML viewer pages of `evaluate`: one episode per policy toward the same goal (on `reacher`,
the cheapest Brax task, with two small networks: a depth-4 "teacher" and a depth-0 "student")."""

import base64
import json
import re
import zlib
from pathlib import Path

import jax
import numpy as np
import pytest
from brax import math as brax_math

from deepdistill.evaluate import viewer as V
from deepdistill.evaluate.compare import host_act
from deepdistill.evaluate.report import write_report
from deepdistill.student.policy import PolicyRun
from deepdistill.envs import make_env
from deepdistill.envs.brax_tasks import ReacherGoal
from deepdistill.student.residual import CRLNetworks
from deepdistill.core.rollout import split_key

T, EPISODES, SEED = 12, 4, 7


def scene_of(html: str) -> dict:
    """The scene a page hands to brax's viewer (base64 of zlib-compressed JSON, as brax.io.html writes it)."""
    b64 = re.search(r'var system = "([^"]+)"', html).group(1)
    return json.loads(zlib.decompress(base64.b64decode(b64)))


def policy_run(env, kind, depth, seed):
    spec = env.spec
    nets = CRLNetworks(spec.state_size, spec.goal_size, spec.action_size, repr_dim=8,
                       actor_width=32, actor_depth=depth, critic_width=32, critic_depth=depth)
    return PolicyRun(kind, Path(kind), spec, nets, nets.init(jax.random.PRNGKey(seed)), 0, {}, {})


@pytest.fixture(scope="module")
def env():
    return make_env("reacher", episode_length=T)


@pytest.fixture(scope="module")
def pages(env):
    runs = [("teacher", policy_run(env, "teacher", 4, 0)), ("student:student_d0_w32", policy_run(env, "student", 0, 1))]
    listing, html = V.pages(env, [(n, host_act(r)) for n, r in runs], split_key(SEED, 0), EPISODES, "random")
    return listing, html


@pytest.mark.slow
def test_one_page_per_policy_same_goal_different_motion(env, pages):
    listing, html = pages
    assert list(html) == ["trajectory_teacher.html", "trajectory_student_d0_w32.html"]
    assert [p["file"] for p in listing["policies"].values()] == list(html)
    scenes = [scene_of(h) for h in html.values()]
    for s in scenes:
        assert len(s["states"]["x"]) == T + 1  # the reset state and every step
        assert s["opt"]["timestep"] == pytest.approx(env.physics.dt)  # one frame per env step: real time
        marker = s["geoms"][V.GOAL_GEOM][0]
        np.testing.assert_allclose(marker["pos"], listing["goal"], atol=1e-4)
        assert marker["size"][0] == env.spec.success_threshold
        assert set(s["geoms"]) == {"world", *env.physics.sys.link_names, V.GOAL_GEOM}  # every body, and the goal
    # the same start and goal (the target body marks the goal), then the policies move the arm apart
    first = [np.asarray(s["states"]["x"][0]["pos"]) for s in scenes]
    np.testing.assert_array_equal(first[0], first[1])
    last = [np.asarray(s["states"]["x"][-1]["pos"]) for s in scenes]
    assert np.abs(last[0] - last[1]).max() > 1e-3
    assert html["trajectory_teacher.html"] != html["trajectory_student_d0_w32.html"]


@pytest.mark.slow
def test_the_episode_is_the_first_of_the_evaluation_batch(env, pages):
    listing, _ = pages
    keys = jax.random.split(split_key(SEED, 0), EPISODES)
    goals = np.asarray(jax.jit(jax.vmap(lambda k: env.reset_split(k, "random")))(keys).obs[:, env.spec.state_size:])
    np.testing.assert_allclose(listing["goal"], goals[0], atol=1e-4)
    assert not np.allclose(goals[0], goals[1])


def test_the_drawn_bodies_are_the_simulated_ones(env, pages):
    """The fingertip drawn in the last frame is at the distance from the goal that the task reported,
    and the reacher's target body sits on the goal in every frame."""
    listing, html = pages
    names = env.physics.sys.link_names
    arm, target = names.index("body1"), names.index("target")
    for name, p in listing["policies"].items():
        x = scene_of(html[p["file"]])["states"]["x"]
        pos, rot = np.asarray(x[-1]["pos"][arm]), np.asarray(x[-1]["rot"][arm])
        tip = pos + np.asarray(brax_math.rotate(ReacherGoal.TIP, rot))
        assert np.linalg.norm(tip - np.asarray(listing["goal"])) == pytest.approx(p["final_distance"], abs=1e-3)
        targets = np.asarray([f["pos"][target][:2] for f in x])
        np.testing.assert_allclose(targets, np.broadcast_to(listing["goal"][:2], targets.shape), atol=1e-3)
        assert p["steps"] == T


def test_report_writes_and_links_the_pages(pages, tmp_path):
    listing, html = pages
    report = {"env": "reacher", "eval_splits": ["random"], "episodes": EPISODES, "seed": SEED,
              "teacher": {"name": "teacher", "kind": "teacher", "success_rate": 0.25, "latency_us_p50": 40.0},
              "student": None, "students": [], "onnx": None, "onnx_all": [], "agreement": {},
              "viewer": listing, "_viewer": html}
    paths = write_report(report, tmp_path, plots=False)
    assert [Path(p).name for p in paths["viewer"]] == list(html)
    for f in html:
        assert (tmp_path / f).read_text() == html[f]
    md = (tmp_path / "report.md").read_text()
    assert "](trajectory_teacher.html)" in md and "](trajectory_student_d0_w32.html)" in md
    saved = json.loads((tmp_path / "report.json").read_text())
    assert "_viewer" not in saved
    assert {n: p["file"] for n, p in saved["viewer"]["policies"].items()} == {"teacher": "trajectory_teacher.html",
            "student:student_d0_w32": "trajectory_student_d0_w32.html"}


def test_file_names_are_short_and_unique():
    names = ["teacher", "student:student", "student:student_d4_w64", "student:sweep/a b", "onnx:onnx_d4_w64",
             "onnx:x", "student:onnx_x", "student:x"]
    assert V.file_names(names) == {
        "teacher": "trajectory_teacher.html",
        "student:student": "trajectory_student.html",
        "student:student_d4_w64": "trajectory_student_d4_w64.html",
        "student:sweep/a b": "trajectory_student_sweep_a_b.html",
        "onnx:onnx_d4_w64": "trajectory_onnx_d4_w64.html",
        "onnx:x": "trajectory_onnx_x.html",
        "student:onnx_x": "trajectory_student_onnx_x.html",
        "student:x": "trajectory_student_x.html",
    }
    assert V.file_names(["student:student_x", "student:x"])["student:x"] == "trajectory_student_x_2.html"


def test_only_brax_tasks_get_pages():
    assert V.is_brax_task(make_env("reacher", episode_length=T))
    assert not V.is_brax_task(make_env("point_maze"))
