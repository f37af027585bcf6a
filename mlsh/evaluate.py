"""``python -m mlsh.evaluate checkpoint=<run dir> num_tasks=20``: adapt fresh masters on unseen tasks.

Prints a per-task table and a summary per method, and writes next to each other (default
``<run dir>/eval/evaluation_seed<seed>.json``): the result as JSON, per-task adaptation curves as CSV, a PNG
plot, TensorBoard ``eval_unseen/*`` scalars under ``tb/<name>`` and, with ``video=true``, a video per task of the
adapted agent (GIF and MP4, or one of them with ``video_format=gif`` or ``mp4``). Evaluations never write over
each other: a default name that is taken gets ``_1``, ``_2``, ...; an explicit ``output=`` that holds results is
refused unless ``overwrite=true``. Every argument and the output directory are checked before any work.

    python -m mlsh.evaluate checkpoint=<run> env=MovementBandits split=heldout num_tasks=20 \\
        baselines=[scratch,flat,finetune] baseline_runs.flat=<flat_ppo run> video=true
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym

from mlsh import pretrained
from mlsh.actor import PolicyActor
from mlsh.checkpoint import checkpoint_path, write_atomic
from mlsh.checks import check_writable, finite_number
from mlsh.cli import compose_config, config_dir, fail, info_request, run_cli, split_overrides
from mlsh.config import Config, EnvConfig, config_from_dict
from mlsh.errors import ConfigError
from mlsh.evaluation import (
    EVAL_ENV_SEED_OFFSET,
    AdaptedMasters,
    AdaptOptions,
    CompareOptions,
    check_positive_int,
    evaluate_run,
    format_table,
)
from mlsh.report import plot_curves, write_csv, write_tensorboard
from mlsh.rundir import OutputClaim, claim_output
from mlsh.video import check_video_format, record_until_goal, write_video


def _check_list(data: dict[str, Any], key: str) -> list[str]:
    value = data[key]
    if not isinstance(value, list):
        raise ConfigError(f"{key} must be a list, got {value!r}; write e.g. {key}=[scratch,flat].")
    return [str(v) for v in value]


def command_videos(data: dict[str, Any], adapted: AdaptedMasters, output: Path) -> list[Path]:
    """The videos of a command's ``video*`` settings (:func:`check_video_settings`), next to its ``output``."""
    return write_videos(
        adapted, output.parent, output.stem, data["seed"], data["device"] or "cpu", data["video_tasks"],
        data["video_fps"], data["video_format"], data["video_tries"],
    )  # fmt: skip


def write_videos(
    adapted: AdaptedMasters,
    out_dir: Path,
    stem: str,
    seed: int,
    device: str,
    max_tasks: int | None,
    fps: float,
    video_format: str,
    tries: int = 1,
) -> list[Path]:
    """A video per task (``<stem>_taskNN.gif`` and/or ``.mp4``, as ``video_format`` says) of the agent with that
    task's adapted master (the active sub-policy in each frame). On envs whose info says ``goal_reached``, up to
    ``tries`` episodes per task are run (seeds one apart) and the first that reaches the goal is kept, else the
    last, with a notice."""
    env_cfg = adapted.cfg.env
    count = len(adapted.tasks) if max_tasks is None else min(max_tasks, len(adapted.tasks))
    paths = []
    for index in range(count):
        task = adapted.tasks[index]
        agent = PolicyActor.from_policy_state(
            adapted.cfg, adapted.policy_state, index, device, adapted.path, master_task=task, seed=seed + index
        )
        env = video_env(env_cfg)
        env.unwrapped.task = task
        try:
            recording = record_until_goal(agent, env, seed + EVAL_ENV_SEED_OFFSET + index, tries)
            if recording.goal_reached is False:
                print(f"mlsh: task {index}: none of {tries} filmed episodes reached the goal; the video shows the last")
        finally:
            env.close()
        paths += write_video(out_dir / f"{stem}_task{index:02d}", recording.frames, fps, video_format)
    return paths


class DryRun(Exception):
    """Raised by a command's ``before_work`` in :func:`check_command`: every check passed, no work is done."""


def parse_job(config_name: str, argv: list[str] | None = None) -> dict[str, Any]:
    """The settings of a command that reads a run (``configs/<config_name>.yaml`` and the command line,
    ``argv`` or ``sys.argv``), refusing a missing checkpoint."""
    argv = sys.argv[1:] if argv is None else argv
    overrides = split_overrides(argv)
    request = info_request(argv)
    if request == "help":  # the settings with their comments, then nothing else
        print((config_dir() / f"{config_name}.yaml").read_text(), end="")
        raise SystemExit(0)
    data = compose_config(config_name, overrides)
    if request == "cfg":  # every setting as this command line would use it, then nothing else
        import yaml

        print(yaml.safe_dump(data, sort_keys=False), end="")
        raise SystemExit(0)
    if data.get("checkpoint") in (None, "???"):
        fail("checkpoint is required; pass checkpoint=<run dir>.")
    if not isinstance(data["checkpoint"], str) or not data["checkpoint"].strip():
        raise ConfigError(f"checkpoint must be a run dir, got {data['checkpoint']!r}; pass checkpoint=<run dir>.")
    output = data.get("output")
    if output is not None and (not isinstance(output, str) or not output.strip()):
        raise ConfigError(f"output must be a file path or null, got {output!r}; pass e.g. output=results/eval.json.")
    return data


def check_bool(data: dict[str, Any], key: str) -> bool:
    value = data[key]
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}; write {key}=true or {key}=false.")
    return value


def run_output(run_dir: str, default_name: str) -> Path:
    """The default output of a command that reads ``run_dir``: beside its checkpoint, or for a shipped run
    (``pretrained:<Name>``) under ``runs/pretrained/<Name>/``."""
    shipped_name = pretrained.name(run_dir)
    if shipped_name is not None:
        return pretrained.OUTPUT_ROOT / shipped_name / default_name
    return checkpoint_path(run_dir).parent / default_name


def check_output(output: str | None, run_dir: str, default_name: str, need_bytes: int) -> None:
    """Refuses an output path that cannot be written, before any work (nothing is created)."""
    path = Path(output) if output else run_output(run_dir, default_name)
    check_writable(path.parent, "output dir", directory=True, need_bytes=need_bytes)
    if output:
        check_writable(path, "output", directory=False)


class CommandOutput:
    """The output files of a command that reads a run (``mlsh.evaluate``, ``mlsh.inspect``).

    Made before the work: refuses an output path that cannot be written (:func:`check_output`). The work's
    ``before_work`` calls :meth:`claim` once every argument has been checked; a dry run (``check_command``)
    stops there, with nothing claimed or written. Used as a context manager around the work, it releases the
    claim when the command ends, whether the work succeeded or failed, and ends a dry run quietly.

    Args:
        data: the command's settings (``output``, ``checkpoint``).
        default_name: the output's path relative to the run dir when ``output`` is null.
        need_bytes: free space the output needs.
        overwrite: replace an explicit output's earlier files.
        dry_run: stop at :meth:`claim`.
    """

    def __init__(
        self, data: dict[str, Any], default_name: str, need_bytes: int, overwrite: bool, dry_run: bool
    ) -> None:
        check_output(data["output"], data["checkpoint"], default_name, need_bytes)
        self.explicit = data["output"]
        self.default = run_output(data["checkpoint"], default_name)
        self.overwrite = overwrite
        self.dry_run = dry_run
        self._claim: OutputClaim | None = None

    def claim(self) -> None:
        """Claims the output path (or, in a dry run, ends the command: every check has passed)."""
        if self.dry_run:
            raise DryRun
        self._claim = claim_output(self.explicit, self.default, self.overwrite)

    @property
    def json_path(self) -> Path:
        assert self._claim is not None, "claim() comes before the work"
        return self._claim.json_path

    def __enter__(self) -> CommandOutput:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if self._claim is not None:
            self._claim.release()
        return exc_type is DryRun


def video_env(env_cfg: EnvConfig) -> gym.Env:
    """The env of ``env_cfg`` rendering ``rgb_array`` frames.

    Raises:
        ConfigError: the env cannot render them.
    """
    kwargs: dict[str, Any] = {**env_cfg.kwargs, "render_mode": "rgb_array"}
    if env_cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = env_cfg.max_episode_steps
    try:
        return gym.make(env_cfg.id, **kwargs)
    except (TypeError, ValueError, gym.error.Error) as exc:
        raise ConfigError(f"'{env_cfg.id}' cannot render rgb_array frames ({exc}); run without video=true.") from exc


def env_override(data: dict[str, Any]) -> EnvConfig | None:
    """The env a command that reads a run evaluates on instead of the run's: ``env=<Name>`` composes
    ``configs/env/<Name>.yaml`` (Hydra's env group), of which only the env section matters; None without it.

    Raises:
        ConfigError: ``+env.<key>=...`` without ``env=<Name>``: the section would start from the default env,
            not the run's.
    """
    section = data.get("env")
    if not section:
        return None
    if "id" not in section:
        keys = ", ".join(f"env.{key}" for key in section)
        raise ConfigError(
            f"{keys} changes an env that this command does not name; add env=<Name> for the run's env "
            "(e.g. env=AntMaze +env.kwargs.test_layouts=training_kind), or drop the env override."
        )
    return config_from_dict({"env": section}).env


def adapt_options(data: dict[str, Any], deterministic: bool = False) -> AdaptOptions:
    """The adaptation settings of a command that reads a run (``adapt_iters``, ``adapt_macro_len``,
    ``envs_per_task``, ``master``, ``device``)."""
    return AdaptOptions(
        iters=data["adapt_iters"],
        macro_len=data["adapt_macro_len"],
        envs_per_task=data["envs_per_task"],
        master=data["master"],
        deterministic=deterministic,
        device=data["device"],
    )


def where_written(json_path: Path, png: Path | None, tb: Path | None) -> list[str]:
    """The closing lines of an evaluation: where its JSON and plot are, and how to see its TensorBoard scalars."""
    lines = [f"mlsh: results in {json_path}" + (f", plot in {png}" if png is not None else "")]
    if tb is not None:
        lines.append(f"mlsh: see them in TensorBoard with: tensorboard --logdir {tb}")
    return lines


def main() -> None:
    _evaluate(sys.argv[1:], dry_run=False)


def check_command(argv: list[str]) -> None:
    """Every check ``python -m mlsh.evaluate <argv>`` makes before any work (arguments, the run, the baseline runs,
    the output); does no work and writes nothing.

    Raises:
        MLSHError: one sentence naming the fix.
    """
    _evaluate(argv, dry_run=True)


def check_video_settings(data: dict[str, Any]) -> bool:
    """Checks a command's ``video*`` settings before any work (MP4s need imageio-ffmpeg); returns ``video``.

    Raises:
        ConfigError: a bad value, with the fix.
    """
    video = check_bool(data, "video")
    check_positive_int("video_tasks", data["video_tasks"], 2, nullable=True)
    check_positive_int("video_tries", data["video_tries"], 3)
    if not finite_number(data["video_fps"]) or data["video_fps"] <= 0:
        raise ConfigError(f"video_fps must be a positive number, got {data['video_fps']!r}; set e.g. video_fps=10.")
    check_video_format(data["video_format"], need_writer=video)
    return video


def _evaluate(argv: list[str], dry_run: bool) -> None:
    data = parse_job("evaluate", argv)
    baselines = _check_list(data, "baselines")
    deterministic, baseline_scratch = check_bool(data, "deterministic"), check_bool(data, "baseline_scratch")
    plot, tensorboard, overwrite = (check_bool(data, k) for k in ("plot", "tensorboard", "overwrite"))
    video = check_video_settings(data)
    env = env_override(data)
    out = CommandOutput(data, f"eval/evaluation_seed{data['seed']}.json", 32 * 2**20, overwrite, dry_run)

    def before_work(cfg: Config) -> None:  # every argument has been checked: claim the output, then work
        if video:
            video_env(cfg.env).close()
        out.claim()

    with out:
        result = evaluate_run(
            data["checkpoint"],
            num_tasks=data["num_tasks"],
            seed=data["seed"],
            adapt=adapt_options(data, deterministic),
            compare=CompareOptions(
                oracle=data["oracle"],
                oracle_episodes=data["oracle_episodes"],
                baselines=[*baselines, *(["scratch"] if baseline_scratch else [])],
                baseline_runs=data["baseline_runs"] or {},
            ),
            env=env,
            split=data["split"],
            keep_masters=video,
            before_work=before_work,
        )
        public = result.to_dict()
        print(format_table(public))
        output = out.json_path
        written = [write_atomic(output, json.dumps(public, indent=2, allow_nan=False))]
        written.append(write_csv(public, output.with_suffix(".csv")))
        png = tb = None
        if plot:
            png = plot_curves(public, output.with_suffix(".png"))
            written.append(png)
        if tensorboard:
            tb = output.parent / "tb" / output.stem
            if tb.exists():  # overwrite=true: the earlier evaluation's events would mix with these
                shutil.rmtree(tb)
            written.append(write_tensorboard(public, tb))
        if video:
            assert result.adapted is not None  # keep_masters=video
            written += command_videos(data, result.adapted, output)
        for path in written:
            print(f"mlsh: wrote {path}")
        for line in where_written(output, png, tb):
            print(line)


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
