"""The controller-side runtime on small hand-built models: metadata checks, input validation, errors.

No JAX here: the models are written with onnx.helper (``action = tanh([obs, goal] @ W)``), so these
tests pin the runtime's contract independently of the exporter (tests/test_export.py covers the
real exports)."""

import json
import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deepdistill.export import metadata
from deepdistill.export.runtime import OnnxModel, OnnxPolicy, PolicyError, PolicyFileError, PolicyInputError

S, G, A = 3, 2, 2
W = np.linspace(-1.0, 1.0, (S + G) * A, dtype=np.float32).reshape(S + G, A)


def meta(**over):
    m = {
        "schema_version": 2,  # a hand-written schema-2 file (they still load)
        "model": "policy",
        "task": "toy",
        "env_spec": {"name": "toy"},
        "observation_size": S,
        "goal_size": G,
        "action_size": A,
        "goal_indices": [0, 1],
        "action_low": -1.0,
        "action_high": 1.0,
        "success_threshold": 0.3,
        "inputs": [{"name": "observation", "shape": ["B", S]}, {"name": "goal", "shape": ["B", G]}],
        "outputs": [{"name": "action", "shape": ["B", A]}],
        "architecture": {},
        "provenance": {},
        "deepdistill_version": "0",
        "parity": {},
        "observation_names": [f"state[{i}]" for i in range(S)],
        "goal_names": ["state[0]", "state[1]"],
        "controller": {"native": False, "reason": "a toy task with no MuJoCo model"},
    }
    m.update(over)
    return m


def toy_model(props=None, obs_size=S):
    nodes = [
        helper.make_node("Concat", ["observation", "goal"], ["x"], axis=1),
        helper.make_node("MatMul", ["x", "W"], ["y"]),
        helper.make_node("Tanh", ["y"], ["action"]),
    ]
    g = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["B", obs_size]),
         helper.make_tensor_value_info("goal", TensorProto.FLOAT, ["B", G])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["B", A])],
        [numpy_helper.from_array(W if obs_size == S else np.zeros((obs_size + G, A), np.float32), "W")],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if props is not None:
        helper.set_model_props(model, props)
    return model


def write(tmp_path, model, name="policy.onnx"):
    path = tmp_path / name
    onnx.save(model, path)
    return path


def expected(obs, goal):
    return np.tanh(np.concatenate([obs, goal], -1).astype(np.float32) @ W)


@pytest.fixture
def policy(tmp_path):
    return OnnxPolicy(write(tmp_path, toy_model(metadata.encode(meta()))))


def test_one_sample_and_batches(policy):
    rng = np.random.default_rng(0)
    obs, goal = rng.standard_normal((7, S)).astype(np.float32), rng.standard_normal((7, G)).astype(np.float32)
    np.testing.assert_allclose(policy.act(obs, goal), expected(obs, goal), atol=1e-6)
    a = policy.act(obs[0], goal[0])
    assert a.shape == (A,) and a.dtype == np.float32
    np.testing.assert_allclose(a, expected(obs[:1], goal[:1])[0], atol=1e-6)
    a[:] = 9.0  # the caller owns the result: the next call is unaffected
    np.testing.assert_allclose(policy(obs[1], goal[1]), expected(obs[1:2], goal[1:2])[0], atol=1e-6)
    assert policy.act(obs[:1], goal[:1]).shape == (1, A)


def test_other_number_types_are_converted(policy):
    obs, goal = [0.5, -1, 2], [1, 0]
    want = expected(np.array([obs]), np.array([goal]))[0]
    np.testing.assert_allclose(policy.act(np.array(obs, np.float64), np.array(goal, np.int64)), want, atol=1e-6)
    np.testing.assert_allclose(policy.act(obs, goal), want, atol=1e-6)
    np.testing.assert_allclose(policy.act(np.array([obs] * 4, np.float16), np.array([goal] * 4)), [want] * 4, atol=1e-3)


@pytest.mark.parametrize(
    "obs,goal,needle",
    [
        (np.zeros(4), np.zeros(G), "observation has shape (4,); expected (3,) for one sample or (B, 3)"),
        (np.zeros((5, S)), np.zeros((5, 3)), "goal has shape (5, 3)"),
        (np.zeros((2, 2, S)), np.zeros((2, 2, G)), "observation has shape (2, 2, 3)"),
        (np.zeros((0, S)), np.zeros((0, G)), "observation has shape (0, 3)"),
        (np.zeros((5, S)), np.zeros((4, G)), "different batch sizes [4, 5]"),
        (np.zeros((1, S)), np.zeros(G), "mix of one sample and a batch"),
        (np.array(["a", "b", "c"]), np.zeros(G), "observation has dtype <U1; pass float32"),
        (np.zeros(S, bool), np.zeros(G), "observation has dtype bool"),
        (np.zeros(S), np.zeros(G, complex), "goal has dtype complex128"),
        ([[1.0, 2.0], [3.0]], np.zeros(G), "observation is not an array of numbers"),
        (np.array([0.0, np.nan, 0.0]), np.zeros(G), "observation[1] is nan"),
        (np.zeros(S), np.array([0.0, np.inf], np.float32), "goal[1] is inf"),
        (np.zeros((3, S)), np.array([[0, 0], [0, 0], [-np.inf, 0]]), "goal[2, 0] is -inf"),
        (np.full(S, 1e39), np.zeros(G), "observation[0] is inf"),  # float64 past float32's range
    ],
)
def test_bad_inputs_raise_clear_errors(policy, obs, goal, needle):
    with pytest.raises(PolicyInputError) as e:
        policy.act(obs, goal)
    assert needle in str(e.value)
    assert policy.act(np.zeros(S), np.zeros(G)).shape == (A,)  # the session is still usable


def test_check_finite_can_be_turned_off(tmp_path):
    p = OnnxPolicy(write(tmp_path, toy_model(metadata.encode(meta()))), check_finite=False)
    assert np.isnan(p.act([np.nan, 0, 0], [0, 0])).all()


def test_missing_and_corrupted_files(tmp_path):
    with pytest.raises(PolicyFileError, match="no such file"):
        OnnxPolicy(tmp_path / "nope.onnx")
    with pytest.raises(PolicyFileError, match="policy.onnx: no such file"):
        OnnxPolicy(tmp_path)  # a directory without policy.onnx
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(PolicyFileError, match="not a loadable ONNX model"):
        OnnxPolicy(tmp_path / "junk.onnx")
    good = toy_model(metadata.encode(meta())).SerializeToString()
    (tmp_path / "cut.onnx").write_bytes(good[: len(good) // 2])
    with pytest.raises(PolicyFileError, match="not a loadable ONNX model"):
        OnnxPolicy(tmp_path / "cut.onnx")


def test_files_without_our_metadata(tmp_path):
    with pytest.raises(PolicyFileError, match="no deepdistill metadata; this file was not written by `export-onnx`"):
        OnnxPolicy(write(tmp_path, toy_model({"author": "someone"})))
    bad = metadata.encode(meta())
    bad["deepdistill.task"] = "{not json"
    with pytest.raises(PolicyFileError, match="'deepdistill.task' is not valid JSON"):
        OnnxPolicy(write(tmp_path, toy_model(bad)))
    partial = {k: v for k, v in metadata.encode(meta()).items() if k != "deepdistill.action_high"}
    with pytest.raises(PolicyFileError, match="metadata lacks action_high"):
        OnnxPolicy(write(tmp_path, toy_model(partial)))
    with pytest.raises(PolicyFileError, match="newer than this reader's"):
        OnnxPolicy(write(tmp_path, toy_model(metadata.encode(meta(schema_version=metadata.SCHEMA_VERSION + 1)))))
    with pytest.raises(PolicyFileError, match="holds a goal_encoder model, not a policy"):
        OnnxPolicy(write(tmp_path, toy_model(metadata.encode(meta(model="goal_encoder")))))


def test_schema_1_files_still_load_and_schema_2_needs_the_controller_fields(tmp_path):
    v1 = {k: v for k, v in meta(schema_version=1).items() if k not in metadata.REQUIRED_V2}
    p = OnnxPolicy(write(tmp_path, toy_model(metadata.encode(v1))))
    obs, goal = np.array([0.5, -1.0, 2.0], np.float32), np.array([0.25, 0.75], np.float32)
    np.testing.assert_allclose(p.act(obs, goal), expected(obs, goal), atol=1e-6)
    assert p.metadata["schema_version"] == 1 and "controller" not in p.metadata
    v2 = {k: v for k, v in metadata.encode(meta()).items() if k != "deepdistill.controller"}
    with pytest.raises(PolicyFileError, match="metadata lacks controller"):
        OnnxPolicy(write(tmp_path, toy_model(v2)))


def test_malformed_metadata_and_unknown_providers(tmp_path):
    with pytest.raises(PolicyFileError, match="metadata lacks inputs\\[0\\].name: the fault is in this file's metadata"):
        OnnxPolicy(write(tmp_path, toy_model(metadata.encode(meta(inputs=[{"shape": ["B", 3]}])))))
    swapped = meta(inputs=[{"name": "goal", "shape": ["B", G]}, {"name": "observation", "shape": ["B", S]}])
    with pytest.raises(PolicyFileError, match="a policy takes observation \\[B, 3\\] and goal \\[B, 2\\]"):
        OnnxPolicy(write(tmp_path, toy_model(metadata.encode(swapped))))
    with pytest.raises(ValueError, match="not in this onnxruntime build"):
        OnnxPolicy(write(tmp_path, toy_model(metadata.encode(meta()))), providers=["NoSuchExecutionProvider"])


def test_graph_must_match_metadata(tmp_path):
    with pytest.raises(PolicyFileError, match="graph input observation is tensor\\(float\\)\\['B', 4\\], metadata says float32 \\[B, 3\\]"):
        OnnxPolicy(write(tmp_path, toy_model(metadata.encode(meta()), obs_size=4)))


def test_generic_model_and_split(tmp_path):
    path = write(tmp_path, toy_model(metadata.encode(meta())))
    m = OnnxModel(path)
    assert m.metadata["task"] == "toy" and m.input_sizes == {"observation": S, "goal": G}
    with pytest.raises(PolicyInputError, match="takes inputs \\['goal', 'observation'\\], got \\['goal'\\]"):
        m.run(goal=np.zeros(G))
    np.testing.assert_allclose(m.run(observation=np.ones(S), goal=np.ones(G)), expected(np.ones((1, S)), np.ones((1, G)))[0], atol=1e-6)
    obs, goal = m.split(np.arange(S + G, dtype=np.float32))
    assert obs.tolist() == [0, 1, 2] and goal.tolist() == [3, 4]
    with pytest.raises(PolicyInputError, match="expected \\(5,\\) or \\(B, 5\\)"):
        m.split(np.zeros(4))


def test_session_defaults(policy):
    import onnxruntime as ort

    # the runtime picks CUDA where this onnxruntime build has it (onnxruntime-gpu), else the CPU; a
    # session falls back to the CPU when the CUDA libraries are missing
    assert policy.provider in ort.get_available_providers()
    assert policy.session.get_providers()[-1] == "CPUExecutionProvider"
    assert policy.session.get_session_options().intra_op_num_threads == 1
    assert (policy.action_low, policy.action_high) == (-1.0, 1.0)
    assert isinstance(PolicyInputError("x"), (PolicyError, ValueError))


def test_one_instance_is_safe_across_threads(policy):
    rng = np.random.default_rng(1)
    obs, goal = rng.standard_normal((64, S)).astype(np.float32), rng.standard_normal((64, G)).astype(np.float32)
    want, got = expected(obs, goal), np.zeros((64, A), np.float32)

    def work(lo):
        for i in range(lo, 64, 4):
            for _ in range(20):
                got[i] = policy.act(obs[i], goal[i])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_metadata_round_trip():
    m = meta()
    assert metadata.decode(metadata.encode(m)) == m
    assert json.loads(metadata.encode(m)["deepdistill.goal_indices"]) == [0, 1]


# --- integrity: the weights digest and metadata that must agree with itself -----------------------------


def signed(model):
    """``model`` with the weights digest the exporter writes (``export.writer.attach_metadata``)."""
    import hashlib

    props = {p.key: p.value for p in model.metadata_props}
    props[metadata.PREFIX + "weights_sha256"] = json.dumps(hashlib.sha256(model.graph.SerializeToString()).hexdigest())
    del model.metadata_props[:]
    helper.set_model_props(model, props)
    return model


def test_garbled_weights_are_refused(tmp_path):
    path = write(tmp_path, signed(toy_model(metadata.encode(meta()))))
    OnnxPolicy(path)  # intact: loads
    data = bytearray(path.read_bytes())
    at = data.find(W.tobytes())  # the weights' raw bytes in the file
    assert at > 0
    data[at:at + 8] = bytes(8 * [0x3F])
    path.write_bytes(bytes(data))
    with pytest.raises(PolicyFileError, match="do not match the digest in its metadata"):
        OnnxPolicy(path)
    with pytest.raises(PolicyFileError, match="do not match the digest"):
        OnnxModel(path)


@pytest.mark.parametrize(
    "over,needle",
    [
        (dict(action_low="low"), "metadata field action_low is 'low', expected a finite number"),
        (dict(action_high=float("nan")), "metadata field action_high is nan, expected a finite number"),
        (dict(action_low=1.0, action_high=-1.0), "is empty"),
        (dict(goal_indices=[0, 7]), "goal_indices=\\[0, 7\\] must be 2 \\(goal_size\\) indices"),
        (dict(goal_indices=[0]), "must be 2 \\(goal_size\\) indices"),
        (dict(task="other"), "task='other' disagrees with env_spec.name='toy'"),
        (dict(env_spec={"name": "toy", "action_low": -2.0}), "action_low=-1.0 disagrees with env_spec.action_low=-2.0"),
        (dict(env_spec={"name": "toy", "goal_indices": [1, 2]}), "disagrees with env_spec.goal_indices"),
        (dict(env_spec={"name": "toy", "state_size": 9}), "observation_size=3 disagrees with env_spec.state_size=9"),
        (dict(weights_sha256="abc"), "metadata field weights_sha256 is 'abc', not of the expected form"),
    ],
)
def test_metadata_fields_must_agree(tmp_path, over, needle):
    with pytest.raises(PolicyFileError, match=needle):
        OnnxPolicy(write(tmp_path, toy_model(metadata.encode(meta(**over)))))


def test_metadata_edited_after_export_is_refused(tmp_path):
    """A file whose action range was edited (the env_spec still records the task's): refused."""
    m = signed(toy_model(metadata.encode(meta(env_spec={"name": "toy", "action_low": -1.0, "action_high": 1.0}))))
    for p in m.metadata_props:
        if p.key == metadata.PREFIX + "action_high":
            p.value = "2.0"
    with pytest.raises(PolicyFileError, match="action_high=2.0 disagrees with env_spec.action_high=1.0"):
        OnnxPolicy(write(tmp_path, m))


def test_graph_digest_reads_only_well_formed_models():
    model = toy_model(metadata.encode(meta()))
    import hashlib

    assert metadata.graph_digest(model.SerializeToString()) == hashlib.sha256(model.graph.SerializeToString()).hexdigest()
    assert metadata.graph_digest(b"\x08\x07garbage") is None
    assert metadata.graph_digest(model.SerializeToString()[:-3]) is None
