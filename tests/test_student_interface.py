"""The student interface: every architecture round-trips through JSON, loads, exports and evaluates
through the interface alone; the CLIs' error taxonomy; the private third-party APIs we rely on."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepdistill.core.checkpoint import Checkpointer
from deepdistill.core.cli import run_cli
from deepdistill.core.errors import ConfigError, UserError
from deepdistill.student.policy import load_policy_run
from deepdistill.core.rundir import write_json_atomic, write_run_info
from deepdistill.export.config import ExportConfig
from deepdistill.export.runtime import OnnxPolicy
from deepdistill.export.writer import export_run
from deepdistill.student import MLPNetworks, NNXNetworks, PolicyNetworks, architectures, make_student, networks_from_dict
from deepdistill.envs import make_env
from deepdistill.student.residual import CRLNetworks

NNX_MODULE = textwrap.dedent(
    """
    from flax import nnx

    class TinyPolicy(nnx.Module):
        def __init__(self, in_dim, out_dim, rngs, hidden=16):
            self.l1 = nnx.Linear(in_dim, hidden, rngs=rngs)
            self.l2 = nnx.Linear(hidden, out_dim, rngs=rngs)

        def __call__(self, x):
            return self.l2(nnx.relu(self.l1(x)))
    """
)


@pytest.fixture()
def nnx_module(tmp_path, monkeypatch):
    (tmp_path / "tiny_nnx_nets.py").write_text(NNX_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "tiny_nnx_nets:TinyPolicy"


def all_networks(nnx_path):
    return [
        CRLNetworks(3, 2, 2, repr_dim=8, actor_width=16, actor_depth=4, critic_width=16, critic_depth=0),
        MLPNetworks(3, 2, 2, repr_dim=8, actor_width=16, actor_depth=2, critic_width=8, critic_depth=1),
        MLPNetworks(3, 2, 2, actor_width=8, actor_depth=0, activation="relu", encoders=False),
        NNXNetworks(3, 2, 2, nnx_path, {"hidden": 12}),
    ]


def test_every_architecture_round_trips_and_counts_its_parameters(nnx_module):
    assert set(architectures()) >= {"residual", "mlp", "nnx"}
    for nets in all_networks(nnx_module):
        assert isinstance(nets, PolicyNetworks)
        d = json.loads(json.dumps(nets.to_dict()))
        assert d["arch"] == nets.arch and networks_from_dict(d) == nets
        params = nets.init(jax.random.PRNGKey(0))
        assert set(params) == ({"actor", "sa_encoder", "goal_encoder"} if nets.has_encoders else {"actor"})
        counted = {k: sum(a.size for a in jax.tree.leaves(v)) for k, v in params.items()}
        assert nets.num_params() == counted, nets
        s, g = jnp.ones((5, 3)), jnp.ones((5, 2))
        a = nets.deterministic_action(params["actor"], s, g)
        assert a.shape == (5, 2) and bool(jnp.all(jnp.abs(a) <= 1))
        assert nets.flops_per_action() > 0


def test_old_networks_json_without_arch_is_the_residual_mlp():
    nets = CRLNetworks(2, 2, 2, repr_dim=8, actor_width=16, actor_depth=4, critic_width=16, critic_depth=4)
    old = {k: v for k, v in nets.to_dict().items() if k != "arch"}
    assert networks_from_dict(old) == nets


def test_plain_mlp_closed_form_counts():
    n = MLPNetworks(2, 2, 2, repr_dim=4, actor_width=8, actor_depth=1, critic_width=8, critic_depth=1)
    # actor: (4 -> 8) + (8 -> 8) + (8 -> 4) Dense layers
    assert n.num_params()["actor"] == (4 * 8 + 8) + (8 * 8 + 8) + (8 * 4 + 4)
    assert n.flops_per_action() == 2 * (4 * 8 + 8 * 8 + 8 * 4)


def test_make_student_takes_the_teachers_sizes():
    t = CRLNetworks(5, 3, 2, repr_dim=12, actor_width=32, actor_depth=16, critic_width=32, critic_depth=16)
    r = make_student("residual", t, 4, 16)
    m = make_student("mlp", t, 1, 16, activation="tanh")
    assert (r.state_size, r.goal_size, r.action_size, r.repr_dim, r.actor_depth) == (5, 3, 2, 12, 4)
    assert (m.arch, m.repr_dim, m.actor_depth, m.activation) == ("mlp", 12, 1, "tanh")
    with pytest.raises(ValueError, match="--depth=3 is not a multiple of 4"):
        make_student("residual", t, 3, 16)


def write_random_run(run_dir: Path, nets, seed: int) -> Path:
    """A student run directory with random parameters for ``nets`` (point_maze sizes)."""
    spec = make_env("point_maze").spec
    params = jax.tree.map(lambda a: a + 0.1, nets.init(jax.random.PRNGKey(seed)))  # biases away from 0
    write_json_atomic(run_dir / "config.json", {"env": "point_maze", "seed": seed})
    write_json_atomic(run_dir / "env_spec.json", spec.to_dict())
    write_json_atomic(run_dir / "networks.json", nets.to_dict())
    write_run_info(run_dir, "student", env="point_maze")
    ckpt = Checkpointer(run_dir)
    ckpt.save(1, {"step": 1}, params, {"step": 1})
    ckpt.close()
    return run_dir


@pytest.mark.parametrize("kind", ["mlp", "mlp_policy_only", "nnx"])
def test_export_and_load_go_through_the_interface(kind, nnx_module, tmp_path):
    nets = {
        "mlp": MLPNetworks(2, 2, 2, repr_dim=8, actor_width=16, actor_depth=1, critic_width=16, critic_depth=1),
        "mlp_policy_only": MLPNetworks(2, 2, 2, actor_width=16, actor_depth=2, activation="relu", encoders=False),
        "nnx": NNXNetworks(2, 2, 2, nnx_module, {"hidden": 12}),
    }[kind]
    run = load_policy_run(write_random_run(tmp_path / "run", nets, 3), "student")
    assert run.nets == nets
    summary = export_run(ExportConfig(student=str(run.run_dir), out=str(tmp_path / "onnx"), parity_samples=32))
    assert set(summary) == ({"policy", "sa_encoder", "goal_encoder"} if nets.has_encoders else {"policy"})
    policy = OnnxPolicy(tmp_path / "onnx")
    s = np.random.default_rng(0).standard_normal((16, 2)).astype(np.float32)
    g = np.random.default_rng(1).standard_normal((16, 2)).astype(np.float32)
    np.testing.assert_allclose(policy.act(s, g), np.asarray(run.act(s, g)), atol=1e-5)
    arch = policy.metadata["architecture"]
    assert arch["arch"] == nets.arch and arch["networks"] == nets.to_dict()
    if kind == "mlp_policy_only":
        import onnx

        ops = {n.op_type for n in onnx.load(tmp_path / "onnx" / "policy.onnx").graph.node}
        assert "LayerNormalization" not in ops and "Gemm" in ops  # a plain MLP: Gemm + activation


def test_an_unimportable_nnx_module_is_a_clear_error(tmp_path):
    nets = NNXNetworks(2, 2, 2, "no_such_package_xyz:Policy")
    run_dir = tmp_path / "run"
    write_json_atomic(run_dir / "config.json", {"env": "point_maze"})
    write_json_atomic(run_dir / "env_spec.json", make_env("point_maze").spec.to_dict())
    write_json_atomic(run_dir / "networks.json", nets.to_dict())
    write_run_info(run_dir, "student", env="point_maze")
    with pytest.raises(UserError, match="cannot build its networks .*no_such_package_xyz.*PYTHONPATH"):
        load_policy_run(run_dir, "student", "--student")


# --- the error taxonomy of the command-line tools ----------------------------------------------------


def _cli(main_fn):
    code = f"""
import dataclasses
from deepdistill.core.cli import run_cli
from deepdistill.core.errors import ConfigError

@dataclasses.dataclass(frozen=True)
class Cfg:
    x: int = 0

def main(cfg):
{textwrap.indent(main_fn, '    ')}

run_cli("prog", Cfg, main, [])
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_a_user_error_is_one_line_and_exit_2():
    r = _cli('raise ConfigError("--x 3 is bad; use 2")')
    assert r.returncode == 2 and r.stderr.strip() == "prog: error: --x 3 is bad; use 2"


@pytest.mark.parametrize("exc", ["ValueError('internal')", "KeyError('k')", "RuntimeError('bug')"])
def test_any_other_exception_keeps_its_traceback(exc):
    r = _cli(f"raise {exc}")
    assert r.returncode == 1 and "Traceback (most recent call last)" in r.stderr


def test_deepdistill_subcommands_are_tyro(capsys):
    from deepdistill.pipeline import main

    main(["envs"])
    out = capsys.readouterr().out
    assert "point_maze" in out and "ant" in out
    with pytest.raises(SystemExit) as e:
        main(["nope"])
    assert e.value.code == 2


# --- the two private third-party APIs we use (see deepdistill/export/compat.py) ------------------------


def test_jax2onnx_plugin_shortcut_still_matches_upstream():
    """Fails loudly when jax2onnx renames its plugin registry flag (our fast import would then
    silently fall back to importing every plugin, equinox examples included)."""
    code = textwrap.dedent(
        """
        import sys
        from jax2onnx.plugins import plugin_system as ps
        assert hasattr(ps, "_already_imported_plugins"), "jax2onnx moved _already_imported_plugins"
        from deepdistill.export.compat import jax2onnx_converter
        to_onnx = jax2onnx_converter()
        assert ps._already_imported_plugins is True
        assert not any(m.startswith("jax2onnx.plugins.equinox") for m in sys.modules), "equinox plugins were imported"
        import jax.numpy as jnp
        model = to_onnx(lambda x: jnp.tanh(x @ jnp.ones((3, 2))), [("B", 3)], return_mode="proto")
        assert [n.op_type for n in model.graph.node][-1] == "Tanh"
        print("OK")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


def test_onnxruntime_bound_call_still_matches_upstream(tmp_path):
    """Fails loudly when onnxruntime moves the C++ session or the IOBinding handle."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from deepdistill.export.compat import bound_runner
    from deepdistill.export.runtime import session_options

    graph = helper.make_graph([helper.make_node("Tanh", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), session_options(1), providers=["CPUExecutionProvider"])
    assert hasattr(sess, "_sess") and hasattr(sess._sess, "run_with_iobinding"), "onnxruntime moved InferenceSession._sess"
    x, y = np.array([[0.5, -1.0, 2.0]], np.float32), np.zeros((1, 3), np.float32)
    binding = sess.io_binding()
    assert hasattr(binding, "_iobinding"), "onnxruntime moved IOBinding._iobinding"
    binding.bind_cpu_input("x", x)
    binding.bind_output("y", "cpu", 0, np.float32, [1, 3], y.ctypes.data)
    run = bound_runner(sess, binding)
    assert run.func == sess._sess.run_with_iobinding  # the fast path, not the fallback
    run()
    np.testing.assert_allclose(y, np.tanh(x), rtol=1e-6)
    del onnx
