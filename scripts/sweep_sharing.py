"""Does weight sharing between sub-policies help? Seeds x ``sub.sharing`` modes on one task, as one table.

    python scripts/sweep_sharing.py --env MovementBandits --seeds 0 1 2 3 4 --jobs 2 --out runs/sharing/MovementBandits
    python scripts/sweep_sharing.py --env FourRooms --budget ci --out runs/sharing/FourRooms

Every (mode, seed) run is trained with ``python -m mlsh.train`` (``sub.sharing=<mode>``, the env's
training configuration), evaluated with ``python -m mlsh.evaluate`` on ``--num-tasks`` unseen tasks
(a fresh master adapts for the run's W iterations over the frozen sub-policies) and inspected with
``python -m mlsh.inspect``. The table gives, per mode:

* the sub-policies' parameter count;
* the return after adaptation divided by the scripted oracle's (FourRooms: the success rate, its
  oracle being 1), mean ± std over seeds, and each seed's;
* the seeds that collapsed: ``mlsh.inspect`` flags two sub-policies ``alike`` or one ``unused``;
* MovementBandits only: the seeds that miss a goal skill, where no sub-policy acting alone reaches
  goal 0 (or goal 1) in at least half of its episodes (``scripts/bandit_skills.py``): a collapse onto
  one goal that ``mlsh.inspect``'s state-by-state agreement can miss;
* sample efficiency: the env steps until the training curve (``rollout/ep_rew_mean``, a running mean
  of 5 logged points) first reaches the target, 80% of ``separate``'s final level measured in the same
  sweep (``--target`` sets it instead); the median over the seeds that reach it, and how many do.

``--budget ci`` runs the learning tests' shorter variants where the full runs do not fit a 2-core
machine: FourRooms for 3M env steps, KeyDoor on a 200 x 200 plane for 4M (MovementBandits is the same
either way). ``--set`` adds training overrides to every run. Finished steps are kept: a rerun only
does what is missing (an interrupted training resumes, also one stopped before its first checkpoint).
Writes ``table.md`` and ``results.json`` into ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mlsh.config import SHARING_MODES  # noqa: E402

CI_BUDGET = {
    "MovementBandits": [],
    "FourRooms": ["train.total_timesteps=3000000"],
    "KeyDoor": [
        "+env.kwargs.size=200",
        "+env.kwargs.min_door_distance=80",
        "+env.kwargs.min_key_distance=80",
        "train.total_timesteps=4000000",
    ],
}
QUIET = ["plot=false", "tensorboard=false"]
SMOOTHING = 5


def train_overrides(args: argparse.Namespace, mode: str) -> list[str]:
    """The training overrides of every run of ``mode``."""
    budget = CI_BUDGET.get(args.env, []) if args.budget == "ci" else []
    return [f"env={args.env}", f"sub.sharing={mode}", "train.progress=false", *budget, *args.set]


def train_command(args: argparse.Namespace, mode: str, seed: int, run_dir: Path) -> list[str]:
    """The ``mlsh.train`` command of one (mode, seed): a resume where the run dir holds a run (its ``config.yaml``
    or a checkpoint: a training stopped before its first checkpoint starts again from iteration 0), else a
    fresh run there (``mlsh.train`` refuses a fresh run into a dir that holds one)."""
    py = [sys.executable, "-m", "mlsh.train"]
    if (run_dir / "config.yaml").is_file() or (run_dir / "checkpoint.pt").is_file():
        return [*py, f"resume={run_dir}"]
    return [*py, f"seed={seed}", f"hydra.run.dir={run_dir}", *train_overrides(args, mode)]


def run_logged(command: list[str], log: Path) -> None:
    """Runs ``command`` (one torch thread), its output appended to ``log``; raises if it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "a") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed; see {log}")


def run_one(args: argparse.Namespace, mode: str, seed: int) -> dict[str, Any]:
    """Trains, evaluates and inspects one (mode, seed), skipping what a previous sweep finished."""
    run_dir = Path(args.out) / mode / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "sweep.log"
    summary = run_dir / "summary.json"
    finished = summary.exists() and json.loads(summary.read_text()).get("finished", False)
    if not finished:
        run_logged(train_command(args, mode, seed, run_dir), log)
        if not json.loads(summary.read_text()).get("finished", False):  # stopped by a signal: never evaluate it
            raise RuntimeError(f"the training in {run_dir} stopped before its budget; rerun the sweep to continue it")
    result_file, inspect_file = run_dir / "evaluation.json", run_dir / "inspect.json"
    if not result_file.exists():
        evaluation = [f"num_tasks={args.num_tasks}", "seed=0", f"output={result_file}", *QUIET]
        run_logged([sys.executable, "-m", "mlsh.evaluate", f"checkpoint={run_dir}", *evaluation], log)
    if not inspect_file.exists():
        inspection = [f"num_tasks={args.inspect_tasks}", "seed=0", f"output={inspect_file}"]
        run_logged([sys.executable, "-m", "mlsh.inspect", f"checkpoint={run_dir}", *inspection], log)
    skills = None
    if args.env == "MovementBandits":
        skills_file = run_dir / "bandit_skills.json"
        if not skills_file.exists():
            run_logged([sys.executable, str(Path(__file__).with_name("bandit_skills.py")), "--run", str(run_dir)], log)
        skills = json.loads(skills_file.read_text())["shares"]
    result = json.loads(result_file.read_text())
    report = json.loads(inspect_file.read_text())
    ratio = result.get("ratio")  # null without an oracle: the return itself (FourRooms: a success rate)
    return {
        "mode": mode,
        "seed": seed,
        "ratio": result["return_after_adaptation"] if ratio is None else ratio,
        "oracle": ratio is not None,
        "alike": report["alike"],
        "unused": report["unused"],
        "uncovered": report.get("uncovered"),  # None: inspected before task coverage existed
        "missing_skills": None if skills is None else missing_goal_skills(skills),
        "curve": training_curve(run_dir),
        "params": parameter_count(run_dir),
    }


def missing_goal_skills(shares: list[dict[str, float]]) -> int:
    """How many of the goals no sub-policy reaches in at least half of its episodes (bandit_skills' shares)."""
    return sum(all(share[goal] < 0.5 for share in shares) for goal in shares[0])


def scalar_series(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """``(env step, value)`` pairs of one scalar from a run's TensorBoard events (a resumed run's files merged)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points: dict[int, float] = {}
    for events in sorted((run_dir / "tb").rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        if tag in accumulator.Tags()["scalars"]:
            points.update((e.step, e.value) for e in accumulator.Scalars(tag))
    return sorted(points.items())


def training_curve(run_dir: Path) -> list[tuple[int, float]]:
    """``(env step, rollout/ep_rew_mean)`` pairs from a run's TensorBoard events."""
    return scalar_series(run_dir, "rollout/ep_rew_mean")


def parameter_count(run_dir: Path) -> int:
    """Parameters of the run's sub-policies (from its checkpoint)."""
    from mlsh.checkpoint import load_checkpoint

    state = load_checkpoint(run_dir)["learner"]["policy"]
    return sum(v.numel() for k, v in state.items() if k.startswith("subpolicies."))


def smoothed(curve: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """A running mean of ``SMOOTHING`` points (fewer at the start)."""
    values = [v for _, v in curve]
    return [(step, statistics.fmean(values[max(0, i - SMOOTHING + 1) : i + 1])) for i, (step, _) in enumerate(curve)]


def steps_to_target(curve: list[tuple[int, float]], target: float) -> int | None:
    """The first env step at which the smoothed curve reaches ``target``; None if it never does."""
    return next((step for step, value in smoothed(curve) if value >= target), None)


def final_level(curve: list[tuple[int, float]]) -> float:
    """The smoothed curve's last value."""
    return smoothed(curve)[-1][1] if curve else math.nan


def format_table(runs: list[dict[str, Any]], modes: list[str], target: float, title: str) -> str:
    """One Markdown table, a row per mode (with a goal-skill column when the runs have one: MovementBandits).

    *collapsed seeds* counts the seeds ``mlsh.inspect`` flags ``alike`` or ``unused``, then how many of them had an
    alike pair and how many an unused sub-policy; *uncovered* the seeds whose inspection flags tasks that no
    sub-policy serves on its own (``-`` where an inspection predates that check)."""
    skills = any(r.get("missing_skills") is not None for r in runs)
    score = "return / oracle" if any(r.get("oracle", True) for r in runs) else "return after adaptation"
    lines = [
        f"| sub.sharing ({title}) | params | {score} | per seed | collapsed seeds (alike; unused) | uncovered seeds | "
        + ("seeds missing a goal skill | " if skills else "")
        + f"env steps to {target:.3g} (median; reached) |",
        "|---|---|---|---|---|---|" + ("---|" if skills else "") + "---|",
    ]
    for mode in modes:
        mine = sorted((r for r in runs if r["mode"] == mode), key=lambda r: r["seed"])
        if not mine:
            continue
        ratios = [r["ratio"] for r in mine]
        spread = f" ± {statistics.stdev(ratios):.2f}" if len(ratios) > 1 else ""
        reached = [s for s in (steps_to_target(r["curve"], target) for r in mine) if s is not None]
        steps = f"{statistics.median(reached):,.0f}" if reached else "-"
        missing = f"{sum(bool(r.get('missing_skills')) for r in mine)} of {len(mine)} | " if skills else ""
        alike, unused = (sum(bool(r.get(flag)) for r in mine) for flag in ("alike", "unused"))
        collapsed = sum(bool(r.get("alike") or r.get("unused")) for r in mine)
        known = [r["uncovered"] for r in mine if r.get("uncovered") is not None]
        uncovered = f"{sum(known)} of {len(known)}" if known else "-"
        lines.append(
            f"| {mode} | {mine[0]['params']:,} | {statistics.fmean(ratios):.2f}{spread} | "
            f"{' '.join(f'{x:.2f}' for x in ratios)} | {collapsed} of {len(mine)} "
            f"({alike}; {unused}) | {uncovered} | {missing}{steps} ({len(reached)} of {len(mine)}) |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="MovementBandits", help="an env config: MovementBandits, FourRooms, KeyDoor")
    parser.add_argument("--modes", nargs="+", default=list(SHARING_MODES), choices=SHARING_MODES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one core each")
    parser.add_argument("--budget", choices=("full", "ci"), default="full", help="ci: the learning tests' variants")
    parser.add_argument("--num-tasks", type=int, default=20, help="unseen tasks of the evaluation")
    parser.add_argument("--inspect-tasks", type=int, default=10, help="unseen tasks of the inspection")
    parser.add_argument("--target", type=float, default=None, help="default: 80%% of separate's final level")
    parser.add_argument("--set", nargs="*", default=[], help="training overrides for every run")
    parser.add_argument("--out", default="runs/sharing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Seed by seed, every mode of a seed before the next seed: a sweep stopped early leaves a table with the
    # same seeds in every row (rerun it with the finished seeds to print it).
    jobs = [(mode, seed) for seed in args.seeds for mode in args.modes]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(lambda job: run_one(args, *job), jobs))
    target = args.target
    if target is None:
        separate = [final_level(r["curve"]) for r in runs if r["mode"] == "separate"]
        if not separate:
            sys.exit("error: without separate in --modes the sweep needs --target (a rollout/ep_rew_mean level).")
        target = 0.8 * statistics.fmean(separate)
    title = f"{args.env}, {len(args.seeds)} seeds" + (", CI budget" if args.budget == "ci" else "")
    table = format_table(runs, args.modes, target, title)
    out = Path(args.out)
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps({"target": target, "runs": runs}, indent=1))
    print(table)


if __name__ == "__main__":
    main()
