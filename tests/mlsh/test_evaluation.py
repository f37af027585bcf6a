"""Evaluation on unseen tasks: disjoint task stream, frozen sub-policies, long episodes, strict JSON; the suite's
baselines and its outputs (JSON, CSV, PNG, TensorBoard, videos)."""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import imageio
import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import agents.agent
import mlsh.evaluation
from agents import MLSHAgent, flat_ppo_config
from mlsh.checkpoint import checkpoint_path, load_checkpoint
from mlsh.cli import compose_config, run_cli
from mlsh.config import Config, ConfigError, PPOConfig, config_from_dict
from mlsh.errors import CheckpointError
from mlsh.evaluate import main as evaluate_main
from mlsh.evaluation import (
    AdaptOptions,
    CompareOptions,
    MethodResult,
    adapt_masters,
    evaluate_run,
    flat_ppo_adaptation,
    format_table,
    master_overrides,
    oracle_returns,
    sample_eval_tasks,
)
from mlsh.meta import TRAIN_TASK_STREAM, task_rng
from mlsh.report import CSV_COLUMNS, GOAL_CSV_COLUMNS, csv_columns
from mlsh.trainer import train
from mlsh.video import BANNER_HEIGHT, PALETTE, record_episode
from tests.conftest import GOAL_ID, small_config


def test_episodes_longer_than_a_rollout_are_measured_and_json_is_strict(tmp_path: Path) -> None:
    cfg = small_config()  # rollout_len 20 < MovementBandits' 50-step episodes
    cfg.train.total_timesteps = cfg.steps_per_iteration
    train(cfg, tmp_path)
    evaluation = evaluate_run(
        tmp_path, num_tasks=3, adapt=AdaptOptions(iters=1), compare=CompareOptions(oracle_episodes=2)
    )
    result = evaluation.to_dict()
    assert list(evaluation.methods) == ["mlsh"] and evaluation.adapted is None  # keep_masters=False
    assert evaluation.mlsh.curve.shape == (1, 3) and evaluation.mlsh.after.shape == (3,)
    assert result["ratio"] == evaluation.ratio and result["num_tasks"] == evaluation.num_tasks == 3
    assert result["adaptation_curve"] == [None]  # no episode ended during the one 20-step iteration
    assert np.isfinite(result["return_after_adaptation"])
    assert all(np.isfinite(result["return_after_adaptation_per_task"]))
    json.dumps(result, allow_nan=False)


def test_eval_tasks_come_from_their_own_stream() -> None:
    cfg = small_config("mlsh/FourRooms-v0")
    tasks = sample_eval_tasks(cfg, 30, seed=0)
    from envs.four_rooms import HELDOUT_GOALS

    assert set(tasks) <= set(HELDOUT_GOALS)  # the env's held-out split
    train_rng, eval_rng = task_rng(0, TRAIN_TASK_STREAM), task_rng(0, 1)
    assert list(train_rng.integers(1 << 30, size=5)) != list(eval_rng.integers(1 << 30, size=5))


def test_oracle_returns_are_per_task_means() -> None:
    cfg = small_config()
    means = oracle_returns(cfg.env, [0, 1, 0], episodes=3, seed=5)
    assert means.shape == (3,) and np.all(means > 30) and np.all(means <= 50)


def test_bad_evaluation_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="num_tasks must be a positive integer"):
        evaluate_run(tmp_path, num_tasks=0)
    with pytest.raises(ConfigError, match=r"adapt_iters must be a non-negative integer or null .* adapt_iters=9"):
        AdaptOptions(iters=-1)
    with pytest.raises(ConfigError, match=r"baselines must be a list of names, got 'scratch'; write e.g."):
        CompareOptions(baselines="scratch")
    with pytest.raises(ConfigError, match="Unknown baseline 'nope'; choose from scratch"):
        CompareOptions(baselines=["nope"])


# -- the unseen-task suite: baselines, CSV, PNG, TensorBoard, videos -----------------------------------------------
SHORT_EPISODES = 10  # MovementBandits cut to 10 steps, so that 20-step iterations end episodes


def _short(cfg: Config) -> Config:
    cfg.env.max_episode_steps = SHORT_EPISODES
    return cfg


@pytest.fixture(scope="module")
def suite_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny MLSH, flat PPO and no-warmup runs on short MovementBandits episodes (about a second each)."""
    runs = {}
    for name, cfg in {
        "mlsh": _short(small_config()),
        "flat": flat_ppo_config(_short(small_config())),
        "no_warmup": _short(small_config(warmup_iters=0)),
    }.items():
        runs[name] = tmp_path_factory.mktemp(name)
        train(cfg, runs[name])
    return runs


def _evaluate_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["mlsh.evaluate", *args])
    evaluate_main()


def test_evaluate_writes_json_csv_png_tensorboard_and_videos(
    suite_runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    output = tmp_path / "out" / "unseen.json"
    _evaluate_cli(
        monkeypatch,
        f"checkpoint={suite_runs['mlsh']}",
        "num_tasks=3",
        "adapt_iters=2",
        "oracle_episodes=2",
        "baselines=[scratch,flat,finetune,no_warmup]",
        f"baseline_runs.flat={suite_runs['flat']}",
        f"baseline_runs.no_warmup={suite_runs['no_warmup']}",
        "video=true",
        "video_tasks=2",
        "video_format=both",
        "master.gamma=0.9",
        f"output={output}",
    )
    printed = capsys.readouterr().out
    assert "shared flat policy, fine-tuned" in printed and "MLSH without warmup" in printed
    assert "masters with gamma=0.9)" in printed

    def no_nan(constant: str) -> float:
        raise AssertionError(f"non-strict JSON constant {constant}")

    result = json.loads(output.read_text(), parse_constant=no_nan)
    methods = result["methods"]
    assert list(methods) == ["mlsh", "scratch", "flat", "finetune", "no_warmup"]
    for method in methods.values():
        assert np.shape(method["curve_per_task"]) == (3, 2)  # [tasks, iterations]; 10-step episodes always end
        assert method["steps_per_task_per_iter"] == 40  # 2 envs x 20 steps, the same budget for every method
        after = method["return_after_adaptation_per_task"]
        assert method["return_after_adaptation"] == pytest.approx(np.mean(after))
        assert method["ratio"] == pytest.approx(np.mean(after) / result["oracle_return"])
        assert all(0.0 <= x <= SHORT_EPISODES for row in method["curve_per_task"] for x in row)
    assert result["return_after_adaptation"] == methods["mlsh"]["return_after_adaptation"]
    assert methods["flat"]["run_dir"] == str(suite_runs["flat"])
    assert result["master_settings"] == {"gamma": 0.9}

    with open(output.with_suffix(".csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 5 * 3 * (2 + 1) + 3  # methods x tasks x (iterations + after), then the oracle per task
    scratch_task1 = [float(r["return"]) for r in rows if r["method"] == "scratch" and r["task_index"] == "1"]
    scratch = methods["scratch"]
    expected = [*scratch["curve_per_task"][1], scratch["return_after_adaptation_per_task"][1]]
    assert scratch_task1 == pytest.approx(expected)
    assert [r["env_steps"] for r in rows[:3]] == ["40", "80", "80"]
    assert [float(r["return"]) for r in rows if r["method"] == "oracle"] == pytest.approx(
        result["oracle_return_per_task"]
    )

    with Image.open(output.with_suffix(".png")) as image:
        assert image.format == "PNG" and image.size == (1000, 450)
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 50  # curves, not a blank canvas

    events = EventAccumulator(str(output.parent / "tb" / "unseen"))
    events.Reload()
    curve = events.Scalars("eval_unseen/mlsh/ep_rew_mean")
    assert [e.step for e in curve] == [40, 80]
    assert [e.value for e in curve] == pytest.approx(methods["mlsh"]["curve"])
    assert events.Scalars("eval_unseen/finetune/ratio")[0].value == pytest.approx(methods["finetune"]["ratio"])

    gifs = sorted(output.parent.glob("unseen_task*.gif"))
    assert [g.name for g in gifs] == ["unseen_task00.gif", "unseen_task01.gif"]
    with Image.open(gifs[0]) as gif:
        assert gif.n_frames == SHORT_EPISODES + 1  # a frame before every step and one after the last
        assert gif.size == (200, 200 + BANNER_HEIGHT)  # MovementBandits' 200x200 frame under the banner
    mp4s = sorted(output.parent.glob("unseen_task*.mp4"))
    assert [m.name for m in mp4s] == ["unseen_task00.mp4", "unseen_task01.mp4"]
    reader = imageio.get_reader(mp4s[0], format="FFMPEG")
    try:
        frames = [frame for frame in reader]  # list() would ask len(), which is inf for a stream
    finally:
        reader.close()
    assert len(frames) == SHORT_EPISODES + 1 and frames[0].shape == (200 + BANNER_HEIGHT, 200, 3)
    assert f"mlsh: wrote {mp4s[1]}" in printed


def test_video_frames_show_the_active_subpolicy(suite_runs: dict[str, Path]) -> None:
    agent = MLSHAgent.load(suite_runs["mlsh"], device="cpu", seed=0)
    env = gym.make("mlsh/MovementBandits-v0", render_mode="rgb_array", max_episode_steps=12)
    frames, subs, total, reached = record_episode(agent, env, seed=3)
    assert reached is None  # MovementBandits' info has no goal_reached
    assert len(frames) == 13 and len(subs) == 12
    assert all(frame.shape == (200 + BANNER_HEIGHT, 200, 3) and frame.dtype == np.uint8 for frame in frames)
    for frame, sub in zip(frames, subs):
        np.testing.assert_array_equal(frame[BANNER_HEIGHT - 1, -1], PALETTE[sub])  # banner colour = sub-policy
    assert 0.0 <= total <= 12.0
    with pytest.raises(ConfigError, match="render_mode='rgb_array'"):
        record_episode(agent, gym.make("mlsh/MovementBandits-v0"))


def test_baselines_need_the_right_runs(suite_runs: dict[str, Path]) -> None:
    mlsh = suite_runs["mlsh"]
    with pytest.raises(ConfigError, match="Unknown baseline 'nope'; choose from scratch, sb3_scratch, flat"):
        evaluate_run(mlsh, num_tasks=2, compare=CompareOptions(baselines=["nope"]))
    with pytest.raises(ConfigError, match=r"python -m mlsh.train algo=flat_ppo.*baseline_runs.flat=<run dir>"):
        evaluate_run(mlsh, num_tasks=2, compare=CompareOptions(baselines=["finetune"]))
    with pytest.raises(ConfigError, match="was trained with mlsh.num_subpolicies=2, not 1"):
        evaluate_run(mlsh, num_tasks=2, compare=CompareOptions(baselines=["flat"], baseline_runs={"flat": mlsh}))
    with pytest.raises(ConfigError, match="was trained with mlsh.warmup_iters=2, not 0"):
        evaluate_run(
            mlsh, num_tasks=2, compare=CompareOptions(baselines=["no_warmup"], baseline_runs={"no_warmup": mlsh})
        )


def test_evaluation_env_and_split(suite_runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["mlsh.evaluate", f"checkpoint={suite_runs['mlsh']}", "env=FourRooms"])
    with pytest.raises(CheckpointError, match="trained on 'mlsh/MovementBandits-v0'.*pick the env the checkpoint"):
        evaluate_main()
    monkeypatch.setattr(sys, "argv", ["mlsh.evaluate", f"checkpoint={suite_runs['mlsh']}", "env=Nope"])
    with pytest.raises(ConfigError, match="Unknown env 'Nope'; available: .*MovementBandits"):
        evaluate_main()
    from envs.four_rooms import TRAIN_GOALS

    assert set(sample_eval_tasks(small_config("mlsh/FourRooms-v0"), 30, 0, split="train")) <= set(TRAIN_GOALS)
    with pytest.raises(ConfigError, match="split must be one of heldout, train"):
        sample_eval_tasks(small_config(), 2, 0, split="test")


def test_evaluate_cli_errors_are_one_line(
    suite_runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(sys, "argv", ["mlsh.evaluate", f"checkpoint={suite_runs['mlsh']}", "baselines=[flat]"])
    with pytest.raises(SystemExit) as exit_info:
        run_cli(evaluate_main)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Baseline 'flat' needs a run trained with algo=flat_ppo")


def test_deterministic_measurement_leaves_the_curves_alone(
    suite_runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    compare = CompareOptions(oracle_episodes=2, baselines=["scratch"])
    sampled = evaluate_run(suite_runs["mlsh"], 3, adapt=AdaptOptions(iters=2), compare=compare).to_dict()
    greedy_options = AdaptOptions(iters=2, deterministic=True)
    greedy = evaluate_run(suite_runs["mlsh"], 3, adapt=greedy_options, compare=compare).to_dict()
    again = evaluate_run(suite_runs["mlsh"], 3, adapt=greedy_options, compare=compare).to_dict()
    assert (sampled["deterministic"], greedy["deterministic"]) == (False, True)
    for name in ("mlsh", "scratch"):  # training is the same; only the measurement after it differs
        assert greedy["methods"][name]["curve_per_task"] == sampled["methods"][name]["curve_per_task"]
        assert greedy["methods"][name]["return_after_adaptation_per_task"] == pytest.approx(
            again["methods"][name]["return_after_adaptation_per_task"]
        )
    assert greedy["return_after_adaptation_per_task"] != sampled["return_after_adaptation_per_task"]
    assert "measured with the most likely choices" in format_table(greedy)
    monkeypatch.setattr(sys, "argv", ["mlsh.evaluate", f"checkpoint={suite_runs['mlsh']}", "deterministic=maybe"])
    with pytest.raises(SystemExit):
        run_cli(evaluate_main)
    assert capsys.readouterr().err.strip() == (
        "error: deterministic must be true or false, got 'maybe'; write deterministic=true or deterministic=false."
    )


def test_envs_per_task_sets_every_methods_adaptation_budget(suite_runs: dict[str, Path]) -> None:
    compare = CompareOptions(
        oracle=False, baselines=["scratch", "no_warmup"], baseline_runs={"no_warmup": suite_runs["no_warmup"]}
    )
    default = evaluate_run(suite_runs["mlsh"], 2, adapt=AdaptOptions(iters=1), compare=compare).to_dict()
    assert default["steps_per_task_per_iter"] == 2 * 20  # the run's envs_per_slot x rollout_len
    more = evaluate_run(
        suite_runs["mlsh"], 2, adapt=AdaptOptions(iters=1, envs_per_task=3), compare=compare, keep_masters=True
    )
    assert more.mlsh.steps_per_task_per_iter == 3 * 20 and more.adapted.cfg.train.envs_per_slot == 3
    for name in ("mlsh", "scratch", "no_warmup"):
        assert more.methods[name].steps_per_task_per_iter == 3 * 20, name
    with pytest.raises(ConfigError, match="envs_per_task must be a positive integer or null, got 0; set e.g."):
        AdaptOptions(iters=1, envs_per_task=0)


def test_master_settings_replace_the_runs_while_adapting(suite_runs: dict[str, Path]) -> None:
    common: dict[str, Any] = {"num_tasks": 2, "compare": CompareOptions(oracle=False), "keep_masters": True}
    before = evaluate_run(suite_runs["mlsh"], adapt=AdaptOptions(iters=0), **common)  # measured before any update
    assert before.mlsh.mean_curve == [] and np.isfinite(before.to_dict()["return_after_adaptation"])
    untrained = before.adapted.policy_state
    # Adam moves each weight by about lr per step: with lr 1e-12 the masters stay as initialised.
    frozen = evaluate_run(
        suite_runs["mlsh"], adapt=AdaptOptions(iters=2, master={"lr": 1e-12, "gamma": None}), **common
    )
    trained = evaluate_run(suite_runs["mlsh"], adapt=AdaptOptions(iters=2), **common)
    assert frozen.master_settings == {"lr": 1e-12} and trained.master_settings == {}
    assert frozen.adapted.cfg.master.lr == 1e-12 and trained.adapted.cfg.master.lr == 0.01
    key = "masters.actor.layers.0.weight"
    assert torch.allclose(frozen.adapted.policy_state[key], untrained[key], atol=1e-9)
    assert not torch.allclose(trained.adapted.policy_state[key], untrained[key], atol=1e-4)
    assert "masters with lr=1e-12)" in format_table(frozen.to_dict())
    for settings, message in [
        ({"lrr": 0.1}, "Unknown setting 'master.lrr': the settings under master are"),
        ({"gamma": 2.0}, r"master.gamma must lie in \[0, 1\], got 2.0."),
        ({"lr": "fast"}, "master.lr must be a number"),
    ]:
        with pytest.raises(ConfigError, match=message):
            evaluate_run(suite_runs["mlsh"], adapt=AdaptOptions(iters=1, master=settings), **common)


def _record_adaptations(monkeypatch: pytest.MonkeyPatch, what: Callable[[Config], Any]) -> list[Any]:
    """Records ``what(cfg)`` of every master adaptation (``mlsh.evaluation`` and ``MLSHAgent.adapt``)."""
    seen: list[Any] = []
    adapt = mlsh.evaluation.adapt_masters

    def recording(cfg: Config, *args: Any, **kwargs: Any) -> Any:
        seen.append(what(cfg))
        return adapt(cfg, *args, **kwargs)

    monkeypatch.setattr(mlsh.evaluation, "adapt_masters", recording)
    monkeypatch.setattr(agents.agent, "adapt_masters", recording)
    return seen


def test_master_settings_reach_the_mlsh_baseline_runs(
    suite_runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record_adaptations(monkeypatch, lambda cfg: (cfg.mlsh.warmup_iters, cfg.master.lr, cfg.master.gamma))
    evaluate_run(
        suite_runs["mlsh"],
        num_tasks=2,
        adapt=AdaptOptions(iters=1, master={"lr": 0.002, "gamma": 0.5}),
        compare=CompareOptions(
            oracle=False, baselines=["scratch", "no_warmup"], baseline_runs={"no_warmup": suite_runs["no_warmup"]}
        ),
    )
    assert len(seen) == 2 and seen[1][0] == 0  # MLSH, then the no-warmup run
    assert all(lr == 0.002 and gamma == 0.5 for _, lr, gamma in seen)


def test_adapt_macro_len_reaches_the_evaluated_runs_masters_not_the_baseline_runs(
    suite_runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record_adaptations(monkeypatch, lambda cfg: cfg.mlsh.macro_len)
    result = evaluate_run(
        suite_runs["mlsh"],
        num_tasks=2,
        adapt=AdaptOptions(iters=1, macro_len=2),
        compare=CompareOptions(
            oracle=False, baselines=["no_warmup"], baseline_runs={"no_warmup": suite_runs["no_warmup"]}
        ),
    )
    own = load_checkpoint(suite_runs["no_warmup"])["config"]["mlsh"]["macro_len"]
    assert own != 2 and seen == [2, own]  # MLSH's masters choose every 2 steps; the baseline run keeps its own
    assert result.to_dict()["adapt_macro_len"] == 2
    assert "; masters choose every 2 steps)" in format_table(result.to_dict())


def test_a_runs_adapt_master_settings_reach_its_fresh_masters_and_a_commands_master_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = small_config()
    cfg.adapt_master = {**cfg.adapt_master, "lr": 0.002, "gamma": 0.5}
    train(cfg, tmp_path / "run")
    seen = _record_adaptations(monkeypatch, lambda cfg: (cfg.master.lr, cfg.master.gamma, cfg.master.gae_lambda))
    common = {"num_tasks": 1, "compare": CompareOptions(oracle=False)}
    result = evaluate_run(tmp_path / "run", adapt=AdaptOptions(iters=1), **common)
    lam = cfg.master.gae_lambda  # the run's own, not given
    assert seen[-1] == (0.002, 0.5, lam) and result.master_settings == {"lr": 0.002, "gamma": 0.5}
    result = evaluate_run(tmp_path / "run", adapt=AdaptOptions(iters=1, master={"gamma": 0.9}), **common)
    assert seen[-1] == (0.002, 0.9, lam) and result.master_settings == {"lr": 0.002, "gamma": 0.9}
    agent = MLSHAgent.load(tmp_path / "run")
    agent.adapt(gym.make("mlsh/MovementBandits-v0"), iterations=1)  # MLSHAgent.adapt: the same settings
    assert seen[-1] == (0.002, 0.5, lam)
    assert load_checkpoint(checkpoint_path(tmp_path / "run"))["config"]["master"]["lr"] == 0.01  # training's own


def test_adapt_master_is_checked_like_master() -> None:
    for settings, message in [
        ({"lrr": 0.1}, "Unknown setting 'adapt_master.lrr': its keys are master's"),
        ({"gamma": 2.0}, r"adapt_master.gamma must lie in \[0, 1\], got 2.0."),
        ({"lr": "fast"}, "adapt_master.lr must be a number"),
    ]:
        with pytest.raises(ConfigError, match=message):
            config_from_dict({"adapt_master": settings})
    filled = config_from_dict({"adapt_master": {"lr": 0.003}}).adapt_master  # every key, null where not given
    assert set(filled) == {f.name for f in dataclasses.fields(PPOConfig)} and filled["lr"] == 0.003
    assert {k: v for k, v in filled.items() if v is not None} == {"lr": 0.003}


def test_master_section_has_every_ppo_setting_and_ignores_an_env_configs() -> None:
    for name in ("evaluate", "inspect"):
        assert set(compose_config(name, ["checkpoint=x"])["master"]) == {f.name for f in dataclasses.fields(PPOConfig)}
    # env=<Name> takes that config's env section only: AntTwowalk's own master settings stay out.
    data = compose_config("evaluate", ["checkpoint=x", "env=AntTwowalk", "master.ent_coef=0.01"])
    assert data["env"]["id"] == "mlsh/AntTwowalk-v0"
    assert master_overrides(data["master"]) == {"ent_coef": 0.01}


# -- goal reaches (envs whose step info has goal_reached: AntObstacles, AntMaze; here a scripted toy) ---------------
# GoalCountEnv's episodes last 4 steps, so each 20-step iteration ends 5 episodes in each of a task's 2 envs.
# By hand, per iteration: task 0 never reaches the goal; task 1 on its envs' even-numbered episodes (2nd and
# 4th, then 6th, 8th and 10th: 2 x 2, then 2 x 3); task 2 in every episode (mid-episode).
GOAL_TASKS = [0, 1, 2]
HAND_COUNT = np.array([[0, 4, 10], [0, 6, 10]])  # [iters, tasks]


@pytest.fixture(scope="module")
def goal_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = small_config(GOAL_ID)
    cfg.train.total_timesteps = cfg.steps_per_iteration
    run_dir = tmp_path_factory.mktemp("goal_run")
    train(cfg, run_dir)
    return run_dir


def test_goal_reaches_match_a_hand_count(goal_run: Path) -> None:
    payload = load_checkpoint(checkpoint_path(goal_run))
    cfg = small_config(GOAL_ID)
    mlsh_adapted = adapt_masters(cfg, payload["learner"]["policy"], GOAL_TASKS, 2, 0, goal_run)
    scratch = flat_ppo_adaptation(cfg, GOAL_TASKS, 2, 0)
    for adaptation in (mlsh_adapted, scratch):
        np.testing.assert_array_equal(adaptation.episodes, np.full((2, 3), 10))
        np.testing.assert_array_equal(adaptation.goal_reaches, HAND_COUNT)
        np.testing.assert_allclose(adaptation.curve, HAND_COUNT / 10)  # reward 1 on the step that reaches
    method = MethodResult.of(mlsh_adapted, 40)
    assert len(method.success_curve) == 2  # [iters]
    assert method.success_curve == pytest.approx([(0 + 0.4 + 1) / 3, (0 + 0.6 + 1) / 3])
    assert method.total_goal_reaches == int(HAND_COUNT.sum()) == 30
    assert method.adaptation_env_steps == 2 * 3 * 40


def test_goal_reaches_reach_json_csv_summary_png_and_tensorboard(
    goal_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    output = tmp_path / "goals.json"
    _evaluate_cli(
        monkeypatch,
        f"checkpoint={goal_run}",
        "num_tasks=3",
        "adapt_iters=2",
        "oracle=false",
        "baselines=[scratch,sb3_scratch]",
        f"output={output}",
    )
    printed = capsys.readouterr().out
    result = json.loads(output.read_text())
    tasks = result["tasks"]
    expected = np.array([[HAND_COUNT[i][task] for task in tasks] for i in range(2)])  # [iters, tasks]
    for name, method in result["methods"].items():
        assert method["episodes_per_task"] == [[10, 10]] * 3, name
        assert method["goal_reaches_per_task"] == expected.T.tolist(), name
        assert method["goal_reaches_total"] == int(expected.sum()) == sum(map(sum, method["goal_reaches_per_task"]))
        assert method["episodes_total"] == 60 and method["adaptation_env_steps"] == 2 * 3 * 40
        assert method["success_curve"] == pytest.approx((expected / 10).mean(axis=1).tolist())
    assert result["goal_reaches_total"] == result["methods"]["mlsh"]["goal_reaches_total"]
    assert result["success_curve"] == result["methods"]["mlsh"]["success_curve"]
    assert f"goal reaches during adaptation: {int(expected.sum())} of 60 episodes in 240 env steps" in printed
    assert "goal reaches  env steps" in printed

    with open(output.with_suffix(".csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS + GOAL_CSV_COLUMNS
    adapt_rows = [r for r in rows if r["method"] == "sb3_scratch" and r["phase"] == "adapt"]
    assert [int(r["goal_reaches"]) for r in adapt_rows] == expected.T.reshape(-1).tolist()
    assert {r["episodes"] for r in adapt_rows} == {"10"}
    assert all(r["goal_reaches"] == "" for r in rows if r["phase"] == "after")
    with Image.open(output.with_suffix(".png")) as image:
        assert image.size == (1500, 450)  # the success-rate panel beside the returns and the spread
    events = EventAccumulator(str(output.parent / "tb" / "goals"))
    events.Reload()
    success = events.Scalars("eval_unseen/scratch/success_rate")
    assert [e.value for e in success] == pytest.approx(result["methods"]["scratch"]["success_curve"])


def test_envs_without_goal_reached_get_none_and_unchanged_numbers(suite_runs: dict[str, Path]) -> None:
    compare = CompareOptions(oracle_episodes=2, baselines=["scratch"])
    evaluation = evaluate_run(suite_runs["mlsh"], 3, adapt=AdaptOptions(iters=2), compare=compare)
    for method in evaluation.methods.values():
        assert method.episodes is None and method.goal_reaches is None
        assert method.success_curve is None and method.total_goal_reaches is None
    result = evaluation.to_dict()
    assert "goal_reaches_total" not in result and "success_curve" not in result
    assert set(result["methods"]["mlsh"]) == {
        "curve",
        "curve_mean",
        "curve_per_task",
        "ratio",
        "return_after_adaptation",
        "return_after_adaptation_per_task",
        "return_after_adaptation_std",
        "steps_per_task_per_iter",
    }
    assert csv_columns(result) == CSV_COLUMNS
    assert "goal reaches" not in format_table(result)
    # The numbers the evaluation gave before it counted goal reaches, on the same runs and seeds.
    assert result["methods"]["mlsh"]["curve_per_task"] == [[0.0, 0.0], [0.0, 0.0], [0.0, 1.25]]
    assert result["return_after_adaptation_per_task"] == [0.0, 1.5, 1.0]
    assert result["methods"]["scratch"]["curve_per_task"] == [[0.0, 0.25], [0.75, 0.0], [0.0, 0.0]]
    assert result["oracle_return_per_task"] == [5.0, 3.5, 8.0]
