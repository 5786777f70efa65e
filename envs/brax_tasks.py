"""The RL1000 paper's goal-reaching tasks on Brax / MJX physics (our wrappers; no ``jaxgcrl``).

Every task is a :class:`GoalEnv`: the observation is the robot state followed by the goal, the goal
lives in ``state[goal_indices]``, episodes have a fixed length and never end early (a fallen ant or
humanoid keeps going until the episode ends). Goals are kept in ``State.info``, not in the physics.

Tasks (registered at the bottom of this module):

- ``ant``: brax's ant; the goal is a point on a circle of radius 10 around the start; goal = torso
  (x, y). State 29 = qpos (15: torso x y z, quaternion, 8 joints) + qvel (14), as in the paper.
- ``ant_u4_maze``, ``ant_u5_maze``, ``ant_big_maze``, ``ant_hardest_maze``: the ant in a maze of
  wall boxes added to its MJCF from a layout grid (:mod:`deepdistill.envs.mazes`, cell size
  4). Goals are drawn uniformly over the layout's goal cells, then jittered uniformly within
  +-``goal_jitter`` (default a quarter cell) of the cell centre; the ``far`` evaluation split keeps
  only the far goal cells. Differences from the reference: the torso sphere collides with the
  walls as well as the feet (in the reference only the feet do, so the torso could straddle a
  wall), and a broad phase skips the walls out of reach (the mazes step as fast as the open ant).
- ``humanoid``: brax's humanoid; the goal is at a distance drawn from U(1, 5) in a uniform
  direction, at torso height 1.25 (standing); goal = torso (x, y, z). ``humanoid_u_maze``,
  ``humanoid_big_maze``: the same in a maze of cell size 2. The feet and two massless spheres on the
  torso and pelvis collide with the walls, which are 2 m high (the reference's 1 m is lower than
  the torso, which could topple over).
  State 246 = qpos (24) + qvel (23) + per-body centre-of-mass inertia (11 x 10) and velocity
  (11 x 6) + actuator joint forces (23): on MJX MuJoCo's own ``cinert``, ``cvel`` and
  ``qfrc_actuator`` (as gym's humanoid), which a native controller reads the same way. The paper's 268 also counts a target body that
  the reference puts into the physics (2 slide joints and one more body): its entries repeat the
  goal inside the state, which we leave out.
- ``arm_push_easy``, ``arm_push_hard``, ``arm_binpick_hard``: our own compact scene
  (``assets/arm.xml``), not the paper's Franka Panda (no suitable arm ships with brax). A
  gravity-compensated Cartesian gripper (x, y, z slide joints under position servos, two slide
  fingers) above a table moves a free 4 cm cube. Action (4): a displacement of the gripper of at
  most 5 cm per step along x, y, z, and the finger closure (-1 open, +1 closed). State 17 = cube
  position (3), cube quaternion (4), cube linear velocity (3), gripper position (3), gripper
  velocity (3), finger opening (1); goal = cube position (state [0:3]); success within 0.1.
  ``push_easy``: cube and goal in adjacent 20 cm squares; ``push_hard``: 40 cm squares;
  ``binpick_hard``: the cube starts in one bin (6 cm walls) and must be lifted into the other
  (goal on the other bin's floor). The paper's arm differs: a 7-DoF Panda commanded by 4 joint
  angle targets and a binary gripper, a state of joint angles, end-effector and finger readings
  (17 entries in the paper's table, 18 in the reference code) and 150-step episodes in the
  reference code. Our gripper passes through the floor and bin walls (only the cube collides with
  them); the hand, fingers and cube are simple boxes.
- Every MJX task declares its controller contract next to it (``_declare``: the observation recipe
  and the action map of :mod:`deepdistill.envs.recipe`, and ``episode_distribution``): the env
  builds its observations and controls from that declaration, and the exporter writes it, with the
  task's MJCF (``physics.xml``), for a native MuJoCo controller. After every action the observation
  is read from the propagated new state (kinematics and com quantities of the new ``qpos, qvel``),
  the state ``mj_forward`` gives native MuJoCo.
- ``reacher``, ``pusher``: brax's reacher and pusher as cheap goal-conditioned sanity checks.
  Reacher state 10 = cos, sin of the 2 joints, fingertip position (3, the goal entries [4:7]) and
  velocity (3; on MJX the fingertip point's world velocity, on brax's own pipelines brax's formula); the goal is a point within 0.2 of the base, success within 0.05. Pusher state 20 =
  7 joint angles, fingertip position, object position (the goal entries [10:13]), 7 joint
  velocities; the goal is drawn over the reference's "easy" region, success within 0.1.

Physics pipelines were chosen by measurement on the project's 2-core CPU (1,024 envs, see
``benchmarks/env_throughput.py`` and BENCHMARKS.md); each task's choice is in its registry
description and ``spec.backend``.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Optional

import flax.struct
import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from brax import actuator as brax_actuator
from brax import base as brax_base
from brax.generalized import pipeline as generalized_pipeline
from brax.io import mjcf
from brax.mjx import pipeline as mjx_pipeline
from brax.positional import pipeline as positional_pipeline
from brax.spring import pipeline as spring_pipeline
from mujoco import mjx

from deepdistill.envs.recipe import ActionMap, CompiledRecipe, Recipe
from deepdistill.envs import register
from deepdistill.envs.base import EnvSpec, GoalEnv
from deepdistill.envs.observation import ObsTerm, declare_terms
from deepdistill.envs.mazes import LAYOUTS, Maze, max_geom_pairs, parse, touchable_wall_cells, wall_geoms_xml

# brax's mjcf loader warns on every load that its own pipelines are not maintained; we choose the
# pipeline per task by measurement (MJX for most), so the notice only adds noise to every command.
warnings.filterwarnings("ignore", message="Brax System, piplines and environments are not actively being maintained")

ASSETS = Path(__file__).parent / "assets"
BRAX_ASSETS = Path(mjcf.__file__).parent.parent / "envs" / "assets"
BACKENDS = ("mjx", "spring", "positional", "generalized")
EPISODE_LENGTH = 1000
CONTACT_SOLVER = (4, 8)
"""MJX Newton (iterations, line-search iterations) of the tasks with contacts. brax's own ant and
humanoid use one iteration, which leaves the contact solve unconverged; an unconverged solve is
implementation-defined, and MJX and MuJoCo's C engine then disagree: with a random policy on
ant_u4_maze a joint velocity differed by 14 rad/s within 10 steps (one step at a foot's touchdown
differed by 4.9). With 4 iterations the largest gap over those steps is 7.5e-5 of the observation's
scale, so a policy trained in MJX meets the same physics in native MuJoCo."""

_PIPELINES = {
    "mjx": mjx_pipeline,
    "spring": spring_pipeline,
    "positional": positional_pipeline,
    "generalized": generalized_pipeline,
}


# --- physics ------------------------------------------------------------------------------------


@flax.struct.dataclass
class MjxState:
    """The part of an MJX simulation that carries over between steps, plus the body poses.

    ``mjx.step`` recomputes every derived quantity (kinematics, contacts, constraints) from
    ``q, qd`` before integrating; only the controls and the solver's warm start carry over. Keeping
    just these (instead of brax's full ``mjx.Data``: 10-100 KB per env, with zero-size arrays that
    Orbax refuses to checkpoint) keeps the training state small. ``x``, ``xd`` are the bodies' world
    poses and velocities (brax convention, world body excluded)."""

    q: jax.Array
    qd: jax.Array
    x: brax_base.Transform
    xd: brax_base.Motion
    ctrl: jax.Array
    qacc_warmstart: jax.Array


class Physics:
    """A brax ``System`` stepped ``n_frames`` times per environment step by one pipeline.

    ``mjx`` states are :class:`MjxState`; the other pipelines keep brax's own state."""

    def __init__(self, sys: brax_base.System, backend: str, n_frames: int, xml: Optional[str] = None):
        if backend not in _PIPELINES:
            raise ValueError(f"unknown physics backend {backend!r}; choose one of {BACKENDS}")
        self.sys, self.backend, self.n_frames = sys, backend, int(n_frames)
        self.xml = xml
        """The MJCF the model was compiled from (MJX: solver options included), as exported in task.xml."""
        self._pipeline = _PIPELINES[backend]
        self._needs_actuation = False

    def observe_with(self, recipe: Recipe) -> None:
        """Also compute actuator forces in :meth:`init_data`/:meth:`step_data` when ``recipe`` reads them."""
        self._needs_actuation = recipe.needs_actuation

    @property
    def dt(self) -> float:
        return float(self.sys.opt.timestep) * self.n_frames

    def init(self, q: jax.Array, qd: jax.Array) -> Any:
        if self.backend != "mjx":
            return self._pipeline.init(self.sys, q, qd)
        # Kinematics only: brax's init runs a full mjx.forward (contacts, constraint solver), half
        # of the compile time of a reset + step, whose results the first mjx.step recomputes.
        data = mjx.make_data(self.sys).replace(qpos=q, qvel=qd)
        return self._compact(mjx.com_vel(self.sys, mjx.com_pos(self.sys, mjx.kinematics(self.sys, data))))

    def step(self, state: Any, ctrl: jax.Array) -> Any:
        if self.backend != "mjx":
            return jax.lax.scan(lambda s, _: (self._pipeline.step(self.sys, s, ctrl), None), state, None,
                                length=self.n_frames)[0]
        return self.step_data(state, ctrl)[0]

    def init_data(self, q: jax.Array, qd: jax.Array, ctrl: jax.Array) -> tuple[MjxState, mjx.Data]:
        """MJX: the compact state and the ``mjx.Data`` of ``q, qd, ctrl`` with what the recipe reads
        propagated (the state ``mj_forward`` gives native MuJoCo)."""
        data = self._propagate(mjx.make_data(self.sys).replace(qpos=q, qvel=qd, ctrl=ctrl))
        return self._compact(data), data

    def step_data(self, state: MjxState, ctrl: jax.Array) -> tuple[MjxState, mjx.Data]:
        """MJX: ``n_frames`` steps of ``ctrl``, then the new state propagated as in :meth:`init_data`."""
        data = mjx.make_data(self.sys).replace(
            qpos=state.q, qvel=state.qd, ctrl=ctrl, qacc_warmstart=state.qacc_warmstart)
        data = jax.lax.scan(lambda d, _: (mjx.step(self.sys, d), None), data, None, length=self.n_frames)[0]
        data = self._propagate(data)
        return self._compact(data), data

    def _propagate(self, data: mjx.Data) -> mjx.Data:
        """Kinematics and com quantities of the current ``qpos, qvel`` (after ``mjx.step`` they are those of
        the state before the last integration), and actuator forces when the recipe reads them."""
        data = mjx.com_vel(self.sys, mjx.com_pos(self.sys, mjx.kinematics(self.sys, data)))
        if self._needs_actuation:
            data = mjx.fwd_actuation(self.sys, mjx.transmission(self.sys, data))
        return data

    def _compact(self, data: mjx.Data) -> MjxState:
        """Body poses and velocities as brax's MJX pipeline computes them, and the carried state."""
        x = brax_base.Transform(pos=data.xpos[1:], rot=data.xquat[1:])
        cvel = brax_base.Motion(vel=data.cvel[1:, 3:], ang=data.cvel[1:, :3])
        offset = brax_base.Transform.create(pos=data.xpos[1:] - data.subtree_com[self.sys.body_rootid[1:]])
        xd = offset.vmap().do(cvel)
        return MjxState(q=data.qpos, qd=data.qvel, x=x, xd=xd, ctrl=data.ctrl, qacc_warmstart=data.qacc_warmstart)


def _load(xml: str, backend: str, *, name: str, spring_timestep: float,
          mjx_solver: tuple[int, int] = (1, 4)) -> tuple[brax_base.System, str, mujoco.MjModel]:
    """Load an MJCF string with brax's per-pipeline settings (those of brax's own envs).

    Returns ``(sys, xml, mj)``: ``xml`` is the MJCF that ``mj`` (and ``sys``) was compiled from, with
    every change made here written into it, so native MuJoCo loading it steps the same model: bodies
    without joints fused into their parents (as brax does), actuators named (by their joint when
    unnamed), the model named after the task, and for MJX the solver options in ``<option>``.

    ``mjx_solver``: Newton (iterations, line-search iterations) for MJX, brax's ant and humanoid
    setting by default (the tasks with contacts use :data:`CONTACT_SOLVER`). Keep them few: on the CPU, MJX's solver loop under ``vmap`` crawls when
    many iterations are allowed (the pusher's MJCF asks for 20: one step of 1,024 envs then took
    minutes, with the CPU mostly idle)."""
    root = ET.fromstring(xml)
    mjcf._fuse_bodies(root)  # what mjcf.loads does before compiling
    root.set("model", name)
    for act in root.iterfind("./actuator/*"):
        if not act.get("name"):
            act.set("name", act.get("joint") or act.get("site") or act.get("tendon") or "")
    if backend == "mjx":
        option = root.find("./option")
        if option is None:
            option = ET.Element("option")
            root.insert(0, option)
        option.set("solver", "Newton")
        option.set("iterations", str(mjx_solver[0]))
        option.set("ls_iterations", str(mjx_solver[1]))
        flag = option.find("./flag")
        if flag is None:
            flag = ET.SubElement(option, "flag")
        flag.set("eulerdamp", "disable")
    xml = ET.tostring(root, encoding="unicode")
    mj = mujoco.MjModel.from_xml_string(xml)
    sys = mjcf.load_model(mj)
    if backend in ("spring", "positional"):
        sys = sys.tree_replace({"opt.timestep": spring_timestep})
    return sys, xml, mj


def _with_maze(
    xml_path: Path,
    maze: Optional[Maze],
    body_geoms: tuple[str, ...] = (),
    wall_spheres: tuple[tuple[str, str, float], ...] = (),
    wall_height: Optional[float] = None,
) -> str:
    """The robot's MJCF with the maze's walls added; ``body_geoms`` also collide with the walls.

    Walls get contype 1 (they touch the feet, whose contype is 1) and conaffinity 3; the listed body
    geoms get contype 2, which only the walls accept, so no other contact pair is added.
    ``wall_spheres`` ``(body, pos, radius)`` adds massless invisible spheres that collide only with
    the walls (sphere-box contacts cost MJX far less than capsule-box ones). A broad phase (MJX's
    ``max_geom_pairs``, sized so that no contact can be missed) skips far walls."""
    tree = ET.parse(xml_path)
    if maze is None:
        return ET.tostring(tree.getroot(), encoding="unicode")
    world = tree.find(".//worldbody")
    for attrs in wall_geoms_xml(maze, contype=1, conaffinity=3, height=wall_height):
        ET.SubElement(world, "geom", attrs)
    for name in body_geoms:
        geom = tree.find(f".//geom[@name='{name}']")
        if geom is None:
            raise ValueError(f"{xml_path.name} has no geom {name!r}")
        geom.set("contype", "2")
    for body, pos, radius in wall_spheres:
        node = tree.find(f".//body[@name='{body}']")
        if node is None:
            raise ValueError(f"{xml_path.name} has no body {body!r}")
        ET.SubElement(node, "geom", {
            "name": f"{body}_wall_collider", "type": "sphere", "pos": pos, "size": str(radius), "mass": "0",
            "contype": "2", "conaffinity": "0", "rgba": "0 0 0 0",
        })
    mj = mujoco.MjModel.from_xml_string(ET.tostring(tree.getroot(), encoding="unicode"))
    wall_id = mujoco.mj_name2id(mj, mujoco.mjtObj.mjOBJ_GEOM, "wall_" + "_".join(map(str, touchable_wall_cells(maze.walls)[0])))
    touching = [g for g in range(mj.ngeom) if mj.geom_bodyid[g] != 0 and _may_collide(mj, g, wall_id)]
    pairs = max_geom_pairs(maze, mj.geom_rbound[touching], wall_height)
    # First among the numerics: MJX reads ``numeric_data[id]``, not ``numeric_data[numeric_adr[id]]``
    # (mujoco-mjx 3.17), which is the same value only for the first one.
    tree.find(".//custom").insert(0, ET.Element("numeric", {"name": "max_geom_pairs", "data": str(pairs)}))
    return ET.tostring(tree.getroot(), encoding="unicode")


def _may_collide(mj: mujoco.MjModel, g1: int, g2: int) -> bool:
    """MuJoCo's contype/conaffinity filter between two geoms."""
    return bool((mj.geom_contype[g1] & mj.geom_conaffinity[g2]) or (mj.geom_contype[g2] & mj.geom_conaffinity[g1]))


# --- the shared base ------------------------------------------------------------------------------


class BraxGoalEnv(GoalEnv):
    """A :class:`GoalEnv` whose dynamics are a :class:`Physics`.

    On MJX a task declares its controller contract (:meth:`_declare`): the observation recipe and the
    action map (:mod:`deepdistill.envs.recipe`), which this class uses to build every observation
    and control, and which the exporter writes into the ONNX metadata for a native controller. Tasks
    on brax's own pipelines (``recipe = None``) build their state in ``_robot_state``."""

    physics: Physics
    recipe: Optional[Recipe] = None
    action_map: Optional[ActionMap] = None
    mj_model: Optional[mujoco.MjModel] = None
    _observe: Optional[CompiledRecipe] = None

    def _declare(self, mj: mujoco.MjModel, recipe: Recipe, action_map: ActionMap) -> None:
        """Install the task's controller contract (MJX only)."""
        self.mj_model, self.recipe, self.action_map = mj, recipe, action_map
        self._observe = recipe.compile(mj)
        self.physics.observe_with(recipe)

    def observation_terms(self) -> tuple[ObsTerm, ...]:
        """The task's declared terms, else one per recipe entry, else the whole state."""
        if self.obs_terms is None and self._observe is not None:
            self.obs_terms = self._observe.terms()
        return super().observation_terms()

    @property
    def native(self) -> bool:
        """Whether native MuJoCo can run this task from its recipe and XML."""
        return self.recipe is not None

    def episode_distribution(self) -> dict[str, Any]:
        """How episodes start, for a native controller (:func:`deepdistill.envs.recipe.sample_episode`):
        the same distribution as ``reset_split``, written as data."""
        raise NotImplementedError(f"{self.spec.name} has no native MuJoCo episode record")

    def _episode(self, qpos0, **fields) -> dict[str, Any]:
        mj = self.mj_model
        return {"nq": int(mj.nq), "nv": int(mj.nv), "nu": int(mj.nu), "qpos0": np.asarray(qpos0, np.float64).tolist(),
                **fields}

    def _robot_state(self, ps: Any, ctrl: jax.Array) -> jax.Array:
        raise NotImplementedError

    def _ctrl(self, ps: Any, action: jax.Array) -> jax.Array:
        """Map an action in [-1, 1]^A to actuator controls (default: the action map, else the action)."""
        if self.action_map is not None:
            return self.action_map.ctrl(action, ps.q, jnp)
        return action

    def _init(self, q: jax.Array, qd: jax.Array, ctrl: Optional[jax.Array] = None) -> tuple[Any, jax.Array]:
        """The physics state of ``q, qd`` (and ``ctrl``, default zeros) and its robot state."""
        if ctrl is None:
            ctrl = jnp.zeros(self.physics.sys.act_size())
        if self._observe is not None:
            ps, data = self.physics.init_data(q, qd, ctrl)
            return ps, self._observe.read(data, jnp)
        ps = self.physics.init(q, qd)
        return ps, self._robot_state(ps, ctrl)

    def _physics_step(self, pipeline_state, action):
        ctrl = self._ctrl(pipeline_state, action)
        if self._observe is not None:
            ps, data = self.physics.step_data(pipeline_state, ctrl)
            return ps, self._observe.read(data, jnp)
        ps = self.physics.step(pipeline_state, ctrl)
        return ps, self._robot_state(ps, ctrl)


def _uniform_cell_goal(rng: jax.Array, maze: Maze, cells: jax.Array, jitter: float) -> jax.Array:
    """A goal ``(x, y)``: a cell of ``cells [N, 2]`` uniformly, then uniform within +-jitter of its centre."""
    u = jax.random.uniform(rng, (3,))
    n = cells.shape[0]
    cell = cells[jnp.minimum((u[0] * n).astype(jnp.int32), n - 1)]
    return cell.astype(jnp.float32) * maze.cell_size + (2.0 * u[1:] - 1.0) * jitter


def _ring_goal(rng: jax.Array, center: jax.Array, r_min: float, r_max: float) -> jax.Array:
    """A point ``(x, y)`` at a distance U(r_min, r_max) from ``center`` in a uniform direction."""
    u = jax.random.uniform(rng, (2,))
    r = r_min + (r_max - r_min) * u[0]
    a = 2.0 * jnp.pi * u[1]
    return center + r * jnp.stack([jnp.cos(a), jnp.sin(a)])


def _noisy_q(rng: jax.Array, init_q: jax.Array, scale: float, skip_quat: bool = True) -> jax.Array:
    """``init_q`` plus U(-scale, scale) noise; the root quaternion ``q[3:7]`` is left unit."""
    noise = jax.random.uniform(rng, init_q.shape, minval=-scale, maxval=scale)
    if skip_quat:
        noise = noise.at[3:7].set(0.0)
    return init_q + noise


# --- ant and humanoid ----------------------------------------------------------------------------


def _free_body_terms(root: str, joints: int, joint_meaning: str) -> tuple[ObsTerm, ...]:
    """qpos, then qvel, of a robot on a free joint: root position and orientation, joint angles, velocities."""
    return declare_terms(
        ("root_pos", 3, "m (world frame)", f"{root} x, y, z (the goal entries come from here)"),
        ("root_quat", 4, "unitless (unit quaternion w, x, y, z)", f"{root} orientation"),
        ("joint_angles", joints, "rad", joint_meaning),
        ("root_vel", 3, "m/s (world frame)", f"{root} linear velocity"),
        ("root_angvel", 3, "rad/s (body frame)", f"{root} angular velocity"),
        ("joint_vel", joints, "rad/s", "the joint angles' velocities"),
    )


class _Locomotion(BraxGoalEnv):
    """Shared by the ant and the humanoid: a start cell (or the origin) and goal sampling."""

    def _setup_goals(self, maze: Optional[Maze], goal_distance: tuple[float, float], goal_jitter: Optional[float]):
        self.maze = maze
        self.goal_distance = (float(goal_distance[0]), float(goal_distance[1]))
        self.goal_jitter = 0.0 if maze is None else (0.25 * maze.cell_size if goal_jitter is None else float(goal_jitter))
        self.start_xy = jnp.asarray(np.zeros(2, np.float32) if maze is None else maze.start_xy)
        if maze is not None:
            self.goal_cells = jnp.asarray(maze.goal_cells, jnp.int32)
            self.far_cells = jnp.asarray(maze.far_cells, jnp.int32)

    def _goal_record(self, split: str, z: Optional[float] = None) -> dict[str, Any]:
        """The goal distribution of ``split`` as data (see :func:`deepdistill.envs.recipe.sample_goal`)."""
        if self.maze is None:
            return {"kind": "ring", "center": np.asarray(self.start_xy).tolist(), "r_min": self.goal_distance[0],
                    "r_max": self.goal_distance[1], "z": z}
        cells = self.maze.far_cells if split == "far" else self.maze.goal_cells
        return {"kind": "cells", "cells": np.asarray(cells).tolist(), "cell_size": float(self.maze.cell_size),
                "jitter": self.goal_jitter, "z": z}

    def _locomotion_episode(self, qvel_noise: str, z: Optional[float] = None) -> dict[str, Any]:
        nq, nv = self.mj_model.nq, self.mj_model.nv
        return self._episode(
            self.init_q,
            qpos_noise={"kind": "uniform", "scale": self.reset_noise, "indices": [i for i in range(nq) if not 3 <= i < 7]},
            qvel_noise={"kind": qvel_noise, "scale": self.reset_noise, "indices": list(range(nv))},
            goals={split: self._goal_record(split, z) for split in ("train", *self.spec.eval_splits)},
        )

    def _goal_xy(self, rng: jax.Array, split: str) -> jax.Array:
        """In the open: at a distance U(goal_distance) from the start; in a maze: over goal cells."""
        if self.maze is None:
            return _ring_goal(rng, self.start_xy, *self.goal_distance)
        cells = self.far_cells if split == "far" else self.goal_cells
        return _uniform_cell_goal(rng, self.maze, cells, self.goal_jitter)


class AntGoal(_Locomotion):
    """Brax's ant reaching a torso ``(x, y)`` goal, in the open (goal on a circle) or in a maze."""

    def __init__(
        self,
        name: str,
        maze: Optional[Maze] = None,
        backend: str = "mjx",
        episode_length: int = EPISODE_LENGTH,
        goal_distance: tuple[float, float] = (10.0, 10.0),
        goal_jitter: Optional[float] = None,
        success_threshold: float = 0.5,
        reset_noise: float = 0.1,
    ):
        xml = _with_maze(BRAX_ASSETS / "ant.xml", maze, body_geoms=("torso_geom",))
        sys, xml, mj = _load(xml, backend, name=name, spring_timestep=0.005, mjx_solver=CONTACT_SOLVER)
        if backend == "positional":  # as brax's ant: the positional pipeline needs stronger motors
            sys = sys.replace(actuator=sys.actuator.replace(gear=200 * jnp.ones_like(sys.actuator.gear)))
        self.physics = Physics(sys, backend, n_frames=10 if backend in ("spring", "positional") else 5, xml=xml)
        if backend == "mjx":  # state = qpos (15) + qvel (14); ctrl = action (ctrlrange [-1, 1])
            self._declare(mj, Recipe.from_list([{"kind": "qpos", "start": 0, "stop": mj.nq},
                                                {"kind": "qvel", "start": 0, "stop": mj.nv}]),
                          ActionMap.affine(-np.ones(mj.nu), np.ones(mj.nu)))
        self._setup_goals(maze, goal_distance, goal_jitter)
        self.reset_noise = float(reset_noise)
        self.init_q = jnp.asarray(sys.init_q).at[:2].set(self.start_xy)
        self.obs_terms = _free_body_terms("torso", sys.q_size() - 7, "hip and ankle angles of the four legs")
        self.spec = EnvSpec(
            name=name,
            state_size=sys.q_size() + sys.qd_size(),  # 15 + 14
            goal_size=2,
            action_size=sys.act_size(),
            goal_indices=(0, 1),
            success_threshold=float(success_threshold),
            episode_length=int(episode_length),
            eval_splits=("random", "far") if maze is not None else ("random",),
            backend=backend,
        )

    def _sample_goal(self, rng, split: str = "train"):
        return self._goal_xy(rng, split)

    def episode_distribution(self) -> dict[str, Any]:
        return self._locomotion_episode("normal")

    def _reset(self, rng, split):
        k_q, k_qd, k_goal = jax.random.split(rng, 3)
        q = _noisy_q(k_q, self.init_q, self.reset_noise)
        qd = self.reset_noise * jax.random.normal(k_qd, (self.physics.sys.qd_size(),))
        ps, robot = self._init(q, qd)
        return ps, robot, self._sample_goal(k_goal, split)

    def _robot_state(self, ps, ctrl):
        return jnp.concatenate([ps.q, ps.qd])


HUMANOID_GOAL_Z = 1.25
"""Goal height: about the torso's height when the humanoid stands (the reference's value)."""


class HumanoidGoal(_Locomotion):
    """Brax's humanoid reaching a torso ``(x, y, z)`` goal, in the open or in a maze."""

    def __init__(
        self,
        name: str,
        maze: Optional[Maze] = None,
        backend: str = "mjx",
        episode_length: int = EPISODE_LENGTH,
        goal_distance: tuple[float, float] = (1.0, 5.0),
        goal_jitter: Optional[float] = None,
        success_threshold: float = 0.5,
        reset_noise: float = 0.01,
    ):
        # Walls 2 m high: the reference's (half a cell, 1 m) are lower than the torso (1.4 m), which
        # can then topple over them.
        xml = _with_maze(BRAX_ASSETS / "humanoid.xml", maze, wall_height=2.0,
                         wall_spheres=(("torso", "0 0 0", 0.12), ("pelvis", "-0.02 0 0", 0.13)))
        sys, xml, mj = _load(xml, backend, name=name, spring_timestep=0.0015, mjx_solver=CONTACT_SOLVER)
        if backend in ("spring", "positional"):  # brax's humanoid motor strengths for these pipelines
            gear = jnp.array([350.0] * 11 + [100.0] * 6)
            sys = sys.replace(actuator=sys.actuator.replace(gear=gear))
        self.physics = Physics(sys, backend, n_frames=10 if backend in ("spring", "positional") else 5, xml=xml)
        if backend == "mjx":  # MuJoCo's own com-based inertia and velocity (gym's humanoid observation)
            ctrl_range = np.asarray(mj.actuator_ctrlrange)
            self._declare(mj, Recipe.from_list([
                {"kind": "qpos", "start": 0, "stop": mj.nq}, {"kind": "qvel", "start": 0, "stop": mj.nv},
                {"kind": "cinert"}, {"kind": "cvel"}, {"kind": "qfrc_actuator"}]),
                ActionMap.affine(ctrl_range[:, 0], ctrl_range[:, 1]))
        self._setup_goals(maze, goal_distance, goal_jitter)
        self.reset_noise = float(reset_noise)
        self.init_q = jnp.asarray(sys.init_q).at[:2].set(self.start_xy)
        self._ctrl_lo = jnp.asarray(sys.actuator.ctrl_range[:, 0])
        self._ctrl_hi = jnp.asarray(sys.actuator.ctrl_range[:, 1])
        inertia = sys.link.inertia
        if backend in ("spring", "positional"):  # as brax's humanoid: those pipelines rescale inertia
            inertia = inertia.replace(
                i=jax.vmap(jnp.diag)(jax.vmap(jnp.diagonal)(inertia.i) ** (1 - sys.spring_inertia_scale)),
                mass=inertia.mass ** (1 - sys.spring_mass_scale),
            )
        self._inertia = inertia
        n_links = len(sys.link_names)
        self.obs_terms = _free_body_terms("torso", sys.q_size() - 7, "abdomen, hip, knee, shoulder and elbow angles") + (
            ObsTerm("cinert", sys.q_size() + sys.qd_size(), sys.q_size() + sys.qd_size() + 10 * n_links,
                    "kg m^2, kg m, kg", f"com-based inertia of the {n_links} bodies (MuJoCo cinert: 6 inertia, 3 "
                    "mass x offset, mass; 10 each)"),
            ObsTerm("cvel", sys.q_size() + sys.qd_size() + 10 * n_links, sys.q_size() + sys.qd_size() + 16 * n_links,
                    "rad/s, m/s", f"com-based velocity of the {n_links} bodies (MuJoCo cvel: angular, then linear; 6 each)"),
            ObsTerm("qfrc_actuator", sys.q_size() + sys.qd_size() + 16 * n_links,
                    sys.q_size() + 2 * sys.qd_size() + 16 * n_links, "N m (generalised force)",
                    "actuator forces on each degree of freedom (nv entries)"))
        self.spec = EnvSpec(
            name=name,
            state_size=sys.q_size() + 2 * sys.qd_size() + 16 * n_links,  # 24 + 23 + 23 + 11 * (10 + 6)
            goal_size=3,
            action_size=sys.act_size(),
            goal_indices=(0, 1, 2),
            success_threshold=float(success_threshold),
            episode_length=int(episode_length),
            eval_splits=("random", "far") if maze is not None else ("random",),
            backend=backend,
        )

    def _sample_goal(self, rng, split: str = "train"):
        return jnp.concatenate([self._goal_xy(rng, split), jnp.array([HUMANOID_GOAL_Z])])

    def episode_distribution(self) -> dict[str, Any]:
        return self._locomotion_episode("uniform", z=HUMANOID_GOAL_Z)

    def _reset(self, rng, split):
        k_q, k_qd, k_goal = jax.random.split(rng, 3)
        q = _noisy_q(k_q, self.init_q, self.reset_noise)
        qd = jax.random.uniform(k_qd, (self.physics.sys.qd_size(),), minval=-self.reset_noise, maxval=self.reset_noise)
        ps, robot = self._init(q, qd)
        return ps, robot, self._sample_goal(k_goal, split)

    def _ctrl(self, ps, action):
        if self.action_map is not None:
            return self.action_map.ctrl(action, ps.q, jnp)
        return self._ctrl_lo + (action + 1.0) * 0.5 * (self._ctrl_hi - self._ctrl_lo)

    def _robot_state(self, ps, ctrl):
        """brax's own pipelines (no MJX data): brax's com-based inertia and velocity."""
        inertia = self._inertia
        mass = inertia.mass
        x_i = ps.x.vmap().do(inertia.transform)  # each body's centre of mass
        com = jnp.sum(mass[:, None] * x_i.pos, axis=0) / jnp.sum(mass)
        cinr = x_i.replace(pos=x_i.pos - com).vmap().do(inertia)
        com_inertia = jnp.concatenate([cinr.i.reshape(cinr.i.shape[0], -1), mass[:, None]], axis=1)
        xd_i = brax_base.Transform.create(pos=x_i.pos - ps.x.pos).vmap().do(ps.xd)
        com_vel = jnp.concatenate([mass[:, None] * xd_i.vel / jnp.sum(mass), xd_i.ang], axis=1)
        qfrc = brax_actuator.to_tau(self.physics.sys, ctrl, ps.q, ps.qd)
        return jnp.concatenate([ps.q, ps.qd, com_inertia.ravel(), com_vel.ravel(), qfrc])


# --- reacher and pusher -------------------------------------------------------------------------------


REACHER_GOAL_RADIUS = 0.2


class ReacherGoal(BraxGoalEnv):
    """Brax's 2-link reacher; goal = fingertip ``(x, y, z)``, a point within 0.2 of the base."""

    TIP = np.array([0.11, 0.0, 0.0], np.float32)  # fingertip offset in the second link's frame

    def __init__(self, name: str = "reacher", backend: str = "mjx", episode_length: int = EPISODE_LENGTH,
                 success_threshold: float = 0.05):
        sys, xml, mj = _load((BRAX_ASSETS / "reacher.xml").read_text(), backend, name=name, spring_timestep=0.005)
        if backend in ("spring", "positional"):  # brax's reacher motor strengths for these pipelines
            sys = sys.replace(actuator=sys.actuator.replace(gear=jnp.array([25.0, 25.0])))
        self.physics = Physics(sys, backend, n_frames=4 if backend in ("spring", "positional") else 2, xml=xml)
        if backend == "mjx":  # the fingertip (fused into body1 by brax) is a point of body1
            tip = {"body": "body1", "offset": self.TIP.tolist(), "name": "fingertip"}
            self._declare(mj, Recipe.from_list([
                {"kind": "cos_qpos", "start": 0, "stop": 2}, {"kind": "sin_qpos", "start": 0, "stop": 2},
                {"kind": "body_point", **tip}, {"kind": "body_point_vel", **tip}]),
                ActionMap.affine(-np.ones(mj.nu), np.ones(mj.nu)))
        self.goal_z = 0.01  # height of the arm's plane (and of the target marker)
        self.obs_terms = declare_terms(
            ("cos_qpos", 2, "unitless", "cosine of the two joint angles (shoulder, elbow)"),
            ("sin_qpos", 2, "unitless", "sine of the two joint angles (shoulder, elbow)"),
            ("fingertip", 3, "m (world frame)", "fingertip x, y, z (the goal entries)"),
            ("fingertip_vel", 3, "m/s (world frame)", "fingertip linear velocity"))
        self.spec = EnvSpec(
            name=name, state_size=10, goal_size=3, action_size=sys.act_size(), goal_indices=(4, 5, 6),
            success_threshold=float(success_threshold), episode_length=int(episode_length),
            eval_splits=("random",), backend=backend,
        )

    def _sample_goal(self, rng):
        xy = _ring_goal(rng, jnp.zeros(2), 0.0, REACHER_GOAL_RADIUS)
        return jnp.concatenate([xy, jnp.array([self.goal_z])])

    def episode_distribution(self) -> dict[str, Any]:
        mj = self.mj_model
        goal = {"kind": "ring", "center": [0.0, 0.0], "r_min": 0.0, "r_max": REACHER_GOAL_RADIUS, "z": self.goal_z}
        return self._episode(
            self.physics.sys.init_q,
            qpos_noise={"kind": "uniform", "scale": 0.1, "indices": list(range(mj.nq))},
            qvel_noise={"kind": "uniform", "scale": 0.005, "indices": [0, 1]},
            goals={split: goal for split in ("train", *self.spec.eval_splits)},
            goal_to_qpos={"qpos": [2, 3], "goal": [0, 1]},  # the target marker's slide joints
        )

    def _reset(self, rng, split):
        k_q, k_qd, k_goal = jax.random.split(rng, 3)
        sys = self.physics.sys
        goal = self._sample_goal(k_goal)
        q = sys.init_q + jax.random.uniform(k_q, (sys.q_size(),), minval=-0.1, maxval=0.1)
        q = q.at[2:].set(goal[:2])  # the (non-colliding) target marker shows the goal
        qd = jax.random.uniform(k_qd, (sys.qd_size(),), minval=-0.005, maxval=0.005).at[2:].set(0.0)
        ps, robot = self._init(q, qd)
        return ps, robot, goal

    def _robot_state(self, ps, ctrl):
        """brax's own pipelines: brax's reacher observation (its tip velocity offsets the tip in the world frame)."""
        tip = brax_base.Transform.create(pos=jnp.asarray(self.TIP))
        tip_pos = ps.x.take(1).do(tip).pos
        tip_vel = tip.do(ps.xd.take(1)).vel
        theta = ps.q[:2]
        return jnp.concatenate([jnp.cos(theta), jnp.sin(theta), tip_pos, tip_vel])


class PusherGoal(BraxGoalEnv):
    """Brax's 7-DoF pusher; goal = object position, drawn over the reference's "easy" region."""

    def __init__(self, name: str = "pusher", backend: str = "spring", episode_length: int = EPISODE_LENGTH,
                 success_threshold: float = 0.1):
        xml = (BRAX_ASSETS / "pusher.xml").read_text()
        sys, _, _ = _load(xml, backend, name=name, spring_timestep=0.001)
        if backend in ("spring", "positional"):  # brax's pusher motor strengths for these pipelines
            sys = sys.replace(actuator=sys.actuator.replace(gear=jnp.array([20.0] * sys.act_size())))
        self.physics = Physics(sys, backend, n_frames=50 if backend in ("spring", "positional") else 5)
        names = list(sys.link_names)
        # The fingertip body is fused into its parent by brax: the wrist flex link stands for it.
        self._tip, self._object = names.index("r_wrist_flex_link"), names.index("object")
        self._ctrl_lo = jnp.asarray(sys.actuator.ctrl_range[:, 0])
        self._ctrl_hi = jnp.asarray(sys.actuator.ctrl_range[:, 1])
        mj = mujoco.MjModel.from_xml_string(xml)
        data = mujoco.MjData(mj)
        mujoco.mj_forward(mj, data)
        obj = mujoco.mj_name2id(mj, mujoco.mjtObj.mjOBJ_BODY, "object")
        self.object_origin = jnp.asarray(data.xpos[obj, :2], jnp.float32)  # object joints slide from here
        self.object_z = float(data.xipos[obj, 2])  # the object slides in a plane at this height
        self.obs_terms = declare_terms(
            ("joint_angles", 7, "rad", "the arm's 7 joint angles"),
            ("fingertip", 3, "m (world frame)", "the wrist flex link's centre of mass (brax fuses the fingertip into it)"),
            ("object", 3, "m (world frame)", "the object's centre of mass (the goal entries)"),
            ("joint_vel", 7, "rad/s", "the arm's 7 joint velocities"))
        self.spec = EnvSpec(
            name=name, state_size=20, goal_size=3, action_size=sys.act_size(), goal_indices=(10, 11, 12),
            success_threshold=float(success_threshold), episode_length=int(episode_length),
            eval_splits=("random",), backend=backend,
        )

    def _goal_offset(self, rng):
        u = jax.random.uniform(rng, (2,))
        return jnp.stack([-0.55 + 0.3 * u[0], -0.2 + 0.4 * u[1]])  # (dx, dy) from the object's origin

    def _sample_goal(self, rng):
        return jnp.concatenate([self.object_origin + self._goal_offset(rng), jnp.array([self.object_z])])

    def _reset(self, rng, split):
        k_obj, k_goal, k_qd = jax.random.split(rng, 3)
        sys = self.physics.sys
        g = self._goal_offset(k_goal)
        u = jax.random.uniform(k_obj, (2,))
        obj = jnp.stack([-0.3 + 0.3 * u[0], -0.2 + 0.4 * u[1]])
        d = jnp.linalg.norm(obj - g)
        obj = g + (obj - g) * jnp.maximum(1.0, 0.17 / jnp.maximum(d, 1e-6))  # at least 0.17 from the goal
        # q[7:11] = object slide y, x; goal-marker slide y, x
        q = jnp.asarray(sys.init_q).at[7:11].set(jnp.stack([obj[1], obj[0], g[1], g[0]]))
        qd = jax.random.uniform(k_qd, (sys.qd_size(),), minval=-0.005, maxval=0.005).at[7:].set(0.0)
        ps = self.physics.init(q, qd)
        goal = jnp.concatenate([self.object_origin + g, jnp.array([self.object_z])])
        return ps, self._robot_state(ps, None), goal

    def _ctrl(self, ps, action):
        return self._ctrl_lo + (action + 1.0) * 0.5 * (self._ctrl_hi - self._ctrl_lo)

    def _robot_state(self, ps, ctrl):
        x_i = ps.x.vmap().do(brax_base.Transform.create(pos=self.physics.sys.link.inertia.transform.pos))
        return jnp.concatenate([ps.q[:7], x_i.pos[self._tip], x_i.pos[self._object], ps.qd[:7]])


# --- arm ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ArmLayout:
    """Where the cube starts and where its goal lies: boxes ``center +- half`` in (x, y)."""

    cube_center: tuple[float, float]
    cube_half: float
    goal_center: tuple[float, float]
    goal_half: float
    bins: tuple[tuple[float, float], ...] = ()
    """Centres of square bins (inner half-size ``bin_half``, walls ``bin_wall_height`` high)."""
    bin_half: float = 0.1
    bin_wall_height: float = 0.06


ARM_LAYOUTS = {
    "push_easy": ArmLayout(cube_center=(0.0, -0.12), cube_half=0.1, goal_center=(0.0, 0.12), goal_half=0.1),
    "push_hard": ArmLayout(cube_center=(0.0, -0.2), cube_half=0.2, goal_center=(0.0, 0.2), goal_half=0.2),
    "binpick_hard": ArmLayout(cube_center=(0.0, -0.2), cube_half=0.06, goal_center=(0.0, 0.2), goal_half=0.06,
                              bins=((0.0, -0.2), (0.0, 0.2))),
}
CUBE_HALF = 0.02
ARM_STEP = 0.05
"""Largest gripper displacement per environment step (m) along each axis."""
FINGER_OPEN = 0.05
ARM_HAND_START = (0.0, 0.0, 0.15)
CUBE_START_Z = CUBE_HALF - 1e-5
"""The cube starts 10 um into the table: resting exactly on it, whether the first contact is a
penetration depended on rounding (0.02 in float32 is below 0.02 in float64), and MJX and native
MuJoCo then took different first steps (a 1.2 mm/s bounce in one, none in the other)."""


def _arm_xml(layout: ArmLayout) -> str:
    tree = ET.parse(ASSETS / "arm.xml")
    world = tree.find(".//worldbody")
    t, h = 0.005, layout.bin_wall_height / 2  # wall half-thickness and half-height
    for k, (cx, cy) in enumerate(layout.bins):
        a = layout.bin_half + t  # wall centre offset
        walls = (((cx + a, cy), (t, a + t)), ((cx - a, cy), (t, a + t)), ((cx, cy + a), (a + t, t)), ((cx, cy - a), (a + t, t)))
        for j, ((x, y), (sx, sy)) in enumerate(walls):
            ET.SubElement(world, "geom", {
                "name": f"bin{k}_wall{j}", "type": "box", "pos": f"{x:.6g} {y:.6g} {h:.6g}",
                "size": f"{sx:.6g} {sy:.6g} {h:.6g}", "contype": "1", "conaffinity": "1", "rgba": "0.5 0.35 0.2 1",
            })
    return ET.tostring(tree.getroot(), encoding="unicode")


class ArmGoal(BraxGoalEnv):
    """Our gantry gripper moving a cube to a goal position (see the module docstring)."""

    def __init__(self, name: str, layout: ArmLayout, backend: str = "mjx", episode_length: int = EPISODE_LENGTH,
                 success_threshold: float = 0.1):
        if backend != "mjx":
            raise ValueError("the arm tasks run on MJX only (the gripper is gravity-compensated, which only MJX models)")
        sys, xml, mj = _load(_arm_xml(layout), backend, name=name, spring_timestep=0.005, mjx_solver=CONTACT_SOLVER)
        self.physics = Physics(sys, backend, n_frames=10, xml=xml)  # 0.05 s per step
        self.layout = layout
        ranges = np.asarray(mj.jnt_range)[1:4]  # hand x, y, z (joint 0 is the cube's free joint)
        # state: cube position, quaternion, linear velocity; hand position, velocity; finger opening
        self._declare(mj, Recipe.from_list([
            {"kind": "qpos", "start": 0, "stop": 3}, {"kind": "qpos", "start": 3, "stop": 7},
            {"kind": "qvel", "start": 0, "stop": 3}, {"kind": "qpos", "start": 7, "stop": 10},
            {"kind": "qvel", "start": 6, "stop": 9}, {"kind": "qpos_sum", "indices": [10, 11], "name": "finger_opening"}]),
            # the hand's servo targets move at most ARM_STEP per step; action[3] closes both fingers
            ActionMap.from_list([
                {"kind": "qpos_delta", "action": [0, 1, 2], "ctrl": [0, 1, 2], "qpos": [7, 8, 9], "scale": ARM_STEP,
                 "low": ranges[:, 0].tolist(), "high": ranges[:, 1].tolist()},
                {"kind": "affine", "action": [3, 3], "ctrl": [3, 4], "scale": [-0.5 * FINGER_OPEN] * 2,
                 "offset": [0.5 * FINGER_OPEN] * 2}], mj.nu))
        self.obs_terms = declare_terms(
            ("cube_pos", 3, "m (world frame)", "cube x, y, z (the goal entries)"),
            ("cube_quat", 4, "unitless (unit quaternion w, x, y, z)", "cube orientation"),
            ("cube_vel", 3, "m/s (world frame)", "cube linear velocity"),
            ("hand_pos", 3, "m (world frame)", "gripper x, y, z"),
            ("hand_vel", 3, "m/s (world frame)", "gripper velocity"),
            ("finger_opening", 1, "m", "sum of the two fingers' slide positions"))
        self.spec = EnvSpec(
            name=name, state_size=17, goal_size=3, action_size=4, goal_indices=(0, 1, 2),
            success_threshold=float(success_threshold), episode_length=int(episode_length),
            eval_splits=("random",), backend=backend,
        )

    @staticmethod
    def _in_box(rng, center, half):
        return jnp.asarray(center) + half * jax.random.uniform(rng, (2,), minval=-1.0, maxval=1.0)

    def _sample_goal(self, rng):
        xy = self._in_box(rng, self.layout.goal_center, self.layout.goal_half)
        return jnp.concatenate([xy, jnp.array([CUBE_HALF])])

    def episode_distribution(self) -> dict[str, Any]:
        lay = self.layout
        goal = {"kind": "box", "center": list(lay.goal_center), "half": lay.goal_half, "z": CUBE_HALF}
        qpos0 = [*lay.cube_center, CUBE_START_Z, 1.0, 0.0, 0.0, 0.0, *ARM_HAND_START, FINGER_OPEN, FINGER_OPEN]
        return self._episode(
            qpos0, ctrl0=[*ARM_HAND_START, FINGER_OPEN, FINGER_OPEN],
            qpos_boxes=[{"indices": [0, 1], "center": list(lay.cube_center), "half": lay.cube_half}],
            goals={split: goal for split in ("train", *self.spec.eval_splits)},
        )

    def _reset(self, rng, split):
        k_cube, k_goal = jax.random.split(rng)
        cube = self._in_box(k_cube, self.layout.cube_center, self.layout.cube_half)
        hand = jnp.asarray(ARM_HAND_START)
        q = jnp.concatenate([cube, jnp.array([CUBE_START_Z, 1.0, 0.0, 0.0, 0.0]), hand, jnp.full(2, FINGER_OPEN)])
        qd = jnp.zeros(self.physics.sys.qd_size())
        ps, robot = self._init(q, qd, jnp.concatenate([hand, jnp.full(2, FINGER_OPEN)]))
        return ps, robot, self._sample_goal(k_goal)


# --- registry ------------------------------------------------------------------------------------------

# Chosen per task by measurement (benchmarks/env_throughput.py --compare-backends; BENCHMARKS.md).
BACKEND = {
    "ant": "mjx",
    "ant_u4_maze": "mjx",
    "ant_u5_maze": "mjx",
    "ant_big_maze": "mjx",
    "ant_hardest_maze": "mjx",
    "humanoid": "mjx",
    "humanoid_u_maze": "mjx",
    "humanoid_big_maze": "mjx",
    "arm_push_easy": "mjx",
    "arm_push_hard": "mjx",
    "arm_binpick_hard": "mjx",
    "reacher": "mjx",
    "pusher": "spring",
}

def _ant(name: str, layout: Optional[str] = None) -> Callable[..., GoalEnv]:
    return lambda **kw: AntGoal(name, None if layout is None else parse(layout, LAYOUTS[layout], 4.0), **kw)


def _humanoid(name: str, layout: Optional[str] = None) -> Callable[..., GoalEnv]:
    return lambda **kw: HumanoidGoal(name, None if layout is None else parse(layout, LAYOUTS[layout], 2.0), **kw)


def _arm(name: str, layout: str) -> Callable[..., GoalEnv]:
    return lambda **kw: ArmGoal(name, ARM_LAYOUTS[layout], **kw)


# name -> (builder(backend=..., episode_length=...), description)
_BUILDERS: dict[str, tuple[Callable[..., GoalEnv], str]] = {
    "ant": (_ant("ant"), "brax ant, goal on a circle of radius 10 (goal = torso x,y)"),
    "ant_u4_maze": (_ant("ant_u4_maze", "u4_maze"), "ant in the U4 maze, cell 4; eval splits random, far"),
    "ant_u5_maze": (_ant("ant_u5_maze", "u5_maze"), "ant in the U5 maze, cell 4; eval splits random, far"),
    "ant_big_maze": (_ant("ant_big_maze", "big_maze"), "ant in the big maze, cell 4; eval splits random, far"),
    "ant_hardest_maze": (_ant("ant_hardest_maze", "hardest_maze"), "ant in the hardest maze, cell 4; eval splits random, far"),
    "humanoid": (_humanoid("humanoid"), "brax humanoid, goal at distance U(1,5) (goal = torso x,y,z)"),
    "humanoid_u_maze": (_humanoid("humanoid_u_maze", "u_maze"), "humanoid in the U maze, cell 2; eval splits random, far"),
    "humanoid_big_maze": (_humanoid("humanoid_big_maze", "big_maze"), "humanoid in the big maze, cell 2; eval splits random, far"),
    "arm_push_easy": (_arm("arm_push_easy", "push_easy"), "our gantry gripper + cube, push between adjacent 20 cm squares (goal = cube x,y,z)"),
    "arm_push_hard": (_arm("arm_push_hard", "push_hard"), "our gantry gripper + cube, push between adjacent 40 cm squares (goal = cube x,y,z)"),
    "arm_binpick_hard": (_arm("arm_binpick_hard", "binpick_hard"), "our gantry gripper + cube, lift it from one bin into the other (goal = cube x,y,z)"),
    "reacher": (lambda **kw: ReacherGoal(**kw), "brax reacher, goal = fingertip x,y,z (sanity check)"),
    "pusher": (lambda **kw: PusherGoal(**kw), "brax pusher, goal = object x,y,z (sanity check)"),
}


def make_task(name: str, backend: Optional[str] = None, **overrides) -> GoalEnv:
    """Build Brax task ``name`` on ``backend`` (default: the measured choice in ``BACKEND``)."""
    build, _ = _BUILDERS[name]
    return build(backend=backend or BACKEND[name], **overrides)


def _factory(name: str, training: bool, **overrides) -> GoalEnv:
    # Training and evaluation variants coincide: as in the paper, one goal per episode.
    del training
    return make_task(name, **overrides)


for _name, (_, _desc) in _BUILDERS.items():
    register(_name, functools.partial(_factory, _name), f"{_desc} [{BACKEND[_name]}]")

__all__ = ["AntGoal", "ArmGoal", "HumanoidGoal", "PusherGoal", "ReacherGoal", "BACKEND", "make_task"]
