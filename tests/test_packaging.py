"""A plain (non-editable) install runs `python -m mlsh.train` / `mlsh.evaluate` from another directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_non_editable_install_trains_and_evaluates_from_elsewhere(tmp_path: Path) -> None:
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), "."],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    assert (site / "mlsh" / "configs" / "env" / "MovementBandits.yaml").is_file()
    assert (site / "mlsh" / "configs" / "algo" / "flat_ppo.yaml").is_file()
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    code = "import mlsh, sys; print(mlsh.__file__)"
    where = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(site)), where.stdout
    run_dir = workdir / "run"
    trained = subprocess.run(
        [
            sys.executable, "-m", "mlsh.train", "mlsh.num_slots=2", "train.envs_per_slot=2", "train.rollout_len=20",
            "train.total_timesteps=80", "train.progress=false", f"hydra.run.dir={run_dir}",
        ],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "finished at iteration 1/1" in trained.stdout
    evaluated = subprocess.run(
        [sys.executable, "-m", "mlsh.evaluate", f"checkpoint={run_dir}", "num_tasks=2", "adapt_iters=1",
         "oracle_episodes=1"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    assert "mean" in evaluated.stdout
