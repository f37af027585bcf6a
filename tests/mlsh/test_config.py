"""Settings: the CLI's defaults are the library's, and impossible values are refused with the fix."""

from __future__ import annotations

import dataclasses

import pytest

from mlsh.cli import compose_config
from mlsh.config import Config, config_from_dict
from mlsh.errors import ConfigError


def test_composed_default_config_equals_library_defaults() -> None:
    """The library's defaults are the paper's MovementBandits settings; the env's yaml adds the re-initialisation
    of unserved sub-policies and balanced task draws, which are not the paper's (docs: results, bandits)."""
    data = compose_config("train", [])
    data.pop("resume")
    defaults = Config()
    fix = {"reinit_share": 0.65, "reinit_after": 600000, "task_sampling": "auto"}
    assert config_from_dict(data) == dataclasses.replace(defaults, mlsh=dataclasses.replace(defaults.mlsh, **fix))


def test_paper_settings_for_movement_bandits() -> None:
    cfg = Config()
    assert (cfg.mlsh.num_subpolicies, cfg.mlsh.macro_len, cfg.mlsh.warmup_iters, cfg.mlsh.joint_iters) == (2, 10, 9, 1)
    assert cfg.train.envs_per_slot * cfg.train.rollout_len == 2000  # D per task group
    assert (cfg.master.lr, cfg.sub.lr) == (0.01, 3e-4)
    assert (cfg.master.gamma, cfg.master.gae_lambda, cfg.master.clip_coef, cfg.master.update_epochs) == (
        0.99,
        0.98,
        0.2,
        10,
    )


def test_flat_ppo_algo_is_one_subpolicy_without_warmup() -> None:
    data = compose_config("train", ["algo=flat_ppo", "seed=4"])
    data.pop("resume")
    cfg = config_from_dict(data)
    assert (cfg.mlsh.num_subpolicies, cfg.mlsh.warmup_iters, cfg.mlsh.joint_iters, cfg.seed) == (1, 0, 1, 4)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mlsh": {"num_subpolicies": 0}}, "mlsh.num_subpolicies must be at least 1"),
        ({"mlsh": {"warmup_iters": 0, "joint_iters": 0}}, "must be at least 1, so that each task lasts"),
        ({"mlsh": {"master_epsilon": 1.5}}, "mlsh.master_epsilon must lie in [0, 1]"),
        ({"mlsh": {"reinit_share": 1.5}}, "mlsh.reinit_share must be null or a share in (0, 1], got 1.5"),
        ({"mlsh": {"reinit_window": 0}}, "mlsh.reinit_window must be at least 1, got 0"),
        ({"mlsh": {"reinit_after": 0.5}}, "mlsh.reinit_after must be an integer, got 0.5"),
        (
            {"mlsh": {"task_sampling": "stratified"}},
            "mlsh.task_sampling must be iid, balanced or auto, got 'stratified'",
        ),
        ({"sub": {"gamma": 1.5}}, "sub.gamma must lie in [0, 1]"),
        ({"sub": {"hidden_sizes": []}}, "sub.hidden_sizes must be a non-empty list"),
        ({"sub": {"target_kl": -1}}, "sub.target_kl must be positive or null"),
        ({"device": "tpu"}, "device must be auto, cpu or cuda"),
        ({"train": {"reward_scale": 0.0}}, "train.reward_scale must be a positive number, got 0.0"),
        ({"train": {"reward_scale": float("nan")}}, "train.reward_scale must be a positive number, got nan"),
        ({"mlsh": 3}, "'mlsh' is a group of settings"),
        ({"train": {"rollout_len": 15}}, "set train.rollout_len=20"),
        ({"bogus": 1}, "Unknown setting 'bogus'"),
        ({"train": {"update_threads": -1}}, "train.update_threads must be null or an integer >= 0, got -1"),
        ({"train": {"torch_threads": -2}}, "train.torch_threads must be null or an integer >= 0, got -2"),
        ({"sub": {"lr_ramp_steps": -5}}, "sub.lr_ramp_steps must be a whole number of env steps, 0 or more, got -5"),
        ({"sub": {"lr_ramp_start": 0}}, "sub.lr_ramp_start must be a share of sub.lr in (0, 1], got 0"),
        ({"sub": {"lr_end": 1.5}}, "sub.lr_end must be a share of sub.lr in [0, 1], got 1.5"),
        ({"sub": {"init_log_std": 3.0}}, "sub.init_log_std must be a number in [-5, 2] (the log of the initial"),
    ],
)
def test_impossible_settings_are_refused_with_the_fix(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert message in str(info.value)
