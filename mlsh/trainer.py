"""Running a training job: fresh or resumed, with checkpoints, TensorBoard and clean Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from mlsh.checkpoint import (
    check_fits_env,
    checkpoint_path,
    load_checkpoint,
    load_shared_weights,
    save_checkpoint,
    write_atomic,
)
from mlsh.checks import advisories, check_device, check_writable, checkpoint_bytes, probe_env, warn
from mlsh.config import Config, check_config, check_hidden_obs, config_from_dict
from mlsh.distributed import DistContext
from mlsh.envs import env_signature
from mlsh.errors import CheckpointError, ConfigError, RunAborted, TrainingDivergedError
from mlsh.logger import RunLogger
from mlsh.meta import MetaLearner
from mlsh.rundir import in_use_error, lock_owner, run_lock

log = logging.getLogger("mlsh")

CONFIG_NAME = "config.yaml"
SUMMARY_NAME = "summary.json"

# Settings a resumed run may change: its budget and checkpoint cadence, and how it is shown and where it runs.
# Every other setting is the run's: a change is refused (a new run with init_from= takes other settings).
RESUMABLE_KEYS = (
    "train.total_timesteps",
    "train.checkpoint_every",
    "train.checkpoint_minutes",
    "train.progress",
    "device",
)
# Settings init_from= cannot change either (the sub-policies' shapes and inputs).
_SHAPE_KEYS = (
    "mlsh.num_subpolicies",
    "sub.hidden_sizes",
    "sub.sharing",
    "sub.hash_compression",
    "sub.hidden_obs",
    "train.normalize_obs",
)


class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM (``kill``, schedulers, container runtimes): the first asks the training loop to
    stop at the end of the iteration in progress and save; a second aborts at once without saving that iteration
    (:class:`~mlsh.errors.RunAborted`; the last checkpoint is kept).

    One instance, :data:`STOP`, serves the process; entering it installs the handlers (main thread only) and it
    may be entered again (the command line enters it before any check, so that a signal during start-up is
    honoured too; :func:`train` enters it for the library).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.aborted: int | None = None
        self._depth = 0
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    def __enter__(self) -> StopSignals:
        if self._depth == 0:
            self.signum = self.aborted = None
            for signum in self.SIGNALS:
                with contextlib.suppress(ValueError):  # not in the main thread: no handler
                    self._previous[signum] = signal.signal(signum, self._handle)
        self._depth += 1
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            self.aborted = signum
            raise RunAborted(f"aborted by a second {name}", 128 + signum)
        self.signum = signum
        # One write(2), not logging: a second signal may arrive while this line is written, and an exception raised
        # inside a logging handler is swallowed by logging (check_abort() then catches it up).
        message = (
            f"mlsh: {name} received: finishing this iteration, saving, then exiting (send it again to abort without "
            f"saving this iteration).\n"
        )
        with contextlib.suppress(OSError):
            os.write(2, message.encode())

    def check_abort(self) -> None:
        """Raises the abort of a second signal whose exception was swallowed where it landed."""
        if self.aborted is not None:
            raise RunAborted(f"aborted by a second {signal.Signals(self.aborted).name}", 128 + self.aborted)

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)
            self._previous = {}


STOP = StopSignals()


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


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run (its ``config.yaml`` or a checkpoint)."""
    return (Path(run_dir) / CONFIG_NAME).is_file() or checkpoint_path(run_dir).is_file()


def load_run_config(run_dir: Path) -> Config:
    """The config a run was started with (``run_dir/config.yaml``, else the checkpoint's).

    Raises:
        CheckpointError: the directory holds neither, or they cannot be read.
    """
    run_dir = Path(run_dir)
    config_file = run_dir / CONFIG_NAME
    if config_file.is_file():
        try:
            data = yaml.safe_load(config_file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise CheckpointError(
                f"{config_file} cannot be read ({type(exc).__name__}); restore it from a backup or start a new run."
            ) from exc
        if not isinstance(data, dict):
            raise CheckpointError(f"{config_file} is not an mlsh run config; restore it or start a new run.")
        try:
            return config_from_dict(data)
        except ConfigError as exc:
            raise CheckpointError(
                f"{config_file} is not a valid run config ({exc}); restore it or start a new run."
            ) from exc
    if not checkpoint_path(run_dir).is_file():
        raise CheckpointError(
            f"{run_dir} holds no run (no {CONFIG_NAME}, no {checkpoint_path(run_dir).name}); pass the run dir printed "
            f"when the run started, or start it again with hydra.run.dir={run_dir}."
        )
    return config_from_dict(load_checkpoint(run_dir)["config"])


def _hash_compression(cfg: Config) -> float | None:
    """``sub.hash_compression`` where it shapes the sub-policies (``sub.sharing=hashed``), else None."""
    return cfg.sub.hash_compression if cfg.sub.sharing == "hashed" else None


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "kwargs":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def settings_changes(saved: Config, cfg: Config) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved value, new value)}`` for every setting that differs between two configs."""
    before, after = _flat(saved.to_dict()), _flat(cfg.to_dict())
    return {key: (before.get(key), after.get(key)) for key in after if before.get(key) != after.get(key)}


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"[{','.join(map(str, value))}]"
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    return str(value)


def check_resume_changes(run_dir: Path, saved: Config, cfg: Config) -> dict[str, tuple[Any, Any]]:
    """The settings a resume changes, all of them in :data:`RESUMABLE_KEYS`.

    Raises:
        ConfigError: another setting differs from the run's; the message names it and the way to get it.
    """
    changes = settings_changes(saved, cfg)
    if "env.id" in changes:
        old, new = changes["env.id"]
        raise CheckpointError(
            f"{run_dir} was trained on '{old}' but this resume uses '{new}'; pick the env the checkpoint was trained "
            f"on (a resume keeps the run's settings)."
        )
    for key, (old, new) in changes.items():
        if key in RESUMABLE_KEYS:
            continue
        if key in _SHAPE_KEYS or key.startswith("env."):
            how = "start a new run with those settings"
        else:
            how = (
                f"start a new run with init_from={run_dir} {key}={_shown(new)} (it starts from this run's sub-policies)"
            )
        raise ConfigError(
            f"resume={run_dir} keeps the run's settings, but {key}={_shown(new)} differs from its {_shown(old)} "
            f"(a resume may change only {', '.join(RESUMABLE_KEYS)}); drop the override, or {how}."
        )
    return changes


_PREPARED: dict[tuple[str, bool, str], dict[str, tuple[Any, Any]]] = {}


def prepare_run(cfg: Config, run_dir: Path, resume: bool, remember: bool = False) -> dict[str, tuple[Any, Any]]:
    """Every check of a training job that can fail, before anything is written: settings, device, the env (made
    and tried for a few random steps), ``init_from``, the run dir (a run there already, its lock held by another
    process, writable with space for checkpoints) and, on resume, the settings that change. Prints one warning
    line per legal but unwise setting. Returns the resume's changes (``{key: (old, new)}``).

    With ``remember``, the next :func:`train` call of this process with the same arguments skips these checks
    (the command line runs them before Hydra starts, then calls :func:`train`).

    Raises:
        MLSHError: one sentence naming the fix; nothing was written.
    """
    run_dir = Path(run_dir)
    check_config(cfg)
    check_device(cfg.device)
    owner = lock_owner(run_dir)
    if owner is not None and owner != os.getpid():
        raise in_use_error(run_dir, owner)
    if resume:
        changes = check_resume_changes(run_dir, load_run_config(run_dir), cfg)
        if "train.total_timesteps" in changes and checkpoint_path(run_dir).is_file():
            _check_budget(cfg, int(load_checkpoint(run_dir)["learner"]["iteration"]))
    else:
        if holds_run(run_dir):
            raise CheckpointError(
                f"{run_dir} already holds a run; continue it with resume={run_dir}, start from its sub-policies "
                f"with init_from={run_dir} in a new run dir, or choose another run dir."
            )
        changes = {}
    observation_space, action_space = probe_env(cfg.env, task_sampling=cfg.mlsh.task_sampling)
    check_hidden_obs(cfg.sub.hidden_obs, int(np.prod(observation_space.shape or (1,))))
    if cfg.init_from and not (resume and checkpoint_path(run_dir).is_file()):
        init_source(cfg)
    check_writable(
        run_dir, "run dir", directory=True, need_bytes=2 * checkpoint_bytes(cfg, observation_space, action_space)
    )
    for message in advisories(cfg, observation_space, action_space):
        warn(message)
    for name, (old, new) in changes.items():
        log.warning(
            "mlsh: resume changes %s from %s to %s (recorded in %s)", name, _shown(old), _shown(new), CONFIG_NAME
        )
    if remember:
        _PREPARED[_prepared_key(cfg, run_dir, resume)] = changes
    return changes


def _check_budget(cfg: Config, iteration: int) -> None:
    """Refuses a resumed budget below what the run has done."""
    if iteration > cfg.num_iterations:
        done = iteration * cfg.steps_per_iteration
        raise ConfigError(
            f"train.total_timesteps={cfg.train.total_timesteps} is below the {done} env steps this run has done "
            f"({iteration} iterations); set train.total_timesteps={done} or more."
        )


def _prepared_key(cfg: Config, run_dir: Path, resume: bool) -> tuple[str, bool, str]:
    return str(Path(run_dir).resolve()), resume, repr(cfg.to_dict())


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
        ("sub.hidden_obs", sorted(cfg.sub.hidden_obs), sorted(source.sub.hidden_obs)),  # the members' inputs
        ("train.normalize_obs", cfg.train.normalize_obs, source.train.normalize_obs),
    ):
        if ours != theirs:
            shown = _shown(theirs)
            raise ConfigError(
                f"init_from={cfg.init_from} has {key}={shown} but this run has {_shown(ours)}; set {key}={shown} "
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

    Every check runs first (:func:`prepare_run`); then the run dir is locked for the whole call
    (:mod:`mlsh.rundir`), so that no other process can train into it at the same time.

    Args:
        cfg: settings; for a resumed run, those it was started with, where only :data:`RESUMABLE_KEYS` may
            differ (the new values are recorded in ``run_dir/config.yaml``).
        run_dir: where config, checkpoint, TensorBoard events and summary go.
        resume: continue from ``run_dir/checkpoint.pt`` exactly where it stopped (from iteration 0 if the run
            stopped before its first checkpoint).
        max_iterations: stop after this many iterations in this call (tests); the run stays resumable.

    Returns:
        A summary dict (also written to ``run_dir/summary.json``).

    Raises:
        MLSHError: a user mistake, a refused run dir or a full disk, in one sentence; nothing was written
            if it was raised before training started.
    """
    check_config(cfg)
    run_dir = Path(run_dir)
    context = DistContext.current()  # a torchrun process group, else None
    is_main = context is None or context.is_main
    if is_main:
        changes = _PREPARED.pop(_prepared_key(cfg, run_dir, resume), None)
        if changes is None:
            changes = prepare_run(cfg, run_dir, resume)
        with run_lock(run_dir):
            return _train_locked(cfg, run_dir, resume, max_iterations, context, changes)
    return _train_locked(cfg, run_dir, resume, max_iterations, context, {})


def _write_config(run_dir: Path, cfg: Config) -> None:
    write_atomic(run_dir / CONFIG_NAME, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _train_locked(
    cfg: Config,
    run_dir: Path,
    resume: bool,
    max_iterations: int | None,
    context: DistContext | None,
    changes: dict[str, tuple[Any, Any]],
) -> dict[str, Any]:
    is_main = context is None or context.is_main
    ckpt = checkpoint_path(run_dir)
    if cfg.train.torch_threads:
        torch.set_num_threads(cfg.train.torch_threads)
    payload = load_checkpoint(ckpt) if resume and ckpt.is_file() else None
    if payload is not None and payload.get("env_id") != cfg.env.id:
        raise CheckpointError(
            f"Checkpoint {ckpt} was trained on '{payload.get('env_id')}' ({payload.get('env_signature')}) but the "
            f"run uses '{cfg.env.id}'; pick the env the checkpoint was trained on."
        )
    learner = MetaLearner(cfg, dist=context)
    try:
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
            _check_budget(cfg, learner.iteration)
        elif cfg.init_from:
            init_from_run(learner, cfg)
        if is_main and (payload is None or changes):
            _write_config(run_dir, cfg)
        return _loop(cfg, run_dir, learner, ckpt, max_iterations, context)
    finally:
        learner.close()


def _loop(
    cfg: Config,
    run_dir: Path,
    learner: MetaLearner,
    ckpt: Path,
    max_iterations: int | None,
    context: DistContext | None,
) -> dict[str, Any]:
    is_main = context is None or context.is_main
    total = cfg.num_iterations
    if is_main:
        logger = RunLogger(run_dir, total, learner.iteration, progress=cfg.train.progress)
    else:  # rank 0 alone logs
        logger = RunLogger(None, total, learner.iteration, progress=False)
    steps_per_iter = cfg.steps_per_iteration
    last_metrics: dict[str, float] = {}
    done_this_call = 0
    saved_at = learner.iteration
    saved_time = time.monotonic()
    minutes = cfg.train.checkpoint_minutes
    with STOP as stop:
        try:
            try:
                while learner.iteration < total:
                    # A signal may reach some processes only: all stop at the same iteration.
                    stopping = stop.requested if context is None else context.any(stop.requested, learner.device)
                    if stopping or (max_iterations is not None and done_this_call >= max_iterations):
                        break
                    last_metrics = _iteration(learner)
                    stop.check_abort()
                    _check_finite(learner, last_metrics)
                    done_this_call += 1
                    logger.log_iteration(learner.iteration, learner.timesteps, steps_per_iter, last_metrics)
                    due = minutes is not None and time.monotonic() - saved_time >= 60 * minutes
                    if context is not None and minutes is not None:  # every process saves at the same iteration
                        due = context.any(due, learner.device)
                    if learner.iteration % cfg.train.checkpoint_every == 0 or due:
                        save_run(ckpt, learner)
                        saved_at, saved_time = learner.iteration, time.monotonic()
            finally:
                logger.close()
            stop.check_abort()
            if saved_at != learner.iteration:  # finished, interrupted or stopped by max_iterations
                save_run(ckpt, learner)
                saved_at = learner.iteration
            summary = {
                "run_dir": str(run_dir),
                "iteration": learner.iteration,
                "total_iterations": total,
                "timesteps": learner.timesteps,
                "finished": learner.iteration >= total,
                "stopped_by": stop.name,
                "last_metrics": last_metrics,
            }
            summary_file = run_dir / SUMMARY_NAME
            if done_this_call == 0 and summary_file.is_file():  # nothing ran: keep the last iteration's metrics
                with contextlib.suppress(OSError, ValueError):
                    summary["last_metrics"] = json.loads(summary_file.read_text()).get("last_metrics", {})
            if is_main:
                write_atomic(summary_file, json.dumps(summary, indent=2))
        except RunAborted as exc:
            if saved_at == learner.iteration and ckpt.is_file():
                where = f"after iteration {saved_at} was saved; continue with resume={run_dir}"
            elif ckpt.is_file():
                where = (
                    f"during iteration {learner.iteration + 1}; the checkpoint of iteration {saved_at} is kept: "
                    f"continue with resume={run_dir}"
                )
            else:
                where = f"before the first checkpoint; resume={run_dir} starts it again from iteration 0"
            raise RunAborted(f"Training {exc} {where}.", exc.exit_code) from None
    return summary


def _iteration(learner: MetaLearner) -> dict[str, float]:
    """One training iteration; an env's non-finite observation or reward gets a sentence naming it."""
    try:
        return learner.train_iteration()
    except (ValueError, RuntimeError, TrainingDivergedError) as exc:
        obs = learner.collector.obs
        returns = learner.collector.episode_return
        env_id = learner.cfg.env.id
        where = f"at iteration {learner.iteration + 1}"
        if obs is not None and not np.isfinite(np.asarray(obs, dtype=np.float64)).all():
            raise TrainingDivergedError(
                f"Env '{env_id}' returned a non-finite observation (NaN or inf) {where}; fix the env (MLSH needs "
                f"finite observations); the last checkpoint is kept."
            ) from exc
        if not np.isfinite(returns).all():
            raise TrainingDivergedError(
                f"Env '{env_id}' returned a non-finite reward {where}; fix the env (MLSH needs finite rewards); "
                f"the last checkpoint is kept."
            ) from exc
        raise


def _check_finite(learner: MetaLearner, metrics: dict[str, float]) -> None:
    bad = [key for key, value in metrics.items() if not math.isfinite(value) and "explained_variance" not in key]
    params_ok = all(torch.isfinite(p).all() for p in learner.policy.parameters())
    if bad or not params_ok:
        what = f"metric {bad[0]}" if bad else "a parameter"
        raise TrainingDivergedError(
            f"Training diverged at iteration {learner.iteration} ({what} is not finite); the last checkpoint is kept, "
            f"lower master.lr / sub.lr or max_grad_norm and resume or restart."
        )
