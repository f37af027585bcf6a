"""Small NumPy-only drawing helpers for ``render_mode="rgb_array"`` (no pygame or matplotlib needed)."""

from __future__ import annotations

import numpy as np

Color = tuple[int, int, int]

BACKGROUND: Color = (235, 235, 235)
WALL: Color = (64, 64, 64)
AGENT: Color = (220, 30, 30)
GREEN: Color = (40, 170, 60)
BLUE: Color = (40, 90, 220)
LIGHT_BLUE: Color = (150, 180, 240)
YELLOW: Color = (235, 200, 20)


def canvas(height: int, width: int, color: Color = BACKGROUND) -> np.ndarray:
    """A ``[height, width, 3]`` uint8 image filled with ``color``."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = color
    return image


def _distances(image: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """Distance of every pixel centre to ``centre`` (row, col) in pixels: ``[height, width]``."""
    rows = np.arange(image.shape[0]) + 0.5
    cols = np.arange(image.shape[1]) + 0.5
    return np.hypot(rows[:, None] - centre[0], cols[None, :] - centre[1])


def fill_disc(image: np.ndarray, centre: tuple[float, float], radius: float, color: Color) -> None:
    """Paints the pixels within ``radius`` of ``centre`` (row, col), in place."""
    image[_distances(image, centre) <= radius] = color


def draw_ring(image: np.ndarray, centre: tuple[float, float], radius: float, color: Color, width: float = 1.0) -> None:
    """Paints a circle outline of ``radius`` around ``centre`` (row, col), in place."""
    image[np.abs(_distances(image, centre) - radius) <= width / 2] = color


def plane_to_pixel(xy: np.ndarray, size: float, scale: float) -> tuple[float, float]:
    """Maps plane coordinates (x right, y up, in [0, size]) to (row, col) pixel coordinates."""
    return (size - float(xy[1])) * scale, float(xy[0]) * scale
