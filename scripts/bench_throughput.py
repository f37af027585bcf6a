"""Throughput benchmark: mlsh against references measured in the same run.

    python scripts/bench_throughput.py [--steps 200000] [--sb3]

Prints env-steps per second of
  (a) the bare vector env stepped with random actions (the ceiling any trainer has),
  (b) mlsh rollout collection alone (hierarchical policy, macro clock, bootstrapping),
  (c) full mlsh training iterations (collection + master and sub-policy PPO updates),
  (d) with --sb3: Stable-Baselines3 PPO (``learn``) on the same env, envs, batch and network size,
and the ratios (b)/(a), (c)/(a) and (c)/(d), plus peak resident memory. Same machine, same process.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from mlsh.config import Config
from mlsh.envs import make_vec_env
from mlsh.meta import MetaLearner


def bare_env_rate(cfg: Config, steps: int) -> float:
    num_envs = cfg.mlsh.num_slots * cfg.train.envs_per_slot
    vec = make_vec_env(cfg.env, num_envs)
    vec.reset(seed=0)
    rng = np.random.default_rng(0)
    n = vec.single_action_space.n
    start = time.perf_counter()
    for _ in range(steps // num_envs):
        vec.step(rng.integers(n, size=num_envs))
    elapsed = time.perf_counter() - start
    vec.close()
    return (steps // num_envs) * num_envs / elapsed


def mlsh_rates(cfg: Config, steps: int) -> tuple[float, float]:
    learner = MetaLearner(cfg)
    learner.train_iteration()  # warm-up (allocations, first resets)
    per_iter = cfg.steps_per_iteration
    iters = max(1, steps // per_iter)
    start = time.perf_counter()
    for _ in range(iters):
        learner.collector.collect(cfg.train.rollout_len)
    collect = iters * per_iter / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(iters):
        learner.train_iteration()
    full = iters * per_iter / (time.perf_counter() - start)
    learner.close()
    return collect, full


def sb3_rate(cfg: Config, steps: int) -> float:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env

    import envs  # noqa: F401

    num_envs = cfg.mlsh.num_slots * cfg.train.envs_per_slot
    vec = sb3_make_vec_env(cfg.env.id, n_envs=num_envs, seed=0)
    model = PPO(
        "MlpPolicy",
        vec,
        n_steps=cfg.train.rollout_len,
        batch_size=num_envs * cfg.train.rollout_len // cfg.sub.num_minibatches,
        n_epochs=cfg.sub.update_epochs,
        learning_rate=cfg.sub.lr,
        policy_kwargs={"net_arch": list(cfg.sub.hidden_sizes)},
        device="cpu",
        seed=0,
    )
    model.learn(num_envs * cfg.train.rollout_len)  # warm-up iteration
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--sb3", action="store_true", help="also time Stable-Baselines3 PPO")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = Config()
    env_rate = bare_env_rate(cfg, args.steps)
    collect_rate, full_rate = mlsh_rates(cfg, args.steps)
    print(f"env: {cfg.env.id}, {cfg.mlsh.num_slots * cfg.train.envs_per_slot} envs, torch threads {args.threads}")
    print(f"(a) bare vector env, random actions : {env_rate:10.0f} steps/s")
    print(
        f"(b) mlsh rollout collection         : {collect_rate:10.0f} steps/s   (b)/(a) = {collect_rate / env_rate:.2f}"
    )
    print(f"(c) mlsh training (collect + PPO)   : {full_rate:10.0f} steps/s   (c)/(a) = {full_rate / env_rate:.2f}")
    if args.sb3:
        sb3 = sb3_rate(cfg, args.steps)
        print(f"(d) SB3 PPO learn(), same budget    : {sb3:10.0f} steps/s   (c)/(d) = {full_rate / sb3:.2f}")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
