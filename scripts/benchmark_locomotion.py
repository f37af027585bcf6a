"""Continuous-control yardstick: our flat PPO against Stable-Baselines3's PPO on Gymnasium's Ant-v5.

Both learn the same env for the same env steps, side by side in one run, over several seeds; each
trained policy is then evaluated deterministically on fresh episodes. Prints, per method, the final
mean return, mean forward velocity (``info["x_velocity"]``), episode length and wall time, and the
ratios ours / SB3.

* ours: ``python -m mlsh.train env=GymAnt algo=flat_ppo`` (configs/env/GymAnt.yaml: SB3's default
  PPO settings, observation and reward normalisation), trained through the library.
* SB3: ``PPO("MlpPolicy")`` with its defaults inside ``VecNormalize`` (observations and rewards), which
  is RL Zoo's entry for Ant-v4 (``normalize: true``, defaults otherwise; its tuned Ant set is commented
  out there).

Each job writes ``<out>/<method>_seed<S>.json`` when it finishes; a rerun with the same ``--out``
skips the jobs already done, so a long benchmark continues where it stopped.

Example::

    python scripts/benchmark_locomotion.py --steps 1000000 --seeds 0 1 2 --workers 2
    python scripts/benchmark_locomotion.py --steps 50000 --seeds 0 --eval-episodes 2   # a quick check
    python scripts/benchmark_locomotion.py --results mlsh=runs/bench_v3 sb3=runs/benchmark_locomotion   # no training
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("mlsh", "sb3")


def evaluate(
    env_id: str, policy: Callable[[np.ndarray, bool], np.ndarray], episodes: int, seed: int
) -> dict[str, float]:
    """Runs ``episodes`` episodes of ``policy(obs, episode_start) -> action`` on a fresh env.

    Returns:
        Mean return, mean forward velocity over every step, and mean episode length.
    """
    import gymnasium as gym

    env = gym.make(env_id)
    low, high = env.action_space.low, env.action_space.high
    returns, velocities, lengths = [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        start, total, length, done = True, 0.0, 0, False
        while not done:
            action = np.clip(policy(obs, start), low, high)
            obs, reward, terminated, truncated, info = env.step(action)
            start, total, length = False, total + float(reward), length + 1
            velocities.append(float(info.get("x_velocity", np.nan)))
            done = terminated or truncated
        returns.append(total)
        lengths.append(length)
    env.close()
    return {
        "return": float(np.mean(returns)),
        "velocity": float(np.nanmean(velocities)),
        "episode_length": float(np.mean(lengths)),
    }


def train_mlsh(env_id: str, seed: int, steps: int, run_dir: Path, overrides: list[str]) -> Callable:
    """Trains our flat PPO (env=GymAnt algo=flat_ppo) and returns its deterministic policy."""
    from agents import MLSHAgent
    from mlsh.cli import training_config
    from mlsh.trainer import train

    cfg = training_config(
        [
            "env=GymAnt",
            "algo=flat_ppo",
            f"env.id={env_id}",
            f"seed={seed}",
            f"train.total_timesteps={steps}",
            "train.progress=false",
            *overrides,
        ],
    )
    summary = train(cfg, run_dir)
    if not summary["finished"]:  # stopped by a signal: a partly trained policy must not be reported
        raise RuntimeError(f"training stopped at iteration {summary['iteration']}; rerun to continue the benchmark")
    agent = MLSHAgent.load(run_dir, device="cpu", seed=seed)
    state: Any = None

    def policy(obs: np.ndarray, start: bool) -> np.ndarray:
        nonlocal state
        action, state = agent.predict(obs, state, np.array([start]), deterministic=True)
        return action

    return policy


def train_sb3(env_id: str, seed: int, steps: int, run_dir: Path) -> Callable:
    """Trains SB3's PPO (defaults, VecNormalize: RL Zoo's Ant entry) and returns its deterministic policy."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    torch.set_num_threads(1)
    vec = VecNormalize(DummyVecEnv([lambda: Monitor(gym.make(env_id))]), gamma=0.99)
    model = PPO("MlpPolicy", vec, seed=seed, device="cpu", verbose=0)
    run_dir.mkdir(parents=True, exist_ok=True)
    # Its training scalars (approx. KL, clip fraction, entropy, value loss per iteration) to compare with ours'.
    model.set_logger(configure(str(run_dir), ["csv"]))
    model.learn(total_timesteps=steps)
    model.save(run_dir / "model.zip")
    vec.save(str(run_dir / "vecnormalize.pkl"))
    vec.training = False

    def policy(obs: np.ndarray, start: bool) -> np.ndarray:
        action, _ = model.predict(vec.normalize_obs(obs[None]), deterministic=True)
        return action[0]

    return policy


def run_job(method: str, env_id: str, seed: int, steps: int, episodes: int, out: str, overrides: list[str]) -> dict:
    """Trains and evaluates one (method, seed); writes and returns its result."""
    run_dir = Path(out) / f"{method}_seed{seed}"
    start = time.perf_counter()
    if method == "mlsh":
        policy = train_mlsh(env_id, seed, steps, run_dir, overrides)
    else:
        policy = train_sb3(env_id, seed, steps, run_dir)
    wall = time.perf_counter() - start
    result = {
        "method": method,
        "seed": seed,
        "env_id": env_id,
        "steps": steps,
        "train_wall_s": wall,
        "train_fps": steps / wall,
        **evaluate(env_id, policy, episodes, seed=10_000 + 100 * seed),
    }
    (Path(out) / f"{method}_seed{seed}.json").write_text(json.dumps(result, indent=2))
    return result


def table(results: list[dict]) -> str:
    """Per-seed rows, then mean +/- std per method and the ratios ours / SB3."""
    keys = ("return", "velocity", "episode_length", "train_wall_s")
    lines = [f"{'method':<6} {'seed':>4} {'return':>9} {'x_vel':>7} {'ep_len':>7} {'wall_s':>8} {'fps':>7}"]
    for r in sorted(results, key=lambda r: (r["method"], r["seed"])):
        lines.append(
            f"{r['method']:<6} {r['seed']:>4} {r['return']:>9.1f} {r['velocity']:>7.3f} {r['episode_length']:>7.0f} "
            f"{r['train_wall_s']:>8.0f} {r['train_fps']:>7.0f}"
        )
    means: dict[str, dict[str, float]] = {}
    for method in METHODS:
        rows = [r for r in results if r["method"] == method]
        if not rows:
            continue
        means[method] = {k: float(np.mean([r[k] for r in rows])) for k in keys}
        spread = {k: float(np.std([r[k] for r in rows])) for k in keys}
        lines.append(
            f"{method:<6} mean ({len(rows)} seeds): return {means[method]['return']:.1f} +/- {spread['return']:.1f}, "
            f"x velocity {means[method]['velocity']:.3f} +/- {spread['velocity']:.3f}, "
            f"episode length {means[method]['episode_length']:.0f}, wall {means[method]['train_wall_s']:.0f} s"
        )
    if len(means) == 2:
        ours, ref = means["mlsh"], means["sb3"]
        lines.append(
            f"ratios ours/SB3: return {ours['return'] / ref['return']:.2f}, "
            f"x velocity {ours['velocity'] / ref['velocity']:.2f}, "
            f"wall time {ours['train_wall_s'] / ref['train_wall_s']:.2f}"
        )
    return "\n".join(lines)


def finished_results(sources: list[str], methods: list[str], seeds: list[int]) -> list[dict]:
    """The finished jobs' results (``<method>_seed<S>.json``) of ``methods`` and ``seeds`` in each source: a
    ``--out`` dir, or ``METHOD=DIR`` for that method's jobs in it."""
    found = []
    for source in sources:
        method, _, directory = source.rpartition("=")
        for name in [method] if method else methods:
            for seed in seeds:
                path = Path(directory) / f"{name}_seed{seed}.json"
                if path.exists():
                    found.append(json.loads(path.read_text()))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-id", default="Ant-v5")
    parser.add_argument("--steps", type=int, default=1_000_000, help="env steps per training run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="jobs run at once, one core each")
    parser.add_argument("--out", default="runs/benchmark_locomotion")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for our trainer")
    parser.add_argument(
        "--results",
        nargs="+",
        metavar="[METHOD=]DIR",
        help="no training: the table of the jobs finished in these --out dirs (METHOD=DIR: that method's only)",
    )
    args = parser.parse_args(argv)
    if args.results:
        print(table(finished_results(args.results, args.methods, args.seeds)))
        return 0
    if args.steps < 2048 or args.eval_episodes < 1 or args.workers < 1:
        print("error: --steps must be at least 2048 and --eval-episodes, --workers at least 1.", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, jobs = [], []
    for seed in args.seeds:
        for method in args.methods:
            done = out / f"{method}_seed{seed}.json"
            if done.exists():
                results.append(json.loads(done.read_text()))
            else:
                jobs.append((method, args.env_id, seed, args.steps, args.eval_episodes, str(out), args.set))
    print(f"{len(jobs)} jobs to run ({len(results)} already done in {out}), {args.workers} at a time", flush=True)
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(run_job, *job) for job in jobs]
        for future in futures:
            result = future.result()
            print(
                f"done: {result['method']} seed {result['seed']}: return {result['return']:.1f}, "
                f"x velocity {result['velocity']:.3f}, {result['train_wall_s']:.0f} s",
                flush=True,
            )
            results.append(result)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
