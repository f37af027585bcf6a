"""Ant movement: walk in one of four directions on an open floor (the directional stage of the original code)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mujoco
import numpy as np

from envs.ant_base import AntTaskEnv, Params, add_top_camera
from envs.base import IndexTasks, check_nonnegative_number
from envs.mujoco_batch import AntBatchVectorEnv

# Unit vectors of the tasks' directions: right (+x), up (+y), left (-x), down (-y).
DIRECTIONS = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
TASK_NAMES = ("right", "up", "left", "down")
# goal_position lies this far along the direction: the goal-directed choices of mlsh.inspect then judge each
# decision by the direction alone, wherever the ant is.
GOAL_DISTANCE = 1e4


class AntMovement(IndexTasks, AntTaskEnv[int]):
    """Gymnasium's Ant-v5 on an open floor must walk one way; which of four is the task.

    ## Description
    The ant starts at the origin. The task is a direction: 0 right (+x), 1 up (+y), 2 left (-x),
    3 down (-y), never observed and persistent across resets, so a master must find out which way pays.
    The original MLSH code had such a directional task ("AntMovement"); here it is a first stage for
    the mazes and the obstacle course, whose routes need all four directions (``init_from=`` a run of
    it). ``env.unwrapped.goal_position`` is a point far along the direction (for ``mlsh.inspect``'s
    goal-directed choices).

    ## Action Space
    ``Box(-1, 1, (8,), float32)``: torques of Ant-v5's eight hip and ankle motors (gear 150).

    ## Observation Space
    ``Box(-inf, inf, (29,), float64)``: the ant's ``qpos`` (x and y included) and ``qvel``, as in every
    Ant task here, so that sub-policies transfer.

    ## Rewards
    The torso's velocity along the task's direction (``info["reward_velocity"]``), minus
    ``ctrl_cost_weight |a|^2`` (``info["reward_ctrl"]``, negative): the maze's dense reward with a single
    direction instead of a goal's two signs.

    ## Starting State
    Ant-v5's, with the torso at (0, 0, 0.75).

    ## Episode End
    Never terminates with the default ``flip_handling="rerandomize"`` (the ant is set upright where it
    stands every ``pose_reset_every`` = 200 steps, as in the other Ant tasks). Truncation after
    ``max_episode_steps`` (T = 1000, 50 s).

    ## Arguments
    ``ctrl_cost_weight`` (0.1), and those of :class:`envs.ant_base.AntTaskEnv`: ``xml_file``,
    ``flip_handling``, ``pose_reset_every``, ``reset_noise_scale``, ``healthy_z_range``, ``render_mode``
    (None or "rgb_array", a top-down camera over the start), ``width``, ``height``.

    ## Version History
    * v0: first version.
    """

    start_xy = (0.0, 0.0)
    num_index_tasks = len(DIRECTIONS)
    task_meaning = "0: right (+x), 1: up (+y), 2: left (-x), 3: down (-y)"

    def __init__(self, ctrl_cost_weight: float = 0.1, **kwargs: Any) -> None:
        self.ctrl_cost_weight = check_nonnegative_number(ctrl_cost_weight, "AntMovement ctrl_cost_weight", 0.1)
        super().__init__(**kwargs)

    def build_arena(self, spec: mujoco.MjSpec) -> None:
        add_top_camera(spec, self.start_xy, 20.0)

    # -- batched hooks ---------------------------------------------------------------------------
    def task_params(self, tasks: Sequence[Any]) -> Params:
        direction = DIRECTIONS[np.asarray(tasks, dtype=np.int64)]
        return {"direction": direction, "goal": np.asarray(self.start_xy) + GOAL_DISTANCE * direction}

    def outcome(
        self, params: Params, xy_before: np.ndarray, qpos: np.ndarray, action: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        along = (self.planar_velocity(xy_before, qpos) * params["direction"]).sum(axis=1)
        ctrl = self.control_cost(action)
        terminated = np.zeros(len(qpos), dtype=bool)
        return along + ctrl, terminated, {"reward_velocity": along, "reward_ctrl": ctrl}


class AntMovementVector(AntBatchVectorEnv):
    """:class:`AntMovement` batched on ``mujoco.batch`` (the registered ``vector_entry_point``)."""

    env_class = AntMovement
