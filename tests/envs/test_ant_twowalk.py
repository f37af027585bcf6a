"""AntTwowalk: tasks, the negative-distance reward at known states, and the Ant body it is built on."""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from envs.ant_base import ANT_XML, OBS_DIM
from envs.ant_twowalk import AntTwowalk

ENV_ID = "mlsh/AntTwowalk-v0"


def test_the_body_is_gymnasiums_ant_v5() -> None:
    env = AntTwowalk()
    ant = mujoco.MjModel.from_xml_path(ANT_XML)
    assert ANT_XML.endswith("gymnasium/envs/mujoco/assets/ant.xml")
    assert env.model.nq == ant.nq == 15 and env.model.nu == ant.nu == 8
    np.testing.assert_array_equal(env.model.actuator_gear, ant.actuator_gear)
    np.testing.assert_array_equal(env.model.body_mass, ant.body_mass)
    assert env.dt == pytest.approx(0.05)
    assert env.observation_space.shape == (OBS_DIM,) == (29,)
    assert gym.spec(ENV_ID).max_episode_steps == 1000


@pytest.mark.parametrize(("task", "goal"), [(0, (0.0, 5.0)), (1, (5.0, 0.0))])
def test_reward_is_the_negative_distance_to_the_tasks_goal(task: int, goal: tuple[float, float]) -> None:
    env = AntTwowalk()
    env.reset(seed=0, options={"task": task})
    for xy in [(0.0, 0.0), goal, (3.0, 4.0)]:
        env.place_ant(xy)
        obs, reward, terminated, truncated, info = env.step(np.zeros(8))
        distance = float(np.hypot(*(obs[:2] - np.asarray(goal))))
        assert reward == pytest.approx(-distance)
        assert info["reward_distance"] == reward and info["distance_to_goal"] == pytest.approx(distance)
        assert not terminated and not truncated
        assert distance == pytest.approx(np.hypot(xy[0] - goal[0], xy[1] - goal[1]), abs=0.1)


def test_tasks_are_the_two_edges_and_are_checked() -> None:
    env = AntTwowalk(goal_distance=3.0)
    rng = np.random.default_rng(0)
    assert {env.sample_task(rng) for _ in range(50)} == {0, 1}
    np.testing.assert_array_equal(env.task_params([0, 1])["goal"], [[0.0, 3.0], [3.0, 0.0]])
    with pytest.raises(ValueError, match="AntTwowalk task must be 0 or 1"):
        env.task = 2
    with pytest.raises(ValueError, match="goal_distance must be positive"):
        AntTwowalk(goal_distance=0.0)


def test_the_episode_is_truncated_at_t_and_never_terminates_by_default() -> None:
    env = gym.make(ENV_ID, max_episode_steps=250)
    env.reset(seed=0)
    env.action_space.seed(0)
    for step in range(1, 251):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        assert truncated == (step == 250)
