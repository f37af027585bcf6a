"""Rollout collection: macro clock, episode ends, bootstrapping, tasks per slot, host->device uploads."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.base import TaskEnv
from mlsh.meta import MetaLearner
from tests.conftest import RANDOM_END_ID, small_config


def _learner(macro_len: int = 3, **kwargs: object) -> MetaLearner:
    cfg = small_config(RANDOM_END_ID, macro_len=macro_len, **kwargs)
    cfg.train.rollout_len = 30
    return MetaLearner(cfg)


def test_rollout_batch_shapes() -> None:
    learner = _learner()
    learner.collector.reset(0, [0, 1])
    batch, stats = learner.collector.collect(30)
    num_envs = 4
    assert batch.obs.shape == (30, num_envs, 2)
    for field in ("actions", "sub_idx", "sub_logprob", "sub_values", "rewards", "terminated", "decisions"):
        assert getattr(batch, field).shape == (30, num_envs), field
    assert batch.next_sub_values.shape == (num_envs,)
    assert batch.next_master_values.shape == (num_envs,)
    assert len(stats.returns) == len(stats.slots) > 0


def test_reward_scale_scales_the_learning_rewards_not_the_reported_returns() -> None:
    batches = {}
    for scale in (1.0, 0.25):
        torch.manual_seed(0)
        cfg = small_config(RANDOM_END_ID, macro_len=3)
        cfg.train.rollout_len, cfg.train.reward_scale = 30, scale
        learner = MetaLearner(cfg)
        learner.collector.reset(0, [0, 1])
        batches[scale] = learner.collector.collect(30)
    (raw, raw_stats), (scaled, scaled_stats) = batches[1.0], batches[0.25]
    assert raw.rewards.abs().sum() > 0
    assert torch.equal(scaled.rewards, raw.rewards * 0.25)
    assert torch.equal(scaled.actions, raw.actions)
    assert np.array_equal(scaled_stats.returns, raw_stats.returns)


def test_reward_scale_reaches_the_collector_from_the_config() -> None:
    cfg = small_config(RANDOM_END_ID, macro_len=3)
    cfg.train.rollout_len, cfg.train.reward_scale = 30, 0.5
    assert MetaLearner(cfg).collector.reward_scale == 0.5
    assert _learner().collector.reward_scale == 1.0


def _discounted_std(rewards: np.ndarray, ended: np.ndarray, gamma: float) -> float:
    """Closed form: the std (about their mean, merged with the prior: count 1e-4, mean 0, variance 1) of
    each env's running discounted return over one rollout that starts from zero, as VecNormalize's."""
    returns, running = [], np.zeros(rewards.shape[1])
    for t in range(rewards.shape[0]):
        running = running * gamma + rewards[t]
        returns.append(running.copy())
        running = np.where(ended[t], 0.0, running)
    mean, var, n, prior = float(np.mean(returns)), float(np.var(returns)), rewards.size, 1e-4
    total = prior + n
    merged = (1.0 * prior + var * n + mean**2 * prior * n / total) / total
    return float(np.sqrt(merged + 1e-8))


def test_normalize_reward_divides_by_the_std_of_the_discounted_returns() -> None:
    batches = {}
    for normalize in (False, True):
        torch.manual_seed(0)
        cfg = small_config(RANDOM_END_ID, macro_len=3)
        cfg.train.rollout_len, cfg.train.normalize_reward, cfg.sub.gamma = 30, normalize, 0.9
        learner = MetaLearner(cfg)
        learner.collector.reset(0, [0, 1])
        batches[normalize] = learner.collector.collect(30)
    (raw, raw_stats), (normed, normed_stats) = batches[False], batches[True]
    ended = (raw.terminated | raw.truncated).numpy()
    assert ended.any() and raw.rewards.abs().sum() > 0
    std = _discounted_std(raw.rewards.numpy().astype(np.float64), ended, 0.9)
    assert std != pytest.approx(1.0, abs=0.05)  # the case tells the scaled rewards from the raw ones
    expected = (raw.rewards.double() / std).clamp(-10, 10).float()
    torch.testing.assert_close(normed.rewards, expected)
    assert torch.equal(normed.actions, raw.actions)
    assert np.array_equal(normed_stats.returns, raw_stats.returns)  # reported returns stay raw


def test_normalize_reward_statistics_survive_a_checkpoint() -> None:
    cfg = small_config(RANDOM_END_ID, macro_len=3)
    cfg.train.rollout_len, cfg.train.normalize_reward = 30, True
    learner = MetaLearner(cfg)
    learner.collector.reset(0, [0, 1])
    learner.collector.collect(30)
    state = learner.collector.state_dict()
    fresh = MetaLearner(cfg).collector
    fresh.load_state_dict(state)
    assert fresh.return_var == learner.collector.return_var != 1.0
    assert fresh.return_mean == learner.collector.return_mean != 0.0
    assert fresh.return_count == learner.collector.return_count
    assert np.array_equal(fresh.discounted_return, learner.collector.discounted_return)
    assert MetaLearner(small_config(RANDOM_END_ID, macro_len=3)).collector.reward_norm_gamma is None


class _Walker(TaskEnv[int]):
    """Moves +1 in x every step (+1 in y as well with action 1); reports its position as the Ant envs do."""

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-100.0, 100.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        super().__init__()

    def sample_task(self, rng: np.random.Generator) -> int:
        return 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):  # type: ignore[override]
        super().reset(seed=seed)
        self.xy = np.zeros(2)
        return self.xy.astype(np.float32), {"x_position": 0.0, "y_position": 0.0}

    def step(self, action: int):  # type: ignore[override]
        self.xy = self.xy + np.array([1.0, float(action)])
        info = {"x_position": self.xy[0], "y_position": self.xy[1]}
        return self.xy.astype(np.float32), 0.0, False, False, info


WALKER_ID = "mlsh_test/Walker-v0"
if WALKER_ID not in gym.registry:
    gym.register(WALKER_ID, entry_point=_Walker, max_episode_steps=12)


def test_macro_moves_are_each_complete_macro_steps_displacement_under_its_sub_policy() -> None:
    cfg = small_config(WALKER_ID, macro_len=4)
    cfg.train.rollout_len = 24
    learner = MetaLearner(cfg)
    learner.collector.reset(0, [0, 0])
    batch, stats = learner.collector.collect(24)
    moves = stats.macro_moves
    # Per env: episode 1 (steps 0-11) starts from an unknown position at reset(): macro steps 2 and 3
    # count; episode 2 starts from its reported reset position: all 3 count. 4 envs x 5.
    assert moves.shape == (20, 3)
    np.testing.assert_array_equal(moves[:, 1], 4.0)  # x: +1 per step
    # y: +1 per step of action 1, summed over the macro step, under the sub-policy that acted then.
    actions, subs = batch.actions.numpy(), batch.sub_idx.numpy()
    expected = []
    for t in (7, 11, 15, 19, 23):
        for b in range(4):
            expected.append((subs[t, b], actions[t - 3 : t + 1, b].sum()))
    assert sorted(map(tuple, moves[:, [0, 2]].tolist())) == sorted((float(k), float(dy)) for k, dy in expected)
    metrics = learner._rollout_metrics(batch, stats, [0, 0])
    for k in range(2):
        rows = moves[moves[:, 0] == k, 1:]
        if len(rows):
            assert metrics[f"meta/sub_move_{k}"] == pytest.approx(float(np.hypot(*rows.mean(0))))


def test_envs_without_positions_report_no_moves() -> None:
    learner = _learner()
    learner.collector.reset(0, [0, 1])
    _, stats = learner.collector.collect(30)
    assert stats.macro_moves.shape == (0, 3)
    assert not any(
        key.startswith("meta/sub_move") for key in learner._rollout_metrics(*learner.collector.collect(30), [0, 0])
    )


def test_macro_clock_one_decision_per_macro_len_and_at_every_episode_start() -> None:
    macro_len = 3
    learner = _learner(macro_len)
    learner.collector.reset(0, [0, 1])
    batches = [learner.collector.collect(30)[0] for _ in range(2)]  # the clock carries across rollouts
    decisions = torch.cat([b.decisions for b in batches]).numpy()
    ended = torch.cat([b.terminated | b.truncated for b in batches]).numpy()
    sub_idx = torch.cat([b.sub_idx for b in batches]).numpy()
    assert ended.any(), "the test env must end episodes inside the rollout"
    for env in range(decisions.shape[1]):
        since_start = 0
        for t in range(decisions.shape[0]):
            expected = since_start % macro_len == 0
            assert decisions[t, env] == expected, (env, t, since_start)
            if not decisions[t, env]:
                assert sub_idx[t, env] == sub_idx[t - 1, env], "sub-policy changed without a decision"
            since_start = 0 if ended[t, env] else since_start + 1
    assert decisions[0].all()


def test_truncation_bootstraps_and_termination_does_not() -> None:
    learner = _learner()
    learner.collector.reset(0, [0, 1])
    batch, _ = learner.collector.collect(30)
    truncated_only = batch.truncated & ~batch.terminated
    assert truncated_only.any() and batch.terminated.any()
    assert torch.all(batch.sub_bootstrap[~truncated_only] == 0)
    assert torch.all(batch.master_bootstrap[~truncated_only] == 0)
    assert torch.all(batch.sub_bootstrap[truncated_only] != 0)


def test_tasks_persist_across_autoresets_and_slots_reset_alone() -> None:
    learner = _learner()
    collector = learner.collector
    collector.reset(0, [1, 0])
    _, stats = collector.collect(60)
    assert len(stats.returns) > 8
    assert list(collector.vec_env.get_attr("task")) == [1, 1, 0, 0]
    # Reward is 1 iff action == task, so episode rewards identify the task in force.
    batch, _ = collector.collect(30)
    for env, task in enumerate([1, 1, 0, 0]):
        actions, rewards = batch.actions[:, env].numpy(), batch.rewards[:, env].numpy()
        np.testing.assert_array_equal(rewards, (actions == task).astype(np.float32))
    clock_before = collector.clock.copy()
    obs_before = collector.obs.copy()
    collector.reset_slots([0], [0])
    assert list(collector.vec_env.get_attr("task")) == [0, 0, 0, 0]
    assert (collector.clock[:2] == 0).all()
    np.testing.assert_array_equal(collector.clock[2:], clock_before[2:])
    np.testing.assert_array_equal(collector.obs[2:], obs_before[2:])
    assert np.all(collector.obs[:2, 0] == 0.0)  # fresh episodes in slot 0


def test_obs_normaliser_updates_only_when_asked() -> None:
    learner = _learner()
    learner.collector.reset(0, [0, 1])
    mean_before = learner.policy.obs_rms.mean.clone()
    learner.collector.collect(30, update_obs_rms=False)
    assert torch.equal(mean_before, learner.policy.obs_rms.mean)
    learner.collector.collect(30, update_obs_rms=True)
    assert not torch.equal(mean_before, learner.policy.obs_rms.mean)


def test_one_upload_per_step_plus_one_at_rollout_start(monkeypatch: pytest.MonkeyPatch) -> None:
    # Uploads (docs: scaling): the next obs, reward, terminated, truncated and decision mask travel in one staging
    # tensor; only a truncation adds the upload of its final observation (``_tensor``).
    learner = _learner()
    collector = learner.collector
    calls = {"_upload": 0, "_tensor": 0, "stray": 0}
    inside = [False]

    def counted(name: str) -> Callable[..., object]:
        method = getattr(collector, name)

        def wrapper(*args: object) -> object:
            calls[name] += 1
            inside[0] = True
            try:
                return method(*args)
            finally:
                inside[0] = False

        return wrapper

    def stray(make: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def wrapper(*args: object, **kwargs: object) -> torch.Tensor:
            calls["stray"] += not inside[0]  # a tensor built from host data outside the upload helpers
            return make(*args, **kwargs)

        return wrapper

    for name in ("_upload", "_tensor"):
        monkeypatch.setattr(collector, name, counted(name))
    for make in ("as_tensor", "tensor", "from_numpy"):
        monkeypatch.setattr(torch, make, stray(getattr(torch, make)))
    collector.reset(0, [0, 1])
    batch, _ = collector.collect(8)  # the time limit is 9: no truncation yet
    assert not batch.truncated.any()
    assert calls == {"_upload": 9, "_tensor": 0, "stray": 0}

    calls.update(_upload=0, _tensor=0)
    batch, _ = collector.collect(30)
    steps_cut = int((batch.truncated & ~batch.terminated).any(dim=1).sum())
    assert steps_cut > 0
    assert calls == {"_upload": 31, "_tensor": steps_cut, "stray": 0}


def test_uploads_are_fresh_tensors_on_cpu() -> None:
    # On a CPU device the batch keeps slices of each upload: a reused buffer would be overwritten.
    learner = _learner()
    collector = learner.collector
    collector.reset(0, [0, 1])
    first = collector._upload(np.ones((4, 2)), np.zeros(4, dtype=bool))
    second = collector._upload(np.full((4, 2), 2.0), np.ones(4, dtype=bool))
    assert first[0].shape == (4, 2) and first[1].shape == (4,)
    assert torch.equal(first[0], torch.ones(4, 2)) and torch.equal(first[1], torch.zeros(4))
    assert torch.equal(second[0], torch.full((4, 2), 2.0)) and torch.equal(second[1], torch.ones(4))
