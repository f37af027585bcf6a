"""Tests for envs/key_door.py: observation, key pickup, door rewards, layout draws, oracle and rendering."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from envs import KeyDoor, rendering
from envs.key_door import optimal_return

ENV_ID = "mlsh/KeyDoor-v0"
SIZE, STEP, RADIUS = 400.0, 20.0, 50.0
EPISODE_LEN = 100


def _layout(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Agent ``[2]``, key ``[2]``, doors ``[2, 2]`` in plane units, and has_key."""
    scaled = obs[:8].astype(np.float64) * SIZE
    return scaled[:2], scaled[2:4], scaled[4:8].reshape(2, 2), bool(obs[8])


def _toward(agent: np.ndarray, target: np.ndarray) -> int:
    """A greedy lattice move toward ``target`` (x first), 0 once within half a step on both axes."""
    dx, dy = target - agent
    if abs(dx) > STEP / 2:
        return 1 if dx > 0 else 2
    if abs(dy) > STEP / 2:
        return 3 if dy > 0 else 4
    return 0


def test_observation_layout_and_start_state() -> None:
    env = gym.make(ENV_ID)
    assert env.observation_space.shape == (9,) and env.spec.max_episode_steps == EPISODE_LEN
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    assert set(info) == {"reward_door", "has_key"}
    agent, key, doors, has_key = _layout(obs)
    np.testing.assert_array_equal(agent, [200.0, 200.0])
    assert has_key is info["has_key"] is env.unwrapped.has_key
    env.action_space.seed(1)
    for _ in range(150):
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert obs[8] in (0.0, 1.0) and bool(obs[8]) is info["has_key"]
        np.testing.assert_allclose(_layout(obs)[1], key, atol=1e-3)  # key and doors fixed within an episode
        np.testing.assert_allclose(_layout(obs)[2], doors, atol=1e-3)
        assert not terminated
        if truncated:
            break
    assert truncated


@pytest.mark.parametrize(("action", "delta"), [(0, (0, 0)), (1, (1, 0)), (2, (-1, 0)), (3, (0, 1)), (4, (0, -1))])
def test_moves_and_clipping_as_in_movement_bandits(action: int, delta: tuple[int, int]) -> None:
    env = gym.make(ENV_ID)
    env.reset(seed=0)
    for k in range(1, 16):
        obs, *_ = env.step(action)
        expected = np.clip(200.0 + min(k, 10) * STEP * np.array(delta), 0.0, SIZE)
        np.testing.assert_allclose(_layout(obs)[0], expected, atol=1e-3)


def test_key_and_doors_are_redrawn_and_separated() -> None:
    env = gym.make(ENV_ID)
    layouts = []
    start_with_key = 0
    for episode in range(400):
        obs, info = env.reset(seed=episode)
        agent, key, doors, has_key = _layout(obs)
        assert np.linalg.norm(doors[0] - doors[1]) >= 100.0 - 1e-3
        assert min(np.linalg.norm(key - doors[0]), np.linalg.norm(key - doors[1])) >= 100.0 - 1e-3
        # The key is held from the start exactly when drawn within the radius of the start.
        exact_key = env.unwrapped.key_position
        assert has_key is info["has_key"] is bool(np.hypot(*(exact_key - agent)) < RADIUS)
        start_with_key += has_key
        layouts.append(obs[2:8])
    layouts = np.array(layouts)
    assert len(np.unique(layouts, axis=0)) == 400
    assert layouts.min() < 0.05 and layouts.max() > 0.95
    assert 0 < start_with_key < 60


def test_key_pickup_sets_has_key_for_the_rest_of_the_episode() -> None:
    env = gym.make(ENV_ID, max_episode_steps=300)
    picked = 0
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        agent, key, doors, has_key = _layout(obs)
        if has_key:
            continue
        while not has_key:
            obs, _, _, _, info = env.step(_toward(agent, key))
            agent, _, _, has_key = _layout(obs)
            assert has_key is info["has_key"]
            assert has_key is bool(np.linalg.norm(agent - key) < RADIUS)  # collected on the first step inside
        picked += 1
        far_corner = SIZE - np.round(key / SIZE) * SIZE
        for _ in range(60):  # walk away: the key stays collected
            obs, _, _, _, info = env.step(_toward(agent, far_corner))
            agent = _layout(obs)[0]
            assert obs[8] == 1.0 and info["has_key"]
    assert picked >= 15


def test_reset_option_has_key_starts_holding_the_key_and_draws_the_same_layout() -> None:
    env = gym.make(ENV_ID)
    for seed in range(5):
        plain, _ = env.reset(seed=seed, options={"task": 1})
        held, info = env.reset(seed=seed, options={"task": 1, "has_key": True})
        assert held[8] == 1.0 and info["has_key"] and env.unwrapped.has_key
        np.testing.assert_array_equal(held[:8], plain[:8])
        door = env.unwrapped.door_positions[1]
        agent = _layout(held)[0]
        reward = 0.0
        for _ in range(40):  # straight to the correct door: it pays without a detour to the key
            obs, reward, *_ = env.step(_toward(agent, door))
            agent = _layout(obs)[0]
            if reward:
                break
        assert reward == 1.0
        assert env.reset(seed=seed, options={"has_key": False})[0][8] == plain[8]


def test_reward_needs_the_key_and_the_correct_door() -> None:
    """Visit correct door, wrong door, key, wrong door, correct door; reward only on the last leg's steps."""
    env = gym.make(ENV_ID, max_episode_steps=400)
    at_door_without_key = at_wrong_door_with_key = rewarded = 0
    for episode in range(16):
        task = episode % 2
        env.unwrapped.task = task
        obs, _ = env.reset(seed=100 + episode)
        _, key, doors, _ = _layout(obs)
        route = [doors[task], doors[1 - task], key, doors[1 - task], doors[task]]
        leg = 0
        for _ in range(400):
            agent, _, _, has_key = _layout(obs)
            if leg < len(route) - 1 and np.all(np.abs(route[leg] - agent) <= STEP / 2):
                leg += 1
            obs, reward, terminated, truncated, info = env.step(_toward(agent, route[leg]))
            agent, _, _, has_key = _layout(obs)
            near_correct = np.linalg.norm(agent - doors[task]) < RADIUS
            near_wrong = np.linalg.norm(agent - doors[1 - task]) < RADIUS
            assert reward == (1.0 if has_key and near_correct else 0.0)
            assert info["reward_door"] == reward
            at_door_without_key += near_correct and not has_key
            at_wrong_door_with_key += near_wrong and has_key
            rewarded += reward
            if near_wrong:
                assert reward == 0.0
            if terminated or truncated:
                break
    assert at_door_without_key > 20 and at_wrong_door_with_key > 20 and rewarded > 200


def test_truncates_after_100_steps_without_termination() -> None:
    env = gym.make(ENV_ID)
    env.reset(seed=0)
    for t in range(1, EPISODE_LEN + 1):
        _, _, terminated, truncated, _ = env.step(0)
        assert terminated is False
        assert truncated is (t == EPISODE_LEN)


def _brute_force_optimum(key: np.ndarray, door: np.ndarray, steps: int) -> int:
    """Best return by dynamic programming over every (lattice x, lattice y, has_key) state and step.

    Applies the env's rules directly: moves of one lattice step clipped to the plane, the key collected
    when a position (start or after a step) is within the radius, reward 1 per step ending with the
    key within the radius of the correct door.
    """
    n = int(SIZE / STEP) + 1
    coords = np.arange(n) * STEP
    xs, ys = np.meshgrid(coords, coords, indexing="ij")
    near_key = np.hypot(xs - key[0], ys - key[1]) < RADIUS
    near_door = np.hypot(xs - door[0], ys - door[1]) < RADIUS
    idx = np.arange(n)
    ii, jj = np.meshgrid(idx, idx, indexing="ij")
    successors = []
    for dx, dy in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
        successors.append((np.clip(ii + dx, 0, n - 1), np.clip(jj + dy, 0, n - 1)))
    value = np.zeros((2, n, n))  # value[has_key, i, j] with the remaining steps
    for _ in range(steps):
        new = np.full((2, n, n), -np.inf)
        for has_key in (0, 1):
            for ni, nj in successors:
                key_after = np.maximum(has_key, near_key[ni, nj]).astype(int)
                reward = (key_after == 1) & near_door[ni, nj]
                new[has_key] = np.maximum(new[has_key], reward + value[key_after, ni, nj])
        value = new
    centre = n // 2
    return int(value[int(near_key[centre, centre]), centre, centre])


def test_oracle_return_equals_brute_force_optimum() -> None:
    env = gym.make(ENV_ID)
    returns = set()
    for task in (0, 1):
        env.unwrapped.task = task
        for seed in range(30):
            obs, _ = env.reset(seed=seed)
            _, key, doors, _ = _layout(obs)
            key, doors = env.unwrapped.key_position, env.unwrapped.door_positions  # exact float64 positions
            optimum = _brute_force_optimum(key, doors[task], EPISODE_LEN)
            assert env.unwrapped.optimal_return(EPISODE_LEN) == optimum
            assert optimal_return(np.array([200.0, 200.0]), key, doors[task], bool(obs[8]), EPISODE_LEN) == optimum
            episode_return = 0.0
            while True:
                obs, reward, terminated, truncated, _ = env.step(env.unwrapped.oracle_action())
                episode_return += reward
                if terminated or truncated:
                    break
            assert episode_return == optimum, f"task {task} seed {seed}: oracle {episode_return}, optimum {optimum}"
            returns.add(optimum)
    assert len(returns) > 10  # the layouts cover a range of distances


def test_optimal_return_counts_steps_left() -> None:
    key, door = np.array([200.0, 300.0]), np.array([200.0, 100.0])
    # Key disk entered at y = 260 (3 moves); door disk at y = 140 from there (6 more): first reward on move 9.
    assert optimal_return(np.array([200.0, 200.0]), key, door, False, 100) == 100 - 9 + 1
    assert optimal_return(np.array([200.0, 200.0]), key, door, True, 100) == 100 - 3 + 1
    assert optimal_return(np.array([200.0, 120.0]), key, door, True, 7) == 7
    assert optimal_return(np.array([200.0, 200.0]), key, door, False, 8) == 0


@pytest.mark.parametrize("task", [2, -1, 0.5, "a", True])
def test_invalid_task_raises(task: object) -> None:
    env = gym.make(ENV_ID)
    with pytest.raises(ValueError, match=r"KeyDoor task must be 0 or 1 \(the correct door\)"):
        env.unwrapped.task = task
    with pytest.raises(ValueError, match=r"KeyDoor task must be 0 or 1"):
        env.reset(options={"task": task})


@pytest.mark.parametrize("action", [5, -1, 1.5])
def test_invalid_action_raises(action: object) -> None:
    env = KeyDoor()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"KeyDoor action must be an int in \[0, 5\)"):
        env.step(action)


def test_invalid_constructor_arguments_raise() -> None:
    with pytest.raises(ValueError, match=r"size / 2 \(200.0\) must be a positive multiple of step_size \(30"):
        KeyDoor(step_size=30.0)
    with pytest.raises(ValueError, match=r"radius \(10.0\) must exceed step_size / sqrt\(2\) \(14.14\)"):
        KeyDoor(radius=10.0)
    with pytest.raises(ValueError, match=r"min_door_distance \(250.0\) must be in \[0, size / 2\)"):
        KeyDoor(min_door_distance=250.0)
    with pytest.raises(ValueError, match="render_mode must be None or 'rgb_array'"):
        KeyDoor(render_mode="human")


def test_render_rgb_array() -> None:
    env = gym.make(ENV_ID, render_mode="rgb_array", max_episode_steps=300)
    env.unwrapped.task = 1
    for seed in range(10):
        obs, _ = env.reset(seed=seed)
        if not obs[8]:
            break
    _, key, doors, _ = _layout(obs)
    image = env.render()
    assert image.shape == (200, 200, 3) and image.dtype == np.uint8

    def pixel(xy: np.ndarray) -> np.ndarray:
        return image[int((SIZE - xy[1]) * 0.5), int(xy[0] * 0.5)]

    np.testing.assert_array_equal(image[100, 100], rendering.AGENT)
    np.testing.assert_array_equal(pixel(key), rendering.YELLOW)
    np.testing.assert_array_equal(pixel(doors[0]), rendering.BLUE)
    np.testing.assert_array_equal(pixel(doors[1]), rendering.BLUE)
    assert (image == rendering.GREEN).all(axis=2).any()  # the correct door's ring
    agent = _layout(obs)[0]
    while not obs[8]:
        obs, *_ = env.step(_toward(agent, key))
        agent = _layout(obs)[0]
    image = env.render()
    assert not (image == rendering.YELLOW).all(axis=2).any()  # the collected key is hidden
