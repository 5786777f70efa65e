"""One compiled probe per task, shared by every test of the session (conftest.py's ``task_probe``).

Compiling MJX physics takes seconds per function on the CPU, so each task compiles one program
(resets of every split, a goal override, ``T`` steps) with XLA's cheap optimisation level, and the
shape, goal, wall, solvability and conformance checks all read its arrays.
"""

import jax
import jax.numpy as jnp
import numpy as np

from deepdistill.envs import make_env
from deepdistill.envs.brax_tasks import ARM_STEP

FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
N_RANDOM, N_AT_GOAL, N_SCRIPTED, N_PUSH = 2, 2, 2, 8
PUSH_SPEED = 2.0  # m/s, re-imposed on the torso every step


def jit(f):
    return jax.jit(f, compiler_options=FAST)


def wall_pushes(maze, n):
    """``n`` (start cell, unit (x, y) direction) pairs: free cells next to a wall, pushed into it."""
    out = []
    free = sorted((tuple(int(v) for v in c) for c in np.argwhere(~maze.walls)), key=lambda c: (c != maze.start_cell, c))
    for r, c in free:
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            if maze.walls[r + dr, c + dc]:
                out.append(((r, c), (dr, dc)))  # rows run along x, columns along y
    return [out[int(i)] for i in np.linspace(0, len(out) - 1, n)]


def arm_script(obs, t, S):
    """Pick and place: above the cube, down, close, up over the bin walls, across, down, open."""
    cube, goal, hand = obs[:3], obs[S:], obs[10:13]
    above_cube, above_goal, place = cube.at[2].set(0.15), goal.at[2].set(0.15), goal + jnp.array([0.0, 0.0, 0.01])
    target = jnp.select([t < 20, t < 40, t < 60, t < 90, t < 100], [above_cube, cube, above_cube, above_goal, place], place)
    grip = jnp.where((t >= 30) & (t < 100), 1.0, -1.0)
    return jnp.concatenate([jnp.clip((target - hand) / ARM_STEP, -1.0, 1.0), grip[None]])


def _shove(ps, push, xy, vel, first):
    """Teleport the root to ``xy`` (at the first step) and set its (x, y) velocity (an MJX state)."""
    q = jnp.where(push & first, ps.q.at[:2].set(xy), ps.q)
    return ps.replace(q=q, qd=jnp.where(push, ps.qd.at[:2].set(vel), ps.qd))


def run_probe(name):
    """One compiled program per task, shared by every check of every test file (a session fixture in
    conftest.py): reset a batch in every split and run the training resets ``T`` steps.

    Envs by role: ``random`` keep their sampled goal and act at random; ``at_goal`` get the goal
    coordinates of their start state as goal and act with zeros; ``scripted`` (arm tasks) run a
    pick-and-place script; ``push`` (maze tasks) are teleported next to a wall and shoved into it
    every step. Returns numpy arrays: per step the observation, success, distance, done, the action
    applied and (MJX tasks) the MJX state's ``q``, ``qd``, ``ctrl`` after the step."""
    arm = name.startswith("arm")
    T = 120 if arm else 40
    env = make_env(name, episode_length=T)
    maze_task = getattr(env, "maze", None) is not None and env.spec.backend == "mjx"
    S, A = env.spec.state_size, env.spec.action_size
    roles = ["random"] * N_RANDOM + ["at_goal"] * N_AT_GOAL + ["scripted"] * (N_SCRIPTED if arm else 0)
    starts = dirs = np.zeros((0, 2), np.float32)
    if maze_task:
        assert env.spec.backend == "mjx"  # _shove edits MJX state
        pushes = wall_pushes(env.maze, N_PUSH)
        starts = np.array([env.maze.cell_center(np.array(c)) for c, _ in pushes], np.float32)
        dirs = np.array([d for _, d in pushes], np.float32)
        roles += ["push"] * N_PUSH
    B = len(roles)
    role = {r: jnp.asarray([x == r for x in roles]) for r in ("random", "at_goal", "scripted", "push")}
    xy = jnp.zeros((B, 2)).at[B - len(starts) :].set(starts)
    vel = jnp.zeros((B, 2)).at[B - len(dirs) :].set(PUSH_SPEED * dirs)

    def probe(keys):
        # every evaluation split, reset with the same keys (goals must differ across keys, in every split)
        splits = {split: jax.vmap(lambda k, sp=split: env.reset_split(k, sp))(keys).obs for split in env.spec.eval_splits}
        s0 = jax.vmap(env.reset)(keys)
        goal = jnp.where(role["at_goal"][:, None], env.goal_of(s0.obs[:, :S]), s0.info["goal"])
        s = s0.replace(obs=s0.obs.at[:, S:].set(goal), info={**s0.info, "goal": goal})
        noise = jax.random.uniform(jax.random.PRNGKey(1), (T, B, A), minval=-1.0, maxval=1.0)

        def one(s, a, t, random, scripted, push, xy, vel):
            a = jnp.where(random, a, jnp.where(scripted, arm_script(s.obs, t, S) if arm else 0.0, 0.0))
            if maze_task:
                s = s.replace(pipeline_state=_shove(s.pipeline_state, push, xy, vel, t == 0))
            s = env.step(s, a)
            mjx = {k: getattr(s.pipeline_state, k) for k in ("q", "qd", "ctrl")} if env.spec.backend == "mjx" else {}
            return s, (s.obs, s.metrics["success"], s.metrics["distance"], s.done, a, mjx)

        def body(s, x):
            a, t = x
            return jax.vmap(one, in_axes=(0, 0, None, 0, 0, 0, 0, 0))(
                s, a, t, role["random"], role["scripted"], role["push"], xy, vel)

        _, traj = jax.lax.scan(body, s, (noise, jnp.arange(T)))
        return s0, traj, splits

    s0, traj, splits = jax.device_get(jit(probe)(jax.random.split(jax.random.PRNGKey(0), B)))
    obs, success, distance, done, actions, mjx = traj
    return dict(env=env, roles=np.array(roles), s0=s0, obs=obs, success=success, distance=distance, done=done,
                actions=actions, mjx=mjx, starts=starts, dirs=dirs, T=T, split_obs={"train": s0.obs, **splits})
