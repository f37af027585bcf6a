"""The batched Ant vector envs (envs/mujoco_batch.py): registration, equivalence with the single env,
per-sub-env tasks, state save/restore, and exact resume of a training run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.ant_maze import AntMazeVector
from envs.mujoco_batch import AntBatchVectorEnv
from mlsh.checkpoint import load_checkpoint
from mlsh.config import EnvConfig
from mlsh.envs import make_vec_env
from mlsh.trainer import train
from tests.conftest import small_config

ANT_IDS = ["mlsh/AntTwowalk-v0", "mlsh/AntMaze-v0", "mlsh/AntMovement-v0", "mlsh/AntObstacles-v0"]
SHORT = {"pose_reset_every": 7}  # pose resets and truncations within a few dozen steps


def _pair(env_id: str, num_envs: int, max_steps: int, **kwargs: Any) -> tuple[gym.vector.VectorEnv, ...]:
    """The batched vector env and a SyncVectorEnv over the single env, same settings."""
    batched = gym.make_vec(env_id, num_envs=num_envs, max_episode_steps=max_steps, **kwargs)
    synced = gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        max_episode_steps=max_steps,
        **kwargs,
    )
    return batched, synced


def _assert_same_info(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        if key == "final_obs":
            for i in np.flatnonzero(b["_final_obs"]):
                np.testing.assert_array_equal(a[key][i], b[key][i])
        elif isinstance(b[key], dict):
            _assert_same_info(a[key], b[key])
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
            assert a[key].dtype == b[key].dtype, key


def _run_both(batched: gym.vector.VectorEnv, synced: gym.vector.VectorEnv, steps: int, seed: int) -> int:
    """Steps both with the same random actions, asserting identical results; returns episodes ended."""
    rng = np.random.default_rng(seed)
    ended = 0
    for _ in range(steps):
        actions = rng.uniform(-1.0, 1.0, size=batched.action_space.shape).astype(np.float32)
        out_a, out_b = batched.step(actions), synced.step(actions)
        for x, y in zip(out_a[:4], out_b[:4], strict=True):
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype
        _assert_same_info(out_a[4], out_b[4])
        ended += int((out_a[2] | out_a[3]).sum())
    return ended


def test_make_vec_uses_the_batched_env_with_same_step_autoreset() -> None:
    vec = gym.make_vec("mlsh/AntMaze-v0", num_envs=4)
    assert isinstance(vec, AntMazeVector)
    assert vec.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    assert vec.max_episode_steps == 1000
    assert vec.observation_space.shape == (4, 29)
    assert vec.action_space.shape == (4, 8)
    assert vec.nthread >= 1
    sync = make_vec_env(EnvConfig(id="mlsh/MovementBandits-v0"), 2)
    assert isinstance(sync, gym.vector.SyncVectorEnv)
    assert isinstance(make_vec_env(EnvConfig(id="mlsh/AntTwowalk-v0", max_episode_steps=30), 2), AntBatchVectorEnv)


@pytest.mark.parametrize("env_id", ANT_IDS)
def test_batched_env_matches_the_single_env(env_id: str) -> None:
    batched, synced = _pair(env_id, num_envs=3, max_steps=25, **SHORT)
    sampler = synced.envs[0].unwrapped
    rng = np.random.default_rng(1)
    tasks = [sampler.sample_task(rng) for _ in range(3)]
    batched.set_attr("task", tasks)
    synced.set_attr("task", tasks)
    assert list(batched.get_attr("task")) == tasks
    obs_a, info_a = batched.reset(seed=5)
    obs_b, info_b = synced.reset(seed=5)
    np.testing.assert_array_equal(obs_a, obs_b)
    _assert_same_info(info_a, info_b)
    assert _run_both(batched, synced, 60, seed=0) >= 6  # two truncations per sub-env at least
    # A new task for one sub-env takes effect at its masked reset; the others carry on.
    new_tasks = [tasks[0], sampler.sample_test_task(rng), tasks[2]]
    batched.set_attr("task", new_tasks)
    synced.set_attr("task", new_tasks)
    mask = np.array([False, True, False])
    obs_a, info_a = batched.reset(options={"reset_mask": mask})
    obs_b, info_b = synced.reset(options={"reset_mask": mask})
    np.testing.assert_array_equal(obs_a, obs_b)
    _assert_same_info(info_a, info_b)
    _run_both(batched, synced, 20, seed=1)
    assert list(batched.get_attr("task")) == new_tasks


def test_batched_env_matches_the_single_env_when_falls_terminate() -> None:
    # A narrow healthy range makes the ant "fall" often, so terminations and their autoresets are exercised.
    batched, synced = _pair(
        "mlsh/AntTwowalk-v0", num_envs=3, max_steps=40, flip_handling="terminate", healthy_z_range=(0.45, 0.8)
    )
    batched.reset(seed=[3, None, 4])
    synced.reset(seed=[3, None, 4])
    batched.reset(seed=[3, 9, 4])
    synced.reset(seed=[3, 9, 4])
    rng = np.random.default_rng(0)
    terminated_any = False
    for _ in range(60):
        actions = rng.uniform(-1.0, 1.0, size=(3, 8)).astype(np.float32)
        out_a, out_b = batched.step(actions), synced.step(actions)
        for x, y in zip(out_a[:4], out_b[:4], strict=True):
            np.testing.assert_array_equal(x, y)
        _assert_same_info(out_a[4], out_b[4])
        terminated_any |= bool(out_a[2].any())
    assert terminated_any


def test_set_attr_checks_names_and_lengths() -> None:
    vec = gym.make_vec("mlsh/AntMaze-v0", num_envs=2)
    with pytest.raises(ValueError, match="needs 2 tasks"):
        vec.set_attr("task", [0, 1, 2])
    with pytest.raises(ValueError, match="AntMaze task must be"):
        vec.set_attr("task", [0, 10_000])
    with pytest.raises(AttributeError, match="only set 'task'"):
        vec.set_attr("goal_radius", 3.0)
    vec.set_attr("task", 4)
    assert vec.get_attr("task") == (4, 4)
    assert vec.get_attr("goal_radius") == (2.0, 2.0)


def test_state_dict_restores_every_sub_env_exactly() -> None:
    vec = gym.make_vec("mlsh/AntObstacles-v0", num_envs=3, max_episode_steps=15, **SHORT)
    vec.set_attr("task", [0, 1, 2])
    vec.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(10):
        vec.step(rng.uniform(-1, 1, (3, 8)))
    state = vec.state_dict()
    actions = rng.uniform(-1, 1, (30, 3, 8))
    first = [vec.step(a)[:4] for a in actions]
    other = gym.make_vec("mlsh/AntObstacles-v0", num_envs=3, max_episode_steps=15, **SHORT)
    other.load_state_dict(state)
    second = [other.step(a)[:4] for a in actions]
    np.testing.assert_equal(first, second)
    with pytest.raises(ValueError, match="num_envs or the env's model changed"):
        gym.make_vec("mlsh/AntObstacles-v0", num_envs=2).load_state_dict(state)


def test_training_on_the_batched_env_resumes_exactly(tmp_path: Path) -> None:
    cfg = small_config("mlsh/AntTwowalk-v0")
    cfg.env.max_episode_steps = 30
    cfg.env.kwargs = dict(SHORT)
    cfg.train.total_timesteps = 3 * cfg.steps_per_iteration
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(cfg, straight)
    first = train(cfg, split, max_iterations=2)
    assert not first["finished"]
    assert train(cfg, split, resume=True)["finished"]
    a, b = load_checkpoint(straight)["learner"], load_checkpoint(split)["learner"]
    assert isinstance(a["env_states"], dict)
    for key in a["policy"]:
        assert torch.equal(a["policy"][key], b["policy"][key]), key
    np.testing.assert_array_equal(a["collector"]["obs"], b["collector"]["obs"])
    np.testing.assert_array_equal(a["env_states"]["sim_state"], b["env_states"]["sim_state"])
