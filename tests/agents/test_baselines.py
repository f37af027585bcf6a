"""Baselines: the flat PPO config matches the CLI's algo=flat_ppo."""

from __future__ import annotations

from agents import flat_ppo_config
from mlsh.cli import compose_config
from mlsh.config import Config, config_from_dict


def test_flat_ppo_config_matches_the_cli_group() -> None:
    data = compose_config("train", ["algo=flat_ppo"])
    data.pop("resume")
    assert flat_ppo_config(Config()) == config_from_dict(data)
    assert Config().mlsh.num_subpolicies == 2  # the input is not modified
