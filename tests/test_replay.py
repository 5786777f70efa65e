import jax
import jax.numpy as jnp
import numpy as np

from deepdistill.core import replay as rb


def test_truncated_geometric_matches_its_distribution():
    u = jax.random.uniform(jax.random.PRNGKey(0), (200_000,))
    k = np.asarray(rb.truncated_geometric(u, 0.9, jnp.full(u.shape, 5)))
    assert k.min() == 1 and k.max() == 5
    p = 0.9 ** np.arange(5)
    np.testing.assert_allclose(np.bincount(k)[1:] / len(k), p / p.sum(), atol=0.005)


def test_future_goals_come_from_the_same_episode_and_later():
    L, E, cap = 10, 3, 30
    r = rb.init_replay(cap, E, 2, 1)
    # state = (logical time, env id); written in chunks of 5 steps, 8 chunks -> wraps the ring
    for c in range(8):
        t = np.arange(c * 5, c * 5 + 5)
        states = np.stack(np.broadcast_arrays(t[:, None], np.arange(E)[None, :]), -1).astype(np.float32)
        r = rb.insert(r, jnp.asarray(states), jnp.asarray(states[..., :1]))
    assert int(r.written) == 40
    b = rb.sample(r, jax.random.PRNGKey(1), 4096, L, 0.9, (0, 1))
    t, env = np.asarray(b["state"][:, 0]), np.asarray(b["state"][:, 1])
    ft, fenv = np.asarray(b["future_goal"][:, 0]), np.asarray(b["future_goal"][:, 1])
    assert t.min() >= 40 - cap and t.max() <= 38  # only what is still stored; the last step has no future
    assert np.all(fenv == env) and np.all(ft > t)
    assert np.all(ft // L == t // L)  # never crosses into the next episode
    np.testing.assert_array_equal(np.asarray(b["action"][:, 0]), t)
    assert np.mean(ft - t == 1) > np.mean(ft - t == 3)  # geometric: near futures are likelier
