"""SubPolicyEnv: Gymnasium's checker, macro-step semantics, and SB3 PPO training a master on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy

from agents import MLSHAgent, SubPolicyEnv
from mlsh.errors import ConfigError
from tests.conftest import RANDOM_END_ID


def _bandits(task: int, **kwargs: Any) -> gym.Env:
    env = gym.make("mlsh/MovementBandits-v0", **kwargs)
    env.unwrapped.task = task
    return env


@pytest.mark.filterwarnings("ignore:.*is different from the unwrapped version")
def test_subpolicy_env_passes_check_env(tiny_run: Path) -> None:
    agent = MLSHAgent.load(tiny_run, device="cpu")
    env = SubPolicyEnv(_bandits(0, render_mode="rgb_array"), agent)
    check_env(env)
    assert env.action_space == gym.spaces.Discrete(2)
    assert env.observation_space == agent.observation_space


def test_a_macro_step_is_macro_len_steps_of_one_subpolicy(tiny_run: Path) -> None:
    agent = MLSHAgent.load(tiny_run, device="cpu")
    env = SubPolicyEnv(_bandits(1), agent, macro_len=7, deterministic=True)
    obs, _ = env.reset(seed=4)
    plain = _bandits(1)
    plain_obs, _ = plain.reset(seed=4)
    np.testing.assert_array_equal(obs, plain_obs)
    steps = []
    for macro in range(8):  # 7 x 7 = 49 steps, then 1 step left of the 50-step episode
        k = macro % 2
        obs, reward, terminated, truncated, info = env.step(k)
        expected = 0.0
        for _ in range(info["primitive_steps"]):
            action, _ = agent.subpolicy(k).predict(plain_obs, deterministic=True)
            plain_obs, r, _, plain_truncated, _ = plain.step(action)
            expected += r
        np.testing.assert_array_equal(obs, plain_obs)
        assert reward == expected and info["subpolicy"] == k and truncated == plain_truncated
        steps.append(info["primitive_steps"])
    assert steps == [7] * 7 + [1] and truncated and not terminated


def test_episode_ends_cut_the_macro_step_short() -> None:
    class Constant:
        def predict(self, obs: Any, deterministic: bool = False) -> tuple[int, None]:
            return 1, None

    env = SubPolicyEnv(gym.make(RANDOM_END_ID), [Constant()], macro_len=4)
    env.reset(seed=0)
    lengths = []
    for _ in range(40):
        _, reward, terminated, truncated, info = env.step(0)
        lengths.append(info["primitive_steps"])
        if terminated or truncated:
            assert info["primitive_steps"] <= 4
            env.reset()
        else:
            assert info["primitive_steps"] == 4
    assert min(lengths) < 4  # RandomEnd terminates with probability 0.15 per step


class GoToGoal:
    """Scripted sub-policy of MovementBandits: walk to goal k (its position is in the observation), then stay."""

    def __init__(self, goal: int) -> None:
        self.goal = goal

    def predict(self, obs: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = False):
        delta = obs[2 + 2 * self.goal : 4 + 2 * self.goal] - obs[:2]
        if np.hypot(*delta) < 0.08:  # 32 of the plane's 400: inside the 50-unit reward radius
            return 0, None
        if abs(delta[0]) >= abs(delta[1]):
            return (1 if delta[0] > 0 else 2), None
        return (3 if delta[1] > 0 else 4), None


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sb3_ppo_learns_a_master_on_moving_bandits() -> None:
    env = SubPolicyEnv(_bandits(1), [GoToGoal(0), GoToGoal(1)], macro_len=10)
    picks_right, _ = evaluate_policy(_Fixed(1), env, n_eval_episodes=20)
    picks_wrong, _ = evaluate_policy(_Fixed(0), env, n_eval_episodes=20)
    assert picks_right > 30 and picks_wrong < 5  # the task pays only at goal 1
    model = PPO("MlpPolicy", env, n_steps=50, batch_size=50, learning_rate=3e-3, seed=0, device="cpu")
    model.learn(1000)
    learned, _ = evaluate_policy(model, env, n_eval_episodes=20, deterministic=True)
    assert learned >= 0.9 * picks_right, (learned, picks_right)


class _Fixed:
    def __init__(self, k: int) -> None:
        self.k = k

    def predict(self, obs: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = False):
        return np.full(len(obs), self.k), None


def test_mismatched_agent_and_bad_macro_len_are_refused(tiny_run: Path) -> None:
    agent = MLSHAgent.load(tiny_run, device="cpu")
    with pytest.raises(ConfigError, match="wrap an env of the task distribution"):
        SubPolicyEnv(gym.make("mlsh/FourRooms-v0"), agent)
    with pytest.raises(ConfigError, match="macro_len must be a positive integer"):
        SubPolicyEnv(_bandits(0), [GoToGoal(0)], macro_len=0)
