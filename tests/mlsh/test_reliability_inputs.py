"""Every bad input gets one ``error:`` line and exit 2 before anything is written, for the command lines and the
library alike; legal but unwise settings get one ``warning:`` line (docs: reliability)."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import MLSHAgent, SubPolicyEnv
from mlsh.checks import check_writable, probe_env
from mlsh.config import Config, EnvConfig, MLSHConfig
from mlsh.errors import ConfigError, MLSHError, StorageError
from mlsh.evaluate import check_command as evaluate_check_command
from mlsh.evaluate import main as evaluate_main
from mlsh.evaluation import AdaptOptions, evaluate_run
from mlsh.inspect import inspect_run
from mlsh.inspect import main as inspect_main
from mlsh.rundir import claim_output
from mlsh.train import main as train_main
from mlsh.trainer import prepare_run, train
from tests.conftest import small_config
from tests.reliability_helpers import DUCK_ID, NAN_ID, TINY, run_main, tree_hash

CUDA = torch.cuda.is_available()


# -- mlsh.train ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        # seeds: negative, beyond 64 bits, wrong type
        (["seed=-1"], "seed must be an integer in [0, 4294967295], got -1"),
        (["seed=99999999999999999999"], "seed must be an integer in [0, 4294967295]"),
        (["seed=1.5"], "seed must be an integer, got 1.5"),
        # env settings
        (["env.max_episode_steps=0"], "env.max_episode_steps must be null (the registered time limit) or an integer"),
        (["env.max_episode_steps=-1"], "got -1; set e.g. env.max_episode_steps=100"),
        (["env.max_episode_steps=abc"], "an integer >= 1, got 'abc'"),
        ([f"env.id={NAN_ID}"], f"Env '{NAN_ID}' returned a non-finite observation (NaN or inf) at step 3"),
        (["+env.kwargs.nope=1"], "env.kwargs do not fit"),
        (
            [f"env.id={DUCK_ID}", "mlsh.task_sampling=balanced"],
            f"mlsh.task_sampling=balanced needs a finite task family, and {DUCK_ID} has no train_tasks; set "
            "mlsh.task_sampling=iid.",
        ),
        # devices
        (["device=nonsense"], "device must be auto, cpu or cuda[:N], got 'nonsense'"),
        (["device=cuda:x"], "device must be auto, cpu or cuda[:N], got 'cuda:x'"),
        (["device=cuda:99"], "cuda:99" if CUDA else "device=cuda:99 but this machine has no usable CUDA GPU"),
        # nan / inf / negative / zero / wrong type of numbers
        (["master.vf_coef=-1"], "master.vf_coef must be 0 or more, got -1"),
        (["master.vf_coef=nan"], "master.vf_coef must be 0 or more, got nan"),
        (["sub.ent_coef=inf"], "sub.ent_coef must be a finite number, got inf"),
        (["sub.ent_coef=-0.1"], "sub.ent_coef must be 0 or more, got -0.1"),
        (["master.lr=inf"], "master.lr must be a finite number, got inf"),
        (["sub.max_grad_norm=nan"], "sub.max_grad_norm must be positive, got nan"),
        (["master.target_kl=inf"], "master.target_kl must be a finite number, got inf"),
        (["mlsh.master_epsilon=nan"], "mlsh.master_epsilon must lie in [0, 1], got nan"),
        (["train.reward_scale=-inf"], "train.reward_scale must be a positive number, got -inf"),
        (["mlsh.num_slots=0"], "mlsh.num_slots must be at least 1, got 0"),
        (["mlsh.num_subpolicies=two"], "mlsh.num_subpolicies must be an integer, got 'two'"),
        (["train.envs_per_slot=1.5"], "train.envs_per_slot must be an integer, got 1.5"),
        (["sub.hidden_sizes=[0]"], "sub.hidden_sizes must be a non-empty list of positive integers"),
        (["train.progress=maybe"], "train.progress must be true or false, got 'maybe'"),
    ],
)
def test_train_refuses_each_class_of_bad_input_in_one_line_writing_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    before = tree_hash(tmp_path)
    # One iteration's budget: a value that a broken check let through trains briefly, then this test fails.
    argv = [*TINY, "train.total_timesteps=200", *args, f"hydra.run.dir={tmp_path / 'run'}"]
    code, err = run_main(train_main, argv, monkeypatch, capsys)
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert tree_hash(tmp_path) == before  # no run dir, no .hydra, no lock file


def test_an_unwritable_run_dir_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "file").write_text("not a directory")
    before = tree_hash(tmp_path)
    code, err = run_main(train_main, [*TINY, f"hydra.run.dir={tmp_path / 'file' / 'run'}"], monkeypatch, capsys)
    assert code == 2 and len(err) == 1, err
    assert f"Cannot write run dir {tmp_path / 'file' / 'run'}: {tmp_path / 'file'} is a file" in err[0]
    assert tree_hash(tmp_path) == before


def test_the_library_validates_like_the_command_line(tmp_path: Path) -> None:
    bad = [
        (Config(mlsh=MLSHConfig(macro_len=7)), "train.rollout_len (200) must be a multiple of mlsh.macro_len (7)"),
        (dataclasses.replace(small_config(), seed=-1), "seed must be an integer in [0, 4294967295], got -1"),
        (dataclasses.replace(small_config(), device="gpu"), "device must be auto, cpu or cuda[:N], got 'gpu'"),
    ]
    typed = small_config()
    typed.master.lr = "fast"  # type: ignore[assignment]
    bad.append((typed, "master.lr must be a number, got 'fast'"))
    nan = small_config()
    nan.sub.vf_coef = float("nan")
    bad.append((nan, "sub.vf_coef must be 0 or more, got nan"))
    steps = small_config()
    steps.env.max_episode_steps = 0
    bad.append((steps, "env.max_episode_steps must be null"))
    for cfg, message in bad:
        with pytest.raises(ConfigError) as info:
            train(cfg, tmp_path / "run")
        assert message in str(info.value)
    with pytest.raises(ConfigError, match="Expected an mlsh Config, got dict"):
        train({"seed": 1}, tmp_path / "run")  # type: ignore[arg-type]
    assert not (tmp_path / "run").exists()


def test_unwise_settings_get_one_warning_line_with_the_estimate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = small_config()
    cfg.mlsh.num_subpolicies = 2000
    with caplog.at_level(logging.WARNING, logger="mlsh"):
        prepare_run(cfg, tmp_path / "run", resume=False)
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("warning:")]
    assert len(warnings) == 1 and "mlsh.num_subpolicies=2000 is in the thousands" in warnings[0]
    assert "GiB of memory" in warnings[0]
    caplog.clear()
    cfg = small_config()
    cfg.train.total_timesteps = 10  # under one iteration of 80 steps: one iteration is trained
    with caplog.at_level(logging.WARNING, logger="mlsh"):
        summary = train(cfg, tmp_path / "short")
    assert summary["iteration"] == 1 and summary["timesteps"] == 80
    messages = [r.getMessage() for r in caplog.records]
    assert any("train.total_timesteps=10 is under one iteration (80 env steps" in m for m in messages), messages
    cfg.train.total_timesteps = 200
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mlsh"):
        prepare_run(cfg, tmp_path / "uneven", resume=False)
    assert any("the run trains 2 iterations, 160 env steps" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "run").exists() and not (tmp_path / "uneven").exists()


def test_an_env_with_nan_observations_mid_training_is_named(tmp_path: Path) -> None:
    cfg = small_config(NAN_ID)
    cfg.mlsh.macro_len = 5
    probe_steps = 2  # the trial episode stops before the NaN; training meets it

    import mlsh.checks

    original = mlsh.checks.PROBE_STEPS
    mlsh.checks.PROBE_STEPS = probe_steps
    try:
        with pytest.raises(MLSHError, match=rf"Env '{NAN_ID}' returned a non-finite observation .* at iteration 1"):
            train(dataclasses.replace(cfg), tmp_path / "run")
    finally:
        mlsh.checks.PROBE_STEPS = original


def test_probe_env_rejects_bad_shapes_and_failing_envs() -> None:
    with pytest.raises(ConfigError, match="non-finite observation"):
        probe_env(EnvConfig(id=NAN_ID))
    assert probe_env(EnvConfig(id=DUCK_ID))[1] == gym.spaces.Discrete(2)


def test_check_writable_names_the_path_and_the_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(StorageError, match="is a file, not a directory"):
        check_writable(tmp_path / "f" / "out", "output dir", directory=True)
    with pytest.raises(StorageError, match="it is a directory; name a file"):
        check_writable(tmp_path, "output", directory=False)

    class Full:
        f_flag, f_bavail, f_frsize = 0, 10, 4096

    class ReadOnly:
        f_flag, f_bavail, f_frsize = os.ST_RDONLY, 10**9, 4096

    monkeypatch.setattr(os, "statvfs", lambda path: Full())
    with pytest.raises(StorageError, match=r"only 40.0 KiB free on its file system and about .* MiB are needed"):
        check_writable(tmp_path / "run", "run dir", directory=True)
    monkeypatch.setattr(os, "statvfs", lambda path: ReadOnly())
    with pytest.raises(StorageError, match=rf"Cannot write run dir {tmp_path / 'run'}: .* read-only file system"):
        check_writable(tmp_path / "run", "run dir", directory=True)


def test_a_stray_disk_error_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def full() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/data/x.json")

    code, err = run_main(full, [], monkeypatch, capsys)
    assert code == 2 and err == ["error: Cannot write file /data/x.json: no space left on the device; free some "
                                 "space and try again."]  # fmt: skip


# -- mlsh.evaluate / mlsh.inspect ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("evaluate", ["oracle_episodes=0"], "oracle_episodes must be a positive integer, got 0"),
        ("evaluate", ["num_tasks=-2"], "num_tasks must be a positive integer, got -2"),
        ("evaluate", ["num_tasks=nan"], "num_tasks must be a positive integer, got nan"),
        ("evaluate", ["device=nonsense"], "device must be auto, cpu or cuda[:N], got 'nonsense'"),
        ("evaluate", ["seed=-1"], "seed must be an integer in [0, 4294967295], got -1"),
        ("evaluate", ["video_tasks=-1"], "video_tasks must be a positive integer or null, got -1"),
        ("evaluate", ["video_tries=0"], "video_tries must be a positive integer, got 0; set e.g. video_tries=3."),
        ("inspect", ["video_format=avi"], "video_format must be one of gif, mp4, both, got 'avi'"),
        ("evaluate", ["video_fps=inf"], "video_fps must be a positive number, got inf"),
        (
            "evaluate",
            ["video=true", "video_format=avi"],
            "video_format must be one of gif, mp4, both, got 'avi'; set e.g. video_format=both.",
        ),
        ("evaluate", ["adapt_iters=-1"], "adapt_iters must be a non-negative integer or null"),
        ("evaluate", ["envs_per_task=0"], "envs_per_task must be a positive integer or null, got 0"),
        ("evaluate", ["split=test"], "split must be one of heldout, train, got 'test'"),
        ("evaluate", ["master.vf_coef=-1"], "master.vf_coef must be 0 or more, got -1"),
        ("evaluate", ["master.lr=nan"], "master.lr must be positive, got nan"),
        ("evaluate", ["plot=maybe"], "plot must be true or false, got 'maybe'"),
        ("evaluate", ["oracle=2"], "oracle must be true or false, got 2"),
        ("evaluate", ["baseline_runs=3"], "baseline_runs must map baseline names to run dirs, got 3"),
        ("inspect", ["episodes=0"], "episodes must be a positive integer, got 0"),
        ("inspect", ["unused_below=2"], "unused_below must be a share in [0, 1], got 2"),
        ("inspect", ["device=cuda:x"], "device must be auto, cpu or cuda[:N], got 'cuda:x'"),
        ("inspect", ["num_tasks=abc"], "num_tasks must be a positive integer, got 'abc'"),
        (
            "inspect",
            ["+env.kwargs.test_layouts=training_kind"],
            "env.kwargs changes an env that this command does not name; add env=<Name> for the run's env "
            "(e.g. env=AntMaze +env.kwargs.test_layouts=training_kind), or drop the env override.",
        ),
        ("evaluate", ["+env.max_episode_steps=10"], "env.max_episode_steps changes an env that this command"),
    ],
)
def test_evaluate_and_inspect_refuse_bad_input_in_one_line_writing_nothing(
    tiny_run: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    command: str,
    args: list[str],
    message: str,
) -> None:
    main = evaluate_main if command == "evaluate" else inspect_main
    before = tree_hash(tiny_run)
    code, err = run_main(main, [f"checkpoint={tiny_run}", "num_tasks=2", "adapt_iters=1", *args], monkeypatch, capsys)
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert tree_hash(tiny_run) == before


def test_an_unwritable_output_is_refused_before_the_evaluation_runs(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import mlsh.evaluation

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the evaluation ran")

    monkeypatch.setattr(mlsh.evaluation, "adapt_masters", no_work)
    (tmp_path / "file").write_text("x")
    before = tree_hash(tiny_run)
    for output, message in [
        (tmp_path / "file" / "eval.json", "is a file, not a directory"),
        (tmp_path, "it is a directory; name a file"),
    ]:
        code, err = run_main(evaluate_main, [f"checkpoint={tiny_run}", f"output={output}"], monkeypatch, capsys)
        assert code == 2 and len(err) == 1 and message in err[0], err
    assert tree_hash(tiny_run) == before


def test_evaluations_never_write_over_each_other(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes((tiny_run / "checkpoint.pt").read_bytes())
    common = [f"checkpoint={run}", "num_tasks=2", "adapt_iters=1", "oracle_episodes=1", "plot=false"]
    outputs = []
    for _ in range(2):
        code, _ = run_main(evaluate_main, common, monkeypatch, capsys)
        assert code == 0
    eval_dir = run / "eval"
    outputs = sorted(p.name for p in eval_dir.iterdir())
    assert outputs == ["evaluation_seed0.csv", "evaluation_seed0.json", "evaluation_seed0_1.csv",
                       "evaluation_seed0_1.json", "tb"]  # fmt: skip
    assert sorted(p.name for p in (eval_dir / "tb").iterdir()) == ["evaluation_seed0", "evaluation_seed0_1"]
    # An explicit output that holds a result is refused, unless overwrite=true.
    explicit = tmp_path / "out" / "result.json"
    monkeypatch.setattr("sys.argv", ["x"])
    code, _ = run_main(evaluate_main, [*common, f"output={explicit}"], monkeypatch, capsys)
    assert code == 0
    first = explicit.read_bytes()
    code, err = run_main(evaluate_main, [*common, f"output={explicit}", "seed=1"], monkeypatch, capsys)
    assert code == 2 and len(err) == 1 and "pass overwrite=true to replace it" in err[0], err
    assert explicit.read_bytes() == first
    code, _ = run_main(evaluate_main, [*common, f"output={explicit}", "seed=1", "overwrite=true"], monkeypatch, capsys)
    assert code == 0 and explicit.read_bytes() != first
    assert sorted(p.name for p in explicit.parent.iterdir()) == ["result.csv", "result.json", "tb"]  # no claim left


def test_mp4_videos_without_imageio_ffmpeg_are_refused_before_the_evaluation(
    tiny_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import mlsh.evaluation

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the evaluation ran")

    monkeypatch.setattr(mlsh.evaluation, "adapt_masters", no_work)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import imageio_ffmpeg raises ImportError
    before = tree_hash(tiny_run)
    args = [f"checkpoint={tiny_run}", "video=true", "video_format=mp4"]
    code, err = run_main(evaluate_main, args, monkeypatch, capsys)
    fix = "run pip install imageio-ffmpeg (or set video_format=gif)."
    assert code == 2 and err == [
        f"error: video_format=mp4 writes MP4 videos with imageio-ffmpeg, which is not installed; {fix}"
    ]
    assert tree_hash(tiny_run) == before
    evaluate_check_command([f"checkpoint={tiny_run}", "video=true", "video_format=gif"])  # GIFs need no plugin
    evaluate_check_command([f"checkpoint={tiny_run}", "video_format=mp4"])  # nor does video=false


def test_a_video_alone_marks_an_output_taken(tmp_path: Path) -> None:
    (tmp_path / "r_task00.mp4").write_bytes(b"an earlier evaluation's video")
    with pytest.raises(ConfigError, match=r"output=.*r.json would replace .*r_task00.mp4 of an earlier evaluation"):
        claim_output(tmp_path / "r.json", tmp_path / "default.json", overwrite=False)
    claim = claim_output(None, tmp_path / "r.json", overwrite=False)
    try:
        assert claim.json_path == tmp_path / "r_1.json"
    finally:
        claim.release()


def test_evaluate_says_where_its_results_are(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    output = tmp_path / "e" / "r.json"
    monkeypatch.setattr("sys.argv", ["mlsh.evaluate", f"checkpoint={tiny_run}", "num_tasks=2", "adapt_iters=1",
                                     "oracle_episodes=1", f"output={output}"])  # fmt: skip
    evaluate_main()
    out = capsys.readouterr().out
    assert f"mlsh: results in {output}, plot in {output.with_suffix('.png')}" in out
    assert f"mlsh: see them in TensorBoard with: tensorboard --logdir {output.parent / 'tb' / 'r'}" in out


# -- the task contract: duck-typed envs work everywhere ----------------------------------------------------------
@pytest.fixture(scope="module")
def duck_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("duck")
    cfg = small_config(DUCK_ID)
    cfg.train.total_timesteps = 2 * cfg.steps_per_iteration
    train(cfg, run_dir)
    return run_dir


def test_a_duck_typed_env_evaluates_and_inspects_with_one_notice_per_fallback(
    duck_run: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mlsh"):
        result = evaluate_run(
            duck_run, num_tasks=2, adapt=AdaptOptions(iters=1)
        ).to_dict()  # split=heldout, oracle=true: defaults
    notices = [r.getMessage() for r in caplog.records]
    assert sum("has no sample_test_task, so split=heldout draws" in m for m in notices) == 1, notices
    assert sum("has no oracle policy (oracle_action)" in m for m in notices) == 1, notices
    assert "ratio" not in result and len(result["tasks"]) == 2
    report, _ = inspect_run(duck_run, num_tasks=2, episodes=1, adapt=AdaptOptions(iters=1))
    assert len(report["subpolicies"]) == 2
    agent = MLSHAgent.load(duck_run, device="cpu")
    env = gym.make(DUCK_ID)
    env.unwrapped.task = 7
    assert len(agent.adapt(env, iterations=1)) == 1 and agent.master_task == 7


# -- agents -------------------------------------------------------------------------------------------------------
def test_agent_refuses_bad_devices_seeds_and_envs_in_one_sentence(tiny_run: Path) -> None:
    with pytest.raises(ConfigError, match=r"device must be auto, cpu or cuda\[:N\], got 'nonsense'"):
        MLSHAgent.load(tiny_run, device="nonsense")
    with pytest.raises(ConfigError, match=r"seed must be an integer in \[0, 4294967295\], got -3"):
        MLSHAgent.load(tiny_run, device="cpu", seed=-3)
    agent = MLSHAgent.load(tiny_run, device="cpu")
    with pytest.raises(ConfigError, match="has .* but the agent was trained on"):
        agent.adapt(gym.make("mlsh/FourRooms-v0"), iterations=1)
    with pytest.raises(ConfigError, match="adapt needs a Gymnasium env or an mlsh EnvConfig, got str"):
        agent.adapt("mlsh/MovementBandits-v0", iterations=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        agent.adapt(gym.make("CartPole-v1"), iterations=1)  # no task contract, other spaces


class _OtherActions(gym.Env):
    def __init__(self, observation_space: gym.Space) -> None:
        self.observation_space = observation_space
        self.action_space = gym.spaces.Discrete(7)

    def reset(self, *, seed: int | None = None, options: dict | None = None):  # type: ignore[override]
        return np.zeros(self.observation_space.shape, dtype=np.float32), {}


def test_subpolicy_env_refuses_an_env_with_other_actions(tiny_run: Path) -> None:
    agent = MLSHAgent.load(tiny_run, device="cpu")
    with pytest.raises(ConfigError, match=r"act in Discrete\(5\), the env takes Discrete\(7\)"):
        SubPolicyEnv(_OtherActions(agent.observation_space), agent)
