"""End-to-end training throughput of mlsh on an Ant task, against its references, in one run (docs: performance).

    python scripts/benchmark_train.py [--env AntMaze] [--slots M] [--envs-per-slot E] [--rollout-len L]
                                      [--iterations 3] [--repeats 1] [--sb3-steps 4096] [--raw-steps 200]
                                      [--procs 2] [--device cpu] [--no-sb3] [--no-scaling] [--set KEY=VALUE ...]

Prints env-steps per second of
  (a) mlsh training (collection + master and sub-policy PPO) on the batched ``mujoco.batch`` vector env,
      with the time split into env stepping, policy inference (the rest of collection), and updates;
  (b) Stable-Baselines3 PPO with its default settings (``PPO("MlpPolicy", env)``) on the single env;
  (c) raw ``mujoco.batch`` stepping of the same model with as many simulations as (a) has envs;
and the ratios a/b and a/c; then (a) under ``torchrun`` with 1 and with P processes, each process
with ``--slots`` slots (weak scaling: P times the slots), pinned to its share of the cores, and the
scaling efficiency rate(P) / (P x rate(1)).

(a) runs the env's training configuration (``configs/env/<env>.yaml``: for AntMaze 10 slots x 2 envs,
rollouts of 1000 steps, K = 4), what ``python -m mlsh.train env=AntMaze`` runs; ``--slots``,
``--envs-per-slot`` and ``--rollout-len`` override it, and ``--set`` any other setting. With
``--repeats R`` the three measurements take turns R times and the medians are reported, so that a
passing load affects all three alike. The defaults take about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_envs import raw_batch, timed  # noqa: E402

import envs  # noqa: E402, F401  (registers mlsh/*)
from envs.ant_base import ANT_NU  # noqa: E402
from mlsh.cli import training_config  # noqa: E402
from mlsh.config import Config  # noqa: E402
from mlsh.distributed import DistContext, destroy_process_group, init_process_group  # noqa: E402
from mlsh.envs import make_env  # noqa: E402
from mlsh.meta import MetaLearner  # noqa: E402
from mlsh.threads import available_cores  # noqa: E402


def make_config(args: argparse.Namespace, num_slots: int | None) -> Config:
    """The env's training configuration, with the command line's slots, envs per slot and rollout length."""
    overrides = [f"env={args.env}", f"device={args.device}", "train.progress=false", *args.set]
    if num_slots is not None:
        overrides.append(f"mlsh.num_slots={num_slots}")
    if args.envs_per_slot is not None:
        overrides.append(f"train.envs_per_slot={args.envs_per_slot}")
    if args.rollout_len is not None:
        overrides.append(f"train.rollout_len={args.rollout_len}")
    return training_config(overrides)


def instrument(obj: Any, name: str, totals: dict[str, float], key: str) -> None:
    """Adds the wall time of every call of ``obj.name`` to ``totals[key]``."""
    original: Callable[..., Any] = getattr(obj, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start

    setattr(obj, name, wrapper)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mlsh_rate(cfg: Config, iterations: int, context: DistContext | None = None) -> tuple[float, dict[str, float]]:
    """Env steps/s of ``iterations`` training iterations after one warm-up iteration, and the time split."""
    learner = MetaLearner(cfg, dist=context)
    learner.train_iteration()  # warm-up: first resets, allocations
    totals = dict.fromkeys(("env", "collect", "update"), 0.0)
    instrument(learner.vec_env, "step", totals, "env")
    instrument(learner.collector, "collect", totals, "collect")
    instrument(learner, "update", totals, "update")
    if context is not None:
        context.any(False, learner.device)  # a barrier
    sync(learner.device)
    start = time.perf_counter()
    for _ in range(iterations):
        learner.train_iteration()
    sync(learner.device)
    if context is not None:
        context.any(False, learner.device)
    elapsed = time.perf_counter() - start
    learner.close()
    split = {
        "env step": totals["env"] / elapsed,
        "inference (rest of collection)": (totals["collect"] - totals["env"]) / elapsed,
        "update (GAE + PPO)": totals["update"] / elapsed,
        "other": 1.0 - (totals["collect"] + totals["update"]) / elapsed,
    }
    return iterations * cfg.steps_per_iteration / elapsed, split


def sb3_rate(cfg: Config, steps: int) -> float:
    """Stable-Baselines3 PPO, default settings, on the single env: env steps/s of ``learn``."""
    from stable_baselines3 import PPO

    env = make_env(cfg.env)
    model = PPO("MlpPolicy", env, seed=0, device="cpu", verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    elapsed = time.perf_counter() - start
    rate = model.num_timesteps / elapsed
    env.close()
    return rate


def raw_rate(cfg: Config, num_envs: int, vector_steps: int) -> float:
    """Raw ``mujoco.batch`` stepping of the task's model, ``num_envs`` simulations, random controls."""
    vec = gym.make_vec(cfg.env.id, num_envs=num_envs)
    _, step = raw_batch(vec)
    actions = np.random.default_rng(0).uniform(-1.0, 1.0, size=(vector_steps, num_envs, ANT_NU))
    timed(step, actions[:2])
    rate = timed(step, actions)
    vec.close()
    return rate


def pin_to_share_of_cores(rank: int, world_size: int) -> None:
    """Restricts this process (and its mujoco.batch threads) to its share of the cores it may use."""
    cores = sorted(os.sched_getaffinity(0))
    share = max(1, len(cores) // world_size)
    mine = cores[(rank * share) % len(cores) :][:share]
    os.sched_setaffinity(0, mine)


def worker(args: argparse.Namespace) -> None:
    """One torchrun process: ``--slots`` slots of its own, rank 0 prints the run's rate as JSON."""
    context = init_process_group(args.device)
    try:
        pin_to_share_of_cores(context.rank, context.world_size)
        cfg = make_config(args, args.slots * context.world_size)  # main() resolved the slots
        if cfg.train.torch_threads:
            torch.set_num_threads(cfg.train.torch_threads)
        rate, split = mlsh_rate(cfg, args.iterations, context)
        if context.is_main:
            print(json.dumps({"rate": rate, "split": split}), flush=True)
    except BaseException:
        destroy_process_group(barrier=False)
        raise
    destroy_process_group()


def torchrun_rate(args: argparse.Namespace, procs: int) -> dict[str, Any]:
    """Runs the workers under torchrun; returns rank 0's ``{"rate": env steps/s of the run, "split": ...}``."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}", f"--master_port={port}",
        __file__, "--worker", f"--env={args.env}", f"--slots={args.slots}", f"--envs-per-slot={args.envs_per_slot}",
        f"--rollout-len={args.rollout_len}", f"--iterations={args.iterations}", f"--device={args.device}",
        "--set", *args.set,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"torchrun with {procs} processes failed:\n{result.stderr[-3000:]}")
    if result.returncode != 0:
        print(f"warning: torchrun with {procs} processes exited with {result.returncode} after reporting its rate")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="AntMaze", help="an env config name (configs/env)")
    parser.add_argument("--slots", type=int, help="task slots (per process under torchrun); default: the env's")
    parser.add_argument("--envs-per-slot", type=int, help="default: the env config's")
    parser.add_argument("--rollout-len", type=int, help="steps per env and iteration; default: the env config's")
    parser.add_argument("--iterations", type=int, default=3, help="timed mlsh iterations (after one warm-up)")
    parser.add_argument("--repeats", type=int, default=1, help="turns of the three measurements (medians)")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="more training config overrides, e.g. train.update_threads=null",
    )
    parser.add_argument("--sb3-steps", type=int, default=4096, help="SB3 PPO learn() steps (2048 per update)")
    parser.add_argument("--raw-steps", type=int, default=200, help="vector steps of raw mujoco.batch")
    parser.add_argument("--procs", type=int, default=2, help="processes of the scaling run")
    parser.add_argument("--device", default="cpu", help="cpu or cuda for mlsh")
    parser.add_argument("--no-sb3", action="store_true")
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    cfg = make_config(args, args.slots)
    # The torchrun workers get the resolved sizes (the env config's where the command line gave none).
    args.slots, args.envs_per_slot, args.rollout_len = (
        cfg.mlsh.num_slots,
        cfg.train.envs_per_slot,
        cfg.train.rollout_len,
    )
    if cfg.train.torch_threads:
        torch.set_num_threads(cfg.train.torch_threads)
    num_envs = cfg.mlsh.num_slots * cfg.train.envs_per_slot
    load = os.getloadavg()
    print(
        f"{cfg.env.id}: mlsh {cfg.mlsh.num_slots} slots x {cfg.train.envs_per_slot} envs, rollout "
        f"{cfg.train.rollout_len}, K={cfg.mlsh.num_subpolicies}, device {args.device}, {args.iterations} iterations "
        f"x {args.repeats} repeats; {available_cores()} cores, load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    rates: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    splits: list[dict[str, float]] = []
    for _ in range(args.repeats):
        a, split = mlsh_rate(cfg, args.iterations)
        rates["a"].append(a)
        splits.append(split)
        rates["c"].append(raw_rate(cfg, num_envs, args.raw_steps))
        if not args.no_sb3:
            rates["b"].append(sb3_rate(cfg, args.sb3_steps))
    if args.repeats > 1:
        for key, values in rates.items():
            if values:
                print(f"    ({key}) each turn: " + ", ".join(f"{v:,.0f}" for v in values))
    a, c = float(np.median(rates["a"])), float(np.median(rates["c"]))
    print(f"(a) mlsh training, batched env          {a:>10,.0f} env steps/s")
    for name in splits[0]:
        share = float(np.median([split[name] for split in splits]))
        print(f"      {name:<32} {100 * share:5.1f}%")
    b = float(np.median(rates["b"])) if rates["b"] else None
    if b is not None:
        print(f"(b) SB3 PPO defaults, single env        {b:>10,.0f} env steps/s")
    print(f"(c) raw mujoco.batch, {num_envs} simulations  {c:>10,.0f} env steps/s")
    if b is not None:
        print(f"a/b = {a / b:.2f}   (target >= 5)")
    print(f"a/c = {a / c:.2f}   (target >= 0.5)")
    if not args.no_scaling:
        one = torchrun_rate(args, 1)
        many = torchrun_rate(args, args.procs)
        runs = ((f"1 process, {args.slots} slots", one), (f"{args.procs} processes, x{args.procs} slots", many))
        for label, run in runs:
            split = ", ".join(f"{name.split(' ')[0]} {100 * share:.0f}%" for name, share in run["split"].items())
            print(f"torchrun {label:<24} {run['rate']:>10,.0f} env steps/s   (rank 0: {split})")
        print(f"scaling efficiency = {many['rate'] / (args.procs * one['rate']):.2f}")
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


if __name__ == "__main__":
    main()
