"""Evaluation on unseen tasks: disjoint task stream, frozen sub-policies, long episodes, strict JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlsh.config import ConfigError
from mlsh.evaluation import evaluate_run, oracle_returns, sample_eval_tasks
from mlsh.meta import TRAIN_TASK_STREAM, task_rng
from mlsh.trainer import train
from tests.conftest import small_config


def test_episodes_longer_than_a_rollout_are_measured_and_json_is_strict(tmp_path: Path) -> None:
    cfg = small_config()  # rollout_len 20 < MovementBandits' 50-step episodes
    cfg.train.total_timesteps = cfg.steps_per_iteration
    train(cfg, tmp_path)
    result = evaluate_run(tmp_path, num_tasks=3, adapt_iters=1, oracle_episodes=2)
    assert result["adaptation_curve"] == [None]  # no episode ended during the one 20-step iteration
    assert np.isfinite(result["return_after_adaptation"])
    assert all(np.isfinite(result["return_after_adaptation_per_task"]))
    json.dumps(result, allow_nan=False)


def test_eval_tasks_come_from_their_own_stream() -> None:
    cfg = small_config("mlsh/FourRooms-v0")
    tasks = sample_eval_tasks(cfg, 30, seed=0)
    from envs.four_rooms import HELDOUT_GOALS

    assert set(tasks) <= set(HELDOUT_GOALS)  # the env's held-out split
    train_rng, eval_rng = task_rng(0, TRAIN_TASK_STREAM), task_rng(0, 1)
    assert list(train_rng.integers(1 << 30, size=5)) != list(eval_rng.integers(1 << 30, size=5))


def test_oracle_returns_are_per_task_means() -> None:
    cfg = small_config()
    means = oracle_returns(cfg.env, [0, 1, 0], episodes=3, seed=5)
    assert means.shape == (3,) and np.all(means > 30) and np.all(means <= 50)


def test_bad_evaluation_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="num_tasks must be a positive integer"):
        evaluate_run(tmp_path, num_tasks=0)
