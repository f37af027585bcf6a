"""Tests for envs/movement_bandits.py: dynamics, rewards, goals, episode end, validation and the oracle."""

from __future__ import annotations

from collections import deque

import gymnasium as gym
import numpy as np
import pytest

from envs import MovementBandits, rendering

ENV_ID = "mlsh/MovementBandits-v0"
SIZE, STEP, RADIUS = 400.0, 20.0, 50.0
EPISODE_LEN = 50


def _positions(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Agent ``[2]`` and goals ``[2, 2]`` in plane units (float64)."""
    scaled = obs.astype(np.float64) * SIZE
    return scaled[:2], scaled[2:].reshape(2, 2)


def _toward(agent: np.ndarray, target: np.ndarray) -> int:
    """A greedy lattice move toward ``target`` (x first), 0 once within half a step on both axes."""
    dx, dy = target - agent
    if abs(dx) > STEP / 2:
        return 1 if dx > 0 else 2
    if abs(dy) > STEP / 2:
        return 3 if dy > 0 else 4
    return 0


def test_observation_and_start_state() -> None:
    env = gym.make(ENV_ID)
    obs, info = env.reset(seed=0)
    assert obs.shape == (6,)
    assert obs.dtype == np.float32
    np.testing.assert_array_equal(obs[:2], [0.5, 0.5])
    assert set(info) == {"reward_goal", "distance_to_goal"}
    env.action_space.seed(0)
    for _ in range(300):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert np.all((obs >= 0.0) & (obs <= 1.0))
        if terminated or truncated:
            obs, _ = env.reset()
            np.testing.assert_array_equal(obs[:2], [0.5, 0.5])


@pytest.mark.parametrize(("action", "delta"), [(0, (0, 0)), (1, (1, 0)), (2, (-1, 0)), (3, (0, 1)), (4, (0, -1))])
def test_action_moves_one_step_along_its_axis(action: int, delta: tuple[int, int]) -> None:
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=0)
    goals = obs[2:].copy()
    for k in range(1, 4):
        obs, *_ = env.step(action)
        np.testing.assert_allclose(obs[:2], 0.5 + k * np.array(delta) * STEP / SIZE, atol=1e-7)
        np.testing.assert_array_equal(obs[2:], goals)


@pytest.mark.parametrize(("action", "edge"), [(1, (1.0, 0.5)), (2, (0.0, 0.5)), (3, (0.5, 1.0)), (4, (0.5, 0.0))])
def test_position_clips_at_plane_edge(action: int, edge: tuple[float, float]) -> None:
    env = gym.make(ENV_ID)
    env.reset(seed=0)
    for _ in range(15):  # 10 steps reach the edge from the centre
        obs, *_ = env.step(action)
    np.testing.assert_allclose(obs[:2], edge, atol=1e-7)


def test_reward_only_within_radius_of_correct_goal() -> None:
    env = gym.make(ENV_ID)
    rewarded_inside = wrong_goal_visits = 0
    for episode in range(12):
        task = episode % 2
        env.unwrapped.task = task
        obs, _ = env.reset(seed=episode)
        # Visit the wrong goal first, then the correct one.
        target = 1 - task
        for _ in range(EPISODE_LEN):
            agent, goals = _positions(obs)
            if np.linalg.norm(agent - goals[target]) < STEP / 2:
                target = task
            obs, reward, terminated, truncated, info = env.step(_toward(agent, goals[target]))
            agent, goals = _positions(obs)
            correct_distance = np.linalg.norm(agent - goals[task])
            assert reward == (1.0 if correct_distance < RADIUS else 0.0)
            assert info["reward_goal"] == reward
            assert info["distance_to_goal"] == pytest.approx(correct_distance, abs=1e-3)
            rewarded_inside += reward == 1.0
            if np.linalg.norm(agent - goals[1 - task]) < RADIUS:
                wrong_goal_visits += 1
                assert reward == 0.0
            if terminated or truncated:
                break
    assert rewarded_inside > 50
    assert wrong_goal_visits > 50


def test_goals_redrawn_each_reset_and_far_apart() -> None:
    env = gym.make(ENV_ID)
    env.unwrapped.task = 0
    previous = None
    all_goals = []
    for episode in range(200):
        obs, _ = env.reset(seed=0) if episode == 0 else env.reset()
        _, goals = _positions(obs)
        assert np.linalg.norm(goals[0] - goals[1]) >= 100.0 - 1e-3
        if previous is not None:
            assert not np.array_equal(goals, previous)
        previous = goals
        all_goals.append(goals)
    all_goals = np.array(all_goals)
    # Spread over the plane, not stuck in one region.
    assert all_goals.min() < 40.0 and all_goals.max() > 360.0
    assert env.unwrapped.task == 0


def test_truncates_after_fifty_steps() -> None:
    env = gym.make(ENV_ID)
    assert env.spec.max_episode_steps == EPISODE_LEN
    for episode in range(2):
        env.reset(seed=episode)
        for t in range(1, EPISODE_LEN + 1):
            _, _, terminated, truncated, _ = env.step(0)
            assert terminated is False
            assert truncated is (t == EPISODE_LEN)


@pytest.mark.parametrize("task", [2, -1, 0.5])
def test_invalid_task_raises(task: object) -> None:
    env = gym.make(ENV_ID)
    message = r"MovementBandits task must be 0 or 1 \(the correct goal\)"
    with pytest.raises(ValueError, match=message):
        env.unwrapped.task = task
    with pytest.raises(ValueError, match=message):
        env.unwrapped.set_task(task)
    with pytest.raises(ValueError, match=message):
        env.reset(options={"task": task})
    assert env.unwrapped.task in (0, 1)


@pytest.mark.parametrize("action", [5, -1, 1.5])
def test_invalid_action_raises(action: object) -> None:
    env = MovementBandits()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"MovementBandits action must be an int in \[0, 5\)"):
        env.step(action)


def test_invalid_constructor_argument_raises() -> None:
    with pytest.raises(ValueError, match=r"min_goal_distance \(400.0\) must be below size \(400.0\)"):
        MovementBandits(min_goal_distance=400.0)


def _min_steps_to_goal(goal: np.ndarray) -> int:
    """BFS over the 21x21 lattice of reachable positions: fewest moves to end a step inside the goal disk."""
    num_cells = int(SIZE / STEP)  # 20 steps span the plane
    start = (num_cells // 2, num_cells // 2)

    def inside(cell: tuple[int, int]) -> bool:
        return float(np.hypot(cell[0] * STEP - goal[0], cell[1] * STEP - goal[1])) < RADIUS

    distance = {start: 0}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if inside(cell):
            return distance[cell]
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nxt = (min(max(cell[0] + dx, 0), num_cells), min(max(cell[1] + dy, 0), num_cells))
            if nxt not in distance:
                distance[nxt] = distance[cell] + 1
                queue.append(nxt)
    raise AssertionError(f"goal {goal} unreachable")


def test_oracle_achieves_brute_force_optimum() -> None:
    env = gym.make(ENV_ID)
    steps_seen = set()
    for task in (0, 1):
        env.unwrapped.task = task
        for seed in range(30):
            obs, _ = env.reset(seed=seed)
            steps = _min_steps_to_goal(_positions(obs)[1][task])
            steps_seen.add(steps)
            # Reward counts after each move: entering at move d >= 1 pays on moves d..50; d = 0 pays all 50.
            optimum = EPISODE_LEN - max(steps - 1, 0)
            episode_return = 0.0
            while True:
                obs, reward, terminated, truncated, _ = env.step(env.unwrapped.oracle_action())
                episode_return += reward
                if terminated or truncated:
                    break
            assert episode_return == optimum, f"task {task} seed {seed}: oracle {episode_return}, optimum {optimum}"
    assert len(steps_seen) > 5  # the episodes cover a range of distances


def test_vector_env_per_env_tasks_drive_rewards_across_autoresets() -> None:
    vec = gym.vector.SyncVectorEnv(
        [lambda: gym.make(ENV_ID) for _ in range(4)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    tasks = [0, 1, 1, 0]
    drive_to = [0, 1, 0, 1]  # envs 0 and 1 head for the paying goal, envs 2 and 3 for the other one
    vec.set_attr("task", tasks)
    obs, _ = vec.reset(seed=0)
    returns = np.zeros(4)
    truncations = np.zeros(4, dtype=int)
    for _ in range(3 * EPISODE_LEN):
        positions = [_positions(o) for o in obs]
        actions = np.array([_toward(agent, goals[drive_to[i]]) for i, (agent, goals) in enumerate(positions)])
        obs, reward, terminated, truncated, info = vec.step(actions)
        for i, task in enumerate(tasks):
            # On truncation the returned obs is already the next episode's; the reward belongs to the final one.
            step_obs = info["final_obs"][i] if truncated[i] else obs[i]
            agent, goals = _positions(step_obs)
            distance = np.linalg.norm(agent - goals[task])
            assert reward[i] == (1.0 if distance < RADIUS else 0.0)
            step_info = info["final_info"] if truncated[i] else info
            assert step_info["distance_to_goal"][i] == pytest.approx(distance, abs=1e-3)
        assert not terminated.any()
        returns += reward
        truncations += truncated
    assert np.all(truncations == 3)
    assert list(vec.get_attr("task")) == tasks
    assert returns[0] >= 3 * 25 and returns[1] >= 3 * 25
    assert returns[2] < returns[0] / 2 and returns[3] < returns[1] / 2
    vec.close()


def test_render_rgb_array() -> None:
    env = gym.make(ENV_ID, render_mode="rgb_array")
    env.unwrapped.task = 1
    obs, _ = env.reset(seed=0)
    first = env.step(0)[0]
    np.testing.assert_array_equal(first, obs)  # rendering leaves the dynamics alone
    image = env.render()
    assert image.shape == (200, 200, 3) and image.dtype == np.uint8
    _, goals = _positions(obs)

    def pixel(xy: np.ndarray) -> np.ndarray:
        return image[int((SIZE - xy[1]) * 0.5), int(xy[0] * 0.5)]

    np.testing.assert_array_equal(image[100, 100], rendering.AGENT)
    np.testing.assert_array_equal(pixel(goals[1]), rendering.GREEN)  # the correct goal
    np.testing.assert_array_equal(pixel(goals[0]), rendering.BLUE)
    with pytest.raises(ValueError, match="render_mode must be None or 'rgb_array'"):
        MovementBandits(render_mode="human")
