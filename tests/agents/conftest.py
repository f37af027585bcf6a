"""Tiny trained runs shared by the agent and evaluation tests (trained once per session, a few seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlsh.trainer import train
from tests.conftest import small_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MovementBandits, K = 2, N = 5, 10 iterations of 2 slots x 2 envs x 20 steps."""
    run_dir = tmp_path_factory.mktemp("tiny_run")
    train(small_config(), run_dir)
    return run_dir
