"""PPO updates of the masters and of the sub-policies from one :class:`RolloutBatch`."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from mlsh.config import PPOConfig
from mlsh.errors import TrainingDivergedError
from mlsh.networks import MemberAdam, clip_grad_norm_per_member
from mlsh.ppo import PPOTerms, grouped_indices, normalize_advantages, ppo_loss


class LevelData(NamedTuple):
    """Flat samples of one level, ``[N, ...]`` each, with the member (group) each belongs to."""

    obs: torch.Tensor
    actions: torch.Tensor
    old_logprob: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    group_ids: torch.Tensor


# (obs [G, n, d], actions [G, n, ...]) -> (logprob [G, n], entropy [G, n], value [G, n])
Evaluate = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def ppo_update(
    data: LevelData,
    num_groups: int,
    evaluate: Evaluate,
    optimizer: MemberAdam,
    cfg: PPOConfig,
    level: str,
) -> dict[str, float]:
    """Runs ``cfg.update_epochs`` epochs of minibatch PPO on the members of one level.

    Every member sees its own samples only (batched forward over ``[G, n, ...]`` layouts), its
    advantages are normalised over its own samples, and its gradient is clipped on its own.

    Returns:
        Scalar metrics averaged over members with data (policy_loss, value_loss, entropy,
        approx_kl, clipfrac, grad_norm, explained_variance, epochs).

    Raises:
        TrainingDivergedError: a loss became NaN or infinite.
    """
    if data.obs.shape[0] == 0:
        return {}
    advantages = data.advantages
    if cfg.norm_adv:
        advantages = normalize_advantages(advantages, data.group_ids, num_groups)
    has_data = torch.bincount(data.group_ids, minlength=num_groups) > 0
    params = [p for group in optimizer.param_groups for p in group["params"]]
    totals: dict[str, torch.Tensor] = {}
    count = 0
    epochs_run = 0
    for _ in range(cfg.update_epochs):
        index, mask = grouped_indices(data.group_ids, num_groups)
        n_max = index.shape[1]
        size = -(-n_max // cfg.num_minibatches)
        epoch_kl = []
        for start in range(0, n_max, size):
            idx, m = index[:, start : start + size], mask[:, start : start + size]
            logprob, entropy, value = evaluate(data.obs[idx], data.actions[idx])
            terms = PPOTerms(
                new_logprob=logprob,
                old_logprob=data.old_logprob[idx],
                advantages=advantages[idx],
                new_value=value,
                old_value=data.old_values[idx],
                returns=data.returns[idx],
                entropy=entropy,
                mask=m,
            )
            loss, metrics = ppo_loss(terms, cfg.clip_coef, cfg.vf_coef, cfg.ent_coef, cfg.clip_vloss, cfg.vf_clip_coef)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"The {level} loss became {loss.item()}; lower {level}.lr or {level}.max_grad_norm "
                    f"(the last checkpoint is kept)."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            member_has = m.any(-1)
            metrics["grad_norm"] = clip_grad_norm_per_member(params, cfg.max_grad_norm)
            optimizer.step(active=member_has)
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value[member_has].mean()
            epoch_kl.append(metrics["approx_kl"][member_has].mean())
            count += 1
        epochs_run += 1
        if cfg.target_kl is not None and torch.stack(epoch_kl).mean() > cfg.target_kl:
            break
    result = {key: float(value) / max(count, 1) for key, value in totals.items()}
    with torch.no_grad():
        var_returns = data.returns.var()
        result["explained_variance"] = (
            float(1.0 - (data.returns - data.old_values).var() / var_returns) if var_returns > 0 else 0.0
        )
    result["epochs"] = float(epochs_run)
    result["gradient_steps"] = float(count)
    result["members_with_data"] = float(has_data.sum())
    return result
