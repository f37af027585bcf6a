"""Threads: how many cores this process may use, and the torch thread count of the PPO updates."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def update_threads(threads: int | None, device: torch.device) -> Iterator[None]:
    """Runs the block with ``threads`` torch threads on a CPU device (0: every core this process may
    use; ``None``: unchanged), then restores the previous count.

    The rollout's small per-step networks run fastest on one thread, but the env's threads are idle
    during the updates, whose minibatches are large enough to share out.
    """
    if threads is None or device.type != "cpu":
        yield
        return
    if threads == 0:
        threads = available_cores()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
