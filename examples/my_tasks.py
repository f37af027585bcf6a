"""A user's own task distribution, trained with `python -m mlsh.train env.id=my_tasks:Corridor-v0`.

Run from this folder (or put it on PYTHONPATH); Gymnasium imports `my_tasks` before making
`Corridor-v0` because of the `module:` prefix of the id.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs import TaskEnv


class Corridor(TaskEnv[int]):
    """Walk to the end of a corridor that pays; which end pays is the task (never observed)."""

    state_attributes = ("_pos",)  # what changes within an episode: checkpoints save it as plain data

    def __init__(self, length: int = 6) -> None:
        self.length = length
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)  # 0: left, 1: right
        self._pos = length // 2
        super().__init__()  # sets a first task, so the env is usable before set_task

    def sample_task(self, rng: np.random.Generator) -> int:
        return int(rng.integers(2))  # 0: the left end pays, 1: the right end

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # type: ignore[override]
        super().reset(seed=seed)
        self._apply_reset_options(options)  # honours reset(options={"task": ...}); never redraws the task
        self._pos = self.length // 2
        return self._obs(), {}

    def step(self, action: Any):  # type: ignore[override]
        self._pos = min(max(self._pos + (1 if int(action) == 1 else -1), 0), self.length)
        paying_end = self.length if self.task == 1 else 0
        reward = float(self._pos == paying_end)
        return self._obs(), reward, reward > 0, False, {"reward_end": reward}

    def oracle_action(self) -> int:
        return int(self.task)

    def _obs(self) -> np.ndarray:
        return np.array([self._pos / self.length], dtype=np.float32)


gym.register("Corridor-v0", entry_point=Corridor, max_episode_steps=20)
