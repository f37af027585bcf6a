"""Seeds table: train + evaluate MLSH, its ablations and flat PPO over several seeds, in parallel.

    python scripts/seeds_table.py --seeds 0 1 2 3 4 --jobs 2 --out runs/seeds_table

Each variant is trained with ``python -m mlsh.train`` (the env's default budget unless
``--timesteps`` is given) and evaluated with ``python -m mlsh.evaluate`` on 20 unseen tasks with the
same adaptation budget for every variant (``--adapt-iters``, default: the run's W). With ``--scratch``
the evaluation also trains PPO from scratch on each task and the table gets the area-under-curve ratio.

    python scripts/seeds_table.py --env FourRooms --seeds 0 1 2 --variants 0 --scratch --out runs/four_rooms

``--set`` adds training overrides to every variant; ``--deterministic`` measures the adapted policies'
most likely choices. Results are cached per run: a rerun reuses those made with the same settings,
extends the runs when ``--timesteps`` grows (then evaluates again), and refuses other ``--set`` overrides.

Writes ``table.md`` and ``results.json`` into ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

VARIANTS: dict[str, list[str]] = {
    "MLSH (default settings)": [],
    "ablation: no warmup (mlsh.warmup_iters=0)": ["mlsh.warmup_iters=0"],
    "ablation: master every step (mlsh.macro_len=1)": ["mlsh.macro_len=1"],
    "baseline: flat PPO, same budget (algo=flat_ppo)": ["algo=flat_ppo"],
}


def run_settings(args: argparse.Namespace) -> dict:
    """What a cached result must have been made with to be reused (``--deterministic`` picks the file)."""
    return {
        "timesteps": args.timesteps,
        "set": list(args.set),
        "num_tasks": args.num_tasks,
        "adapt_iters": args.adapt_iters,
        "scratch": args.scratch,
    }


def cached_result(result_file: Path, settings: dict) -> dict | None:
    """The cached evaluation in ``result_file`` if it was made with ``settings``, else None.

    A result made with another ``--timesteps`` or other evaluation options is redone (a resumed run
    is extended to the new budget). Results written before settings were recorded are reused.

    Raises:
        SystemExit: the run was trained with other ``--set`` overrides, which resuming cannot change.
    """
    if not result_file.exists():
        return None
    result = json.loads(result_file.read_text())
    made_with = result.get("settings")
    if made_with is None:
        return result
    if made_with["set"] != settings["set"]:
        raise SystemExit(
            f"error: {result_file.parent.parent} was trained with --set {' '.join(made_with['set']) or '(nothing)'}; "
            f"pass the same --set, or another --out for new settings."
        )
    return result if made_with == settings else None


def run_one(variant: str, overrides: list[str], seed: int, args: argparse.Namespace) -> dict:
    slug = {name: f"v{i}" for i, name in enumerate(VARIANTS)}[variant]
    run_dir = Path(args.out) / slug / f"seed{seed}"
    result_file = run_dir / "eval" / ("table_eval_deterministic.json" if args.deterministic else "table_eval.json")
    settings = run_settings(args)
    result = cached_result(result_file, settings)
    if result is None:
        extra = [f"train.total_timesteps={args.timesteps}"] if args.timesteps else []
        common = [f"env={args.env}", f"seed={seed}", "train.progress=false", *extra, *args.set, *overrides]
        if (run_dir / "checkpoint.pt").exists() or (run_dir / "config.yaml").exists():  # a run: continue it
            command = [sys.executable, "-m", "mlsh.train", f"resume={run_dir}", *extra]  # --timesteps extends it
        else:
            command = [sys.executable, "-m", "mlsh.train", *common, f"hydra.run.dir={run_dir}"]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, text=True)
        train_seconds = time.perf_counter() - start
        evaluation = [f"checkpoint={run_dir}", f"num_tasks={args.num_tasks}", f"seed={seed}", f"output={result_file}"]
        evaluation.append("overwrite=true")  # replaces a result made with other settings (cached_result)
        if args.adapt_iters is not None:
            evaluation.append(f"adapt_iters={args.adapt_iters}")
        if args.scratch:
            evaluation.append("baselines=[scratch]")
        if args.deterministic:
            evaluation.append("deterministic=true")
        subprocess.run([sys.executable, "-m", "mlsh.evaluate", *evaluation], check=True, capture_output=True, text=True)
        result = json.loads(result_file.read_text())
        result["train_seconds"] = train_seconds
        result["settings"] = settings
        result_file.write_text(json.dumps(result, indent=2))
    auc = f", AUC / scratch {result['auc_ratio']:.2f}" if result.get("auc_ratio") is not None else ""
    print(f"{variant:<50} seed {seed}: ratio {result['ratio']:.3f}{auc}", flush=True)
    return {"variant": variant, "seed": seed, **result}


def _auc(result: dict) -> str:
    return "-" if result.get("auc_ratio") is None else f"{result['auc_ratio']:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MovementBandits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timesteps", type=int, default=None)
    parser.add_argument("--num-tasks", type=int, default=20)
    parser.add_argument("--adapt-iters", type=int, default=None, help="default: the run's mlsh.warmup_iters")
    parser.add_argument("--scratch", action="store_true", help="also PPO from scratch per task (AUC ratio)")
    parser.add_argument(
        "--deterministic", action="store_true", help="measure the adapted policies' most likely choices"
    )
    parser.add_argument("--set", nargs="*", default=[], help="extra training overrides, e.g. mlsh.num_subpolicies=6")
    parser.add_argument("--variants", nargs="*", default=None, help="subset of variant indices, e.g. 0 3")
    parser.add_argument("--out", default="runs/seeds_table")
    args = parser.parse_args()
    names = list(VARIANTS)
    chosen = [names[int(i)] for i in args.variants] if args.variants else names
    jobs = [(name, VARIANTS[name], seed) for name in chosen for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda job: run_one(*job, args), jobs))
    lines = [
        f"| variant ({args.env}, {len(args.seeds)} seeds) | return / oracle, mean ± std | per seed | return | oracle |"
        + (" AUC / scratch, per seed |" if args.scratch else ""),
        "|---|---|---|---|---|" + ("---|" if args.scratch else ""),
    ]
    for name in chosen:
        rows = [r for r in results if r["variant"] == name]
        ratios = [r["ratio"] for r in rows]
        spread = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
        lines.append(
            f"| {name} | {statistics.mean(ratios):.2f} ± {spread:.2f} | "
            f"{' '.join(f'{x:.2f}' for x in ratios)} | "
            f"{statistics.mean(r['return_after_adaptation'] for r in rows):.1f} | "
            f"{statistics.mean(r['oracle_return'] for r in rows):.1f} |"
            + (f" {' '.join(_auc(r) for r in rows)} |" if args.scratch else "")
        )
    table = "\n".join(lines)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(table)


if __name__ == "__main__":
    main()
