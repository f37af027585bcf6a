"""scripts/transfer_table.py: an Ant run's sub-policies transferred to the obstacle course, against PPO from scratch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mlsh.trainer import train
from tests.conftest import tiny_ant_maze_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import transfer_table  # noqa: E402


def test_transfer_of_a_tiny_ant_maze_run_to_the_course(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "tiny"
    train(tiny_ant_maze_config(), run)
    out = tmp_path / "transfer"
    bad = [str(run), "--env", "AntObstacles", "--master", "lr=fast", "--out", str(out)]
    with pytest.raises(SystemExit):
        transfer_table.parse_args(bad)
    assert "master.lr must be a number, got 'fast'" in capsys.readouterr().err and not out.exists()
    # The whole course is the goal region: every episode of both methods reaches it on its first step.
    argv = [str(run), "--env", "AntObstacles", "--eval-seeds", "0", "1", "--adapt-iters", "2", "--out", str(out)]
    argv += ["--set", "+env.max_episode_steps=20", "+env.kwargs.goal_radius=100"]
    transfer_table.main(argv)
    table = capsys.readouterr().out
    (row,) = json.loads((out / "results.json").read_text())
    assert row["env_id"] == "mlsh/AntObstacles-v0" and row["name"] == "tiny"
    for method in ("mlsh", "scratch"):
        m = row["methods"][method]
        assert m["last_iteration_success"] == [1.0, 1.0] and m["last_iteration_success_mean"] == 1.0
        assert len(m["success_curves"]) == 2 and all(len(curve) == 2 for curve in m["success_curves"])
        assert m["goal_reaches_total"] == m["episodes_total"] and all(n > 0 for n in m["episodes_total"])
    assert table.splitlines()[2].startswith("| tiny | MLSH: fresh master, frozen sub-policies | 1.00 1.00 | 1.00 | ")
    assert (out / "transfer.png").stat().st_size > 0
    log = (out / "tiny" / "log").read_text()
    transfer_table.main(argv)  # cached: nothing is evaluated again
    assert (out / "tiny" / "log").read_text() == log
    assert transfer_table.run_name("pretrained:AntMaze") == "pretrained-AntMaze"
