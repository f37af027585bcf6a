"""Baselines: as mlsh configurations (same trainer as MLSH), or with Stable-Baselines3."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlsh.config import Config, validate
from mlsh.envs import make_env
from mlsh.evaluation import EVAL_ENV_SEED_OFFSET, Adaptation


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


def sb3_ppo_adaptation(
    cfg: Config, tasks: Sequence[Any], iters: int, seed: int, deterministic: bool = False
) -> Adaptation:
    """Stable-Baselines3 PPO from scratch on each task alone, with the budget and settings of an MLSH slot.

    Per iteration it collects ``envs_per_slot x rollout_len`` steps, like one MLSH slot, and uses the
    run's sub-policy PPO settings: learning rate, epochs, minibatches, clipping (the value clip in
    return units, as SB3's ``clip_range_vf``), entropy and value coefficients, gradient clipping,
    gamma, lambda and tanh MLPs of the same widths; observations are normalised (``VecNormalize``)
    when the run normalised them.

    Returns:
        The curves (mean return of the episodes that ended in each iteration) and the return
        measured after training, one episode per env (most likely actions with ``deterministic``).
    """
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    class EpisodeReturns(BaseCallback):
        """Mean return of the episodes that ended during each rollout."""

        def __init__(self) -> None:
            super().__init__()
            self.rollout: list[float] = []
            self.curve: list[float] = []

        def _on_step(self) -> bool:
            self.rollout += [info["episode"]["r"] for info in self.locals["infos"] if "episode" in info]
            return True

        def _on_rollout_end(self) -> None:
            self.curve.append(float(np.mean(self.rollout)) if self.rollout else np.nan)
            self.rollout = []

    ppo, envs, steps = cfg.sub, cfg.train.envs_per_slot, cfg.train.rollout_len
    curves = np.full((iters, len(tasks)), np.nan)
    after = np.full(len(tasks), np.nan)
    for index, task in enumerate(tasks):

        def make(task: Any = task) -> Any:
            env = make_env(cfg.env)
            env.unwrapped.task = task
            return Monitor(env)

        vec = VecNormalize(DummyVecEnv([make] * envs), norm_obs=cfg.train.normalize_obs, norm_reward=False)
        task_seed = seed + EVAL_ENV_SEED_OFFSET + 7919 * (index + 1)
        vec.seed(task_seed)
        model = PPO(
            "MlpPolicy",
            vec,
            learning_rate=ppo.lr,
            n_steps=steps,
            batch_size=max(1, envs * steps // ppo.num_minibatches),
            n_epochs=ppo.update_epochs,
            gamma=ppo.gamma,
            gae_lambda=ppo.gae_lambda,
            clip_range=ppo.clip_coef,
            clip_range_vf=(ppo.vf_clip_coef or ppo.clip_coef) if ppo.clip_vloss else None,
            normalize_advantage=ppo.norm_adv,
            ent_coef=ppo.ent_coef,
            vf_coef=ppo.vf_coef,
            max_grad_norm=ppo.max_grad_norm,
            target_kl=ppo.target_kl,
            policy_kwargs={
                "net_arch": {"pi": list(ppo.hidden_sizes), "vf": list(ppo.hidden_sizes)},
                "activation_fn": torch.nn.Tanh,
            },
            seed=task_seed,
            device="cpu",
        )
        returns = EpisodeReturns()
        model.learn(iters * envs * steps, callback=returns)
        curves[:, index] = returns.curve[:iters]
        vec.training = False
        # Measured as MLSH's return after adaptation is: sampled actions unless deterministic.
        after[index] = evaluate_policy(model, vec, n_eval_episodes=envs, deterministic=deterministic, warn=False)[0]
        vec.close()
    return Adaptation(curves, after, {})
