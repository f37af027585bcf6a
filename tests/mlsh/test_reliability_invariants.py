"""Invariants the results rest on, checked by value so that the smallest edit breaking one fails a test (the
mutants of scripts/mutants.py): truncation bootstraps, a frozen normaliser in evaluation, evaluation tasks apart
from training's, the agent's most-trained master, advantage normalisation, target_kl early stopping and the
NaN-loss guard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces

import mlsh.evaluation
from agents import MLSHAgent
from mlsh.checkpoint import load_checkpoint
from mlsh.config import PPOConfig
from mlsh.errors import TrainingDivergedError
from mlsh.evaluation import AdaptOptions, CompareOptions, evaluate_run
from mlsh.meta import MetaLearner
from mlsh.networks import MemberAdam
from mlsh.policy import HierarchicalPolicy
from mlsh.trainer import train
from mlsh.update import LevelData, ppo_update
from tests.conftest import RANDOM_END_ID, small_config
from tests.reliability_helpers import DUCK_ID


# -- truncation bootstraps: the critic's value of the true final observation, at both levels ---------------------
def test_truncated_episodes_bootstrap_from_the_critics_value_of_their_final_observation() -> None:
    cfg = small_config(RANDOM_END_ID, macro_len=3)
    cfg.train.rollout_len = 30
    learner = MetaLearner(cfg)
    collector, policy = learner.collector, learner.policy
    steps: list[tuple[np.ndarray, dict[str, Any]]] = []
    step = collector.vec_env.step

    def recording(actions: np.ndarray) -> Any:
        out = step(actions)
        steps.append((np.copy(out[0]), {k: v for k, v in out[4].items()}))
        return out

    collector.vec_env.step = recording  # type: ignore[method-assign]
    collector.reset(0, [0, 1])
    batch, _ = collector.collect(30, update_obs_rms=False)  # the normaliser stays as it was during the rollout
    cut = (batch.truncated & ~batch.terminated).numpy()
    assert cut.sum() >= 2, "the test env must truncate some episodes inside the rollout"
    num_slots, per_slot = cfg.mlsh.num_slots, cfg.train.envs_per_slot
    checked = 0
    with torch.no_grad():
        for t, b in zip(*np.nonzero(cut)):
            next_obs, info = steps[t]
            final = np.asarray(info["final_obs"][b], dtype=np.float32)
            assert not np.array_equal(final, next_obs[b]), "the reset observation must differ from the final one"
            obs = policy.normalize(torch.as_tensor(np.stack([final] * (num_slots * per_slot))))
            sub_expected = policy.sub_value(obs, batch.sub_idx[t])[b]
            master_expected = policy.master_value(obs.view(num_slots, per_slot, -1)).view(-1)[b]
            reset = policy.normalize(torch.as_tensor(np.stack([next_obs[b]] * (num_slots * per_slot))))
            sub_at_reset = policy.sub_value(reset, batch.sub_idx[t])[b]
            assert batch.sub_bootstrap[t, b] == pytest.approx(float(sub_expected), abs=1e-6)
            assert batch.master_bootstrap[t, b] == pytest.approx(float(master_expected), abs=1e-6)
            assert abs(float(master_expected)) > 1e-5 and abs(float(sub_expected - sub_at_reset)) > 1e-6
            checked += 1
    assert checked == cut.sum()


# -- evaluation: normaliser bit-identical, tasks apart from the training stream's ---------------------------------
def test_evaluation_leaves_the_normaliser_bit_identical(tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    learners: list[MetaLearner] = []

    class Recording(MetaLearner):
        def close(self) -> None:
            learners.append(self)
            super().close()

    monkeypatch.setattr(mlsh.evaluation, "MetaLearner", Recording)
    evaluate_run(tiny_run, num_tasks=2, adapt=AdaptOptions(iters=2), compare=CompareOptions(oracle=False))
    saved = load_checkpoint(tiny_run)["learner"]["policy"]
    assert len(learners) == 1
    state = learners[0].policy.state_dict()
    for key in ("obs_rms.mean", "obs_rms.var", "obs_rms.count"):
        assert torch.equal(state[key], saved[key]), key
    agent = MLSHAgent.load(tiny_run, device="cpu")
    before = {k: v.clone() for k, v in agent.policy.obs_rms.state_dict().items()}
    learners.clear()
    import gymnasium as gym

    env = gym.make("mlsh/MovementBandits-v0")
    agent.adapt(env, iterations=2)
    for key, value in learners[0].policy.obs_rms.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_evaluation_tasks_are_disjoint_from_the_training_streams_draws(tmp_path: Path) -> None:
    cfg = small_config(DUCK_ID)  # tasks drawn from [0, 2**40): two streams never meet by chance
    learner = MetaLearner(cfg)
    drawn: set[int] = set()
    for _ in range(9):  # three task cycles of both slots
        learner.train_iteration()
        drawn.update(learner.tasks)
    learner.close()
    assert len(drawn) >= 6
    cfg.train.total_timesteps = cfg.steps_per_iteration
    train(cfg, tmp_path)
    tasks = evaluate_run(
        tmp_path, num_tasks=20, seed=cfg.seed, adapt=AdaptOptions(iters=1), compare=CompareOptions(oracle=False)
    ).tasks
    assert len(set(tasks)) == 20 and not drawn & set(tasks)


# -- the agent keeps the master that trained longest --------------------------------------------------------------
def test_the_agent_keeps_the_master_that_has_trained_longest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = small_config(num_slots=3, warmup_iters=2, joint_iters=1, stagger=True)
    cfg.train.total_timesteps = 4 * cfg.steps_per_iteration
    resets: list[tuple[int, int]] = []  # (iteration, slot) of every master reset
    reset = MetaLearner.reset_master

    def recording(self: MetaLearner, slot: int) -> None:
        resets.append((self.iteration, slot))
        reset(self, slot)

    monkeypatch.setattr(MetaLearner, "reset_master", recording)
    train(cfg, tmp_path)
    trained = [4 - max(it for it, s in resets if s == slot) for slot in range(3)]
    longest = int(np.argmax(trained))
    assert longest != 0 and trained.count(max(trained)) == 1, trained
    agent = MLSHAgent.load(tmp_path, device="cpu")
    masters = load_checkpoint(tmp_path)["learner"]["policy"]
    for key, value in agent.policy.masters.state_dict().items():
        assert torch.equal(value[0], masters[f"masters.{key}"][longest]), key


# -- PPO: advantage normalisation by its effect, target_kl, the NaN-loss guard -----------------------------------
def _level(seed: int = 0) -> tuple[HierarchicalPolicy, LevelData]:
    torch.manual_seed(seed)
    policy = HierarchicalPolicy(spaces.Box(-1, 1, (3,)), spaces.Discrete(3), 2, 1, sub_hidden=[8], master_hidden=[8])
    n = 64
    obs = torch.randn(n, 3)
    group_ids = torch.arange(n) % 2
    actions = torch.randint(0, 3, (n,))
    with torch.no_grad():
        logits = policy.subpolicies.actor(obs.unsqueeze(0).expand(2, -1, -1))
        old_logprob = torch.log_softmax(logits, -1)[group_ids, torch.arange(n), actions]
    data = LevelData(obs, actions, old_logprob, torch.zeros(n), torch.randn(n), torch.randn(n), group_ids)
    return policy, data


def _update(policy: HierarchicalPolicy, data: LevelData, cfg: PPOConfig, seed: int = 1) -> dict[str, float]:
    subs = policy.subpolicies

    def evaluate(obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dist = subs.distribution(obs)
        logprob, entropy = subs.log_prob_entropy(dist, actions)
        return logprob, entropy, subs.value(obs)

    torch.manual_seed(seed)
    return ppo_update(data, 2, evaluate, MemberAdam(subs.parameters(), lr=cfg.lr), cfg, "sub")


def test_advantage_normalisation_makes_the_update_invariant_to_the_advantages_scale_and_shift() -> None:
    results = {}
    for norm_adv in (True, False):
        for scale, shift in ((1.0, 0.0), (7.0, 3.0)):
            policy, data = _level()
            data = data._replace(advantages=data.advantages * scale + shift)
            _update(policy, data, PPOConfig(lr=0.01, update_epochs=2, num_minibatches=2, norm_adv=norm_adv))
            results[norm_adv, scale] = torch.cat([p.detach().flatten() for p in policy.subpolicies.actor.parameters()])
    assert torch.allclose(results[True, 1.0], results[True, 7.0], atol=1e-5)
    assert not torch.allclose(results[False, 1.0], results[False, 7.0], atol=1e-3)


def test_target_kl_stops_the_epochs_early() -> None:
    policy, data = _level()
    full = _update(policy, data, PPOConfig(lr=0.05, update_epochs=4, num_minibatches=2, target_kl=None))
    policy, data = _level()
    early = _update(policy, data, PPOConfig(lr=0.05, update_epochs=4, num_minibatches=2, target_kl=1e-12))
    assert full["epochs"] == 4 and full["gradient_steps"] == 8
    assert early["epochs"] == 1 and early["gradient_steps"] == 2


def test_a_nan_loss_stops_the_update_before_any_parameter_changes() -> None:
    policy, data = _level()
    before = [p.detach().clone() for p in policy.subpolicies.parameters()]
    poisoned = data._replace(returns=data.returns.clone().fill_(float("nan")))
    with pytest.raises(TrainingDivergedError, match="The sub loss became nan; lower sub.lr or sub.max_grad_norm"):
        _update(policy, poisoned, PPOConfig(lr=0.05, update_epochs=2, num_minibatches=1))
    assert all(torch.equal(a, b) for a, b in zip(before, policy.subpolicies.parameters(), strict=True))
