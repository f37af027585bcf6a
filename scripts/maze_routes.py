"""How far the ant must walk in each AntMaze layout, and how fast it must walk for the route to fit in an episode.

``python scripts/maze_routes.py [--speeds 10 13 15 20] [--margin 1.0]``

For every layout it computes the shortest route of the torso from the start to within the goal region
(``goal_radius``, 2) of the goal point: a path through the faces the walk of open cells shares, each face
narrowed by ``--margin`` at both ends (the ant's body does not fit into the corner between two blocks), by
dynamic programming over points along each face (a straight line between two faces stays inside the open
cell they bound, which is convex). It then prints, per kind of layout (the 9 training ones, the held-out ones
of the training kind, those of another kind, all held-out), how many have their goal on a left face (only a
walk left reaches it; no training layout does), the median route and the share of layouts whose
route fits in the episode's macro steps (T / N = 1000 / 200 = 5) at each speed (units per macro step,
walking straight along the route: turns and walls only cost more). A lower bound on the speed the
sub-policies need, not a prediction of the goal reaches.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from envs.ant_maze import CELL_SIZE, LAYOUTS, NUM_TRAIN_LAYOUTS, START_XY, Cell, MazeLayout, cell_center, goal_face
from envs.ant_maze import of_training_kind as training_kind

GOAL_RADIUS = 2.0
MACRO_STEPS = 1000 // 200  # T / N of the default AntMaze
FACE_POINTS = 81


def face_points(a: Cell, b: Cell, margin: float) -> np.ndarray:
    """Points along the face open cells ``a`` and ``b`` share, ``margin`` from either end: ``[FACE_POINTS, 2]``."""
    (ax, ay), (bx, by) = cell_center(a), cell_center(b)
    mid_x, mid_y = (ax + bx) / 2, (ay + by) / 2
    offsets = np.linspace(-CELL_SIZE / 2 + margin, CELL_SIZE / 2 - margin, FACE_POINTS)
    if ax != bx:  # side by side: the face is vertical
        return np.stack([np.full_like(offsets, mid_x), mid_y + offsets], axis=1)
    return np.stack([mid_x + offsets, np.full_like(offsets, mid_y)], axis=1)


def shortest_route(layout: MazeLayout, margin: float = 1.0, goal_radius: float = GOAL_RADIUS) -> float:
    """The shortest walk of the torso from the start to within ``goal_radius`` of ``layout``'s goal point."""
    if not 0 <= margin < CELL_SIZE / 2:
        raise ValueError(f"margin must lie in [0, {CELL_SIZE / 2}), got {margin!r}; e.g. --margin 1.0.")
    cells = layout.open_cells
    stages = [np.array([START_XY])]
    stages += [face_points(a, b, margin) for a, b in zip(cells, cells[1:])]
    stages.append(np.array([layout.goal]))
    cost = np.zeros(1)
    for here, there in zip(stages, stages[1:]):
        cost = (cost[:, None] + np.linalg.norm(here[:, None] - there[None], axis=2)).min(axis=0)
    return max(0.0, float(cost[0]) - goal_radius)


def route_table(speeds: list[float], margin: float) -> dict[str, dict[str, object]]:
    """Per kind of layout: how many, the median and longest route, and the share that fits at each speed."""
    routes = np.array([shortest_route(layout, margin) for layout in LAYOUTS])
    index = np.arange(len(LAYOUTS))
    held = index >= NUM_TRAIN_LAYOUTS
    of_kind = np.array([training_kind(layout) for layout in LAYOUTS])
    left = np.array([goal_face(layout) == "left" for layout in LAYOUTS])
    groups = {
        "the 9 training layouts": ~held,
        "held out, of the training kind": held & of_kind,
        "held out, of another kind": held & ~of_kind,
        "all held out": held,
    }
    table = {}
    for name, chosen in groups.items():
        lengths = routes[chosen]
        table[name] = {
            "layouts": int(chosen.sum()),
            "goal_on_left_face": int((chosen & left).sum()),
            "median_route": float(np.median(lengths)),
            "longest_route": float(lengths.max()),
            "fits_at_speed": {f"{speed:g}": float(np.mean(lengths <= MACRO_STEPS * speed)) for speed in speeds},
        }
    return table


def format_table(table: dict[str, dict[str, object]], speeds: list[float]) -> str:
    fits = " | ".join(f"fits at {speed:g}" for speed in speeds)
    head = f"| layouts | count | goal on a left face | median route | longest | {fits} |"
    lines = [head, "|" + "---|" * (5 + len(speeds))]
    for name, row in table.items():
        fits = row["fits_at_speed"]
        assert isinstance(fits, dict)
        shares = " | ".join(f"{fits[f'{s:g}']:.2f}" for s in speeds)
        lines.append(
            f"| {name} | {row['layouts']} | {row['goal_on_left_face']} | {row['median_route']:.1f} | "
            f"{row['longest_route']:.1f} | {shares} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speeds", type=float, nargs="+", default=[10.0, 13.0, 15.0, 20.0])
    parser.add_argument("--margin", type=float, default=1.0, help="kept from either end of a face (units)")
    parser.add_argument("--json", help="also write the table as JSON to this path")
    args = parser.parse_args(argv)
    if any(speed <= 0 for speed in args.speeds):
        parser.error("--speeds must be positive (units per macro step); e.g. --speeds 10 13 15.")
    try:
        table = route_table(args.speeds, args.margin)
    except ValueError as error:
        parser.error(str(error))
    print(format_table(table, args.speeds))
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
