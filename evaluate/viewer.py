"""Brax's HTML viewer for the Brax tasks: one episode per policy, all toward the same goal.

``run_episode(env, ...)`` runs one episode of any policy ``act(state [1, S], goal [1, G]) -> [1, A]``
(a JAX network or an ONNX session) and keeps the bodies' world poses at every step; ``render``
turns them into a page of brax's viewer (:mod:`brax.io.html`) with the goal drawn as a gold disc of
the success radius. The page loads three.js and brax's viewer script from their CDNs.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np

from deepdistill.core.rollout import host_rollout
from deepdistill.envs import GoalEnv

# act(state [1, S], goal [1, G]) -> action [1, A], on the host
HostPolicy = Callable[[np.ndarray, np.ndarray], Any]

GOAL_RGBA = (1.0, 0.84, 0.0, 1.0)
GOAL_GEOM = "goal_marker"
"""The marker's group name in the scene (a static world geom)."""
GOAL_HALF_HEIGHT = 0.002
"""Half-thickness of the goal disc (m): a flat marker that hides nothing."""


def is_brax_task(env: GoalEnv) -> bool:
    """Whether ``env`` runs on Brax / MJX physics (and so has bodies for the viewer to draw)."""
    try:
        from deepdistill.envs.brax_tasks import BraxGoalEnv
    except ImportError:
        return False
    return isinstance(env, BraxGoalEnv)


@dataclasses.dataclass(frozen=True)
class Episode:
    """The bodies' world poses over one episode (brax convention: the world body left out)."""

    pos: np.ndarray
    """``[T + 1, L, 3]``: the reset state, then every step."""
    rot: np.ndarray
    """``[T + 1, L, 4]``: quaternions (w, x, y, z)."""
    goal: np.ndarray
    """``[G]``."""
    distance: np.ndarray
    """``[T]``: distance to the goal after each step."""

    def summary(self, success_threshold: float) -> dict[str, Any]:
        return {"success": bool((self.distance < success_threshold).any()),
                "final_distance": float(self.distance[-1]), "steps": int(len(self.distance))}


def run_episode(env: GoalEnv, act: HostPolicy, eval_key: jax.Array, num_episodes: int, split: str,
                reset: Optional[Callable[[], None]] = None) -> Episode:
    """The first episode of ``rollout(eval_key, num_episodes, split)`` (same start, same goal) with a
    host policy, the bodies' poses recorded at every step (``core.rollout.host_rollout``), so JAX and
    ONNX policies run the same code (``env`` may be the task seen through a student's sensors;
    ``reset()`` clears a policy's history)."""
    r = host_rollout(env, act, eval_key, num_episodes, split, first=1, record=lambda s: s.pipeline_state.x, reset=reset)
    x = r["recorded"]
    return Episode(pos=x.pos[:, 0], rot=x.rot[:, 0], goal=r["goals"][0], distance=r["distance"][:, 0])


@dataclasses.dataclass(frozen=True)
class _Frame:
    """What ``brax.io.json.dumps`` reads of a pipeline state: the bodies' poses ``x``."""

    x: Any


def goal_marker(goal: np.ndarray, radius: float) -> dict[str, Any]:
    """A static gold disc of ``radius`` at the goal, in the viewer's geom format.

    The Brax tasks' goals are positions: ``(x, y)`` (drawn on the floor) or ``(x, y, z)``."""
    z = float(goal[2]) if len(goal) >= 3 else GOAL_HALF_HEIGHT
    return {"name": "Cylinder", "link_idx": -1, "pos": [float(goal[0]), float(goal[1]), z], "rot": [1.0, 0.0, 0.0, 0.0],
            "rgba": list(GOAL_RGBA), "size": [float(radius), GOAL_HALF_HEIGHT, 0.0]}


def scene(env: GoalEnv, episode: Episode) -> dict[str, Any]:
    """Brax's viewer scene (``brax.io.json``) of ``episode``, played back in real time, goal marked."""
    from brax import base as brax_base
    from brax.io import json as brax_json

    physics = env.physics  # type: ignore[attr-defined]  (a BraxGoalEnv)
    sys = physics.sys.tree_replace({"opt.timestep": physics.dt})  # one frame per environment step
    frames = [_Frame(brax_base.Transform(pos=p, rot=r)) for p, r in zip(episode.pos, episode.rot)]
    d = json.loads(brax_json.dumps(sys, frames))
    key = GOAL_GEOM
    while key in d["geoms"]:  # a body of the robot's model may be called so (the pusher has a "goal")
        key += "_"
    d["geoms"][key] = [goal_marker(episode.goal, env.spec.success_threshold)]
    return d


def render(env: GoalEnv, episode: Episode) -> str:
    """A full-window page of brax's viewer showing ``episode``."""
    from brax.io import html as brax_html

    return brax_html.render_from_json(json.dumps(scene(env, episode)), height=None, colab=False, base_url=None)


def file_names(names: list[str]) -> dict[str, str]:
    """``trajectory_<policy>.html`` per report name, unique: ``teacher``, ``student:student_d4`` ->
    ``trajectory_student_d4.html``, ``student:s1`` -> ``trajectory_student_s1.html``, ``onnx:onnx_d4``."""
    out: dict[str, str] = {}
    for name in names:
        kind, _, run = name.partition(":")
        stem = run if run.startswith(kind) else "_".join(p for p in (kind, run) if p)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)
        base, k = stem, 1
        while f"trajectory_{stem}.html" in out.values():
            k += 1
            stem = f"{base}_{k}"
        out[name] = f"trajectory_{stem}.html"
    return out


def pages(env: GoalEnv, policies: Sequence[tuple[str, HostPolicy]], eval_key: jax.Array, num_episodes: int,
          split: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Every policy on the first episode of ``rollout(eval_key, num_episodes, split)``, one page each.
    A policy is ``(name, act)``, or ``(name, act, env, reset)`` when it runs in its own view of the task
    (a student's sensors) and keeps a history.

    Returns the listing for ``report.json`` (``split``, ``goal``, and per policy its ``file``,
    ``success``, ``final_distance``, ``steps``) and the pages ``{file name: html}``."""
    files = file_names([p[0] for p in policies])
    listing: dict[str, Any] = {"split": split, "goal": None, "policies": {}}
    html: dict[str, str] = {}
    for name, act, *own in policies:
        own_env, reset = own if own else (env, None)
        ep = run_episode(own_env, act, eval_key, num_episodes, split, reset)
        listing["goal"] = [round(float(v), 4) for v in ep.goal]
        listing["policies"][name] = {"file": files[name], **ep.summary(env.spec.success_threshold)}
        html[files[name]] = render(env, ep)
    return listing, html


def markdown(listing: dict[str, Any]) -> list[str]:
    """The report.md lines linking the pages."""
    goal = ", ".join(f"{v:g}" for v in listing["goal"])
    out = ["## Trajectories in brax's viewer", "",
           f"One {listing['split']}-goal episode (the first of the trajectory plot): the same start and the same "
           f"goal ({goal}; the gold disc shows the success radius) for every policy. Open the pages side by side "
           "(they load brax's viewer from its CDN).", ""]
    for name, p in listing["policies"].items():
        reached = "reaches the goal" if p["success"] else "does not reach the goal"
        out.append(f"- [{name}]({p['file']}): {reached}, final distance {p['final_distance']:.3f} "
                   f"after {p['steps']} steps")
    return out
