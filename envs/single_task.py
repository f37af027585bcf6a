"""Any Gymnasium env as a task distribution of one task (a yardstick for the trainer)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs.base import TaskEnv, validate_index_task


class SingleTask(TaskEnv[int]):
    """A plain Gymnasium env, given the task contract with a distribution of one task (task 0).

    ## Description
    Wraps the env made by ``gymnasium.make(env_id, **env_kwargs)`` so that the MLSH trainer, the
    evaluation suite and the agents run on it unchanged: ``sample_task`` and ``sample_test_task``
    always return 0, and setting the task to 0 changes nothing. With ``algo=flat_ppo`` this trains
    one PPO policy on the env, which is how the trainer is checked against Stable-Baselines3 on
    Gymnasium's own MuJoCo tasks (docs: results, locomotion). ``mlsh.train env.id=Ant-v5`` wraps a
    plain env like this automatically.

    ## Action Space
    The wrapped env's.

    ## Observation Space
    The wrapped env's.

    ## Rewards
    The wrapped env's; its ``info`` is passed on unchanged.

    ## Starting State
    The wrapped env's; ``reset(seed=...)`` seeds the wrapped env.

    ## Episode End
    The wrapped env's, including its registered time limit (``TimeLimit`` of the inner env).

    ## Arguments
    ``env_id`` (a Gymnasium id, e.g. ``"Ant-v5"``), ``env_kwargs`` (keyword arguments of
    ``gymnasium.make``), ``render_mode``.

    ## Version History
    * v0: first version.
    """

    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None = None, render_mode: str | None = None) -> None:
        kwargs = dict(env_kwargs or {})
        if render_mode is not None:
            kwargs["render_mode"] = render_mode
        self.inner = gym.make(env_id, **kwargs)
        self.env_id = env_id
        self.observation_space = self.inner.observation_space
        self.action_space = self.inner.action_space
        self.metadata = dict(self.inner.metadata)
        self.render_mode = self.inner.render_mode
        super().__init__()

    def sample_task(self, rng: np.random.Generator) -> int:
        """The only task, 0 (``rng`` is not drawn from)."""
        return 0

    @property
    def train_tasks(self) -> list[int]:
        return [0]

    def validate_task(self, task: Any) -> int:
        return validate_index_task(task, 1, "the wrapped env has one task", f"SingleTask({self.env_id})")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self._apply_reset_options(options)
        inner_options = {k: v for k, v in (options or {}).items() if k != "task"} or None
        return self.inner.reset(seed=seed, options=inner_options)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        return self.inner.step(action)

    @property
    def agent_position(self) -> np.ndarray | None:
        """For a MuJoCo env, the first two coordinates of its ``data.qpos`` (the torso's x, y for Ant-v5 and
        the other free-jointed bodies); None otherwise."""
        data = getattr(self.inner.unwrapped, "data", None)
        if data is None or not hasattr(data, "qpos"):
            return None
        return np.asarray(data.qpos[:2], dtype=float).copy()

    def render(self) -> Any:
        return self.inner.render()

    def close(self) -> None:
        self.inner.close()
