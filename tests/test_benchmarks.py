"""The benchmark and plotting scripts run end to end and print the figures the docs quote (tiny settings)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def test_benchmark_train_prints_rates_split_and_ratios() -> None:
    command = [
        sys.executable, "scripts/benchmark_train.py", "--slots", "1", "--envs-per-slot", "1", "--rollout-len", "200",
        "--iterations", "1", "--raw-steps", "5", "--sb3-steps", "64", "--no-scaling", "--repeats", "2",
        "--set", "mlsh.num_subpolicies=3",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "mlsh/AntMaze-v0: mlsh 1 slots x 1 envs, rollout 200, K=3" in out
    assert "Warning" not in result.stderr, result.stderr[-3000:]
    rates = {
        key: float(value.replace(",", ""))
        for key, value in re.findall(r"^\((a|b|c)\) .*?([\d,]+) env steps/s", out, re.M)
    }
    assert set(rates) == {"a", "b", "c"} and all(rate > 0 for rate in rates.values()), out
    assert len(re.findall(r"^    \((a|b|c)\) each turn: [\d,]+, [\d,]+$", out, re.M)) == 3, out
    shares = [float(x) for x in re.findall(r"^      .*?(-?[\d.]+)%$", out, re.M)]
    assert len(shares) == 4 and abs(sum(shares) - 100.0) < 1.0, out
    a_b = float(re.search(r"^a/b = ([\d.]+)", out, re.M).group(1))
    assert abs(a_b - rates["a"] / rates["b"]) < 0.01 + 0.01 * a_b


def test_plot_training_writes_a_png_and_a_table_of_the_curves(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "run" / "tb"))
    for i in range(1, 21):
        writer.add_scalar("rollout/ep_rew_mean", -100.0 + 5 * i, i * 1000)
        writer.add_scalar("sub/explained_variance", 0.5, i * 1000)
        writer.add_scalar("master/entropy", 0.25, i * 1000)
    writer.close()
    script = [sys.executable, "scripts/plot_training.py"]
    result = subprocess.run([*script, str(tmp_path / "run"), "--rows", "2"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "| env steps | rollout/ep_rew_mean | sub/explained_variance |"
    assert lines[2] == "| 0.0M-0.0M | -72.50 | 0.50 |"  # steps 1,000-10,000: mean of -95 ... -50
    assert (tmp_path / "run" / "training.png").stat().st_size > 10_000
    extra = [*script, str(tmp_path / "run"), "--rows", "2", "--out", str(tmp_path / "x.png"), "--extra"]
    result = subprocess.run([*extra, "master/entropy"], cwd=REPO, capture_output=True, text=True)
    assert result.stdout.splitlines()[2] == "| 0.0M-0.0M | -72.50 | 0.50 | 0.25 |", result.stderr[-3000:]
    fixed = [*script, str(tmp_path / "run"), "--stretch", "5000", "--out", str(tmp_path / "x.png")]
    result = subprocess.run(fixed, cwd=REPO, capture_output=True, text=True)
    rows = [line.split(" | ")[1] for line in result.stdout.splitlines()[2:-1]]
    assert rows == ["-85.00", "-60.00", "-35.00", "-10.00"], result.stdout  # steps (0, 5000], (5000, 10000], ...
    bad = subprocess.run([*fixed, "--stretch", "0"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode != 0 and "--stretch must be a positive number of env steps, got 0" in bad.stderr
    result = subprocess.run([*extra, "nope/x"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "has no scalar nope/x; the run logged: master/entropy, rollout" in result.stderr
    missing = subprocess.run([*script, str(tmp_path / "nothing")], cwd=REPO, capture_output=True, text=True)
    assert missing.returncode != 0 and "pass a run dir written by python -m mlsh.train" in missing.stderr


def test_sweep_master_tables_each_set_of_master_settings(tmp_path: Path) -> None:
    from mlsh.trainer import train
    from tests.conftest import small_config

    cfg = small_config()
    cfg.env.max_episode_steps = 10
    train(cfg, tmp_path / "run")
    script = [sys.executable, "scripts/sweep_master.py", str(tmp_path / "run"), "--num-tasks", "2", "--episodes", "1"]
    args = ["--adapt-iters", "1", "--seeds", "0", "1", "--set", "", "--set", "lr=0.002 gamma=0.5"]
    result = subprocess.run([*script, *args], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "| master settings | goal-directed, seed 0 | goal-directed, seed 1 | mean | return after adaptation |"
    )
    assert lines[2].startswith("| the run's | - | - | - | ")  # MovementBandits has no goal position
    assert lines[3].startswith("| lr=0.002 gamma=0.5 | - | - | - | ")
    saved = json.loads((tmp_path / "run" / "inspect" / "sweep_master.json").read_text())
    assert [r["master_settings"] for r in saved["reports"]] == [{}, {}, *[{"lr": 0.002, "gamma": 0.5}] * 2]
    assert float(lines[3].split("|")[5]) == pytest.approx(
        np.mean(saved["rows"][1]["returns"]), abs=0.051
    )  # printed to 0.1
    bad = subprocess.run([*script, "--set", "lr"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode != 0 and "--set items are key=value, got 'lr'" in bad.stderr
    unknown = subprocess.run([*script, "--set", "lrr=0.1"], cwd=REPO, capture_output=True, text=True)
    assert unknown.returncode != 0 and "error: Unknown setting 'master.lrr'" in unknown.stderr


def test_benchmark_locomotion_tables_finished_jobs_of_several_dirs_without_training(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    spec = importlib.util.spec_from_file_location("benchmark_locomotion", REPO / "scripts" / "benchmark_locomotion.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def job(directory: str, method: str, seed: int, ret: float, wall: float) -> None:
        (tmp_path / directory).mkdir(exist_ok=True)
        result = {"method": method, "seed": seed, "return": ret, "velocity": 0.5, "episode_length": 100.0,
                  "train_wall_s": wall, "train_fps": 1000.0}  # fmt: skip
        (tmp_path / directory / f"{method}_seed{seed}.json").write_text(json.dumps(result))

    job("ours", "mlsh", 0, 300.0, 100.0)
    job("ours", "mlsh", 1, 500.0, 100.0)
    job("ref", "sb3", 0, 400.0, 400.0)
    job("ref", "mlsh", 0, -1000.0, 1.0)  # an older run of ours in the reference's dir: left out by sb3=
    assert module.main(["--results", f"mlsh={tmp_path / 'ours'}", f"sb3={tmp_path / 'ref'}"]) == 0
    printed = capsys.readouterr().out
    assert "mlsh   mean (2 seeds): return 400.0 +/- 100.0" in printed
    assert "ratios ours/SB3: return 1.00, x velocity 1.00, wall time 0.25" in printed
