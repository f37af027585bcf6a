"""``python -m mlsh.evaluate checkpoint=<run dir> num_tasks=20``: adapt fresh masters on unseen tasks.

Prints a per-task table and a summary per method, and writes next to each other (default
``<run dir>/eval/``): the result as JSON, per-task adaptation curves as CSV, a PNG plot, TensorBoard
``eval_unseen/*`` scalars and, with ``video=true``, a GIF per task of the adapted agent.

    python -m mlsh.evaluate checkpoint=<run> env=MovementBandits split=heldout num_tasks=20 \\
        baselines=[scratch,flat,finetune] baseline_runs.flat=<flat_ppo run> video=true
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym

from mlsh.cli import compose_config, fail, run_cli, split_overrides
from mlsh.config import config_from_dict
from mlsh.errors import ConfigError
from mlsh.evaluation import EVAL_ENV_SEED_OFFSET, AdaptedMasters, evaluate_run, format_table
from mlsh.report import plot_curves, write_csv, write_tensorboard


def _check_list(data: dict[str, Any], key: str) -> list[str]:
    value = data[key]
    if not isinstance(value, list):
        raise ConfigError(f"{key} must be a list, got {value!r}; write e.g. {key}=[scratch,flat].")
    return [str(v) for v in value]


def write_videos(
    adapted: AdaptedMasters, out_dir: Path, stem: str, seed: int, device: str, max_tasks: int | None, fps: float
) -> list[Path]:
    """A GIF per task of the agent with that task's adapted master (the active sub-policy in each frame)."""
    from agents.agent import MLSHAgent
    from agents.video import record_episode, write_gif

    env_cfg = adapted.cfg.env
    count = len(adapted.tasks) if max_tasks is None else min(max_tasks, len(adapted.tasks))
    paths = []
    for index in range(count):
        task = adapted.tasks[index]
        agent = MLSHAgent.from_policy_state(
            adapted.cfg, adapted.policy_state, index, device, adapted.path, master_task=task, seed=seed + index
        )
        kwargs: dict[str, Any] = {**env_cfg.kwargs, "render_mode": "rgb_array"}
        if env_cfg.max_episode_steps is not None:
            kwargs["max_episode_steps"] = env_cfg.max_episode_steps
        try:
            env = gym.make(env_cfg.id, **kwargs)
        except (TypeError, ValueError, gym.error.Error) as exc:
            raise ConfigError(
                f"'{env_cfg.id}' cannot render rgb_array frames ({exc}); run without video=true."
            ) from exc
        env.unwrapped.task = task
        try:
            frames, _, _ = record_episode(agent, env, seed=seed + EVAL_ENV_SEED_OFFSET + index)
        finally:
            env.close()
        paths.append(write_gif(out_dir / f"{stem}_task{index:02d}.gif", frames, fps))
    return paths


def parse_job(config_name: str) -> dict[str, Any]:
    """The settings of a command that reads a run (``configs/<config_name>.yaml`` and the command line),
    refusing a missing checkpoint."""
    data = compose_config(config_name, split_overrides(sys.argv[1:]))
    if data.get("checkpoint") in (None, "???"):
        fail("checkpoint is required; pass checkpoint=<run dir>.")
    return data


def _check_bool(data: dict[str, Any], key: str) -> bool:
    value = data[key]
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}; write {key}=true or {key}=false.")
    return value


def main() -> None:
    data = parse_job("evaluate")
    baselines = _check_list(data, "baselines")
    deterministic = _check_bool(data, "deterministic")
    # env=<Name> composes configs/env/<Name>.yaml (Hydra's env group); only its env section matters here.
    env = config_from_dict({"env": data["env"]}).env if data.get("env") else None
    result = evaluate_run(
        data["checkpoint"],
        num_tasks=data["num_tasks"],
        seed=data["seed"],
        adapt_iters=data["adapt_iters"],
        oracle=data["oracle"],
        oracle_episodes=data["oracle_episodes"],
        device=data["device"],
        scratch_baseline=data["baseline_scratch"],
        baselines=baselines,
        baseline_runs=data["baseline_runs"] or {},
        env=env,
        split=data["split"],
        keep_masters=bool(data["video"]),
        deterministic=deterministic,
        envs_per_task=data["envs_per_task"],
        master=data["master"],
    )
    print(format_table(result))
    output = Path(data["output"] or Path(result["run_dir"]) / "eval" / f"evaluation_seed{data['seed']}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    written = [output]
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    output.write_text(json.dumps(public, indent=2, allow_nan=False))
    written.append(write_csv(public, output.with_suffix(".csv")))
    if data["plot"]:
        written.append(plot_curves(public, output.with_suffix(".png")))
    if data["tensorboard"]:
        written.append(write_tensorboard(public, output.parent / "tb" / output.stem))
    if data["video"]:
        device = data["device"] or "cpu"
        videos = write_videos(
            result["_adapted"], output.parent, output.stem, data["seed"], device, data["video_tasks"], data["video_fps"]
        )
        written += videos
    for path in written:
        print(f"mlsh: wrote {path}")


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
