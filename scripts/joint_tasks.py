"""Which tasks the sub-policies train on first, per seed, without training.

    python scripts/joint_tasks.py --env MovementBandits --seeds 0 1 2 ... --iterations 20 [--set KEY=VALUE ...]

A run's tasks come from its task generator and its slot schedule only (never from learning), so the tasks
of the joint slots, those whose data trains the sub-policies, can be counted before or without training.
For each seed this prints how many of the first ``--iterations`` iterations' joint slots had each task and
the largest task's share. On MovementBandits, seeds whose first joint tasks are 15 / 5 one goal fail more
often than balanced ones (docs: results, bandits). ``--set mlsh.task_sampling=balanced`` shows the draws
of the task deck.
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from mlsh.cli import training_config
from mlsh.config import Config
from mlsh.meta import MetaLearner


def joint_tasks(cfg: Config, iterations: int) -> list[Any]:
    """The task of every joint slot, iteration by iteration, over the first ``iterations`` (no rollout runs)."""
    learner = MetaLearner(cfg)
    tasks = []
    try:
        for _ in range(iterations):
            learner.begin_iteration()
            tasks += [learner.tasks[s] for s in range(learner.num_local_slots) if learner.in_joint_phase(s)]
            learner.iteration += 1
    finally:
        learner.close()
    return tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MovementBandits", help="an env config, e.g. MovementBandits, KeyDoor")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(20)))
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--set", nargs="*", default=[], help="overrides, e.g. mlsh.task_sampling=balanced")
    args = parser.parse_args()
    print(f"| seed | tasks of the joint slots, first {args.iterations} iterations | largest share |")
    print("|---|---|---|")
    for seed in args.seeds:
        cfg = training_config([f"env={args.env}", f"seed={seed}", *args.set])
        counts = Counter(str(task) for task in joint_tasks(cfg, args.iterations))
        shown = " / ".join(f"{task}: {n}" for task, n in sorted(counts.items()))
        print(f"| {seed} | {shown} | {max(counts.values()) / sum(counts.values()):.2f} |")


if __name__ == "__main__":
    main()
