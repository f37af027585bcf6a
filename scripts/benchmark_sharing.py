"""What weight sharing between sub-policies costs and saves as K grows, every mode side by side in one run.

    python scripts/benchmark_sharing.py [--modes separate trunk conditioned hashed] [--ks 2 8 32 128]
                                        [--iterations 2] [--device cpu] [--set KEY=VALUE ...]

For every ``sub.sharing`` mode and every K it trains MovementBandits (``env=MovementBandits``, the
paper's 10 slots x 10 envs x 200 steps unless ``--set`` says otherwise) for one warm-up iteration and
then ``--iterations`` measured ones, and prints one table with, per cell,

* the sub-policies' parameter count (actors, critics and Gaussian scales);
* the checkpoint's size: the sub-policies' weights alone, and the whole training checkpoint (with
  masters, both optimizers' moments and the envs' states), serialised as ``torch.save`` writes them;
* peak memory: on CUDA the peak of allocated GPU memory; on the CPU the growth of the process's
  peak resident set over its size before the learner was built (each cell runs in its own process);
* training throughput in env steps per second (collection and both levels' updates);

and, for each quantity, its ratio against ``separate`` at the same K, measured in the same run.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mlsh.cli import training_config  # noqa: E402
from mlsh.config import SHARING_MODES, Config  # noqa: E402
from mlsh.meta import MetaLearner  # noqa: E402

COLUMNS = (
    ("params", "params", "{:,.0f}"),
    ("weights_kb", "weights KB", "{:,.1f}"),
    ("checkpoint_kb", "checkpoint KB", "{:,.1f}"),
    ("peak_mb", "peak MB", "{:,.1f}"),
    ("steps_per_s", "env steps/s", "{:,.0f}"),
)


def make_config(mode: str, k: int, args: argparse.Namespace) -> Config:
    """MovementBandits' training configuration with this cell's mode and K (and the command line's ``--set``)."""
    overrides = [
        "env=MovementBandits",
        f"device={args.device}",
        "train.progress=false",
        f"sub.sharing={mode}",
        f"mlsh.num_subpolicies={k}",
        *args.set,
    ]
    return training_config(overrides)


def _serialised_kb(obj: Any) -> float:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell() / 1024


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def measure_cell(mode: str, k: int, args: argparse.Namespace) -> dict[str, float]:
    """Builds and trains one (mode, K) learner; returns the table's quantities."""
    cfg = make_config(mode, k, args)
    if cfg.train.torch_threads:
        torch.set_num_threads(cfg.train.torch_threads)
    cuda = cfg.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    before = _rss_mb()
    learner = MetaLearner(cfg)
    subs = learner.policy.subpolicies
    learner.train_iteration()  # warm-up: first allocations, first task draws
    start = time.perf_counter()
    for _ in range(args.iterations):
        learner.train_iteration()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:  # ru_maxrss is in KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    result = {
        "params": float(sum(p.numel() for p in subs.parameters())),
        "weights_kb": _serialised_kb({key: value.cpu() for key, value in subs.state_dict().items()}),
        "checkpoint_kb": _serialised_kb(learner.state_dict()),
        "peak_mb": peak,
        "steps_per_s": args.iterations * cfg.steps_per_iteration / elapsed,
    }
    learner.close()
    return result


def format_table(results: dict[tuple[str, int], dict[str, float]], modes: list[str], ks: list[int]) -> str:
    """One Markdown table: a row per (K, mode), each quantity with its ratio against ``separate``."""
    header = ["K", "sharing", *(f"{title} (x sep.)" for _, title, _ in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for k in ks:
        base = results.get(("separate", k))
        for mode in modes:
            cell = results[(mode, k)]
            row = [str(k), mode]
            for key, _, form in COLUMNS:
                text = form.format(cell[key])
                if base is not None and base[key] > 0:
                    text += f" ({cell[key] / base[key]:.2f})"
                row.append(text)
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=list(SHARING_MODES), choices=SHARING_MODES)
    parser.add_argument("--ks", nargs="+", type=int, default=[2, 8, 32, 128], help="numbers of sub-policies K")
    parser.add_argument("--iterations", type=int, default=2, help="measured iterations per cell (after one warm-up)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--set", nargs="*", default=[], help="training overrides, e.g. train.envs_per_slot=4")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--cell", nargs=2, metavar=("MODE", "K"), help=argparse.SUPPRESS)  # one cell, JSON out
    args = parser.parse_args(argv)
    if args.iterations < 1 or any(k < 1 for k in args.ks):
        parser.error("--iterations and every K must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.cell is not None:
        print(json.dumps(measure_cell(args.cell[0], int(args.cell[1]), args)))
        return
    for mode in args.modes:  # refuse a bad --set before the first cell
        make_config(mode, args.ks[0], args)
    modes = ["separate", *[m for m in args.modes if m != "separate"]] if "separate" in args.modes else args.modes
    passed = ["--iterations", str(args.iterations), "--device", args.device, "--set", *args.set]
    results: dict[tuple[str, int], dict[str, float]] = {}
    for k in args.ks:
        for mode in modes:  # each cell in a fresh process: its own peak memory, no warm caches from the last
            command = [sys.executable, __file__, "--cell", mode, str(k), *passed]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"error: the cell sub.sharing={mode}, K={k} failed:\n{done.stderr[-2000:]}")
            results[(mode, k)] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"sub.sharing={mode} K={k}: {results[(mode, k)]['steps_per_s']:,.0f} env steps/s", flush=True)
    cfg = make_config(modes[0], args.ks[0], args)
    print(
        f"\nMovementBandits, {cfg.mlsh.num_slots} slots x {cfg.train.envs_per_slot} envs x "
        f"{cfg.train.rollout_len} steps per iteration, sub.hidden_sizes={cfg.sub.hidden_sizes}, device "
        f"{args.device}, {args.iterations} measured iterations per cell; (x sep.) = ratio to separate at the same K\n"
    )
    print(format_table(results, modes, args.ks))
    if args.json is not None:
        args.json.write_text(json.dumps({f"{m}/{k}": v for (m, k), v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
