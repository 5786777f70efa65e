"""Students that see only what the robot senses: named observation terms, the observation model (terms,
history, previous actions, noise, action delay) in training rollouts, and its bad input."""

from pathlib import Path

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
    if not task.startswith("point_"):  # the point tasks' state is one term, the position
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


# --- the sensors in a rollout (envs/sensors.py) ---------------------------------------------------------------

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from deepdistill.envs.sensors import SensorEnv  # noqa: E402


def sensor_rollout(model, actions, key=0, task="point_arena"):
    """Reset, then one step per row of ``actions [T, A]``; returns the stacked observations [T + 1, ...]."""
    env = SensorEnv(make_env(task), model)
    s = jax.jit(lambda k: env.reset_split(k, "random"))(jax.random.PRNGKey(key))
    step = jax.jit(env.step)
    obs = [s.obs]
    for a in actions:
        s = step(s, jnp.asarray(a, jnp.float32))
        obs.append(s.obs)
    return env, np.stack(obs)


def point_model(**kw):
    return ObservationModel(make_env("point_arena").observation_terms(), action_size=2, **kw)


def test_history_holds_the_last_frames_newest_last_and_the_commanded_actions():
    actions = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.5], [2.0, -3.0]])  # the last one is clipped
    env, obs = sensor_rollout(point_model(history=3, history_actions=True), actions)
    true = obs[:, :2]
    sensed = obs[:, 2:2 + env.model.input_size]
    frames, prev = sensed[:, :6].reshape(-1, 3, 2), sensed[:, 6:].reshape(-1, 3, 2)
    np.testing.assert_array_equal(frames[0], np.tile(true[0], (3, 1)))  # the first frame, 3 times
    np.testing.assert_array_equal(prev[0], 0.0)
    for t in range(1, len(obs)):
        want = [true[max(t - 2 + k, 0)] for k in range(3)]  # oldest first, newest (t) last
        np.testing.assert_array_equal(frames[t], want)
        clipped = np.clip(actions, -1, 1)
        want_a = [clipped[t - 3 + k] if t - 3 + k >= 0 else np.zeros(2) for k in range(3)]
        np.testing.assert_array_equal(prev[t], want_a)
    np.testing.assert_array_equal(obs[:, -2:], np.tile(obs[0, -2:], (len(obs), 1)))  # the goal: the last entries


def test_action_delay_applies_each_command_n_steps_later():
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (6, 2))
    _, plain = sensor_rollout(point_model(), actions)
    _, delayed = sensor_rollout(point_model(action_delay=2), actions)
    _, zeros_first = sensor_rollout(point_model(), np.concatenate([np.zeros((2, 2)), actions[:4]]))
    np.testing.assert_allclose(delayed[:, :2], zeros_first[:, :2], atol=1e-6)  # zeros, then the commands, 2 late
    assert not np.allclose(delayed[:, :2], plain[:, :2])


def test_noise_is_gaussian_per_term_and_determined_by_the_seed():
    actions = np.zeros((200, 2))
    model = point_model(noise=(("position", 0.05),))
    _, a = sensor_rollout(model, actions, key=3)
    _, b = sensor_rollout(model, actions, key=3)
    _, c = sensor_rollout(model, actions, key=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[:, 2:4], c[:, 2:4])
    err = a[:, 2:4] - a[:, :2]  # sensed minus true position (the point stays still)
    assert abs(err.std() - 0.05) < 0.005 and abs(err.mean()) < 0.01
    _, clean = sensor_rollout(point_model(), actions, key=3)
    np.testing.assert_array_equal(clean[:, :2], a[:, :2])  # the true state is untouched by sensor noise


# --- distill with sensors ---------------------------------------------------------------------------------------

import json  # noqa: E402

from deepdistill.core.checkpoint import Checkpointer  # noqa: E402
from deepdistill.core.rundir import write_json_atomic, write_run_info  # noqa: E402
from deepdistill.distill.cli import main as distill_main  # noqa: E402
from deepdistill.distill.config import DistillConfig  # noqa: E402
from deepdistill.distill.run import distill  # noqa: E402
from deepdistill.student import load_student  # noqa: E402
from deepdistill.student.residual import CRLNetworks  # noqa: E402


def write_random_teacher(run_dir, task="point_arena", episode_length=None, seed=0, width=16):
    """A teacher run with random parameters (depth 0): enough to test what distillation does with sensors."""
    spec = make_env(task, episode_length=episode_length).spec
    nets = CRLNetworks(spec.state_size, spec.goal_size, spec.action_size, repr_dim=8, actor_width=width,
                       actor_depth=0, critic_width=width, critic_depth=0)
    params = nets.init(jax.random.PRNGKey(seed))
    write_json_atomic(run_dir / "config.json", {"env": task, "seed": seed, "episode_length": episode_length})
    write_json_atomic(run_dir / "env_spec.json", spec.to_dict())
    write_json_atomic(run_dir / "networks.json", nets.to_dict())
    write_run_info(run_dir, "teacher", env=task)
    ckpt = Checkpointer(run_dir)
    ckpt.save(1, {"step": 1}, params, {"step": 1})
    ckpt.close()
    return run_dir


@pytest.fixture(scope="module")
def point_teacher(tmp_path_factory):
    return write_random_teacher(tmp_path_factory.mktemp("teacher") / "run", "point_arena", episode_length=50)


def tiny(teacher, out, **kw):
    base = dict(teacher=str(teacher), out=str(out), arch="mlp", depth=0, width=16, steps=100, batch_size=32,
                num_envs=8, unroll_length=25, sgd_steps_per_unroll=25, replay_steps_per_env=100, eval_every=50,
                num_eval_episodes=8, progress=False, repr=0.0, relational=0.0)
    return DistillConfig(**{**base, **kw})


def test_a_student_with_sensors_learns_from_the_teachers_labels(point_teacher, tmp_path):
    cfg = tiny(point_teacher, tmp_path / "s", history=2, history_actions=True, obs_noise=("0.05",), action_delay=1)
    distill(cfg)
    saved = json.loads((tmp_path / "s" / "observation_model.json").read_text())
    assert (saved["history"], saved["history_actions"], saved["action_delay"], saved["input_size"]) == (2, True, 1, 8)
    assert [t["name"] for t in saved["terms"]] == ["position"] and saved["terms"][0]["noise_std"] == 0.05
    student = load_student(tmp_path / "s")
    assert student.sensed and student.nets.state_size == 8 and student.observation == ObservationModel.from_dict(saved)
    metrics = [json.loads(line) for line in open(tmp_path / "s" / "metrics.jsonl")]
    assert metrics[-1]["train/action_mse"] < metrics[0]["train/action_mse"]


@pytest.mark.slow
def test_the_delayed_student_is_labelled_with_the_teachers_action_when_its_own_lands(point_teacher):
    """With a delay of N, the label of the student's input at step t is the teacher's action on the true
    state at t + N (when the command is applied); without delay, at t."""
    from deepdistill.distill.run import DistillStage
    from deepdistill.student.policy import load_teacher

    for delay in (0, 2):
        stage = DistillStage(tiny(point_teacher, "unused", action_delay=delay, history=2, obs_noise=("0.01",)),
                             load_teacher(point_teacher))  # noise: every sensed row is unique
        d = stage.distiller
        ds = stage.init()
        batch = jax.jit(d.sample_batch)(ds, jax.random.PRNGKey(1))
        rows = np.asarray(ds.replay.states)  # [T, E, S + I + G]
        true, sensed = rows[..., :2], rows[..., 2:2 + d.observation.input_size]
        for b in range(4):  # find each sample's row by its sensor input, then check its label's state
            t, e = np.argwhere((sensed == np.asarray(batch["state"][b])).all(-1))[0]
            end = (t // 50) * 50 + 49
            np.testing.assert_array_equal(batch["teacher_state"][b], true[min(t + delay, end, int(ds.replay.written) - 1), e])


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--history", "0"], "--history must be at least 1 (got 0"),
        (["--action-delay", "-1"], "--action-delay must be >= 0 control steps (got -1)"),
        (["--obs-noise", "-0.1"], "--obs-noise '-0.1': the standard deviation must be a finite number >= 0"),
        (["--obs-noise", "position=-1"], "the standard deviation must be a finite number >= 0"),
        (["--student-obs", "velocity"], "--student-obs: unknown observation term 'velocity'; this task's terms are: position"),
        (["--obs-noise", "velocity=0.1"], "--obs-noise: unknown observation term 'velocity'; this task's terms are: position"),
        (["--data", "teacher", "--history", "2"], "--data teacher cannot model what the student senses"),
        (["--data", "teacher", "--obs-noise", "0.1"], "use --data dagger"),
        (["--teacher-buffer-fraction", "0.5", "--action-delay", "1"], "--teacher-buffer-fraction: the teacher's replay"),
        (["--seq-len", "0"], "--seq-len must be at least 1 (got 0)"),
        (["--arch", "gru", "--repr", "0", "--relational", "0", "--seq-len", "7"], "--seq-len 7 must divide --batch-size"),
    ],
)
def test_bad_sensor_flags_exit_2_in_one_line_and_write_nothing(point_teacher, tmp_path, args, needle, capsys):
    with pytest.raises(SystemExit) as e:
        distill_main(["--teacher", str(point_teacher), "--out", str(tmp_path / "s"), *args])
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


# --- a recurrent student (student/gru.py) ------------------------------------------------------------------------


@pytest.mark.slow
def test_gru_sequences_replay_the_hidden_state_the_student_acted_with(point_teacher):
    """Collected with the student acting alone, every stored row holds the hidden state before that step
    (zeros at an episode start), and truncated BPTT from the stored state reproduces the actions taken."""
    from deepdistill.distill.run import DistillStage
    from deepdistill.student.policy import load_teacher

    cfg = tiny(point_teacher, "unused", arch="gru", width=8, beta_start=0.0, beta_end=0.0, beta_schedule="constant",
               future_goal_fraction=0.0, seq_len=8, batch_size=128, history_actions=True, obs_noise=("0.02",))
    stage = DistillStage(cfg, load_teacher(point_teacher))
    d = stage.distiller
    ds = stage.init()
    for _ in range(2):  # 75 steps: the sequences may cross into the second episode (length 50)
        ds = jax.jit(d._collect)(ds, jax.random.PRNGKey(7), stage.teacher_params)
    assert int(ds.replay.written) == 75 and ds.carry.shape == (8, 8)
    rows = np.asarray(ds.replay.states)
    np.testing.assert_array_equal(rows[0, :, -8:], 0.0)
    np.testing.assert_array_equal(rows[50, :, -8:], 0.0)  # the memory restarts with the episode
    assert np.abs(rows[1:50, :, -8:]).max() > 0
    batch = jax.jit(d.sample_batch)(ds, jax.random.PRNGKey(3))
    assert batch["state"].shape == (128, 2 + 2) and batch["carry0"].shape == (16, 8)  # frame + previous action
    assert np.asarray(batch["first"]).reshape(16, 8)[:, 1:].any()  # a sequence runs into the next episode
    mean, _ = jax.jit(d.student_policy)(ds.student["actor"], batch)
    np.testing.assert_allclose(np.tanh(mean), batch["action"], atol=2e-5)


@pytest.mark.slow
def test_a_gru_student_with_sensors_learns(point_teacher, tmp_path):
    distill(tiny(point_teacher, tmp_path / "g", arch="gru", seq_len=8, history_actions=True, obs_noise=("0.05",),
                 action_delay=1))
    student = load_student(tmp_path / "g")
    assert student.nets.describe()["recurrent"] and student.observation.action_delay == 1
    metrics = [json.loads(line) for line in open(tmp_path / "g" / "metrics.jsonl")]
    assert metrics[-1]["train/action_mse"] < metrics[0]["train/action_mse"]
    assert 0.0 <= metrics[-1]["success_rate"] <= 1.0


# --- export (schema 3) and the runtimes -------------------------------------------------------------------------

from deepdistill.envs.observation import OBSERVATION_FILE  # noqa: E402
from deepdistill.export import metadata  # noqa: E402
from deepdistill.export.config import ExportConfig  # noqa: E402
from deepdistill.export.runtime import OnnxPolicy, PolicyFileError, PolicyInputError  # noqa: E402
from deepdistill.export.writer import export_run  # noqa: E402
from deepdistill.student import GRUNetworks, MLPNetworks  # noqa: E402


def write_random_student(run_dir, nets, model, task="point_arena", episode_length=50, seed=0):
    """A student run with random parameters for ``nets`` and the observation ``model``."""
    spec = make_env(task, episode_length=episode_length).spec
    params = jax.tree.map(lambda a: a + 0.05, nets.init(jax.random.PRNGKey(seed)))  # biases away from 0
    write_json_atomic(run_dir / "config.json", {"env": task, "seed": seed})
    write_json_atomic(run_dir / "env_spec.json", spec.to_dict())
    write_json_atomic(run_dir / "networks.json", nets.to_dict())
    write_json_atomic(run_dir / OBSERVATION_FILE, model.to_dict())
    write_run_info(run_dir, "student", env=task)
    ckpt = Checkpointer(run_dir)
    ckpt.save(1, {"step": 1}, params, {"step": 1})
    ckpt.close()
    return run_dir


HISTORY = point_model(history=3, history_actions=True, noise=(("position", 0.05),), action_delay=1)
RECURRENT = point_model(history_actions=True, noise=(("position", 0.05),), action_delay=1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A history student and a GRU student of point_arena, exported."""
    root = tmp_path_factory.mktemp("exported")
    out = {}
    for name, nets, model in (
        ("history", MLPNetworks(HISTORY.input_size, 2, 2, actor_width=16, actor_depth=1, encoders=False), HISTORY),
        ("gru", GRUNetworks(RECURRENT.input_size, 2, 2, hidden=8, head_width=8), RECURRENT),
    ):
        run = write_random_student(root / name, nets, model)
        summary = export_run(ExportConfig(student=str(run), out=str(root / f"{name}_onnx"), parity_samples=32))
        out[name] = (run, root / f"{name}_onnx", summary)
    return out


def jax_and_onnx_episodes(run_dir, onnx_dir, keys, reset=True):
    """Each episode of ``keys`` twice: the JAX student on its input built by SensorEnv, and the ONNX file
    fed this step's frame alone (the runtime keeps the history and hidden state); delay in both envs."""
    from deepdistill.core.rollout import as_recurrent
    from deepdistill.distill.train import student_policy

    student = load_student(run_dir)
    model = student.observation.replace(noise=())  # noise-free: both sides see the same frames
    env, deploy = SensorEnv(make_env("point_arena", episode_length=50), model), SensorEnv(make_env("point_arena", episode_length=50), model.frames_only())
    pol = as_recurrent(student_policy(student.nets, slice(2, None)))
    policy = OnnxPolicy(onnx_dir)
    step_j, step_d = jax.jit(env.step), jax.jit(deploy.step)
    runs = []
    for key in keys:
        s, d = env.reset_split(jax.random.PRNGKey(key), "random"), deploy.reset_split(jax.random.PRNGKey(key), "random")
        carry = pol.init(student.params, 1)
        if reset:
            policy.reset()
        a_jax, a_onnx = [], []
        for _ in range(12):
            a, carry = pol.step(student.params, carry, s.obs[None, :-2], s.obs[None, -2:])
            a_jax.append(np.asarray(a[0]))
            a_onnx.append(policy.act(np.asarray(d.obs[2:4]), np.asarray(d.obs[-2:])))
            s, d = step_j(s, a[0]), step_d(d, jnp.asarray(a_onnx[-1]))
        runs.append((np.stack(a_jax), np.stack(a_onnx)))
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["history", "gru"])
def test_the_runtime_keeps_the_history_and_hidden_state_and_resets_them_per_episode(exported, kind):
    run, onnx_dir, summary = exported[kind]
    for a_jax, a_onnx in jax_and_onnx_episodes(run, onnx_dir, keys=(0, 1)):
        np.testing.assert_allclose(a_onnx, a_jax, atol=1e-5)
        assert np.abs(np.diff(a_jax, axis=0)).max() > 1e-3  # the actions change: the check has teeth
    # without reset() the second episode starts from the first one's history: its first actions differ
    (_, _), (a_jax, a_onnx) = jax_and_onnx_episodes(run, onnx_dir, keys=(0, 1), reset=False)
    assert np.abs(a_onnx[0] - a_jax[0]).max() > 1e-4


def test_schema_3_metadata_records_the_observation_model_and_the_memory(exported):
    _, onnx_dir, summary = exported["gru"]
    p = OnnxPolicy(onnx_dir)
    m = p.metadata
    assert m["schema_version"] == 3 == metadata.SCHEMA_VERSION
    om = m["observation_model"]
    assert [t["name"] for t in om["terms"]] == ["position"] and om["terms"][0]["noise_std"] == 0.05
    assert (om["history"], om["history_actions"], om["action_delay"], om["input_size"]) == (1, True, 1, 4)
    assert m["recurrent"]["hidden_size"] == 8 and [o["name"] for o in m["outputs"]] == ["action", "h_out"]
    assert [i["name"] for i in m["inputs"]] == ["observation", "goal", "h_in"]
    assert set(m["parity"]) >= {"random", "task", "sequence"} and m["parity"]["sequence"]["max_abs_err"] <= 1e-5
    _, hist_dir, _ = exported["history"]
    h = OnnxPolicy(hist_dir)
    assert h.metadata["recurrent"] is None and h.metadata["observation_model"]["input_layout"][-1] == {
        "part": "previous_action", "age": 1, "start": 10, "stop": 12}
    assert (h.frame_size, h.input_size, h.stateful) == (2, 12, True)
    with pytest.raises(PolicyInputError, match="call reset"):
        h.reset()
        h.act(np.zeros((2, 2)), np.zeros((2, 2)))
        h.act(np.zeros((3, 2)), np.zeros((3, 2)))


def test_a_schema_2_reader_refuses_a_schema_3_file_in_one_line(exported, monkeypatch):
    _, onnx_dir, _ = exported["history"]
    monkeypatch.setattr(metadata, "SCHEMA_VERSION", 2)
    with pytest.raises(PolicyFileError) as e:
        OnnxPolicy(onnx_dir)
    assert "metadata schema 3 is newer than this reader's (2); upgrade deepdistill" in str(e.value)
    assert len(str(e.value).splitlines()) == 1


# --- evaluate and the native MuJoCo controller -------------------------------------------------------------------


@pytest.mark.slow
def test_evaluate_states_each_students_observation_model_and_the_robustness_table(point_teacher, exported, tmp_path):
    from deepdistill.evaluate.compare import compare
    from deepdistill.export.runtime import OnnxPolicy
    from deepdistill.student.policy import load_teacher

    (hist, hist_onnx, _), (gru, gru_onnx, _) = exported["history"], exported["gru"]
    report = compare(load_teacher(point_teacher), [load_student(hist), load_student(gru)],
                     [("onnx:h", OnnxPolicy(hist_onnx)), ("onnx:g", OnnxPolicy(gru_onnx))], episodes=8, latency_samples=5)
    students = {s["name"]: s for s in report["students"]}
    h = students[f"student:{hist.name}"]
    assert (h["observation_terms"], h["history"], h["action_delay"], h["obs_noise"]) == (["position"], 3, 1, {"position": 0.05})
    assert students[f"student:{gru.name}"]["recurrent"] and report["teacher"]["obs_noise"] == {}
    for onnx_row, src in (("onnx:h", h), ("onnx:g", students[f"student:{gru.name}"])):  # as deployed: the same episodes
        row = next(o for o in report["onnx_all"] if o["name"] == onnx_row)
        assert row["time_at_goal"] == pytest.approx(src["time_at_goal"], abs=1e-6)
        assert row["final_distance"] == pytest.approx(src["final_distance"], abs=1e-4)
    rob = report["robustness"]
    assert [r["name"] for r in rob["rows"]] == ["teacher", f"student:{hist.name}", f"student:{gru.name}"]
    grid = [(r["noise_scale"], r["action_delay"]) for r in rob["rows"][1]["results"]]
    assert grid == [(0.0, 1), (1.0, 1), (2.0, 1), (1.0, 0), (1.0, 2)]
    assert rob["rows"][0]["results"][2]["obs_noise"] == {"position": 0.1}  # the teacher at 2x the student's noise
    assert set(report["sensor_students"]) == {f"student:{hist.name}", f"student:{gru.name}"}
    assert report["agreement"] == {}  # students with sensors see other inputs than the teacher's states
    from deepdistill.evaluate.report import markdown

    md = markdown(report, [])
    assert "## Robustness: sensor noise and action delay" in md and "position; 3 frames + actions; delay 1; noise 0.05" in md


@pytest.fixture(scope="module")
def reacher_gru(tmp_path_factory):
    root = tmp_path_factory.mktemp("reacher")
    terms = make_env("reacher").observation_terms()
    model = ObservationModel(terms[:2], history_actions=True, noise=(("cos_qpos", 0.01), ("sin_qpos", 0.01)),
                             action_delay=1, action_size=2)
    run = write_random_student(root / "gru", GRUNetworks(model.input_size, 3, 2, hidden=8, head_width=8), model,
                               task="reacher", episode_length=20)
    export_run(ExportConfig(student=str(run), out=str(root / "onnx"), parity_samples=16, parity_env_steps=4))
    return run, root / "onnx"


@pytest.mark.slow
def test_the_native_controller_feeds_frames_keeps_the_memory_and_models_the_delay(reacher_gru):
    """In native MuJoCo a GRU student that sees only joint angles acts as it does in MJX: the same actions
    from the same starts (frames cut from the recipe, hidden state kept, its actions one step late), and a
    second run of the same episodes repeats the first (the state is reset)."""
    from deepdistill.core.rollout import as_recurrent
    from deepdistill.distill.train import student_policy
    from deepdistill.evaluate.native import jax_starts, native_controller, sim2sim

    run, onnx_dir = reacher_gru
    env = make_env("reacher", episode_length=20)
    ctl = native_controller(env, OnnxPolicy(onnx_dir))
    assert ctl.action_delay == 1
    mjx_env = SensorEnv(env, load_student(run).observation.replace(noise=()))
    s, starts = jax_starts(mjx_env, jax.random.PRNGKey(5), 3, "random")
    first, again = ctl.rollout(starts, steps=6), ctl.rollout(starts, steps=6)
    np.testing.assert_array_equal(first["actions"], again["actions"])
    student = load_student(run)
    pol = as_recurrent(student_policy(student.nets, slice(10, None)))
    carry, step, actions = pol.init(student.params, 3), jax.jit(jax.vmap(mjx_env.step)), []
    for _ in range(6):
        a, carry = pol.step(student.params, carry, s.obs[:, :-3], s.obs[:, -3:])
        actions.append(np.asarray(a))
        s = step(s, a)
    np.testing.assert_allclose(first["actions"], np.stack(actions), atol=1e-4)
    res = sim2sim(env, ctl, jax.random.PRNGKey(3), episodes=2, steps=5)
    assert res["sim2sim_obs_err"] < 1e-3


PRETRAINED = Path(__file__).parent.parent / "examples" / "pretrained" / "reacher_sensors"


def test_the_shipped_sensor_student_reaches_goals_in_native_mujoco_from_joint_angles_alone():
    """The pretrained student of ``--preset reacher_sensors`` (a file, no training): it sees cos and sin of the
    joint angles, keeps its own memory, repeats itself on the same starts (its state is reset per rollout),
    and holds the fingertip at the goal for most of each episode with its trained 1-step delay."""
    from deepdistill.export.mujoco_controller import MujocoController

    ctl = MujocoController(PRETRAINED / "policy.onnx")
    p = ctl.policy
    assert [t["name"] for t in p.metadata["observation_model"]["terms"]] == ["cos_qpos", "sin_qpos"]
    assert p.frame_size == 4 and p.stateful and ctl.action_delay == 1
    starts = ctl.sample_starts(4, seed=1)
    first, again = ctl.rollout(starts, steps=50), ctl.rollout(starts, steps=50)
    np.testing.assert_array_equal(first["actions"], again["actions"])
    result = ctl.run(starts=starts)
    assert result["success_rate"] == 1.0 and result["time_at_goal"] > 700, result
