"""Generalised advantage estimation at the primitive and the macro level (pure functions).

Conventions: time-major tensors ``[T, B]`` (T steps of B envs). ``terminated[t]`` / ``truncated[t]``
say that the step taken at t ended the episode; ``bootstrap_values[t]`` is the value of the true
final observation of a truncated episode (ignored elsewhere). Termination does not bootstrap;
truncation does, from ``bootstrap_values``; the rollout's end bootstraps from ``next_values``.
"""

from __future__ import annotations

import torch


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    bootstrap_values: torch.Tensor,
    next_values: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Primitive-level GAE(gamma, lambda).

    Args:
        rewards: ``[T, B]`` reward of the step taken at t.
        values: ``[T, B]`` V(s_t).
        terminated: ``[T, B]`` bool, the step at t reached a terminal state.
        truncated: ``[T, B]`` bool, the episode was cut after the step at t (time limit).
        bootstrap_values: ``[T, B]`` V(final observation) where ``truncated``; other entries unused.
        next_values: ``[B]`` V(s_T), the state after the rollout's last step.
        gamma: discount per step.
        gae_lambda: GAE lambda.

    Returns:
        ``(advantages, returns)``, both ``[T, B]``; ``returns = advantages + values``.
    """
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    next_value = next_values
    next_advantage = torch.zeros_like(next_values)
    for t in reversed(range(num_steps)):
        ended = terminated[t] | truncated[t]
        # Value of what follows step t: 0 after termination, V(final obs) after truncation.
        following = torch.where(
            terminated[t], torch.zeros_like(next_value), torch.where(truncated[t], bootstrap_values[t], next_value)
        )
        delta = rewards[t] + gamma * following - values[t]
        advantages[t] = delta + gamma * gae_lambda * (~ended) * next_advantage
        next_value = values[t]
        next_advantage = advantages[t]
    return advantages, advantages + values


def compute_macro_gae(
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
    """Master-level GAE over macro-steps laid out on the primitive time axis.

    A macro-step starts at every step where ``decisions`` is set and lasts until the next decision
    or the end of the episode, whichever comes first; its reward is the plain sum of the primitive
    rewards in it, and gamma / lambda apply once per macro-step (as in the paper). Rewards before the
    first decision of the rollout belong to a macro-step of the previous rollout and are ignored.
    A macro-step still open at the rollout's end bootstraps from ``next_values`` (the master's value
    of the state reached), like a truncation.

    Args:
        rewards: ``[T, B]`` primitive rewards.
        decisions: ``[T, B]`` bool, the master chose a sub-policy before the step at t.
        values: ``[T, B]`` master value V(s_t); read only where ``decisions``.
        terminated: ``[T, B]`` bool, episode ended by termination at step t.
        truncated: ``[T, B]`` bool, episode cut by the time limit at step t.
        bootstrap_values: ``[T, B]`` master value of the final observation where ``truncated``.
        next_values: ``[B]`` master value of the state after the rollout.
        gamma: discount per macro-step.
        gae_lambda: GAE lambda per macro-step.

    Returns:
        ``(advantages, returns)``, both ``[T, B]``, meaningful where ``decisions`` (zero elsewhere).
    """
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    returns = torch.zeros_like(rewards)
    segment_next_value = next_values.clone()  # value of the state after the current macro-step
    segment_next_advantage = torch.zeros_like(next_values)
    segment_reward = torch.zeros_like(next_values)
    zeros = torch.zeros_like(next_values)
    for t in reversed(range(num_steps)):
        ended = terminated[t] | truncated[t]
        # An episode end closes the macro-step that contains t; nothing after it carries over.
        segment_next_value = torch.where(
            terminated[t], zeros, torch.where(truncated[t], bootstrap_values[t], segment_next_value)
        )
        segment_next_advantage = torch.where(ended, zeros, segment_next_advantage)
        segment_reward = torch.where(ended, zeros, segment_reward) + rewards[t]
        decided = decisions[t]
        delta = segment_reward + gamma * segment_next_value - values[t]
        advantage = delta + gamma * gae_lambda * segment_next_advantage
        advantages[t] = torch.where(decided, advantage, zeros)
        returns[t] = torch.where(decided, advantage + values[t], zeros)
        segment_next_value = torch.where(decided, values[t], segment_next_value)
        segment_next_advantage = torch.where(decided, advantage, segment_next_advantage)
        segment_reward = torch.where(decided, zeros, segment_reward)
    return advantages, returns
