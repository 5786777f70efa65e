"""The controller contract on every MJX task: the recipe rebuilds the env's observation from MuJoCo
state, native MuJoCo tracks MJX under the same policy (sim-to-sim), the native controller runs where
JAX cannot be imported, and bad inputs get one line naming the fix.

The policies are tiny random ONNX graphs written with ``onnx.helper`` (``action = tanh(W [obs, goal])``)
carrying the metadata the exporter writes (``export.writer.run_metadata``'s ``controller`` record and
names), so no training or jax2onnx conversion runs here. Each task compiles one reset and one step
(XLA's cheap optimisation level), shared by the recipe and sim-to-sim checks.
"""

import functools
import hashlib
import json
import os
import subprocess
import sys

import jax
import mujoco
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deepdistill.distill.native_eval import native_controller, sim2sim
from deepdistill.export import metadata
from deepdistill.export.contract import TASK_XML, controller_metadata
from deepdistill.export.mujoco_controller import ControllerError, MujocoController
from deepdistill.teacher.envs import make_env
from deepdistill.teacher.envs.brax_tasks import BACKEND

MJX_TASKS = sorted(n for n, b in BACKEND.items() if b == "mjx")
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
SIM2SIM_TOL = 1e-3


def write_policy(env, out, seed=0, task=None):
    """A random ``tanh(W [obs, goal])`` policy of ``env`` with schema-2 metadata, and task.xml beside it."""
    spec = env.spec
    S, G, A = spec.state_size, spec.goal_size, spec.action_size
    controller, names, xml = controller_metadata(env)
    W = (np.random.default_rng(seed).standard_normal((S + G, A)) / np.sqrt(S + G)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Concat", ["observation", "goal"], ["x"], axis=1), helper.make_node("MatMul", ["x", "W"], ["y"]),
         helper.make_node("Tanh", ["y"], ["action"])], "random_policy",
        [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["B", S]),
         helper.make_tensor_value_info("goal", TensorProto.FLOAT, ["B", G])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["B", A])], [numpy_helper.from_array(W, "W")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {
        "schema_version": metadata.SCHEMA_VERSION, "model": "policy", "task": task or spec.name, "env_spec": spec.to_dict(),
        "observation_size": S, "goal_size": G, "action_size": A, "goal_indices": list(spec.goal_indices),
        "action_low": spec.action_low, "action_high": spec.action_high, "success_threshold": spec.success_threshold,
        "inputs": [{"name": "observation", "shape": ["B", S]}, {"name": "goal", "shape": ["B", G]}],
        "outputs": [{"name": "action", "shape": ["B", A]}], "architecture": {}, "provenance": {},
        "deepdistill_version": "test", "parity": {}, **names, "controller": controller,
    }
    helper.set_model_props(model, metadata.encode(meta))
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, out / "policy.onnx")
    if xml is not None:
        (out / TASK_XML).write_bytes(xml)
    return out / "policy.onnx"


@functools.lru_cache(maxsize=None)
def env_of(name):
    return make_env(name, episode_length=20)


@pytest.mark.parametrize("name", MJX_TASKS)
def test_recipe_rebuilds_the_observation_and_native_mujoco_tracks_mjx(name, tmp_path):
    env = env_of(name)
    ctl = native_controller(env, MujocoController(write_policy(env, tmp_path)).policy)
    states = []
    res = sim2sim(env, ctl, jax.random.PRNGKey(3), episodes=3, steps=10,
                  jit=functools.partial(jax.jit, compiler_options=FAST), states=states)
    # the recipe on MuJoCo state built from the MJX state's qpos, qvel, ctrl gives the env's observation
    S = env.spec.state_size
    observe = env.recipe.compile(ctl.model)
    worst = 0.0
    for s in states:
        for i in range(3):
            d = mujoco.MjData(ctl.model)
            d.qpos[:], d.qvel[:], d.ctrl[:] = s.pipeline_state.q[i], s.pipeline_state.qd[i], s.pipeline_state.ctrl[i]
            mujoco.mj_forward(ctl.model, d)
            ref = np.asarray(s.obs[i, :S])
            worst = max(worst, float(np.max(np.abs(observe.read(d) - ref) / (1.0 + np.abs(ref)))))
    assert worst < 1e-5, f"{name}: recipe differs from the env's observation by {worst:.2g}"
    assert len(states) == 11 and res["sim2sim_steps"] == 10
    assert res["sim2sim_obs_err"] <= SIM2SIM_TOL, f"{name}: {res}"
    # the XML native MuJoCo loads is the physics MJX steps: same solver settings, walls included
    mj = ctl.model
    assert (mj.opt.timestep, mj.opt.iterations, mj.opt.ls_iterations, mj.opt.solver, mj.opt.disableflags) == (
        env.mj_model.opt.timestep, env.mj_model.opt.iterations, env.mj_model.opt.ls_iterations, env.mj_model.opt.solver,
        env.mj_model.opt.disableflags)
    assert mj.ngeom == env.physics.sys.ngeom and mj.nbody == env.physics.sys.nbody
    if "maze" in name:
        assert sum(mujoco.mj_id2name(mj, mujoco.mjtObj.mjOBJ_GEOM, g).startswith("wall_") for g in range(mj.ngeom)) > 4
