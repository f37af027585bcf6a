"""Running a training job: fresh or resumed, with checkpoints, TensorBoard and clean Ctrl-C."""

from __future__ import annotations

import json
import logging
import math
import signal
from pathlib import Path
from typing import Any

import torch
import yaml

from mlsh.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from mlsh.config import Config, config_from_dict
from mlsh.distributed import DistContext
from mlsh.envs import env_signature
from mlsh.errors import CheckpointError, ConfigError, TrainingDivergedError
from mlsh.evaluation import check_fits_env, load_shared_weights
from mlsh.logger import RunLogger
from mlsh.meta import MetaLearner

log = logging.getLogger("mlsh")

CONFIG_NAME = "config.yaml"
SUMMARY_NAME = "summary.json"


class _StopFlag:
    """First Ctrl-C asks the loop to stop at the end of the iteration (and save); a second aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopFlag:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not in the main thread: no handler
            self._previous = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("Interrupted: finishing this iteration, saving, then exiting (Ctrl-C again to abort).")

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def checkpoint_payload(learner: MetaLearner) -> dict[str, Any]:
    return {
        "config": learner.cfg.to_dict(),
        "env_id": learner.cfg.env.id,
        "env_signature": env_signature(learner.task_env),
        "learner": learner.state_dict(),
    }


def save_run(path: Path, learner: MetaLearner) -> None:
    """Saves the run; in a multi-process run every rank takes part and rank 0 writes one file.

    A multi-process checkpoint holds every rank's learner state under ``rank_learners`` (what resume
    reads, rank by rank) and, under ``learner``, rank 0's state with the masters and tasks of all global
    slots concatenated, so that evaluation and agents read it like a one-process checkpoint of M slots.
    """
    context = learner.dist
    if context is None:
        save_checkpoint(path, checkpoint_payload(learner))
        return
    states = context.gather_objects(learner.state_dict())
    if states is None:  # not rank 0
        return
    policy = dict(states[0]["policy"])
    for key in policy:
        if key.startswith("masters."):
            policy[key] = torch.cat([state["policy"][key] for state in states])
    payload = {
        "config": learner.cfg.to_dict(),
        "env_id": learner.cfg.env.id,
        "env_signature": env_signature(learner.task_env),
        "learner": {**states[0], "policy": policy, "tasks": [task for state in states for task in state["tasks"]]},
        "world_size": context.world_size,
        "rank_learners": states,
    }
    save_checkpoint(path, payload)


def learner_state(payload: dict[str, Any], context: DistContext | None, path: Path) -> dict[str, Any]:
    """This process's learner state in ``payload``.

    Raises:
        CheckpointError: the checkpoint was written by another number of processes.
    """
    saved = int(payload.get("world_size", 1))
    world = 1 if context is None else context.world_size
    if saved != world:
        launch = "python -m mlsh.train" if saved == 1 else f"torchrun --nproc_per_node={saved} -m mlsh.train"
        raise CheckpointError(
            f"Checkpoint {path} was written by {saved} process(es) but this run has {world}; resume it with "
            f"{launch} resume=... (in total, over all nodes)."
        )
    if context is None or "rank_learners" not in payload:
        return payload["learner"]
    return payload["rank_learners"][context.rank]


def check_matches_env(payload: dict[str, Any], learner: MetaLearner, path: Path) -> None:
    """Raises :class:`CheckpointError` if the checkpoint was made for another env or shape."""
    expected = env_signature(learner.task_env)
    found = payload.get("env_signature")
    if payload.get("env_id") != learner.cfg.env.id or found != expected:
        raise CheckpointError(
            f"Checkpoint {path} was trained on '{payload.get('env_id')}' ({found}) but the run uses "
            f"'{learner.cfg.env.id}' ({expected}); pick the env the checkpoint was trained on."
        )


def load_run_config(run_dir: Path) -> Config:
    """The config a run was started with (``run_dir/config.yaml``, else the checkpoint's)."""
    config_file = run_dir / CONFIG_NAME
    if config_file.is_file():
        with open(config_file) as handle:
            return config_from_dict(yaml.safe_load(handle))
    return config_from_dict(load_checkpoint(run_dir)["config"])


def _hash_compression(cfg: Config) -> float | None:
    """``sub.hash_compression`` where it shapes the sub-policies (``sub.sharing=hashed``), else None."""
    return cfg.sub.hash_compression if cfg.sub.sharing == "hashed" else None


def init_source(cfg: Config) -> tuple[Path, dict[str, Any]]:
    """The checkpoint named by ``cfg.init_from``, checked to fit this run: ``(path, payload)``.

    Raises:
        CheckpointError: the checkpoint is missing or corrupt, or its env has other spaces.
        ConfigError: its sub-policies have another shape (the message names the setting to change).
    """
    assert cfg.init_from is not None
    path = checkpoint_path(cfg.init_from)
    try:
        payload = load_checkpoint(path)
    except CheckpointError as exc:
        raise CheckpointError(f"init_from={cfg.init_from}: {exc}") from exc
    source = config_from_dict(payload["config"])
    for key, ours, theirs in (
        ("mlsh.num_subpolicies", cfg.mlsh.num_subpolicies, source.mlsh.num_subpolicies),
        ("sub.hidden_sizes", list(cfg.sub.hidden_sizes), list(source.sub.hidden_sizes)),
        ("sub.sharing", cfg.sub.sharing, source.sub.sharing),
        ("sub.hash_compression", _hash_compression(cfg), _hash_compression(source)),
        ("train.normalize_obs", cfg.train.normalize_obs, source.train.normalize_obs),
    ):
        if ours != theirs:
            shown = f"[{','.join(map(str, theirs))}]" if isinstance(theirs, list) else str(theirs).lower()
            shown = "null" if theirs is None else shown
            raise ConfigError(
                f"init_from={cfg.init_from} has {key}={shown} but this run has {ours}; set {key}={shown} "
                f"to start from its sub-policies."
            )
    check_fits_env(payload, cfg.env, path)
    return path, payload


def init_from_run(learner: MetaLearner, cfg: Config) -> None:
    """Starts a new run from another run's sub-policies and observation normaliser (``init_from``).

    The masters, both optimisers and the task schedule start afresh, as in any new run: this continues
    sub-policies under other settings (more envs per slot, another learning rate) or moves them to another
    task distribution with the same spaces. Every process of a torchrun job loads the same file.
    """
    path, payload = init_source(cfg)
    load_shared_weights(learner.policy, payload["learner"]["policy"], path)


def train(cfg: Config, run_dir: Path, resume: bool = False, max_iterations: int | None = None) -> dict[str, Any]:
    """Trains (or continues training) into ``run_dir``.

    Args:
        cfg: validated settings (for a resumed run, those it was started with).
        run_dir: where config, checkpoint, TensorBoard events and summary go.
        resume: continue from ``run_dir/checkpoint.pt`` exactly where it stopped.
        max_iterations: stop after this many iterations in this call (tests); the run stays resumable.

    Returns:
        A summary dict (also written to ``run_dir/summary.json``).
    """
    run_dir = Path(run_dir)
    context = DistContext.current()  # a torchrun process group, else None
    is_main = context is None or context.is_main
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint_path(run_dir)
    if cfg.train.torch_threads:
        torch.set_num_threads(cfg.train.torch_threads)
    payload = load_checkpoint(ckpt) if resume else None
    if not resume and ckpt.exists():
        raise CheckpointError(
            f"{run_dir} already holds a checkpoint; continue it with resume={run_dir} or choose another run dir."
        )
    learner = MetaLearner(cfg, dist=context)
    if payload is not None:
        check_matches_env(payload, learner, ckpt)
        state = learner_state(payload, context, ckpt)
        try:
            learner.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(
                f"Checkpoint {ckpt} does not match the run's settings ({exc}); resume with the settings it was "
                f"saved with (run_dir/{CONFIG_NAME})."
            ) from exc
    else:
        if cfg.init_from:
            init_from_run(learner, cfg)
        if is_main:
            with open(run_dir / CONFIG_NAME, "w") as handle:
                yaml.safe_dump(cfg.to_dict(), handle, sort_keys=False)

    total = cfg.num_iterations
    if is_main:
        logger = RunLogger(run_dir, total, learner.iteration, progress=cfg.train.progress)
    else:  # rank 0 alone logs
        logger = RunLogger(None, total, learner.iteration, progress=False)
    steps_per_iter = cfg.steps_per_iteration
    last_metrics: dict[str, float] = {}
    done_this_call = 0
    saved_at = learner.iteration
    try:
        with _StopFlag() as stop:
            while learner.iteration < total:
                # A Ctrl-C may reach some processes only: all stop at the same iteration.
                stopping = stop.requested if context is None else context.any(stop.requested, learner.device)
                if stopping or (max_iterations is not None and done_this_call >= max_iterations):
                    break
                last_metrics = learner.train_iteration()
                _check_finite(learner, last_metrics)
                done_this_call += 1
                logger.log_iteration(learner.iteration, learner.timesteps, steps_per_iter, last_metrics)
                if learner.iteration % cfg.train.checkpoint_every == 0:
                    save_run(ckpt, learner)
                    saved_at = learner.iteration
    finally:
        logger.close()
    if saved_at != learner.iteration:  # finished, interrupted or stopped by max_iterations
        save_run(ckpt, learner)
    summary = {
        "run_dir": str(run_dir),
        "iteration": learner.iteration,
        "total_iterations": total,
        "timesteps": learner.timesteps,
        "finished": learner.iteration >= total,
        "last_metrics": last_metrics,
    }
    if is_main:
        with open(run_dir / SUMMARY_NAME, "w") as handle:
            json.dump(summary, handle, indent=2)
    learner.close()
    return summary


def _check_finite(learner: MetaLearner, metrics: dict[str, float]) -> None:
    bad = [key for key, value in metrics.items() if not math.isfinite(value) and "explained_variance" not in key]
    params_ok = all(torch.isfinite(p).all() for p in learner.policy.parameters())
    if bad or not params_ok:
        what = f"metric {bad[0]}" if bad else "a parameter"
        raise TrainingDivergedError(
            f"Training diverged at iteration {learner.iteration} ({what} is not finite); the last checkpoint is kept, "
            f"lower master.lr / sub.lr or max_grad_norm and resume or restart."
        )
