"""Kills (docs: reliability): SIGTERM is handled like the first Ctrl-C, a second signal aborts in one line,
checkpoints also come by wall time, and SIGTERM or kill -9 at random moments, each followed by a resume, end with
the parameters of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mlsh import trainer as trainer_module
from mlsh.checkpoint import load_checkpoint
from mlsh.trainer import train
from tests.conftest import small_config
from tests.reliability_helpers import TINY, cli

# 16 short iterations of 2 slots x 2 envs x 50 steps; a checkpoint after every iteration, by wall time only.
KILL_RUN = [
    *TINY,
    "master.update_epochs=2",
    "sub.update_epochs=2",
    "train.total_timesteps=3200",
    "train.checkpoint_every=1000",
    "train.checkpoint_minutes=1e-6",
]


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "mlsh.train", *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def _learner_tensors(run: Path) -> dict[str, torch.Tensor]:
    learner = load_checkpoint(run)["learner"]
    out = {f"policy.{k}": v for k, v in learner["policy"].items()}
    for name in ("master_optimizer", "sub_optimizer"):
        for index, state in learner[name]["state"].items():
            out.update({f"{name}.{index}.{k}": v for k, v in state.items() if isinstance(v, torch.Tensor)})
    out["torch_rng"] = learner["torch_rng"]
    return out


def test_sigterm_and_kill_9_at_random_moments_then_resume_equal_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = cli("mlsh.train", *KILL_RUN, "hydra.run.dir=straight", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    run = tmp_path / "killed"
    rng = random.Random(17)
    kills = []
    for attempt in range(3):
        args = [f"resume={run}"] if (run / "config.yaml").exists() else [*KILL_RUN, f"hydra.run.dir={run}"]
        process = _start(args, tmp_path)
        how = signal.SIGTERM if attempt % 2 == 0 else signal.SIGKILL
        _wait_for(run / "config.yaml", process)
        time.sleep(rng.uniform(0.0, 1.0))  # somewhere in the middle of an iteration or a save
        process.send_signal(how)
        _, err = process.communicate(timeout=120)
        kills.append((how.name, process.returncode))
        if how == signal.SIGTERM and process.returncode == 143:
            assert "mlsh: SIGTERM received: finishing this iteration, saving" in err
            assert "Traceback" not in err
            summary = json.loads((run / "summary.json").read_text())
            assert summary["stopped_by"] == "SIGTERM" and not summary["finished"]
        else:
            assert process.returncode in (0, -signal.SIGKILL, -signal.SIGTERM), (how, err)
    final = cli("mlsh.train", f"resume={run}", cwd=tmp_path)
    assert final.returncode == 0 and "finished at iteration 16/16" in final.stdout, (kills, final.stderr)
    a, b = _learner_tensors(tmp_path / "straight"), _learner_tensors(run)
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, (kills, different[:5])
    assert any(code == 143 for _, code in kills), kills  # a SIGTERM was handled (saved, exit 143)
    assert any(code == -signal.SIGKILL for _, code in kills), kills


@pytest.mark.parametrize(("first", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_second_signal_aborts_in_one_line_and_keeps_the_last_checkpoint(
    tmp_path: Path, first: signal.Signals, code: int
) -> None:
    run = tmp_path / "run"
    process = _start([*TINY, "train.total_timesteps=200000", "train.checkpoint_minutes=null", f"hydra.run.dir={run}"],
                     tmp_path)  # fmt: skip
    _wait_for(run / "checkpoint.pt", process)  # checkpoint_every=1: a checkpoint after the first iteration
    process.send_signal(first)
    # Two signals of one kind that arrive before Python runs its handler count as one: wait for the first's notice.
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if f"mlsh: {first.name} received" in line:
            break
    process.send_signal(first)
    _, rest = process.communicate(timeout=120)
    err = "".join(seen) + rest
    assert process.returncode == code, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"aborted by a second {first.name}" in errors[0], err
    assert load_checkpoint(run)["learner"]["iteration"] >= 1
    assert not (run / ".mlsh.lock").exists()


def test_sigterm_before_the_first_checkpoint_leaves_a_resumable_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    process = _start([*TINY, "train.total_timesteps=200000", "train.checkpoint_every=1000",
                      "train.checkpoint_minutes=null", f"hydra.run.dir={run}"], tmp_path)  # fmt: skip
    _wait_for(run / "config.yaml", process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "stopped (resume with resume=<run dir>)" in out
    done = json.loads((run / "summary.json").read_text())["iteration"]  # 0 when stopped before any iteration
    resumed = cli("mlsh.train", f"resume={run}", f"train.total_timesteps={200 * (done + 1)}", cwd=tmp_path)
    assert resumed.returncode == 0 and f"finished at iteration {done + 1}/{done + 1}" in resumed.stdout, resumed.stderr


def test_checkpoints_come_by_wall_time_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saves: list[int] = []
    original = trainer_module.save_checkpoint

    def counting(path: Path, payload: dict) -> Path:
        saves.append(payload["learner"]["iteration"])
        return original(path, payload)

    monkeypatch.setattr(trainer_module, "save_checkpoint", counting)
    cfg = small_config()
    cfg.train.total_timesteps = 3 * cfg.steps_per_iteration
    cfg.train.checkpoint_every = 1000
    cfg.train.checkpoint_minutes = 1e-9  # due after every iteration
    train(cfg, tmp_path / "timed")
    assert saves == [1, 2, 3]
    saves.clear()
    cfg.train.checkpoint_minutes = None
    train(cfg, tmp_path / "untimed")
    assert saves == [3]
