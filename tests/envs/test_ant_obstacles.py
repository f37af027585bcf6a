"""AntObstacles: the course (start, goal, walls), the chasing enemy and the sparse reward."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from envs.ant_obstacles import ENEMY_HOMES, GOAL_XY, START_XY, AntObstacles

ENV_ID = "mlsh/AntObstacles-v0"


def test_start_bottom_left_goal_top_right_and_a_long_episode() -> None:
    env = gym.make(ENV_ID)
    obs, info = env.reset(seed=0)
    np.testing.assert_allclose(obs[:2], START_XY, atol=0.1)
    assert START_XY[0] < 5 and START_XY[1] < 5 and GOAL_XY[0] > 27 and GOAL_XY[1] > 27
    assert gym.spec(ENV_ID).max_episode_steps == 2000
    home = ENEMY_HOMES[env.unwrapped.task]
    assert (info["enemy_x"], info["enemy_y"]) == home


def test_reward_is_one_on_reaching_the_goal_and_zero_elsewhere() -> None:
    env = AntObstacles()
    env.reset(seed=0)
    for xy, reached in [(START_XY, False), ((16.0, 29.0), False), ((28.0, 28.5), True)]:
        env.place_ant(xy)
        _, reward, terminated, _, info = env.step(np.zeros(8))
        assert (reward, terminated, info["goal_reached"], info["reward_goal"]) == (
            float(reached),
            reached,
            reached,
            float(reached),
        )


def test_the_enemy_chases_a_nearby_ant_and_pushes_it_back() -> None:
    env = AntObstacles()
    env.reset(seed=0, options={"task": 1})  # enemy waits at (16, 16)
    env.place_ant((11.0, 16.0))  # 5 to its left: within the trigger radius 6
    for _ in range(100):
        _, _, _, _, info = env.step(np.zeros(8))
    assert info["enemy_x"] < 12.5, "the enemy came for the ant"
    assert info["x_position"] < 10.0, "and pushed it back"


def test_the_enemy_stays_home_while_the_ant_is_far_and_returns_there() -> None:
    env = AntObstacles()
    env.reset(seed=0, options={"task": 0})  # bottom corridor, (16, 5.5)
    for _ in range(20):
        info = env.step(np.zeros(8))[4]
    np.testing.assert_allclose((info["enemy_x"], info["enemy_y"]), ENEMY_HOMES[0], atol=0.05)
    qpos = env.data.qpos.copy()
    qpos[15:17] = (24.0, 5.5)  # displaced 8 from home, the ant 21 away
    env.set_state(qpos, np.zeros_like(env.data.qvel))
    for _ in range(200):
        info = env.step(np.zeros(8))[4]
    assert abs(info["enemy_x"] - ENEMY_HOMES[0][0]) < 1.0


def test_interior_walls_block_the_direct_route() -> None:
    env = AntObstacles()
    env.reset(seed=0, options={"task": 2})
    env.place_ant((6.0, 8.0))  # below the wall at y = 11 (face at 10.5), x in [0, 21]
    torso = env.model.body("torso").id
    ys = []
    for _ in range(100):
        env.data.xfrc_applied[torso, 1] = 10 * 9.81 * env.model.body_subtreemass[torso]
        ys.append(env.step(np.zeros(8))[0][1])
    assert max(ys) < 10.5


def test_tasks_are_the_enemy_corridors() -> None:
    env = AntObstacles()
    rng = np.random.default_rng(0)
    assert {env.sample_task(rng) for _ in range(60)} == {0, 1, 2}
    with pytest.raises(ValueError, match="AntObstacles task must be"):
        env.task = 3
