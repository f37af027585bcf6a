"""A trained MLSH agent with Stable-Baselines3's ``predict`` signature.

Example::

    from stable_baselines3.common.evaluation import evaluate_policy
    agent = MLSHAgent.load("runs/MovementBandits/mlsh/<run>")
    env = gymnasium.make("mlsh/MovementBandits-v0")
    env.unwrapped.task = 1
    agent.adapt(env)                      # a fresh master learns this task, sub-policies frozen
    print(evaluate_policy(agent, env, n_eval_episodes=20))
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from mlsh.actor import PolicyActor
from mlsh.config import EnvConfig, check_seed, is_int
from mlsh.envs import env_signature, make_env
from mlsh.errors import ConfigError
from mlsh.evaluation import adapt_masters, with_master_settings


class MLSHAgent(PolicyActor):
    """A trained MLSH agent: a :class:`mlsh.actor.PolicyActor` (``load``, ``save``, ``predict``,
    ``subpolicy(k)``) that can also :meth:`adapt` a fresh master to a task.

    The master is the checkpoint's most-trained one (see :meth:`load`) until :meth:`adapt` trains a
    fresh one on a task.
    """

    def adapt(
        self,
        env: gym.Env | EnvConfig,
        iterations: int | None = None,
        seed: int = 0,
        master: Mapping[str, Any] | None = None,
    ) -> list[float | None]:
        """Trains a fresh master on ``env``'s current task, sub-policies and normaliser frozen.

        This is the paper's test-time procedure, run by the same code as ``mlsh.evaluate``: PPO on
        the master for ``iterations`` iterations of ``envs_per_slot x rollout_len`` env steps, in
        copies of ``env`` made from its spec, all set to its task.

        Args:
            env: an env made with ``gymnasium.make`` (its ``task`` is the one learned), or an
                :class:`EnvConfig` whose env's current task is learned.
            iterations: master PPO iterations (default: the run's ``warmup_iters``).
            seed: seeds the env copies and the new master.
            master: PPO settings of the new master that replace the run's while it adapts, e.g.
                ``{"lr": 0.003, "gamma": 0.5}`` (as ``master.<key>=`` in ``mlsh.evaluate``).

        Returns:
            The adaptation curve: mean episode return per iteration (None where no episode ended).
        """
        iters = self.cfg.mlsh.warmup_iters if iterations is None else iterations
        if not is_int(iters) or iters < 1:
            raise ConfigError(f"iterations must be a positive integer, got {iters!r}.")
        check_seed("seed", seed)
        if isinstance(env, EnvConfig):
            env_cfg = env
        elif isinstance(env, gym.Env):
            env_cfg = _env_config(env)
        else:
            raise ConfigError(
                f"adapt needs a Gymnasium env or an mlsh EnvConfig, got {type(env).__name__}; pass "
                f"gymnasium.make(<id>) with its task set."
            )
        # The copies are made by mlsh.envs.make_env, which applies the task contract as training does.
        probe = make_env(env_cfg)
        try:
            if env_signature(probe) != self.env_signature:
                raise ConfigError(
                    f"'{env_cfg.id}' has {env_signature(probe)} but the agent was trained on {self.env_signature}; "
                    f"adapt it to an env of the task distribution it was trained on (or one with the same spaces)."
                )
            # The task to learn: the given env's (its copies get it); a plain env wrapped as one task has task 0.
            source = probe if isinstance(env, EnvConfig) else env
            task = getattr(source.unwrapped, "task", probe.unwrapped.task)
        finally:
            probe.close()
        cfg = with_master_settings(self.cfg, master)
        result = adapt_masters(cfg, self.policy.state_dict(), [task], iters, seed, Path("<agent>"), env_cfg)
        self.policy.masters.load_state_dict(
            {k.removeprefix("masters."): v.to(self.device) for k, v in result.masters.items()}
        )
        self.master_task = task
        return [None if np.isnan(x) else float(x) for x in result.curve[:, 0]]


def _env_config(env: gym.Env) -> EnvConfig:
    """The :class:`EnvConfig` that makes copies of ``env`` (without its render mode)."""
    spec = env.spec
    if spec is None:
        raise ConfigError(
            f"{type(env.unwrapped).__name__} was not made with gymnasium.make, so it cannot be copied for "
            f"adaptation; make it with gymnasium.make(<id>) or pass an mlsh EnvConfig."
        )
    kwargs = {k: v for k, v in spec.kwargs.items() if k != "render_mode"}
    return EnvConfig(id=spec.id, kwargs=kwargs, max_episode_steps=spec.max_episode_steps)
