"""Drive an exported policy in native MuJoCo (its C engine): numpy, onnxruntime and ``mujoco`` only.

::

    from deepdistill.export.mujoco_controller import MujocoController

    ctl = MujocoController("examples/pretrained/reacher/policy.onnx")   # task.xml beside it
    result = ctl.run(episodes=10, seed=0)        # {"success_rate", "time_at_goal", "final_distance", ...}

The policy's metadata (schema 2, ``controller`` field) says everything: ``task.xml`` and its sha256,
how each observation entry is read from the MuJoCo state (the observation recipe), how the action
becomes ``ctrl``, the physics steps per action, and how episodes start and where goals lie. Episodes
are batched: one policy call per control step for all of them, then ``n_frames`` ``mj_step`` calls per
episode and ``mj_forward`` before reading the next observation.

A student with sensors (metadata schema 3, ``observation_model``) gets its frame, its terms cut from
the recipe's observation (``policy.frame``); the policy keeps its own history and hidden state, reset
at the start of every batch of episodes. The controller models the student's ``action_delay`` as a
simulator should: each action is queued and applied that many control steps later (zeros first);
``action_delay=`` overrides it (0: apply at once). No sensor noise is added.

The contract itself is validated when the policy loads (:mod:`deepdistill.export.schema`, through
:class:`OnnxPolicy`): a missing or mistyped field is one line naming it and blaming the policy's
metadata. Wrong inputs raise :class:`ControllerError` with one line that names the fix: a policy
without a native recipe (schema 1, or a task that has none), a ``task.xml`` of another task, one whose
hash differs from the exported one, or one that lacks an actuator the policy drives (blamed on the
metadata instead when ``task.xml`` is the very file exported with it); a state of the wrong length,
a non-finite action or state, or no episodes.

This module must not import JAX (a test runs it where JAX cannot be imported).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Optional

import mujoco
import numpy as np

from deepdistill.export.contract import sha256
from deepdistill.envs.recipe import ActionMap, Recipe, RecipeError, sample_episode
from deepdistill.export.runtime import OnnxPolicy, PolicyError

__all__ = ["ControllerError", "MujocoController"]


class ControllerError(PolicyError):
    """The policy cannot drive this MuJoCo model (one line, naming the fix)."""


class MujocoController:
    """An exported policy and its ``task.xml`` in native MuJoCo.

    Args:
        policy: ``policy.onnx``, the directory holding it, or a loaded :class:`OnnxPolicy`.
        xml: the task's MJCF (default: ``task.xml`` beside the policy file).
        action_delay: control steps between an action and its application in the simulation
            (default: the policy's ``observation_model.action_delay``, what it was trained with).
    """

    def __init__(self, policy: str | os.PathLike | OnnxPolicy, xml: Optional[str | os.PathLike] = None,
                 action_delay: Optional[int] = None):
        self.policy = policy if isinstance(policy, OnnxPolicy) else OnnxPolicy(policy)
        delay = self.policy.action_delay if action_delay is None else action_delay
        if isinstance(delay, bool) or not isinstance(delay, (int, np.integer)) or delay < 0:
            raise ControllerError(f"action_delay={delay!r}: give a number of control steps >= 0")
        self.action_delay = int(delay)
        meta = self.policy.metadata
        where = str(self.policy.path)
        contract = meta.get("controller")
        if contract is None:
            raise ControllerError(
                f"{where}: no native MuJoCo recipe (metadata schema {meta['schema_version']}); re-export the run "
                f"with `export-onnx` (schema 2 writes task.xml and the recipe)")
        if not contract.get("native"):
            raise ControllerError(f"{where}: task {meta['task']!r} has no native MuJoCo recipe ({contract.get('reason')})")
        self.contract, self.task = contract, meta["task"]
        xml_path = Path(xml) if xml is not None else self.policy.path.parent / contract["task_xml"]
        if not xml_path.is_file():
            raise ControllerError(f"{xml_path}: no such file; export-onnx writes {contract['task_xml']} beside "
                                  f"{self.policy.path.name}: keep them together, or pass the task's MJCF")
        try:
            data = xml_path.read_bytes()
        except OSError as e:
            raise ControllerError(f"{xml_path}: cannot be read ({e.strerror or e})") from None
        digest = sha256(data)
        exported = digest == contract["task_xml_sha256"]  # the very file exported with the policy?
        try:
            model_name = ET.fromstring(data).get("model")
        except ET.ParseError as e:
            raise ControllerError(f"{xml_path}: not an MJCF file ({e})") from None
        if model_name != self.task:
            raise ControllerError(f"{xml_path} is the model of {model_name!r}, the policy {where} drives {self.task!r}: "
                                  f"use the task.xml exported with this policy")
        try:
            self.model = mujoco.MjModel.from_xml_path(str(xml_path))
        except ValueError as e:
            raise ControllerError(f"{xml_path}: MuJoCo cannot load it ({str(e).strip().splitlines()[0]})") from None

        def mismatch(problem: str) -> ControllerError:
            """The policy's contract and this MJCF disagree: the fault is task.xml's unless it is the very
            file exported with the policy (its sha256 matches), in which case the metadata was edited."""
            if exported:
                return ControllerError(f"{where}: the policy's metadata does not fit its own task.xml ({problem}): the "
                                       f"fault is in the policy file's metadata (edited or damaged); re-export the run "
                                       f"with `export-onnx`")
            return ControllerError(f"{xml_path}: {problem}; use the task.xml exported with this policy")

        names = contract["actuator_names"]
        for i, name in enumerate(names):
            j = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_ACTUATOR, name)
            if j != i:
                raise mismatch((f"no actuator {name!r}" if j < 0 else f"actuator {name!r} is number {j}, not {i}")
                               + f"; the policy drives {names} in that order")
        if self.model.nu != len(names):
            raise mismatch(f"{self.model.nu} actuators, the policy drives {len(names)}")
        episode = contract["episode"]
        sizes = {"nq": self.model.nq, "nv": self.model.nv, "nu": self.model.nu}
        for key, n in sizes.items():
            if episode[key] != n:
                raise mismatch(f"the model has {key}={n}, the policy's episode record {key}={episode[key]}")
        try:
            self.observe = Recipe.from_list(contract["observation_recipe"]).compile(self.model)
            self.action_map = ActionMap.from_list(contract["action_to_ctrl"], self.model.nu)
        except RecipeError as e:
            raise mismatch(str(e)) from None
        if self.observe.size != self.policy.observation_size:
            raise mismatch(f"the recipe reads {self.observe.size} entries, the policy takes {self.policy.observation_size}")
        if not exported:
            raise ControllerError(
                f"{xml_path}: sha256 {digest[:12]}... differs from the task.xml exported with {where} "
                f"({contract['task_xml_sha256'][:12]}...); use that file (export-onnx writes it beside the policy)")
        self.n_frames = int(contract["n_frames"])
        self.control_dt = float(contract["control_dt"])
        if not np.isclose(self.model.opt.timestep * self.n_frames, self.control_dt):
            raise mismatch(f"timestep {self.model.opt.timestep} x {self.n_frames} frames is not the policy's "
                           f"control_dt {self.control_dt}")
        spec = meta["env_spec"]
        self.goal_indices = np.asarray(meta["goal_indices"], np.int64)
        self.threshold = float(meta["success_threshold"])
        self.episode_length = int(spec["episode_length"])
        self.action_low, self.action_high = float(meta["action_low"]), float(meta["action_high"])
        self.splits = tuple(contract["episode"]["goals"])

    # --- one batch of episodes -----------------------------------------------------------------------------
    def start(self, qpos: np.ndarray, qvel: np.ndarray, ctrl: np.ndarray) -> tuple[mujoco.MjData, np.ndarray]:
        """A new ``MjData`` at ``qpos, qvel, ctrl`` (propagated) and its observation."""
        arrays = {name: _vector(name, value, n) for name, value, n in
                  (("qpos", qpos, self.model.nq), ("qvel", qvel, self.model.nv), ("ctrl", ctrl, self.model.nu))}
        d = mujoco.MjData(self.model)
        d.qpos[:], d.qvel[:], d.ctrl[:] = arrays["qpos"], arrays["qvel"], arrays["ctrl"]
        mujoco.mj_forward(self.model, d)
        return d, self.observe.read(d)

    def step(self, d: mujoco.MjData, action: np.ndarray) -> np.ndarray:
        """Apply one action (``n_frames`` physics steps); returns the next observation."""
        a = np.clip(_vector("action", action, self.policy.action_size), self.action_low, self.action_high)
        d.ctrl[:] = self.action_map.ctrl(a, d.qpos)
        for _ in range(self.n_frames):
            mujoco.mj_step(self.model, d)
        mujoco.mj_forward(self.model, d)
        return self.observe.read(d)

    def sample_starts(self, episodes: int, seed: int = 0, split: str = "random") -> list[tuple[np.ndarray, ...]]:
        """``episodes`` starts ``(qpos, qvel, ctrl, goal)`` drawn from the metadata's episode record."""
        if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
            raise ControllerError(f"episodes={episodes!r}: run at least one episode (a positive integer)")
        if split not in self.splits:
            raise ControllerError(f"split {split!r}: this task has {', '.join(self.splits)}")
        rng = np.random.default_rng(seed)
        return [sample_episode(self.contract["episode"], split, rng) for _ in range(episodes)]

    def rollout(self, starts: list[tuple[np.ndarray, ...]], steps: Optional[int] = None) -> dict[str, np.ndarray]:
        """Run the policy from ``starts`` for ``steps`` control steps (default: the episode length).

        Returns ``observations [T+1, N, S]``, ``goals [N, G]``, ``actions [T, N, A]`` (those the policy
        commanded; with ``action_delay`` N each is applied N steps later), ``distance [T, N]`` and
        ``success [T, N]`` (within the success threshold after each step)."""
        steps = self.episode_length if steps is None else int(steps)
        if not starts:
            raise ControllerError("no starts: run at least one episode")
        datas, obs = zip(*(self.start(q, v, c) for q, v, c, _ in starts))
        datas, obs = list(datas), np.stack(obs)
        goals = np.stack([np.asarray(g, np.float32) for *_, g in starts])
        observations, actions, distance = [obs], [], []
        self.policy.reset()  # a new history and hidden state for these episodes
        queue = [np.zeros((len(starts), self.policy.action_size), np.float32)] * self.action_delay
        for _ in range(steps):
            act = np.asarray(self.policy.act(self.policy.frame(obs.astype(np.float32)), goals))
            queue.append(act)
            obs = np.stack([self.step(d, a) for d, a in zip(datas, queue.pop(0))])
            observations.append(obs)
            actions.append(act)
            distance.append(np.linalg.norm(obs[:, self.goal_indices] - goals, axis=-1))
        distance = np.stack(distance) if distance else np.zeros((0, len(starts)))
        return {"observations": np.stack(observations), "goals": goals, "actions": np.stack(actions) if actions else
                np.zeros((0, len(starts), self.policy.action_size)), "distance": distance,
                "success": (distance < self.threshold).astype(np.float32)}

    def run(self, episodes: int = 10, seed: int = 0, split: str = "random",
            starts: Optional[list[tuple[np.ndarray, ...]]] = None) -> dict[str, Any]:
        """Whole episodes: ``success_rate`` (goal reached at any step), ``time_at_goal`` (steps within the
        threshold), ``final_distance``, as the JAX evaluation counts them. ``starts`` overrides sampling."""
        starts = starts if starts is not None else self.sample_starts(episodes, seed, split)
        res = self.rollout(starts)
        success, distance = res["success"], res["distance"]
        return {
            "task": self.task,
            "split": split,
            "episodes": len(starts),
            "success_rate": float(np.mean(success.max(axis=0))),
            "time_at_goal": float(np.mean(success.sum(axis=0))),
            "final_distance": float(np.mean(distance[-1])),
            "episode_length": self.episode_length,
            "control_dt": self.control_dt,
            "action_delay": self.action_delay,
            "mujoco_version": mujoco.__version__,
        }


def _vector(name: str, value: Any, size: int) -> np.ndarray:
    """``value`` as a finite float64 vector of ``size`` entries, or a :class:`ControllerError` naming it."""
    try:
        a = np.asarray(value, np.float64)
    except (TypeError, ValueError) as e:
        raise ControllerError(f"{name} is not an array of numbers ({e})") from None
    if a.shape != (size,):
        raise ControllerError(f"{name} has shape {a.shape}; this model needs ({size},)")
    if not np.isfinite(a).all():
        i = int(np.argwhere(~np.isfinite(a))[0, 0])
        raise ControllerError(f"{name}[{i}] is {a[i]}: the controller writes only finite values into MuJoCo")
    return a
