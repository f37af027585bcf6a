"""A plain Gymnasium env as a distribution of one task (``envs.SingleTask``, ``env.id=<plain id>``)."""

from __future__ import annotations

import logging
import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs import SingleTask
from mlsh.config import EnvConfig
from mlsh.envs import make_env, make_vec_env
from mlsh.errors import ConfigError


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "Ant-v5"])
def test_single_task_passes_check_env_and_keeps_the_inner_spaces(env_id: str) -> None:
    env = SingleTask(env_id)
    inner = gym.make(env_id)
    assert env.observation_space == inner.observation_space
    assert env.action_space == inner.action_space
    check_env(env, skip_render_check=True)


def test_single_task_has_one_task_and_refuses_others() -> None:
    env = SingleTask("Pendulum-v1")
    rng = np.random.default_rng(3)
    assert env.sample_task(rng) == env.sample_test_task(rng) == env.task == 0
    with pytest.raises(ValueError, match=r"SingleTask\(Pendulum-v1\) task must be 0"):
        env.task = 1


def test_single_task_steps_like_the_inner_env_and_pickles() -> None:
    env, inner = SingleTask("Pendulum-v1"), gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=5, options={"task": 0})
    ref, _ = inner.reset(seed=5)
    np.testing.assert_array_equal(obs, ref)
    action = np.array([0.3], dtype=np.float32)
    np.testing.assert_array_equal(env.step(action)[0], inner.step(action)[0])
    clone = pickle.loads(pickle.dumps(env))
    assert clone.env_id == "Pendulum-v1" and clone.action_space == env.action_space


def test_make_env_wraps_a_plain_env_once_with_a_notice(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mlsh.envs"):
        env = make_env(EnvConfig(id="Pendulum-v1", max_episode_steps=7))
        vec = make_vec_env(EnvConfig(id="Pendulum-v1"), 2)
    assert isinstance(env.unwrapped, SingleTask) and env.unwrapped.env_id == "Pendulum-v1"
    assert env.spec.max_episode_steps == 7
    assert vec.num_envs == 2 and vec.get_attr("task") == (0, 0)
    notices = [r.getMessage() for r in caplog.records if "distribution of one task" in r.getMessage()]
    assert len(notices) <= 1  # once per id and process (an earlier test may have given it already)


def test_make_env_refuses_part_of_the_contract_and_names_a_missing_module() -> None:
    class HalfContract(gym.Env):
        observation_space = gym.spaces.Discrete(2)
        action_space = gym.spaces.Discrete(2)

        def sample_task(self, rng: np.random.Generator) -> int:
            return 0

    gym.register("HalfContractForTest-v0", entry_point=HalfContract)
    with pytest.raises(ConfigError, match="does not follow the task contract"):
        make_env(EnvConfig(id="HalfContractForTest-v0"))
    with pytest.raises(ConfigError, match="module 'no_such_module_xyz' cannot be imported"):
        make_env(EnvConfig(id="no_such_module_xyz:Env-v0"))


def test_flat_ppo_on_a_one_task_env_keeps_its_episodes_across_cycles() -> None:
    """W = 0, U = 1 starts a cycle every iteration; a one-task env's episodes must not be cut there (Pendulum's
    run 200 steps: with 50-step rollouts each episode spans 4 iterations), while a two-task env's are."""
    from mlsh.meta import MetaLearner
    from tests.conftest import small_config

    def lengths(env_id: str) -> list[int]:
        cfg = small_config(env_id, num_subpolicies=1, warmup_iters=0, joint_iters=1, num_slots=1)
        cfg.train.rollout_len = 50
        learner = MetaLearner(cfg)
        seen = []
        for _ in range(3):
            learner.train_iteration()
            seen.append(int(learner.collector.episode_length.max()))
        return seen

    assert lengths("Pendulum-v1") == [50, 100, 150]
    assert max(lengths("mlsh/MovementBandits-v0")) <= 50  # a new task each iteration: new episodes
