"""Key and doors on the moving-bandits plane: fetch the key, then find which of two doors pays."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from envs import plane, rendering


def _plan(
    agent: np.ndarray,
    key: np.ndarray,
    door: np.ndarray,
    has_key: bool,
    size: float,
    step_size: float,
    radius: float,
) -> tuple[int, np.ndarray]:
    """Fewest moves to end a step holding the key inside the door disk, and the lattice point to head for.

    Moves are unit steps on the lattice (clipping never helps), so the distance between two points
    is the L1 distance of their indices. Without the key, the best route goes through the point ``p``
    of the key disk minimising ``|agent - p| + |p - door disk|``; with it, to the nearest point of the
    door disk. Being in the key disk means holding the key (it is collected on arrival).

    Returns:
        ``(moves, target)``: ``moves`` is 0 when holding the key inside the door disk already;
        ``target`` is the lattice index ``[2]`` of the next waypoint (the agent's own when ``moves`` is 0).
    """
    points = plane.lattice_points(size, step_size)
    here = plane.lattice_index(agent, step_size)
    door_points = points[plane.inside(points, door, radius, step_size)]
    if has_key:
        costs = np.abs(door_points - here).sum(axis=1)
        best = int(np.argmin(costs))
        return int(costs[best]), door_points[best]
    key_points = points[plane.inside(points, key, radius, step_size)]
    to_door = np.abs(key_points[:, None, :] - door_points[None, :, :]).sum(axis=2).min(axis=1)
    costs = np.abs(key_points - here).sum(axis=1) + to_door
    best = int(np.argmin(costs))
    return int(costs[best]), key_points[best]


def optimal_return(
    agent: np.ndarray,
    key: np.ndarray,
    door: np.ndarray,
    has_key: bool,
    steps_left: int,
    size: float = 400.0,
    step_size: float = 20.0,
    radius: float = 50.0,
) -> int:
    """The most reward obtainable in ``steps_left`` steps: one per step ending with the key inside ``door``'s disk.

    Entering the rewarding region at the earliest step ``d`` and staying is optimal, so the answer is
    ``steps_left - d + 1`` (``steps_left`` if already there, 0 if out of reach).
    """
    moves, _ = _plan(np.asarray(agent), np.asarray(key), np.asarray(door), has_key, size, step_size, radius)
    if moves == 0:
        return int(steps_left)
    return max(0, int(steps_left) - moves + 1)


class KeyDoor(plane.PlaneTaskEnv):
    """Pick up a key, then reach the one of two doors that pays; which door pays is the task.

    ## Description
    The plane, start and moves of :class:`envs.MovementBandits`. Every episode a key and two doors
    are drawn uniformly on the plane, the doors at least ``min_door_distance`` apart and the key at
    least ``min_key_distance`` from each door. The agent collects the key by coming within
    ``radius`` of it; afterwards, every step it ends within ``radius`` of the *correct* door pays.
    The task is the index (0 or 1) of the correct door: never observed, persistent across resets.
    A hierarchy helps twice here: "go to the key" and "go to door i" are reusable skills, and which
    door pays must be found by trying, as in moving bandits.

    ## Action Space
    ``Discrete(5)``: 0 stay, 1 move +x, 2 move -x, 3 move +y, 4 move -y, each by ``step_size``.
    Positions are clipped to the plane.

    ## Observation Space
    ``Box(0, 1, (9,), float32)``: agent (x, y), key (x, y), door 0 (x, y), door 1 (x, y), all divided
    by ``size``, then ``has_key`` (0 or 1). The key's position stays observed after it is collected.

    ## Rewards
    1 on every step that ends holding the key within ``radius`` of the correct door, else 0
    (``info["reward_door"]``); the wrong door never pays, nor does the correct one before the key.
    :meth:`oracle_action` achieves the best return (shortest lattice route through the key disk
    into the door disk, then stay); :func:`optimal_return` computes it.

    ## Starting State
    Agent at (``size``/2, ``size``/2) without the key (with it if the key was drawn within
    ``radius`` of the centre: the key is collected whenever the agent is within ``radius`` of it,
    at reset or at the end of a step); key and doors redrawn at every reset.
    ``reset(options={"has_key": True})`` starts holding the key, to study the door skills alone
    (``scripts/key_door_skills.py``).

    ## Episode End
    No termination. Truncation after ``max_episode_steps`` (100, by the registered ``TimeLimit``).

    ## Arguments
    ``size`` (400), ``step_size`` (20; ``size / 2`` must be a multiple of it), ``radius`` (50),
    ``min_door_distance`` (100), ``min_key_distance`` (100), ``render_mode`` (None or "rgb_array":
    a 200x200x3 image, y up, key yellow until collected, doors blue with the correct door's radius
    ringed green and the other's light blue, agent red).

    ## Version History
    * v0: first version.
    """

    def __init__(
        self,
        size: float = 400.0,
        step_size: float = 20.0,
        radius: float = 50.0,
        min_door_distance: float = 100.0,
        min_key_distance: float = 100.0,
        render_mode: str | None = None,
    ) -> None:
        plane.check_lattice(size, step_size, "KeyDoor")
        if radius <= step_size / math.sqrt(2):
            raise ValueError(
                f"KeyDoor radius ({radius}) must exceed step_size / sqrt(2) ({step_size / math.sqrt(2):.2f}), "
                f"so that every key and door disk contains a reachable point."
            )
        for name, value in (("min_door_distance", min_door_distance), ("min_key_distance", min_key_distance)):
            if not 0 <= value < size / 2:
                raise ValueError(f"KeyDoor {name} ({value}) must be in [0, size / 2) = [0, {size / 2}).")
        self.radius = float(radius)
        self.min_door_distance = float(min_door_distance)
        self.min_key_distance = float(min_key_distance)
        self._key = np.zeros(2)
        self._doors = np.zeros((2, 2))
        self._has_key = False
        super().__init__(size, step_size, 9, render_mode)

    task_meaning = "the correct door"
    state_attributes: ClassVar[tuple[str, ...] | None] = ("_agent", "_key", "_doors", "_has_key")

    # -- gymnasium API -------------------------------------------------------------------------
    def _draw_places(self, options: dict[str, Any] | None) -> tuple[np.ndarray, dict[str, Any]]:
        while True:
            key, door0, door1 = self.np_random.uniform(0.0, self.size, size=(3, 2))
            if (
                np.linalg.norm(door0 - door1) >= self.min_door_distance
                and np.linalg.norm(key - door0) >= self.min_key_distance
                and np.linalg.norm(key - door1) >= self.min_key_distance
            ):
                break
        self._key = key
        self._doors = np.stack([door0, door1])
        self._has_key = bool(options and options.get("has_key")) or self._near(self._key)
        return self._obs(), {"reward_door": 0.0, "has_key": self._has_key}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._move(action)
        self._has_key = self._has_key or self._near(self._key)
        reward = 1.0 if self._has_key and self._near(self._doors[self._task]) else 0.0
        return self._obs(), reward, False, False, {"reward_door": reward, "has_key": self._has_key}

    def render(self) -> np.ndarray | None:
        canvas = self._canvas()
        if canvas is None:
            return None
        image, scale = canvas
        for index, door in enumerate(self._doors):
            centre = rendering.plane_to_pixel(door, self.size, scale)
            ring = rendering.GREEN if index == self._task else rendering.LIGHT_BLUE
            rendering.draw_ring(image, centre, self.radius * scale, ring, width=2.0)
            rendering.fill_disc(image, centre, 6.0, rendering.BLUE)
        if not self._has_key:
            rendering.fill_disc(image, rendering.plane_to_pixel(self._key, self.size, scale), 6.0, rendering.YELLOW)
        rendering.fill_disc(image, rendering.plane_to_pixel(self._agent, self.size, scale), 5.0, rendering.AGENT)
        return image

    # -- oracle --------------------------------------------------------------------------------
    def oracle_action(self) -> int:
        """Moves along a shortest lattice route through the key disk into the correct door's disk, then stays."""
        moves, target = _plan(
            self._agent, self._key, self._doors[self._task], self._has_key, self.size, self.step_size, self.radius
        )
        return 0 if moves == 0 else plane.action_toward(plane.lattice_index(self._agent, self.step_size), target)

    def optimal_return(self, steps_left: int) -> int:
        """The most reward obtainable from the current state in ``steps_left`` more steps."""
        return optimal_return(
            self._agent,
            self._key,
            self._doors[self._task],
            self._has_key,
            steps_left,
            self.size,
            self.step_size,
            self.radius,
        )

    # -- helpers -------------------------------------------------------------------------------
    @property
    def has_key(self) -> bool:
        """Whether the agent holds the key (collected this episode)."""
        return self._has_key

    @property
    def key_position(self) -> np.ndarray:
        """The key's (x, y) this episode, float64 ``[2]`` (a copy)."""
        return self._key.copy()

    @property
    def door_positions(self) -> np.ndarray:
        """Door 0's and door 1's (x, y) this episode, float64 ``[2, 2]`` (a copy)."""
        return self._doors.copy()

    def _near(self, point: np.ndarray) -> bool:
        return math.hypot(self._agent[0] - point[0], self._agent[1] - point[1]) < self.radius

    def _obs(self) -> np.ndarray:
        obs = np.empty(9, dtype=np.float32)
        obs[:2] = self._agent
        obs[2:4] = self._key
        obs[4:8] = self._doors.ravel()
        obs[:8] /= self.size
        obs[8] = float(self._has_key)
        return obs
