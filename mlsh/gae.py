"""Generalised advantage estimation at the primitive and the macro level (pure functions).

Conventions: time-major tensors ``[T, B]`` (T steps of B envs). ``terminated[t]`` / ``truncated[t]``
say that the step taken at t ended the episode; ``bootstrap_values[t]`` is the value of the true
final observation of a truncated episode (ignored elsewhere). Termination does not bootstrap;
truncation does, from ``bootstrap_values``; the rollout's end bootstraps from ``next_values``.

The backward recursions run in numpy on host copies, whatever the tensors' device: a step of the
recursion is a handful of operations on ``[B]`` vectors, where each torch operation (a kernel
launch on a GPU) costs several times a numpy one. The results come back on the inputs' device;
the arithmetic is the same float32 arithmetic, in the same order, as a torch loop.
"""

from __future__ import annotations

import numpy as np
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
    r, v, term, trunc, boot, last = _host(rewards, values, terminated, truncated, bootstrap_values, next_values)
    # Value of what follows step t: V(s_{t+1}), V(final obs) after truncation, 0 after termination.
    following = np.concatenate([v[1:], last[None]])
    following = np.where(term, np.float32(0.0), np.where(trunc, boot, following))
    delta = r + gamma * following - v
    carry_coef = np.float32(gamma * gae_lambda) * ~(term | trunc)  # GAE carries over within an episode only
    advantages = np.empty_like(r)
    carry = np.zeros_like(r[0])
    for t in range(r.shape[0] - 1, -1, -1):
        advantages[t] = delta[t] + carry_coef[t] * carry
        carry = advantages[t]
    adv = torch.from_numpy(advantages).to(rewards.device)
    return adv, adv + values


def _host(*tensors: torch.Tensor) -> list[np.ndarray]:
    """Host numpy arrays of ``tensors`` (views for CPU tensors)."""
    return [t.detach().cpu().numpy() for t in tensors]


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
    r, decided, v, term, trunc, boot, last = _host(
        rewards, decisions, values, terminated, truncated, bootstrap_values, next_values
    )
    ended = term | trunc
    advantages = np.zeros_like(r)
    returns = np.zeros_like(r)
    zero = np.float32(0.0)
    coef = np.float32(gamma * gae_lambda)
    segment_next_value = last.copy()  # value of the state after the current macro-step
    segment_next_advantage = np.zeros_like(last)
    segment_reward = np.zeros_like(last)
    for t in range(r.shape[0] - 1, -1, -1):
        # An episode end closes the macro-step that contains t; nothing after it carries over.
        if ended[t].any():
            segment_next_value = np.where(term[t], zero, np.where(trunc[t], boot[t], segment_next_value))
            segment_next_advantage = np.where(ended[t], zero, segment_next_advantage)
            segment_reward = np.where(ended[t], zero, segment_reward)
        segment_reward = segment_reward + r[t]
        if decided[t].any():
            d = decided[t]
            delta = segment_reward + gamma * segment_next_value - v[t]
            advantage = delta + coef * segment_next_advantage
            advantages[t] = np.where(d, advantage, zero)
            returns[t] = np.where(d, advantage + v[t], zero)
            segment_next_value = np.where(d, v[t], segment_next_value)
            segment_next_advantage = np.where(d, advantage, segment_next_advantage)
            segment_reward = np.where(d, zero, segment_reward)
    device = rewards.device
    return torch.from_numpy(advantages).to(device), torch.from_numpy(returns).to(device)
