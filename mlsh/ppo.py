"""The PPO loss (pure function) for batched members with padding masks."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

AllReduce = Callable[[torch.Tensor], torch.Tensor]  # sums a tensor over processes in place and returns it


class PPOTerms(NamedTuple):
    """Inputs of :func:`ppo_loss`, each ``[G, N]`` (G members, N samples, padded)."""

    new_logprob: torch.Tensor
    old_logprob: torch.Tensor
    advantages: torch.Tensor
    new_value: torch.Tensor
    old_value: torch.Tensor
    returns: torch.Tensor
    entropy: torch.Tensor
    mask: torch.Tensor  # bool: False on padding


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x[g]`` over ``mask[g]`` for each member g: ``[G, N] -> [G]`` (0 where empty)."""
    weight = mask.to(x.dtype)
    return (x * weight).sum(-1) / weight.sum(-1).clamp_min(1.0)


def normalize_advantages(
    advantages: torch.Tensor,
    group_ids: torch.Tensor,
    num_groups: int,
    eps: float = 1e-8,
    reduce: AllReduce | None = None,
) -> torch.Tensor:
    """Normalises advantages to zero mean and unit std within each group (slot or sub-policy).

    Args:
        advantages: ``[N]``.
        group_ids: ``[N]`` long in ``[0, num_groups)``.
        num_groups: G.
        eps: added to the std.
        reduce: sums a tensor over processes in place (several processes: every process's samples of a
            group count); ``None``: this process's samples only.

    Returns:
        ``[N]`` normalised advantages.
    """
    dtype, device = advantages.dtype, advantages.device
    counts = torch.bincount(group_ids, minlength=num_groups).to(dtype)
    sums = torch.zeros(num_groups, dtype=dtype, device=device).index_add_(0, group_ids, advantages)
    if reduce is not None:
        stats = reduce(torch.cat([counts, sums]))
        counts, sums = stats[:num_groups], stats[num_groups:]
    counts = counts.clamp_min(1)
    centred = advantages - (sums / counts)[group_ids]
    squares = torch.zeros_like(sums).index_add_(0, group_ids, centred**2)
    var = (squares if reduce is None else reduce(squares)) / counts
    return centred / (var[group_ids].sqrt() + eps)


def grouped_indices(
    group_ids: torch.Tensor, num_groups: int, shuffle: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lays samples out per group for a batched module, in random order within each group.

    Args:
        group_ids: ``[N]`` long, the member each sample belongs to.
        num_groups: G.
        shuffle: random order within a group (torch's global RNG), else sample order.

    Returns:
        ``(index, mask)``, both ``[G, n_max]``: ``index[g, i]`` is a sample of group g where
        ``mask[g, i]``; padding points at sample 0 and is masked out.
    """
    num = group_ids.shape[0]
    device = group_ids.device
    keys = torch.rand(num, device=device) if shuffle else torch.arange(num, device=device) / max(num, 1)
    order = torch.argsort(group_ids.to(torch.float64) + keys.to(torch.float64) * 0.5)
    counts = torch.bincount(group_ids, minlength=num_groups)
    n_max = max(int(counts.max()) if num else 0, 1)
    starts = torch.cumsum(counts, 0) - counts
    sorted_groups = group_ids[order]
    rank = torch.arange(num, device=device) - starts[sorted_groups]
    index = torch.zeros(num_groups, n_max, dtype=torch.long, device=device)
    mask = torch.zeros(num_groups, n_max, dtype=torch.bool, device=device)
    index[sorted_groups, rank] = order
    mask[sorted_groups, rank] = True
    return index, mask


def ppo_loss(
    terms: PPOTerms,
    clip_coef: float,
    vf_coef: float,
    ent_coef: float,
    clip_vloss: bool,
    vf_clip_coef: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped-surrogate PPO loss, summed over members of per-member means.

    Each member (a sub-policy, or one slot's master) is an independent network, so summing the
    members' mean losses gives each exactly the gradient of its own PPO update.

    Args:
        terms: the batch, see :class:`PPOTerms`.
        clip_coef: clip range of the probability ratio.
        vf_coef: weight of the value loss.
        ent_coef: weight of the entropy bonus.
        clip_vloss: clip the value update around the old values.
        vf_clip_coef: clip range of the value update in return units (``None``: ``clip_coef``).

    Returns:
        ``(loss, metrics)``; ``metrics`` holds ``[G]`` tensors (detached): policy_loss, value_loss,
        entropy, approx_kl, clipfrac.
    """
    mask = terms.mask
    log_ratio = terms.new_logprob - terms.old_logprob
    ratio = log_ratio.exp()
    surrogate = -torch.min(terms.advantages * ratio, terms.advantages * ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef))
    policy_loss = masked_mean(surrogate, mask)
    value_error = (terms.new_value - terms.returns) ** 2
    if clip_vloss:
        vf_clip = clip_coef if vf_clip_coef is None else vf_clip_coef
        clipped = terms.old_value + (terms.new_value - terms.old_value).clamp(-vf_clip, vf_clip)
        value_error = torch.max(value_error, (clipped - terms.returns) ** 2)
    value_loss = 0.5 * masked_mean(value_error, mask)
    entropy = masked_mean(terms.entropy, mask)
    loss = (policy_loss + vf_coef * value_loss - ent_coef * entropy).sum()
    with torch.no_grad():
        metrics = {
            "policy_loss": policy_loss.detach(),
            "value_loss": value_loss.detach(),
            "entropy": entropy.detach(),
            "approx_kl": masked_mean((ratio - 1.0) - log_ratio, mask),
            "clipfrac": masked_mean(((ratio - 1.0).abs() > clip_coef).float(), mask),
        }
    return loss, metrics
