"""Contract tests run on every env id that ``envs`` registers: check_env, determinism, pickling, tasks."""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs

ENV_IDS = envs.registered_ids()
# The MuJoCo Ant tasks' episodes last 1000-2000 steps; the contract tests shorten them to stay fast.
SHORT_EPISODES = {env_id: 50 for env_id in ENV_IDS if env_id.startswith("mlsh/Ant")}
# The ids that declare ``state_attributes`` (the Ant tasks are saved by their batched vector env instead).
STATE_IDS = [env_id for env_id in ENV_IDS if not env_id.startswith("mlsh/Ant")]


def _make(env_id: str) -> gym.Env:
    return gym.make(env_id, max_episode_steps=SHORT_EPISODES.get(env_id))


def _other_task(env: gym.Env, current: Any, seed: int) -> Any:
    """A task different from ``current``, drawn from the env's sampler."""
    rng = np.random.default_rng(seed)
    for _ in range(100):
        task = env.unwrapped.sample_task(rng)
        if not _same(task, current):
            return task
    raise AssertionError(f"sample_task never drew a task other than {current!r}")


def _same(a: Any, b: Any) -> bool:
    try:
        np.testing.assert_equal(a, b)
    except AssertionError:
        return False
    return True


def _transitions(env: gym.Env, actions: list[Any], seed: int | None) -> list[tuple[Any, ...]]:
    """Steps ``env`` through ``actions``, resetting (without a seed) at episode ends."""
    out: list[tuple[Any, ...]] = []
    if seed is not None:
        out.append(env.reset(seed=seed))
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            out.append(env.reset())
    return out


def _actions(env: gym.Env, count: int, seed: int) -> list[Any]:
    space = env.action_space
    space.seed(seed)
    return [space.sample() for _ in range(count)]


def test_registered_ids_are_namespaced_and_registered() -> None:
    assert ENV_IDS
    for env_id in ENV_IDS:
        assert env_id.startswith("mlsh/")
        assert env_id in gym.registry


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env(env_id: str) -> None:
    check_env(_make(env_id).unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_trajectory(env_id: str) -> None:
    first, second = _make(env_id), _make(env_id)
    task = first.unwrapped.sample_task(np.random.default_rng(3))
    first.unwrapped.task = task
    second.unwrapped.task = task
    actions = _actions(first, 200, seed=5)
    run_a = _transitions(first, actions, seed=11)
    run_b = _transitions(second, actions, seed=11)
    assert len(run_a) > 201, "the 200 steps should include at least one reset"
    np.testing.assert_equal(run_a, run_b)
    # A different seed gives a different trajectory (the seed is used).
    third = _make(env_id)
    third.unwrapped.task = task
    assert not _same(_transitions(third, actions, seed=12), run_a)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pickle_round_trip_mid_episode(env_id: str) -> None:
    env = _make(env_id)
    env.reset(seed=0)
    for action in _actions(env, 7, seed=1):
        env.step(action)
    copy = pickle.loads(pickle.dumps(env))
    assert _same(copy.unwrapped.task, env.unwrapped.task)
    actions = _actions(env, 120, seed=2)
    np.testing.assert_equal(_transitions(copy, actions, seed=None), _transitions(env, actions, seed=None))


@pytest.mark.parametrize("env_id", STATE_IDS)
def test_state_dict_round_trip_mid_episode_continues_like_the_env(env_id: str) -> None:
    env = _make(env_id)
    env.unwrapped.task = _other_task(env, env.unwrapped.task, seed=3)
    env.reset(seed=0)
    for action in _actions(env, 7, seed=1):
        env.step(action)
    state = env.unwrapped.state_dict()
    assert state is not None
    copy = _make(env_id)  # another task, seed and episode, all replaced by the saved state
    copy.reset(seed=5)
    copy.unwrapped.load_state_dict(pickle.loads(pickle.dumps(state)))
    copy.set_wrapper_attr("_elapsed_steps", env.get_wrapper_attr("_elapsed_steps"), force=False)
    assert _same(copy.unwrapped.task, env.unwrapped.task)
    actions = _actions(env, 120, seed=2)
    np.testing.assert_equal(_transitions(copy, actions, seed=None), _transitions(env, actions, seed=None))


def test_an_env_without_state_attributes_has_no_state_dict() -> None:
    assert _make("mlsh/AntTwowalk-v0").unwrapped.state_dict() is None  # its batched vector env saves it


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_task_persists_across_resets_and_changes_only_when_set(env_id: str) -> None:
    env = _make(env_id)
    base = env.unwrapped
    task = _other_task(env, base.task, seed=0)
    base.task = task
    for seed in (None, 0, 1, None):
        env.reset(seed=seed)
        assert _same(base.task, task)
    _transitions(env, _actions(env, 60, seed=0), seed=None)
    assert _same(base.task, task)

    other = _other_task(env, task, seed=1)
    base.set_task(other)
    assert _same(base.task, other)
    env.reset()
    assert _same(base.task, other)

    env.reset(options={"task": task})
    assert _same(base.task, task)
    env.reset(options={})
    assert _same(base.task, task)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sample_task_uses_only_the_given_generator(env_id: str) -> None:
    env = _make(env_id)
    np.random.seed(123)
    global_state = np.random.get_state()
    tasks_a = [env.unwrapped.sample_task(np.random.default_rng(42)) for _ in range(3)]
    rng_b, rng_c = np.random.default_rng(42), np.random.default_rng(43)
    seq_b = [env.unwrapped.sample_task(rng_b) for _ in range(32)]
    seq_c = [env.unwrapped.sample_task(rng_c) for _ in range(32)]
    # Stepping the env must not touch the global RNG either.
    _transitions(env, _actions(env, 60, seed=0), seed=0)
    after = np.random.get_state()
    assert after[0] == global_state[0]
    np.testing.assert_array_equal(after[1], global_state[1])
    assert after[2:] == global_state[2:]
    assert all(_same(t, tasks_a[0]) for t in tasks_a)
    rng_b2 = np.random.default_rng(42)
    assert _same([env.unwrapped.sample_task(rng_b2) for _ in range(32)], seq_b)
    assert not _same(seq_b, seq_c)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_train_tasks_is_the_family_sample_task_draws_from(env_id: str) -> None:
    base = _make(env_id).unwrapped
    family = base.train_tasks
    if family is None:
        pytest.skip(f"{env_id} has no finite task family")
    assert len(family) >= 1
    for task in family:
        assert _same(base.validate_task(task), task)
    rng = np.random.default_rng(0)
    drawn = [base.sample_task(rng) for _ in range(40 * len(family))]
    for task in drawn:
        assert any(_same(task, member) for member in family)
    for member in family:  # every member comes up: the family is not larger than what is drawn
        assert any(_same(task, member) for task in drawn)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_vector_env_set_attr_tasks_survive_autoresets(env_id: str) -> None:
    num_envs = 3
    vec = gym.vector.SyncVectorEnv(
        [lambda: _make(env_id) for _ in range(num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    rng = np.random.default_rng(0)
    tasks = [vec.envs[0].unwrapped.sample_task(rng) for _ in range(num_envs)]
    tasks[1] = _other_task(vec.envs[0], tasks[0], seed=1)  # at least two distinct tasks
    vec.set_attr("task", tasks)
    assert _same(list(vec.get_attr("task")), tasks)
    for sub_env, task in zip(vec.envs, tasks):
        assert _same(sub_env.unwrapped.task, task)
    vec.reset(seed=0)
    vec.action_space.seed(0)
    episodes_ended = np.zeros(num_envs, dtype=int)
    max_steps = vec.envs[0].spec.max_episode_steps or 200
    for _ in range(3 * max_steps + 1):
        _, _, terminated, truncated, _ = vec.step(vec.action_space.sample())
        episodes_ended += terminated | truncated
        assert _same(list(vec.get_attr("task")), tasks)
    assert np.all(episodes_ended >= 2)
    vec.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_agent_position_follows_the_agent(env_id: str) -> None:
    env = _make(env_id)
    obs, _ = env.reset(seed=0)
    unwrapped = env.unwrapped
    start = unwrapped.agent_position
    assert start is not None and start.shape == (2,) and np.isfinite(start).all()
    if hasattr(unwrapped, "size"):  # the plane envs observe the agent's (x, y) / size first
        np.testing.assert_allclose(start, obs[:2] * unwrapped.size, rtol=1e-6)
    moved = False
    for _ in range(20):
        env.step(env.action_space.sample())
        position = unwrapped.agent_position
        assert position.shape == (2,) and not np.shares_memory(position, start)
        moved = moved or not np.array_equal(position, start)
    assert moved
    env.close()
