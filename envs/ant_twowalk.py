"""Ant Twowalk: walk to a goal on the top edge or on the right edge (MLSH paper, section 6.3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mujoco
import numpy as np

from envs.ant_base import AntTaskEnv, ModelFields, Params, add_goal_marker, add_top_camera
from envs.base import IndexTasks
from envs.mujoco_batch import AntBatchVectorEnv

TASK_NAMES = ("top", "right")


class AntTwowalk(IndexTasks, AntTaskEnv[int]):
    """Gymnasium's Ant-v5 on an open floor must walk to one of two goals; which one is the task.

    ## Description
    The ant starts at the origin. Task 0 puts the goal on the top edge at (0, ``goal_distance``),
    task 1 on the right edge at (``goal_distance``, 0). The goal is never observed and persists across
    resets, so a master policy must find out which way to walk. This is "Twowalk" of Frans et al.
    (2018), section 6.3: with K = 2 sub-policies, one should learn to walk up and the other right.
    ``env.unwrapped.goal_position`` gives the current task's goal (for analysis; ``mlsh.inspect``).

    ## Action Space
    ``Box(-1, 1, (8,), float32)``: torques of Ant-v5's eight hip and ankle motors (gear 150).

    ## Observation Space
    ``Box(-inf, inf, (29,), float64)``: the ant's ``qpos`` (torso x, y, z, orientation quaternion and
    the 8 joint angles; x and y included, unlike Ant-v5's default) and ``qvel`` (14).

    ## Rewards
    The negative distance from the torso to the goal after the step, ``-|xy - goal|``
    (``info["reward_distance"]``; ``info["distance_to_goal"]`` is its absolute value).

    ## Starting State
    Ant-v5's: torso at (0, 0, 0.75) upright, uniform noise of ``reset_noise_scale`` on positions and
    Gaussian noise on velocities.

    ## Episode End
    With the default ``flip_handling="rerandomize"`` the episode never terminates: every
    ``pose_reset_every`` (200) steps the ant is set upright where it stands with fresh random joints, so
    a flipped ant walks again (the original code did this; terminating would reward falling, since
    every reward is negative). With ``flip_handling="terminate"`` it terminates when the torso height
    leaves ``healthy_z_range``, as Ant-v5. Truncation after ``max_episode_steps`` (T = 1000, 50 s).

    ## Arguments
    ``goal_distance`` (5.0), ``goal_radius`` (0.5, only the size of the rendered marker), and those of
    :class:`envs.ant_base.AntTaskEnv`: ``xml_file``, ``flip_handling``, ``pose_reset_every``,
    ``reset_noise_scale``, ``healthy_z_range``, ``render_mode`` (None or "rgb_array", a top-down
    camera over both goals), ``width``, ``height``.

    ## Version History
    * v0: first version, settings of the paper (T = 1000).
    """

    start_xy = (0.0, 0.0)
    num_index_tasks = 2
    task_meaning = "0: goal on the top edge, 1: goal on the right edge"

    def __init__(self, goal_distance: float = 5.0, goal_radius: float = 0.5, **kwargs: Any) -> None:
        if goal_distance <= 0:
            raise ValueError(f"AntTwowalk goal_distance must be positive, got {goal_distance!r}.")
        self.goal_distance = float(goal_distance)
        self.goal_radius = float(goal_radius)
        self.goals = np.array([[0.0, self.goal_distance], [self.goal_distance, 0.0]])
        super().__init__(**kwargs)

    def build_arena(self, spec: mujoco.MjSpec) -> None:
        add_goal_marker(spec, self.goal_radius)
        d = self.goal_distance
        add_top_camera(spec, (d / 2, d / 2), d / 2 + 2.0)

    # -- batched hooks ---------------------------------------------------------------------------
    def task_params(self, tasks: Sequence[Any]) -> Params:
        return {"goal": self.goals[np.asarray(tasks, dtype=np.int64)]}

    def visual_fields(self, params: Params) -> ModelFields:
        site = np.array([self.model.site("goal").id])
        return {
            "site_pos": (site, np.concatenate([params["goal"], np.full((len(params["goal"]), 1), 0.02)], 1)[:, None])
        }

    def outcome(
        self, params: Params, xy_before: np.ndarray, qpos: np.ndarray, action: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        distance = np.linalg.norm(qpos[:, :2] - params["goal"], axis=1)
        terminated = np.zeros(len(qpos), dtype=bool)
        return -distance, terminated, {"reward_distance": -distance, "distance_to_goal": distance}


class AntTwowalkVector(AntBatchVectorEnv):
    """:class:`AntTwowalk` batched on ``mujoco.batch`` (the registered ``vector_entry_point``)."""

    env_class = AntTwowalk
