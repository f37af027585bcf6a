"""Run directories (docs: reliability): never claimed twice, never overwritten, resume explicit about settings,
disk errors in one line with the previous checkpoint kept."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import mlsh.checkpoint
from mlsh.checkpoint import load_checkpoint
from mlsh.errors import ConfigError, RunInUseError, StorageError
from mlsh.rundir import LOCK_NAME, acquire, lock_owner
from mlsh.train import main as train_main
from mlsh.trainer import train
from tests.conftest import small_config
from tests.reliability_helpers import TINY, cli, run_main, tree_hash, unshare_works

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-iteration run made by the command line (it has .hydra/)."""
    base = tmp_path_factory.mktemp("cli_run")
    done = cli("mlsh.train", *TINY, "mlsh.warmup_iters=1", "train.total_timesteps=400", "hydra.run.dir=R", cwd=base)
    assert done.returncode == 0, done.stderr
    return base / "R"


def _copy(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "R"
    shutil.copytree(run, target)
    return target


# -- refusals write nothing -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["resume={run}", "mlsh.num_subpolicies=5"], "but mlsh.num_subpolicies=5 differs from its 2"),
        (["resume={run}", "sub.lr=0.1"], "start a new run with init_from={run} sub.lr=0.1"),
        (["resume={run}", "env=FourRooms"], "was trained on 'mlsh/MovementBandits-v0' but this resume uses"),
        (["resume={run}", "seed=3"], "but seed=3 differs from its 0"),
        (["resume={run}", "algo=flat_ppo"], "but mlsh.num_subpolicies=1 differs from its 2"),
        (["resume={run}", "+env.kwargs.size=3"], "but env.kwargs="),
        (["resume={run}", "train.total_timesteps=abc"], "train.total_timesteps must be an integer, got 'abc'"),
        (["resume={run}", "train.total_timesteps=200"], "train.total_timesteps=200 is below the 400 env steps"),
        (["resume={run}", "train.checkpoint_every=0"], "train.checkpoint_every must be at least 1, got 0"),
        ([*TINY, "hydra.run.dir={run}"], "already holds a run; continue it with resume="),
    ],
)
def test_refused_commands_leave_an_existing_run_and_its_hydra_files_untouched(
    cli_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    args: list[str],
    message: str,
) -> None:
    run = _copy(cli_run, tmp_path)
    monkeypatch.chdir(tmp_path)
    before = tree_hash(run)
    assert ".hydra/config.yaml" in before
    code, err = run_main(train_main, [a.format(run=run) for a in args], monkeypatch, capsys)
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and message.format(run=run) in err[0], err
    assert tree_hash(run) == before


def test_resume_records_budget_changes_and_a_resume_with_nothing_to_do_keeps_the_summary(
    cli_run: Path, tmp_path: Path
) -> None:
    run = _copy(cli_run, tmp_path)
    hydra_files = {k: v for k, v in tree_hash(run).items() if k.startswith(".hydra")}
    longer = cli("mlsh.train", f"resume={run}", "train.total_timesteps=600", "train.checkpoint_every=2", cwd=tmp_path)
    assert longer.returncode == 0, longer.stderr
    assert "mlsh: resume changes train.total_timesteps from 400 to 600 (recorded in config.yaml)" in longer.stderr
    assert "finished at iteration 3/3" in longer.stdout
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["total_timesteps"] == 600 and saved["train"]["checkpoint_every"] == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["last_metrics"]
    again = cli("mlsh.train", f"resume={run}", cwd=tmp_path)  # nothing to do: 3/3, not "3/2"
    assert again.returncode == 0 and "finished at iteration 3/3" in again.stdout, again.stderr
    assert json.loads((run / "summary.json").read_text()) == summary  # last_metrics kept
    assert {k: v for k, v in tree_hash(run).items() if k.startswith(".hydra")} == hydra_files
    assert not (run / LOCK_NAME).exists()


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_the_start(tmp_path: Path) -> None:
    cfg = small_config()
    cfg.train.total_timesteps = 3 * cfg.steps_per_iteration
    train(cfg, tmp_path / "straight")
    train(cfg, tmp_path / "early", max_iterations=0)  # config.yaml written, no iteration: no checkpoint
    assert (tmp_path / "early" / "config.yaml").is_file() and not (tmp_path / "early" / "checkpoint.pt").exists()
    with pytest.raises(Exception, match="already holds a run"):
        train(cfg, tmp_path / "early")
    assert train(cfg, tmp_path / "early", resume=True)["iteration"] == 3
    a = load_checkpoint(tmp_path / "straight")["learner"]["policy"]
    b = load_checkpoint(tmp_path / "early")["learner"]["policy"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_library_resume_refuses_changed_settings(tmp_path: Path) -> None:
    cfg = small_config()
    train(cfg, tmp_path, max_iterations=1)
    changed = small_config()
    changed.sub.lr = 0.1
    with pytest.raises(ConfigError, match=r"sub.lr=0.1 differs from its 0.0003 .* init_from="):
        train(changed, tmp_path, resume=True)
    with pytest.raises(Exception, match="holds no run"):
        train(cfg, tmp_path / "empty", resume=True)


# -- one owner per run dir ----------------------------------------------------------------------------------------
def test_two_trainings_on_one_run_dir_at_once_exactly_one_runs(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "mlsh.train", *TINY, "train.total_timesteps=2000", "hydra.run.dir=R"]
    processes = [
        subprocess.Popen(
            args + [f"seed={seed}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )  # fmt: skip
        for seed in (1, 2)
    ]
    outcomes = [(p.wait(timeout=300), p.communicate()) for p in processes]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 2], [err for _, (_, err) in outcomes]
    winner = next(i for i, (code, _) in enumerate(outcomes) if code == 0)
    loser_err = outcomes[1 - winner][1][1].strip().splitlines()
    assert len(loser_err) == 1 and ("is in use by process" in loser_err[0] or "already holds a run" in loser_err[0]), (
        loser_err
    )
    assert yaml.safe_load((tmp_path / "R" / "config.yaml").read_text())["seed"] == winner + 1
    assert yaml.safe_load((tmp_path / "R" / ".hydra" / "config.yaml").read_text())["seed"] == winner + 1


def test_a_second_training_is_refused_before_writing_anything_while_the_first_runs(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    run = tmp_path / "R"
    first = subprocess.Popen(
        [sys.executable, "-m", "mlsh.train", *TINY, "train.total_timesteps=2000", f"hydra.run.dir={run}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (run / "config.yaml").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        first.send_signal(signal.SIGSTOP)  # hold the first still while the second tries
        time.sleep(0.5)
        assert lock_owner(run) == first.pid
        before = tree_hash(run)
        for args in ([*TINY, f"hydra.run.dir={run}"], [f"resume={run}"]):
            second = cli("mlsh.train", *args, cwd=tmp_path)
            lines = second.stderr.strip().splitlines()
            assert second.returncode == 2 and len(lines) == 1, second.stderr
            assert f"is in use by process {first.pid}" in lines[0]
            assert tree_hash(run) == before
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert not (run / LOCK_NAME).exists()


def test_a_stale_lock_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / LOCK_NAME).write_text(f"{dead.pid} somehost\n")
    assert lock_owner(tmp_path) is None
    with caplog.at_level("WARNING", logger="mlsh"):
        summary = train(small_config(), tmp_path)
    assert summary["finished"]
    assert any(f"took over the stale lock of process {dead.pid}" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / LOCK_NAME).exists()


def test_the_lock_is_exclusive_across_processes_and_reentrant_within_one(tmp_path: Path) -> None:
    lock = acquire(tmp_path)
    try:
        assert acquire(tmp_path) is lock  # re-entrant
        lock.release()
        assert (tmp_path / LOCK_NAME).read_text().split()[0] == str(os.getpid())
        probe = subprocess.run(
            [sys.executable, "-c", f"from mlsh.rundir import acquire; acquire({str(tmp_path)!r})"],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        assert probe.returncode != 0 and RunInUseError.__name__ in probe.stderr
        assert f"is in use by process {os.getpid()}" in probe.stderr
    finally:
        lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


# -- disk errors --------------------------------------------------------------------------------------------------
def test_a_full_disk_during_a_checkpoint_is_one_sentence_and_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = small_config()
    train(cfg, tmp_path, max_iterations=1)
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def full(path: Path, data: object) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(mlsh.checkpoint, "write_atomic", full)
    with pytest.raises(StorageError) as info:
        train(cfg, tmp_path, resume=True)
    assert str(info.value) == (
        f"Cannot write checkpoint {tmp_path / 'checkpoint.pt'}: no space left on the device; the previous checkpoint "
        f"is kept; free some space and try again."
    )
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert load_checkpoint(tmp_path)["learner"]["iteration"] == 1


needs_mounts = pytest.mark.skipif(not unshare_works(), reason="needs root and unshare -m to mount a test file system")


def _in_mount_namespace(tmp_path: Path, setup: str, command: list[str]) -> subprocess.CompletedProcess[str]:
    """Runs ``command`` in a private mount namespace after the shell ``setup`` (which mounts under ``tmp_path``)."""
    quoted = " ".join(f"'{part}'" for part in command)
    script = f"set -e; {setup}; cd '{tmp_path}'; exec {quoted}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=180, env=env)


@needs_mounts
def test_read_only_and_full_file_systems_are_refused_in_one_line(tmp_path: Path, cli_run: Path) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    train_cmd = [sys.executable, "-m", "mlsh.train", *TINY, f"hydra.run.dir={mount}/run"]
    read_only = f"mount -t tmpfs -o size=8m tmpfs '{mount}'; mount -o remount,ro '{mount}'"
    full = f"mount -t tmpfs -o size=1m tmpfs '{mount}'; dd if=/dev/zero of='{mount}/fill' bs=64k count=16 2>/dev/null"
    for setup, cause in [(read_only, "is on a read-only file system"), (full, "free on its file system")]:
        done = _in_mount_namespace(tmp_path, setup, train_cmd)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert lines[0].startswith(f"error: Cannot write run dir {mount}/run") and cause in lines[0], lines
    evaluate_cmd = [sys.executable, "-m", "mlsh.evaluate", f"checkpoint={cli_run}", f"output={mount}/e.json"]
    done = _in_mount_namespace(tmp_path, read_only, evaluate_cmd)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "read-only file system" in lines[0], done.stderr
