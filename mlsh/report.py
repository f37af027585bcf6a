"""Writing an unseen-task evaluation (``mlsh.evaluation.evaluate_run``'s result): CSV, PNG, TensorBoard.

Every method's curve is plotted against the env steps it has spent on each task, so that equal
budgets line up on the x-axis.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mlsh.evaluation import METHOD_LABELS

CSV_COLUMNS = ("method", "task_index", "task", "phase", "iteration", "env_steps", "return")

PLOT_SIZE_INCHES = (7.0, 4.5)
PLOT_DPI = 100  # 700 x 450 pixels


def _per_task_curves(method: dict[str, Any]) -> np.ndarray:
    """``[num_tasks, iters]`` floats, NaN where no episode ended in that iteration."""
    rows = [[np.nan if x is None else x for x in row] for row in method["curve_per_task"]]
    return np.asarray(rows, dtype=float).reshape(len(rows), -1)


def csv_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Long-format rows: one per method, task and adaptation iteration (``phase=adapt``), one per method
    and task for the return measured after adaptation (``phase=after``), and the oracle's per task."""
    rows: list[dict[str, Any]] = []
    iters = result["adapt_iters"]
    tasks = [json.dumps(task) for task in result["tasks"]]

    def add(*values: Any) -> None:
        rows.append(dict(zip(CSV_COLUMNS, values)))

    for name, method in result["methods"].items():
        steps = method["steps_per_task_per_iter"]
        after = method["return_after_adaptation_per_task"]
        for index, curve in enumerate(method["curve_per_task"]):
            for iteration, value in enumerate(curve, start=1):
                add(name, index, tasks[index], "adapt", iteration, iteration * steps, value)
            add(name, index, tasks[index], "after", iters, iters * steps, after[index])
    for index, value in enumerate(result.get("oracle_return_per_task", [])):
        add("oracle", index, tasks[index], "after", iters, None, value)
    return rows


def write_csv(result: dict[str, Any], path: Path) -> Path:
    """Writes :func:`csv_rows` (empty cells where no episode ended)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in csv_rows(result):
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path


def plot_curves(result: dict[str, Any], path: Path) -> Path:
    """Mean return over tasks per adaptation iteration for every method, shaded +-1 std over tasks,
    with each method's return after adaptation as a marker and the oracle's as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=PLOT_SIZE_INCHES, dpi=PLOT_DPI)
    try:
        for index, (name, method) in enumerate(result["methods"].items()):
            color = f"C{index}"
            curves = _per_task_curves(method)
            steps = method["steps_per_task_per_iter"] * np.arange(1, curves.shape[1] + 1)
            with np.errstate(all="ignore"):
                counts = np.sum(~np.isnan(curves), axis=0)
                mean = np.where(counts > 0, np.nansum(curves, axis=0) / np.maximum(counts, 1), np.nan)
                std = np.array([np.nanstd(col) if n else np.nan for col, n in zip(curves.T, counts)])
            label = METHOD_LABELS.get(name, name)
            ax.plot(steps, mean, color=color, marker=".", label=label)
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
            ax.errorbar(
                steps[-1] if len(steps) else 0,
                method["return_after_adaptation"],
                yerr=method["return_after_adaptation_std"],
                color=color,
                marker="D",
                capsize=3,
            )
        if "oracle_return" in result:
            ax.axhline(result["oracle_return"], color="black", linestyle="--", linewidth=1, label="oracle")
        ax.set_xlabel("env steps on the task (adaptation)")
        ax.set_ylabel("episode return")
        env_name = result["env_id"].split("/")[-1]
        ax.set_title(f"{env_name}: {result['num_tasks']} unseen tasks ({result['split']}), mean ± std over tasks")
        ax.legend(fontsize="small", loc="best")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def write_tensorboard(result: dict[str, Any], log_dir: Path) -> Path:
    """``eval_unseen/<method>/ep_rew_mean`` per adaptation iteration (step: env steps on a task), and
    ``eval_unseen/<method>/return_after_adaptation`` / ``ratio`` plus ``eval_unseen/oracle_return``."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        final_step = 0
        for name, method in result["methods"].items():
            steps = method["steps_per_task_per_iter"]
            for iteration, value in enumerate(method["curve"], start=1):
                if value is not None and math.isfinite(value):
                    writer.add_scalar(f"eval_unseen/{name}/ep_rew_mean", value, iteration * steps)
            final = result["adapt_iters"] * steps
            final_step = max(final_step, final)
            writer.add_scalar(f"eval_unseen/{name}/return_after_adaptation", method["return_after_adaptation"], final)
            if "ratio" in method:
                writer.add_scalar(f"eval_unseen/{name}/ratio", method["ratio"], final)
        if "oracle_return" in result:
            writer.add_scalar("eval_unseen/oracle_return", result["oracle_return"], final_step)
        writer.flush()
    finally:
        writer.close()
    return log_dir
