"""A user's env that follows the task contract trains and evaluates by naming its Gymnasium id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_train_and_evaluate_on_a_user_env_named_by_id(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLES), os.environ.get("PYTHONPATH", "")])}
    run_dir = tmp_path / "run"
    common = ["env.id=my_tasks:Corridor-v0", "mlsh.macro_len=2", "mlsh.num_slots=2", "train.envs_per_slot=2"]
    trained = subprocess.run(
        [sys.executable, "-m", "mlsh.train", *common, "train.rollout_len=20", "train.total_timesteps=160",
         "train.progress=false", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    evaluated = subprocess.run(
        [sys.executable, "-m", "mlsh.evaluate", f"checkpoint={run_dir}", "num_tasks=2", "adapt_iters=1",
         "oracle_episodes=2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads((run_dir / "eval" / "evaluation_seed0.json").read_text())
    assert result["env_id"] == "my_tasks:Corridor-v0"
    assert result["oracle_return"] == 1.0  # the oracle always reaches the paying end


def test_the_examples_env_saves_its_episode_as_plain_data() -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        from my_tasks import Corridor
    finally:
        sys.path.remove(str(EXAMPLES))
    env, copy = Corridor(), Corridor()
    env.task = 1
    env.reset(seed=0)
    env.step(1)
    state = env.state_dict()
    assert state is not None and state["task"] == 1 and state["attributes"] == {"_pos": 4}
    copy.reset(seed=3)
    copy.load_state_dict(state)
    assert copy.task == 1
    np.testing.assert_equal([copy.step(1)[:3] for _ in range(2)], [env.step(1)[:3] for _ in range(2)])
