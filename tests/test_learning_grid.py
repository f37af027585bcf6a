"""Cheap learning checks for FourRooms and KeyDoor (docs: results), one per core, in parallel.

The full checks (docs/results/four_rooms.md and key_door.md) train 12M and 18M steps; these shorter runs
must already show the effect:

* FourRooms, the default config for 3M steps (150 iterations): on held-out goal cells, a fresh
  master over the frozen sub-policies succeeds on most episodes after its W = 20 warmup iterations,
  and its adaptation curve encloses more area than PPO from scratch on the same tasks and budget.
* KeyDoor on a smaller plane (200 x 200, doors and key at least 80 apart; the same T = 100) for
  4M steps (200 iterations): after warmup, at least 60% of the oracle's return on unseen tasks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import evaluation_result, start_train_and_evaluate

pytestmark = pytest.mark.learning

SMALL_KEY_DOOR = (
    "env=KeyDoor",
    "+env.kwargs.size=200",
    "+env.kwargs.min_door_distance=80",
    "+env.kwargs.min_key_distance=80",
    "train.total_timesteps=4000000",
)
QUIET = "plot=false tensorboard=false"


def test_four_rooms_heldout_goals_and_small_key_door_are_learned(tmp_path: Path) -> None:
    jobs = {
        "four_rooms": start_train_and_evaluate(
            tmp_path / "four_rooms",
            ("env=FourRooms", "train.total_timesteps=3000000"),
            f"num_tasks=10 baselines=[scratch] {QUIET}",
        ),
        "key_door": start_train_and_evaluate(tmp_path / "key_door", SMALL_KEY_DOOR, f"num_tasks=10 {QUIET}"),
    }
    results = {name: evaluation_result(name, process, tmp_path / name) for name, process in jobs.items()}
    four_rooms, key_door = results["four_rooms"], results["key_door"]
    print(
        f"FourRooms: success {four_rooms['return_after_adaptation']:.2f}, AUC ratio {four_rooms['auc_ratio']:.2f}; "
        f"KeyDoor (small): {key_door['return_after_adaptation']:.1f} / {key_door['oracle_return']:.1f}"
    )
    # The return of a FourRooms episode is 1 on reaching the goal, so the mean return is the success rate.
    assert four_rooms["return_after_adaptation"] >= 0.6, four_rooms["return_after_adaptation_per_task"]
    assert four_rooms["auc_ratio"] is not None and four_rooms["auc_ratio"] >= 1.05, four_rooms["auc_ratio"]
    assert key_door["ratio"] >= 0.6, key_door["ratio_per_task"]
