"""The weight-sharing benchmark runs end to end; the sweep's table reads its runs as the docs say (tiny settings)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import sweep_sharing  # noqa: E402


def test_benchmark_sharing_prints_every_cell_with_ratios_against_separate() -> None:
    command = [
        sys.executable, "scripts/benchmark_sharing.py", "--modes", "separate", "trunk", "--ks", "2", "4",
        "--iterations", "1", "--set", "mlsh.num_slots=2", "train.envs_per_slot=2", "train.rollout_len=20",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"^\| (\d+) \| (\w+) \| ([\d,]+) \(([\d.]+)\) \|", result.stdout, re.M)
    assert [(k, mode) for k, mode, _, _ in rows] == [
        ("2", "separate"),
        ("2", "trunk"),
        ("4", "separate"),
        ("4", "trunk"),
    ]
    params = {(k, mode): int(count.replace(",", "")) for k, mode, count, _ in rows}
    # separate: K actors (6-64-64-5) and K critics (6-64-64-1); trunk: one trunk each plus K heads
    assert params[("2", "separate")] == 2 * 4933 + 2 * 4673
    assert params[("4", "trunk")] == 2 * 4608 + 4 * 325 + 4 * 65
    assert [float(ratio) for _, mode, _, ratio in rows if mode == "separate"] == [1.0, 1.0]


def test_bad_benchmark_arguments_are_refused_in_one_sentence() -> None:
    command = [sys.executable, "scripts/benchmark_sharing.py", "--ks", "2", "--set", "sub.sharing_typo=1"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "sub.sharing_typo" in result.stderr


def test_the_sweep_table_counts_collapses_and_env_steps_to_target() -> None:
    def run(mode: str, seed: int, ratio: float, flags: tuple, curve: list[float]) -> dict:
        points = [(1000 * (i + 1), value) for i, value in enumerate(curve)]
        alike, unused, uncovered = flags
        return {
            "mode": mode, "seed": seed, "ratio": ratio, "alike": alike,
            "unused": unused, "uncovered": uncovered, "curve": points, "params": 10,
        }  # fmt: skip

    runs = [
        run("separate", 0, 0.9, ([], [], False), [0, 10, 10, 10, 10, 10, 10]),
        run("separate", 1, 0.7, ([[0, 1]], [2], True), [0, 0, 0, 0, 0, 10, 10]),
        run("trunk", 0, 0.5, ([], [1], None), [0, 0, 0, 0, 0, 0, 0]),
    ]
    assert sweep_sharing.steps_to_target(runs[0]["curve"], 6.0) == 3000  # running mean of 5: 0, 5, 6.7, ...
    assert sweep_sharing.steps_to_target(runs[2]["curve"], 6.0) is None
    assert sweep_sharing.final_level(runs[0]["curve"]) == pytest.approx(10.0)
    table = sweep_sharing.format_table(runs, ["separate", "trunk", "hashed"], 6.0, "test").splitlines()
    assert table[2] == "| separate | 10 | 0.80 ± 0.14 | 0.90 0.70 | 1 of 2 (1; 1) | 1 of 2 | 3,000 (1 of 2) |"
    assert table[3] == "| trunk | 10 | 0.50 | 0.50 | 1 of 1 (0; 1) | - | - (0 of 1) |"
    assert len(table) == 4  # no runs of hashed: no row
    overrides = sweep_sharing.train_overrides(
        sweep_sharing.parse_args(["--env", "KeyDoor", "--budget", "ci"]), "hashed"
    )
    assert "sub.sharing=hashed" in overrides and "+env.kwargs.size=200" in overrides


def test_the_sweep_resumes_a_run_dir_that_holds_a_config_but_no_checkpoint(tmp_path: Path) -> None:
    tiny = [
        "mlsh.num_slots=2", "train.envs_per_slot=2", "train.rollout_len=50", "train.total_timesteps=200",
        "master.hidden_sizes=[16]", "sub.hidden_sizes=[16]",
    ]  # fmt: skip
    args = sweep_sharing.parse_args(["--env", "MovementBandits", "--set", *tiny])
    run_dir = tmp_path / "trunk" / "seed0"
    fresh = sweep_sharing.train_command(args, "trunk", 0, run_dir)
    assert "sub.sharing=trunk" in fresh and f"hydra.run.dir={run_dir}" in fresh
    run_dir.mkdir(parents=True)
    sweep_sharing.run_logged(fresh, tmp_path / "sweep.log")
    # A training stopped before its first checkpoint leaves its config.yaml: the sweep resumes it, where a fresh
    # command would be refused (the dir holds a run).
    (run_dir / "checkpoint.pt").unlink()
    (run_dir / "summary.json").unlink()
    again = sweep_sharing.train_command(args, "trunk", 0, run_dir)
    assert again[-1] == f"resume={run_dir}"
    sweep_sharing.run_logged(again, tmp_path / "sweep.log")
    assert (run_dir / "checkpoint.pt").is_file()
    assert '"finished": true' in (run_dir / "summary.json").read_text()


def test_the_bandit_table_counts_seeds_that_miss_a_goal_skill() -> None:
    both = [{"goal 0": 1.0, "goal 1": 0.0}, {"goal 0": 0.0, "goal 1": 0.9}]
    one_goal = [{"goal 0": 0.94, "goal 1": 0.0}, {"goal 0": 0.65, "goal 1": 0.0}]
    assert sweep_sharing.missing_goal_skills(both) == 0 and sweep_sharing.missing_goal_skills(one_goal) == 1
    curve = [(1000, 10.0)]
    runs = [
        {"mode": "trunk", "seed": s, "ratio": 0.5, "missing_skills": m, "curve": curve, "params": 3}
        for s, m in ((0, 0), (1, 1), (2, 1))
    ]
    table = sweep_sharing.format_table(runs, ["trunk"], 6.0, "test").splitlines()
    assert "seeds missing a goal skill" in table[0] and table[1].count("---") == 8
    assert table[2] == "| trunk | 3 | 0.50 ± 0.00 | 0.50 0.50 0.50 | 0 of 3 (0; 0) | - | 2 of 3 | 1,000 (3 of 3) |"
    # Without an oracle (FourRooms) the score is the return itself, and the header says so.
    plain = [{**runs[0], "oracle": False}]
    assert "| return after adaptation |" in sweep_sharing.format_table(plain, ["trunk"], 6.0, "test")


def test_the_sweep_never_evaluates_a_training_stopped_before_its_budget(tmp_path: Path, monkeypatch) -> None:
    calls: list[list[str]] = []

    def stopped_training(command: list[str], log: Path) -> None:  # what a Ctrl-C'd training leaves
        calls.append(command)
        (tmp_path / "trunk" / "seed0" / "summary.json").write_text('{"finished": false, "iteration": 3}')

    monkeypatch.setattr(sweep_sharing, "run_logged", stopped_training)
    args = sweep_sharing.parse_args(["--env", "MovementBandits", "--out", str(tmp_path)])
    with pytest.raises(RuntimeError, match="stopped before its budget; rerun the sweep to continue it"):
        sweep_sharing.run_one(args, "trunk", 0)
    assert len(calls) == 1 and calls[0][2] == "mlsh.train"  # no evaluation, no inspection
