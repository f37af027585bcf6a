"""A task env seen through frozen sub-policies: the master's semi-MDP as a Gymnasium env.

Any Stable-Baselines3 algorithm with discrete actions (PPO, A2C, DQN) can then train a master::

    from stable_baselines3 import PPO
    env = SubPolicyEnv(gymnasium.make("mlsh/MovementBandits-v0"), MLSHAgent.load(run_dir))
    env.unwrapped.task = 1
    PPO("MlpPolicy", env, n_steps=200).learn(5_000)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from agents.agent import MLSHAgent
from mlsh.config import is_int
from mlsh.errors import ConfigError


class Predictor(Protocol):
    """Anything with Stable-Baselines3's ``predict``, e.g. :meth:`MLSHAgent.subpolicy` or an SB3 model."""

    def predict(self, observation: np.ndarray, deterministic: bool = False) -> tuple[Any, Any]: ...


class SubPolicyEnv(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Turns a task env plus K frozen sub-policies into a semi-MDP with ``Discrete(K)`` actions.

    ## Description
    Action k runs sub-policy k for one macro step: ``macro_len`` primitive steps, or fewer when the
    episode ends first (episode ends take effect at once, as in MLSH's rollouts). The observation is
    the task env's, after the macro step.

    ## Action Space
    ``Discrete(K)``: which sub-policy acts for the next macro step.

    ## Observation Space
    The task env's.

    ## Rewards
    The sum of the primitive rewards of the macro step (undiscounted, as MLSH's master sees it).
    ``info["primitive_steps"]`` is the number of steps taken and ``info["subpolicy"]`` is k.

    ## Episode End
    When the task env terminates or truncates during the macro step.

    ## Arguments
    ``env``: the task env; ``subpolicies``: an :class:`MLSHAgent` (its K sub-policies) or a sequence
    of policies with ``predict``; ``macro_len``: N (default: the agent's); ``deterministic``: take
    the sub-policies' most likely actions instead of sampling them. Sampled actions come from a
    generator seeded by ``reset(seed=...)``, so the env is deterministic under a seed.
    """

    def __init__(
        self,
        env: gym.Env,
        subpolicies: MLSHAgent | Sequence[Predictor],
        macro_len: int | None = None,
        deterministic: bool = False,
    ) -> None:
        # Recorded so that gymnasium can remake the wrapped env from its spec (check_env does).
        gym.utils.RecordConstructorArgs.__init__(
            self, subpolicies=subpolicies, macro_len=macro_len, deterministic=deterministic
        )
        gym.Wrapper.__init__(self, env)
        self._generator: torch.Generator | None = None
        if isinstance(subpolicies, MLSHAgent):
            if subpolicies.observation_space != env.observation_space:
                raise ConfigError(
                    f"The agent was trained on observations {subpolicies.observation_space}, the env gives "
                    f"{env.observation_space}; wrap an env of the task distribution the agent was trained on."
                )
            if subpolicies.action_space != env.action_space:
                raise ConfigError(
                    f"The agent's sub-policies act in {subpolicies.action_space}, the env takes "
                    f"{env.action_space}; wrap an env of the task distribution the agent was trained on."
                )
            macro_len = subpolicies.macro_len if macro_len is None else macro_len
            self._generator = torch.Generator(device=subpolicies.device)
            self._generator.seed()
            policies: list[Predictor] = [
                subpolicies.subpolicy(k, self._generator) for k in range(subpolicies.num_subpolicies)
            ]
        else:
            policies = list(subpolicies)
        if not policies:
            raise ConfigError("SubPolicyEnv needs at least one sub-policy.")
        if not is_int(macro_len) or macro_len < 1:
            raise ConfigError(f"macro_len must be a positive integer, got {macro_len!r}; pass e.g. macro_len=10.")
        self.subpolicies = policies
        self.macro_len = macro_len
        self.deterministic = deterministic
        self.action_space = spaces.Discrete(len(policies))
        self._obs: Any = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None and self._generator is not None:
            self._generator.manual_seed(seed)  # in place: the sub-policies hold this generator
        self._obs, info = self.env.reset(seed=seed, options=options)
        return self._obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(
                f"SubPolicyEnv action must be a sub-policy index in [0, {self.action_space.n}), got {action!r}."
            )
        policy = self.subpolicies[int(action)]
        total = 0.0
        terminated = truncated = False
        info: dict[str, Any] = {}
        steps = 0
        while steps < self.macro_len and not (terminated or truncated):
            primitive, _ = policy.predict(self._obs, deterministic=self.deterministic)
            self._obs, reward, terminated, truncated, info = self.env.step(primitive)
            total += float(reward)
            steps += 1
        return self._obs, total, terminated, truncated, {**info, "primitive_steps": steps, "subpolicy": int(action)}
