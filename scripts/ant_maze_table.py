"""AntMaze's targets, per training seed: sub-policies used, their headings and speed, held-out mazes solved.

    python scripts/ant_maze_table.py runs/antmaze/s0 runs/antmaze/s1 runs/antmaze/s2 --out runs/antmaze/table
    python scripts/ant_maze_table.py runs/antmaze/s0 --eval-seeds 0 1 2 --scratch --out runs/antmaze/table

Each run dir is a finished (or stopped) ``python -m mlsh.train env=AntMaze`` run, or a run of another Ant task
(AntMovement), whose sub-policies are then measured on the mazes. For every evaluation
seed the script runs ``python -m mlsh.inspect`` on ``--num-tasks`` held-out mazes with ``--episodes``
episodes each: fresh masters adapt over the frozen sub-policies, then it measures each sub-policy's
usage under them, its heading and speed alone on an open floor (``open_floor``: the maze's walls cut a
fast walk short), and the share of the adapted masters' episodes that reach the goal. With
``--scratch`` it also runs ``python -m mlsh.evaluate ... baselines=[scratch]`` on the same mazes and
seed (``--scratch 0``: on evaluation seed 0 only): the success rate in the last adaptation iteration of
MLSH and of PPO from scratch, same steps. ``--deterministic master`` measures the adapted masters' episodes
with their most likely choices (``mlsh.inspect deterministic=master``; such rows are cached apart too).
``--test-layouts training_kind`` draws the held-out mazes from the 33 of the training layouts' kind
(``+env.kwargs.test_layouts=training_kind``; ``envs.ant_maze.of_training_kind``) instead of all 153.
``--master lr=0.003 gamma=0.5 gae_lambda=0.5`` gives the fresh
masters those PPO settings instead of the run's (``master.<key>=<value>`` on both commands); such rows
are cached apart from those with the run's own settings. The table names the fresh masters' settings beside
the run wherever they are not its ``master.*`` (``--master``, or the run's own ``adapt_master``).
``--adapt-macro-len 100`` has the fresh masters choose a sub-policy every 100 steps instead of every macro
step of the run (``adapt_macro_len=100`` on both commands, rows cached apart); the sub-policies' speeds stay
per macro step of the run's, which the speed target counts in.

One row per run, the targets checked beside it:

* *used*: the sub-policies chosen in at least ``--min-usage`` (10%) of the adapted masters' steps,
  usage averaged over the evaluation seeds; the target asks for 3 or more;
* *distinct*: three of the used sub-policies head pairwise at least ``--min-angle`` (30) degrees apart on
  the open floor (a fourth that walks like one of them breaks nothing); of such trios the table names the
  one whose slowest member is fastest, and the closest pair of headings within it;
* *fast*: each sub-policy of that trio covers at least ``--min-speed`` (15) units per 200-step macro
  step along its own heading, alone on the open floor (mean over the evaluation seeds' macro steps);
* *goal reached*: the adapted masters' episodes that reach the goal, per evaluation seed and overall
  (target 50%); *closest approach*: per evaluation seed, the median over those episodes of the closest
  the ant came to the goal (the goal region's radius is 2); a second table splits the goal reaches between
  the held-out mazes of the training layouts' kind and the others;
* *training*: env steps and the training's own time (the sum of its iterations' durations, from the
  ``time/fps`` scalar; pauses between resumes are not counted).

Outputs are cached per run and seed under ``--out``: a rerun does only what is missing. Writes
``table.md`` and ``results.json`` into ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep_sharing import run_logged, scalar_series  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mlsh.errors import MLSHError  # noqa: E402
from mlsh.inspect import check_command, walk_of_mean  # noqa: E402

QUIET = ["plot=false", "tensorboard=false"]
MAZE_ID = "mlsh/AntMaze-v0"


def angle_between(a: float, b: float) -> float:
    """The smaller angle between two headings, in degrees (0-180)."""
    return abs((a - b + 180.0) % 360.0 - 180.0)


def checkpoint_steps(run_dir: Path) -> int:
    """The env steps the run's checkpoint holds (its iteration x the env steps per iteration)."""
    from mlsh.checkpoint import load_checkpoint
    from mlsh.config import config_from_dict

    payload = load_checkpoint(run_dir)
    return int(payload["learner"]["iteration"]) * config_from_dict(payload["config"]).steps_per_iteration


def training_time_and_steps(run_dir: Path) -> tuple[float, int]:
    """The training's own seconds (sum over iterations of env steps / ``time/fps``) and its env steps, both up to
    the checkpoint: a copy of a checkpoint taken mid-run, with the run's ``tb`` copied later, counts to its own
    point."""
    fps = scalar_series(run_dir, "time/fps")
    until = checkpoint_steps(run_dir)
    seconds, previous = 0.0, 0
    for step, value in fps:
        if step > until:
            break
        if value > 0:
            seconds += (step - previous) / value
        previous = step
    return seconds, previous


def merge_inspections(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per sub-policy, over the evaluation seeds' ``mlsh.inspect`` reports: mean usage, and the open-floor walk
    pooled by macro step (each report's mean displacement weighted by its macro steps), its heading and speed
    derived as ``mlsh.inspect`` derives them (:func:`mlsh.inspect.walk_of_mean`)."""
    merged = []
    for k in range(len(reports[0]["subpolicies"])):
        subs = [report["subpolicies"][k] for report in reports]
        walks = [sub["open_floor"] for sub in subs]
        steps = sum(walk["macro_steps"] for walk in walks)
        mean = [sum(w["mean_displacement"][i] * w["macro_steps"] for w in walks) / steps for i in range(2)]
        usage = statistics.fmean(sub["usage"] for sub in subs)
        merged.append({"index": k, "usage": usage, **walk_of_mean(mean, steps)})
    return merged


def targets(subs: list[dict[str, Any]], reached: list[float], args: argparse.Namespace) -> dict[str, Any]:
    """The issue's targets on one run's merged sub-policies and goal-reached shares.

    The issue asks for at least 3 used sub-policies moving in clearly different directions, each of them fast:
    a fourth used one that walks like one of the three breaks neither. So the check is on the best trio among
    the used ones: of the trios whose headings are pairwise at least ``min_angle`` apart, the one whose slowest
    member is fastest (``trio``; None when no trio is that spread out).
    """
    used = [s for s in subs if s["usage"] >= args.min_usage]
    trios = [
        trio
        for trio in itertools.combinations(used, 3)
        if _closest(trio) >= args.min_angle  # pairwise apart
    ]
    trio = max(trios, key=lambda t: (min(s["speed_along_heading"] for s in t), _closest(t)), default=None)
    reached_share = statistics.fmean(reached) if reached else math.nan
    return {
        "used": [s["index"] for s in used],
        "closest_headings_degrees": _closest(used),
        "trio": None if trio is None else [s["index"] for s in trio],
        "trio_closest_degrees": math.nan if trio is None else _closest(trio),
        "enough_used": len(used) >= 3,
        "distinct": trio is not None,
        "fast": trio is not None and all(s["speed_along_heading"] >= args.min_speed for s in trio),
        "goal_reached": reached_share,
        "solves_mazes": reached_share >= 0.5,  # False for nan
    }


def reached_by_kind(reports: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Episodes that reached the goal and episodes run, ``[reached, run]``, over every report: on the held-out
    mazes of the training layouts' kind (``envs.ant_maze.of_training_kind``) and on the others
    (``training_kind``, ``other``), and by the face of its last cell the goal lies on (``face_<face>``:
    ``envs.ant_maze.goal_face``)."""
    from envs.ant_maze import LAYOUTS, goal_face, of_training_kind

    counts = {key: [0, 0] for key in ("training_kind", "other", "face_left", "face_right", "face_top_bottom")}
    for report in reports:
        for task, share in zip(report["tasks"], report["goal_reached"]["per_task"]):
            if share is None:
                continue
            layout = LAYOUTS[task]
            for key in ("training_kind" if of_training_kind(layout) else "other", f"face_{goal_face(layout)}"):
                counts[key][0] += round(share * report["episodes"])
                counts[key][1] += report["episodes"]
    return counts


def _closest(subs: Sequence[dict[str, Any]]) -> float:
    """The smallest angle between the headings of two of ``subs`` (nan for fewer than two)."""
    pairs = itertools.combinations(subs, 2)
    return min((angle_between(a["heading_degrees"], b["heading_degrees"]) for a, b in pairs), default=math.nan)


def measure_run(run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Inspects (and with ``--scratch`` evaluates) one run on every evaluation seed, reusing cached outputs."""
    out = Path(args.out) / row_folder(run_dir, args)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "table.log"
    reports, scratch, scratch_reaches = [], [], []
    settings = run_overrides(run_dir, args)
    for seed in args.eval_seeds:
        common = [f"checkpoint={run_dir}", f"num_tasks={args.num_tasks}", f"seed={seed}", *settings]
        inspect_file = out / f"inspect_seed{seed}.json"
        if not inspect_file.exists():
            command = ["-m", "mlsh.inspect", *common, f"episodes={args.episodes}", f"output={inspect_file}"]
            command += [f"deterministic={args.deterministic}"]
            run_logged([sys.executable, *command], log)
        reports.append(json.loads(inspect_file.read_text()))
        if args.scratch is not None and (not args.scratch or seed in args.scratch):
            evaluate_file = out / f"evaluate_seed{seed}.json"
            if not evaluate_file.exists():
                command = ["-m", "mlsh.evaluate", *common, "oracle=false", "baselines=[scratch]", *QUIET]
                run_logged([sys.executable, *command, f"output={evaluate_file}"], log)
            methods = json.loads(evaluate_file.read_text())["methods"]
            scratch.append({name: methods[name]["success_curve"][-1] for name in ("mlsh", "scratch")})
            scratch_reaches.append(
                {
                    name: [methods[name]["goal_reaches_total"], methods[name]["episodes_total"]]
                    for name in ("mlsh", "scratch")
                }
            )
    subs = merge_inspections(reports)
    reached = [report["goal_reached"]["overall"] for report in reports]
    closest = [report["goal_reached"].get("closest_approach", {}).get("median") for report in reports]
    seconds, steps = training_time_and_steps(run_dir)
    return {
        "run_dir": str(run_dir),
        # the fresh masters' settings where they are not the run's master.*: --master, or the run's adapt_master
        "master_settings": [f"{key}={value}" for key, value in (reports[0].get("master_settings") or {}).items()],
        "deterministic": args.deterministic,
        "test_layouts": args.test_layouts,
        "adapt_macro_len": args.adapt_macro_len,
        "env_steps": steps,
        "training_seconds": seconds,
        "subpolicies": subs,
        "goal_reached_per_seed": reached,
        "closest_approach_per_seed": closest,
        "goal_reached_by_kind": reached_by_kind(reports),
        "last_iteration_success": scratch,
        # [goal reaches, episodes] over the whole adaptation run, per evaluation seed with --scratch
        "adaptation_goal_reaches": scratch_reaches,
        "targets": targets(subs, reached, args),
    }


def row_name(
    run_dir: Path,
    master: list[str],
    deterministic: str = "false",
    test_layouts: str = "all",
    adapt_macro_len: int | None = None,
) -> str:
    """A run's row and cache folder: its dir name, with the masters' settings appended when they are not the run's
    (``run__master_lr-0.003_gamma-0.5``: an override's value cannot hold ``=``), ``__deterministic-<value>``
    when the masters' episodes take most likely choices, ``__test-<family>`` for another held-out family and
    ``__macro-<N>`` when the masters choose every N steps instead of the run's macro step."""
    name = "__master_".join([run_dir.name, "_".join(master).replace("=", "-")] if master else [run_dir.name])
    name = name if deterministic == "false" else f"{name}__deterministic-{deterministic}"
    name = name if test_layouts == "all" else f"{name}__test-{test_layouts}"
    return name if adapt_macro_len is None else f"{name}__macro-{adapt_macro_len}"


def row_folder(run_dir: Path, args: argparse.Namespace) -> str:
    """:func:`row_name` of a run under the command's options."""
    return row_name(run_dir, args.master, args.deterministic, args.test_layouts, args.adapt_macro_len)


def run_overrides(run_dir: Path, args: argparse.Namespace) -> list[str]:
    """The settings both commands (``mlsh.inspect``, ``mlsh.evaluate``) get for a run under the command's options:
    the masters' PPO settings, their macro step and the held-out mazes."""
    macro = [] if args.adapt_macro_len is None else [f"adapt_macro_len={args.adapt_macro_len}"]
    return [f"master.{setting}" for setting in args.master] + macro + held_out_env(run_dir, args.test_layouts)


def held_out_env(run_dir: Path, test_layouts: str) -> list[str]:
    """The overrides that put the inspections on the held-out mazes of ``test_layouts``: none for an AntMaze run and
    ``all``; else the AntMaze env, with an AntMaze run's own env arguments and time limit, and ``test_layouts``
    (a run of another Ant task, AntMovement say, is measured on the mazes with its sub-policies)."""
    env = _run_env(run_dir)
    maze = env["id"] == MAZE_ID
    if maze and test_layouts == "all":
        return []
    kwargs = (env.get("kwargs") or {}) if maze else {}
    own = [f"+env.kwargs.{key}={json.dumps(value)}" for key, value in kwargs.items() if key != "test_layouts"]
    own += [f"+env.max_episode_steps={env['max_episode_steps']}"] if env.get("max_episode_steps") else []
    return ["env=AntMaze", *own] + ([f"+env.kwargs.test_layouts={test_layouts}"] if test_layouts != "all" else [])


@functools.cache
def _run_env(run_dir: Path) -> dict[str, Any]:
    """A run's env section, read from its checkpoint once per run (the checks and the measurement both ask)."""
    from mlsh.checkpoint import load_checkpoint

    return load_checkpoint(run_dir)["config"]["env"]


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def format_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """One Markdown row per run; the sub-policies as ``k: heading / speed (usage)``."""
    header = (
        f"| run | env steps | training time | sub-policies: heading (deg) / speed along it (units per macro step) "
        f"/ usage | >= 3 used (>= {args.min_usage:.0%}) | 3 used ones >= {args.min_angle:g} deg apart | "
        f"those 3 >= {args.min_speed:g} | goal reached (per eval seed) | >= 50% | closest approach (units) |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        t = row["targets"]
        subs = "; ".join(
            f"{s['index']}: {s['heading_degrees']:+.0f} / {s['speed_along_heading']:.1f} / {s['usage']:.2f}"
            for s in row["subpolicies"]
        )
        per_seed = " ".join(f"{r:.2f}" for r in row["goal_reached_per_seed"])
        trio = (
            "-"
            if t.get("trio") is None
            else f"{', '.join(map(str, t['trio']))}; closest {t['trio_closest_degrees']:.0f}"
        )
        lines.append(
            f"| {_label(row)} | {row['env_steps']:,} | {row['training_seconds'] / 60:.0f} min | {subs} | "
            f"{_yes(t['enough_used'])} ({len(t['used'])}) | {_yes(t['distinct'])} ({trio}) | "
            f"{_yes(t['fast'])} | {t['goal_reached']:.2f} ({per_seed}) | {_yes(t['solves_mazes'])} | "
            f"{' '.join('-' if c is None else f'{c:.1f}' for c in row.get('closest_approach_per_seed', []))} |"
        )
    lines += [
        "",
        "| run | goal reached: held-out mazes of the training kind | of another kind | goal on a left face "
        "(needs a walk left) | on a right face | on a top or bottom face |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        kinds = row["goal_reached_by_kind"]
        columns = ("training_kind", "other", "face_left", "face_right", "face_top_bottom")
        lines.append(f"| {_label(row)} | {' | '.join(_count(*kinds[key]) for key in columns)} |")
    if any(row["last_iteration_success"] for row in rows):
        lines += [
            "",
            "| run | success in the last adaptation iteration: MLSH | PPO from scratch, same steps | goal reaches over "
            "the whole adaptation run: MLSH | PPO from scratch |",
            "|---|---|---|---|---|",
        ]
        for row in rows:
            pairs, reaches = row["last_iteration_success"], row.get("adaptation_goal_reaches", [])
            if pairs:
                mlsh, scratch = (" ".join(_share(p[name]) for p in pairs) for name in ("mlsh", "scratch"))
                totals = (" ".join(_count(*r[name]) for r in reaches) or "-" for name in ("mlsh", "scratch"))
                lines.append(f"| {_label(row)} | {mlsh} | {scratch} | {' | '.join(totals)} |")
    return "\n".join(lines)


def _label(row: dict[str, Any]) -> str:
    """The run's dir name, and the masters' settings where they replace the run's."""
    name = Path(row["run_dir"]).name
    notes = [f"masters: {' '.join(row['master_settings'])}"] if row.get("master_settings") else []
    notes += [f"deterministic={row['deterministic']}"] if row.get("deterministic", "false") != "false" else []
    notes += [f"held-out: {row['test_layouts']}"] if row.get("test_layouts", "all") != "all" else []
    notes += [f"masters choose every {row['adapt_macro_len']} steps"] if row.get("adapt_macro_len") else []
    return f"{name} ({'; '.join(notes)})" if notes else name


def _count(reached: int, episodes: int) -> str:
    return f"{reached} of {episodes} ({reached / episodes:.2f})" if episodes else "-"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="AntMaze run dirs, one per training seed")
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-tasks", type=int, default=8, help="held-out mazes per evaluation seed")
    parser.add_argument("--episodes", type=int, default=2, help="episodes per maze and per sub-policy alone")
    parser.add_argument(
        "--scratch", type=int, nargs="*", help="also PPO from scratch (same mazes): every eval seed, or those given"
    )
    parser.add_argument("--min-usage", type=float, default=0.10)
    parser.add_argument("--min-angle", type=float, default=30.0)
    parser.add_argument("--min-speed", type=float, default=15.0)
    parser.add_argument(
        "--master",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="the fresh masters' PPO settings instead of the run's, e.g. lr=0.003 gamma=0.5 gae_lambda=0.5",
    )
    parser.add_argument(
        "--deterministic",
        choices=["false", "master", "true"],
        default="false",
        help="mlsh.inspect's deterministic=: master takes the adapted masters' most likely choices in their episodes",
    )
    parser.add_argument(
        "--test-layouts",
        choices=["all", "training_kind"],
        default="all",
        help="the held-out mazes: all (every layout after the 9 training ones) or training_kind (the 33 of their "
        "kind: at most 3 moves, none left, each toward the goal)",
    )
    parser.add_argument(
        "--adapt-macro-len",
        type=int,
        help="mlsh.inspect's adapt_macro_len=: the fresh masters choose a sub-policy every N steps instead of every "
        "macro step of the run (the sub-policies' speeds stay per macro step of the run's)",
    )
    parser.add_argument("--out", default="runs/antmaze/table")
    args = parser.parse_args(argv)
    missing = [run for run in args.runs if not (Path(run) / "checkpoint.pt").is_file()]
    if missing:
        parser.error(f"no checkpoint.pt in {', '.join(missing)}; pass the run dirs that mlsh.train printed.")
    args.master = [setting.removeprefix("master.") for setting in args.master]
    malformed = [s for s in args.master if s.count("=") != 1 or not s.split("=")[0] or not s.split("=")[1]]
    if malformed:
        parser.error(f"--master takes KEY=VALUE settings, got {' '.join(malformed)}; e.g. --master lr=0.003 gamma=0.5.")
    for run in args.runs:  # every check mlsh.inspect makes (the settings' names and values), before any work
        probe = Path(args.out) / row_folder(Path(run), args) / "check.json"
        try:  # the probe is never written
            check_command([f"checkpoint={run}", f"output={probe}", *run_overrides(Path(run), args)])
        except MLSHError as error:
            parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows = [measure_run(Path(run), args) for run in args.runs]
    table = format_table(rows, args)
    out = Path(args.out)
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print(table)


if __name__ == "__main__":
    main()
