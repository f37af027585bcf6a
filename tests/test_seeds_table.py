"""scripts/seeds_table.py: which cached results a rerun reuses, redoes or refuses."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tests.conftest import load_script


def _args(**changes: object) -> argparse.Namespace:
    base = {"timesteps": None, "set": ["sub.ent_coef=0.01"], "num_tasks": 20, "adapt_iters": None, "scratch": False}
    return argparse.Namespace(**{**base, **changes})


def _write(path: Path, settings: dict | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {"ratio": 0.5} if settings is None else {"ratio": 0.5, "settings": settings}
    path.write_text(json.dumps(result))
    return path


def test_reused_with_the_same_settings_redone_with_another_budget_or_evaluation(tmp_path: Path) -> None:
    table = load_script("seeds_table")
    made = table.run_settings(_args())
    result_file = _write(tmp_path / "v0" / "seed0" / "eval" / "table_eval.json", made)
    assert table.cached_result(result_file, table.run_settings(_args()))["ratio"] == 0.5
    assert table.cached_result(result_file, table.run_settings(_args(timesteps=27_000_000))) is None
    assert table.cached_result(result_file, table.run_settings(_args(num_tasks=10))) is None
    assert table.cached_result(result_file, table.run_settings(_args(scratch=True))) is None
    assert table.cached_result(tmp_path / "missing.json", made) is None


def test_other_training_overrides_are_refused_in_one_sentence(tmp_path: Path) -> None:
    table = load_script("seeds_table")
    result_file = _write(tmp_path / "v0" / "seed0" / "eval" / "table_eval.json", table.run_settings(_args()))
    with pytest.raises(SystemExit, match=r"v0/seed0 was trained with --set sub.ent_coef=0.01; pass the same --set"):
        table.cached_result(result_file, table.run_settings(_args(set=["mlsh.num_subpolicies=6"])))


def test_results_from_before_settings_were_recorded_are_reused(tmp_path: Path) -> None:
    table = load_script("seeds_table")
    result_file = _write(tmp_path / "table_eval.json", None)
    assert table.cached_result(result_file, table.run_settings(_args(timesteps=1)))["ratio"] == 0.5
