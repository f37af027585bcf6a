"""The slot schedule: offsets, phases, the any-joint rule of several processes, the most-trained slot; the task deck."""

from __future__ import annotations

import numpy as np
import pytest

from mlsh.config import MLSHConfig
from mlsh.schedule import SlotSchedule, TaskDeck


def test_staggered_offsets_spread_the_slots_over_the_cycle() -> None:
    schedule = SlotSchedule(num_slots=4, warmup_iters=2, joint_iters=1, stagger=True)
    assert schedule.cycle_len == 3
    assert [schedule.offset(s) for s in range(4)] == [0, 0, 1, 2]
    # Iteration 0: only slot 3 (position 2) is in its joint phase; slots 0 and 1 start a cycle.
    assert [schedule.position(s, 0) for s in range(4)] == [0, 0, 1, 2]
    assert [schedule.in_joint_phase(s, 0) for s in range(4)] == [False, False, False, True]
    assert [schedule.position(s, 4) for s in range(4)] == [1, 1, 2, 0]
    assert all(schedule.any_joint(it) for it in range(12))


def test_without_stagger_every_slot_shares_one_cycle() -> None:
    schedule = SlotSchedule.from_config(MLSHConfig(num_slots=3, warmup_iters=2, joint_iters=2, stagger=False))
    assert [schedule.position(s, 5) for s in range(3)] == [1, 1, 1]
    assert [schedule.any_joint(it) for it in range(8)] == [False, False, True, True] * 2


@pytest.mark.parametrize("stagger", [False, True])
def test_most_trained_slot_has_trained_longest_on_its_task(stagger: bool) -> None:
    schedule = SlotSchedule(num_slots=5, warmup_iters=3, joint_iters=4, stagger=stagger)
    assert schedule.most_trained_slot(0) == 0
    for done in range(1, 30):
        # Count by hand: iterations since each slot's last reset, over the iterations that ran.
        trained = []
        for slot in range(5):
            resets = [it for it in range(done) if schedule.position(slot, it) == 0]
            trained.append(done - resets[-1] if resets else done + schedule.offset(slot))
        best = max(trained)
        assert schedule.most_trained_slot(done) == trained.index(best), done


def test_task_deck_deals_every_task_once_per_round_in_shuffled_orders() -> None:
    deck = TaskDeck(["a", "b", "c"], np.random.default_rng(0))
    rounds = [[deck.draw() for _ in range(3)] for _ in range(20)]
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # shuffled, not one fixed order
    again = TaskDeck(["a", "b", "c"], np.random.default_rng(0))
    assert [[again.draw() for _ in range(3)] for _ in range(20)] == rounds


def test_task_deck_state_carries_a_round_across_a_checkpoint() -> None:
    rng = np.random.default_rng(1)
    deck = TaskDeck([0, 1, 2, 3], rng)
    deck.draw()
    state, rng_state = deck.state_dict(), rng.bit_generator.state
    expected = [deck.draw() for _ in range(9)]
    rng2 = np.random.default_rng(99)
    rng2.bit_generator.state = rng_state
    restored = TaskDeck([0, 1, 2, 3], rng2)
    restored.load_state_dict(state)
    assert [restored.draw() for _ in range(9)] == expected
    with pytest.raises(ValueError, match="at least one task"):
        TaskDeck([], rng)
