"""Baselines as mlsh configurations: the same trainer as MLSH (Stable-Baselines3's PPO adaptation is
:func:`mlsh.evaluation.sb3_ppo_adaptation`)."""

from __future__ import annotations

import dataclasses

from mlsh.config import Config, validate


def flat_ppo_config(cfg: Config) -> Config:
    """One shared PPO policy over the task distribution, trained on every iteration's data.

    MLSH with a single sub-policy and no warmup is exactly flat PPO (the master has one choice and
    never acts), so the baseline spends the same budget with the same network and PPO settings.
    Mirrors ``configs/algo/flat_ppo.yaml``.
    """
    flat = dataclasses.replace(
        cfg, mlsh=dataclasses.replace(cfg.mlsh, num_subpolicies=1, warmup_iters=0, joint_iters=1)
    )
    validate(flat)
    return flat
