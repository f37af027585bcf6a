"""Helpers of the reliability tests: directory fingerprints, in-process CLI calls, odd envs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

TINY = [
    "mlsh.num_slots=2",
    "train.envs_per_slot=2",
    "train.rollout_len=50",
    "train.checkpoint_every=1",
    "train.progress=false",
    "master.hidden_sizes=[16]",
    "sub.hidden_sizes=[16]",
]


def tree_hash(root: Path) -> dict[str, str]:
    """Every file and directory under ``root`` (hidden ones included) with a hash of its content."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def run_main(
    main: Callable[[], Any], argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> tuple[int, list[str]]:
    """Runs a command's ``main`` in this process as ``run_cli`` does; returns ``(exit code, stderr lines)``."""
    from mlsh.cli import run_cli

    monkeypatch.setattr(sys, "argv", ["mlsh", *argv])
    code = 0
    try:
        run_cli(main)
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, err


def cli(module: str, *args: str, cwd: Path, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environment
    )


class NanObsEnv(gym.Env):
    """A task env whose observation turns NaN after ``nan_after`` steps."""

    def __init__(self, nan_after: int = 3) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.task = 0
        self.nan_after = nan_after
        self._t = 0

    def sample_task(self, rng: np.random.Generator) -> int:
        return int(rng.integers(2))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # type: ignore[override]
        super().reset(seed=seed)
        if options and "task" in options:
            self.task = options["task"]
        self._t = 0
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action: Any):  # type: ignore[override]
        self._t += 1
        value = np.nan if self._t >= self.nan_after else float(self._t)
        return np.array([value, 0.0], dtype=np.float32), 0.0, False, self._t >= 10, {}


class DuckTasks(gym.Env):
    """The README's task contract by duck typing: ``sample_task(rng)``, a persistent ``task``,
    ``reset(options={"task": ...})``; no ``envs.TaskEnv`` base, no ``sample_test_task``, no ``oracle_action``.

    The task (an int) is a goal in [0, 2**40): reward 1 when the action equals its parity.
    """

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.task = 0
        self._t = 0

    def sample_task(self, rng: np.random.Generator) -> int:
        return int(rng.integers(2**40))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # type: ignore[override]
        super().reset(seed=seed)
        if options and "task" in options:
            self.task = options["task"]
        self._t = 0
        return self._obs(), {}

    def step(self, action: Any):  # type: ignore[override]
        self._t += 1
        reward = float(int(action) == self.task % 2)
        return self._obs(), reward, False, False, {}

    def _obs(self) -> np.ndarray:
        return np.array([self._t / 10.0, self.np_random.uniform(-1, 1)], dtype=np.float32)


NAN_ID = "mlsh_test/NanObs-v0"
DUCK_ID = "mlsh_test/DuckTasks-v0"
if NAN_ID not in gym.registry:
    gym.register(NAN_ID, entry_point=NanObsEnv, max_episode_steps=10)
if DUCK_ID not in gym.registry:
    gym.register(DUCK_ID, entry_point=DuckTasks, max_episode_steps=10)


def unshare_works() -> bool:
    """Whether this process may mount file systems in a private mount namespace (root, ``unshare -m``)."""
    try:
        probe = subprocess.run(
            ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || exit 3"],
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0
