import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepdistill.teacher.networks import CRLNetworks, ResidualMLP


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
