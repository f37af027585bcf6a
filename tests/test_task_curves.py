"""scripts/task_curves.py: the per-task table and early-window summary, on hand-made series."""

from __future__ import annotations

import numpy as np

from tests.conftest import load_script


def test_stretch_row_and_early_tasks_count_and_average_per_task() -> None:
    module = load_script("task_curves")
    returns = {
        0: (np.array([100, 200, 300, 500]), np.array([1.0, 3.0, 5.0, 20.0])),
        1: (np.array([400, 600]), np.array([2.0, 4.0])),
    }
    usage = {0: (np.array([100, 300, 500]), np.array([0.5, 0.6, 0.9])), 1: (np.array([400]), np.array([0.4]))}
    row = module.stretch_row("run", returns, np.array([0, 300, 600]))
    assert row == "| run | 3.0 / - | 20.0 / 3.0 |"
    early = module.early_tasks(returns, usage, until=400)
    assert early == (
        "task 0: 3 joint iterations, sub-policy 0's share 0.50-0.60; "
        "task 1: 1 joint iterations, sub-policy 0's share 0.40-0.40"
    )


def test_reinit_steps_are_where_the_count_goes_up() -> None:
    module = load_script("task_curves")
    steps, counts = np.array([100, 200, 300, 400, 500]), np.array([0.0, 1.0, 1.0, 3.0, 3.0])
    assert module.reinit_steps(steps, counts) == [200, 400]
    assert module.reinit_steps(np.array([100]), np.array([1.0])) == [100]
