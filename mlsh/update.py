"""PPO updates of the masters and of the sub-policies from one :class:`RolloutBatch`.

One epoch loop, :func:`ppo_epochs`, serves every update: it takes the minibatches from a plan and
sums what several processes must share through a reduction hook (none in one process). Two plans
exist: :func:`ppo_update`'s (one process: each member's samples shuffled and cut into chunks) and
:func:`sharded_ppo_update`'s (samples spread over processes: minibatches that do not depend on how
the shards are spread; docs: scaling).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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


class Minibatch(NamedTuple):
    """The samples of one gradient step, laid out per member.

    ``idx`` and ``mask`` are ``None`` where this process holds none of the step's samples (it still takes
    part in the reduction and the step).
    """

    idx: torch.Tensor | None  # [G, n] sample indices, valid where mask
    mask: torch.Tensor | None  # [G, n] bool
    share: torch.Tensor | None  # [G] this process's share of each member's samples; None: one process, all
    active: torch.Tensor  # [G] bool, members with samples in the step (on any process)


# epoch -> that epoch's minibatches
MinibatchPlan = Callable[[int], Iterator[Minibatch]]

METRIC_NAMES = ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac")


def explained_variance(returns: torch.Tensor, values: torch.Tensor, reduce: AllReduce | None = None) -> float:
    """``1 - Var[returns - values] / Var[returns]`` over every sample (0 without variance).

    Computed in float64 from sums, which ``reduce`` adds up over processes (``None``: this process's only).
    """
    with torch.no_grad():
        returns, values = returns.double(), values.double()
        error = returns - values
        count = torch.tensor(float(returns.numel()), dtype=torch.float64, device=returns.device)
        sums = torch.stack([count, returns.sum(), (returns**2).sum(), error.sum(), (error**2).sum()])
        if reduce is not None:
            sums = reduce(sums)
    n, ret_sum, ret_sq, err_sum, err_sq = sums.tolist()
    var_returns = (ret_sq - ret_sum**2 / n) / max(n - 1, 1) if n else 0.0
    var_error = (err_sq - err_sum**2 / n) / max(n - 1, 1) if n else 0.0
    return 1.0 - var_error / var_returns if var_returns > 0 else 0.0


def _reduce_gradients(params: list[torch.Tensor], share: torch.Tensor | None, reduce: AllReduce) -> None:
    """Sums every parameter's gradient over processes (weighted by ``share`` per member first, unless the
    backward pass already weighted it) in one flat tensor; a missing gradient counts as zero."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    if share is None:
        flat = torch.cat([g.reshape(-1) for g in grads])
    else:
        flat = torch.cat([(g * share.view(-1, *([1] * (g.dim() - 1)))).reshape(-1) for g in grads])
    reduce(flat)
    offset = 0
    for p in params:
        p.grad = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()


def ppo_epochs(
    data: LevelData,
    advantages: torch.Tensor,
    plan: MinibatchPlan,
    evaluate: Evaluate,
    optimizer: MemberAdam,
    cfg: PPOConfig,
    level: str,
    members_with_data: torch.Tensor,
    reduce: AllReduce | None = None,
) -> dict[str, float]:
    """Runs ``cfg.update_epochs`` epochs of minibatch PPO on the members of one level (the one epoch loop).

    Each step: the loss of the step's samples (each member's mean, weighted by the member's ``share`` of
    the step's samples where several processes hold them), backward, gradients summed over processes
    (``reduce``), clipped per member, one Adam step for the members with samples. An epoch whose mean
    ``approx_kl`` exceeds ``cfg.target_kl`` is the last.

    Args:
        data: the samples, ``[N, ...]``.
        advantages: ``[N]``, normalised or not.
        plan: each epoch's minibatches.
        evaluate: ``(obs [G, n, d], actions [G, n, ...]) -> (logprob, entropy, value)``, each ``[G, n]``.
        optimizer: the members' optimizer.
        cfg: the level's PPO settings.
        level: ``"sub"`` or ``"master"``, for messages.
        members_with_data: ``[G]`` bool, members with samples (on any process).
        reduce: sums a tensor over processes in place; ``None`` in one process.

    Returns:
        Scalar metrics averaged over steps of the members' mean (policy_loss, value_loss, entropy,
        approx_kl, clipfrac, grad_norm), explained_variance, epochs, gradient_steps, members_with_data.

    Raises:
        TrainingDivergedError: a loss became NaN or infinite.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    shared = any(optimizer.is_shared(p) for p in params)  # sub-policies that share weights
    totals = dict.fromkeys((*METRIC_NAMES, "grad_norm"), 0.0)
    count = 0
    epochs_run = 0
    for epoch in range(cfg.update_epochs):
        step_metrics, step_norms, step_active = [], [], []
        for mb in plan(epoch):
            optimizer.zero_grad(set_to_none=True)
            values = torch.zeros(len(METRIC_NAMES), mb.active.shape[0], device=mb.active.device)
            if mb.idx is not None:
                weighted = mb.share is not None and shared  # a shared parameter sums every member's gradient
                member_evaluate = _share_weighted(evaluate, mb.share) if weighted else evaluate
                loss, metrics = minibatch_loss(data, advantages, mb.idx, mb.mask, member_evaluate, cfg, level)
                loss.backward()
                values = torch.stack([metrics[name] for name in METRIC_NAMES])
                if mb.share is not None:
                    values = values * mb.share
            if reduce is not None:
                _reduce_gradients(params, None if shared else mb.share, reduce)
            step_norms.append(clip_grad_norm_per_member(params, cfg.max_grad_norm))
            optimizer.step(active=mb.active)
            step_metrics.append(values)
            step_active.append(mb.active)
            count += 1
        epochs_run += 1
        if not step_metrics:
            continue
        epoch_metrics = torch.stack(step_metrics)  # [steps, metrics, G]
        if reduce is not None:
            reduce(epoch_metrics)
        for values, norms, active in zip(epoch_metrics, step_norms, step_active, strict=True):
            for i, name in enumerate(METRIC_NAMES):
                totals[name] += float(values[i][active].mean())
            totals["grad_norm"] += float(norms[active].mean())
        if cfg.target_kl is not None:
            kl = epoch_metrics[:, METRIC_NAMES.index("approx_kl")]
            epoch_kl = sum(float(kl[s][active].mean()) for s, active in enumerate(step_active)) / len(step_active)
            if epoch_kl > cfg.target_kl:
                break
    result = {key: value / max(count, 1) for key, value in totals.items()}
    result["explained_variance"] = explained_variance(data.returns, data.old_values, reduce)
    result["epochs"] = float(epochs_run)
    result["gradient_steps"] = float(count)
    result["members_with_data"] = float(members_with_data.sum())
    return result


def ppo_update(
    data: LevelData,
    num_groups: int,
    evaluate: Evaluate,
    optimizer: MemberAdam,
    cfg: PPOConfig,
    level: str,
    norm_groups: tuple[torch.Tensor, int] | None = None,
) -> dict[str, float]:
    """:func:`ppo_epochs` on the members of one level, all samples in this process.

    Every member sees its own samples only (batched forward over ``[G, n, ...]`` layouts), its
    advantages are normalised over its own samples (or within finer groups: ``norm_groups`` =
    ``(ids [N], count)``), and its gradient is clipped on its own. Each epoch shuffles each member's
    samples (torch's global RNG) and cuts the ``[G, n_max]`` layout into ``num_minibatches`` chunks.

    Returns:
        The metrics of :func:`ppo_epochs` (empty without samples).

    Raises:
        TrainingDivergedError: a loss became NaN or infinite.
    """
    if data.obs.shape[0] == 0:
        return {}
    advantages = data.advantages
    if cfg.norm_adv:
        ids, count = norm_groups if norm_groups is not None else (data.group_ids, num_groups)
        advantages = normalize_advantages(advantages, ids, count)

    def plan(epoch: int) -> Iterator[Minibatch]:
        index, mask = grouped_indices(data.group_ids, num_groups)
        n_max = index.shape[1]
        size = -(-n_max // cfg.num_minibatches)
        for start in range(0, n_max, size):
            idx, m = index[:, start : start + size], mask[:, start : start + size]
            yield Minibatch(idx, m, None, m.any(-1))

    has_data = torch.bincount(data.group_ids, minlength=num_groups) > 0
    return ppo_epochs(data, advantages, plan, evaluate, optimizer, cfg, level, has_data)


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

    This differs from :func:`ppo_update` (one process) in the minibatches only (both run
    :func:`ppo_epochs`): there a member's samples are shuffled together and cut into chunks of a common
    size (a member with few samples gets fewer steps); here every member gets ``num_minibatches`` steps
    per epoch, each stratified over shards.

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

    def plan(epoch: int) -> Iterator[Minibatch]:
        order, part = _minibatch_parts(cells, cell_counts, sample_keys(sample_ids, salt, epoch), num_mb)
        for mb in range(num_mb):
            if not bool(has_data[mb].any()):
                continue
            members = order[part == mb]
            if not members.numel():
                yield Minibatch(None, None, shares[mb], has_data[mb])
                continue
            index, mask = grouped_indices(data.group_ids[members], num_groups, shuffle=False)
            yield Minibatch(members[index], mask, shares[mb], has_data[mb])

    return ppo_epochs(data, advantages, plan, evaluate, optimizer, cfg, level, has_data.any(0), reduce)
