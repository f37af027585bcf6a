"""mlsh.inspect: sub-policy usage, displacement, agreement, collapse flags, grid heat-maps."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from envs.four_rooms import FREE_CELLS
from mlsh.checkpoint import load_checkpoint, save_checkpoint
from mlsh.inspect import inspect_run, main, plot_report
from mlsh.trainer import train
from tests.conftest import small_config


@pytest.fixture(scope="module")
def bandits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = small_config()
    cfg.env.max_episode_steps = 10
    run_dir = tmp_path_factory.mktemp("bandits")
    train(cfg, run_dir)
    return run_dir


def test_usage_displacement_and_agreement(bandits_run: Path) -> None:
    report, records = inspect_run(bandits_run, num_tasks=2, episodes=2, adapt_iters=1)
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
    json.dumps(report, allow_nan=False)


def test_identical_subpolicies_are_flagged_alike(bandits_run: Path, tmp_path: Path) -> None:
    payload = load_checkpoint(bandits_run)
    state = payload["learner"]["policy"]
    for key, value in state.items():
        if key.startswith("subpolicies."):
            state[key] = value[:1].expand_as(value).clone() if value.dim() else value
    save_checkpoint(tmp_path / "checkpoint.pt", {k: v for k, v in payload.items() if k != "format_version"})
    report, _ = inspect_run(tmp_path, num_tasks=2, episodes=1, adapt_iters=1)
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
        ["mlsh.inspect", f"checkpoint={run_dir}", "num_tasks=2", "episodes=1", "adapt_iters=1", f"output={output}"],
    )
    main()
    report = json.loads(output.read_text())
    assert report["grid"] is True
    _, records = inspect_run(run_dir, num_tasks=2, episodes=1, adapt_iters=1)
    visited = {cell for r in records for cell in (*r.visits_active, *r.visits_alone)}
    assert visited <= set(FREE_CELLS)
    assert sum(sum(r.visits_active.values()) for r in records) == sum(r.active_steps for r in records)
    with Image.open(output.with_suffix(".png")) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] // 2 > 100
    assert plot_report(report, records, tmp_path / "again.png").is_file()
