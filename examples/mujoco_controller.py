"""Drive an exported student in native MuJoCo (the C engine): no JAX, no brax, no training code.

The controller reads everything from the policy's metadata and the ``task.xml`` beside it: how each
observation entry is read from the MuJoCo state, how the action becomes ``ctrl``, the control rate,
and where episodes start and goals lie (see ``deepdistill.export.mujoco_controller``).

    python examples/mujoco_controller.py examples/pretrained/reacher/policy.onnx --episodes 20
    python examples/mujoco_controller.py runs/reacher/onnx_d2_w64 --json native.json
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import tyro

from deepdistill.core.cli import run_cli
from deepdistill.core.errors import ConfigError
from deepdistill.core.rundir import check_writable_file, write_json_atomic
from deepdistill.export.mujoco_controller import MujocoController


@dataclasses.dataclass(frozen=True)
class Args:
    policy: tyro.conf.Positional[str]
    """policy.onnx, or the directory holding it (written by `export-onnx`, with task.xml beside it)."""
    episodes: int = 10
    seed: int = 0
    """Seed of the starts and goals (drawn from the distribution recorded in the metadata)."""
    split: str = "random"
    """Goal distribution: `train` or one of the task's eval splits (`random`; mazes also `far`)."""
    xml: Optional[str] = None
    """The task's MJCF (default: task.xml beside the policy)."""
    json: Optional[str] = None
    """Also write the results to this JSON file."""
    view: bool = False
    """Show the first episode in MuJoCo's viewer (needs a display); headless by default."""


def main(args: Args) -> None:
    """Bad input (files, split, counts) raises a UserError: one line on stderr, exit code 2, before any work."""
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be at least 1 (got {args.episodes})")
    if args.json:
        check_writable_file(args.json, "--json")  # before the rollout, so its results are never lost
    ctl = MujocoController(args.policy, args.xml)
    starts = ctl.sample_starts(args.episodes, args.seed, args.split)
    if args.view:
        view(ctl, starts[0])
    result = {**ctl.run(starts=starts, split=args.split), "policy": str(ctl.policy.path), "seed": args.seed}
    print(f"{result['task']}: success {result['success_rate']:.2f}, time at goal {result['time_at_goal']:.1f} of "
          f"{result['episode_length']} steps, final distance {result['final_distance']:.3f} over {result['episodes']} "
          f"{args.split} episodes (native MuJoCo {result['mujoco_version']}, control every {result['control_dt'] * 1e3:.0f} ms"
          + (f", actions applied {result['action_delay']} step(s) late as trained" if result["action_delay"] else "") + ")")
    if args.json:
        write_json_atomic(args.json, result)


def view(ctl: MujocoController, start) -> None:
    """One episode in MuJoCo's passive viewer, at the control rate."""
    import time

    import mujoco.viewer

    import numpy as np

    qpos, qvel, ctrl, goal = start
    d, obs = ctl.start(qpos, qvel, ctrl)
    ctl.policy.reset()  # a student with a history or hidden state starts the episode afresh
    queue = [np.zeros(ctl.policy.action_size, np.float32)] * ctl.action_delay  # its trained latency, simulated
    with mujoco.viewer.launch_passive(ctl.model, d) as v:
        for _ in range(ctl.episode_length):
            if not v.is_running():
                break
            t0 = time.perf_counter()
            queue.append(ctl.policy.act(ctl.policy.frame(obs.astype("float32")), goal.astype("float32")))
            obs = ctl.step(d, queue.pop(0))
            v.sync()
            time.sleep(max(0.0, ctl.control_dt - (time.perf_counter() - t0)))


if __name__ == "__main__":
    run_cli("mujoco_controller", Args, main)
