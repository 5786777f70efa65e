"""Student networks: the teacher's ``CRLNetworks`` class at a smaller depth and width.

A student is the same three networks (phi(s,a), psi(g), the actor) built from the same residual
block, so it can stand in for the teacher anywhere: evaluation, the critic, the ONNX export.
Depth 0 is allowed (an input layer and a head, no residual block).
"""

from __future__ import annotations

from typing import Optional

from deepdistill.teacher.networks import CRLNetworks, validate_depth


def make_student(
    teacher: CRLNetworks,
    depth: int,
    width: int,
    actor_depth: Optional[int] = None,
    critic_depth: Optional[int] = None,
    actor_width: Optional[int] = None,
    critic_width: Optional[int] = None,
) -> CRLNetworks:
    """A student with the teacher's interfaces (state, goal, action and representation sizes)."""
    for name, v in (("depth", depth), ("actor_depth", actor_depth), ("critic_depth", critic_depth)):
        if v is not None:
            validate_depth(v, "--" + name.replace("_", "-"))
    return CRLNetworks(
        state_size=teacher.state_size,
        goal_size=teacher.goal_size,
        action_size=teacher.action_size,
        repr_dim=teacher.repr_dim,
        actor_width=width if actor_width is None else actor_width,
        actor_depth=depth if actor_depth is None else actor_depth,
        critic_width=width if critic_width is None else critic_width,
        critic_depth=depth if critic_depth is None else critic_depth,
    )
