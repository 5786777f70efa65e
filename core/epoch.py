"""The compiled epoch shell every training stage shares, and its sharding over devices.

One epoch is one compiled call: ``lax.scan`` over iterations of (collect ``unroll_length`` steps of
every environment, insert them into the trajectory replay, ``sgd_per_iter`` SGD steps). A stage
supplies its action function (who acts, and what is stored) and its SGD step; the shell owns the
episode resets, the insertion, the key splitting and the scans.

Data parallelism: a 1-D device mesh ``("data",)`` over every device of every process (see
:mod:`deepdistill.core.distributed`; each process steps the environments of its own devices). Parameters and optimiser states are replicated;
environments and the replay buffer are split along the environment axis, and XLA (GSPMD)
partitions the rest, so one device and many give the same numbers up to float reduction order.
A stage's state is any ``flax.struct`` dataclass with the fields ``env_state``, ``replay`` and
``key``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from deepdistill.core import replay as rb

if TYPE_CHECKING:
    from deepdistill.envs.base import GoalEnv

# act(obs [E, S + G], key) -> (action [E, A], aux): aux is stacked over the unroll and returned
ActFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, Any]]


def collect(env: "GoalEnv", env_state: Any, replay: rb.Replay, key: jax.Array, act: ActFn, unroll_length: int,
            store: Callable[[jax.Array], jax.Array] = lambda obs: obs, memory: Optional[jax.Array] = None
            ) -> tuple[Any, rb.Replay, Any, Optional[jax.Array]]:
    """``unroll_length`` steps of every environment; the rows ``store(obs)`` and the actions go into
    ``replay``. Every environment starts a new episode when the replay is at an episode boundary
    (episodes are fixed-length and synchronised). Returns ``(env_state, replay, aux [U, ...], memory)``.

    ``memory``: the hidden state ``[E, H]`` of a recurrent policy (None: a memoryless one). With it,
    ``act(obs, key, memory) -> (action, aux, memory)``, the memory is zeroed when the episodes start,
    and each stored row is ``store(obs)`` followed by the memory *before* that step (where truncated
    backpropagation through time restarts from)."""
    num_envs = replay.states.shape[1]
    k_reset, k_act = jax.random.split(key)
    new_episode = replay.written % env.spec.episode_length == 0
    env_state = jax.lax.cond(
        new_episode,
        lambda: jax.vmap(env.reset)(jax.random.split(k_reset, num_envs)),
        lambda: env_state,
    )
    if memory is None:
        def step(s, k):
            action, aux = act(s.obs, k)
            return jax.vmap(env.step)(s, action), (store(s.obs), action, aux)

        env_state, (rows, actions, aux) = jax.lax.scan(step, env_state, jax.random.split(k_act, unroll_length))
        return env_state, rb.insert(replay, rows, actions), aux, None

    def step_m(sm, k):
        s, m = sm
        action, aux, m2 = act(s.obs, k, m)
        return (jax.vmap(env.step)(s, action), m2), (jnp.concatenate([store(s.obs), m], -1), action, aux)

    memory = jnp.where(new_episode, jnp.zeros_like(memory), memory)
    (env_state, memory), (rows, actions, aux) = jax.lax.scan(step_m, (env_state, memory),
                                                             jax.random.split(k_act, unroll_length))
    return env_state, rb.insert(replay, rows, actions), aux, memory


def make_epoch(collect_fn: Callable[..., Any], sgd_step: Callable[..., tuple[Any, dict]], iters: int,
               sgd_per_iter: int) -> Callable[..., tuple[Any, dict]]:
    """``epoch(state, *frozen) -> (state, mean metrics)``: ``iters`` x (``collect_fn(state, key,
    *frozen)``, then ``sgd_per_iter`` x ``sgd_step(state, key, *frozen)``). ``frozen`` holds what the
    epoch reads but never updates (distillation: the teacher's parameters)."""

    def epoch(state, *frozen):
        def iteration(st, _):
            key, k_collect, k_sgd = jax.random.split(st.key, 3)
            st = collect_fn(st.replace(key=key), k_collect, *frozen)
            return jax.lax.scan(lambda s, k: sgd_step(s, k, *frozen), st, jax.random.split(k_sgd, sgd_per_iter))

        state, metrics = jax.lax.scan(iteration, state, None, length=iters)
        return state, jax.tree.map(jnp.mean, metrics)

    return epoch


def replay_capacity(requested: int, episode_length: int, minimum: int) -> int:
    """Replay capacity in time steps per environment: whole episodes, at least ``minimum`` steps and
    at least one episode more than ``minimum`` needs (so a full episode is always sampleable)."""
    cap = max(requested, minimum + episode_length)
    return -(-cap // episode_length) * episode_length


class DataParallel:
    """A 1-D ``("data",)`` mesh over ``devices`` and the shardings of a stage's state on it."""

    def __init__(self, devices: Sequence[jax.Device] | None = None):
        self.devices = list(devices if devices is not None else jax.devices())
        self.mesh = jax.make_mesh((len(self.devices),), ("data",), axis_types=(AxisType.Auto,), devices=self.devices)
        self.replicated = NamedSharding(self.mesh, P())

    @property
    def size(self) -> int:
        return len(self.devices)

    def replicate(self, tree: Any) -> Any:
        """Host values (numpy, or arrays of one process) as arrays replicated over the mesh: every
        process passes the same values, and holds them on its own devices."""
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(self.replicated, np.asarray(x)), tree)

    def state_shardings(self, abstract_state: Any) -> Any:
        """Environments and the replay split along the environment axis; everything else replicated."""
        by_env = NamedSharding(self.mesh, P("data"))
        by_env_t = NamedSharding(self.mesh, P(None, "data"))
        shard = jax.tree.map(lambda _: self.replicated, abstract_state)
        return shard.replace(
            env_state=jax.tree.map(lambda a: by_env if a.ndim else self.replicated, abstract_state.env_state),
            replay=abstract_state.replay.replace(states=by_env_t, actions=by_env_t, written=self.replicated),
        )

    def compile(self, init: Callable[[jax.Array], Any], epoch: Callable[..., Any], prefill: Callable[..., Any],
                num_frozen: int = 0) -> tuple[Any, Any, Callable, Callable, Callable]:
        """Jit ``init(key)``, ``epoch(state, *frozen)`` and ``prefill(state, *frozen)`` with the state
        sharded and donated, the ``num_frozen`` extra arguments replicated. Returns
        ``(shardings, abstract_state, init, epoch, prefill)``."""
        abstract = jax.eval_shape(init, jax.random.PRNGKey(0))
        shardings = self.state_shardings(abstract)
        abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
        frozen = (self.replicated,) * num_frozen
        init_c = jax.jit(init, out_shardings=shardings)
        epoch_c = jax.jit(epoch, in_shardings=(shardings, *frozen), out_shardings=(shardings, None), donate_argnums=0)
        prefill_c = jax.jit(prefill, in_shardings=(shardings, *frozen), out_shardings=shardings, donate_argnums=0)
        return shardings, abstract, init_c, epoch_c, prefill_c
