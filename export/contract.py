"""The controller contract of an exported policy: ``task.xml`` and the metadata that drives it.

For a task on MuJoCo physics (the MJX tasks), ``controller_metadata(env)`` returns the record the
exporter stores in the ``controller`` metadata field, and ``env.physics.xml`` is written beside the
ONNX files as ``task.xml``. For other tasks (pure-JAX ones such as ``point_maze``, and ``pusher`` on
brax's spring pipeline) the record says plainly that there is no native recipe, and why.

``controller`` (when ``native`` is true):

========================  ==========================================================================
``native``                true
``task_xml``              file name of the MJCF beside the ONNX file (``task.xml``)
``task_xml_sha256``       sha256 of its bytes (a controller refuses another file)
``mujoco_version``        the MuJoCo that compiled it at export
``observation_recipe``    ordered entries, see :mod:`deepdistill.envs.recipe`
``observation_timing``    when the entries are read (after ``mj_forward`` of the state after an action)
``actuator_names``        ``ctrl`` order, as named in task.xml
``ctrl_range``            ``[[low, high], ...]`` per actuator (MuJoCo clamps ``ctrl`` into it)
``action_to_ctrl``        the action map (after clipping the action into ``[action_low, action_high]``)
``timestep``              MuJoCo's ``opt.timestep`` (s), as in task.xml
``n_frames``              ``mj_step`` calls per action
``control_dt``            ``timestep * n_frames`` (s)
``episode``               start and goal distributions per split, see :func:`deepdistill.envs.recipe.sample_episode`
========================  ==========================================================================

Every field's type, range and finiteness, and the sizes that must agree across them, are declared
in :mod:`deepdistill.export.schema` (``CONTROLLER``) and checked whenever a policy file loads.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from deepdistill.envs.recipe import OBSERVATION_TIMING, actuator_names

TASK_XML = "task.xml"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def controller_metadata(env: Any) -> tuple[dict[str, Any], dict[str, Any], bytes | None]:
    """``(controller record, {"observation_names", "goal_names"}, task.xml bytes or None)`` for ``env``."""
    spec = env.spec
    if not getattr(env, "native", False):
        backend = getattr(env, "backend", "jax")
        reason = (f"{spec.name} is a pure-JAX task with no MuJoCo model" if backend == "jax" else
                  f"{spec.name} runs on brax's {backend} pipeline, which native MuJoCo does not reproduce")
        names = [f"state[{i}]" for i in range(spec.state_size)]
        return ({"native": False, "reason": reason + ": no observation recipe, no task.xml"},
                {"observation_names": names, "goal_names": [names[i] for i in spec.goal_indices]}, None)
    import mujoco

    mj = env.mj_model
    xml = env.physics.xml.encode()
    observe = env.recipe.compile(mj)
    if observe.size != spec.state_size:
        raise ValueError(f"{spec.name}: the observation recipe gives {observe.size} entries, the task's state has {spec.state_size}")
    timestep, n_frames = float(mj.opt.timestep), int(env.physics.n_frames)
    record = {
        "native": True,
        "task_xml": TASK_XML,
        "task_xml_sha256": sha256(xml),
        "mujoco_version": mujoco.__version__,
        "observation_recipe": env.recipe.to_list(),
        "observation_timing": OBSERVATION_TIMING,
        "actuator_names": actuator_names(mj),
        "ctrl_range": np.asarray(mj.actuator_ctrlrange, np.float64).tolist(),
        "action_to_ctrl": env.action_map.to_list(),
        "timestep": timestep,
        "n_frames": n_frames,
        "control_dt": timestep * n_frames,
        "episode": env.episode_distribution(),
    }
    names = list(observe.names)
    return record, {"observation_names": names, "goal_names": [names[i] for i in spec.goal_indices]}, xml
