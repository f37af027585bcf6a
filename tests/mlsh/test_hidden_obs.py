"""``sub.hidden_obs`` end to end: a run trains and resumes with it, agents, sub-policy envs and inspection load it,
init_from and resume refuse another value, several processes agree, and bad values are refused writing nothing."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import MLSHAgent, SubPolicyEnv
from mlsh.checkpoint import load_checkpoint
from mlsh.evaluation import AdaptOptions
from mlsh.inspect import inspect_run
from mlsh.train import main as train_main
from tests.conftest import RANDOM_END_ID, small_config, train_subpolicies_in_two_processes
from tests.reliability_helpers import TINY, run_main, tree_hash

# MovementBandits observes 6 entries; TINY's iterations are 200 env steps.
RUN = [*TINY, "mlsh.warmup_iters=1", "train.total_timesteps=200"]


def test_a_run_with_hidden_entries_trains_resumes_and_loads_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    code, err = run_main(train_main, [*RUN, "sub.hidden_obs=[0,1]", f"hydra.run.dir={run}"], monkeypatch, capsys)
    assert code == 0, err
    first = load_checkpoint(run)["learner"]["policy"]
    code, err = run_main(train_main, [f"resume={run}", "train.total_timesteps=400"], monkeypatch, capsys)
    assert code == 0, err
    payload = load_checkpoint(run)
    assert payload["learner"]["iteration"] == 2 and payload["config"]["sub"]["hidden_obs"] == [0, 1]
    state = payload["learner"]["policy"]
    assert state["subpolicies.actor.layers.0.weight"].shape == (2, 4, 16)  # K members, 6 - 2 inputs, width 16
    assert state["masters.actor.layers.0.weight"].shape == (2, 6, 16)  # the masters see everything
    assert not torch.equal(state["subpolicies.actor.layers.0.weight"], first["subpolicies.actor.layers.0.weight"])

    agent = MLSHAgent.load(run, device="cpu", seed=0)
    obs = np.random.default_rng(0).uniform(0, 1, (5, 6)).astype(np.float32)
    moved = obs.copy()
    moved[:, :2] = 1.0 - moved[:, :2]
    action, _ = agent.predict(obs, deterministic=True)
    assert action.shape == (5,)
    for k in range(agent.num_subpolicies):  # each sub-policy acts alike wherever the hidden entries are
        sub = agent.subpolicy(k)
        assert np.array_equal(sub.predict(obs, deterministic=True)[0], sub.predict(moved, deterministic=True)[0])
    env = SubPolicyEnv(gym.make("mlsh/MovementBandits-v0"), agent)
    env.reset(seed=0)
    assert np.isfinite(env.step(1)[1])
    report, _ = inspect_run(run, num_tasks=2, episodes=1, adapt=AdaptOptions(iters=1))
    assert len(report["subpolicies"]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sub.hidden_obs=[6]"], "sub.hidden_obs has 6, but the observation has 6 entries (0-5); drop it."),
        (["sub.hidden_obs=[0,1,2,3,4,5]"], "sub.hidden_obs hides all 6 observation entries"),
        (["sub.hidden_obs=[1,1]"], "sub.hidden_obs lists 1 more than once; list each index once."),
        (["sub.hidden_obs=[-1]"], "sub.hidden_obs must be a list of observation indices (integers from 0)"),
        (["sub.hidden_obs=[x]"], "got ['x']; set e.g. sub.hidden_obs=[0,1]."),
    ],
)
def test_bad_hidden_obs_is_refused_in_one_line_writing_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    before = tree_hash(tmp_path)
    code, err = run_main(train_main, [*RUN, *args, f"hydra.run.dir={tmp_path / 'run'}"], monkeypatch, capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert tree_hash(tmp_path) == before


def test_init_from_and_resume_refuse_other_hidden_obs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "source"
    code, err = run_main(train_main, [*RUN, "sub.hidden_obs=[0,1]", f"hydra.run.dir={source}"], monkeypatch, capsys)
    assert code == 0, err
    before = tree_hash(tmp_path)
    for args, message in [
        ([*RUN, f"init_from={source}", f"hydra.run.dir={tmp_path / 'new'}"],
         f"init_from={source} has sub.hidden_obs=[0,1] but this run has []; set sub.hidden_obs=[0,1]"),
        ([*RUN, f"init_from={source}", "sub.hidden_obs=[1,2]", f"hydra.run.dir={tmp_path / 'new'}"],
         "has sub.hidden_obs=[0,1] but this run has [1,2]; set sub.hidden_obs=[0,1]"),
        ([f"resume={source}", "sub.hidden_obs=[0]"],
         "but sub.hidden_obs=[0] differs from its [0,1] (a resume may change only"),
    ]:  # fmt: skip
        code, err = run_main(train_main, args, monkeypatch, capsys)
        assert code == 2 and len(err) == 1 and message in err[0], err
        assert tree_hash(tmp_path) == before
    new = tmp_path / "new"
    args = [*RUN, f"init_from={source}", "sub.hidden_obs=[1,0]", f"hydra.run.dir={new}"]  # the same entries
    code, err = run_main(train_main, args, monkeypatch, capsys)
    assert code == 0, err


def test_two_processes_keep_sub_policies_with_hidden_entries_identical(tmp_path: Path) -> None:
    cfg = small_config(RANDOM_END_ID, num_slots=4, stagger=True)  # 2 slots per process
    cfg.sub.hidden_obs = [0]  # of 2 entries
    initial, first, second = train_subpolicies_in_two_processes(cfg, tmp_path)
    assert first["actor.layers.0.weight"].shape == (2, 1, 16)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], initial[k]) for k in first)  # they trained
