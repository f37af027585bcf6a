"""The command lines: errors in one sentence, train -> evaluate end to end, resume, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.reliability_helpers import TINY


def _run(module: str, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["env=Nope"],
            "Unknown env 'Nope'; available: AntMaze, AntMovement, AntObstacles, AntTwowalk, FourRooms, GymAnt, "
            "KeyDoor, MovementBandits",
        ),
        (["algo=Nope"], "Unknown algo 'Nope'; available: flat_ppo, mlsh"),
        (["mlsh.nope=3"], "Unknown setting 'mlsh.nope'"),
        (["seed"], "Malformed override 'seed': write key=value"),
        (["--bogus"], "Unknown flag '--bogus'; `--help` lists the flags Hydra takes."),
        (["seed=abc"], "seed must be an integer, got 'abc'"),
        (["mlsh.num_subpolicies=0"], "mlsh.num_subpolicies must be at least 1, got 0"),
        (["mlsh.macro_len=0"], "mlsh.macro_len must be at least 1"),
        (["mlsh.warmup_iters=-1"], "mlsh.warmup_iters must be at least 0, got -1"),
        (["train.rollout_len=55"], "must be a multiple of mlsh.macro_len (10); set train.rollout_len=60"),
        (["env.id=Nope-v0"], "Unknown env id 'Nope-v0'"),
        (["env.id=no_such_module_xyz:Env-v0"], "module 'no_such_module_xyz' cannot be imported"),
        (["master.lr=-1"], "master.lr must be positive"),
        (["train.total_timesteps=0"], "train.total_timesteps must be at least 1, got 0"),
        (["init_from=nowhere"], "init_from=nowhere: No checkpoint at nowhere/checkpoint.pt; pass the run directory"),
        (["init_from="], "init_from must be a run directory (or its checkpoint.pt) or null, got ''"),
    ],
)
def test_train_refuses_bad_input_in_one_sentence(tmp_path: Path, args: list[str], message: str) -> None:
    result = _run("mlsh.train", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_split_overrides_leaves_hydras_flags_to_hydra() -> None:
    from mlsh.cli import split_overrides
    from mlsh.errors import ConfigError

    assert split_overrides(["seed=3", "--cfg", "job", "env=AntMaze", "-m", "+a.b=1"]) == [
        "seed=3",
        "env=AntMaze",
        "+a.b=1",
    ]
    with pytest.raises(ConfigError, match=r"^argument --cfg/-c: invalid choice: 'nope'"):
        split_overrides(["--cfg", "nope"])


def test_train_evaluate_resume_end_to_end(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = _run(
        "mlsh.train",
        *TINY,
        "mlsh.warmup_iters=1",
        "train.total_timesteps=400",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    assert "finished at iteration 2/2" in first.stdout
    assert (run_dir / "config.yaml").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()
    events = list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert events, "TensorBoard events expected"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / "tb"))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    for tag in (
        "rollout/ep_rew_mean",
        "time/fps",
        "master/policy_loss",
        "sub/policy_loss",
        "meta/sub_usage_0",
        "train/n_updates",
    ):
        assert tag in tags, tag

    resumed = _run("mlsh.train", f"resume={run_dir}", "train.total_timesteps=600", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "finished at iteration 3/3" in resumed.stdout
    payload = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert payload["learner"]["iteration"] == 3

    evaluated = _run(
        "mlsh.evaluate",
        f"checkpoint={run_dir}",
        "num_tasks=3",
        "oracle_episodes=2",
        "baseline_scratch=true",
        cwd=tmp_path,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert "mean" in evaluated.stdout and "oracle" in evaluated.stdout
    result = json.loads((run_dir / "eval" / "evaluation_seed0.json").read_text())
    assert result["num_tasks"] == 3 and len(result["return_after_adaptation_per_task"]) == 3
    assert 0.0 <= result["ratio"] < 2.0
    assert len(result["adaptation_curve"]) == 1  # the run's warmup_iters
    assert len(result["scratch_curve"]) == 1 and result["auc_ratio"] >= 0
    assert "area-under-curve ratio" in evaluated.stdout


def test_hydra_flags_still_work(tmp_path: Path) -> None:
    shown = _run("mlsh.train", "--cfg", "job", "mlsh.macro_len=5", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "macro_len: 5" in shown.stdout and "num_subpolicies: 2" in shown.stdout


@pytest.mark.parametrize("module", ["mlsh.evaluate", "mlsh.inspect"])
def test_commands_that_read_a_run_answer_help_and_cfg_without_work(tmp_path: Path, module: str) -> None:
    # The error for an unknown setting sends users to `--cfg job`: it must list the settings, not run the command.
    run = tmp_path / "run"
    run.mkdir()
    shown = _run(module, "--cfg", "job", f"checkpoint={run}", "num_tasks=3", "master.lr=0.003", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"checkpoint: {run}\n" in shown.stdout and "\nnum_tasks: 3\n" in shown.stdout
    assert "\nmaster:\n  lr: 0.003\n" in shown.stdout
    helped = _run(module, "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith(f"# Settings of `python -m {module} checkpoint=<run dir> [key=value ...]`.")
    assert "num_tasks:" in helped.stdout
    assert list(run.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing written
    unknown = _run(module, "--cfg", "job", "master.nope=1", cwd=tmp_path)
    assert unknown.returncode == 2 and "Unknown setting 'master.nope'" in unknown.stderr


def test_evaluate_errors(tmp_path: Path) -> None:
    missing = _run("mlsh.evaluate", cwd=tmp_path)
    assert missing.returncode == 2 and "checkpoint is required" in missing.stderr
    nowhere = _run("mlsh.evaluate", f"checkpoint={tmp_path / 'nope'}", cwd=tmp_path)
    assert nowhere.returncode == 2 and "No checkpoint at" in nowhere.stderr
    bad_resume = _run("mlsh.train", f"resume={tmp_path / 'nope'}", cwd=tmp_path)
    assert bad_resume.returncode == 2 and "is not a directory" in bad_resume.stderr


def test_ctrl_c_saves_and_exits_cleanly(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    err_path = tmp_path / "stderr.txt"
    # The progress bar (on stderr) says when an iteration is done: the signal comes after one, however slow the
    # machine, and long before the 3M-step budget ends.
    with open(err_path, "w") as err:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "mlsh.train", *TINY, "train.progress=true", "train.checkpoint_every=1000",
                f"hydra.run.dir={run_dir}",
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not re.search(r"\| *[1-9]\d*/\d+", err_path.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=60)
    stderr = err_path.read_text()
    assert process.returncode == 0, stderr
    assert "stopped (resume with resume=<run dir>)" in stdout
    payload = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert payload["learner"]["iteration"] >= 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["finished"] is False
