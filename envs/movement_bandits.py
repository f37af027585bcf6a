"""2D moving bandits (MLSH paper, section 6.1)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from envs import plane, rendering


class MovementBandits(plane.PlaneTaskEnv):
    """An agent on a plane must find which of two goal points pays; the payer is the task.

    ## Description
    The agent starts at the centre of a ``size`` x ``size`` plane. Every episode two goal points are
    drawn uniformly on the plane (at least ``min_goal_distance`` apart, so that at most one goal
    region pays at any point). The task is the index (0 or 1) of the *correct* goal; it is never
    observed and persists across resets, so an agent must discover it by trying. This is the
    "2D moving bandits" task of Frans et al. (2018), section 6.1.

    ## Action Space
    ``Discrete(5)``: 0 stay, 1 move +x, 2 move -x, 3 move +y, 4 move -y, each by ``step_size``.
    Positions are clipped to the plane.

    ## Observation Space
    ``Box(0, 1, (6,), float32)``: agent (x, y), goal 0 (x, y), goal 1 (x, y), all divided by ``size``.

    ## Rewards
    1 on every step that ends within ``goal_radius`` of the correct goal, else 0
    (``info["reward_goal"]``). The best achievable return depends on the goals' draw; the
    scripted :meth:`oracle_action` achieves it.

    ## Starting State
    Agent at (``size``/2, ``size``/2); goals uniform on the plane, redrawn at every reset.

    ## Episode End
    No termination. Truncation after ``max_episode_steps`` (50, by the registered ``TimeLimit``).

    ## Arguments
    ``size`` (400), ``step_size`` (20), ``goal_radius`` (50), ``min_goal_distance`` (100),
    ``render_mode`` (None or "rgb_array": a 200x200x3 image, y up, correct goal green, other goal blue,
    each ringed at ``goal_radius``, agent red).

    ## Version History
    * v0: first version, settings of the paper.
    """

    def __init__(
        self,
        size: float = 400.0,
        step_size: float = 20.0,
        goal_radius: float = 50.0,
        min_goal_distance: float = 100.0,
        render_mode: str | None = None,
    ) -> None:
        if min_goal_distance >= size:
            raise ValueError(f"min_goal_distance ({min_goal_distance}) must be below size ({size}).")
        plane.check_lattice(size, step_size, "MovementBandits")
        self.goal_radius = float(goal_radius)
        self.min_goal_distance = float(min_goal_distance)
        self._goals = np.zeros((2, 2))
        super().__init__(size, step_size, 6, render_mode)

    task_meaning = "the correct goal"
    state_attributes: ClassVar[tuple[str, ...] | None] = ("_agent", "_goals")

    # -- gymnasium API -------------------------------------------------------------------------
    def _draw_places(self, options: dict[str, Any] | None) -> tuple[np.ndarray, dict[str, Any]]:
        while True:
            goals = self.np_random.uniform(0.0, self.size, size=(2, 2))
            if np.linalg.norm(goals[0] - goals[1]) >= self.min_goal_distance:
                break
        self._goals = goals
        return self._obs(), {"reward_goal": 0.0, "distance_to_goal": self._distance_to_goal()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._move(action)
        distance = self._distance_to_goal()
        reward = 1.0 if distance < self.goal_radius else 0.0
        return self._obs(), reward, False, False, {"reward_goal": reward, "distance_to_goal": distance}

    def render(self) -> np.ndarray | None:
        canvas = self._canvas()
        if canvas is None:
            return None
        image, scale = canvas
        for index, goal in enumerate(self._goals):
            centre = rendering.plane_to_pixel(goal, self.size, scale)
            color = rendering.GREEN if index == self._task else rendering.BLUE
            rendering.draw_ring(image, centre, self.goal_radius * scale, color)
            rendering.fill_disc(image, centre, 6.0, color)
        rendering.fill_disc(image, rendering.plane_to_pixel(self._agent, self.size, scale), 5.0, rendering.AGENT)
        return image

    # -- oracle --------------------------------------------------------------------------------
    def oracle_action(self) -> int:
        """Moves by the fewest steps onto the nearest reachable point inside the correct goal's
        radius, then stays: reward is collected on every step from the first one inside, so
        entering soonest and never leaving is optimal."""
        if self._distance_to_goal() < self.goal_radius:
            return 0
        points = plane.lattice_points(self.size, self.step_size)
        goal_points = points[plane.inside(points, self._goals[self._task], self.goal_radius, self.step_size)]
        here = plane.lattice_index(self._agent, self.step_size)
        target = goal_points[int(np.argmin(np.abs(goal_points - here).sum(axis=1)))]
        return plane.action_toward(here, target)

    # -- helpers -------------------------------------------------------------------------------
    def _distance_to_goal(self) -> float:
        goal = self._goals[self._task]
        return math.hypot(self._agent[0] - goal[0], self._agent[1] - goal[1])

    def _obs(self) -> np.ndarray:
        obs = np.empty(6, dtype=np.float32)
        obs[:2] = self._agent
        obs[2:] = self._goals.ravel()
        obs /= self.size
        return obs
