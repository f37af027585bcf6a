"""Transfer to a task with a goal (the obstacle course): fresh masters over frozen sub-policies, and PPO from scratch.

    python scripts/transfer_table.py pretrained:AntMaze --env AntObstacles --eval-seeds 0 1 2 --out runs/transfer
    python scripts/transfer_table.py runs/antmaze/s0 runs/antmove/s0 --env AntObstacles --adapt-iters 50

``--master KEY=VALUE ...`` gives the fresh masters those PPO settings, ``--set`` passes further overrides to
``mlsh.evaluate`` (``+env.max_episode_steps=...``, ``+env.kwargs.<key>=...``).

For every run and evaluation seed the script runs ``python -m mlsh.evaluate checkpoint=<run> env=<env>
oracle=false baselines=[scratch]``: on ``--num-tasks`` tasks of ``--env``, a fresh master adapts for
``--adapt-iters`` iterations over the run's frozen sub-policies, and PPO from scratch trains on each task
for as many env steps. Per method it reports, over the evaluation seeds:

* the success rate per adaptation iteration (the share of the episodes ended in that iteration that
  reached the goal), as a mean curve with the range over the seeds (``transfer.png``);
* the success rate in the last iteration, per seed and on average;
* the goal reaches over the whole adaptation run (every episode of every iteration), per seed, with the
  episodes run and the env steps per task beside them: the paper's obstacle-course figure (193 for
  MLSH, 0 for PPO from scratch) most plausibly counts these.

Outputs are cached per run and seed under ``--out``: a rerun does only what is missing. Writes
``table.md``, ``results.json`` and ``transfer.png`` into ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep_sharing import QUIET, run_logged  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mlsh.errors import MLSHError  # noqa: E402
from mlsh.evaluate import check_command  # noqa: E402

METHODS = ("mlsh", "scratch")
LABELS = {"mlsh": "MLSH: fresh master, frozen sub-policies", "scratch": "PPO from scratch"}


def run_name(run: str) -> str:
    """A run's row and cache folder: ``pretrained:<Name>`` -> ``pretrained-<Name>``, a run dir -> its name."""
    return run.replace(":", "-") if run.startswith("pretrained:") else Path(run).name


def evaluate_command(run: str, seed: int, args: argparse.Namespace, output: Path) -> list[str]:
    """The ``mlsh.evaluate`` arguments of one run and evaluation seed."""
    command = [f"checkpoint={run}", f"env={args.env}", f"num_tasks={args.num_tasks}", f"seed={seed}"]
    command += ["oracle=false", "baselines=[scratch]", f"output={output}", *QUIET]
    command += [f"adapt_iters={args.adapt_iters}"] if args.adapt_iters is not None else []
    return command + [f"master.{setting}" for setting in args.master] + args.set


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method, over the evaluation seeds' ``mlsh.evaluate`` results: the success curves (one per seed, None
    where no episode ended in an iteration), the last iteration's success, and the goal reaches and episodes over
    the whole adaptation run."""
    summary: dict[str, Any] = {}
    for method in METHODS:
        entries = [result["methods"][method] for result in results]
        curves = [entry["success_curve"] for entry in entries]
        last = [curve[-1] for curve in curves]
        summary[method] = {
            "success_curves": curves,
            "last_iteration_success": last,
            "last_iteration_success_mean": _mean(last),
            "goal_reaches_total": [entry["goal_reaches_total"] for entry in entries],
            "episodes_total": [entry["episodes_total"] for entry in entries],
            "adaptation_env_steps": entries[0]["adaptation_env_steps"],
        }
    return summary


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """One Markdown row per run and method."""
    lines = [
        "| sub-policies | method | success, last iteration (per eval seed) | mean | goal reaches over the whole "
        "adaptation run (per eval seed) | episodes (per eval seed) | env steps per task |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for method in METHODS:
            m = row["methods"][method]
            lines.append(
                f"| {row['name']} | {LABELS[method]} | {' '.join(_share(s) for s in m['last_iteration_success'])} | "
                f"{_share(m['last_iteration_success_mean'])} | {' '.join(map(str, m['goal_reaches_total']))} | "
                f"{' '.join(map(str, m['episodes_total']))} | {m['adaptation_env_steps']:,} |"
            )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, env: str) -> Path:
    """Success rate per adaptation iteration: the mean over the evaluation seeds, and their range shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for row in rows:
        for method in METHODS:
            m = row["methods"][method]
            curves = np.array([[np.nan if s is None else s for s in curve] for curve in m["success_curves"]])
            steps = m["adaptation_env_steps"] / curves.shape[1] * np.arange(1, curves.shape[1] + 1)
            ended = ~np.isnan(curves).all(axis=0)  # iterations in which some episode ended (a long episode spans
            curves, steps = curves[:, ended], steps[ended]  # several iterations)
            label = f"{row['name']}: {LABELS[method]}" if len(rows) > 1 else LABELS[method]
            (line,) = ax.plot(steps, np.nanmean(curves, axis=0), label=label)
            low, high = np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
            ax.fill_between(steps, low, high, alpha=0.2, color=line.get_color())
    ax.set_xlabel("adaptation env steps per task")
    ax.set_ylabel("episodes that reach the goal")
    ax.set_ylim(-0.02, 1.02)
    seeds = len(rows[0]["methods"]["mlsh"]["success_curves"])
    ax.set_title(f"{env}: success per adaptation iteration\n(mean; shaded: the range over {seeds} evaluation seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def measure_run(run: str, args: argparse.Namespace) -> dict[str, Any]:
    """Evaluates one run on every evaluation seed, reusing cached outputs."""
    out = Path(args.out) / run_name(run)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in args.eval_seeds:
        output = out / f"evaluate_seed{seed}.json"
        if not output.exists():
            run_logged([sys.executable, "-m", "mlsh.evaluate", *evaluate_command(run, seed, args, output)], out / "log")
        results.append(json.loads(output.read_text()))
    return {"run": run, "name": run_name(run), "env_id": results[0]["env_id"], "methods": summarise(results)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run dirs or pretrained:<Name>, whose sub-policies transfer")
    parser.add_argument("--env", default="AntObstacles", help="the task to transfer to (configs/env/<Name>.yaml)")
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-tasks", type=int, default=1, help="tasks per evaluation seed")
    parser.add_argument("--adapt-iters", type=int, default=None, help="adaptation iterations (default: the run's W)")
    parser.add_argument("--master", nargs="+", default=[], metavar="KEY=VALUE", help="the fresh masters' settings")
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="OVERRIDE", help="more mlsh.evaluate overrides, e.g. +env.kwargs.x=1"
    )
    parser.add_argument("--out", default="runs/transfer")
    args = parser.parse_args(argv)
    args.master = [setting.removeprefix("master.") for setting in args.master]
    for run in args.runs:  # every check mlsh.evaluate makes, before any work
        probe = Path(args.out) / run_name(run) / "check.json"  # never written
        try:
            check_command(evaluate_command(run, args.eval_seeds[0], args, probe))
        except MLSHError as error:
            parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows = [measure_run(run, args) for run in args.runs]
    out = Path(args.out)
    table = format_table(rows)
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    png = plot(rows, out / "transfer.png", args.env)
    print(table)
    print(f"wrote {out / 'table.md'}, {out / 'results.json'} and {png}")


if __name__ == "__main__":
    main()
