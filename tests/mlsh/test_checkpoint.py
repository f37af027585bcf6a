"""Checkpoints: atomic writes, round trip, exact resume, corrupt / mismatched files, NaN guard, init_from."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mlsh import trainer as trainer_module
from mlsh.checkpoint import load_checkpoint, save_checkpoint
from mlsh.errors import CheckpointError, ConfigError, TrainingDivergedError
from mlsh.evaluation import evaluate_run
from mlsh.meta import MetaLearner
from mlsh.trainer import init_from_run, init_source, train
from tests.conftest import CONTINUOUS_ID, RANDOM_END_ID, small_config


def _tiny(total_iterations: int = 4, env_id: str = "mlsh/MovementBandits-v0"):
    cfg = small_config(env_id)
    cfg.train.total_timesteps = total_iterations * cfg.steps_per_iteration
    return cfg


def _tensors(tree: object) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for key in sorted(tree, key=str) for t in _tensors(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in _tensors(item)]
    return []


def test_save_is_atomic_and_a_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"config": {}, "learner": {"x": torch.ones(3)}})
    before = path.read_bytes()

    def broken_save(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, {"config": {}, "learner": {"x": torch.zeros(3)}})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"], "no temporary file left behind"


def test_round_trip_restores_every_tensor(tmp_path: Path) -> None:
    train(_tiny(2), tmp_path)
    payload = load_checkpoint(tmp_path)
    assert payload["learner"]["iteration"] == 2
    assert payload["env_id"] == "mlsh/MovementBandits-v0"
    learner = trainer_module.MetaLearner(_tiny(2))
    learner.load_state_dict(payload["learner"])
    for a, b in zip(_tensors(learner.state_dict()["policy"]), _tensors(payload["learner"]["policy"]), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("env_id", "stagger"), [("mlsh/MovementBandits-v0", False), (RANDOM_END_ID, True)])
def test_resume_continues_exactly_where_the_run_stopped(tmp_path: Path, env_id: str, stagger: bool) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    cfg = _tiny(4, env_id)
    cfg.mlsh.stagger = stagger  # staggered: after the resume one slot restarts while the other carries on
    train(cfg, straight)
    first = train(cfg, split, max_iterations=2)
    assert not first["finished"] and first["iteration"] == 2
    second = train(cfg, split, resume=True)
    assert second["finished"] and second["iteration"] == 4
    a, b = load_checkpoint(straight)["learner"], load_checkpoint(split)["learner"]
    for key in ("policy", "master_optimizer", "sub_optimizer", "torch_rng"):
        ta, tb = _tensors(a[key]), _tensors(b[key])
        assert len(ta) == len(tb) > 0
        assert all(torch.equal(x, y) for x, y in zip(ta, tb, strict=True)), key
    assert a["tasks"] == b["tasks"]
    assert (a["collector"]["obs"] == b["collector"]["obs"]).all()


@pytest.mark.parametrize("env_id", ["mlsh/MovementBandits-v0", "mlsh/FourRooms-v0"])
def test_a_saved_run_loads_with_weights_only(tmp_path: Path, env_id: str) -> None:
    train(_tiny(2, env_id), tmp_path)
    raw = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert raw["format_version"] == 2
    env_states = raw["learner"]["env_states"]
    assert len(env_states["copies"]) == 4 and env_states["elapsed_steps"] == [40] * 4  # no pickled env
    payload = load_checkpoint(tmp_path)  # NumPy arrays come back as they were saved
    obs = payload["learner"]["collector"]["obs"]
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32 and obs.shape[0] == 4
    assert isinstance(payload["learner"]["env_states"]["copies"][0]["np_random"]["state"]["state"], int)


def test_numpy_arrays_and_scalars_round_trip_with_their_dtype(tmp_path: Path) -> None:
    tree = {
        "a": np.arange(6, dtype=np.float64).reshape(2, 3)[:, ::2],  # not contiguous
        "b": [np.array([True, False]), (np.float32(1.5), np.int64(-3))],
        "c": {"t": torch.ones(2), "n": None, "s": "x"},
    }
    save_checkpoint(tmp_path / "checkpoint.pt", {"config": {}, "learner": tree})
    torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    back = load_checkpoint(tmp_path)["learner"]
    np.testing.assert_array_equal(back["a"], tree["a"])
    assert back["a"].dtype == np.float64 and back["b"][0].dtype == np.bool_
    assert type(back["b"][1]) is tuple and back["b"][1] == (1.5, -3)
    assert type(back["b"][1][0]) is np.float32 and type(back["b"][1][1]) is np.int64
    assert torch.equal(back["c"]["t"], torch.ones(2)) and back["c"]["n"] is None


def test_a_checkpoint_of_format_1_still_loads_and_resumes_exactly(tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    cfg = _tiny(4, RANDOM_END_ID)  # an env without state_attributes: its copies are saved pickled
    train(cfg, straight)
    train(cfg, split, max_iterations=2)
    payload = load_checkpoint(split)
    assert isinstance(payload["learner"]["env_states"], list)
    # What mlsh wrote before checkpoints held only plain data: NumPy arrays and RNG states as they are.
    torch.save({**payload, "format_version": 1}, split / "checkpoint.pt")
    with pytest.raises(pickle.UnpicklingError):
        torch.load(split / "checkpoint.pt", weights_only=True)
    assert load_checkpoint(split)["learner"]["iteration"] == 2
    assert train(cfg, split, resume=True)["iteration"] == 4
    a, b = load_checkpoint(straight)["learner"], load_checkpoint(split)["learner"]
    for key in ("policy", "master_optimizer", "sub_optimizer", "torch_rng"):
        assert all(torch.equal(x, y) for x, y in zip(_tensors(a[key]), _tensors(b[key]), strict=True)), key
    assert (a["collector"]["obs"] == b["collector"]["obs"]).all()


def test_a_new_run_refuses_to_overwrite_an_existing_checkpoint(tmp_path: Path) -> None:
    train(_tiny(1), tmp_path)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointError, match="resume="):
        train(_tiny(1), tmp_path)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_corrupt_checkpoint_gives_a_clear_error_and_is_left_alone(tmp_path: Path) -> None:
    train(_tiny(1), tmp_path)
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:100])
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        train(_tiny(2), tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        evaluate_run(tmp_path, num_tasks=2)
    assert path.read_bytes() == before


def test_missing_checkpoint_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="pass the run directory"):
        evaluate_run(tmp_path / "nowhere", num_tasks=2)


def test_checkpoint_of_another_env_is_refused(tmp_path: Path) -> None:
    train(_tiny(1, RANDOM_END_ID), tmp_path)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointError, match="was trained on 'mlsh_test/RandomEnd-v0'.*pick the env"):
        train(_tiny(2, "mlsh/MovementBandits-v0"), tmp_path, resume=True)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_nan_in_training_stops_with_a_sentence_and_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train(_tiny(4), tmp_path, max_iterations=1)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    original = trainer_module.MetaLearner.train_iteration

    def poisoned(self: trainer_module.MetaLearner) -> dict[str, float]:
        metrics = original(self)
        with torch.no_grad():
            next(self.policy.subpolicies.parameters()).fill_(float("nan"))
        return metrics

    monkeypatch.setattr(trainer_module.MetaLearner, "train_iteration", poisoned)
    with pytest.raises(TrainingDivergedError, match="last checkpoint is kept"):
        train(_tiny(4), tmp_path, resume=True)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_each_iteration_is_saved_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saves: list[int] = []
    original = trainer_module.save_checkpoint

    def counting(path: Path, payload: dict) -> Path:
        saves.append(payload["learner"]["iteration"])
        return original(path, payload)

    monkeypatch.setattr(trainer_module, "save_checkpoint", counting)
    cfg = _tiny(3)
    cfg.train.checkpoint_every = 2
    train(cfg, tmp_path)
    assert saves == [2, 3]  # the periodic save, then the final one; never the same iteration twice
    train(cfg, tmp_path, resume=True)  # already finished: nothing to run, nothing rewritten
    assert saves == [2, 3]


def _policy_tensors(state: dict[str, torch.Tensor], masters: bool) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith("masters.") == masters}


def test_init_from_starts_from_another_runs_subpolicies_and_normaliser(tmp_path: Path) -> None:
    source_dir = tmp_path / "source"
    train(_tiny(3), source_dir)
    source = load_checkpoint(source_dir / "checkpoint.pt")["learner"]["policy"]
    cfg = _tiny(1)
    cfg.seed, cfg.init_from = 1, str(source_dir)
    fresh = MetaLearner(dataclasses.replace(cfg, init_from=None)).policy.state_dict()
    learner = MetaLearner(cfg)
    init_from_run(learner, cfg)
    state = learner.policy.state_dict()
    shared = _policy_tensors(source, masters=False)
    assert set(shared) >= {"obs_rms.mean", "obs_rms.var", "obs_rms.count", "subpolicies.actor.layers.0.weight"}
    for key, value in shared.items():
        assert torch.equal(state[key], value), key
        assert not torch.equal(fresh[key], value), f"{key} was already equal before loading"
    for key, value in _policy_tensors(fresh, masters=True).items():  # masters start afresh
        assert torch.equal(state[key], value), key
    assert learner.iteration == 0 and learner.timesteps == 0

    run_dir = tmp_path / "run"
    summary = train(cfg, run_dir)
    assert summary["finished"] and summary["iteration"] == 1
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["init_from"] == str(source_dir)
    # Resuming reads the run's own checkpoint only: the source may be gone by then.
    (source_dir / "checkpoint.pt").unlink()
    resumed = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, total_timesteps=2 * cfg.steps_per_iteration)
    )
    assert train(resumed, run_dir, resume=True)["iteration"] == 2


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("mlsh", "num_subpolicies", 3, r"has mlsh.num_subpolicies=2 but this run has 3; set mlsh.num_subpolicies=2"),
        (
            "sub",
            "hidden_sizes",
            [32],
            r"has sub.hidden_sizes=\[16\] but this run has \[32\]; set sub.hidden_sizes=\[16\]",
        ),
    ],
)
def test_init_from_a_run_of_another_shape_names_the_setting(
    tmp_path: Path, section: str, key: str, value: object, message: str
) -> None:
    train(_tiny(1), tmp_path / "source")
    cfg = _tiny(1)
    cfg.init_from = str(tmp_path / "source")
    setattr(getattr(cfg, section), key, value)
    with pytest.raises(ConfigError, match=message):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_init_from_a_missing_run_or_another_env_is_refused(tmp_path: Path) -> None:
    cfg = _tiny(1)
    cfg.init_from = str(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match=r"init_from=.*nowhere: No checkpoint at .*pass the run directory"):
        init_source(cfg)
    train(_tiny(1, CONTINUOUS_ID), tmp_path / "continuous")
    cfg.init_from = str(tmp_path / "continuous")
    with pytest.raises(CheckpointError, match="was trained on 'mlsh_test/ContinuousTarget-v0'"):
        init_source(cfg)
