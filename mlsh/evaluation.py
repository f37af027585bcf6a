"""Evaluation on unseen tasks: a fresh master adapts on top of frozen sub-policies.

This measures what MLSH optimises (the paper's "hierarchy strength"): on tasks drawn with a seed
stream disjoint from training's, each task gets a freshly initialised master that trains for
``warmup_iters`` iterations while the sub-policies and the observation normaliser stay frozen;
the return of the adapted policy is then compared with the env's oracle (scripted best policy).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from mlsh.checkpoint import checkpoint_path, load_checkpoint
from mlsh.config import Config, EnvConfig, config_from_dict
from mlsh.envs import make_env
from mlsh.errors import CheckpointError, ConfigError
from mlsh.meta import EVAL_TASK_STREAM, MetaLearner, task_rng
from mlsh.trainer import check_matches_env

MAX_MEASURE_ROLLOUTS = 10

# Env seeds of evaluation start far from training's (seed + env index) so episodes differ too.
EVAL_ENV_SEED_OFFSET = 1_000_003


def sample_eval_tasks(cfg: Config, num_tasks: int, seed: int) -> list[Any]:
    """Tasks for evaluation, from a stream disjoint from training's (and the env's test split)."""
    env = make_env(cfg.env)
    rng = task_rng(seed, EVAL_TASK_STREAM)
    tasks = [env.unwrapped.sample_test_task(rng) for _ in range(num_tasks)]
    env.close()
    return tasks


def oracle_returns(env_cfg: EnvConfig, tasks: list[Any], episodes: int, seed: int) -> np.ndarray:
    """Mean return of the env's oracle policy on each task: ``[num_tasks]``.

    Raises:
        ConfigError: the env has no ``oracle_action``.
    """
    env = make_env(env_cfg)
    means = []
    try:
        for task_index, task in enumerate(tasks):
            env.unwrapped.task = task
            total = 0.0
            for episode in range(episodes):
                env.reset(seed=seed + task_index * episodes + episode)
                while True:
                    try:
                        action = env.unwrapped.oracle_action()
                    except NotImplementedError as exc:
                        raise ConfigError(f"{exc} Evaluate with oracle=false.") from exc
                    _, reward, terminated, truncated, _ = env.step(action)
                    total += float(reward)
                    if terminated or truncated:
                        break
            means.append(total / episodes)
    finally:
        env.close()
    return np.asarray(means)


def _per_slot_mean(returns: np.ndarray, slots: np.ndarray, num_slots: int) -> np.ndarray:
    out = np.full(num_slots, np.nan)
    for slot in range(num_slots):
        sel = slots == slot
        if sel.any():
            out[slot] = returns[sel].mean()
    return out


def evaluate_run(
    run_dir: str | Path,
    num_tasks: int = 20,
    seed: int = 0,
    adapt_iters: int | None = None,
    oracle: bool = True,
    oracle_episodes: int = 10,
    device: str | None = None,
    scratch_baseline: bool = False,
) -> dict[str, Any]:
    """Adapts fresh masters on ``num_tasks`` unseen tasks over a run's frozen sub-policies.

    Args:
        run_dir: a run directory (or its ``checkpoint.pt``).
        num_tasks: tasks evaluated (one slot each, in one batched run).
        seed: evaluation seed; tasks come from a stream that training never draws from.
        adapt_iters: adaptation iterations of the master (default: the run's ``warmup_iters``).
        oracle: also run the env's oracle on the same tasks and report the ratio.
        oracle_episodes: oracle episodes per task.
        device: override the run's device.
        scratch_baseline: also train flat PPO from scratch on each task with the same steps per
            iteration and report its curve and the area-under-curve ratio.

    Returns:
        A dict with the mean return after adaptation, the oracle's, their ratio, per-task values and
        the adaptation curve (mean return per adaptation iteration).
    """
    if not isinstance(num_tasks, int) or num_tasks < 1:
        raise ConfigError(f"num_tasks must be a positive integer, got {num_tasks!r}; set e.g. num_tasks=20.")
    path = checkpoint_path(run_dir)
    payload = load_checkpoint(path)
    cfg = config_from_dict(payload["config"])
    iters = cfg.mlsh.warmup_iters if adapt_iters is None else adapt_iters
    if not isinstance(iters, int) or iters < 0:
        raise ConfigError(f"adapt_iters must be a non-negative integer, got {iters!r}.")
    eval_cfg = dataclasses.replace(
        cfg,
        mlsh=dataclasses.replace(
            cfg.mlsh, num_slots=num_tasks, stagger=False, warmup_iters=max(iters, 1), joint_iters=0
        ),
        seed=seed + EVAL_ENV_SEED_OFFSET,
        device=device or cfg.device,
    )
    tasks = sample_eval_tasks(cfg, num_tasks, seed)
    learner = MetaLearner(eval_cfg, fixed_tasks=tasks, train_subpolicies=False, update_obs_rms=False)
    try:
        check_matches_env(payload, learner, path)
        policy_state = payload["learner"]["policy"]
        frozen = {k: v for k, v in policy_state.items() if not k.startswith("masters.")}
        missing, unexpected = learner.policy.load_state_dict(frozen, strict=False)
        if unexpected or any(not k.startswith("masters.") for k in missing):
            raise CheckpointError(
                f"Checkpoint {path} does not fit its own config (missing {missing[:3]}, unexpected {unexpected[:3]}); "
                f"it was written by another version of mlsh."
            )
        curve = []
        for _ in range(iters):
            learner.train_iteration()
            stats = learner.last_episodes
            curve.append(_per_slot_mean(stats.returns, stats.slots, num_tasks))
        # Measure the adapted policy until every task has finished an episode (long episodes may
        # outlast one rollout), at most MAX_MEASURE_ROLLOUTS rollouts.
        returns, slots = [], []
        for _ in range(MAX_MEASURE_ROLLOUTS):
            _, stats = learner.collector.collect(eval_cfg.train.rollout_len, update_obs_rms=False)
            returns.append(stats.returns)
            slots.append(stats.slots)
            after = _per_slot_mean(np.concatenate(returns), np.concatenate(slots), num_tasks)
            if not np.isnan(after).any():
                break
        else:
            raise ConfigError(
                f"No episode ended within {MAX_MEASURE_ROLLOUTS} rollouts of {eval_cfg.train.rollout_len} steps on "
                f"some tasks; check the env's time limit (env.max_episode_steps)."
            )
    finally:
        learner.close()
    result: dict[str, Any] = {
        "run_dir": str(path.parent),
        "env_id": cfg.env.id,
        "num_tasks": num_tasks,
        "seed": seed,
        "adapt_iters": iters,
        "steps_per_task_per_iter": eval_cfg.train.envs_per_slot * eval_cfg.train.rollout_len,
        "tasks": [_jsonable(t) for t in tasks],
        "return_after_adaptation": float(np.nanmean(after)),
        "return_after_adaptation_per_task": after.tolist(),
        # None where no episode ended during that iteration (strict JSON has no NaN).
        "adaptation_curve": [float(np.nanmean(c)) if not np.isnan(c).all() else None for c in curve],
    }
    if scratch_baseline and iters > 0:
        scratch = ppo_from_scratch_curves(eval_cfg, tasks, iters, seed)
        result["scratch_curve"] = [None if np.isnan(row).all() else float(np.nanmean(row)) for row in scratch]
        mlsh_area = float(np.nansum([np.nan if x is None else x for x in result["adaptation_curve"]]))
        scratch_area = float(np.nansum(np.nanmean(scratch, axis=1)))
        result["auc_ratio"] = mlsh_area / scratch_area if scratch_area > 0 else float("inf")
    if oracle:
        oracle_means = oracle_returns(cfg.env, tasks, oracle_episodes, seed + 2 * EVAL_ENV_SEED_OFFSET)
        result["oracle_return"] = float(oracle_means.mean())
        result["oracle_return_per_task"] = oracle_means.tolist()
        result["ratio"] = result["return_after_adaptation"] / result["oracle_return"]
        result["ratio_per_task"] = (after / np.maximum(oracle_means, 1e-8)).tolist()
    return result


def ppo_from_scratch_curves(cfg: Config, tasks: list[Any], iterations: int, seed: int) -> np.ndarray:
    """Flat PPO trained from scratch on each task alone, as many steps per iteration as a slot gets.

    Each task gets a fresh one-sub-policy learner (its "master" has a single choice), trained on
    every iteration with the sub-policy PPO settings of the run.

    Returns:
        ``[iterations, num_tasks]`` mean episode return per iteration.
    """
    curves = np.full((iterations, len(tasks)), np.nan)
    for index, task in enumerate(tasks):
        scratch_cfg = dataclasses.replace(
            cfg,
            mlsh=dataclasses.replace(
                cfg.mlsh, num_subpolicies=1, num_slots=1, warmup_iters=0, joint_iters=iterations, stagger=False
            ),
            seed=seed + EVAL_ENV_SEED_OFFSET + 7919 * (index + 1),
        )
        learner = MetaLearner(scratch_cfg, fixed_tasks=[task])
        try:
            for iteration in range(iterations):
                learner.train_iteration()
                returns = learner.last_episodes.returns
                curves[iteration, index] = returns.mean() if len(returns) else np.nan
        finally:
            learner.close()
    return curves


def _jsonable(task: Any) -> Any:
    if isinstance(task, np.ndarray):
        return task.tolist()
    if isinstance(task, np.generic):
        return task.item()
    return task


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of per-task results and the means."""
    has_oracle = "oracle_return" in result
    lines = [
        f"Evaluation of {result['run_dir']} on {result['num_tasks']} unseen tasks "
        f"({result['adapt_iters']} adaptation iterations of a fresh master, sub-policies frozen)"
    ]
    header = f"{'task':>6} {'value':>12} {'return':>10}" + (f" {'oracle':>10} {'ratio':>7}" if has_oracle else "")
    lines.append(header)
    for i, task in enumerate(result["tasks"]):
        row = f"{i:>6} {str(task):>12} {result['return_after_adaptation_per_task'][i]:>10.2f}"
        if has_oracle:
            row += f" {result['oracle_return_per_task'][i]:>10.2f} {result['ratio_per_task'][i]:>7.2f}"
        lines.append(row)
    mean = f"{'mean':>6} {'':>12} {result['return_after_adaptation']:>10.2f}"
    if has_oracle:
        mean += f" {result['oracle_return']:>10.2f} {result['ratio']:>7.2f}"
    lines.append(mean)
    curve = " ".join("-" if x is None else f"{x:.2f}" for x in result["adaptation_curve"])
    lines.append(f"adaptation curve (mean return per iteration): {curve}")
    if "scratch_curve" in result:
        scratch = " ".join("-" if x is None else f"{x:.2f}" for x in result["scratch_curve"])
        lines.append(f"PPO from scratch, same tasks and steps:     {scratch}")
        lines.append(f"area-under-curve ratio MLSH / scratch: {result['auc_ratio']:.2f}")
    return "\n".join(lines)
