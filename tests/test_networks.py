import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepdistill.student.residual import CRLNetworks, ResidualMLP


def count(params):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


@pytest.mark.parametrize("depth,width", [(0, 8), (4, 16), (12, 32)])
def test_param_count_matches_formula(depth, width):
    net = ResidualMLP(5, 7, width, depth)
    assert count(net.init(jax.random.PRNGKey(0))) == net.num_params()


def test_paper_param_counts():
    # RL1000: about 4.3M parameters per network at depth 64, width 256; 68M at depth 1024.
    assert ResidualMLP(31, 64, 256, 64).num_params() == pytest.approx(4.3e6, rel=0.03)
    assert ResidualMLP(31, 64, 256, 1024).num_params() == pytest.approx(68e6, rel=0.03)


def test_scan_over_blocks_equals_blocks_one_by_one():
    net = ResidualMLP(3, 4, 16, 12)
    p = net.init(jax.random.PRNGKey(1))
    x = jax.random.normal(jax.random.PRNGKey(2), (5, 3))
    scanned, unrolled = net.apply(p, x), net.apply(p, x, unroll=True)
    np.testing.assert_allclose(scanned, unrolled, atol=1e-6)
    # and by hand: input layer, then each block as x + f(x), then the head
    def dls(h, k, b, s, o):
        z = h @ k + b
        z = (z - z.mean(-1, keepdims=True)) / jnp.sqrt(z.var(-1, keepdims=True) + 1e-6) * s + o
        return z * jax.nn.sigmoid(z)
    i = p["input"]
    h = dls(x, i["kernel"], i["bias"], i["scale"], i["offset"])
    bl = p["blocks"]
    for blk in range(3):
        r = h
        for l in range(4):
            r = dls(r, bl["kernel"][blk, l], bl["bias"][blk, l], bl["scale"][blk, l], bl["offset"][blk, l])
        h = h + r
    manual = h @ p["output"]["kernel"] + p["output"]["bias"]
    np.testing.assert_allclose(scanned, manual, atol=2e-5)


@pytest.mark.slow
def test_remat_changes_nothing_but_memory():
    net, net_r = ResidualMLP(3, 2, 16, 8), ResidualMLP(3, 2, 16, 8, remat=True)
    p = net.init(jax.random.PRNGKey(0))
    x = jnp.ones((4, 3))
    g = jax.grad(lambda p: net.apply(p, x).sum())(p)
    g_r = jax.grad(lambda p: net_r.apply(p, x).sum())(p)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_r)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("depth", [3, 6, -4])
def test_depth_must_be_a_multiple_of_four(depth):
    with pytest.raises(ValueError, match="multiple of 4"):
        ResidualMLP(2, 2, 8, depth)


def test_crl_networks_shapes_and_action_range():
    nets = CRLNetworks(state_size=3, goal_size=2, action_size=2, repr_dim=8, actor_width=16, actor_depth=4,
                       critic_width=16, critic_depth=0)
    p = nets.init(jax.random.PRNGKey(0))
    s, g, a = jnp.ones((6, 3)), jnp.ones((6, 2)), jnp.zeros((6, 2))
    assert nets.phi(p["sa_encoder"], s, a).shape == (6, 8)
    assert nets.psi(p["goal_encoder"], g).shape == (6, 8)
    mean, log_std = nets.policy(p["actor"], s, 100 * g)
    assert mean.shape == (6, 2) and float(log_std.min()) >= -5 and float(log_std.max()) <= 2
    assert float(jnp.abs(nets.deterministic_action(p["actor"], s, g)).max()) <= 1


def test_compile_cost_does_not_grow_with_depth():
    """The traced program of a deep network has the size of a shallow one (scan over blocks)."""
    sizes = []
    for depth in (8, 256):
        net = ResidualMLP(4, 4, 8, depth)
        p = jax.eval_shape(net.init, jax.random.PRNGKey(0))
        jaxpr = jax.make_jaxpr(jax.grad(lambda p, x: net.apply(p, x).sum()))(p, jnp.ones((2, 4)))
        sizes.append(len(str(jaxpr)))
    assert sizes[1] < 1.05 * sizes[0]


# --- block options: same numbers as the plain scan ----------------------------------------------------

BLOCK_OPTIONS = [
    dict(block_unroll=2),  # 5 blocks: two unrolled iterations and a remainder
    dict(block_unroll=8),  # more than the blocks: one fully unrolled iteration
    dict(full_unroll_max_depth=20),  # Python loop, no scan
]


def _value_and_grads(net, p, x):
    return jax.value_and_grad(lambda p: jnp.sum(jnp.sin(net.apply(p, x))))(p)


@pytest.mark.slow
@pytest.mark.parametrize("remat", [False, True])
@pytest.mark.parametrize("opts", BLOCK_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_block_options_give_the_scans_values_and_gradients(opts, remat):
    base = ResidualMLP(3, 4, 16, 20, remat=remat)
    net = ResidualMLP(3, 4, 16, 20, remat=remat, **opts)
    p = base.init(jax.random.PRNGKey(3))
    x = jax.random.normal(jax.random.PRNGKey(4), (6, 3))
    np.testing.assert_allclose(net.apply(p, x), base.apply(p, x), rtol=1e-5, atol=1e-6)
    (v0, g0), (v1, g1) = _value_and_grads(base, p, x), _value_and_grads(net, p, x)
    np.testing.assert_allclose(v1, v0, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
        # float32 summation order differs between a scan and written-out blocks: each entry agrees to
        # 1e-4 of itself or 1e-6 of its array's largest entry (gradients here reach about 10)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * max(1.0, float(np.abs(b).max())))


def test_full_unroll_only_up_to_its_depth():
    """Up to ``full_unroll_max_depth`` the blocks are written out (one checkpointed call each, no
    scan); above it the scan stays, so the traced program stays flat in depth."""
    def primitives(depth):
        net = ResidualMLP(4, 4, 8, depth, full_unroll_max_depth=16)
        p = jax.eval_shape(net.init, jax.random.PRNGKey(0))
        eqns = jax.make_jaxpr(lambda p, x: net.apply(p, x))(p, jnp.ones((2, 4))).jaxpr.eqns
        return [e.primitive.name for e in eqns]

    assert primitives(16).count("remat2") == 4 and "scan" not in primitives(16)
    assert primitives(256).count("scan") == 1 and "remat2" not in primitives(256)


# bf16 products with f32 accumulation: outputs within bf16 rounding of float32 (8 mantissa bits,
# relative 2^-8 = 0.004 per product, a few of them compounded over 6 layers); stated tolerance 3e-2.
BF16_RTOL = 3e-2


@pytest.mark.slow
@pytest.mark.parametrize("remat", [False, True])
def test_bfloat16_matmuls_stay_within_bf16_rounding_of_float32(remat):
    base = ResidualMLP(5, 8, 32, 8, remat=remat)
    net = ResidualMLP(5, 8, 32, 8, remat=remat, matmul_dtype="bfloat16", block_unroll=2)
    p = base.init(jax.random.PRNGKey(5))
    x = jax.random.normal(jax.random.PRNGKey(6), (16, 5))
    y0, y1 = base.apply(p, x), net.apply(p, x)
    assert y1.dtype == jnp.float32
    assert 0 < float(jnp.max(jnp.abs(y1 - y0))) <= BF16_RTOL * float(jnp.max(jnp.abs(y0)))  # bf16 really used
    (v0, g0), (v1, g1) = _value_and_grads(base, p, x), _value_and_grads(net, p, x)
    np.testing.assert_allclose(v1, v0, rtol=BF16_RTOL)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
        assert a.dtype == jnp.float32
        # relative to the leaf's scale: single entries near zero have no meaningful relative error
        assert float(jnp.max(jnp.abs(a - b))) <= 0.1 * float(jnp.max(jnp.abs(b))) + 1e-6
        assert float(jnp.linalg.norm(a - b)) <= BF16_RTOL * float(jnp.linalg.norm(b)) + 1e-6


def test_bfloat16_product_is_a_float32_accumulation_of_bf16_inputs():
    from deepdistill.student.residual import dense

    x = jnp.array([[1.0 + 2**-10, 3.0]])  # 1 + 2^-10 is not representable in bf16: rounds to 1
    k = jnp.array([[1.0], [1.0]])
    assert float(dense(x, k, jnp.zeros(1))[0, 0]) == pytest.approx(4.0 + 2**-10, abs=0)
    assert float(dense(x, k, jnp.zeros(1), "bfloat16")[0, 0]) == 4.0


def test_old_networks_json_loads_with_todays_defaults():
    old = {"state_size": 3, "goal_size": 2, "action_size": 2, "repr_dim": 8, "actor_width": 16, "actor_depth": 4,
           "critic_width": 16, "critic_depth": 4, "remat": False}
    nets = CRLNetworks.from_dict(old)
    assert (nets.block_unroll, nets.full_unroll_max_depth, nets.matmul_dtype) == (1, 0, "float32")
    new = CRLNetworks.from_dict({**old, "block_unroll": 4, "matmul_dtype": "bfloat16"})
    assert new.actor.block_unroll == 4 and new.sa_encoder.matmul_dtype == "bfloat16"
    assert CRLNetworks.from_dict(new.to_dict()) == new


@pytest.mark.parametrize("bad,needle", [(dict(block_unroll=0), "--block-unroll"),
                                         (dict(matmul_dtype="float16"), "--matmul-dtype"),
                                         (dict(full_unroll_max_depth=-4), "--full-unroll-max-depth")])
def test_bad_block_options_are_refused(bad, needle):
    with pytest.raises(ValueError, match=needle):
        ResidualMLP(2, 2, 8, 4, **bad)
