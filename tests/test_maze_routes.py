"""scripts/maze_routes.py: the shortest route through an AntMaze layout, and the speed its episode needs."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from envs.ant_maze import PAPER_LAYOUTS, START_XY

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import maze_routes  # noqa: E402


def test_a_straight_route_is_the_distance_to_the_goal_region() -> None:
    up, straight_right = PAPER_LAYOUTS[0], PAPER_LAYOUTS[4]  # goals (8, 24) and (48, 0)
    assert maze_routes.shortest_route(up) == pytest.approx(math.dist(START_XY, up.goal) - 2.0, abs=0.05)
    assert maze_routes.shortest_route(straight_right) == pytest.approx(46.0 - 2.0, abs=1e-9)


def test_a_route_round_a_block_bends_at_the_corner_less_the_margin() -> None:
    right_right_up = PAPER_LAYOUTS[5]  # through the faces x = 16 and x = 32, then y = 8 up to (40, 24)
    corner = (32.0, 7.0)  # the second face's top, 1 unit (the margin) below the corner of the block above it
    bend = math.dist(START_XY, corner) + math.dist(corner, (33.0, 8.0)) + math.dist((33.0, 8.0), (40.0, 24.0))
    route = maze_routes.shortest_route(right_right_up)
    assert route == pytest.approx(bend - 2.0, abs=0.05)
    assert route > math.dist(START_XY, right_right_up.goal) - 2.0 + 1.0  # the block costs more than a unit
    assert maze_routes.shortest_route(right_right_up, margin=3.0) > route  # a wider berth: a longer route
    with pytest.raises(ValueError, match=r"margin must lie in \[0, 8.0\), got 8.0; e.g. --margin 1.0."):
        maze_routes.shortest_route(right_right_up, margin=8.0)


def test_route_table_counts_the_kinds_and_its_shares_grow_with_speed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    speeds = [5.0, 10.0, 13.0, 20.0]
    table = maze_routes.route_table(speeds, margin=1.0)
    assert [row["layouts"] for row in table.values()] == [9, 33, 120, 153]
    assert [row["goal_on_left_face"] for row in table.values()] == [0, 6, 34, 40]  # none in training
    for row in table.values():
        shares = list(row["fits_at_speed"].values())
        assert shares == sorted(shares) and shares[-1] == 1.0
    assert table["the 9 training layouts"]["fits_at_speed"]["10"] == 1.0  # longest paper route: 47.7 <= 5 x 10
    assert table["held out, of the training kind"]["longest_route"] <= 5 * 10.0
    assert table["held out, of another kind"]["fits_at_speed"]["10"] < 0.5
    out = tmp_path / "routes.json"
    maze_routes.main(["--speeds", "10", "15", "--json", str(out)])
    printed = capsys.readouterr().out
    head = "| layouts | count | goal on a left face | median route | longest | fits at 10 | fits at 15 |"
    assert printed.splitlines()[0] == head
    assert printed.splitlines()[2].startswith("| the 9 training layouts | 9 | ")
    assert json.loads(out.read_text())["all held out"]["layouts"] == 153


def test_bad_arguments_are_refused_with_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in (
        (["--speeds", "0"], "--speeds must be positive (units per macro step); e.g. --speeds 10 13 15."),
        (["--margin", "-1"], "margin must lie in [0, 8.0), got -1.0; e.g. --margin 1.0."),
    ):
        with pytest.raises(SystemExit):
            maze_routes.main(argv)
        assert message in capsys.readouterr().err
