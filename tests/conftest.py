"""Shared fixtures: a tiny task env with random episode ends, and small configs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from envs.base import TaskEnv
from mlsh.config import Config, EnvConfig, MLSHConfig, PPOConfig, SubConfig, TrainConfig

RANDOM_END_ID = "mlsh_test/RandomEnd-v0"


class RandomEndEnv(TaskEnv[int]):
    """Reward 1 when the action equals the task; terminates with probability 0.15 per step.

    Observation: (steps since reset / 10, task-independent noise). Time limit 9 (registered).
    """

    metadata = {"render_modes": []}

    def __init__(self, end_prob: float = 0.15) -> None:
        self.end_prob = end_prob
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self._t = 0
        super().__init__()

    def sample_task(self, rng: np.random.Generator) -> int:
        return int(rng.integers(2))

    def validate_task(self, task: Any) -> int:
        if int(task) not in (0, 1):
            raise ValueError("task must be 0 or 1")
        return int(task)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # type: ignore[override]
        super().reset(seed=seed)
        self._apply_reset_options(options)
        self._t = 0
        return self._obs(), {}

    def step(self, action: Any):  # type: ignore[override]
        self._t += 1
        reward = float(int(action) == self._task)
        terminated = bool(self.np_random.random() < self.end_prob)
        return self._obs(), reward, terminated, False, {"task": self._task}

    def oracle_action(self) -> int:
        return self._task

    def _obs(self) -> np.ndarray:
        return np.array([self._t / 10.0, self.np_random.normal()], dtype=np.float32)


CONTINUOUS_ID = "mlsh_test/ContinuousTarget-v0"


class ContinuousTargetEnv(TaskEnv[int]):
    """Box actions: reward -|action - target|^2 where the target (+-0.5, 0.5) is the task."""

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        super().__init__()

    def sample_task(self, rng: np.random.Generator) -> int:
        return int(rng.integers(2))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # type: ignore[override]
        super().reset(seed=seed)
        self._apply_reset_options(options)
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), {}

    def step(self, action: Any):  # type: ignore[override]
        target = np.array([0.5 if self._task else -0.5, 0.5])
        reward = -float(np.sum((np.asarray(action) - target) ** 2))
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), reward, False, False, {}


GOAL_ID = "mlsh_test/GoalCount-v0"
GOAL_EPISODE_LEN = 4


class GoalCountEnv(TaskEnv[int]):
    """Scripted goal reaches, the same whatever the actions, so that they can be counted by hand.

    Episodes last 4 steps (terminated). The task says when the step info's ``goal_reached`` is true,
    with reward 1 on that step (sparse, as AntObstacles):

    * task 0: never;
    * task 1: on the last step of the env's even-numbered episodes (2nd, 4th, ...: read from ``final_info``);
    * task 2: on the 2nd step of every episode (mid-episode: the episode goes on, the reach still counts).
    """

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self._t = 0
        self._episode = 0  # episodes started since the env was made
        super().__init__()

    def sample_task(self, rng: np.random.Generator) -> int:
        return int(rng.integers(3))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # type: ignore[override]
        super().reset(seed=seed)
        self._apply_reset_options(options)
        self._t = 0
        self._episode += 1
        return self._obs(), {"goal_reached": False}

    def step(self, action: Any):  # type: ignore[override]
        self._t += 1
        terminated = self._t == GOAL_EPISODE_LEN
        reached = {0: False, 1: terminated and self._episode % 2 == 0, 2: self._t == 2}[self._task]
        return self._obs(), float(reached), terminated, False, {"goal_reached": reached}

    def _obs(self) -> np.ndarray:
        return np.array([self._t / GOAL_EPISODE_LEN, 0.0], dtype=np.float32)


if GOAL_ID not in gym.registry:
    gym.register(GOAL_ID, entry_point=GoalCountEnv, max_episode_steps=10)

if CONTINUOUS_ID not in gym.registry:
    gym.register(CONTINUOUS_ID, entry_point=ContinuousTargetEnv, max_episode_steps=10)

if RANDOM_END_ID not in gym.registry:
    gym.register(RANDOM_END_ID, entry_point=RandomEndEnv, max_episode_steps=9)


def small_config(env_id: str = "mlsh/MovementBandits-v0", **mlsh: Any) -> Config:
    """A config small enough for unit tests (2 slots x 2 envs x 20 steps)."""
    m = MLSHConfig(num_subpolicies=2, macro_len=5, warmup_iters=2, joint_iters=1, num_slots=2, stagger=False)
    for key, value in mlsh.items():
        setattr(m, key, value)
    return Config(
        env=EnvConfig(id=env_id),
        mlsh=m,
        master=PPOConfig(lr=0.01, update_epochs=2, num_minibatches=1, hidden_sizes=[16]),
        sub=SubConfig(lr=3e-4, update_epochs=2, num_minibatches=2, hidden_sizes=[16]),
        train=TrainConfig(total_timesteps=800, envs_per_slot=2, rollout_len=20, checkpoint_every=1, progress=False),
        seed=0,
        device="cpu",
    )


def tiny_ant_maze_config() -> Config:
    """:func:`small_config` on AntMaze with 10-step macro steps and 20-step episodes: an Ant run in seconds."""
    cfg = small_config("mlsh/AntMaze-v0", macro_len=10)
    cfg.env.max_episode_steps = 20
    return cfg


def start_train_and_evaluate(
    run_dir: Path, train_args: Sequence[str], eval_args: str, seed: int = 0
) -> subprocess.Popen[str]:
    """Starts ``mlsh.train`` then ``mlsh.evaluate`` (JSON to ``run_dir/result.json``), both with ``seed``, in
    a single-threaded subprocess, so that learning tests can run two jobs at once, one per core."""
    script = (
        f"{sys.executable} -m mlsh.train seed={seed} train.progress=false hydra.run.dir={run_dir} "
        f"{' '.join(train_args)} && {sys.executable} -m mlsh.evaluate checkpoint={run_dir} seed={seed} "
        f"output={run_dir}/result.json {eval_args}"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(["bash", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def evaluation_result(name: str, process: subprocess.Popen[str], run_dir: Path) -> dict[str, Any]:
    """Waits for a :func:`start_train_and_evaluate` job and returns its evaluation JSON."""
    _, stderr = process.communicate(timeout=1800)
    assert process.returncode == 0, f"{name}: {stderr[-2000:]}"
    return json.loads((run_dir / "result.json").read_text())


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained run shared by the agent and evaluation tests: MovementBandits, K = 2, N = 5, 10 iterations
    of 2 slots x 2 envs x 20 steps (a few seconds, once per session).

    It lives here rather than in ``tests/agents/conftest.py``: pytest imports every ``conftest.py`` of
    this directory tree under the module name ``conftest``, so a second one would replace this module
    in ``sys.modules`` and the test envs above could no longer be pickled into checkpoints.
    """
    from mlsh.trainer import train

    run_dir = tmp_path_factory.mktemp("tiny_run")
    train(small_config(), run_dir)
    return run_dir


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


def load_script(name: str) -> Any:
    """Imports ``scripts/<name>.py`` (scripts are not a package) and returns the module."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# -- two training processes (torch.distributed, gloo) --------------------------------------------------------------
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _subpolicies_worker(rank: int, port: int, out_dir: str, cfg: Config, iterations: int) -> None:
    import torch.distributed as dist

    from mlsh.distributed import DistContext
    from mlsh.meta import MetaLearner

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        learner = MetaLearner(cfg, dist=DistContext.current())
        initial = {k: v.clone() for k, v in learner.policy.subpolicies.state_dict().items()}
        for _ in range(iterations):
            learner.train_iteration()
        torch.save((initial, learner.policy.subpolicies.state_dict()), Path(out_dir) / f"rank{rank}.pt")
        learner.close()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def train_subpolicies_in_two_processes(
    cfg: Config, out_dir: Path, iterations: int = 3
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Trains ``cfg`` for ``iterations`` iterations in two gloo processes (each its share of the slots) and returns
    the sub-policies' state: rank 0's at the start, then each rank's at the end."""
    import torch.multiprocessing as mp

    args = (free_port(), str(out_dir), cfg, iterations)
    mp.start_processes(_subpolicies_worker, args=args, nprocs=2, join=True, start_method="spawn")
    (initial, first), (_, second) = (torch.load(out_dir / f"rank{rank}.pt") for rank in range(2))
    return initial, first, second
