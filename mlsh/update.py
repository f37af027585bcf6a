"""PPO updates of the masters and of the sub-policies from one :class:`RolloutBatch`."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from mlsh.config import PPOConfig
from mlsh.errors import TrainingDivergedError
from mlsh.networks import MemberAdam, clip_grad_norm_per_member
from mlsh.ppo import AllReduce, PPOTerms, grouped_indices, normalize_advantages, ppo_loss


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


def minibatch_loss(
    data: LevelData,
    advantages: torch.Tensor,
    idx: torch.Tensor,
    mask: torch.Tensor,
    evaluate: Evaluate,
    cfg: PPOConfig,
    level: str,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`mlsh.ppo.ppo_loss` on the samples ``idx`` (``[G, n]``, valid where ``mask``) of ``data``.

    Raises:
        TrainingDivergedError: the loss is NaN or infinite.
    """
    logprob, entropy, value = evaluate(data.obs[idx], data.actions[idx])
    terms = PPOTerms(
        new_logprob=logprob,
        old_logprob=data.old_logprob[idx],
        advantages=advantages[idx],
        new_value=value,
        old_value=data.old_values[idx],
        returns=data.returns[idx],
        entropy=entropy,
        mask=mask,
    )
    loss, metrics = ppo_loss(terms, cfg.clip_coef, cfg.vf_coef, cfg.ent_coef, cfg.clip_vloss, cfg.vf_clip_coef)
    if not torch.isfinite(loss):
        raise TrainingDivergedError(
            f"The {level} loss became {loss.item()}; lower {level}.lr or {level}.max_grad_norm "
            f"(the last checkpoint is kept)."
        )
    return loss, metrics


def ppo_update(
    data: LevelData,
    num_groups: int,
    evaluate: Evaluate,
    optimizer: MemberAdam,
    cfg: PPOConfig,
    level: str,
    norm_groups: tuple[torch.Tensor, int] | None = None,
) -> dict[str, float]:
    """Runs ``cfg.update_epochs`` epochs of minibatch PPO on the members of one level.

    Every member sees its own samples only (batched forward over ``[G, n, ...]`` layouts), its
    advantages are normalised over its own samples (or within finer groups: ``norm_groups`` =
    ``(ids [N], count)``), and its gradient is clipped on its own.

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
        ids, count = norm_groups if norm_groups is not None else (data.group_ids, num_groups)
        advantages = normalize_advantages(advantages, ids, count)
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
            loss, metrics = minibatch_loss(data, advantages, idx, m, evaluate, cfg, level)
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
    with torch.no_grad():  # (one sample has no variance, and torch would warn of its degrees of freedom)
        var_returns = float(data.returns.var()) if data.returns.numel() > 1 else 0.0
        result["explained_variance"] = (
            float(1.0 - (data.returns - data.old_values).var() / var_returns) if var_returns > 0 else 0.0
        )
    result["epochs"] = float(epochs_run)
    result["gradient_steps"] = float(count)
    result["members_with_data"] = float(has_data.sum())
    return result


# -- slot-sharded sub-policy update (multi-process runs; docs: scaling)---------------------------------

_PRIME = 2**31 - 1  # keys live in [0, 2^31): int64 products with the multipliers below cannot overflow


def sample_keys(sample_ids: torch.Tensor, salt: int, epoch: int) -> torch.Tensor:
    """Pseudo-random shuffle keys in ``[0, 2^31)``, a pure function of a sample's global id.

    Integer arithmetic only, so CPU and GPU, and any number of processes, draw the same keys for
    the same sample (torch's random streams differ between devices).

    Args:
        sample_ids: ``[N]`` int64, non-negative.
        salt: varies the keys from update to update (run seed and iteration).
        epoch: varies them from epoch to epoch.
    """
    x = (sample_ids % _PRIME + (salt % _PRIME) + (epoch * 40503) % _PRIME) % _PRIME
    for multiplier, shift in ((48271, 13), (69621, 11), (16807, 15)):
        x = (x * multiplier) % _PRIME
        x = x ^ (x >> shift)
    return x


def _minibatch_parts(cells: torch.Tensor, cell_counts: torch.Tensor, keys: torch.Tensor, num_minibatches: int):
    """Sample order by (cell, key) and each sample's minibatch: cell c's samples are cut into
    ``num_minibatches`` contiguous, nearly equal parts in key order. Returns ``(order [N], part [N])``."""
    num = cells.shape[0]
    order = torch.argsort(cells * 2**31 + keys, stable=True)
    sorted_cells = cells[order]
    starts = torch.cumsum(cell_counts, 0) - cell_counts
    rank = torch.arange(num, device=cells.device) - starts[sorted_cells]
    return order, (rank * num_minibatches) // cell_counts[sorted_cells].clamp_min(1)


def _share_weighted(evaluate: Evaluate, share: torch.Tensor) -> Evaluate:
    """``evaluate`` whose outputs pass back gradients scaled by their member's ``share`` (``[G]``).

    The gradient is then that of ``sum_g share_g * loss_g`` while the loss's values stay as they are.
    :func:`sharded_ppo_update` needs this when members share parameters (``sub.sharing``): a shared
    parameter's gradient already sums every member's, so the shares cannot be applied after backward.
    """

    def scale(x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            x.register_hook(lambda grad: grad * share.view(-1, *([1] * (grad.dim() - 1))))
        return x

    def weighted(obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logprob, entropy, value = evaluate(obs, actions)
        return scale(logprob), scale(entropy), scale(value)

    return weighted


def sharded_ppo_update(
    data: LevelData,
    shard_ids: torch.Tensor,
    sample_ids: torch.Tensor,
    salt: int,
    num_groups: int,
    num_shards: int,
    evaluate: Evaluate,
    optimizer: MemberAdam,
    cfg: PPOConfig,
    level: str,
    reduce: AllReduce,
    norm_per_shard: bool = False,
) -> dict[str, float]:
    """PPO on replicated members (the sub-policies) whose samples are spread over processes.

    The result does not depend on how the shards (task slots) are spread over processes: every
    process holding the same members and running this on its own shards' samples computes, step by
    step, the update that one process holding every shard computes. For that,

    * advantages are normalised per member with sums over all processes;
    * minibatches are formed per shard: a shard's samples of member g are ordered by
      :func:`sample_keys` (a function of the sample's global id) and cut into ``num_minibatches``
      parts; minibatch j of member g is the union of every shard's part j;
    * each process's per-member mean loss is re-weighted by its share of the minibatch's samples
      of that member, so the gradients summed over processes are those of the global mean loss;
      the summed gradient is then clipped per member and every replica takes the same Adam step.

    This differs from :func:`ppo_update` (one process) in the minibatches: there a member's samples
    are shuffled together and cut into chunks of a common size (a member with few samples gets fewer
    steps); here every member gets ``num_minibatches`` steps per epoch, each stratified over shards.

    Args:
        data: this process's samples, ``[N, ...]``; ``group_ids`` are members.
        shard_ids: ``[N]`` long, the global shard (task slot) of each sample, in ``[0, num_shards)``.
        sample_ids: ``[N]`` long, each sample's id, unique over all processes.
        salt: changes the minibatches from update to update (same on every process).
        num_groups: G, the number of members.
        num_shards: S, shards over all processes.
        evaluate: see :func:`ppo_update`.
        optimizer: the members' optimizer (same state on every process).
        cfg: the level's PPO settings.
        level: ``"sub"`` or ``"master"``, for messages.
        reduce: sums a tensor over processes in place (identity in one process).
        norm_per_shard: normalise advantages per (member, shard) instead of per member.

    Returns:
        The metrics of :func:`ppo_update`, over all processes' samples.

    Raises:
        TrainingDivergedError: a loss became NaN or infinite.
    """
    device = data.advantages.device
    num_mb = cfg.num_minibatches
    advantages = data.advantages
    cells = data.group_ids * num_shards + shard_ids
    if cfg.norm_adv:
        if norm_per_shard:
            advantages = normalize_advantages(advantages, cells, num_groups * num_shards, reduce=reduce)
        else:
            advantages = normalize_advantages(advantages, data.group_ids, num_groups, reduce=reduce)
    cell_counts = torch.bincount(cells, minlength=num_groups * num_shards)
    # How many samples of each member each minibatch holds does not depend on the keys: count once.
    _, part = _minibatch_parts(cells, cell_counts, torch.zeros_like(cells), num_mb)
    groups_sorted = data.group_ids[torch.argsort(cells, stable=True)]
    local_counts = torch.bincount(part * num_groups + groups_sorted, minlength=num_mb * num_groups)
    local_counts = local_counts.view(num_mb, num_groups).to(torch.float32)
    global_counts = reduce(local_counts.clone())
    shares = local_counts / global_counts.clamp_min(1.0)  # [num_mb, G]: this process's share of each minibatch
    has_data = global_counts > 0
    params = [p for group in optimizer.param_groups for p in group["params"]]
    shared = any(optimizer.is_shared(p) for p in params)  # sub-policies that share weights
    metric_names = ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac")
    totals = dict.fromkeys((*metric_names, "grad_norm"), 0.0)
    count = 0
    epochs_run = 0
    for epoch in range(cfg.update_epochs):
        order, part = _minibatch_parts(cells, cell_counts, sample_keys(sample_ids, salt, epoch), num_mb)
        epoch_metrics = torch.zeros(num_mb, len(metric_names), num_groups, device=device)
        grad_norms = []
        for mb in range(num_mb):
            if not bool(has_data[mb].any()):
                continue
            members = order[part == mb]
            optimizer.zero_grad(set_to_none=True)
            if members.numel():
                index, mask = grouped_indices(data.group_ids[members], num_groups, shuffle=False)
                idx = members[index]
                member_evaluate = _share_weighted(evaluate, shares[mb]) if shared else evaluate
                loss, metrics = minibatch_loss(data, advantages, idx, mask, member_evaluate, cfg, level)
                loss.backward()
                epoch_metrics[mb] = torch.stack([metrics[name] for name in metric_names]) * shares[mb]
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            if shared:  # already weighted in the backward pass
                flat = torch.cat([g.reshape(-1) for g in grads])
            else:
                flat = torch.cat([(g * shares[mb].view(-1, *([1] * (g.dim() - 1)))).reshape(-1) for g in grads])
            reduce(flat)
            offset = 0
            for p in params:
                p.grad = flat[offset : offset + p.numel()].view_as(p)
                offset += p.numel()
            grad_norms.append(clip_grad_norm_per_member(params, cfg.max_grad_norm))
            optimizer.step(active=has_data[mb])
            count += 1
        reduce(epoch_metrics)
        steps = [mb for mb in range(num_mb) if bool(has_data[mb].any())]
        for mb, norms in zip(steps, grad_norms, strict=True):
            active = has_data[mb]
            for i, name in enumerate(metric_names):
                totals[name] += float(epoch_metrics[mb, i][active].mean())
            totals["grad_norm"] += float(norms[active].mean())
        epochs_run += 1
        if cfg.target_kl is not None and steps:
            kl = sum(float(epoch_metrics[mb, metric_names.index("approx_kl")][has_data[mb]].mean()) for mb in steps)
            if kl / len(steps) > cfg.target_kl:
                break
    result = {key: value / max(count, 1) for key, value in totals.items()}
    with torch.no_grad():
        returns, old_values = data.returns.double(), data.old_values.double()
        error = returns - old_values
        sums = reduce(
            torch.stack(
                [
                    torch.tensor(float(returns.numel()), dtype=torch.float64, device=device),
                    returns.sum(),
                    (returns**2).sum(),
                    error.sum(),
                    (error**2).sum(),
                ]
            )
        )
        n = float(sums[0])
        var_returns = (float(sums[2]) - float(sums[1]) ** 2 / n) / max(n - 1, 1) if n else 0.0
        var_error = (float(sums[4]) - float(sums[3]) ** 2 / n) / max(n - 1, 1) if n else 0.0
        result["explained_variance"] = 1.0 - var_error / var_returns if var_returns > 0 else 0.0
    result["epochs"] = float(epochs_run)
    result["gradient_steps"] = float(count)
    result["members_with_data"] = float(has_data.any(0).sum())
    return result
