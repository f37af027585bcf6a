"""Making task-distribution envs and vector envs from an :class:`EnvConfig`."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import envs as mlsh_envs  # noqa: F401  (registers mlsh/* ids)
from mlsh.config import EnvConfig
from mlsh.errors import ConfigError

logger = logging.getLogger(__name__)


# ``info`` keys by which an env says that the agent reached the goal: Gymnasium's / Stable-Baselines3's convention,
# then ours (AntMaze, AntObstacles). Evaluation, inspection and videos read them through these two functions.
SUCCESS_KEYS = ("is_success", "goal_reached")


def success_key(info: Mapping[str, Any]) -> str | None:
    """The first of :data:`SUCCESS_KEYS` in ``info`` (one env's, or a vector env's), None where there is none."""
    for key in SUCCESS_KEYS:
        if key in info:
            return key
    return None


def success(info: Mapping[str, Any]) -> bool | None:
    """Whether one env's step ``info`` says the goal was reached; None for an env that does not say."""
    key = success_key(info)
    return None if key is None else bool(info[key])


SINGLE_TASK_ID = "mlsh/SingleTask-v0"  # any plain Gymnasium env as a distribution of one task
_WRAPPED_NOTICE: set[str] = set()  # ids already announced as wrapped (one notice per id)


def available_env_ids() -> list[str]:
    """The task-distribution env ids this package registers."""
    return mlsh_envs.registered_ids()


def make_env(env_cfg: EnvConfig) -> gym.Env:
    """Makes one env and checks that it follows the task contract (``envs/base.py``).

    A plain Gymnasium env (neither ``sample_task`` nor ``task``, e.g. ``Ant-v5``) is wrapped as a
    distribution of one task (:class:`envs.SingleTask`), so that the trainer runs on it unchanged.

    Raises:
        ConfigError: unknown id, a missing dependency, or an env with only part of the task contract.
    """
    kwargs: dict[str, Any] = dict(env_cfg.kwargs or {})
    if env_cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = env_cfg.max_episode_steps
    env = _gym_make(env_cfg.id, kwargs)
    unwrapped = env.unwrapped
    has_sampler, has_task = callable(getattr(unwrapped, "sample_task", None)), hasattr(unwrapped, "task")
    if not has_sampler and not has_task:
        env.close()
        if env_cfg.id not in _WRAPPED_NOTICE:
            _WRAPPED_NOTICE.add(env_cfg.id)
            logger.info("'%s' has no task contract: training it as a distribution of one task.", env_cfg.id)
        inner_kwargs = dict(env_cfg.kwargs or {})
        outer: dict[str, Any] = {"env_id": env_cfg.id, "env_kwargs": inner_kwargs}
        if env_cfg.max_episode_steps is not None:
            outer["max_episode_steps"] = env_cfg.max_episode_steps
        return _gym_make(SINGLE_TASK_ID, outer)
    if not (has_sampler and has_task):
        env.close()
        raise ConfigError(
            f"Env '{env_cfg.id}' does not follow the task contract: it needs sample_task(rng) and a settable "
            f"'task' attribute (subclass envs.TaskEnv)."
        )
    return env


def _gym_make(env_id: str, kwargs: dict[str, Any]) -> gym.Env:
    """``gym.make`` with its errors turned into one :class:`ConfigError` sentence each."""
    try:
        return gym.make(env_id, **kwargs)
    except ModuleNotFoundError as exc:
        module = env_id.split(":", 1)[0] if ":" in env_id else None
        name = exc.name or getattr(exc.__cause__, "name", None)  # Gymnasium re-raises without the name
        if module is not None and name is not None and module.startswith(name):
            raise ConfigError(
                f"Unknown env id '{env_id}': module '{name}' cannot be imported; check the name, or "
                f"install it, or use one of {', '.join(available_env_ids())}."
            ) from exc
        raise ConfigError(
            f"Env '{env_id}' needs the package '{name}', which is not installed; install it "
            f'(e.g. pip install "gymnasium[mujoco]" for Gymnasium\'s MuJoCo envs).'
        ) from exc
    except gym.error.DependencyNotInstalled as exc:
        raise ConfigError(f"Env '{env_id}' needs a package that is not installed: {exc}") from exc
    except gym.error.Error as exc:
        raise ConfigError(
            f"Unknown env id '{env_id}' ({exc}); use one of {', '.join(available_env_ids())}, a Gymnasium id "
            f"such as 'Ant-v5', or 'your_module:YourEnv-v0' for an env your module registers."
        ) from exc
    except TypeError as exc:
        raise ConfigError(f"env.kwargs do not fit '{env_id}': {exc}; fix or remove them.") from exc


class TaskVectorEnv(SyncVectorEnv):
    """Gymnasium's :class:`SyncVectorEnv` whose copies can be saved and put back (exact resume).

    Copies of a :class:`envs.TaskEnv` that declares ``state_attributes`` are saved as plain data: each
    one's :meth:`~envs.TaskEnv.state_dict` and the steps its ``TimeLimit`` has counted. Copies of any other
    env are saved whole, pickled. :meth:`load_state_dict` puts them back with the observations they last
    returned, which a masked reset (some copies reset, the others carry on) returns for the copies that
    carry on.
    """

    def state_dict(self) -> dict[str, Any] | list[bytes] | None:
        """The copies as plain data, else pickled; None when a copy cannot be pickled (a resume then restarts
        the episodes)."""
        states = [getattr(env.unwrapped, "state_dict", lambda: None)() for env in self.envs]
        if all(state is not None for state in states):
            return {"copies": states, "elapsed_steps": [_elapsed_steps(env) for env in self.envs]}
        try:
            return [pickle.dumps(env) for env in self.envs]
        except Exception:
            return None

    def load_state_dict(self, state: dict[str, Any] | list[bytes], observations: np.ndarray) -> None:
        """Puts back the copies of :meth:`state_dict` and their last observations ``[num_envs, ...]``."""
        if isinstance(state, dict):
            # Resetting first satisfies Gymnasium's order check (no step before a reset); the saved state
            # then replaces everything the reset drew.
            self.reset()
            for env, env_state, elapsed in zip(self.envs, state["copies"], state["elapsed_steps"], strict=True):
                env.unwrapped.load_state_dict(env_state)
                if elapsed is not None:
                    env.set_wrapper_attr("_elapsed_steps", elapsed, force=False)
        else:  # pickled copies: only envs without a state_dict are saved so (see load_checkpoint)
            self.envs = [pickle.loads(blob) for blob in state]
        self._env_obs = list(observations)


def _elapsed_steps(env: gym.Env) -> int | None:
    """The steps ``env``'s ``TimeLimit`` wrapper has counted in this episode; None without one."""
    try:
        return int(env.get_wrapper_attr("_elapsed_steps"))
    except AttributeError:
        return None


def make_vec_env(env_cfg: EnvConfig, num_envs: int) -> gym.vector.VectorEnv:
    """A vector env of ``num_envs`` copies with SAME_STEP autoreset (see ``mlsh/rollout.py``).

    An env registered with a ``vector_entry_point`` (the MuJoCo Ant tasks: one ``mujoco.batch`` for all
    copies) gets that; any other env gets a :class:`TaskVectorEnv` of copies made here, in this process,
    so :func:`make_env`'s errors surface unchanged.
    """
    env = make_env(env_cfg)  # checks the id, the kwargs and the task contract first
    spec = env.spec
    env.close()
    if spec is None or spec.vector_entry_point is None:
        return TaskVectorEnv(
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
