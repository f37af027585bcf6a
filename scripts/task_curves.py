"""Per-task training curves: when does a task family stop being served? One PNG, one table.

    python scripts/task_curves.py RUN_DIR [RUN_DIR ...] [--out FILE.png] [--window 10] [--rows 6]

For task families of a few integer tasks (MovementBandits' paying goal, KeyDoor's door), training
logs each task's return in the joint slots (``meta/ep_rew_joint_task<t>``) and each sub-policy's
share of the decisions in slots of that task (``meta/sub_usage_task<t>_<k>``). This script plots
both against env steps, one column per run: top, every task's joint return (moving mean over
``--window`` logged points); bottom, sub-policy 0's share of the decisions per task (with K = 2 the
other's is the rest). A run where one task's return stays at the random policy's level while the
other's climbs is one where no sub-policy serves that task. The table gives, per run and stretch of
env steps, the mean joint return of each task; then, over the first ``--early`` env steps, how many
iterations each task had the joint slot and the range of sub-policy 0's share in its slots; and, for runs
with ``mlsh.reinit_share``, the env steps at which a sub-policy was re-initialised.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plot_training import moving_mean, open_scalars, series  # noqa: E402

TASK_RETURN = re.compile(r"meta/ep_rew_joint_task(\d+)$")
TASK_USAGE = re.compile(r"meta/sub_usage_task(\d+)_0$")


def reinit_steps(steps: np.ndarray, counts: np.ndarray) -> list[int]:
    """The env steps at which ``meta/reinits`` (the run's re-initialisations so far) went up."""
    previous = np.concatenate([[0.0], counts[:-1]])
    return [int(step) for step, count, before in zip(steps, counts, previous, strict=True) if count > before]


def read_task_scalars(run_dir: Path) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], dict[int, tuple], list[int]]:
    """``(returns, usage, reinits)``: task -> (env steps, values) of the joint return and of sub-policy 0's
    share; the env steps of the run's sub-policy re-initialisations (``mlsh.reinit_share``; none without).

    Raises:
        SystemExit: the run has no TensorBoard scalars or no per-task ones, with the reason.
    """
    events = open_scalars(run_dir)
    tags = events.Tags()["scalars"]
    reinits = reinit_steps(*series(events, "meta/reinits")) if "meta/reinits" in tags else []
    out: tuple[dict, dict] = ({}, {})
    for tag in tags:
        for pattern, table in zip((TASK_RETURN, TASK_USAGE), out, strict=True):
            match = pattern.match(tag)
            if match:
                table[int(match.group(1))] = series(events, tag)
    if not out[0]:
        raise SystemExit(
            f"{run_dir / 'tb'} has no meta/ep_rew_joint_task<t> scalars: the env's tasks are not a few integers, or "
            "the run was trained before they were logged."
        )
    return (*out, reinits)


def early_tasks(returns: dict[int, tuple], usage: dict[int, tuple], until: int) -> str:
    """Up to env step ``until``, per task: how many iterations logged a joint return for it (with one
    joint slot per iteration, the iterations whose joint slot had that task), and the range of
    sub-policy 0's share of the decisions in that task's slots."""
    parts = []
    for task in sorted(returns):
        x, _ = returns[task]
        ux, uy = usage.get(task, (np.zeros(0), np.zeros(0)))
        shares = uy[ux <= until]
        share = f"{shares.min():.2f}-{shares.max():.2f}" if len(shares) else "-"
        parts.append(f"task {task}: {int((x <= until).sum())} joint iterations, sub-policy 0's share {share}")
    return "; ".join(parts)


def stretch_row(name: str, returns: dict[int, tuple[np.ndarray, np.ndarray]], edges: np.ndarray) -> str:
    """A Markdown row: the run, then each task's mean joint return over the stretches between ``edges``."""
    cells = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        parts = []
        for task in sorted(returns):
            x, y = returns[task]
            inside = (x > low) & (x <= high)
            parts.append(f"{y[inside].mean():.1f}" if inside.any() else "-")
        cells.append(" / ".join(parts))
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=Path("task_curves.png"))
    parser.add_argument("--window", type=int, default=10, help="logged points per moving mean")
    parser.add_argument("--rows", type=int, default=6, help="stretches of env steps in the table")
    parser.add_argument("--names", nargs="*", default=None, help="a label per run (default: the run dirs)")
    parser.add_argument(
        "--early", type=int, default=400_000, help="env steps of the early window summarised per task (default 400k)"
    )
    args = parser.parse_args()
    names = args.names or [str(run) for run in args.run_dirs]
    if len(names) != len(args.run_dirs):
        raise SystemExit(f"--names gives {len(names)} labels for {len(args.run_dirs)} runs; give one per run.")
    data = [read_task_scalars(run) for run in args.run_dirs]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = len(data)
    fig, axes = plt.subplots(2, columns, figsize=(3.6 * columns, 5.6), dpi=100, squeeze=False)
    window = max(1, args.window)
    for col, (name, (returns, usage, _)) in enumerate(zip(names, data, strict=True)):
        for task, (x, y) in sorted(returns.items()):
            axes[0][col].plot(x / 1e6, moving_mean(y, window), color=f"C{task}", label=f"task {task}")
        for task, (x, y) in sorted(usage.items()):
            axes[1][col].plot(x / 1e6, moving_mean(y, window), color=f"C{task}", label=f"task {task}")
        axes[0][col].set_title(name, fontsize=9)
        axes[1][col].set_ylim(0, 1)
        axes[1][col].set_xlabel("env steps (millions)")
    axes[0][0].set_ylabel("return in joint slots")
    axes[1][0].set_ylabel("sub-policy 0's share of decisions")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    plt.close(fig)
    end = max(int(x[-1]) for returns, _, _ in data for x, _ in returns.values())
    edges = np.linspace(0, end, max(1, args.rows) + 1)
    tasks = sorted({task for returns, _, _ in data for task in returns})
    print(f"mean return in joint slots per stretch of env steps (tasks {' / '.join(map(str, tasks))})")
    print("| run | " + " | ".join(f"{lo / 1e6:.1f}M-{hi / 1e6:.1f}M" for lo, hi in zip(edges[:-1], edges[1:])) + " |")
    print("|---|" + "---|" * (len(edges) - 1))
    for name, (returns, _, _) in zip(names, data, strict=True):
        print(stretch_row(name, returns, edges))
    print(f"the first {args.early:,} env steps:")
    for name, (returns, usage, _) in zip(names, data, strict=True):
        print(f"  {name}: {early_tasks(returns, usage, args.early)}")
    for name, (_, _, reinits) in zip(names, data, strict=True):
        if reinits:
            print(f"  {name}: sub-policies re-initialised at " + ", ".join(f"{step / 1e6:.2f}M" for step in reinits))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
