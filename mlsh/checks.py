"""Checks that run before any work and before anything is written (training, evaluation, agents).

Each raises an :class:`~mlsh.errors.MLSHError` whose message is one sentence naming the fix; settings that are
legal but unwise are reported by :func:`warn` as one ``warning:`` line and do not stop anything.
"""

from __future__ import annotations

import errno
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from mlsh.config import Config, EnvConfig, check_device_name
from mlsh.errors import ConfigError, MLSHError, StorageError

log = logging.getLogger("mlsh")

# mlsh.num_subpolicies from which a run gets a warning with its memory estimate ("K in the thousands").
MANY_SUBPOLICIES = 1000
# Free space asked of an output's file system beyond the estimated size of what is written (logs, plots).
MARGIN_BYTES = 16 * 2**20
# Random steps of the trial episode run on the env before training (observations and rewards must be finite).
PROBE_STEPS = 20


def warn(message: str) -> None:
    """One ``warning: ...`` line on stderr (through the ``mlsh`` logger)."""
    log.warning("warning: %s", message)


def notice(message: str) -> None:
    """One ``mlsh: ...`` line on stderr for a fallback the user should know about."""
    log.warning("mlsh: %s", message)


# -- device -------------------------------------------------------------------------------------------------------
def check_device(device: Any, key: str = "device") -> None:
    """Refuses a malformed device name, and a CUDA device this machine does not have.

    Raises:
        ConfigError: naming ``key`` and the devices available.
    """
    import torch

    check_device_name(key, device)
    if not device.startswith("cuda"):
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ConfigError(f"{key}={device} but this machine has no usable CUDA GPU; set {key}=cpu or {key}=auto.")
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        raise ConfigError(
            f"{key}={device} but this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}; "
            f"set {key}=cuda:0 or {key}=cpu."
        )


# -- env ----------------------------------------------------------------------------------------------------------
def _finite(value: Any) -> bool:
    try:
        return bool(np.all(np.isfinite(np.asarray(value, dtype=np.float64))))
    except (TypeError, ValueError):
        return False


def task_family(env: gym.Env, env_id: str, task_sampling: str) -> list[Any] | None:
    """The env's finite task family (``envs.base.TaskEnv.train_tasks``), None where it has none.

    Raises:
        ConfigError: ``task_sampling`` is ``balanced`` and the env has no finite task family.
    """
    family = getattr(env.unwrapped, "train_tasks", None)
    if family is None and task_sampling == "balanced":
        raise ConfigError(
            f"mlsh.task_sampling=balanced needs a finite task family, and {env_id} has no train_tasks; set "
            f"mlsh.task_sampling=iid."
        )
    return family


def probe_env(env_cfg: EnvConfig, steps: int | None = None, task_sampling: str = "iid") -> tuple[gym.Space, gym.Space]:
    """Makes the env (the task contract is checked by :func:`mlsh.envs.make_env`), checks that it has a task
    family if ``task_sampling`` needs one, resets it and takes ``steps`` random steps, checking that observations
    fit the observation space's shape and that observations and rewards are finite; returns
    ``(observation_space, action_space)``.

    Raises:
        ConfigError: the env cannot be made, lacks the task family ``task_sampling`` needs, or its trial
            episode fails or gives non-finite values.
    """
    from mlsh.envs import make_env

    steps = PROBE_STEPS if steps is None else steps
    env = make_env(env_cfg)
    name = env_cfg.id
    try:
        task_family(env, name, task_sampling)
        shape = tuple(env.observation_space.shape or ())

        def check_obs(obs: Any, when: str) -> None:
            if np.shape(obs) != shape:
                raise ConfigError(
                    f"Env '{name}' returned an observation of shape {np.shape(obs)} {when}, but its observation "
                    f"space has shape {shape}; fix the env's observation_space or its observations."
                )
            if not _finite(obs):
                raise ConfigError(
                    f"Env '{name}' returned a non-finite observation (NaN or inf) {when}; fix the env, MLSH needs "
                    f"finite observations."
                )

        obs, _ = env.reset(seed=0)
        check_obs(obs, "at reset")
        env.action_space.seed(0)
        for step in range(steps):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            check_obs(obs, f"at step {step + 1} of a trial episode")
            if not _finite(reward):
                raise ConfigError(
                    f"Env '{name}' returned a non-finite reward ({reward}) at step {step + 1} of a trial episode; "
                    f"fix the env, MLSH needs finite rewards."
                )
            if terminated or truncated:
                obs, _ = env.reset()
                check_obs(obs, "at reset")
        return env.observation_space, env.action_space
    except MLSHError:
        raise
    except Exception as exc:  # a user's env failing on its first steps: one sentence, not its traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(
            f"Env '{name}' failed in a trial episode ({type(exc).__name__}: {first}); fix the env or its settings "
            f"(env.kwargs, env.max_episode_steps)."
        ) from exc
    finally:
        env.close()


# -- sizes --------------------------------------------------------------------------------------------------------
def _mlp_params(inputs: int, hidden: Sequence[int], outputs: int) -> int:
    sizes = [inputs, *hidden, outputs]
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def _space_width(space: gym.Space) -> int:
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    return int(np.prod(space.shape or (1,)))


def parameter_count(cfg: Config, observation_space: gym.Space, action_space: gym.Space) -> int:
    """Parameters of the hierarchy: K sub-policies and M masters, each an actor and a critic."""
    obs = int(np.prod(observation_space.shape or (1,)))
    act = _space_width(action_space)
    k, m = cfg.mlsh.num_subpolicies, cfg.mlsh.num_slots
    seen = obs - len(cfg.sub.hidden_obs)  # the sub-policies' input width
    subs = k * (_mlp_params(seen, cfg.sub.hidden_sizes, act) + _mlp_params(seen, cfg.sub.hidden_sizes, 1) + act)
    masters = m * (_mlp_params(obs, cfg.master.hidden_sizes, k) + _mlp_params(obs, cfg.master.hidden_sizes, 1))
    return subs + masters


def checkpoint_bytes(cfg: Config, observation_space: gym.Space, action_space: gym.Space) -> int:
    """Rough size of a checkpoint: parameters and both Adam moments in float32, plus 1 MiB of the rest."""
    return 3 * 4 * parameter_count(cfg, observation_space, action_space) + 2**20


def memory_bytes(cfg: Config, observation_space: gym.Space, action_space: gym.Space) -> int:
    """Rough peak memory of training: parameters, gradients and Adam moments, plus one rollout step's forward pass
    of every sub-policy (actor and critic) on every env's observation."""
    envs = cfg.mlsh.num_slots * cfg.train.envs_per_slot
    width = sum(cfg.sub.hidden_sizes) + _space_width(action_space) + 1
    activations = 2 * cfg.mlsh.num_subpolicies * envs * width * 4
    return 4 * 4 * parameter_count(cfg, observation_space, action_space) + activations


def advisories(cfg: Config, observation_space: gym.Space, action_space: gym.Space) -> list[str]:
    """One line per legal but unwise setting of a run: many sub-policies (with the memory estimate), a budget
    under one iteration or not a whole number of iterations (with the effective budget)."""
    out = []
    k = cfg.mlsh.num_subpolicies
    if k >= MANY_SUBPOLICIES:
        gib = memory_bytes(cfg, observation_space, action_space) / 2**30
        out.append(
            f"mlsh.num_subpolicies={k} is in the thousands: training needs about {gib:.1f} GiB of memory and each "
            f"iteration evaluates every sub-policy on every observation; lower it unless you mean it."
        )
    total, per_iteration = cfg.train.total_timesteps, cfg.steps_per_iteration
    if total < per_iteration:
        out.append(
            f"train.total_timesteps={total} is under one iteration ({per_iteration} env steps = mlsh.num_slots x "
            f"train.envs_per_slot x train.rollout_len): the run trains 1 iteration, {per_iteration} env steps."
        )
    elif total % per_iteration:
        n = total // per_iteration
        out.append(
            f"train.total_timesteps={total} is not a whole number of iterations of {per_iteration} env steps: the "
            f"run trains {n} iteration{'s' if n > 1 else ''}, {n * per_iteration} env steps."
        )
    return out


# -- files --------------------------------------------------------------------------------------------------------
def _existing_ancestor(path: Path) -> Path:
    current = path
    while True:
        try:
            current.lstat()
            return current
        except FileNotFoundError:
            if current.parent == current:
                return current
            current = current.parent
        except NotADirectoryError:
            current = current.parent


def check_writable(path: str | Path, what: str, directory: bool, need_bytes: int = 0) -> None:
    """Refuses, before anything is written, an output that cannot be written: a parent that is a file, a read-only
    file system, a directory without write permission, or less free space than ``need_bytes`` plus a margin.

    Args:
        path: the directory (``directory=True``) or file to write; it need not exist yet.
        what: what it is, for the message (``"run dir"``, ``"output"``).

    Raises:
        StorageError: one sentence naming the path, the cause and the fix.
    """
    path = Path(path).absolute()
    existing = _existing_ancestor(path)
    if existing == path:
        if directory and not path.is_dir():
            raise StorageError(f"Cannot use {what} {path}: it is a file, not a directory; choose another path.")
        if not directory and path.is_dir():
            raise StorageError(f"Cannot write {what} {path}: it is a directory; name a file, e.g. {path}/out.json.")
    elif not existing.is_dir():
        raise StorageError(f"Cannot write {what} {path}: {existing} is a file, not a directory; choose another path.")
    folder = existing if existing.is_dir() else existing.parent
    try:
        stats = os.statvfs(folder)
    except OSError as exc:
        raise StorageError(f"Cannot write {what} {path}: {folder}: {exc.strerror}; choose another path.") from exc
    if stats.f_flag & os.ST_RDONLY:
        raise StorageError(
            f"Cannot write {what} {path}: {folder} is on a read-only file system; choose a writable path."
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StorageError(f"Cannot write {what} {path}: permission denied on {folder}; choose a path you can write.")
    free = stats.f_bavail * stats.f_frsize
    need = need_bytes + MARGIN_BYTES
    if free < need:
        raise StorageError(
            f"Cannot write {what} {path}: only {_size(free)} free on its file system and about {_size(need)} are "
            f"needed; free some space or choose another path."
        )


def _size(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"  # pragma: no cover


_DISK_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "its directory does not exist",
    errno.ENOTDIR: "a parent is not a directory",
    errno.EISDIR: "it is a directory",
    errno.EIO: "input/output error",
}


def storage_error(exc: OSError, path: str | Path, what: str, kept: str = "") -> StorageError:
    """A :class:`StorageError` for a failed write: ``path``, the cause (``exc``'s errno in words) and the fix."""
    cause = _DISK_CAUSES.get(exc.errno or 0) or (exc.strerror or type(exc).__name__).lower()
    fix = "free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "choose a writable path"
    kept_text = f"; {kept}" if kept else ""
    return StorageError(f"Cannot write {what} {path}: {cause}{kept_text}; {fix} and try again.")


def is_disk_error(exc: BaseException) -> bool:
    """An OSError about the file system (space, permissions, missing directories), not a programming error."""
    return isinstance(exc, OSError) and exc.errno in _DISK_CAUSES


def finite_number(value: Any) -> bool:
    """A real number (not a bool) that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
