"""Baselines: the flat PPO config matches the CLI's algo=flat_ppo; SB3 PPO from scratch per task."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from stable_baselines3 import PPO

from agents import flat_ppo_config
from mlsh.cli import compose_config
from mlsh.config import config_from_dict
from mlsh.evaluation import sb3_ppo_adaptation
from tests.conftest import small_config


def test_flat_ppo_config_matches_the_cli_group() -> None:
    flat, default = compose_config("train", ["algo=flat_ppo"]), compose_config("train", [])
    flat.pop("resume"), default.pop("resume")
    mlsh_run = config_from_dict(default)
    assert flat_ppo_config(mlsh_run) == config_from_dict(flat)
    assert mlsh_run.mlsh.num_subpolicies == 2  # the input is not modified


def test_sb3_ppo_from_scratch_spends_an_mlsh_slot_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = small_config()
    cfg.env.max_episode_steps = 10  # 20-step iterations end two episodes per env
    learn, budgets = PPO.learn, []

    def recording_learn(model: PPO, total_timesteps: int, **kwargs: Any) -> PPO:
        budgets.append((total_timesteps, model.n_envs, model.n_steps, model.batch_size, model.n_epochs))
        return learn(model, total_timesteps, **kwargs)

    monkeypatch.setattr(PPO, "learn", recording_learn)
    adaptation = sb3_ppo_adaptation(cfg, tasks=[0, 1], iters=3, seed=0)
    # Per task: 3 iterations x 2 envs x 20 steps; minibatches and epochs of the run's sub-policy PPO.
    assert budgets == [(120, 2, 20, 20, 2)] * 2
    assert adaptation.curve.shape == (3, 2) and adaptation.after.shape == (2,)
    assert np.all((adaptation.curve >= 0) & (adaptation.curve <= 10))  # returns of 10-step MovementBandits episodes
    assert np.all((adaptation.after >= 0) & (adaptation.after <= 10))
    assert adaptation.masters == {}
