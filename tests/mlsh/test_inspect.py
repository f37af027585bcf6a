"""mlsh.inspect: sub-policy usage, displacement, agreement, collapse flags, grid heat-maps, goal-directed choices."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from PIL import Image

import mlsh.envs
import mlsh.inspect
from envs.ant_maze import LAYOUTS, START_XY
from envs.four_rooms import FREE_CELLS
from mlsh.checkpoint import load_checkpoint, save_checkpoint
from mlsh.config import EnvConfig
from mlsh.errors import ConfigError
from mlsh.evaluation import AdaptOptions
from mlsh.inspect import (
    format_report,
    goal_directed_shares,
    inspect_run,
    main,
    open_floor_walk,
    plot_report,
    task_coverage,
)
from mlsh.trainer import train
from tests.conftest import small_config, tiny_ant_maze_config


@pytest.fixture(scope="module")
def bandits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = small_config()
    cfg.env.max_episode_steps = 10
    run_dir = tmp_path_factory.mktemp("bandits")
    train(cfg, run_dir)
    return run_dir


def test_usage_displacement_and_agreement(bandits_run: Path) -> None:
    report, records = inspect_run(bandits_run, num_tasks=2, episodes=2, adapt=AdaptOptions(iters=1))
    subs = report["subpolicies"]
    assert [s["index"] for s in subs] == [0, 1]
    assert sum(s["usage"] for s in subs) == pytest.approx(1.0)
    assert sum(r.active_steps for r in records) == 2 * 2 * 10  # tasks x episodes x steps
    for sub, record in zip(subs, records):
        assert len(record.displacements) == 2 * 2 * 2  # two whole 5-step macro steps per 10-step episode
        # Moves of 20 on the plane: at most 5 x 20 per macro step, and on the lattice.
        assert 0.0 <= sub["mean_step_length"] <= 100.0 + 1e-6
        moves = np.asarray(record.displacements) / 20.0
        np.testing.assert_allclose(moves, np.round(moves), atol=1e-3)
        assert sum(sub["action_histogram"]) == pytest.approx(1.0)
    agreement = np.asarray(report["agreement"])
    assert agreement.shape == (2, 2) and np.allclose(agreement, agreement.T) and np.allclose(np.diag(agreement), 1.0)
    assert report["goal_directed_choices"] is None  # MovementBandits has no goal_position
    json.dumps(report, allow_nan=False)


def test_deterministic_master_makes_every_master_episode_step_greedy(
    bandits_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bool, bool]] = []  # (deterministic, greedy_master) of each PolicyActor.predict
    predict = mlsh.inspect.PolicyActor.predict

    def spy(self: Any, obs: Any, state: Any = None, start: Any = None, deterministic: bool = False, **kw: Any) -> Any:
        calls.append((deterministic, kw.get("greedy_master", False)))
        return predict(self, obs, state, start, deterministic, **kw)

    monkeypatch.setattr(mlsh.inspect.PolicyActor, "predict", spy)
    report, _ = inspect_run(bandits_run, num_tasks=2, episodes=2, adapt=AdaptOptions(iters=1), deterministic="master")
    # The master's episodes (2 tasks x 2 episodes x 10 steps) are greedy; the other calls are the sub-policies'
    # most likely actions recorded alone (deterministic=True), none samples the master.
    assert calls.count((False, True)) == 2 * 2 * 10 and (False, False) not in calls
    assert report["deterministic"] == "master"
    assert sum(s["usage"] for s in report["subpolicies"]) == pytest.approx(1.0)
    assert "their episodes with the masters' most likely choices" in format_report(report)
    with pytest.raises(ConfigError, match=r"deterministic must be false, true or master, got 'yes'; e.g. determ"):
        inspect_run(bandits_run, num_tasks=2, deterministic="yes")
    with pytest.raises(ConfigError, match=r"deterministic must be false, true or master, got 1;"):
        inspect_run(bandits_run, num_tasks=2, deterministic=1)  # 1 == True, but not a setting of it


def test_adapt_macro_len_makes_the_masters_choose_more_often_and_keeps_the_walks_per_trained_macro_step(
    bandits_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agents: list[Any] = []
    from_policy_state = mlsh.inspect.PolicyActor.from_policy_state

    def spy(*args: Any, **kwargs: Any) -> Any:
        agents.append(from_policy_state(*args, **kwargs))
        return agents[-1]

    monkeypatch.setattr(mlsh.inspect.PolicyActor, "from_policy_state", spy)
    report, records = inspect_run(bandits_run, num_tasks=2, episodes=2, adapt=AdaptOptions(iters=1, macro_len=1))
    assert [agent.macro_len for agent in agents] == [1, 1]  # the run's is 5: the masters choose every step
    assert report["adapt_macro_len"] == 1
    assert "masters choose every 1 steps" in format_report(report)
    # Alone, the sub-policies are still measured per macro step of the run's (5 steps): two per 10-step episode.
    assert all(len(record.displacements) == 2 * 2 * 2 for record in records)
    assert sum(s["usage"] for s in report["subpolicies"]) == pytest.approx(1.0)
    plain, _ = inspect_run(bandits_run, num_tasks=1, episodes=1, adapt=AdaptOptions(iters=1))
    assert plain["adapt_macro_len"] is None and "masters choose every" not in format_report(plain)
    # The run's train.rollout_len is 20: a macro step must divide it, and the error names one that does.
    with pytest.raises(ConfigError, match=r"adapt_macro_len=3 does not divide the run's train.rollout_len \(20\); "):
        inspect_run(bandits_run, num_tasks=1, adapt=AdaptOptions(iters=1, macro_len=3))
    with pytest.raises(ConfigError, match=r"e\.g\. adapt_macro_len=4\."):
        inspect_run(bandits_run, num_tasks=1, adapt=AdaptOptions(iters=1, macro_len=3))
    with pytest.raises(ConfigError, match=r"adapt_macro_len must be a positive integer or null, got 0; set e"):
        AdaptOptions(macro_len=0)


def test_identical_subpolicies_are_flagged_alike(bandits_run: Path, tmp_path: Path) -> None:
    payload = load_checkpoint(bandits_run)
    state = payload["learner"]["policy"]
    for key, value in state.items():
        if key.startswith("subpolicies."):
            state[key] = value[:1].expand_as(value).clone() if value.dim() else value
    save_checkpoint(tmp_path / "checkpoint.pt", {k: v for k, v in payload.items() if k != "format_version"})
    report, _ = inspect_run(tmp_path, num_tasks=2, episodes=1, adapt=AdaptOptions(iters=1))
    assert report["agreement"][0][1] == 1.0
    assert report["alike"] == [[0, 1]]
    assert torch.equal(state["subpolicies.actor.layers.0.weight"][0], state["subpolicies.actor.layers.0.weight"][1])


def test_grid_envs_get_visit_heat_maps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "rooms"
    train(small_config("mlsh/FourRooms-v0"), run_dir)
    output = tmp_path / "out" / "inspect.json"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "mlsh.inspect",
            f"checkpoint={run_dir}",
            "num_tasks=2",
            "episodes=1",
            "adapt_iters=1",
            "master.lr=0.003",
            f"output={output}",
            "video=true",
            "video_format=gif",
        ],
    )
    main()
    assert sorted(p.name for p in output.parent.glob("*.gif")) == ["inspect_task00.gif"]  # video_tasks=1
    report = json.loads(output.read_text())
    assert report["master_settings"] == {"lr": 0.003}
    assert "steps each; masters with lr=0.003; return after adaptation" in format_report(report).splitlines()[0]
    assert report["grid"] is True
    assert report["goal_directed_choices"] is None  # FourRooms has no goal_position
    _, records = inspect_run(run_dir, num_tasks=2, episodes=1, adapt=AdaptOptions(iters=1))
    visited = {cell for r in records for cell in (*r.visits_active, *r.visits_alone)}
    assert visited <= set(FREE_CELLS)
    assert sum(sum(r.visits_active.values()) for r in records) == sum(r.active_steps for r in records)
    with Image.open(output.with_suffix(".png")) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] // 2 > 100
    assert plot_report(report, records, tmp_path / "again.png").is_file()


def test_goal_directed_shares_on_hand_made_decisions() -> None:
    means = np.array([[0.0, 1.0], [1.0, 0.0]])  # sub-policy 0 walks up (+y), 1 walks right (+x)
    up, right = [0.0, 1.0], [1.0, 0.0]
    directions = np.array([up, up, up, up, right, right, right, right])
    chosen = np.array([0, 0, 0, 1, 1, 1, 0, 0])
    tasks = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    shares = goal_directed_shares(means, directions, chosen, tasks, num_tasks=3)
    assert shares == {"overall": 5 / 8, "per_task": [0.75, 0.5, None], "decisions": 8}
    # Diagonal goals: the larger component decides; the second sub-policy only moves half as far.
    slow = np.array([[0.0, 2.0], [0.5, 0.0]])
    diagonal = np.array([[0.8, 0.6], [0.6, 0.8], [1.0, 0.0]])
    shares = goal_directed_shares(slow, diagonal, np.array([1, 0, 1]), np.zeros(3, dtype=int), num_tasks=1)
    assert shares == {"overall": 2 / 3, "per_task": [2 / 3], "decisions": 3}


def test_goal_position_of_ant_twowalk_and_none_for_bandits() -> None:
    env = gym.make("mlsh/AntTwowalk-v0")
    env.unwrapped.task = 0
    np.testing.assert_array_equal(env.unwrapped.goal_position, [0.0, 5.0])  # before any reset
    env.unwrapped.task = 1
    goal = env.unwrapped.goal_position
    assert goal.shape == (2,) and goal.dtype == np.float64
    np.testing.assert_array_equal(goal, [5.0, 0.0])  # right after the task change
    env.reset(seed=0, options={"task": 0})
    np.testing.assert_array_equal(env.unwrapped.goal_position, [0.0, 5.0])
    env.close()
    bandits = gym.make("mlsh/MovementBandits-v0")
    assert not hasattr(bandits.unwrapped, "goal_position")
    bandits.close()


def test_goal_directed_choices_on_ant_twowalk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = small_config("mlsh/AntTwowalk-v0", macro_len=10)
    cfg.env.max_episode_steps = 40
    train(cfg, tmp_path)
    seen: list[tuple[int, np.ndarray]] = []

    def recording(*args: Any) -> mlsh.inspect.Episode:
        episode = run_with_master(*args)
        seen.extend(episode.decisions)
        return episode

    run_with_master = mlsh.inspect._run_with_master
    monkeypatch.setattr(mlsh.inspect, "_run_with_master", recording)
    report, _ = inspect_run(tmp_path, num_tasks=2, episodes=1, adapt=AdaptOptions(iters=1))
    choices = report["goal_directed_choices"]
    assert choices["decisions"] == len(seen) == 2 * 1 * 4  # tasks x episodes x (40 steps / macro_len 10)
    means = np.array([sub["mean_displacement"] for sub in report["subpolicies"]])
    directions = np.array([d for _, d in seen])
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0)
    right = np.argmax(directions @ means.T, axis=1)
    assert choices["overall"] == pytest.approx(np.mean(right == np.array([sub for sub, _ in seen])))
    assert 0.0 <= choices["overall"] <= 1.0 and len(choices["per_task"]) == 2
    assert choices["overall"] == pytest.approx(np.mean(choices["per_task"]))  # 4 decisions per task
    assert f"in {choices['overall']:.2f} of 8 decisions" in format_report(report)
    assert report["goal_reached"] is None  # AntTwowalk flags no success
    assert "reached the goal" not in format_report(report)
    for sub in report["subpolicies"]:  # alone on the open floor: 4 whole macro steps per 40-step episode
        walk = sub["open_floor"]
        assert walk["macro_steps"] == 4 and len(walk["mean_displacement"]) == 2
        assert abs(walk["speed_along_heading"]) <= walk["mean_step_length"] + 1e-9
        assert f"speed along its heading {walk['speed_along_heading']:.2f}" in format_report(report)
    json.dumps(report, allow_nan=False)


def test_open_floor_walk_on_hand_made_moves() -> None:
    straight = open_floor_walk(np.array([[3.0, 4.0], [3.0, 4.0]]))
    assert straight["speed_along_heading"] == pytest.approx(5.0)
    assert straight["heading_degrees"] == pytest.approx(np.degrees(np.arctan2(4, 3)))
    # A zigzag covers 5 per macro step but only 3 of it along its mean heading (+x).
    zigzag = open_floor_walk(np.array([[3.0, 4.0], [3.0, -4.0]]))
    assert zigzag["mean_displacement"] == pytest.approx([3.0, 0.0])
    assert zigzag["speed_along_heading"] == pytest.approx(3.0) and zigzag["mean_step_length"] == pytest.approx(5.0)
    assert zigzag["heading_degrees"] == pytest.approx(0.0) and zigzag["macro_steps"] == 2
    assert open_floor_walk(np.zeros((3, 2)))["speed_along_heading"] == 0.0  # standing still: no heading


def test_bandits_have_no_open_floor(bandits_run: Path) -> None:
    report, _ = inspect_run(bandits_run, num_tasks=1, episodes=1, adapt=AdaptOptions(iters=1))
    assert all("open_floor" not in sub for sub in report["subpolicies"])
    assert "open floor" not in format_report(report)


def test_goal_reached_share_on_ant_maze(tmp_path: Path) -> None:
    cfg = tiny_ant_maze_config()
    cfg.env.kwargs = {"goal_radius": 100.0}  # the whole arena is the goal region: every episode reaches it
    train(cfg, tmp_path)
    report, _ = inspect_run(tmp_path, num_tasks=2, episodes=2, adapt=AdaptOptions(iters=1))
    closest = report["goal_reached"].pop("closest_approach")
    assert report["goal_reached"] == {"overall": 1.0, "per_task": [1.0, 1.0], "episodes": 4}
    assert "adapted masters reached the goal in 1.00 of 4 episodes (per task: 1.00 1.00)" in format_report(report)
    # Each episode ends on its first step (0.05 s), so the closest it came is about its start's distance to the goal.
    start_distances = [math.dist(START_XY, layout.goal) for layout in LAYOUTS]
    for distance in closest["per_task"]:
        assert min(abs(distance - d) for d in start_distances) < 0.5
    assert min(closest["per_task"]) <= closest["median"] <= max(closest["per_task"])


def test_an_ant_maze_run_is_inspected_on_the_obstacle_course(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Transfer (issue: the paper's obstacle course): env=AntObstacles adapts the masters on the course.
    cfg = tiny_ant_maze_config()
    train(cfg, tmp_path / "run")
    course = EnvConfig(id="mlsh/AntObstacles-v0", kwargs={"goal_radius": 100.0}, max_episode_steps=20)
    report, _ = inspect_run(tmp_path / "run", num_tasks=1, episodes=1, adapt=AdaptOptions(iters=1), env=course)
    assert report["env_id"] == "mlsh/AntObstacles-v0"
    assert report["goal_reached"]["overall"] == 1.0  # the whole course is the goal region
    assert all("open_floor" in sub for sub in report["subpolicies"])
    output = tmp_path / "course.json"
    argv = [f"checkpoint={tmp_path / 'run'}", "env=AntObstacles", "+env.max_episode_steps=20", "num_tasks=1"]
    argv += ["episodes=1", "adapt_iters=1"]
    mlsh.inspect._inspect([*argv, f"output={output}"], dry_run=False)
    assert json.loads(output.read_text())["env_id"] == "mlsh/AntObstacles-v0"
    assert "(mlsh/AntObstacles-v0)" in capsys.readouterr().out


def test_goal_reached_counts_episodes_per_task() -> None:
    assert mlsh.envs.success({"goal_reached": np.bool_(True)}) is True
    assert mlsh.envs.success({"is_success": 0.0, "goal_reached": True}) is False  # Gymnasium's key first
    assert mlsh.envs.success({"distance_to_goal": 3.0}) is None
    shares = mlsh.inspect._goal_reached([(0, True, 1.5), (0, False, 7.5), (2, True, 0.5)], num_tasks=3)
    closest = shares.pop("closest_approach")
    assert shares == {"overall": pytest.approx(2 / 3), "per_task": [0.5, None, 1.0], "episodes": 3}
    assert closest == {"median": 1.5, "per_task": [4.5, None, 0.5]}
    assert "closest_approach" not in mlsh.inspect._goal_reached([(0, True, None)], num_tasks=1)  # no goal position
    assert mlsh.inspect._goal_reached([], num_tasks=3) is None


def test_task_coverage_flags_a_task_family_no_sub_policy_serves() -> None:
    # Two sub-policies that both go to goal 1 (a collapsed MovementBandits seed): the tasks that pay goal 0
    # get little from either alone and from the adapted master.
    alone = np.array([[2.0, 1.0], [40.0, 38.0], [3.0, 0.0], [41.0, 42.0]])
    adapted = np.array([4.0, 41.0, 2.0, 40.0])
    oracle = np.array([42.0, 43.0, 40.0, 44.0])
    coverage = task_coverage(alone, adapted, oracle, covered_fraction=0.5, uncovered_share=0.2)
    assert coverage["uncovered_tasks"] == [0, 2]
    assert coverage["uncovered_share"] == 0.5 and coverage["flag"] is True
    assert coverage["best_alone"] == [2.0, 40.0, 3.0, 42.0] and coverage["best_alone_index"] == [0, 0, 0, 1]
    assert coverage["reference_kind"] == "oracle"
    # Specialised sub-policies: each task has one that serves it.
    alone[[0, 2], 1] = [39.0, 37.0]
    coverage = task_coverage(alone, adapted, oracle, covered_fraction=0.5, uncovered_share=0.2)
    assert coverage["uncovered_tasks"] == [] and coverage["flag"] is False
    # A master that composes sub-policies covers a task none serves alone (FourRooms, the Ant mazes).
    coverage = task_coverage(np.zeros((4, 2)), np.array([0.9, 0.8, 0.7, 0.9]), None, 0.5, 0.2)
    assert coverage["reference_kind"] == "best adapted" and coverage["reference"] == [0.9] * 4
    assert coverage["flag"] is False
    # One uncovered task of ten stays under a share of 0.2; no fraction of a non-positive reference.
    coverage = task_coverage(np.zeros((10, 2)), np.array([0.1] + [1.0] * 9), None, 0.5, 0.2)
    assert coverage["uncovered_tasks"] == [0] and coverage["flag"] is False
    assert task_coverage(np.zeros((2, 2)), np.array([-3.0, -1.0]), None, 0.5, 0.2) is None
    # A task whose oracle gets nothing (goals out of reach in time) is left out of the share.
    coverage = task_coverage(np.zeros((2, 2)), np.array([0.0, 1.0]), np.array([0.0, 2.0]), 0.5, 0.2)
    assert coverage["checked_tasks"] == 1 and coverage["uncovered_tasks"] == []


def test_inspect_reports_task_coverage_against_the_oracle(tmp_path: Path) -> None:
    cfg = small_config()
    cfg.env.max_episode_steps = 30  # the oracle reaches some goals in time
    train(cfg, tmp_path)
    report, _ = inspect_run(tmp_path, num_tasks=2, episodes=2, adapt=AdaptOptions(iters=1), covered_fraction=1.0)
    coverage = report["task_coverage"]
    assert coverage["reference_kind"] == "oracle" and len(coverage["reference"]) == 2
    assert len(coverage["adapted"]) == 2 and len(coverage["best_alone_index"]) == 2
    assert all(0.0 <= value <= 50.0 for value in coverage["best_alone"])  # reward <= 1 per step, T = 50
    assert report["uncovered"] is coverage["flag"]
    assert "uncovered tasks (neither a single sub-policy nor the adapted master reaches 1.00" in format_report(report)
    json.dumps(report, allow_nan=False)
    with pytest.raises(ConfigError, match="covered_fraction must be a share in \\(0, 1\\], got 0; set e.g."):
        inspect_run(tmp_path, num_tasks=2, episodes=1, adapt=AdaptOptions(iters=1), covered_fraction=0)
