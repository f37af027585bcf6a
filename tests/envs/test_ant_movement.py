"""AntMovement: four directions as tasks, the reward along the direction, and the far goal for mlsh.inspect."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from envs.ant_movement import DIRECTIONS, GOAL_DISTANCE, AntMovement

ENV_ID = "mlsh/AntMovement-v0"


def test_tasks_are_four_directions_and_are_checked() -> None:
    env = AntMovement()
    rng = np.random.default_rng(0)
    assert {env.sample_task(rng) for _ in range(100)} == {0, 1, 2, 3} and env.train_tasks == [0, 1, 2, 3]
    np.testing.assert_array_equal(DIRECTIONS, [[1, 0], [0, 1], [-1, 0], [0, -1]])
    with pytest.raises(ValueError, match=r"AntMovement task must be .*0: right \(\+x\), 1: up"):
        env.task = 4
    for bad in (-0.1, float("nan"), True):
        with pytest.raises(ValueError, match="AntMovement ctrl_cost_weight must be a finite number >= 0"):
            AntMovement(ctrl_cost_weight=bad)
    assert gym.spec(ENV_ID).max_episode_steps == 1000


@pytest.mark.parametrize("task", range(4))
def test_reward_is_the_velocity_along_the_direction_minus_the_control_cost(task: int) -> None:
    env = AntMovement(ctrl_cost_weight=0.5)
    params = env.task_params([task, task])
    xy_before = np.zeros((2, 2))
    qpos = np.zeros((2, 15))
    qpos[:, :2] = [[1.0, 2.0], [-3.0, 0.5]]  # moved in one 0.05 s step
    action = np.full((2, 8), 0.5)
    reward, terminated, terms = env.outcome(params, xy_before, qpos, action)
    along = qpos[:, :2] @ DIRECTIONS[task] / env.dt
    np.testing.assert_allclose(terms["reward_velocity"], along)
    np.testing.assert_allclose(terms["reward_ctrl"], [-0.5 * 8 * 0.25] * 2)
    np.testing.assert_allclose(reward, along - 1.0)
    assert not terminated.any()


def test_goal_position_lies_far_along_the_direction_and_the_episode_never_terminates() -> None:
    env = gym.make(ENV_ID, max_episode_steps=220)
    env.reset(seed=0, options={"task": 1})
    np.testing.assert_allclose(env.unwrapped.goal_position, [0.0, GOAL_DISTANCE])
    env.action_space.seed(0)
    for step in range(1, 221):
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert not terminated and truncated == (step == 220)
        assert reward == pytest.approx(info["reward_velocity"] + info["reward_ctrl"])
