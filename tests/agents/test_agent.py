"""MLSHAgent: SB3's evaluate_policy, save/load, the macro clock in predict, sub-policies, adaptation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv

from agents import MLSHAgent
from mlsh.errors import CheckpointError, ConfigError
from mlsh.evaluation import AdaptOptions, CompareOptions, evaluate_run
from mlsh.trainer import train
from tests.conftest import CONTINUOUS_ID, small_config

MACRO_LEN = 5  # small_config's


def _env(task: int) -> gym.Env:
    env = gym.make("mlsh/MovementBandits-v0")
    env.unwrapped.task = task
    return env


def _own_episode_returns(agent: MLSHAgent, seeds: list[int], episodes: int, task: int) -> list[float]:
    """Episode returns of a plain loop over single envs, in the order SB3 finishes them."""
    per_env = []
    for seed in seeds:
        env, returns = _env(task), []
        obs, _ = env.reset(seed=seed)
        for _ in range(episodes):
            state, start, total, done = None, True, 0.0, False
            while not done:
                action, state = agent.predict(obs, state, np.array([start]), deterministic=True)
                obs, reward, terminated, truncated, _ = env.step(action)
                total, start, done = total + reward, False, terminated or truncated
            returns.append(total)
            obs, _ = env.reset()
        per_env.append(returns)
    return [per_env[i][e] for e in range(episodes) for i in range(len(seeds))]


@pytest.mark.filterwarnings("ignore:Evaluation environment is not wrapped with a ``Monitor``")
def test_sb3_evaluate_policy_on_a_loaded_agent_matches_a_plain_loop(tiny_run: Path) -> None:
    agent = MLSHAgent.load(tiny_run, device="cpu")
    vec = DummyVecEnv([lambda: _env(1), lambda: _env(1)])
    vec.seed(11)
    rewards, lengths = evaluate_policy(agent, vec, n_eval_episodes=4, deterministic=True, return_episode_rewards=True)
    assert lengths == [50, 50, 50, 50]  # MovementBandits' time limit
    assert rewards == _own_episode_returns(agent, [11, 12], episodes=2, task=1)


def test_save_load_round_trip_gives_identical_actions(tiny_run: Path, tmp_path: Path) -> None:
    agent = MLSHAgent.load(tiny_run, device="cpu", slot=1)
    saved = agent.save(tmp_path / "agent.pt")
    loaded = MLSHAgent.load(saved, device="cpu")
    obs = np.random.default_rng(0).random((64, 6), dtype=np.float32)
    first, _ = agent.predict(obs, deterministic=True)
    second, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(first, second)
    agent.set_random_seed(3)
    loaded.set_random_seed(3)
    np.testing.assert_array_equal(agent.predict(obs)[0], loaded.predict(obs)[0])
    assert loaded.master_task == agent.master_task
    for key, value in agent.policy.state_dict().items():
        assert torch.equal(value, loaded.policy.state_dict()[key]), key
    # A saved agent is a checkpoint mlsh.evaluate reads too.
    assert (
        evaluate_run(saved, num_tasks=2, adapt=AdaptOptions(iters=1), compare=CompareOptions(oracle=False)).num_tasks
        == 2
    )


def test_load_keeps_the_most_trained_master(tiny_run: Path) -> None:
    # small_config: 2 slots, W + U = 3, no stagger, 10 iterations: both slots trained 1 iteration on their task.
    agent = MLSHAgent.load(tiny_run, device="cpu")
    slot0 = MLSHAgent.load(tiny_run, device="cpu", slot=0)
    assert torch.equal(agent.policy.masters.actor.layers[0].weight, slot0.policy.masters.actor.layers[0].weight)
    assert agent.master_task in (0, 1)
    with pytest.raises(ConfigError, match=r"slot must be an integer in \[0, 2\)"):
        MLSHAgent.load(tiny_run, slot=2)


def test_predict_decides_every_macro_step_and_at_episode_starts(tiny_run: Path) -> None:
    agent = MLSHAgent.load(tiny_run, device="cpu", seed=0)
    decided: list[int] = []  # how many envs' masters chose, at each step where some did
    policy_step = agent.policy.step

    def recording(obs: torch.Tensor, sub_idx: torch.Tensor, decide: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        if decide.any():
            decided.append(int(decide.sum()))
        return policy_step(obs, sub_idx, decide, *args, **kwargs)

    agent.policy.step = recording  # type: ignore[method-assign]
    obs = np.random.default_rng(1).random((3, 6), dtype=np.float32)
    actions, state = agent.predict(obs, episode_start=np.ones(3, dtype=bool))
    assert actions.shape == (3,) and decided == [3]
    np.testing.assert_array_equal(state[1], [MACRO_LEN - 1] * 3)
    chosen = state[0].copy()
    for step in range(1, MACRO_LEN):
        start = np.array([False, step == 2, False])
        actions, state = agent.predict(obs, state, start)
        np.testing.assert_array_equal(state[0][[0, 2]], chosen[[0, 2]])  # no decision mid macro step
    assert decided == [3, 1]  # only env 1's episode start, at step 2
    np.testing.assert_array_equal(state[1], [0, MACRO_LEN - 3, 0])
    agent.predict(obs, state, np.zeros(3, dtype=bool))
    assert decided == [3, 1, 2]  # envs 0 and 2 finished their macro step; env 1 is mid-step


def test_batched_predict_equals_one_env_at_a_time(tiny_run: Path) -> None:
    agent = MLSHAgent.load(tiny_run, device="cpu")
    obs = np.random.default_rng(2).random((5, 6), dtype=np.float32)
    batch, _ = agent.predict(obs, deterministic=True)
    single = [agent.predict(o, deterministic=True)[0] for o in obs]
    assert all(np.ndim(a) == 0 for a in single)
    np.testing.assert_array_equal(batch, single)
    with pytest.raises(ConfigError, match=r"does not fit the agent's observation space \(6,\)"):
        agent.predict(np.zeros(4, dtype=np.float32))


def test_greedy_master_takes_the_most_likely_sub_policy_and_samples_actions(tiny_run: Path) -> None:
    agent = MLSHAgent.load(tiny_run, device="cpu")
    obs = np.random.default_rng(4).random((64, 6), dtype=np.float32)
    start = np.ones(64, dtype=bool)
    most_likely, state = agent.predict(obs, episode_start=start, deterministic=True)
    greedy = [agent.predict(obs, episode_start=start, greedy_master=True) for _ in range(2)]
    for _, greedy_state in greedy:
        np.testing.assert_array_equal(greedy_state[0], state[0])  # the master's argmax, every time
    assert not np.array_equal(greedy[0][0], most_likely)  # the sub-policies' actions are still sampled
    sampled = [agent.predict(obs, episode_start=start)[1][0] for _ in range(2)]
    assert not all(np.array_equal(s, state[0]) for s in sampled)  # the untrained master's samples vary


def test_subpolicy_acts_like_the_agent_with_that_subpolicy_active(tiny_run: Path) -> None:
    agent = MLSHAgent.load(tiny_run, device="cpu")
    obs = np.random.default_rng(3).random((16, 6), dtype=np.float32)
    for k in range(2):
        forced = (np.full(16, k), np.full(16, 3))  # mid macro step: no master decision
        expected, state = agent.predict(obs, forced, deterministic=True)
        np.testing.assert_array_equal(state[0], k)
        np.testing.assert_array_equal(agent.subpolicy(k).predict(obs, deterministic=True)[0], expected)
    with pytest.raises(ConfigError, match=r"Sub-policy index must be an integer in \[0, 2\)"):
        agent.subpolicy(2)


def test_adapt_trains_only_a_fresh_master(tiny_run: Path) -> None:
    agent = MLSHAgent.load(tiny_run, device="cpu")
    before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    env = _env(0)
    curve = agent.adapt(env, iterations=2)
    assert len(curve) == 2 and all(x is None or 0.0 <= x <= 50.0 for x in curve)
    after = agent.policy.state_dict()
    for key, value in before.items():
        same = torch.equal(value, after[key])
        assert same == (not key.startswith("masters.")), key
    assert agent.master_task == 0
    with pytest.raises(ConfigError, match="iterations must be a positive integer"):
        agent.adapt(env, iterations=0)


def test_adapt_takes_master_settings(tiny_run: Path) -> None:
    def adapted_master(iterations: int, **master: Any) -> torch.Tensor:
        agent = MLSHAgent.load(tiny_run, device="cpu")
        agent.adapt(_env(0), iterations=iterations, master=master)
        return agent.policy.state_dict()["masters.actor.layers.0.weight"].clone()

    # Adam moves each weight by about lr per step: with lr 1e-12 the new master stays as initialised.
    assert torch.allclose(adapted_master(1, lr=1e-12), adapted_master(2, lr=1e-12, gamma=0.5), atol=1e-9)
    assert not torch.allclose(adapted_master(1), adapted_master(2), atol=1e-4)
    with pytest.raises(ConfigError, match=r"master.gae_lambda must lie in \[0, 1\], got 1.5."):
        MLSHAgent.load(tiny_run, device="cpu").adapt(_env(0), iterations=1, master={"gae_lambda": 1.5})


def test_continuous_actions_are_batched_and_clipped(tmp_path: Path) -> None:
    train(small_config(CONTINUOUS_ID), tmp_path)
    agent = MLSHAgent.load(tmp_path, device="cpu", seed=0)
    obs = np.zeros((7, 2), dtype=np.float32)
    actions, state = agent.predict(obs)
    assert actions.shape == (7, 2) and actions.dtype == np.float32
    assert np.all(np.abs(actions) <= 1.0)
    single, _ = agent.predict(obs[0], deterministic=True)
    assert single.shape == (2,)


def test_loading_a_missing_checkpoint_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="No checkpoint at .*pass the run directory"):
        MLSHAgent.load(tmp_path / "nowhere")
