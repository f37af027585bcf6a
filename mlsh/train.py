"""``python -m mlsh.train [key=value ...]``: train MLSH (thin Hydra entry point over :mod:`mlsh.trainer`).

Examples::

    python -m mlsh.train                                   # MovementBandits, paper settings
    python -m mlsh.train env=MovementBandits seed=3 mlsh.warmup_iters=9
    python -m mlsh.train resume=runs/MovementBandits/<run>  # continue an interrupted run
    torchrun --nproc_per_node=2 -m mlsh.train env=AntMaze   # 2 processes share the slots (mlsh.distributed)
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from mlsh.cli import compose_config, config_dir, fail, override_value, run_cli, split_overrides
from mlsh.config import config_from_dict
from mlsh.distributed import destroy_process_group, env_rank, init_process_group, launched_by_torchrun
from mlsh.envs import make_env
from mlsh.errors import MLSHError
from mlsh.trainer import init_source, load_run_config, train


def _task(dcfg: DictConfig) -> None:
    data = OmegaConf.to_container(dcfg, resolve=True)
    assert isinstance(data, dict)
    resume = data.pop("resume", None)
    context = None
    failed = True
    try:
        if resume:
            run_dir = Path(resume)
            cfg = load_run_config(run_dir)
            extend = override_value(sys.argv[1:], "train.total_timesteps")
            if extend is not None:
                cfg.train.total_timesteps = int(extend)
        else:
            run_dir = Path(HydraConfig.get().runtime.output_dir)
            cfg = config_from_dict(data)
        if launched_by_torchrun():
            context = init_process_group(cfg.device)
            run_dir = Path(context.broadcast_object(str(run_dir)))  # rank 0's run dir (its timestamp) for all
            context.local_slots(cfg.mlsh.num_slots)  # refuses a slot count that does not split evenly
        if context is None or context.is_main:
            print(f"mlsh: run dir {run_dir}", file=sys.stderr)
            if cfg.init_from and not resume:
                print(f"mlsh: sub-policies and normaliser from {cfg.init_from}", file=sys.stderr)
        summary = train(cfg, run_dir, resume=bool(resume))
        failed = False
    except MLSHError as exc:
        fail(str(exc))
    finally:
        destroy_process_group(barrier=not failed)
    if context is not None and not context.is_main:
        return
    state = "finished" if summary["finished"] else "stopped (resume with resume=<run dir>)"
    print(f"mlsh: {state} at iteration {summary['iteration']}/{summary['total_iterations']}; run dir {run_dir}")


def main() -> None:
    """Checks the command line before Hydra starts, then runs the Hydra job."""
    overrides = split_overrides(sys.argv[1:])
    resume = override_value(overrides, "resume")
    if resume:
        run_dir = Path(resume)
        if not run_dir.is_dir():
            fail(f"resume={resume} is not a directory; pass the run dir printed when the run started.")
        load_run_config(run_dir)  # refuses a corrupt or foreign run before anything is written
        # Keep Hydra's files out of the resumed run so nothing of the original run is overwritten.
        sys.argv += [f"hydra.run.dir={run_dir}", "hydra.output_subdir=null"]
    if launched_by_torchrun() and env_rank() != 0:
        # Rank 0 alone writes the run dir (train() gets its path from rank 0): no Hydra files here.
        sys.argv += ["hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=disabled"]
    asks_help = any(flag in sys.argv for flag in ("--help", "-h", "--cfg", "-c"))
    if not resume and not asks_help:
        data = compose_config("train", overrides)
        data.pop("resume", None)
        cfg = config_from_dict(data)
        make_env(cfg.env).close()  # impossible settings are refused before any work
        if cfg.init_from:
            init_source(cfg)  # so is a missing or mismatched init_from run
    hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")(_task)()


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
