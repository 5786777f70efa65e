"""Conformance over the registries: every architecture and every task is checked by these tests, so a
new one (built in, an installed plugin, or ``module:Class``) needs no new test.

Architectures (``deepdistill.student.architectures()`` plus the example kept outside the package):
JSON round trip, parameter and FLOP counts, ``describe()`` keys, output shapes and ranges, a
checkpoint round trip through a run folder, and the ONNX export's parity with the JAX model.

Tasks (``deepdistill.envs.builtin_envs()``): reset and step shapes, the observation layout, the
success flag, and a fresh goal at every reset (per key and per split); the generic automatic resets of
training collection and of evaluation draw fresh goals too.
"""

import json
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepdistill.core.checkpoint import Checkpointer
from deepdistill.core.heads import LOG_STD_MAX, LOG_STD_MIN
from deepdistill.core.rundir import write_json_atomic, write_run_info
from deepdistill.envs import builtin_envs, make_env
from deepdistill.student import Interface, NNXNetworks, PolicyNetworks, Size, architectures, build_student, get_architecture, networks_from_dict
from deepdistill.student.policy import load_policy_run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "custom_student"))  # tanh_mlp: an architecture outside the package

OUTSIDE = ("tanh_mlp:TanhMLPNetworks",)
ARCHS = sorted(set(architectures()) | set(OUTSIDE))
TASKS = builtin_envs()
NNX_MODULE = textwrap.dedent(
    """
    from flax import nnx

    class Tiny(nnx.Module):
        def __init__(self, in_dim, out_dim, rngs, hidden=12):
            self.l1 = nnx.Linear(in_dim, hidden, rngs=rngs)
            self.l2 = nnx.Linear(hidden, out_dim, rngs=rngs)

        def __call__(self, x):
            return self.l2(nnx.tanh(self.l1(x)))
    """
)


@pytest.fixture(scope="module")
def nnx_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nnx_module")
    (folder / "conformance_nnx.py").write_text(NNX_MODULE)
    sys.path.insert(0, str(folder))
    return "conformance_nnx:Tiny"


def networks_of(arch: str, spec, nnx_path: str) -> PolicyNetworks:
    """``arch`` at a small size for ``spec``: its own builder, or (``nnx``: no builder) a tiny module."""
    if get_architecture(arch).build is None:
        assert arch == "nnx", f"{arch} has no build method: add how to make one here"
        return NNXNetworks.for_task(spec, nnx_path, sa_module=nnx_path, goal_module=nnx_path, repr_dim=8)
    return build_student(arch, Interface(spec.state_size, spec.goal_size, spec.action_size, repr_dim=8), Size(depth=4, width=16))


def random_params(nets, seed: int):
    """Fresh parameters moved away from their initial values (biases 0, scales 1), with numpy noise."""
    rng = np.random.default_rng(seed)
    params = nets.init(jax.random.PRNGKey(seed))
    return jax.tree.map(lambda a: np.asarray(a + 0.1 * rng.standard_normal(a.shape), np.float32), params)


def write_run(run_dir: Path, nets, params, spec) -> Path:
    """A student run folder in the layout ``distill`` writes."""
    write_json_atomic(run_dir / "config.json", {"env": spec.name, "seed": 0})
    write_json_atomic(run_dir / "env_spec.json", spec.to_dict())
    write_json_atomic(run_dir / "networks.json", nets.to_dict())
    write_run_info(run_dir, "student", env=spec.name)
    ckpt = Checkpointer(run_dir)
    ckpt.save(7, {"step": 7}, params, {"step": 7})
    ckpt.close()
    return run_dir


# --- architectures ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_architecture_round_trips_counts_and_shapes(arch, nnx_path):
    spec = make_env("point_maze").spec
    nets = networks_of(arch, spec, nnx_path)
    assert isinstance(nets, PolicyNetworks)
    d = json.loads(json.dumps(nets.to_dict()))
    assert d["arch"] == arch and networks_from_dict(d) == nets  # the name it was built by is what later stages load
    described = json.loads(json.dumps(nets.describe()))
    assert described["arch"] == nets.arch
    names = ("actor", "sa_encoder", "goal_encoder") if nets.has_encoders else ("actor",)
    params = nets.init(jax.random.PRNGKey(0))
    assert set(params) == set(names)
    counted = {k: int(sum(a.size for a in jax.tree.leaves(v))) for k, v in params.items()}
    assert nets.num_params() == counted
    for name in names:
        net = nets.network(name)
        assert net.num_params() == counted[name] and net.flops_per_sample() > 0
    assert nets.flops_per_action() == nets.network("actor").flops_per_sample()
    B, S, G, A = 5, spec.state_size, spec.goal_size, spec.action_size
    rng = np.random.default_rng(1)
    s, g = jnp.asarray(3 * rng.standard_normal((B, S)), jnp.float32), jnp.asarray(3 * rng.standard_normal((B, G)), jnp.float32)
    mean, log_std = nets.policy(params["actor"], s, g)
    assert mean.shape == log_std.shape == (B, A)
    assert bool(jnp.all((log_std >= LOG_STD_MIN - 1e-6) & (log_std <= LOG_STD_MAX + 1e-6)))
    a = nets.deterministic_action(params["actor"], s, g)
    np.testing.assert_allclose(a, jnp.tanh(mean), atol=1e-6)
    if nets.has_encoders:
        assert nets.phi(params["sa_encoder"], s, a).shape == (B, 8) and nets.psi(params["goal_encoder"], g).shape == (B, 8)


@pytest.mark.parametrize("arch", ARCHS)
def test_architecture_checkpoint_round_trip_and_export_parity(arch, nnx_path, tmp_path):
    from deepdistill.export.config import ExportConfig
    from deepdistill.export.runtime import OnnxPolicy
    from deepdistill.export.writer import export_run

    spec = make_env("point_maze").spec
    nets = networks_of(arch, spec, nnx_path)
    params = random_params(nets, 3)
    run = load_policy_run(write_run(tmp_path / "run", nets, params, spec), "student")
    assert run.nets == nets and run.step == 7
    for saved, loaded in zip(jax.tree.leaves(params), jax.tree.leaves(run.params)):
        np.testing.assert_array_equal(saved, np.asarray(loaded))
    summary = export_run(ExportConfig(student=str(run.run_dir), out=str(tmp_path / "onnx"), parity_samples=32,
                                      parity_env_steps=2))
    assert set(summary) >= ({"policy", "sa_encoder", "goal_encoder"} if nets.has_encoders else {"policy"})
    policy = OnnxPolicy(tmp_path / "onnx")
    assert policy.metadata["architecture"]["networks"] == nets.to_dict()
    rng = np.random.default_rng(4)
    s = rng.standard_normal((16, spec.state_size)).astype(np.float32)
    g = rng.standard_normal((16, spec.goal_size)).astype(np.float32)
    np.testing.assert_allclose(policy.act(s, g), np.asarray(run.act(s, g)), atol=1e-5)


# --- tasks -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TASKS)
def test_task_reset_and_step_shapes(name, task_probe):
    p = task_probe(name)
    spec, obs, s0 = p["env"].spec, p["obs"], p["s0"]
    S, G, T, B = spec.state_size, spec.goal_size, p["T"], len(p["roles"])
    assert spec.name == name and spec.obs_size == S + G and len(spec.goal_indices) == G
    assert all(0 <= i < S for i in spec.goal_indices) and spec.action_low < spec.action_high
    assert s0.obs.shape == (B, S + G) and obs.shape == (T, B, S + G)
    assert np.isfinite(obs).all() and np.isfinite(s0.obs).all()
    np.testing.assert_array_equal(s0.obs[:, S:], s0.info["goal"])  # the goal is the end of the observation
    np.testing.assert_allclose(p["distance"], np.linalg.norm(obs[..., list(spec.goal_indices)] - obs[..., S:], axis=-1), atol=1e-4)
    np.testing.assert_array_equal(p["success"], (p["distance"] < spec.success_threshold).astype(np.float32))
    assert not np.allclose(obs[-1, :, :S], s0.obs[:, :S]), "the robot never moved under random actions"


@pytest.mark.parametrize("name", TASKS)
def test_every_reset_draws_a_fresh_goal_in_every_split(name, task_probe):
    """Resets with different keys draw different goals, in training and in every evaluation split, and
    the goal is not the start (a task whose ``_reset`` returns its values in another order fails here)."""
    p = task_probe(name)
    spec = p["env"].spec
    S = spec.state_size
    assert set(p["split_obs"]) == {"train", *spec.eval_splits}
    for split, obs in p["split_obs"].items():
        goals = obs[:, S:]
        n = len(goals)
        distinct = {tuple(np.round(g, 5)) for g in goals}
        assert len(distinct) == n, f"{name} {split}: {n - len(distinct)} repeated goals in {n} resets"
        start = obs[:, list(spec.goal_indices)]
        assert np.all(np.linalg.norm(start - goals, axis=-1) > 1e-4), f"{name} {split}: a goal equals its start"


def test_training_collection_resets_draw_fresh_goals():
    """The automatic reset of training collection (``core.epoch.collect``, used by every stage) starts each
    new episode from fresh keys: every environment's goal changes at every episode boundary."""
    from deepdistill.core import replay as rb
    from deepdistill.core.epoch import collect

    env = make_env("point_maze", episode_length=4)
    E, S, A = 6, env.spec.state_size, env.spec.action_size
    replay = rb.init_replay(12, E, env.spec.obs_size, A)
    act = lambda obs, k: (jax.random.uniform(k, (obs.shape[0], A), minval=-1.0, maxval=1.0), None)  # noqa: E731

    @jax.jit
    def run(key):
        s, r = jax.vmap(env.reset)(jax.random.split(key, E)), replay
        for k in jax.random.split(key, 3):  # three episodes of 4 steps, two per collect call
            s, r, _, _ = collect(env, s, r, k, act, 2)
            s, r, _, _ = collect(env, s, r, jax.random.fold_in(k, 1), act, 2)
        return r

    r = run(jax.random.PRNGKey(0))
    goals = np.asarray(r.states)[:, :, S:].reshape(3, 4, E, -1)  # [episode, step, env, G]
    np.testing.assert_array_equal(goals, np.broadcast_to(goals[:, :1], goals.shape))  # fixed within an episode
    for e in range(2):
        assert np.all(np.linalg.norm(goals[e + 1, 0] - goals[e, 0], axis=-1) > 1e-4), f"episode {e + 1} reused goals"


def test_evaluation_episodes_draw_fresh_goals():
    """Evaluation (``core.rollout``) starts every episode with its own reset: no two episodes share a goal."""
    from deepdistill.core.rollout import rollout

    env = make_env("point_maze")
    for split in env.spec.eval_splits:
        out = jax.jit(lambda k, sp=split: rollout(env, lambda p, s, g: jnp.zeros((s.shape[0], 2)), None, k, 16, sp))(
            jax.random.PRNGKey(5))
        goals = np.asarray(out["goals"])
        assert len({tuple(np.round(g, 5)) for g in goals}) == len(goals), split
