"""Writing an unseen-task evaluation (``mlsh.evaluation.evaluate_run``'s result): CSV, PNG, TensorBoard.

Every method's curve is plotted against the env steps it has spent on each task, so that equal
budgets line up on the x-axis. Where the env flags ``goal_reached`` (AntObstacles, AntMaze), the CSV has
two more columns (episodes ended, goal reaches) and the PNG a success-rate panel.
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
GOAL_CSV_COLUMNS = ("episodes", "goal_reaches")  # only where the env flags goal_reached

PLOT_SIZE_INCHES = (10.0, 4.5)
GOAL_PLOT_SIZE_INCHES = (15.0, 4.5)  # with the success-rate panel
PLOT_DPI = 100  # 1000 x 450 pixels (1500 x 450 with the success-rate panel)


def _per_task_curves(method: dict[str, Any]) -> np.ndarray:
    """``[num_tasks, iters]`` floats, NaN where no episode ended in that iteration."""
    rows = [[np.nan if x is None else x for x in row] for row in method["curve_per_task"]]
    return np.asarray(rows, dtype=float).reshape(len(rows), -1)


def has_goal_counts(result: dict[str, Any]) -> bool:
    """Whether any method counted goal reaches (the env's step info has ``goal_reached``)."""
    return any("goal_reaches_per_task" in method for method in result["methods"].values())


def csv_columns(result: dict[str, Any]) -> tuple[str, ...]:
    """:data:`CSV_COLUMNS`, then :data:`GOAL_CSV_COLUMNS` where the result has goal counts."""
    return CSV_COLUMNS + (GOAL_CSV_COLUMNS if has_goal_counts(result) else ())


def csv_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Long-format rows: one per method, task and adaptation iteration (``phase=adapt``), one per method
    and task for the return measured after adaptation (``phase=after``), and the oracle's per task.

    With goal counts (:func:`csv_columns`), ``adapt`` rows also hold the episodes that ended in that
    iteration and how many reached the goal (None on other rows and for methods without counts)."""
    rows: list[dict[str, Any]] = []
    iters = result["adapt_iters"]
    tasks = [json.dumps(task) for task in result["tasks"]]
    columns = csv_columns(result)

    def add(*values: Any) -> None:
        rows.append(dict(zip(columns, values + (None,) * (len(columns) - len(values)))))

    for name, method in result["methods"].items():
        steps = method["steps_per_task_per_iter"]
        after = method["return_after_adaptation_per_task"]
        episodes, reaches = method.get("episodes_per_task"), method.get("goal_reaches_per_task")
        for index, curve in enumerate(method["curve_per_task"]):
            for iteration, value in enumerate(curve, start=1):
                counts = () if episodes is None else (episodes[index][iteration - 1], reaches[index][iteration - 1])
                add(name, index, tasks[index], "adapt", iteration, iteration * steps, value, *counts)
            add(name, index, tasks[index], "after", iters, iters * steps, after[index])
    for index, value in enumerate(result.get("oracle_return_per_task", [])):
        add("oracle", index, tasks[index], "after", iters, None, value)
    return rows


def write_csv(result: dict[str, Any], path: Path) -> Path:
    """Writes :func:`csv_rows` (empty cells where no episode ended)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=csv_columns(result))
        writer.writeheader()
        for row in csv_rows(result):
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path


def plot_curves(result: dict[str, Any], path: Path) -> Path:
    """Left: every method's mean return over tasks per adaptation iteration, shaded +-1 standard error
    of that mean, and the oracle's return (dashed). Right: the spread over tasks, one dot per task
    for the return after adaptation, with each method's mean as a bar. Where the result has goal counts,
    a middle panel shows each method's success-rate curve (goal reaches / episodes ended, mean over tasks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    goals = has_goal_counts(result)
    if goals:
        fig, (ax, success, spread) = plt.subplots(
            1, 3, figsize=GOAL_PLOT_SIZE_INCHES, dpi=PLOT_DPI, gridspec_kw={"width_ratios": [2, 2, 1]}
        )
    else:
        fig, (ax, spread) = plt.subplots(
            1, 2, figsize=PLOT_SIZE_INCHES, dpi=PLOT_DPI, gridspec_kw={"width_ratios": [2, 1]}
        )
    try:
        names = list(result["methods"])
        jitter = np.random.default_rng(0)
        for index, name in enumerate(names):
            method, color = result["methods"][name], f"C{index}"
            curves = _per_task_curves(method)
            steps = method["steps_per_task_per_iter"] * np.arange(1, curves.shape[1] + 1)
            counts = np.sum(~np.isnan(curves), axis=0)
            with np.errstate(all="ignore"):
                mean = np.where(counts > 0, np.nansum(curves, axis=0) / np.maximum(counts, 1), np.nan)
                sem = np.array([np.nanstd(col) / np.sqrt(n) if n else np.nan for col, n in zip(curves.T, counts)])
            ax.plot(steps, mean, color=color, marker=".", label=METHOD_LABELS.get(name, name))
            ax.fill_between(steps, mean - sem, mean + sem, color=color, alpha=0.2, linewidth=0)
            after = np.asarray(method["return_after_adaptation_per_task"], dtype=float)
            spread.scatter(index + jitter.uniform(-0.25, 0.25, len(after)), after, s=10, color=color, alpha=0.7)
            spread.hlines(after.mean(), index - 0.35, index + 0.35, color="black", linewidth=1.5)
            if goals and "success_curve" in method:
                rate = np.array([np.nan if x is None else x for x in method["success_curve"]], dtype=float)
                reaches = method["goal_reaches_total"]
                label = f"{METHOD_LABELS.get(name, name)}: {reaches} goal reaches"
                success.plot(steps, rate, color=color, marker=".", label=label)
        if "oracle_return" in result:
            for axis in (ax, spread):
                axis.axhline(result["oracle_return"], color="black", linestyle="--", linewidth=1, label="oracle")
        env_name = result["env_id"].split("/")[-1]
        ax.set_title(f"{env_name}: {result['num_tasks']} unseen tasks ({result['split']})", fontsize=10)
        ax.set_xlabel("env steps on the task (adaptation), mean ± s.e. over tasks")
        ax.set_ylabel("episode return")
        ax.legend(fontsize="x-small", loc="best")
        ax.grid(alpha=0.3)
        if goals:
            success.set_title("success rate during adaptation", fontsize=10)
            success.set_xlabel("env steps on the task (adaptation), mean over tasks")
            success.set_ylabel("goal reaches / episodes ended")
            success.set_ylim(-0.05, 1.05)
            success.legend(fontsize="x-small", loc="best")
            success.grid(alpha=0.3)
        spread.set_title("after adaptation, one dot per task", fontsize=10)
        spread.set_xticks(range(len(names)), [str(i + 1) for i in range(len(names))])
        spread.set_xlabel("method (legend order)")
        low = min(ax.get_ylim()[0], spread.get_ylim()[0])
        high = max(ax.get_ylim()[1], spread.get_ylim()[1])
        ax.set_ylim(low, high)
        spread.set_ylim(low, high)
        spread.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def write_tensorboard(result: dict[str, Any], log_dir: Path) -> Path:
    """``eval_unseen/<method>/ep_rew_mean`` per adaptation iteration (step: env steps on a task), and
    ``eval_unseen/<method>/return_after_adaptation`` / ``ratio`` plus ``eval_unseen/oracle_return``; with goal
    counts also ``eval_unseen/<method>/success_rate`` per iteration and ``goal_reaches_total``."""
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
            for iteration, value in enumerate(method.get("success_curve") or [], start=1):
                if value is not None:
                    writer.add_scalar(f"eval_unseen/{name}/success_rate", value, iteration * steps)
            if "goal_reaches_total" in method:
                writer.add_scalar(f"eval_unseen/{name}/goal_reaches_total", method["goal_reaches_total"], final)
        if "oracle_return" in result:
            writer.add_scalar("eval_unseen/oracle_return", result["oracle_return"], final_step)
        writer.flush()
    finally:
        writer.close()
    return log_dir
