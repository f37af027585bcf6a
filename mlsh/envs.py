"""Making task-distribution envs and vector envs from an :class:`EnvConfig`."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import envs as mlsh_envs  # noqa: F401  (registers mlsh/* ids)
from mlsh.config import EnvConfig
from mlsh.errors import ConfigError


def available_env_ids() -> list[str]:
    """The task-distribution env ids this package registers."""
    return mlsh_envs.registered_ids()


def make_env(env_cfg: EnvConfig) -> gym.Env:
    """Makes one env and checks that it follows the task contract (``envs/base.py``).

    Raises:
        ConfigError: unknown id, or an env without ``sample_task`` / ``task``.
    """
    kwargs: dict[str, Any] = dict(env_cfg.kwargs or {})
    if env_cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = env_cfg.max_episode_steps
    try:
        env = gym.make(env_cfg.id, **kwargs)
    except (gym.error.Error, ModuleNotFoundError) as exc:
        raise ConfigError(
            f"Unknown env id '{env_cfg.id}' ({exc}); use one of {', '.join(available_env_ids())}, "
            f"or 'your_module:YourEnv-v0' for an env your module registers."
        ) from exc
    except TypeError as exc:
        raise ConfigError(f"env.kwargs do not fit '{env_cfg.id}': {exc}; fix or remove them.") from exc
    unwrapped = env.unwrapped
    if not callable(getattr(unwrapped, "sample_task", None)) or not hasattr(unwrapped, "task"):
        env.close()
        raise ConfigError(
            f"Env '{env_cfg.id}' does not follow the task contract: it needs sample_task(rng) and a settable "
            f"'task' attribute (subclass envs.TaskEnv)."
        )
    return env


def make_vec_env(env_cfg: EnvConfig, num_envs: int) -> gym.vector.VectorEnv:
    """A vector env of ``num_envs`` copies with SAME_STEP autoreset (see ``mlsh/rollout.py``).

    An env registered with a ``vector_entry_point`` (the MuJoCo Ant tasks: one ``mujoco.batch`` for all
    copies) gets that; any other env gets a :class:`SyncVectorEnv` of copies made here, in this process,
    so :func:`make_env`'s errors surface unchanged.
    """
    env = make_env(env_cfg)  # checks the id, the kwargs and the task contract first
    spec = env.spec
    env.close()
    if spec is None or spec.vector_entry_point is None:
        return SyncVectorEnv(
            [lambda: make_env(env_cfg) for _ in range(num_envs)], autoreset_mode=AutoresetMode.SAME_STEP
        )
    kwargs: dict[str, Any] = dict(env_cfg.kwargs or {})
    if env_cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = env_cfg.max_episode_steps
    vec_env = gym.make_vec(env_cfg.id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)
    mode = vec_env.metadata.get("autoreset_mode")
    if mode != AutoresetMode.SAME_STEP:
        vec_env.close()
        raise ConfigError(
            f"The vector env of '{env_cfg.id}' uses autoreset mode {mode}; mlsh needs AutoresetMode.SAME_STEP."
        )
    return vec_env


def env_signature(env: gym.Env) -> dict[str, str]:
    """What a checkpoint must match to be used with ``env``."""
    return {
        "observation_space": repr(env.observation_space),
        "action_space": repr(env.action_space),
    }
