"""The hierarchical policy: action distributions by action space, gathering the active sub-policy."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Normal

from mlsh.errors import ConfigError
from mlsh.meta import MetaLearner
from mlsh.policy import HierarchicalPolicy, RunningMeanStd, SubPolicies, SubPolicySnapshot, advance_macro_clock
from tests.conftest import CONTINUOUS_ID, small_config


def _policy(action_space: gym.Space, num_subpolicies: int = 3) -> HierarchicalPolicy:
    obs_space = gym.spaces.Box(-1, 1, shape=(4,), dtype=np.float32)
    return HierarchicalPolicy(obs_space, action_space, num_subpolicies, num_slots=2, master_hidden=[8], sub_hidden=[8])


def test_gaussian_subpolicy_logprob_is_that_of_the_active_member() -> None:
    policy = _policy(gym.spaces.Box(-1, 1, shape=(2,), dtype=np.float32))
    with torch.no_grad():
        policy.subpolicies.log_std.copy_(torch.tensor([[-1.0, -1.0], [0.0, 0.0], [0.5, 0.5]]))
    obs = torch.randn(5, 4)
    sub_idx = torch.tensor([0, 1, 2, 1, 0])
    action, logprob, value = policy.subpolicy_snapshot().act(obs, sub_idx)
    assert action.shape == (5, 2) and logprob.shape == (5,) and value.shape == (5,)
    for b in range(5):
        k = int(sub_idx[b])
        mean = policy.subpolicies.actor(obs[b].expand(3, 1, 4))[k, 0]
        expected = Normal(mean, policy.subpolicies.log_std[k].exp()).log_prob(action[b]).sum()
        assert torch.allclose(logprob[b], expected, atol=1e-5)
        assert torch.allclose(value[b], policy.subpolicies.value(obs[b].expand(3, 1, 4))[k, 0], atol=1e-6)


def test_categorical_subpolicy_gathers_the_active_member() -> None:
    policy = _policy(gym.spaces.Discrete(4))
    obs = torch.randn(6, 4)
    sub_idx = torch.tensor([2, 2, 0, 1, 0, 2])
    action, logprob, _ = policy.subpolicy_snapshot().act(obs, sub_idx)
    assert action.dtype == torch.long and action.shape == (6,)
    logits = policy.subpolicies.actor(obs.unsqueeze(0).expand(3, -1, -1))
    for b in range(6):
        expected = torch.log_softmax(logits[sub_idx[b], b], -1)[action[b]]
        assert torch.allclose(logprob[b], expected, atol=1e-6)


def test_deterministic_choices_are_the_most_likely_ones() -> None:
    discrete = _policy(gym.spaces.Discrete(4))
    obs = torch.randn(6, 4)
    sub_idx = torch.tensor([2, 2, 0, 1, 0, 2])
    logits = discrete.subpolicies.actor(obs.unsqueeze(0).expand(3, -1, -1))
    action, _, _ = discrete.subpolicy_snapshot().act(obs, sub_idx, deterministic=True)
    assert torch.equal(action, logits[sub_idx, torch.arange(6)].argmax(-1))
    choice, _, _ = discrete.choose_subpolicies(obs.view(2, 3, 4), deterministic=True)
    assert torch.equal(choice, discrete.masters.distribution(obs.view(2, 3, 4)).probs.argmax(-1))
    gaussian = _policy(gym.spaces.Box(-1, 1, shape=(2,), dtype=np.float32))
    action, _, _ = gaussian.subpolicy_snapshot().act(obs, sub_idx, deterministic=True)
    means = gaussian.subpolicies.actor(obs.unsqueeze(0).expand(3, -1, -1))
    assert torch.allclose(action, means[sub_idx, torch.arange(6)])
    again, _, _ = gaussian.subpolicy_snapshot().act(obs, sub_idx, deterministic=True)
    assert torch.equal(action, again)


def test_unsupported_spaces_are_refused_with_a_fix() -> None:
    with pytest.raises(ConfigError, match="Discrete or a 1-d Box"):
        _policy(gym.spaces.MultiBinary(3))
    with pytest.raises(ConfigError, match="FlattenObservation"):
        HierarchicalPolicy(gym.spaces.Discrete(3), gym.spaces.Discrete(2), 2, 2)


def test_continuous_env_trains_gaussian_subpolicies() -> None:
    learner = MetaLearner(small_config(CONTINUOUS_ID, warmup_iters=0, joint_iters=1))
    log_std = learner.policy.subpolicies.log_std.detach().clone()
    metrics = learner.train_iteration()
    assert np.isfinite(metrics["sub/policy_loss"])
    assert not torch.equal(log_std, learner.policy.subpolicies.log_std)


def test_running_mean_std_matches_numpy() -> None:
    rms = RunningMeanStd((3,))
    data = np.random.default_rng(0).normal(2.0, 3.0, size=(1000, 3))
    for chunk in np.split(data, 10):
        rms.update(torch.as_tensor(chunk))
    np.testing.assert_allclose(rms.mean.numpy(), data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(rms.var.numpy(), data.var(0), rtol=1e-3)
    normalised = rms(torch.as_tensor(data, dtype=torch.float32))
    assert abs(float(normalised.mean())) < 1e-3 and abs(float(normalised.std()) - 1.0) < 1e-2
    assert {"obs_rms.mean", "obs_rms.var", "obs_rms.count"} <= set(
        HierarchicalPolicy(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), 2, 2).state_dict()
    )


def test_frozen_normalizer_matches_the_module_and_ignores_later_updates() -> None:
    rms = RunningMeanStd((3,), clip=2.0)
    rms.update(torch.as_tensor(np.random.default_rng(1).normal(5.0, 0.5, size=(200, 3))))
    x = torch.as_tensor(np.random.default_rng(2).normal(5.0, 1.0, size=(50, 3)), dtype=torch.float32)
    frozen = rms.frozen()
    expected = rms(x)
    assert torch.equal(frozen(x), expected)
    assert float(expected.abs().max()) == 2.0  # some entries are clipped
    rms.update(torch.zeros(10, 3, dtype=torch.float64))  # the rollout's statistics stay in force
    assert torch.equal(frozen(x), expected)
    policy = _policy(gym.spaces.Discrete(2))
    policy.normalize_obs = False
    assert policy.frozen_normalizer()(x) is x


@pytest.mark.parametrize("discrete", [False, True])
def test_subpolicy_snapshot_computes_what_the_networks_do_and_keeps_its_weights(discrete: bool) -> None:
    space = gym.spaces.Discrete(4) if discrete else gym.spaces.Box(-1, 1, shape=(2,), dtype=np.float32)
    policy = _policy(space)
    obs, sub_idx = torch.randn(7, 4), torch.tensor([0, 1, 2, 2, 1, 0, 2])
    expanded = obs.unsqueeze(0).expand(3, -1, -1)
    envs = torch.arange(7)
    snapshot = policy.subpolicy_snapshot()
    action, logprob, value = snapshot.act(obs, sub_idx, deterministic=True)
    outputs = policy.subpolicies.actor(expanded)[sub_idx, envs]
    assert torch.equal(value, policy.subpolicies.value(expanded)[sub_idx, envs])  # the same arithmetic
    if discrete:
        assert torch.equal(action, outputs.argmax(-1))
        torch.testing.assert_close(logprob, outputs.log_softmax(-1).max(-1).values)
    else:
        assert torch.equal(action, outputs)
        dist = policy.subpolicies.distribution(expanded)
        torch.testing.assert_close(logprob, dist.log_prob(dist.mean).sum(-1)[sub_idx, envs])
    with torch.no_grad():
        for parameter in policy.subpolicies.parameters():
            parameter.add_(1.0)
    again = snapshot.act(obs, sub_idx, deterministic=True)
    assert torch.equal(again[0], action) and torch.equal(again[2], value)


def _distributions_act(
    policy: HierarchicalPolicy, obs: torch.Tensor, sub_idx: torch.Tensor, deterministic: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Acting through torch.distributions objects for every member, then gathering the active one."""
    subs = policy.subpolicies
    expanded = obs.unsqueeze(0).expand(subs.num_subpolicies, -1, -1)
    dist = subs.distribution(expanded)
    most_likely = dist.probs.argmax(-1) if subs.discrete else dist.mean
    actions = most_likely if deterministic else dist.sample()
    logprob, _ = subs.log_prob_entropy(dist, actions)
    envs = torch.arange(obs.shape[0])
    return actions[sub_idx, envs], logprob[sub_idx, envs], subs.value(expanded)[sub_idx, envs]


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("discrete", [False, True])
def test_act_draws_and_scores_bit_for_bit_as_the_distributions_do(discrete: bool, deterministic: bool) -> None:
    space = gym.spaces.Discrete(5) if discrete else gym.spaces.Box(-1, 1, shape=(3,), dtype=np.float32)
    policy = _policy(space, num_subpolicies=4)
    if not discrete:
        with torch.no_grad():
            policy.subpolicies.log_std.copy_(torch.linspace(-1.5, 0.5, 12).view(4, 3))
    obs, sub_idx = torch.randn(9, 4), torch.tensor([0, 3, 1, 2, 2, 3, 0, 1, 3])
    torch.manual_seed(7)
    expected = _distributions_act(policy, obs, sub_idx, deterministic)
    torch.manual_seed(7)
    got = policy.subpolicy_snapshot().act(obs, sub_idx, deterministic)
    for name, a, b in zip(("action", "logprob", "value"), got, expected, strict=True):
        assert torch.equal(a, b), name
    after_act = torch.rand(3)  # the generator has consumed as many draws either way
    torch.manual_seed(7)
    _distributions_act(policy, obs, sub_idx, deterministic)
    assert torch.equal(after_act, torch.rand(3))


@pytest.mark.parametrize("hidden_obs", [[], [0]])
@pytest.mark.parametrize("env_id", [None, CONTINUOUS_ID])
def test_training_with_the_rollout_shortcuts_equals_training_through_the_modules(
    env_id: str | None, hidden_obs: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rollout's snapshot and frozen normaliser against torch.distributions and RunningMeanStd.forward:
    # a seeded run must end with the same parameters, bit for bit (with sub.hidden_obs too: both select).
    def train(shortcuts: bool) -> list[torch.Tensor]:
        cfg = small_config() if env_id is None else small_config(env_id)
        cfg.sub.hidden_obs = hidden_obs
        learner = MetaLearner(cfg)
        policy = learner.policy
        if not shortcuts:

            class ThroughTheModules:
                def act(
                    self, obs: torch.Tensor, sub_idx: torch.Tensor, deterministic: bool = False, generator: Any = None
                ) -> tuple:
                    assert generator is None  # training draws from torch's global stream
                    return _distributions_act(policy, obs, sub_idx, deterministic)

            monkeypatch.setattr(policy, "subpolicy_snapshot", ThroughTheModules)
            monkeypatch.setattr(policy, "frozen_normalizer", lambda: policy.normalize)
        for _ in range(3):
            learner.train_iteration()
        return [value.clone() for value in policy.state_dict().values()]

    assert all(torch.equal(a, b) for a, b in zip(train(True), train(False), strict=True))


def test_macro_clock_counts_to_macro_len_and_restarts_at_episode_ends() -> None:
    clock = np.array([0, 1, 2, 2])
    assert advance_macro_clock(clock, 3).tolist() == [1, 2, 0, 0]
    ended = np.array([False, True, False, False])
    assert advance_macro_clock(clock, 3, ended).tolist() == [1, 0, 0, 0]
    assert clock.tolist() == [0, 1, 2, 2]  # a new array: the caller's is left as it was


@pytest.mark.parametrize("discrete", [False, True])
def test_step_chooses_where_masters_decide_and_draws_from_the_given_stream(discrete: bool) -> None:
    space = gym.spaces.Discrete(5) if discrete else gym.spaces.Box(-1, 1, shape=(3,), dtype=np.float32)
    policy = HierarchicalPolicy(gym.spaces.Box(-1, 1, (4,)), space, num_subpolicies=3, num_slots=2)
    obs, sub_idx = torch.randn(6, 4), torch.tensor([2, 2, 2, 1, 1, 1])
    decide = np.array([True, False, True, False, False, True])
    snapshot = policy.subpolicy_snapshot()
    before = torch.get_rng_state()
    first = policy.step(obs, sub_idx, decide, snapshot, generator=torch.Generator().manual_seed(5))
    again = policy.step(obs, sub_idx, decide, snapshot, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), before)  # the global stream is untouched
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(first.sub_idx[~torch.as_tensor(decide)], sub_idx[~torch.as_tensor(decide)])
    assert first.master_logprob is not None and first.master_value is not None
    assert (first.master_logprob[~torch.as_tensor(decide)] == 0).all()
    assert (first.master_logprob[torch.as_tensor(decide)] < 0).all()
    # The sub-policies act as the snapshot does for the chosen sub-policies, from the same stream.
    generator = torch.Generator().manual_seed(5)
    policy.choose_subpolicies(obs.view(2, 3, 4), generator=generator)
    action, logprob, value = snapshot.act(obs, first.sub_idx, generator=generator)
    assert torch.equal(action, first.action) and torch.equal(logprob, first.logprob) and torch.equal(value, first.value)
    none = policy.step(obs, sub_idx, np.zeros(6, dtype=bool), snapshot, deterministic=True)
    assert none.master_logprob is None and torch.equal(none.sub_idx, sub_idx)


# -- sub.hidden_obs: observation entries the sub-policies do not see ----------------------------------------------
SHARING = ("separate", "trunk", "conditioned", "hashed")


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("sharing", SHARING)
def test_subpolicies_ignore_hidden_entries_see_kept_ones_and_masters_see_all(sharing: str, discrete: bool) -> None:
    torch.manual_seed(0)
    space = gym.spaces.Discrete(4) if discrete else gym.spaces.Box(-1, 1, shape=(2,), dtype=np.float32)
    policy = HierarchicalPolicy(
        gym.spaces.Box(-1, 1, (5,)), space, 3, num_slots=2, master_hidden=[8], sub_hidden=[8], sub_sharing=sharing,
        sub_hidden_obs=[3, 0],
    )  # fmt: skip
    subs = policy.subpolicies
    with torch.no_grad():  # output layers start near zero (gain 0.01): give every weight some spread
        for p in subs.parameters():
            p.add_(0.1 * torch.randn_like(p))
    obs, sub_idx = torch.randn(6, 5), torch.tensor([0, 1, 2, 2, 1, 0])

    def outputs(x: torch.Tensor) -> list[torch.Tensor]:
        expanded = x.unsqueeze(0).expand(3, -1, -1)
        dist = subs.distribution(expanded)
        action, logprob, value = policy.subpolicy_snapshot().act(x, sub_idx, deterministic=True)
        return [dist.logits if discrete else dist.mean, subs.value(expanded), subs.value_indexed(x, sub_idx),
                logprob, value, action]  # fmt: skip

    hidden_moved, kept_moved = obs.clone(), obs.clone()
    hidden_moved[:, [0, 3]] += 3.0
    kept_moved[:, 1] += 3.0
    base = outputs(obs)
    for name, a, b in zip(("dist", "value", "value_indexed", "logprob", "snapshot value", "action"), base,
                          outputs(hidden_moved), strict=True):  # fmt: skip
        assert torch.equal(a, b), name
    moved = outputs(kept_moved)  # (a deterministic Gaussian action's log-density does not depend on the input)
    for name, i in (("dist", 0), ("value", 1), ("value_indexed", 2), ("snapshot value", 4)):
        assert not torch.equal(base[i], moved[i]), name
    assert torch.equal(base[4], base[2])  # the snapshot's value is the module's
    if not discrete:
        envs = torch.arange(6)
        torch.testing.assert_close(base[5], base[0][sub_idx, envs])  # and its action the distribution's mean
    master_values = [policy.master_value(x.view(2, 3, 5)) for x in (obs, hidden_moved)]
    assert not torch.equal(*master_values)


@pytest.mark.parametrize("sharing", SHARING)
def test_hidden_obs_shrinks_the_first_layer_by_its_entries_times_the_width(sharing: str) -> None:
    space, k, width = gym.spaces.Box(-1, 1, shape=(2,), dtype=np.float32), 3, 8
    full = SubPolicies(k, 6, space, [width, 4], sharing)
    narrow = SubPolicies(k, 6, space, [width, 4], sharing, hidden_obs=[4, 1])
    copies = k if sharing == "separate" else 1  # one first layer per member, or one for all of them

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert count(full) - count(narrow) == 2 * copies * 2 * width  # actor and critic, 2 entries each
    assert narrow.kept_obs.tolist() == [0, 2, 3, 5]
    assert "kept_obs" not in narrow.state_dict()  # the config says it; checkpoints from before the setting load
    obs = torch.randn(2, 6)
    assert full.select(obs) is obs and torch.equal(narrow.select(obs), obs[:, [0, 2, 3, 5]])


def test_no_hidden_obs_builds_the_same_sub_policies_as_before() -> None:
    space = gym.spaces.Box(-1, 1, shape=(2,), dtype=np.float32)
    torch.manual_seed(3)
    before = SubPolicies(2, 4, space, [8]).state_dict()
    after_rng = torch.rand(2)
    torch.manual_seed(3)
    subs = SubPolicies(2, 4, space, [8], hidden_obs=[])
    assert torch.equal(after_rng, torch.rand(2))  # the same draws
    assert before.keys() == subs.state_dict().keys()
    assert all(torch.equal(v, subs.state_dict()[k]) for k, v in before.items())
    obs = torch.rand(3, 4)
    assert SubPolicySnapshot(subs).select(obs) is obs  # the rollout selects nothing


@pytest.mark.parametrize(
    ("hidden_obs", "message"),
    [
        ([5], "sub.hidden_obs has 5, but the observation has 5 entries (0-4); drop it."),
        ([0, 1, 2, 3, 4], "sub.hidden_obs hides all 5 observation entries, so the sub-policies would see nothing"),
        ([2, 2], "sub.hidden_obs lists 2 more than once; list each index once."),
        ([-1], "sub.hidden_obs must be a list of observation indices (integers from 0), got [-1]"),
    ],
)
def test_subpolicies_refuse_hidden_obs_the_observation_cannot_have(hidden_obs: list[int], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        SubPolicies(2, 5, gym.spaces.Discrete(2), [8], hidden_obs=hidden_obs)
    assert str(error.value).startswith(message)


def test_init_log_std_sets_every_members_initial_spread_and_a_reset_restores_it() -> None:
    box = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    default = SubPolicies(2, 4, box, (8,))
    assert torch.equal(default.log_std, torch.zeros(2, 3))  # the default: the bits of runs before the setting
    subs = SubPolicies(2, 4, box, (8,), init_log_std=-0.5)
    assert torch.equal(subs.log_std, torch.full((2, 3), -0.5))
    dist = subs.distribution(torch.zeros(2, 5, 4))
    assert torch.allclose(dist.scale, torch.full((2, 5, 3), float(np.exp(-0.5))))
    with torch.no_grad():
        subs.log_std.add_(1.0)
    subs.reset_member(1)
    assert subs.log_std[1].tolist() == [-0.5] * 3 and subs.log_std[0].tolist() == [0.5] * 3
    # A run's setting reaches the trainer's sub-policies.
    cfg = small_config(CONTINUOUS_ID)
    cfg.sub.init_log_std = -1.0
    learner = MetaLearner(cfg)
    try:
        log_std = learner.policy.subpolicies.log_std
        assert torch.equal(log_std, torch.full_like(log_std, -1.0))
    finally:
        learner.close()
