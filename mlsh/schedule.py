"""The slot schedule of the meta-loop (paper, Algorithm 1): when a slot resets its master, and its phase.

Each of the M task slots runs cycles of ``warmup_iters`` master-only iterations followed by
``joint_iters`` iterations in which its data also trains the sub-policies; a cycle starts with a new
task and a fresh master. With ``stagger`` global slot s is offset by ``s * cycle / M`` iterations, so
that some slot is in its joint phase at every iteration (the original staggered its MPI groups the
same way). A global slot has the same offset whatever the number of processes. Which task a new cycle
gets is drawn independently or, for finite task families, from a :class:`TaskDeck`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlsh.config import MLSHConfig


@dataclass(frozen=True)
class SlotSchedule:
    """Phase and cycle of every global slot at every iteration.

    Args:
        num_slots: M, the run's slots over all processes.
        warmup_iters: W, master-only iterations at the start of a cycle.
        joint_iters: U, iterations that also train the sub-policies.
        stagger: offset the slots' cycles.
    """

    num_slots: int
    warmup_iters: int
    joint_iters: int
    stagger: bool

    @classmethod
    def from_config(cls, m: MLSHConfig) -> SlotSchedule:
        return cls(m.num_slots, m.warmup_iters, m.joint_iters, m.stagger)

    @property
    def cycle_len(self) -> int:
        """W + U."""
        return self.warmup_iters + self.joint_iters

    def offset(self, slot: int) -> int:
        """Global slot ``slot``'s head start in its cycle."""
        return (slot * self.cycle_len) // self.num_slots if self.stagger else 0

    def position(self, slot: int, iteration: int) -> int:
        """Iterations since ``slot``'s last master reset at ``iteration`` (0: it resets as the iteration starts)."""
        return (iteration + self.offset(slot)) % self.cycle_len

    def in_joint_phase(self, slot: int, iteration: int) -> bool:
        """Whether ``slot``'s data trains the sub-policies at ``iteration``."""
        return self.position(slot, iteration) >= self.warmup_iters

    def any_joint(self, iteration: int) -> bool:
        """Whether some global slot trains the sub-policies at ``iteration`` (every process then takes part)."""
        return any(self.in_joint_phase(slot, iteration) for slot in range(self.num_slots))

    def most_trained_slot(self, iterations_done: int) -> int:
        """The slot whose master has trained longest on its current task once ``iterations_done`` iterations
        have run (a slot at position p has trained p iterations, a full cycle where p = 0); slot 0 before any."""
        if iterations_done == 0:
            return 0
        trained = [self.position(slot, iterations_done - 1) + 1 for slot in range(self.num_slots)]
        return max(range(self.num_slots), key=lambda slot: (trained[slot], -slot))


class TaskDeck:
    """Deals the tasks of a finite family in rounds: each round is every task once, in a shuffled order.

    A drawn task is uniform over the family, as with independent draws, but the tasks come up equally
    often over every round, so that the first cycles' tasks (which shape the sub-policies first) cannot
    all be one task by chance (``mlsh.task_sampling=balanced``).

    Args:
        tasks: the family (an env's ``train_tasks``).
        rng: the generator that shuffles each round.
    """

    def __init__(self, tasks: Sequence[Any], rng: np.random.Generator) -> None:
        if not tasks:
            raise ValueError("A task deck needs at least one task.")
        self.tasks = list(tasks)
        self.rng = rng
        self.remaining: list[int] = []  # indices into tasks, dealt from the end

    def draw(self) -> Any:
        """The next task of the round (a new shuffled round when this one is spent)."""
        if not self.remaining:
            self.remaining = [int(i) for i in self.rng.permutation(len(self.tasks))]
        return self.tasks[self.remaining.pop()]

    def state_dict(self) -> dict[str, list[int]]:
        return {"remaining": list(self.remaining)}

    def load_state_dict(self, state: dict[str, list[int]]) -> None:
        self.remaining = [int(i) for i in state["remaining"]]
