"""Tests for envs/four_rooms.py: layout, goal split, slip dynamics, rewards, observations, oracle, rendering."""

from __future__ import annotations

import itertools
from functools import cache

import gymnasium as gym
import numpy as np
import pytest

from envs import FourRooms, rendering
from envs.four_rooms import FREE_CELLS, HELDOUT_GOALS, START_CELL, TRAIN_GOALS, optimal_success_probability

ENV_ID = "mlsh/FourRooms-v0"

# The layout written out again here, so that the test checks the module's copy against the paper's.
GRID = [
    "#############",
    "#     #     #",
    "#     #     #",
    "#           #",
    "#     #     #",
    "#     #     #",
    "## ####     #",
    "#     ### ###",
    "#     #     #",
    "#     #     #",
    "#           #",
    "#     #     #",
    "#############",
]
FREE = {(r, c) for r, line in enumerate(GRID) for c, ch in enumerate(line) if ch == " "}
DELTAS = {0: (-1, 0), 1: (1, 0), 2: (0, -1), 3: (0, 1)}  # up, down, left, right


def _next_cell(cell: tuple[int, int], direction: int) -> tuple[int, int]:
    target = (cell[0] + DELTAS[direction][0], cell[1] + DELTAS[direction][1])
    return target if target in FREE else cell


def _prob(action: int, direction: int) -> float:
    return 2 / 3 if action == direction else 1 / 9


def _run_episode(env: gym.Env, seed: int) -> float:
    env.reset(seed=seed)
    total = 0.0
    while True:
        _, reward, terminated, truncated, _ = env.step(env.unwrapped.oracle_action())
        total += reward
        if terminated or truncated:
            return total


# -- layout and goal split ---------------------------------------------------------------------
def test_layout_has_104_free_cells_matching_suttons_grid() -> None:
    assert len(FREE) == 104
    assert set(FREE_CELLS) == FREE
    assert list(FREE_CELLS) == sorted(FREE_CELLS)  # row-major order, the one-hot order
    assert START_CELL == (1, 1)


def test_goal_split_is_disjoint_complete_and_fixed() -> None:
    env = FourRooms()
    train, heldout = env.train_goals, env.heldout_goals
    assert train == sorted(train) and heldout == sorted(heldout)
    assert not set(train) & set(heldout)
    assert set(train) | set(heldout) | {START_CELL} == FREE
    assert START_CELL not in train and START_CELL not in heldout
    assert len(heldout) == 21 and len(train) == 82  # about 20% of the 104 free cells held out
    assert train == list(TRAIN_GOALS) and heldout == list(HELDOUT_GOALS)
    # The documented recipe, independent of any user seed or of the global RNG.
    np.random.seed(7)
    candidates = [cell for cell in sorted(FREE) if cell != START_CELL]
    order = np.random.default_rng(12345).permutation(len(candidates))
    assert heldout == sorted(candidates[i] for i in order[:21])
    other = FourRooms(random_start=True)
    other.reset(seed=99)
    assert other.train_goals == train and other.heldout_goals == heldout
    # Held-out goals lie in all four rooms.
    assert {(r > 6, c > 6) for r, c in heldout} == {(False, False), (False, True), (True, False), (True, True)}


def test_sample_task_draws_train_goals_and_sample_test_task_heldout_goals() -> None:
    env = FourRooms()
    rng = np.random.default_rng(0)
    train_draws = [env.sample_task(rng) for _ in range(5000)]
    test_draws = [env.sample_test_task(rng) for _ in range(2000)]
    assert set(train_draws) == set(env.train_goals)  # every train goal, never a held-out one
    assert set(test_draws) == set(env.heldout_goals)
    assert all(isinstance(g, tuple) and all(type(v) is int for v in g) for g in train_draws[:50] + test_draws[:50])
    counts = np.array([train_draws.count(g) for g in env.train_goals])
    assert counts.min() > 0.5 * 5000 / 82 and counts.max() < 1.5 * 5000 / 82  # roughly uniform


@pytest.mark.parametrize("task", [(0, 0), (6, 0), (13, 1), (-1, 3), (1,), (1, 2, 3), "ab", (1.5, 2), 5, (True, 1)])
def test_invalid_task_raises(task: object) -> None:
    env = gym.make(ENV_ID)
    message = r"FourRooms task \(the goal\) must be a free cell \(row, col\): a pair of ints"
    with pytest.raises(ValueError, match=message):
        env.unwrapped.task = task
    with pytest.raises(ValueError, match=message):
        env.reset(options={"task": task})
    env.unwrapped.task = np.array([9, 9])
    assert env.unwrapped.task == (9, 9) and type(env.unwrapped.task[0]) is int


@pytest.mark.parametrize("action", [4, -1, 0.5])
def test_invalid_action_raises(action: object) -> None:
    env = FourRooms()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"FourRooms action must be an int in \[0, 4\)"):
        env.step(action)


def test_invalid_constructor_arguments_raise() -> None:
    with pytest.raises(ValueError, match="obs_mode must be 'onehot' or 'rowcol'"):
        FourRooms(obs_mode="pixels")
    with pytest.raises(ValueError, match="render_mode must be None or 'rgb_array'"):
        FourRooms(render_mode="human")
    with pytest.raises(ValueError, match="horizon must be a positive int"):
        FourRooms(horizon=0)


# -- dynamics ------------------------------------------------------------------------------------
def test_slip_statistics_match_two_thirds_and_one_ninth() -> None:
    env = FourRooms()
    env.task = (11, 11)
    env.reset(seed=0)
    start = (3, 3)
    assert all(_next_cell(start, d) != start for d in range(4))  # open in all four directions
    samples_per_action = 10_000
    for action in range(4):
        counts = np.zeros(4)
        for _ in range(samples_per_action):
            env.reset(options={"start": start})
            _, _, _, _, info = env.step(action)
            direction = next(d for d in range(4) if _next_cell(start, d) == info["cell"])
            assert info["slipped"] is (direction != action)
            counts[direction] += 1
        freq = counts / samples_per_action
        for direction in range(4):
            assert abs(freq[direction] - _prob(action, direction)) < 0.01, (action, freq)


def test_walls_block_and_moves_stay_on_free_neighbours() -> None:
    env = FourRooms()
    env.task = (11, 11)
    env.reset(seed=1)
    outcomes = set()
    for _ in range(300):  # up and left from the corner are walls
        env.reset(options={"start": (1, 1)})
        _, _, _, _, info = env.step(0)
        outcomes.add(info["cell"])
        if not info["slipped"]:
            assert info["cell"] == (1, 1)
    assert outcomes == {(1, 1), (1, 2), (2, 1)}
    env.reset(seed=2)
    env.action_space.seed(3)  # not the env's seed: equal seeds give equal streams, correlating action and slip
    cell = START_CELL
    visited = set()
    for _ in range(3000):
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        new = info["cell"]
        assert new in FREE and abs(new[0] - cell[0]) + abs(new[1] - cell[1]) <= 1
        assert new == env.cell
        visited.add(new)
        cell = new
        if terminated or truncated:
            env.reset()
            cell = START_CELL
    assert len(visited) > 60  # the random walk passes doorways into other rooms


def test_reward_and_termination_only_at_the_goal() -> None:
    env = gym.make(ENV_ID)
    env.unwrapped.task = (1, 3)
    obs, info = env.reset(seed=0)
    assert info == {"reward_goal": 0.0, "slipped": False, "cell": (1, 1)}
    rewards = []
    for _ in range(100):
        obs, reward, terminated, truncated, info = env.step(env.unwrapped.oracle_action())
        rewards.append(reward)
        assert info["reward_goal"] == reward
        assert terminated is (info["cell"] == (1, 3))
        assert reward == (1.0 if info["cell"] == (1, 3) else 0.0)
        if terminated or truncated:
            break
    assert terminated and rewards[-1] == 1.0 and sum(rewards) == 1.0
    assert len(rewards) > 1  # the goal is two moves away


def test_truncates_after_100_steps() -> None:
    env = gym.make(ENV_ID)
    assert env.spec.max_episode_steps == 100
    env.unwrapped.task = (11, 11)
    env.reset(seed=0)
    for t in range(1, 101):  # pushing into the corner's walls never reaches the far room
        _, _, terminated, truncated, info = env.step(0 if t % 2 else 2)
        assert not terminated
        assert truncated is (t == 100)


def test_observation_modes() -> None:
    onehot = gym.make(ENV_ID)
    rowcol = gym.make(ENV_ID, obs_mode="rowcol")
    assert onehot.observation_space.shape == (104,) and rowcol.observation_space.shape == (2,)
    for env in (onehot, rowcol):
        env.unwrapped.task = (11, 11)
    obs_a, _ = onehot.reset(seed=3)
    obs_b, _ = rowcol.reset(seed=3)
    for _ in range(50):
        assert obs_a.dtype == np.float32 and obs_b.dtype == np.float32
        cell = onehot.unwrapped.cell
        assert obs_a.sum() == 1.0 and obs_a[FREE_CELLS.index(cell)] == 1.0
        np.testing.assert_allclose(obs_b, np.array(cell) / 12.0, rtol=1e-6)
        assert onehot.observation_space.contains(obs_a) and rowcol.observation_space.contains(obs_b)
        obs_a, _, _, _, info_a = onehot.step(3)
        obs_b, _, _, _, info_b = rowcol.step(3)
        assert info_a["cell"] == info_b["cell"]  # same seed, same slips


def test_goal_is_not_observed() -> None:
    first, second = FourRooms(), FourRooms()
    first.task, second.task = (11, 11), (9, 2)
    np.testing.assert_array_equal(first.reset(seed=0)[0], second.reset(seed=0)[0])


def test_random_start_never_on_goal_and_fixed_start_by_default() -> None:
    env = gym.make(ENV_ID, random_start=True)
    env.unwrapped.task = (2, 2)
    starts = set()
    for seed in range(600):
        _, info = env.reset(seed=seed)
        assert info["cell"] != (2, 2) and info["cell"] in FREE
        starts.add(info["cell"])
    assert len(starts) > 90
    fixed = gym.make(ENV_ID)
    for seed in range(5):
        assert fixed.reset(seed=seed)[1]["cell"] == START_CELL


# -- oracle --------------------------------------------------------------------------------------
def _naive_best(goal: tuple[int, int]):
    """Closed-loop optimum by plain recursion over (cell, steps left), written apart from the env's tables."""

    @cache
    def best(cell: tuple[int, int], steps_left: int) -> float:
        if steps_left == 0:
            return 0.0
        values = []
        for action in range(4):
            value = 0.0
            for direction in range(4):
                nxt = _next_cell(cell, direction)
                value += _prob(action, direction) * (1.0 if nxt == goal else best(nxt, steps_left - 1))
            values.append(value)
        return max(values)

    return best


def _open_loop_success(start: tuple[int, int], goal: tuple[int, int], actions: tuple[int, ...]) -> float:
    """Probability that a fixed action sequence reaches ``goal`` (exact, by propagating the distribution)."""
    dist = {start: 1.0}
    reached = 0.0
    for action in actions:
        new: dict[tuple[int, int], float] = {}
        for cell, p in dist.items():
            for direction in range(4):
                nxt = _next_cell(cell, direction)
                q = p * _prob(action, direction)
                if nxt == goal:
                    reached += q
                else:
                    new[nxt] = new.get(nxt, 0.0) + q
        dist = new
    return reached


def test_optimal_success_probability_closed_forms() -> None:
    assert optimal_success_probability((1, 1), (1, 2), horizon=1) == pytest.approx(2 / 3)
    # Right first: 2/3 arrive; up/left hit walls (2/9) and leave one more try at 2/3; down (1/9) is too far.
    assert optimal_success_probability((1, 1), (1, 2), horizon=2) == pytest.approx(2 / 3 + (2 / 9) * (2 / 3))
    assert optimal_success_probability((1, 1), (1, 3), horizon=1) == 0.0
    assert optimal_success_probability((1, 1), (1, 2), horizon=0) == 0.0
    with pytest.raises(ValueError, match="FourRooms goal must be a free cell"):
        optimal_success_probability((1, 1), (0, 0))


@pytest.mark.parametrize("goal", [(3, 6), (6, 2), (9, 9), (1, 1)])
def test_optimal_success_probability_matches_naive_recursion(goal: tuple[int, int]) -> None:
    best = _naive_best(goal)
    near = [cell for cell in sorted(FREE) if abs(cell[0] - goal[0]) + abs(cell[1] - goal[1]) <= 3]
    assert len(near) >= 8
    for cell in near:
        for horizon in range(1, 8):
            assert optimal_success_probability(cell, goal, horizon) == pytest.approx(best(cell, horizon), abs=1e-12)
    assert optimal_success_probability((1, 1), goal, 30) == pytest.approx(best((1, 1), 30), abs=1e-12)


def test_optimal_success_probability_bounds_every_open_loop_plan() -> None:
    goal = (2, 3)
    for start in [(1, 1), (3, 3), (2, 5), (4, 2)]:
        for horizon in (1, 2, 3):
            plans = [_open_loop_success(start, goal, seq) for seq in itertools.product(range(4), repeat=horizon)]
            optimum = optimal_success_probability(start, goal, horizon)
            assert max(plans) <= optimum + 1e-12
            if horizon == 1:
                assert max(plans) == pytest.approx(optimum)  # one step: closed and open loop agree


def test_oracle_success_rate_matches_the_computed_probability() -> None:
    # A short time limit makes the probability intermediate, so a wrong policy would show.
    horizon = 28
    env = gym.make(ENV_ID, max_episode_steps=horizon, horizon=horizon)
    env.unwrapped.task = (9, 9)
    expected = optimal_success_probability(START_CELL, (9, 9), horizon)
    assert 0.4 < expected < 0.6
    episodes = 400
    rate = np.mean([_run_episode(env, seed) for seed in range(episodes)])
    assert abs(rate - expected) < 4 * np.sqrt(expected * (1 - expected) / episodes), (rate, expected)


def test_oracle_reaches_a_goal_in_another_room_almost_surely() -> None:
    env = gym.make(ENV_ID)
    env.unwrapped.task = (11, 11)  # the far corner of the bottom-right room
    assert optimal_success_probability(START_CELL, (11, 11)) > 0.99
    assert np.mean([_run_episode(env, 1000 + seed) for seed in range(300)]) > 0.98


def test_oracle_plans_for_the_steps_left() -> None:
    """From (2, 5) toward (1, 3) the best first move differs with 3 and 4 steps left; the oracle tracks it."""
    goal, cell = (1, 3), (2, 5)
    best = _naive_best(goal)

    def q_values(steps_left: int) -> list[float]:
        return [
            sum(
                _prob(action, d) * (1.0 if _next_cell(cell, d) == goal else best(_next_cell(cell, d), steps_left - 1))
                for d in range(4)
            )
            for action in range(4)
        ]

    q3, q4 = q_values(3), q_values(4)
    best3, best4 = int(np.argmax(q3)), int(np.argmax(q4))
    assert best3 != best4
    assert q3[best3] > q3[best4] + 1e-3 and q4[best4] > q4[best3] + 1e-3
    env = FourRooms(horizon=4)
    env.task = goal
    for seed in range(20):
        env.reset(seed=seed, options={"start": cell})
        assert env.oracle_action() == best4
        _, _, _, _, info = env.step(3)  # right, into the wall: stays on (2, 5) unless it slips
        if info["cell"] == cell:
            assert env.oracle_action() == best3
            break
    else:
        raise AssertionError("never stayed on (2, 5)")


# -- rendering -----------------------------------------------------------------------------------
def test_render_rgb_array() -> None:
    env = gym.make(ENV_ID, render_mode="rgb_array")
    env.unwrapped.task = (9, 10)
    env.reset(seed=0, options={"start": (3, 4)})
    image = env.render()
    assert image.shape == (208, 208, 3) and image.dtype == np.uint8

    def centre(cell: tuple[int, int]) -> np.ndarray:
        return image[cell[0] * 16 + 8, cell[1] * 16 + 8]

    np.testing.assert_array_equal(centre((3, 4)), rendering.AGENT)
    np.testing.assert_array_equal(centre((9, 10)), rendering.GREEN)
    np.testing.assert_array_equal(centre((0, 0)), rendering.WALL)
    np.testing.assert_array_equal(centre((7, 7)), rendering.WALL)
    np.testing.assert_array_equal(centre((1, 1)), rendering.BACKGROUND)
    with pytest.warns(UserWarning, match="without a render_mode"):
        assert FourRooms().render() is None
