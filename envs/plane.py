"""The 2D plane shared by MovementBandits and KeyDoor: moves, the reachable lattice, shortest routes.

The agent starts at the centre of a ``size`` x ``size`` plane and moves by ``step_size`` along an
axis, clipped to the plane. When ``size / 2`` is a multiple of ``step_size`` every reachable
position is a point of the lattice ``step_size * (i, j)``, ``0 <= i, j <= size / step_size``, and
clipping never helps, so the fewest moves between two lattice points is the L1 distance of their
indices. The oracles of both envs are shortest routes on this lattice.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Action index -> (dx, dy) in units of ``step_size``: stay, +x, -x, +y, -y.
MOVES = ((0.0, 0.0), (1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0))


def move(agent: np.ndarray, action: Any, step_size: float, size: float, env_name: str) -> np.ndarray:
    """Position after ``action`` (clipped to the plane); ``ValueError`` for anything but an int in [0, 5)."""
    index = int(action)
    if index != action or not 0 <= index < len(MOVES):
        raise ValueError(f"{env_name} action must be an int in [0, 5), got {action!r}.")
    dx, dy = MOVES[index]
    x = min(max(agent[0] + dx * step_size, 0.0), size)
    y = min(max(agent[1] + dy * step_size, 0.0), size)
    return np.array([x, y])


def check_lattice(size: float, step_size: float, env_name: str) -> None:
    """Refuses a plane whose reachable positions would not stay on the lattice."""
    half_steps = (size / 2) / step_size
    if step_size <= 0 or half_steps != round(half_steps):
        raise ValueError(
            f"{env_name} size / 2 ({size / 2}) must be a positive multiple of step_size ({step_size}), "
            f"so that positions stay on a lattice."
        )


def lattice_points(size: float, step_size: float) -> np.ndarray:
    """Lattice indices of every reachable position: ``[n * n, 2]``, position = index * step_size."""
    n = round(size / step_size) + 1
    axis = np.arange(n)
    return np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)


def inside(points: np.ndarray, centre: np.ndarray, radius: float, step_size: float) -> np.ndarray:
    """Which lattice ``points`` (indices ``[P, 2]``) lie strictly within ``radius`` of ``centre``: ``[P]``."""
    return np.hypot(points[:, 0] * step_size - centre[0], points[:, 1] * step_size - centre[1]) < radius


def lattice_index(agent: np.ndarray, step_size: float) -> np.ndarray:
    """The lattice index ``[2]`` of a reachable position."""
    return np.rint(np.asarray(agent, dtype=np.float64) / step_size).astype(np.int64)


def action_toward(here: np.ndarray, target: np.ndarray) -> int:
    """First move of a shortest lattice route from index ``here`` to index ``target`` (0 if there)."""
    dx, dy = target - here
    if dx != 0:
        return 1 if dx > 0 else 2
    if dy != 0:
        return 3 if dy > 0 else 4
    return 0
