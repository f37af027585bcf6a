"""scripts/ant_maze_table.py: AntMaze's targets per run, from mlsh.inspect's reports (hand-made, then a tiny run)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from envs.ant_maze import LAYOUTS, NUM_TRAIN_LAYOUTS, TRAINING_KIND_LAYOUTS
from mlsh.trainer import train
from tests.conftest import small_config, tiny_ant_maze_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import ant_maze_table  # noqa: E402


def _report(subs: list[tuple[float, tuple[float, float], int]], reached: float) -> dict:
    """An inspection report with (usage, open-floor mean displacement, macro steps) per sub-policy."""
    return {
        "subpolicies": [
            {"usage": usage, "open_floor": {"mean_displacement": list(move), "macro_steps": steps}}
            for usage, move, steps in subs
        ],
        "goal_reached": {"overall": reached},
    }


def test_angle_between_wraps_around() -> None:
    assert ant_maze_table.angle_between(170.0, -170.0) == pytest.approx(20.0)
    assert ant_maze_table.angle_between(-45.0, 45.0) == pytest.approx(90.0)
    assert ant_maze_table.angle_between(0.0, 180.0) == pytest.approx(180.0)


def test_inspections_pool_by_macro_step_and_targets_are_checked() -> None:
    spare = (0.05, (1.0, 0.0), 10)
    seed0 = _report([(0.4, (16.0, 0.0), 10), (0.3, (12.0, 12.0), 10), (0.25, (0.0, -20.0), 10), spare], 0.5)
    seed1 = _report([(0.4, (14.0, 0.0), 30), (0.3, (12.0, 12.0), 10), (0.15, (0.0, -20.0), 10), spare], 0.75)
    subs = ant_maze_table.merge_inspections([seed0, seed1])
    assert subs[0]["mean_displacement"] == pytest.approx([14.5, 0.0])  # (16 x 10 + 14 x 30) / 40
    assert subs[0]["speed_along_heading"] == pytest.approx(14.5) and subs[0]["macro_steps"] == 40
    assert subs[1]["heading_degrees"] == pytest.approx(45.0)
    assert subs[1]["speed_along_heading"] == pytest.approx(math.hypot(12, 12))
    assert subs[2]["usage"] == pytest.approx(0.2) and subs[2]["heading_degrees"] == pytest.approx(-90.0)
    args = type("Args", (), {"min_usage": 0.10, "min_angle": 30.0, "min_speed": 15.0})()
    t = ant_maze_table.targets(subs, [0.5, 0.75], args)
    assert t["used"] == [0, 1, 2] and t["enough_used"]  # the fourth is used 5%
    assert t["closest_headings_degrees"] == pytest.approx(45.0) and t["distinct"] and t["trio"] == [0, 1, 2]
    assert not t["fast"]  # sub-policy 0 covers 14.5 < 15
    assert t["goal_reached"] == pytest.approx(0.625) and t["solves_mazes"]
    assert not ant_maze_table.targets(subs, [0.25, 0.5], args)["solves_mazes"]
    # A fourth used sub-policy close to sub-policy 1 (+40 degrees) and faster: the trio takes it instead.
    near = {"index": 3, "usage": 0.2, "heading_degrees": 40.0, "speed_along_heading": 16.0}
    fast_subs = [{**subs[0], "speed_along_heading": 15.5}, {**subs[1], "speed_along_heading": 12.0}, subs[2], near]
    t = ant_maze_table.targets(fast_subs, [0.5], args)
    assert t["closest_headings_degrees"] == pytest.approx(5.0) and t["trio"] == [0, 2, 3]
    assert t["distinct"] and t["fast"] and t["trio_closest_degrees"] == pytest.approx(40.0)
    crowded = [{**sub, "heading_degrees": 10.0 * i} for i, sub in enumerate(fast_subs)]  # 0-30 degrees: no trio
    t = ant_maze_table.targets(crowded, [0.5], args)
    assert t["trio"] is None and not t["distinct"] and not t["fast"]


def test_goal_reaches_split_by_the_kind_of_held_out_maze() -> None:
    other = next(i for i in range(NUM_TRAIN_LAYOUTS, len(LAYOUTS)) if i not in TRAINING_KIND_LAYOUTS)
    reports = [
        {"tasks": [TRAINING_KIND_LAYOUTS[0], other], "episodes": 2, "goal_reached": {"per_task": [1.0, 0.5]}},
        {"tasks": [TRAINING_KIND_LAYOUTS[1], other], "episodes": 2, "goal_reached": {"per_task": [0.5, None]}},
    ]
    counts = ant_maze_table.reached_by_kind(reports)
    assert {key: counts[key] for key in ("training_kind", "other")} == {"training_kind": [3, 4], "other": [1, 2]}
    assert sum(counts[face][1] for face in ("face_left", "face_right", "face_top_bottom")) == 6  # each episode once


def test_goal_reaches_split_by_the_face_the_goal_lies_on() -> None:
    faces = {"face_left": 10, "face_right": 9, "face_top_bottom": 11}  # held out: goals (0, 16), (16, 16), (24, 24)
    assert [LAYOUTS[task].goal for task in faces.values()] == [(0.0, 16.0), (16.0, 16.0), (24.0, 24.0)]
    report = {"tasks": list(faces.values()), "episodes": 2, "goal_reached": {"per_task": [0.0, 0.5, 1.0]}}
    counts = ant_maze_table.reached_by_kind([report])
    assert [counts[face] for face in faces] == [[0, 2], [1, 2], [2, 2]]


def test_a_run_of_another_ant_task_is_measured_on_the_mazes(tmp_path: Path) -> None:
    for env_id, name in (("mlsh/AntMovement-v0", "move"), ("mlsh/AntMaze-v0", "maze")):
        cfg = small_config(env_id, macro_len=10)
        cfg.env.max_episode_steps = 20
        cfg.env.kwargs = {"ctrl_cost_weight": 0.2}
        train(cfg, tmp_path / name, max_iterations=1)
    assert ant_maze_table.held_out_env(tmp_path / "move", "all") == ["env=AntMaze", "+env.max_episode_steps=20"]
    assert ant_maze_table.held_out_env(tmp_path / "move", "training_kind") == [
        "env=AntMaze",
        "+env.max_episode_steps=20",
        "+env.kwargs.test_layouts=training_kind",
    ]
    assert ant_maze_table.held_out_env(tmp_path / "maze", "all") == []  # the run's own env
    assert ant_maze_table.held_out_env(tmp_path / "maze", "training_kind") == [
        "env=AntMaze",
        "+env.kwargs.ctrl_cost_weight=0.2",
        "+env.max_episode_steps=20",
        "+env.kwargs.test_layouts=training_kind",
    ]


def test_run_dirs_without_a_checkpoint_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        ant_maze_table.parse_args([str(tmp_path)])
    assert f"no checkpoint.pt in {tmp_path}; pass the run dirs that mlsh.train printed." in capsys.readouterr().err


def test_table_of_a_tiny_ant_maze_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "tiny"
    train(tiny_ant_maze_config(), run)
    out = tmp_path / "table"
    argv = [str(run), "--eval-seeds", "0", "1", "--num-tasks", "1", "--episodes", "1", "--scratch", "0"]
    argv += ["--out", str(out)]
    ant_maze_table.main(argv)
    table = capsys.readouterr().out
    assert (out / "tiny" / "inspect_seed1.json").is_file() and (out / "tiny" / "evaluate_seed0.json").is_file()
    assert not (out / "tiny" / "evaluate_seed1.json").exists()  # --scratch 0: PPO from scratch on seed 0 only
    (row,) = json.loads((out / "results.json").read_text())
    assert row["env_steps"] == 800 and row["training_seconds"] > 0
    assert [s["macro_steps"] for s in row["subpolicies"]] == [4, 4]  # 2 seeds x 20 steps / 10-step macro steps
    assert len(row["goal_reached_per_seed"]) == 2 and len(row["last_iteration_success"]) == 1
    assert len(row["closest_approach_per_seed"]) == 2 and all(c > 0 for c in row["closest_approach_per_seed"])
    assert set(row["last_iteration_success"][0]) == {"mlsh", "scratch"}
    ((scratch_reached, scratch_episodes),) = [seed["scratch"] for seed in row["adaptation_goal_reaches"]]
    assert 0 <= scratch_reached <= scratch_episodes and scratch_episodes > 0
    assert table.splitlines()[2].startswith("| tiny | 800 | ")
    assert "PPO from scratch, same steps" in table
    assert "| tiny | " in table.split("held-out mazes of the training kind | of another kind |")[1]
    log = (out / "tiny" / "table.log").read_text()
    ant_maze_table.main(argv)  # cached: the second call runs neither command again
    assert (out / "tiny" / "table.log").read_text() == log and capsys.readouterr().out == table


def test_a_checkpoint_copied_mid_run_counts_steps_and_time_to_its_own_point(tmp_path: Path) -> None:
    import shutil

    cfg = tiny_ant_maze_config()
    run = tmp_path / "run"
    train(cfg, run, max_iterations=2)  # 2 iterations of the budget's 800 steps, then stopped (resumable)
    mid = tmp_path / "mid"
    shutil.copytree(run, mid)
    train(cfg, run, resume=True)
    shutil.rmtree(mid / "tb")
    shutil.copytree(run / "tb", mid / "tb")  # the run's events to its end, beside the mid-run checkpoint
    seconds, steps = ant_maze_table.training_time_and_steps(mid)
    full_seconds, full_steps = ant_maze_table.training_time_and_steps(run)
    assert (steps, full_steps) == (2 * cfg.steps_per_iteration, 800)
    assert 0 < seconds < full_seconds


def test_master_settings_are_checked_before_any_work_and_name_their_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "tiny"
    train(tiny_ant_maze_config(), run)
    out = tmp_path / "table"
    for bad, message in (
        (["lr"], "--master takes KEY=VALUE settings, got lr; e.g. --master lr=0.003 gamma=0.5."),
        (["master.lr=fast"], "master.lr must be a number, got 'fast'; fix the override master.lr=..."),
        (["learning_rate=0.1"], "Unknown setting 'master.learning_rate'"),
    ):
        with pytest.raises(SystemExit):
            ant_maze_table.parse_args([str(run), "--master", *bad, "--out", str(out)])
        assert message in capsys.readouterr().err
    assert not out.exists()  # nothing written before the checks
    argv = [str(run), "--eval-seeds", "0", "--num-tasks", "1", "--episodes", "1", "--out", str(out)]
    ant_maze_table.main([*argv, "--master", "lr=0.003", "master.gamma=0.5"])
    table = capsys.readouterr().out
    report = json.loads((out / "tiny__master_lr-0.003_gamma-0.5" / "inspect_seed0.json").read_text())
    assert report["master_settings"] == {"lr": 0.003, "gamma": 0.5}
    (row,) = json.loads((out / "results.json").read_text())
    assert row["master_settings"] == ["lr=0.003", "gamma=0.5"]
    assert table.splitlines()[2].startswith("| tiny (masters: lr=0.003 gamma=0.5) | 800 | ")
    ant_maze_table.main([*argv, "--master", "lr=0.003", "--deterministic", "master"])
    table = capsys.readouterr().out
    report = json.loads((out / "tiny__master_lr-0.003__deterministic-master" / "inspect_seed0.json").read_text())
    assert report["deterministic"] == "master"
    assert table.splitlines()[2].startswith("| tiny (masters: lr=0.003; deterministic=master) | 800 | ")
    ant_maze_table.main([*argv, "--test-layouts", "training_kind"])
    table = capsys.readouterr().out
    report = json.loads((out / "tiny__test-training_kind" / "inspect_seed0.json").read_text())
    assert report["tasks"][0] in TRAINING_KIND_LAYOUTS
    assert table.splitlines()[2].startswith("| tiny (held-out: training_kind) | 800 | ")
    # The run's macro step is 10 and its rollouts 20 steps long: the masters may choose every 5, not every 3.
    with pytest.raises(SystemExit):
        ant_maze_table.parse_args([*argv, "--adapt-macro-len", "3"])
    assert "adapt_macro_len=3 does not divide the run's train.rollout_len (20)" in capsys.readouterr().err
    assert not (out / "tiny__macro-3").exists()
    ant_maze_table.main([*argv, "--adapt-macro-len", "5"])
    table = capsys.readouterr().out
    report = json.loads((out / "tiny__macro-5" / "inspect_seed0.json").read_text())
    assert report["adapt_macro_len"] == 5
    assert [sub["open_floor"]["macro_steps"] for sub in report["subpolicies"]] == [2, 2]  # per the run's 10 steps
    assert table.splitlines()[2].startswith("| tiny (masters choose every 5 steps) | 800 | ")
