"""Tests for mlsh/gae.py: primitive and macro-step GAE against closed forms, naive loops and torch loops."""

from __future__ import annotations

import pytest
import torch

from mlsh.gae import compute_gae, compute_macro_gae

GAMMA = 0.9
LAMBDA = 0.8


def _flags(num_steps: int, num_envs: int, **set_at: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
    """Bool ``[T, B]`` terminated/truncated tensors with ``True`` at the given ``(t, b)`` entries."""
    flags = {name: torch.zeros(num_steps, num_envs, dtype=torch.bool) for name in ("terminated", "truncated")}
    for name, entries in set_at.items():
        for t, b in entries:
            flags[name][t, b] = True
    return flags


def _random_rollout(
    gen: torch.Generator, num_steps: int, num_envs: int, end_prob: float = 0.15
) -> dict[str, torch.Tensor]:
    """Random rewards/values and random, mutually exclusive terminated/truncated flags."""
    ended = torch.rand(num_steps, num_envs, generator=gen) < end_prob
    is_truncation = torch.rand(num_steps, num_envs, generator=gen) < 0.5
    return {
        "rewards": torch.randn(num_steps, num_envs, generator=gen, dtype=torch.float64),
        "values": torch.randn(num_steps, num_envs, generator=gen, dtype=torch.float64),
        "terminated": ended & ~is_truncation,
        "truncated": ended & is_truncation,
        "bootstrap_values": torch.randn(num_steps, num_envs, generator=gen, dtype=torch.float64),
        "next_values": torch.randn(num_envs, generator=gen, dtype=torch.float64),
    }


def _naive_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    bootstrap_values: torch.Tensor,
    next_values: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> torch.Tensor:
    """Per-env python-loop GAE, written independently from the library's vectorised version."""
    num_steps, num_envs = rewards.shape
    advantages = torch.zeros_like(rewards)
    for b in range(num_envs):
        for t in reversed(range(num_steps)):
            if terminated[t, b]:
                following, carry = 0.0, 0.0
            elif truncated[t, b]:
                following, carry = float(bootstrap_values[t, b]), 0.0
            elif t == num_steps - 1:
                following, carry = float(next_values[b]), 0.0
            else:
                following, carry = float(values[t + 1, b]), float(advantages[t + 1, b])
            delta = float(rewards[t, b]) + gamma * following - float(values[t, b])
            advantages[t, b] = delta + gamma * gae_lambda * carry
    return advantages


@pytest.mark.parametrize(("num_steps", "num_envs"), [(1, 1), (7, 1), (16, 3), (33, 5)])
def test_compute_gae_matches_naive_loop(num_steps: int, num_envs: int) -> None:
    gen = torch.Generator().manual_seed(num_steps * 100 + num_envs)
    rollout = _random_rollout(gen, num_steps, num_envs)
    advantages, returns = compute_gae(**rollout, gamma=GAMMA, gae_lambda=LAMBDA)
    expected = _naive_gae(**rollout, gamma=GAMMA, gae_lambda=LAMBDA)
    assert advantages.shape == (num_steps, num_envs)
    torch.testing.assert_close(advantages, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(returns, advantages + rollout["values"], atol=1e-5, rtol=0)


def test_compute_gae_lambda_one_gives_discounted_return_minus_value() -> None:
    torch.manual_seed(0)
    num_steps, num_envs = 6, 2
    rewards = torch.randn(num_steps, num_envs, dtype=torch.float64)
    values = torch.randn(num_steps, num_envs, dtype=torch.float64)
    next_values = torch.randn(num_envs, dtype=torch.float64)
    flags = _flags(num_steps, num_envs)
    advantages, returns = compute_gae(
        rewards,
        values,
        **flags,
        bootstrap_values=torch.full_like(rewards, 1e6),
        next_values=next_values,
        gamma=GAMMA,
        gae_lambda=1.0,
    )
    for t in range(num_steps):
        discounts = GAMMA ** torch.arange(num_steps - t, dtype=torch.float64)
        expected_return = (discounts[:, None] * rewards[t:]).sum(0) + GAMMA ** (num_steps - t) * next_values
        torch.testing.assert_close(returns[t], expected_return, atol=1e-5, rtol=0)
        torch.testing.assert_close(advantages[t], expected_return - values[t], atol=1e-5, rtol=0)


def test_compute_gae_lambda_zero_gives_one_step_td_error() -> None:
    torch.manual_seed(1)
    num_steps, num_envs = 5, 3
    rewards = torch.randn(num_steps, num_envs, dtype=torch.float64)
    values = torch.randn(num_steps, num_envs, dtype=torch.float64)
    next_values = torch.randn(num_envs, dtype=torch.float64)
    advantages, _ = compute_gae(
        rewards,
        values,
        **_flags(num_steps, num_envs),
        bootstrap_values=torch.zeros_like(rewards),
        next_values=next_values,
        gamma=GAMMA,
        gae_lambda=0.0,
    )
    following = torch.cat([values[1:], next_values[None]])
    torch.testing.assert_close(advantages, rewards + GAMMA * following - values, atol=1e-6, rtol=0)


def test_compute_gae_termination_at_last_step_ignores_next_values() -> None:
    rewards = torch.tensor([[1.0], [2.0]])
    values = torch.tensor([[0.5], [0.25]])
    flags = _flags(2, 1, terminated=[(1, 0)])
    results = [
        compute_gae(
            rewards,
            values,
            **flags,
            bootstrap_values=torch.full_like(rewards, 7.0),
            next_values=torch.tensor([next_value], dtype=torch.float64),
            gamma=GAMMA,
            gae_lambda=LAMBDA,
        )[0]
        for next_value in (0.0, 123.0)
    ]
    # A_1 = r_1 - V_1; A_0 = r_0 + gamma V_1 - V_0 + gamma lambda A_1.
    expected = torch.tensor([[1.0 + GAMMA * 0.25 - 0.5 + GAMMA * LAMBDA * 1.75], [1.75]])
    for advantages in results:
        torch.testing.assert_close(advantages, expected, atol=1e-6, rtol=0)


def test_compute_gae_truncation_bootstraps_from_bootstrap_values_only() -> None:
    # Truncation after the step at t=1; a new episode starts at t=2.
    rewards = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    bootstrap_values = torch.tensor([[50.0], [4.0], [60.0]], dtype=torch.float64)
    flags = _flags(3, 1, truncated=[(1, 0)])
    advantage_1 = 2.0 + GAMMA * 4.0 - 0.25
    for value_2, next_value in ((1.0, 0.0), (-30.0, 99.0)):
        values = torch.tensor([[0.5], [0.25], [value_2]], dtype=torch.float64)
        advantages, returns = compute_gae(
            rewards,
            values,
            **flags,
            bootstrap_values=bootstrap_values,
            next_values=torch.tensor([next_value], dtype=torch.float64),
            gamma=GAMMA,
            gae_lambda=LAMBDA,
        )
        assert advantages[1, 0].item() == pytest.approx(advantage_1, abs=1e-6)
        assert advantages[0, 0].item() == pytest.approx(
            1.0 + GAMMA * 0.25 - 0.5 + GAMMA * LAMBDA * advantage_1, abs=1e-6
        )
        assert advantages[2, 0].item() == pytest.approx(3.0 + GAMMA * next_value - value_2, abs=1e-6)
        torch.testing.assert_close(returns, advantages + values)


# -- macro-step GAE ------------------------------------------------------------------------------


def _macro(
    rewards: list[float],
    decisions: list[int],
    values: list[float],
    next_value: float,
    terminated: tuple[int, ...] = (),
    truncated: tuple[int, ...] = (),
    bootstrap: dict[int, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Runs compute_macro_gae on one env given as python lists; returns ``[T]`` advantages and returns."""
    num_steps = len(rewards)
    decided = torch.zeros(num_steps, 1, dtype=torch.bool)
    decided[decisions, 0] = True
    flags = _flags(num_steps, 1, terminated=[(t, 0) for t in terminated], truncated=[(t, 0) for t in truncated])
    bootstrap_values = torch.full((num_steps, 1), 1e3, dtype=torch.float64)
    for t, value in (bootstrap or {}).items():
        bootstrap_values[t, 0] = value
    advantages, returns = compute_macro_gae(
        torch.tensor(rewards, dtype=torch.float64)[:, None],
        decided,
        torch.tensor(values, dtype=torch.float64)[:, None],
        **flags,
        bootstrap_values=bootstrap_values,
        next_values=torch.tensor([next_value], dtype=torch.float64),
        gamma=GAMMA,
        gae_lambda=LAMBDA,
    )
    return advantages[:, 0], returns[:, 0]


def test_macro_gae_fixed_length_segments_hand_computed() -> None:
    # Decisions every 3 steps; values off decisions are junk that must not be read.
    advantages, returns = _macro(
        rewards=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        decisions=[0, 3],
        values=[0.5, 99.0, 99.0, 2.0, -99.0, 99.0],
        next_value=3.0,
    )
    advantage_3 = 15.0 + GAMMA * 3.0 - 2.0  # 15.7
    advantage_0 = 6.0 + GAMMA * 2.0 - 0.5 + GAMMA * LAMBDA * advantage_3  # 18.604
    expected_advantages = torch.tensor([advantage_0, 0.0, 0.0, advantage_3, 0.0, 0.0], dtype=torch.float64)
    expected_returns = torch.tensor([advantage_0 + 0.5, 0, 0, advantage_3 + 2.0, 0, 0], dtype=torch.float64)
    torch.testing.assert_close(advantages, expected_advantages, atol=1e-6, rtol=0)
    torch.testing.assert_close(returns, expected_returns, atol=1e-6, rtol=0)
    assert advantages[0].item() == pytest.approx(18.604, abs=1e-6)


def test_macro_gae_termination_mid_segment_closes_it_without_carrying_advantage() -> None:
    # Decision at 0, termination after step 1, new episode with decisions at 2 and 3.
    kwargs = {"decisions": [0, 2, 3], "values": [0.5, 9.0, 1.5, 2.5, 9.0], "terminated": (1,)}
    advantages, _ = _macro(rewards=[1.0, 2.0, 3.0, 4.0, 5.0], next_value=3.0, **kwargs)
    advantage_3 = 9.0 + GAMMA * 3.0 - 2.5  # 9.2
    advantage_2 = 3.0 + GAMMA * 2.5 - 1.5 + GAMMA * LAMBDA * advantage_3  # 10.374
    expected = torch.tensor([3.0 - 0.5, 0.0, advantage_2, advantage_3, 0.0], dtype=torch.float64)
    torch.testing.assert_close(advantages, expected, atol=1e-6, rtol=0)
    # Nothing after the episode end reaches the first segment.
    changed, _ = _macro(rewards=[1.0, 2.0, -30.0, 40.0, 50.0], next_value=-77.0, **kwargs)
    assert changed[0].item() == pytest.approx(2.5, abs=1e-6)
    assert changed[2].item() != pytest.approx(advantage_2)


def test_macro_gae_truncation_bootstraps_from_bootstrap_values() -> None:
    kwargs = {"decisions": [0, 2, 3], "truncated": (1,), "bootstrap": {1: 4.0}, "next_value": 3.0}
    advantages, returns = _macro(rewards=[1.0, 2.0, 3.0, 4.0, 5.0], values=[0.5, 9.0, 1.5, 2.5, 9.0], **kwargs)
    assert advantages[0].item() == pytest.approx(3.0 + GAMMA * 4.0 - 0.5, abs=1e-6)  # 6.1
    assert returns[0].item() == pytest.approx(3.0 + GAMMA * 4.0, abs=1e-6)
    # The next episode's first value is not the bootstrap.
    other, _ = _macro(rewards=[1.0, 2.0, 3.0, 4.0, 5.0], values=[0.5, 9.0, -40.0, 2.5, 9.0], **kwargs)
    assert other[0].item() == pytest.approx(6.1, abs=1e-6)


def test_macro_gae_ignores_rewards_before_first_decision() -> None:
    for early_reward in (100.0, -5.0):
        advantages, returns = _macro(
            rewards=[early_reward, early_reward, 1.0, 2.0], decisions=[2], values=[7.0, 7.0, 0.5, 7.0], next_value=1.0
        )
        expected = torch.tensor([0.0, 0.0, 3.0 + GAMMA * 1.0 - 0.5, 0.0], dtype=torch.float64)
        torch.testing.assert_close(advantages, expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(returns, torch.tensor([0.0, 0.0, 3.9, 0.0], dtype=torch.float64), atol=1e-6, rtol=0)


def _naive_macro_gae(
    rewards: torch.Tensor,
    decisions: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    bootstrap_values: torch.Tensor,
    next_values: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Builds each env's list of macro transitions, then runs textbook GAE over that list."""
    num_steps, num_envs = rewards.shape
    advantages = torch.zeros_like(rewards)
    for b in range(num_envs):
        # (start, summed reward, value after the macro-step, whether the next transition continues it)
        transitions: list[tuple[int, float, float, bool]] = []
        starts = [t for t in range(num_steps) if decisions[t, b]]
        for start in starts:
            end = start
            while True:
                if terminated[end, b]:
                    following, continues = 0.0, False
                    break
                if truncated[end, b]:
                    following, continues = float(bootstrap_values[end, b]), False
                    break
                if end == num_steps - 1:
                    following, continues = float(next_values[b]), False
                    break
                if decisions[end + 1, b]:
                    following, continues = float(values[end + 1, b]), True
                    break
                end += 1
            transitions.append((start, float(rewards[start : end + 1, b].sum()), following, continues))
        next_advantage = 0.0
        for start, reward, following, continues in reversed(transitions):
            delta = reward + gamma * following - float(values[start, b])
            advantage = delta + gamma * gae_lambda * (next_advantage if continues else 0.0)
            advantages[start, b] = advantage
            next_advantage = advantage
    returns = torch.where(decisions, advantages + values, torch.zeros_like(values))
    return advantages, returns


@pytest.mark.parametrize(("num_steps", "num_envs", "seed"), [(1, 1, 0), (12, 1, 1), (30, 4, 2), (64, 6, 3)])
def test_compute_macro_gae_matches_naive_transition_list(num_steps: int, num_envs: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    rollout = _random_rollout(gen, num_steps, num_envs, end_prob=0.1)
    decisions = torch.rand(num_steps, num_envs, generator=gen) < 0.35
    # A new episode always starts with a decision.
    ended = rollout["terminated"] | rollout["truncated"]
    decisions[1:] |= ended[:-1]
    advantages, returns = compute_macro_gae(decisions=decisions, **rollout, gamma=GAMMA, gae_lambda=LAMBDA)
    expected_advantages, expected_returns = _naive_macro_gae(
        decisions=decisions, **rollout, gamma=GAMMA, gae_lambda=LAMBDA
    )
    assert advantages.shape == returns.shape == (num_steps, num_envs)
    torch.testing.assert_close(advantages, expected_advantages, atol=1e-5, rtol=0)
    torch.testing.assert_close(returns, expected_returns, atol=1e-5, rtol=0)
    # Non-decision entries are exactly zero.
    assert torch.all(advantages[~decisions] == 0)
    assert torch.all(returns[~decisions] == 0)


def _torch_step_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    bootstrap_values: torch.Tensor,
    next_values: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Primitive GAE as a loop of [B]-vector torch operations (the form gae.py had before numpy)."""
    advantages = torch.zeros_like(rewards)
    next_value, next_advantage = next_values, torch.zeros_like(next_values)
    for t in reversed(range(rewards.shape[0])):
        ended = terminated[t] | truncated[t]
        following = torch.where(
            terminated[t], torch.zeros_like(next_value), torch.where(truncated[t], bootstrap_values[t], next_value)
        )
        delta = rewards[t] + gamma * following - values[t]
        advantages[t] = delta + gamma * gae_lambda * (~ended) * next_advantage
        next_value, next_advantage = values[t], advantages[t]
    return advantages, advantages + values


def _torch_step_macro_gae(
    rewards: torch.Tensor,
    decisions: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    bootstrap_values: torch.Tensor,
    next_values: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Macro GAE as a loop of [B]-vector torch operations (the form gae.py had before numpy)."""
    advantages, returns = torch.zeros_like(rewards), torch.zeros_like(rewards)
    zeros = torch.zeros_like(next_values)
    seg_value, seg_advantage, seg_reward = next_values.clone(), zeros.clone(), zeros.clone()
    for t in reversed(range(rewards.shape[0])):
        ended, decided = terminated[t] | truncated[t], decisions[t]
        seg_value = torch.where(terminated[t], zeros, torch.where(truncated[t], bootstrap_values[t], seg_value))
        seg_advantage = torch.where(ended, zeros, seg_advantage)
        seg_reward = torch.where(ended, zeros, seg_reward) + rewards[t]
        advantage = seg_reward + gamma * seg_value - values[t] + gamma * gae_lambda * seg_advantage
        advantages[t] = torch.where(decided, advantage, zeros)
        returns[t] = torch.where(decided, advantage + values[t], zeros)
        seg_value = torch.where(decided, values[t], seg_value)
        seg_advantage = torch.where(decided, advantage, seg_advantage)
        seg_reward = torch.where(decided, zeros, seg_reward)
    return advantages, returns


def test_numpy_recursions_give_the_float32_bits_of_a_torch_loop() -> None:
    gen = torch.Generator().manual_seed(5)
    rollout = {key: value.float() for key, value in _random_rollout(gen, 300, 8, end_prob=0.05).items()}
    rollout["terminated"], rollout["truncated"] = rollout["terminated"].bool(), rollout["truncated"].bool()
    decisions = torch.rand(300, 8, generator=gen) < 0.1
    decisions[1:] |= (rollout["terminated"] | rollout["truncated"])[:-1]
    for got, expected in zip(
        compute_gae(**rollout, gamma=0.99, gae_lambda=0.95),
        _torch_step_gae(**rollout, gamma=0.99, gae_lambda=0.95),
        strict=True,
    ):
        assert got.dtype == torch.float32 and torch.equal(got, expected)
    for got, expected in zip(
        compute_macro_gae(decisions=decisions, **rollout, gamma=0.99, gae_lambda=0.98),
        _torch_step_macro_gae(decisions=decisions, **rollout, gamma=0.99, gae_lambda=0.98),
        strict=True,
    ):
        assert torch.equal(got, expected)
