"""Which master settings adapt best over a run's sub-policies: ``mlsh.inspect`` for several sets of them.

    python scripts/sweep_master.py RUN_DIR --set "" --set "lr=0.003 gamma=0.5 gae_lambda=0.5" \
        [--seeds 0 1 2] [--num-tasks 10] [--episodes 2] [--envs-per-task N] [--out FILE.json]

Each ``--set`` is one set of the fresh masters' PPO settings, ``key=value`` pairs separated by spaces
(the keys of the run's ``master`` section; ``""`` keeps the run's). For every set and seed, fresh
masters adapt on unseen tasks over the frozen sub-policies, exactly as
``python -m mlsh.inspect checkpoint=RUN_DIR seed=S master.<key>=<value> ...`` does. The table gives,
per set, the share of master decisions that chose the sub-policy heading for the goal (envs with a
goal: the Ant tasks; ``-`` elsewhere) and the return after adaptation, per seed and their mean.
``--out`` (default ``RUN_DIR/inspect/sweep_master.json``) keeps every report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml


def parse_settings(text: str) -> dict[str, Any]:
    """``"lr=0.003 gamma=0.5"`` -> ``{"lr": 0.003, "gamma": 0.5}`` (values read as YAML, as Hydra does).

    Raises:
        SystemExit: an item without ``=``, naming the fix.
    """
    settings = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f'--set items are key=value, got {item!r}; write e.g. --set "lr=0.003 gamma=0.5".')
        settings[key] = yaml.safe_load(value)
    return settings


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(rows: list[dict[str, Any]], seeds: list[int]) -> str:
    """A markdown table: one row per set of settings."""
    head = ["master settings", *[f"goal-directed, seed {s}" for s in seeds], "mean", "return after adaptation"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        shares = row["goal_directed"]
        cells = [row["label"], *[_cell(v, 2) for v in shares], _cell(_mean(shares), 2), _cell(_mean(row["returns"]), 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--set", dest="sets", action="append", default=None, help='e.g. "lr=0.003 gamma=0.5"')
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--num-tasks", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--adapt-iters", type=int, default=None)
    parser.add_argument("--envs-per-task", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    sets = args.sets if args.sets is not None else [""]
    parsed = [parse_settings(text) for text in sets]  # every --set is checked before any work

    from mlsh.errors import MLSHError
    from mlsh.evaluation import AdaptOptions
    from mlsh.inspect import inspect_run

    rows, reports = [], []
    for settings in parsed:
        label = " ".join(f"{k}={v}" for k, v in settings.items()) or "the run's"
        row: dict[str, Any] = {"label": label, "settings": settings, "goal_directed": [], "returns": []}
        for seed in args.seeds:
            start = time.time()
            try:
                report, _ = inspect_run(
                    args.run_dir,
                    num_tasks=args.num_tasks,
                    episodes=args.episodes,
                    seed=seed,
                    adapt=AdaptOptions(iters=args.adapt_iters, envs_per_task=args.envs_per_task, master=settings),
                )
            except MLSHError as error:
                raise SystemExit(f"error: {error}") from None
            choices = report["goal_directed_choices"]
            row["goal_directed"].append(None if choices is None else choices["overall"])
            row["returns"].append(report["return_after_adaptation"])
            reports.append(report)
            share = _cell(row["goal_directed"][-1], 2)
            print(f"{label}, seed {seed}: goal-directed {share}, {time.time() - start:.0f} s", file=sys.stderr)
        rows.append(row)
    print(format_table(rows, args.seeds))
    out = args.out or args.run_dir / "inspect" / "sweep_master.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "reports": reports}, indent=2, allow_nan=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
