"""Weight sharing between sub-policies (``sub.sharing``): sizes, outputs, optimizer state, resume, every caller."""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import MLSHAgent, SubPolicyEnv
from mlsh.checkpoint import load_checkpoint
from mlsh.config import Config, SubConfig, config_from_dict
from mlsh.errors import ConfigError
from mlsh.evaluation import AdaptOptions
from mlsh.inspect import inspect_run
from mlsh.meta import MetaLearner
from mlsh.networks import ALL_MEMBERS_UP_TO, BatchedMLP, HashedMLP, MemberAdam, apply_layers_indexed
from mlsh.policy import SubPolicies
from mlsh.trainer import train
from tests.conftest import CONTINUOUS_ID, RANDOM_END_ID, small_config, train_subpolicies_in_two_processes

SHARED = ("trunk", "conditioned", "hashed")
OBS, HIDDEN = 6, [16, 8]


def _config(sharing: str, env_id: str = "mlsh/MovementBandits-v0", iterations: int = 4, **sub: Any) -> Config:
    cfg = small_config(env_id)
    cfg = dataclasses.replace(cfg, sub=dataclasses.replace(cfg.sub, sharing=sharing, **sub))
    cfg.train.total_timesteps = iterations * cfg.steps_per_iteration
    return cfg


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _mlp_count(widths: list[int], copies: int) -> int:
    return copies * sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))


# -- the default is today's run, to rounding -----------------------------------------------------------

# A seeded 4-iteration run (warmup, joint update, master reset) computed with the code before sharing
# existed: sums of the sub-policies' and masters' parameters (float64), and the continuous env's returns.
# Equal to float32 rounding, not bit for bit: torch's CPU kernels round differently on other processors
# (a 2.8 GHz Xeon of 2026-12-01 gave relative differences up to 3e-6: set TOLERANCE to 0 to see them); a
# change of what is computed (one more gradient step, another seed, another sampling order) moves these
# sums by far more than TOLERANCE.
TOLERANCE = {"rel": 1e-5, "abs": 1e-5}
BEFORE_SHARING = {
    "mlsh/MovementBandits-v0": (10.45474493645088, 49.98767144858371, -0.4493743742641527, None),
    CONTINUOUS_ID: (
        0.08402887712827578,
        18.00172876115802,
        -1.02681336463138,
        [-15.551054943263381, -13.467504908057556, -17.965643288064506, -16.636565078589413],
    ),
}


@pytest.mark.parametrize("env_id", list(BEFORE_SHARING))
def test_separate_trains_as_before_sharing_existed(env_id: str) -> None:
    learner = MetaLearner(small_config(env_id))
    assert learner.cfg.sub.sharing == "separate"
    returns = [learner.train_iteration().get("rollout/ep_rew_mean") for _ in range(4)]
    subs = torch.cat([p.detach().double().flatten() for p in learner.policy.subpolicies.parameters()])
    masters = torch.cat([p.detach().double().flatten() for p in learner.policy.masters.parameters()])
    sub_sum, sub_squares, master_sum, expected_returns = BEFORE_SHARING[env_id]
    sums = (float(subs.sum()), float((subs**2).sum()), float(masters.sum()))
    assert sums == pytest.approx((sub_sum, sub_squares, master_sum), **TOLERANCE)
    if expected_returns is not None:
        assert returns == pytest.approx(expected_returns, **TOLERANCE)


# -- sizes and outputs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("discrete", [True, False])
def test_each_mode_has_the_parameter_count_of_its_formula(k: int, discrete: bool) -> None:
    space = gym.spaces.Discrete(5) if discrete else gym.spaces.Box(-1, 1, (3,), dtype=np.float32)
    out = 5 if discrete else 3
    log_std = 0 if discrete else k * out
    embed = 16
    expected = {
        "separate": _mlp_count([OBS, *HIDDEN, out], k) + _mlp_count([OBS, *HIDDEN, 1], k),
        "trunk": 2 * _mlp_count([OBS, *HIDDEN], 1) + k * (HIDDEN[-1] * out + out) + k * (HIDDEN[-1] + 1),
        "conditioned": 2 * (k * embed) + _mlp_count([OBS + embed, *HIDDEN, out], 1)
        + _mlp_count([OBS + embed, *HIDDEN, 1], 1),
        # buckets ceil(K * in * out / K) = in * out per layer (null compression), plus K biases per layer
        "hashed": sum(a * b + k * b for a, b in zip([OBS, *HIDDEN], [*HIDDEN, out], strict=True))
        + sum(a * b + k * b for a, b in zip([OBS, *HIDDEN], [*HIDDEN, 1], strict=True)),
    }  # fmt: skip
    for sharing, count in expected.items():
        assert _count(SubPolicies(k, OBS, space, HIDDEN, sharing)) == count + log_std, sharing
    compressed = SubPolicies(k, OBS, space, HIDDEN, "hashed", hash_compression=4.0)
    buckets = sum(math.ceil(k * a * b / 4.0) for a, b in zip([OBS, *HIDDEN], [*HIDDEN, out], strict=True))
    buckets += sum(math.ceil(k * a * b / 4.0) for a, b in zip([OBS, *HIDDEN], [*HIDDEN, 1], strict=True))
    biases = k * (sum(HIDDEN) + out) + k * (sum(HIDDEN) + 1)
    assert _count(compressed) == buckets + biases + log_std


@pytest.mark.parametrize("sharing", SHARED)
def test_shared_modes_give_different_outputs_for_different_sub_policies_on_the_same_input(sharing: str) -> None:
    torch.manual_seed(0)
    subs = SubPolicies(4, OBS, gym.spaces.Discrete(5), HIDDEN, sharing)
    with torch.no_grad():  # heads start near zero (gain 0.01): give the output layers some spread
        for p in subs.parameters():
            p.add_(0.1 * torch.randn_like(p))
    obs = torch.randn(1, 5, OBS).expand(4, -1, -1)
    logits, values = subs.actor(obs), subs.value(obs)
    for a in range(4):
        for b in range(a + 1, 4):
            assert (logits[a] - logits[b]).abs().max() > 1e-3, (a, b)
            assert (values[a] - values[b]).abs().max() > 1e-3, (a, b)


def test_hashed_with_a_bucket_per_virtual_weight_and_the_identity_hash_is_separate() -> None:
    def identity(members: int, rows: int, cols: int, buckets: int, salt: int) -> tuple[torch.Tensor, torch.Tensor]:
        assert buckets == members * rows * cols
        shape = (members, rows, cols)
        return torch.arange(buckets).view(shape), torch.ones(shape)

    torch.manual_seed(0)
    separate = BatchedMLP(3, OBS, HIDDEN, 5, out_gain=0.01)
    hashed = HashedMLP(3, OBS, HIDDEN, 5, out_gain=0.01, compression=1.0, hash_fn=identity)
    with torch.no_grad():
        for virtual, real in zip(hashed.layers, separate.layers, strict=True):
            virtual.buckets.copy_(real.weight.reshape(1, -1))
            virtual.bias.copy_(real.bias)
    x = torch.randn(3, 7, OBS)
    assert torch.equal(hashed(x), separate(x))
    member = torch.tensor([2, 0, 1, 1, 2])
    rows = x[0, :5]
    assert torch.equal(
        apply_layers_indexed(hashed.effective_layers(), rows, member),
        apply_layers_indexed(separate.effective_layers(), rows, member),
    )


def test_the_hash_is_fixed_spreads_over_the_buckets_and_signs_both_ways() -> None:
    a, b = HashedMLP(4, 8, [32], 2, 0.01, compression=8.0), HashedMLP(4, 8, [32], 2, 0.01, compression=8.0)
    first = a.layers[0]
    assert torch.equal(first.index, b.layers[0].index) and torch.equal(first.sign, b.layers[0].sign)
    assert not torch.equal(first.index.flatten()[:64], a.layers[1].index.flatten()[:64])  # layers differ
    counts = torch.bincount(first.index.flatten(), minlength=first.buckets.shape[1])
    assert first.buckets.shape[1] == 4 * 8 * 32 // 8 and int(counts.min()) >= 1
    assert 0.4 < float((first.sign > 0).float().mean()) < 0.6
    assert "layers.0.index" not in a.state_dict()  # the hash is recomputed, not saved


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("sharing", SHARED)
def test_the_rollout_acts_with_each_envs_sub_policy_and_scores_as_the_update_does(sharing: str, discrete: bool) -> None:
    torch.manual_seed(0)
    space = gym.spaces.Discrete(4) if discrete else gym.spaces.Box(-1, 1, (2,), dtype=np.float32)
    subs = SubPolicies(3, OBS, space, HIDDEN, sharing)
    with torch.no_grad():
        for p in subs.parameters():
            p.add_(0.1 * torch.randn_like(p))
    from mlsh.policy import SubPolicySnapshot

    obs, sub_idx = torch.randn(7, OBS), torch.tensor([0, 1, 2, 2, 1, 0, 2])
    snapshot = SubPolicySnapshot(subs)
    assert snapshot.indexed
    for deterministic in (True, False):
        action, logprob, value = snapshot.act(obs, sub_idx, deterministic)
        expanded = obs.unsqueeze(0).expand(3, -1, -1)
        dist = subs.distribution(expanded)
        actions = action.unsqueeze(0).expand(3, *action.shape)
        expected_logprob = subs.log_prob_entropy(dist, actions)[0][sub_idx, torch.arange(7)]
        torch.testing.assert_close(logprob, expected_logprob)
        torch.testing.assert_close(value, subs.value(expanded)[sub_idx, torch.arange(7)])
        if deterministic:
            means = dist.probs.argmax(-1) if discrete else dist.mean
            torch.testing.assert_close(action, means[sub_idx, torch.arange(7)].to(action.dtype))


@pytest.mark.parametrize("sharing", ["separate", *SHARED])
def test_each_row_gets_its_own_members_output_with_few_members_or_many(sharing: str) -> None:
    torch.manual_seed(0)
    for members in (3, ALL_MEMBERS_UP_TO + 5):  # every member on every row, then gathered weights
        subs = SubPolicies(members, OBS, gym.spaces.Discrete(5), HIDDEN, sharing)
        obs, sub_idx = torch.randn(50, OBS), torch.randint(0, members, (50,))
        expanded = obs.unsqueeze(0).expand(members, -1, -1)
        rows = torch.arange(50)
        actor = apply_layers_indexed(subs.actor.effective_layers(), obs, sub_idx)
        torch.testing.assert_close(actor, subs.actor(expanded)[sub_idx, rows])
        torch.testing.assert_close(subs.value_indexed(obs, sub_idx), subs.value(expanded)[sub_idx, rows])


# -- optimizer state and master resets ------------------------------------------------------------------


def test_member_adam_steps_shared_parameters_when_any_member_has_data_and_never_resets_them() -> None:
    shared = torch.nn.Parameter(torch.ones(1, 3))
    own = torch.nn.Parameter(torch.ones(2, 3))
    adam = MemberAdam([shared, own], lr=0.1)
    for p in (shared, own):
        p.grad = torch.ones_like(p)
    adam.step(active=torch.tensor([True, False]))
    assert adam.state[shared]["step"].tolist() == [1.0] and adam.state[own]["step"].tolist() == [1.0, 0.0]
    assert bool((shared < 1).all()) and bool((own[0] < 1).all()) and bool((own[1] == 1).all())
    moments = adam.state[shared]["exp_avg"].clone()
    adam.reset_member(0)
    assert adam.state[shared]["step"].tolist() == [1.0] and torch.equal(adam.state[shared]["exp_avg"], moments)
    assert adam.state[own]["step"].tolist() == [0.0, 0.0]
    adam.step(active=torch.tensor([False, False]))  # no member had data: nothing moves
    assert adam.state[shared]["step"].tolist() == [1.0]


@pytest.mark.parametrize("sharing", SHARED)
def test_a_master_reset_never_touches_the_shared_sub_policy_parameters(sharing: str) -> None:
    learner = MetaLearner(_config(sharing))
    for _ in range(3):  # warmup, warmup, joint: the sub-policies have trained and have Adam state
        learner.train_iteration()
    subs_before = {k: v.clone() for k, v in learner.policy.subpolicies.state_dict().items()}
    adam_before = [t.clone() for s in learner.sub_optimizer.state.values() for t in s.values()]
    assert adam_before and any(learner.sub_optimizer.is_shared(p) for p in learner.policy.subpolicies.parameters())
    masters_before = learner.policy.masters.actor.layers[0].weight.clone()
    learner.reset_master(0)
    learner.sub_optimizer.reset_member(0)  # even a reset of sub-policy 0's state leaves the shared state
    assert not torch.equal(learner.policy.masters.actor.layers[0].weight[0], masters_before[0])
    for key, value in learner.policy.subpolicies.state_dict().items():
        assert torch.equal(value, subs_before[key]), key
    for p, state in learner.sub_optimizer.state.items():
        if learner.sub_optimizer.is_shared(p):
            before = adam_before[: len(state)]
            assert all(torch.equal(a, b) for a, b in zip(state.values(), before, strict=True))
        adam_before = adam_before[len(state) :]


# -- resume, checkpoints and the user-facing objects ----------------------------------------------------


@pytest.mark.parametrize("sharing", SHARED)
def test_resume_continues_bit_for_bit_in_every_mode(tmp_path: Path, sharing: str) -> None:
    cfg = _config(sharing, CONTINUOUS_ID if sharing == "hashed" else "mlsh/MovementBandits-v0")
    train(cfg, tmp_path / "straight")
    train(cfg, tmp_path / "split", max_iterations=2)
    train(cfg, tmp_path / "split", resume=True)
    a, b = load_checkpoint(tmp_path / "straight")["learner"], load_checkpoint(tmp_path / "split")["learner"]
    for key in ("policy", "master_optimizer", "sub_optimizer"):
        flat_a, flat_b = a[key], b[key]
        if key != "policy":
            flat_a, flat_b = flat_a["state"], flat_b["state"]
        ta = [t for v in flat_a.values() for t in (v.values() if isinstance(v, dict) else [v])]
        tb = [t for v in flat_b.values() for t in (v.values() if isinstance(v, dict) else [v])]
        assert len(ta) == len(tb) > 0
        assert all(torch.equal(x, y) for x, y in zip(ta, tb, strict=True)), key
    assert torch.equal(a["torch_rng"], b["torch_rng"])


def test_a_shared_run_loads_as_an_agent_a_subpolicy_env_and_an_inspection(tmp_path: Path) -> None:
    train(_config("trunk", iterations=3), tmp_path)
    agent = MLSHAgent.load(tmp_path, device="cpu", seed=0)
    assert agent.policy.subpolicies.sharing == "trunk"
    env = SubPolicyEnv(gym.make("mlsh/MovementBandits-v0"), agent)
    env.reset(seed=0)
    _, reward, *_ = env.step(1)
    assert np.isfinite(reward)
    report, _ = inspect_run(tmp_path, num_tasks=2, episodes=1, adapt=AdaptOptions(iters=1))
    assert len(report["subpolicies"]) == 2


def test_init_from_a_run_of_another_sharing_mode_names_the_setting(tmp_path: Path) -> None:
    train(_config("trunk", iterations=1), tmp_path / "source")
    cfg = _config("hashed", iterations=1)
    cfg.init_from = str(tmp_path / "source")
    with pytest.raises(ConfigError, match="has sub.sharing=trunk but this run has hashed; set sub.sharing=trunk"):
        train(cfg, tmp_path / "run")
    cfg = _config("trunk", iterations=1)
    cfg.init_from = str(tmp_path / "source")
    train(cfg, tmp_path / "run")  # the same mode starts from the source's sub-policies


@pytest.mark.parametrize(
    ("sub", "message"),
    [
        ({"sharing": "nope"}, "sub.sharing must be one of separate, trunk, conditioned, hashed, got 'nope'"),
        ({"hash_compression": 0.5}, "sub.hash_compression must be null or a number of at least 1"),
        ({"hash_compression": True}, "sub.hash_compression must be null or a number of at least 1"),
    ],
)
def test_bad_sharing_settings_name_the_fix(sub: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"sub": sub})
    assert isinstance(config_from_dict({"sub": {"sharing": "hashed", "hash_compression": 8}}).sub, SubConfig)


# -- multi-process update --------------------------------------------------------------------------------


def test_the_sharded_update_of_shared_weights_does_not_depend_on_the_number_of_processes() -> None:
    """Two replicas in threads (an all-reduce by barrier) end where one process with every shard does."""
    import mlsh.update as update_module
    from mlsh.config import PPOConfig

    groups, shards, n = 3, 4, 96
    gen = torch.Generator().manual_seed(0)
    group_ids, shard_ids = torch.randint(0, groups, (n,), generator=gen), torch.arange(n) % shards
    data = update_module.LevelData(
        obs=torch.randn(n, OBS, generator=gen),
        actions=torch.randint(0, 5, (n,), generator=gen),
        old_logprob=torch.full((n,), -1.6),
        old_values=torch.zeros(n),
        advantages=torch.randn(n, generator=gen),
        returns=torch.randn(n, generator=gen),
        group_ids=group_ids,
    )
    cfg = PPOConfig(update_epochs=2, num_minibatches=2)

    torch.manual_seed(1)
    start = SubPolicies(groups, OBS, gym.spaces.Discrete(5), HIDDEN, "trunk")

    def run(select: torch.Tensor, reduce: Any) -> SubPolicies:
        subs = copy.deepcopy(start)  # (not built in the threads: they would share torch's global generator)

        def evaluate(obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
            dist = subs.distribution(obs)
            return (*subs.log_prob_entropy(dist, actions), subs.value(obs))

        part = update_module.LevelData(*(field[select] for field in data))
        update_module.sharded_ppo_update(
            part, shard_ids[select], torch.arange(n)[select], 0, groups, shards, evaluate,
            MemberAdam(subs.parameters(), lr=1e-2), cfg, "sub", reduce,
        )  # fmt: skip
        return subs

    alone = run(torch.ones(n, dtype=torch.bool), lambda t: t)
    barrier, inbox = threading.Barrier(2), [torch.zeros(0), torch.zeros(0)]

    def reduce_for(rank: int) -> Any:
        def reduce(t: torch.Tensor) -> torch.Tensor:
            inbox[rank] = t.clone()
            barrier.wait()
            total = inbox[0] + inbox[1]
            barrier.wait()
            return t.copy_(total)

        return reduce

    replicas: list[SubPolicies | None] = [None, None]

    def worker(rank: int) -> None:
        replicas[rank] = run(shard_ids % 2 == rank, reduce_for(rank))

    threads = [threading.Thread(target=worker, args=(rank,)) for rank in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = replicas
    assert first is not None and second is not None
    for p_alone, p_first, p_second in zip(alone.parameters(), first.parameters(), second.parameters(), strict=True):
        assert torch.equal(p_first, p_second)  # replicas stay identical
        torch.testing.assert_close(p_first, p_alone, rtol=1e-5, atol=1e-6)
    moved = any(not torch.equal(a, b) for a, b in zip(start.parameters(), alone.parameters(), strict=True))
    assert moved


def test_ppo_from_scratch_on_a_shared_runs_tasks_is_a_plain_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlsh.evaluation as evaluation

    built: list[str] = []
    original = evaluation.MetaLearner

    def recording(cfg: Config, *args: Any, **kwargs: Any) -> MetaLearner:
        built.append(cfg.sub.sharing)
        return original(cfg, *args, **kwargs)

    monkeypatch.setattr(evaluation, "MetaLearner", recording)
    evaluation.flat_ppo_adaptation(_config("hashed"), [0, 1], iters=1, seed=0)
    assert built == ["separate", "separate"]


def test_two_processes_keep_shared_sub_policies_bit_identical(tmp_path: Path) -> None:
    cfg = _config("hashed", RANDOM_END_ID)
    cfg.mlsh.num_slots, cfg.mlsh.stagger = 4, True  # 2 slots per process, a joint slot somewhere each iteration
    cfg.train.total_timesteps = 3 * cfg.steps_per_iteration
    initial, first, second = train_subpolicies_in_two_processes(cfg, tmp_path)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], initial[k]) for k in first)  # they trained
