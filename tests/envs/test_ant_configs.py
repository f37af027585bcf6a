"""The Hydra configs of the Ant tasks: the paper's settings, and a training iteration on the batched env."""

from __future__ import annotations

from pathlib import Path

import pytest

from envs.mujoco_batch import AntBatchVectorEnv
from mlsh.cli import compose_config
from mlsh.config import Config, config_from_dict
from mlsh.meta import MetaLearner
from mlsh.trainer import train


def _compose(*overrides: str) -> Config:
    data = compose_config("train", list(overrides))
    data.pop("resume")  # a command-line setting, not part of a run's Config
    return config_from_dict(data)


# name: (id, K, N, W, U, T)
PAPER = {
    "AntTwowalk": ("mlsh/AntTwowalk-v0", 2, 200, 20, 40, 1000),
    "AntMaze": ("mlsh/AntMaze-v0", 4, 200, 20, 40, 1000),
    "AntMovement": ("mlsh/AntMovement-v0", 4, 200, 20, 40, 1000),
    "AntObstacles": ("mlsh/AntObstacles-v0", 4, 200, 20, 40, 2000),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_config_has_the_papers_settings_and_uses_the_batched_env(name: str) -> None:
    cfg = _compose(f"env={name}")
    env_id, k, n, w, u, horizon = PAPER[name]
    m = cfg.mlsh
    assert (cfg.env.id, m.num_subpolicies, m.macro_len, m.warmup_iters, m.joint_iters) == (env_id, k, n, w, u)
    assert cfg.train.rollout_len == horizon, "one whole episode per env and iteration"
    assert cfg.train.envs_per_slot * cfg.train.rollout_len == 2000, "D = 2000 steps per slot, as in the paper"
    if name == "AntTwowalk":  # the master settings that adapted best (docs/results/ant.md)
        assert (cfg.master.lr, cfg.master.gamma, cfg.master.gae_lambda) == (0.003, 0.5, 0.5)
    if name in ("AntMaze", "AntMovement"):  # the sub-policy settings that walk (docs/results/ant.md)
        s = cfg.sub
        assert (s.init_log_std, s.sharing, s.target_kl, s.num_minibatches, list(s.hidden_obs)) == (
            -1,
            "trunk",
            0.02,
            32,
            [0, 1],
        )
        assert cfg.train.normalize_reward
    if name == "AntMaze":  # a budget for 2 cores, and fresh masters' settings of their own
        assert cfg.train.total_timesteps == 16_000_000
        assert (cfg.master.lr, cfg.master.gamma, cfg.master.gae_lambda) == (0.01, 0.99, 0.98)  # the paper's in training
        given = {key: value for key, value in cfg.adapt_master.items() if value is not None}
        assert given == {"lr": 0.003, "gamma": 0.5, "gae_lambda": 0.5}  # fresh masters on held-out mazes
    cfg.mlsh.num_slots, cfg.train.envs_per_slot = 2, 1
    learner = MetaLearner(cfg)
    assert isinstance(learner.vec_env, AntBatchVectorEnv)
    assert learner.vec_env.max_episode_steps == horizon
    learner.close()


def test_train_env_antmaze_runs_on_the_batched_env(tmp_path: Path) -> None:
    cfg = _compose(
        "env=AntMaze",
        "mlsh.num_slots=2",
        "train.envs_per_slot=1",
        "train.rollout_len=200",
        "train.total_timesteps=400",
        "train.progress=false",
        "master.hidden_sizes=[16]",
        "sub.hidden_sizes=[16]",
    )
    summary = train(cfg, tmp_path)
    assert summary["finished"] and summary["timesteps"] == 400
    assert (tmp_path / "checkpoint.pt").exists()
