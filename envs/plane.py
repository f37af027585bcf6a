"""The 2D plane shared by MovementBandits and KeyDoor: moves, the reachable lattice, shortest routes.

The agent starts at the centre of a ``size`` x ``size`` plane and moves by ``step_size`` along an
axis, clipped to the plane. When ``size / 2`` is a multiple of ``step_size`` every reachable
position is a point of the lattice ``step_size * (i, j)``, ``0 <= i, j <= size / step_size``, and
clipping never helps, so the fewest moves between two lattice points is the L1 distance of their
indices. The oracles of both envs are shortest routes on this lattice.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs import rendering
from envs.base import IndexTasks, TaskEnv

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


class PlaneTaskEnv(IndexTasks, TaskEnv[int]):
    """What MovementBandits and KeyDoor share: an agent that starts at the centre of a ``size`` x ``size``
    plane and moves by ``step_size`` (``Discrete(5)``: stay, +x, -x, +y, -y), a task that picks one of two
    places, float32 observations in ``[0, 1]``, and ``rgb_array`` rendering at ``render_scale`` pixels per unit.

    Args:
        size: side of the plane.
        step_size: length of a move.
        obs_dim: width of the observation.
        render_mode: None or ``"rgb_array"``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    render_scale = 0.5
    num_index_tasks = 2
    task_meaning = "which of the two places pays"

    def __init__(self, size: float, step_size: float, obs_dim: int, render_mode: str | None) -> None:
        self.size = float(size)
        self.step_size = float(step_size)
        self._set_render_mode(render_mode)
        self.action_space = spaces.Discrete(5)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(obs_dim,), dtype=np.float32)
        self._agent = np.full(2, self.size / 2)
        super().__init__()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._apply_reset_options(options)
        self._agent = np.full(2, self.size / 2)
        return self._draw_places(options)

    def _draw_places(self, options: dict[str, Any] | None) -> tuple[np.ndarray, dict[str, Any]]:
        """Draws the episode's places with ``self.np_random`` (the agent is at the centre); returns reset's
        ``(observation, info)``."""
        raise NotImplementedError

    @property
    def agent_position(self) -> np.ndarray:
        """The agent's (x, y) on the plane, ``[2]`` float."""
        return self._agent.astype(float)

    def _move(self, action: Any) -> None:
        self._agent = move(self._agent, action, self.step_size, self.size, type(self).__name__)

    def _canvas(self) -> tuple[np.ndarray, float] | None:
        """A blank frame of the plane and its pixels per unit; None (with a warning) without a render mode."""
        if self.render_mode is None:
            gym.logger.warn(
                f"{type(self).__name__}.render() called without a render_mode; make the env with "
                f"render_mode='rgb_array'."
            )
            return None
        pixels = round(self.size * self.render_scale)
        return rendering.canvas(pixels, pixels), self.render_scale
