"""Multi-process training with ``torch.distributed`` (launched by ``torchrun``; docs: scaling).

Layout: the run's ``mlsh.num_slots`` task slots (M) are split evenly over the P processes (ranks);
rank r owns the global slots ``[r * M / P, (r + 1) * M / P)`` with their tasks, envs and masters.
A global slot gets the same task stream, env seeds and stagger offset whatever P is, so the
slot layout of a P-process run is that of a one-process run with M slots. The K sub-policies and
the observation normaliser are replicated: every rank starts from rank 0's copy, and their
updates use statistics and gradients summed over all ranks, so the replicas stay bit-identical.

What is *not* shared is torch's random stream: each rank samples its own actions and master choices
(and re-initialises its own masters) from a per-rank seed, so a P-process run is a different random
draw of the same experiment, not a replay of the one-process run.

gloo serves CPU runs and NCCL GPU runs; ``torchrun`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous (``MASTER_ADDR``/``MASTER_PORT`` or ``--rdzv-endpoint``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from mlsh.errors import ConfigError
from mlsh.policy import merge_moments

# Spawn key of the per-rank torch seeds (the task streams use 0 and 1, see mlsh.meta).
RANK_SEED_STREAM = 2


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher setting ``WORLD_SIZE``)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def env_rank() -> int:
    """This process's rank as the launcher set it (0 without a launcher)."""
    return int(os.environ.get("RANK", "0"))


def rank_seed(seed: int, rank: int) -> int:
    """torch's seed on ``rank`` (actions, master choices and master re-initialisations)."""
    return int(np.random.SeedSequence(seed, spawn_key=(RANK_SEED_STREAM, rank)).generate_state(1)[0])


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a multi-process run.

    Args:
        rank: global rank r.
        world_size: P.
        local_rank: rank on this node (picks the GPU).
        process_group: whether a ``torch.distributed`` process group is running; without one
            (P = 1 only) collectives are identities, which tests use as the one-process reference.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    process_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> DistContext | None:
        """The running process group's context, or ``None`` when training in one plain process."""
        if not (dist.is_available() and dist.is_initialized()):
            return None
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return cls(dist.get_rank(), dist.get_world_size(), local, True)

    def local_slots(self, num_slots: int) -> tuple[int, int]:
        """``(first global slot, number of slots)`` owned by this rank.

        Raises:
            ConfigError: ``num_slots`` is not a multiple of the number of processes.
        """
        if num_slots % self.world_size:
            raise ConfigError(
                f"mlsh.num_slots ({num_slots}) must be a multiple of the number of processes ({self.world_size}); "
                f"set mlsh.num_slots={max(1, round(num_slots / self.world_size)) * self.world_size}."
            )
        per_rank = num_slots // self.world_size
        return self.rank * per_rank, per_rank

    def device(self, device: torch.device) -> torch.device:
        """A CUDA device without an index becomes this rank's GPU (``cuda:LOCAL_RANK``)."""
        if device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    # -- collectives (identities without a process group) ------------------------------------------
    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sums ``tensor`` over ranks in place (every rank gets the same bits) and returns it."""
        if self.process_group and self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (same shape on every rank), in rank order."""
        if not (self.process_group and self.world_size > 1):
            return [tensor]
        out = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(out, tensor)
        return out

    def broadcast_module(self, module: nn.Module) -> None:
        """Overwrites ``module``'s parameters and buffers with rank 0's."""
        if self.process_group and self.world_size > 1:
            with torch.no_grad():
                for tensor in [*module.parameters(), *module.buffers()]:
                    dist.broadcast(tensor.data, src=0)

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not (self.process_group and self.world_size > 1):
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` in rank order on rank 0 (``None`` on the others)."""
        if not (self.process_group and self.world_size > 1):
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` is set on some rank (e.g. a Ctrl-C that reached one process only)."""
        value = torch.tensor([float(flag)], device=device)
        return bool(self.all_reduce(value).item() > 0)


def init_process_group(device: str) -> DistContext:
    """Joins the process group that ``torchrun`` describes (NCCL for CUDA runs, else gloo)."""
    if not dist.is_initialized():
        use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    context = DistContext.current()
    assert context is not None
    return context


def destroy_process_group(barrier: bool = True) -> None:
    """Leaves the process group; ``barrier`` first waits for every rank (gloo may abort a process whose
    peer tears its connections down while it is still finishing; skip it on an error path, where the
    other ranks may never arrive)."""
    if dist.is_available() and dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


@torch.no_grad()
def merge_rms_batches(rms: nn.Module, batches: list[torch.Tensor], context: DistContext) -> None:
    """Merges every rank's observation batch into ``rms``; all ranks end with the same bits.

    Each rank's batch is summarised as (count, mean, variance), the summaries are gathered and
    combined in rank order (Chan et al.'s parallel formula), and the result is merged into the running
    statistics with the formula of ``RunningMeanStd.update`` (with one rank: exactly that update).
    """
    mean = rms.mean
    x = torch.cat([b.to(torch.float64).reshape(-1, *mean.shape) for b in batches]) if batches else None
    if x is None:
        x = torch.zeros(0, *mean.shape, dtype=torch.float64, device=mean.device)
    count = float(x.shape[0])
    if count:
        batch_mean, batch_var = x.mean(0), x.var(0, unbiased=False)
    else:
        batch_mean, batch_var = torch.zeros_like(mean), torch.zeros_like(mean)
    summary = torch.cat([torch.full((1,), count, dtype=torch.float64, device=mean.device), batch_mean, batch_var])
    dim = batch_mean.numel()
    total = 0.0
    for part in context.all_gather(summary.reshape(-1)):
        n_b = float(part[0])
        if n_b == 0:
            continue
        mean_b, var_b = part[1 : 1 + dim].view_as(mean), part[1 + dim :].view_as(mean)
        if total == 0:
            total, batch_mean, batch_var = n_b, mean_b, var_b
            continue
        batch_mean, batch_var, total = merge_moments(batch_mean, batch_var, total, mean_b, var_b, n_b)
    if total == 0:
        return
    rms.merge(batch_mean, batch_var, total)
