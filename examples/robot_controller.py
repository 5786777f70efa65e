"""A robot control loop on the exported student: point_maze driven at a fixed rate, every action
from onnxruntime.

The controller side uses only ``deepdistill.export.runtime`` (numpy + onnxruntime). The "robot" is
the task's simulator, standing in for hardware; it is the only part that uses JAX.

    export-onnx --student runs/student
    python examples/robot_controller.py --policy runs/student --episodes 10 --rate-hz 50
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import tyro

from deepdistill.export.runtime import OnnxPolicy


@dataclasses.dataclass(frozen=True)
class Args:
    policy: str = "runs/student"
    """policy.onnx, or the directory holding it (written by `export-onnx`)."""
    episodes: int = 10
    rate_hz: float = 50.0
    """Control rate; 0 runs as fast as possible."""
    split: str = "hard"
    """Which starts and goals: `train` or one of the task's eval splits."""
    seed: int = 0


class SimulatedRobot:
    """The task's simulator behind a numpy interface: ``reset() -> obs``, ``step(action) -> (obs, success)``."""

    def __init__(self, task: str, split: str, seed: int):
        import jax

        from deepdistill.envs import make_env

        self.env, self.split, self.key = make_env(task), split, jax.random.PRNGKey(seed)
        self._reset = jax.jit(lambda k: self.env.reset_split(k, split))
        self._step = jax.jit(self.env.step)
        self._split_key = jax.random.split
        self.episode_length = self.env.spec.episode_length

    def reset(self) -> np.ndarray:
        self.key, k = self._split_key(self.key)
        self.state = self._reset(k)
        return np.asarray(self.state.obs)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, bool]:
        self.state = self._step(self.state, action)
        return np.asarray(self.state.obs), bool(self.state.metrics["success"])


def main(args: Args) -> None:
    policy = OnnxPolicy(args.policy)
    robot = SimulatedRobot(policy.task, args.split, args.seed)
    period = 1.0 / args.rate_hz if args.rate_hz > 0 else 0.0
    latencies, successes = [], []
    for episode in range(args.episodes):
        obs, reached, tick = robot.reset(), False, time.perf_counter()
        policy.reset()  # a student with a history or hidden state starts each episode afresh
        for _ in range(robot.episode_length):
            state, goal = policy.split(obs)
            t0 = time.perf_counter()
            action = policy.act(policy.frame(state), goal)  # its sensor frame (the state, for most students)
            latencies.append(time.perf_counter() - t0)
            obs, success = robot.step(action)
            reached |= success
            if period:
                tick += period
                time.sleep(max(0.0, tick - time.perf_counter()))
        successes.append(reached)
        print(f"episode {episode}: {'success' if reached else 'failure'}, final distance "
              f"{float(robot.state.metrics['distance']):.2f}")
    us = np.array(latencies) * 1e6
    print(f"success {np.mean(successes):.0%} over {args.episodes} {args.split} episodes; policy latency "
          f"p50 {np.percentile(us, 50):.1f} us, p99 {np.percentile(us, 99):.1f} us on {policy.provider}")


if __name__ == "__main__":
    main(tyro.cli(Args))
