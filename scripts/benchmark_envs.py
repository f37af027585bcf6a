"""Env throughput of the batched Ant vector env against its ceiling and against the usual vector env.

    python scripts/benchmark_envs.py [--env mlsh/AntMaze-v0] [--num-envs 256] [--vector-steps 100] [--repeats 3]

Prints env steps per second of
  (a) raw ``mujoco.batch`` stepping of the same model (random controls, 5 substeps per step: the ceiling),
  (b) our batched vector env (``gym.make_vec``: rewards, pose resets, autoresets included),
  (c) Gymnasium's ``SyncVectorEnv`` over the single env (``vectorization_mode="sync"``),
all with random actions, measured in one process, interleaved ``--repeats`` times (the median is
reported, so that other load on the machine hits every variant alike), and the ratios b/a and b/c.
(a) and (b) use the same number of threads (every core this process may use, or ``--nthread``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import gymnasium as gym
import mujoco
import mujoco.batch
import numpy as np

import envs  # noqa: F401  (registers mlsh/*)
from envs.ant_base import ANT_NU
from envs.mujoco_batch import AntBatchVectorEnv


def timed(step: Callable[[np.ndarray], object], actions: np.ndarray) -> float:
    """Env steps per second of ``step`` over ``actions`` ``[steps, num_envs, 8]``."""
    start = time.perf_counter()
    for action in actions:
        step(action)
    return actions.shape[0] * actions.shape[1] / (time.perf_counter() - start)


def raw_batch(vec: AntBatchVectorEnv) -> tuple[mujoco.batch.Batch, Callable[[np.ndarray], object]]:
    """A ``mujoco.batch`` of the vector env's model, at its initial state, and a step writing the controls."""
    batch = mujoco.batch.Batch(vec.env.model, vec.num_envs, nthread=vec.nthread)
    batch.reset()
    ctrl = batch.bind("ctrl")
    frame_skip = vec.env.frame_skip

    def step(action: np.ndarray) -> None:
        ctrl[:, :ANT_NU] = action
        batch.step(nstep=frame_skip)

    return batch, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="mlsh/AntMaze-v0")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--vector-steps", type=int, default=100, help="vector steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nthread", type=int, default=None, help="batch threads (default: every core)")
    args = parser.parse_args()

    kwargs = {} if args.nthread is None else {"nthread": args.nthread}
    batched = gym.make_vec(args.env, num_envs=args.num_envs, **kwargs)
    if not isinstance(batched, AntBatchVectorEnv):
        raise SystemExit(f"{args.env} has no batched vector env (vector_entry_point).")
    synced = gym.make_vec(
        args.env,
        num_envs=args.num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )
    _, raw_step = raw_batch(batched)
    rng = np.random.default_rng(0)
    tasks = [synced.envs[0].unwrapped.sample_task(rng) for _ in range(args.num_envs)]
    for vec in (batched, synced):
        vec.set_attr("task", tasks)
        vec.reset(seed=0)
    actions = rng.uniform(-1.0, 1.0, size=(args.vector_steps, args.num_envs, ANT_NU)).astype(np.float32)
    for step in (raw_step, batched.step, synced.step):  # warm-up
        timed(step, actions[:2])

    rates: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    for _ in range(args.repeats):
        rates["a"].append(timed(raw_step, actions))
        rates["b"].append(timed(batched.step, actions))
        rates["c"].append(timed(synced.step, actions))
    a, b, c = (statistics.median(rates[key]) for key in "abc")

    print(
        f"{args.env}, {args.num_envs} envs, {batched.nthread} batch threads, {args.vector_steps} vector steps x "
        f"{args.repeats} repeats (median; all runs in brackets)"
    )
    names = {
        "a": "raw mujoco.batch stepping",
        "b": "mlsh batched vector env",
        "c": "gymnasium SyncVectorEnv, single env",
    }
    for key, rate in zip("abc", (a, b, c), strict=True):
        runs = ", ".join(f"{r:,.0f}" for r in rates[key])
        print(f"({key}) {names[key]:<38} {rate:>10,.0f} env steps/s   [{runs}]")
    print(f"b/a = {b / a:.2f}   (target >= 0.8)")
    print(f"b/c = {b / c:.2f}   (target >= 3)")
    batched.close()
    synced.close()


if __name__ == "__main__":
    main()
