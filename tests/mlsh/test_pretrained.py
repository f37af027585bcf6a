"""Runs shipped with the package, named pretrained:<Name> wherever a run dir is accepted (mlsh.pretrained)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agents import MLSHAgent
from mlsh import evaluate, inspect, pretrained
from mlsh.checkpoint import checkpoint_path, load_checkpoint
from mlsh.config import config_from_dict
from mlsh.envs import env_signature, make_env
from mlsh.errors import CheckpointError
from mlsh.evaluation import AdaptOptions, evaluate_run
from mlsh.trainer import train
from tests.conftest import small_config


@pytest.fixture
def shipped(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package folder of shipped runs holding one, ``Tiny`` (the session's tiny run), and a working dir."""
    root = tmp_path / "pretrained_runs"
    (root / "Tiny").mkdir(parents=True)
    shutil.copy(checkpoint_path(tiny_run), root / "Tiny" / "checkpoint.pt")
    (root / "Empty").mkdir()  # a folder without a checkpoint is not a shipped run
    monkeypatch.setattr(pretrained, "ROOT", root)
    monkeypatch.chdir(tmp_path)
    return root


def test_a_name_resolves_to_the_shipped_run_and_other_paths_stay(shipped: Path) -> None:
    assert pretrained.available() == ["Tiny"]
    assert checkpoint_path("pretrained:Tiny") == shipped / "Tiny" / "checkpoint.pt"
    assert checkpoint_path("runs/x") == Path("runs/x/checkpoint.pt")
    assert evaluate.run_output("pretrained:Tiny", "evaluation.json") == Path("runs/pretrained/Tiny/evaluation.json")
    assert pretrained.name("runs/Tiny") is None


def test_an_unknown_name_lists_the_available_ones(shipped: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CheckpointError, match=r"No pretrained run named 'Ant'; the available ones: pretrained:Tiny\."):
        checkpoint_path("pretrained:Ant")
    monkeypatch.setattr(pretrained, "ROOT", shipped / "missing")
    with pytest.raises(CheckpointError, match="none are shipped with this version"):
        pretrained.resolve("pretrained:Ant")


def test_the_agent_the_commands_and_init_from_take_a_shipped_run(shipped: Path) -> None:
    agent = MLSHAgent.load("pretrained:Tiny")
    assert agent.cfg.mlsh.num_subpolicies == 2
    evaluate.check_command(["checkpoint=pretrained:Tiny", "num_tasks=2"])  # every check, nothing written
    inspect.check_command(["checkpoint=pretrained:Tiny", "num_tasks=2"])
    assert not (shipped / "Tiny" / "evaluation.json").exists()
    with pytest.raises(CheckpointError, match="No pretrained run named 'Nope'"):
        evaluate.check_command(["checkpoint=pretrained:Nope"])
    cfg = small_config()
    cfg.train.total_timesteps, cfg.init_from = cfg.steps_per_iteration, "pretrained:Tiny"
    summary = train(cfg, Path("run"))
    assert summary["finished"] and summary["iteration"] == 1
    assert sorted(p.name for p in (shipped / "Tiny").iterdir()) == ["checkpoint.pt"]  # the package is not written


@pytest.mark.parametrize("name", pretrained.available() or [pytest.param(None, marks=pytest.mark.skip("none shipped"))])
def test_each_shipped_run_fits_its_env_and_adapts_a_master(name: str) -> None:
    """CI never trains an Ant: it loads each shipped run, checks its env signature and adapts one iteration."""
    spec = f"{pretrained.PREFIX}{name}"
    payload = load_checkpoint(checkpoint_path(spec))
    env = make_env(config_from_dict(payload["config"]).env)
    assert payload["env_signature"] == env_signature(env)
    assert (pretrained.ROOT / name / "CARD.md").is_file()
    result = evaluate_run(spec, num_tasks=1, adapt=AdaptOptions(iters=1))
    assert len(result.tasks) == 1
