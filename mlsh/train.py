"""``python -m mlsh.train [key=value ...]``: train MLSH (thin Hydra entry point over :mod:`mlsh.trainer`).

Examples::

    python -m mlsh.train                                   # MovementBandits (configs/env/MovementBandits.yaml)
    python -m mlsh.train env=MovementBandits seed=3 mlsh.warmup_iters=9
    python -m mlsh.train resume=runs/MovementBandits/<run>  # continue an interrupted run
    torchrun --nproc_per_node=2 -m mlsh.train env=AntMaze   # 2 processes share the slots (mlsh.distributed)

Every check (settings, device, env, run dir, disk) runs before Hydra starts, so that a refused command writes
nothing; the run dir is then locked for the whole run (:mod:`mlsh.rundir`). See docs/reliability.md.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import hydra
import yaml
from omegaconf import DictConfig

from mlsh import rundir
from mlsh.cli import (
    available_choices,
    compose_config,
    config_dir,
    fail,
    hydra_value,
    override_value,
    register_defaults,
    run_cli,
    split_overrides,
    training_job,
)
from mlsh.config import Config, config_from_dict
from mlsh.distributed import destroy_process_group, env_rank, init_process_group, launched_by_torchrun
from mlsh.errors import ConfigError, MLSHError
from mlsh.trainer import STOP, load_run_config, prepare_run, train

# What main() prepared for the Hydra job: (settings, run dir, resume).
_JOB: tuple[Config, Path, bool] | None = None


def _task(dcfg: DictConfig) -> None:
    assert _JOB is not None, "mlsh.train's job runs through main()"
    cfg, run_dir, resume = _JOB
    context = None
    failed = True
    try:
        if launched_by_torchrun():
            context = init_process_group(cfg.device)
            run_dir = Path(context.broadcast_object(str(run_dir)))  # rank 0's run dir (its timestamp) for all
            context.local_slots(cfg.mlsh.num_slots)  # refuses a slot count that does not split evenly
        if context is None or context.is_main:
            print(f"mlsh: run dir {run_dir}", file=sys.stderr)
            if cfg.init_from and not resume:
                print(f"mlsh: sub-policies and normaliser from {cfg.init_from}", file=sys.stderr)
        summary = train(cfg, run_dir, resume=resume)
        failed = False
    except MLSHError as exc:
        fail(str(exc), exc.exit_code)
    finally:
        destroy_process_group(barrier=not failed)
    if context is not None and not context.is_main:
        return
    state = "finished" if summary["finished"] else "stopped (resume with resume=<run dir>)"
    print(f"mlsh: {state} at iteration {summary['iteration']}/{summary['total_iterations']}; run dir {run_dir}")
    if summary["finished"]:
        print(f"mlsh: evaluate it with: python -m mlsh.evaluate checkpoint={run_dir}")
    else:
        print(f"mlsh: continue it with: python -m mlsh.train resume={run_dir}")
    print(f"mlsh: watch it in TensorBoard with: tensorboard --logdir {run_dir / 'tb'}")
    if summary.get("stopped_by") == "SIGTERM":  # saved, but ended by a signal: the exit status says so
        raise SystemExit(128 + signal.SIGTERM)


def _flat_keys(data: Any, prefix: str = "") -> list[str]:
    if not isinstance(data, dict):
        return [prefix.rstrip(".")]
    keys = []
    for key, value in data.items():
        if key == "defaults" and not prefix:
            continue
        keys += _flat_keys(value, f"{prefix}{key}.") if key != "kwargs" else [f"{prefix}{key}"]
    return keys


def _touched_keys(overrides: list[str]) -> list[str]:
    """The settings the overrides set: ``a.b=v`` sets ``a.b``; ``env=<Name>`` (any config group) sets every key of
    ``configs/env/<Name>.yaml``."""
    keys = []
    for item in overrides:
        name, _, value = item.partition("=")
        name = name.lstrip("+~")
        group = config_dir() / name
        if group.is_dir() and value in available_choices(name):
            keys += _flat_keys(yaml.safe_load((group / f"{value}.yaml").read_text()) or {})
        else:
            keys.append(name)
    return keys


def _get(data: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        data = data[part]
    return data


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value


def resume_config(run_dir: Path, overrides: list[str]) -> Config:
    """The settings of ``resume=run_dir``: the run's own, with the keys the command line sets replaced
    (:func:`mlsh.trainer.check_resume_changes` then allows budget-like keys only)."""
    saved = load_run_config(run_dir)
    given = [o for o in overrides if o.partition("=")[0].lstrip("+~") != "resume" and not o.startswith("hydra")]
    if not given:
        return saved
    composed = compose_config("train", given)
    data = saved.to_dict()
    for key in _touched_keys(given):
        try:
            _set(data, key, _get(composed, key))
        except (KeyError, TypeError):
            continue  # a key the composed job does not have (Hydra has refused unknown ones already)
    return config_from_dict(data)


def main() -> None:
    """Checks everything before Hydra starts (nothing is written for a refused command), claims the run dir, then
    runs the Hydra job."""
    with STOP:  # a SIGTERM or Ctrl-C from here on stops the run cleanly (before its first iteration if need be)
        _main()


def check_command(argv: list[str], remember: bool = False) -> tuple[Config, Path, bool]:
    """Every check ``python -m mlsh.train <argv>`` makes before it writes anything: the overrides, the settings
    (on resume, the run's and the changes allowed), and :func:`mlsh.trainer.prepare_run`'s (device, env, run dir,
    disk). Returns ``(settings, run dir, resume)``; writes nothing.

    Raises:
        MLSHError: one sentence naming the fix.
    """
    overrides = split_overrides(argv)
    resume = override_value(overrides, "resume")
    if resume:
        run_dir = Path(resume)
        if not run_dir.is_dir():
            raise ConfigError(f"resume={resume} is not a directory; pass the run dir printed when the run started.")
        cfg = resume_config(run_dir, overrides)
    else:
        cfg, run_dir = training_job(overrides)
    if not launched_by_torchrun() or env_rank() == 0:  # rank 0 alone owns the run dir
        prepare_run(cfg, run_dir, bool(resume), remember=remember)
    return cfg, run_dir, bool(resume)


def _main() -> None:
    global _JOB
    asks_help = any(flag in sys.argv for flag in ("--help", "-h", "--cfg", "-c", "--info", "-i"))
    if asks_help:
        _run_hydra_job([])
        return
    cfg, run_dir, resume = check_command(sys.argv[1:], remember=True)
    rank0 = not launched_by_torchrun() or env_rank() == 0
    if not rank0:
        # Rank 0 alone writes the run dir (train() gets its path from rank 0): no Hydra files here.
        hydra_overrides = ["hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=disabled"]
    elif resume:
        # Keep Hydra's files out of the resumed run so nothing of the original run is overwritten.
        hydra_overrides = [f"hydra.run.dir={hydra_value(run_dir)}", "hydra.output_subdir=null"]
    else:  # the dir checked and locked below, whatever the clock says when Hydra starts
        hydra_overrides = [f"hydra.run.dir={hydra_value(run_dir)}"]
    lock = rundir.acquire(run_dir) if rank0 else None
    _JOB = (cfg, run_dir, resume)
    try:
        _run_hydra_job(hydra_overrides)
    finally:
        if lock is not None:
            lock.release()


def _run_hydra_job(hydra_overrides: list[str]) -> None:
    """Runs the job through Hydra, which composes ``configs/train.yaml`` over the library defaults and writes its
    files and log into the run dir; ``hydra_overrides`` follow the command line's (Hydra reads ``sys.argv``)."""
    register_defaults()
    sys.argv = [*sys.argv, *hydra_overrides]
    hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")(_task)()


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
