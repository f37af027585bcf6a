"""Ant obstacle course: a sparse transfer task with walls and a chasing enemy (MLSH paper, section 6.3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mujoco
import numpy as np

from envs.ant_base import ANT_NQ, AntTaskEnv, Params, add_box, add_goal_marker, add_outer_walls, add_top_camera
from envs.base import IndexTasks
from envs.mujoco_batch import AntBatchVectorEnv

ARENA_SIZE = 32.0
START_XY = (3.0, 3.0)
GOAL_XY = (29.0, 29.0)
# Interior walls (centre, half size): the route zig-zags right, up through the right-hand gap, left,
# up through the left-hand gap, and right to the goal.
INTERIOR_WALLS = (
    ((10.5, 11.0), (10.5, 0.5, 1.0)),  # y = 11, x in [0, 21]: gap on the right
    ((21.5, 21.0), (10.5, 0.5, 1.0)),  # y = 21, x in [11, 32]: gap on the left
)
# Where the enemy waits (the task): in the bottom, middle or top corridor, each on the route.
ENEMY_HOMES = ((16.0, 5.5), (16.0, 16.0), (16.0, 26.5))
ENEMY_RADIUS = 1.0


def enemy_xy(qpos: np.ndarray) -> np.ndarray:
    """The enemy's (x, y), ``[n, 2]``, from ``qpos`` ``[n, nq]`` (its slide joints measure from the origin)."""
    return qpos[:, ANT_NQ : ANT_NQ + 2].copy()


class AntObstacles(IndexTasks, AntTaskEnv[int]):
    """Gymnasium's Ant-v5 must cross a walled course to a far goal while an enemy pushes it back.

    ## Description
    A 32 x 32 walled arena with two interior walls: the ant starts at the bottom-left (3, 3) and must
    reach the goal region at the top-right (29, 29). The walls leave a zig-zag route: right along the
    bottom, up through the gap at the right end of the wall at y = 11, left along the middle corridor,
    up through the gap at the left end of the wall at y = 21, then right to the goal. An enemy (a heavy
    ball of radius 1 that slides on the floor) waits in one of the three corridors, at x = 16: the
    task (0 bottom, 1 middle, 2 top; ``ENEMY_HOMES``), never observed. While the ant's torso is
    within ``enemy_trigger_radius`` of it, it chases the ant at ``enemy_speed`` and pushes it back
    by contact; otherwise it returns home. This is the transfer task of Frans et al. (2018), section
    6.3: the reward is sparse, and the sub-policies learnt on Twowalk or the mazes are reused, frozen,
    under a new master.

    ## Action Space
    ``Box(-1, 1, (8,), float32)``: torques of Ant-v5's eight hip and ankle motors (gear 150). The enemy
    is driven by the env (two extra velocity actuators that the agent does not control).

    ## Observation Space
    ``Box(-inf, inf, (29,), float64)``: the ant's ``qpos`` (x and y included) and ``qvel``, the same as
    in AntTwowalk and AntMaze so that their sub-policies transfer. The enemy is not observed
    (``info["enemy_x"]``, ``info["enemy_y"]`` report it).

    ## Rewards
    1 on the step that enters the goal region (torso within ``goal_radius`` of (29, 29)), else 0
    (``info["reward_goal"]``).

    ## Starting State
    Ant-v5's, with the torso at (3, 3, 0.75); the enemy at rest at its home.

    ## Episode End
    Terminates when the goal region is entered. Flips are handled as in AntMaze (``flip_handling``:
    "rerandomize" by default, or "terminate"). Truncation after ``max_episode_steps`` (T = 2000, 100 s).

    ## Arguments
    ``goal_radius`` (2.0), ``enemy_trigger_radius`` (6.0), ``enemy_speed`` (1.5, units/s),
    ``enemy_gain`` (200: force per unit of velocity error), and those of
    :class:`envs.ant_base.AntTaskEnv`: ``xml_file``, ``flip_handling``, ``pose_reset_every``,
    ``reset_noise_scale``, ``healthy_z_range``, ``render_mode`` (None or "rgb_array": a top-down view of
    the whole course), ``width``, ``height``.

    ## Version History
    * v0: first version.
    """

    start_xy = START_XY
    num_index_tasks = len(ENEMY_HOMES)
    task_meaning = "the enemy's corridor: bottom, middle, top"

    def __init__(
        self,
        goal_radius: float = 2.0,
        enemy_trigger_radius: float = 6.0,
        enemy_speed: float = 1.5,
        enemy_gain: float = 200.0,
        **kwargs: Any,
    ) -> None:
        self.goal_radius = float(goal_radius)
        self.enemy_trigger_radius = float(enemy_trigger_radius)
        self.enemy_speed = float(enemy_speed)
        self.enemy_gain = float(enemy_gain)
        super().__init__(**kwargs)

    def build_arena(self, spec: mujoco.MjSpec) -> None:
        spec.geom("floor").pos = [ARENA_SIZE / 2, ARENA_SIZE / 2, 0.0]
        spec.geom("floor").size = [ARENA_SIZE, ARENA_SIZE, 40.0]
        add_outer_walls(spec, (0.0, 0.0), (ARENA_SIZE, ARENA_SIZE))
        for index, (center, half_size) in enumerate(INTERIOR_WALLS):
            add_box(spec, f"interior_wall_{index}", center, half_size)
        add_goal_marker(spec, self.goal_radius, GOAL_XY)
        add_top_camera(spec, (ARENA_SIZE / 2, ARENA_SIZE / 2), ARENA_SIZE / 2 + 1.0)
        # The enemy floats just above the floor (no friction with it) on two slide joints.
        enemy = spec.worldbody.add_body(name="enemy", pos=[0.0, 0.0, ENEMY_RADIUS + 0.05])
        enemy.add_geom(
            name="enemy",
            type=mujoco.mjtGeom.mjGEOM_SPHERE,
            size=[ENEMY_RADIUS, 0.0, 0.0],
            mass=10.0,
            rgba=[0.85, 0.1, 0.1, 1.0],
            contype=1,
            conaffinity=1,
        )
        for axis, name in (([1, 0, 0], "enemy_x"), ([0, 1, 0], "enemy_y")):
            joint = enemy.add_joint(name=name, type=mujoco.mjtJoint.mjJNT_SLIDE, axis=axis)
            joint.limited = mujoco.mjtLimited.mjLIMITED_FALSE
            joint.armature, joint.damping = 0.0, [0.0, 0.0, 0.0]
            actuator = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
            actuator.set_to_velocity(kv=self.enemy_gain)
            actuator.ctrllimited = mujoco.mjtLimited.mjLIMITED_FALSE

    # -- batched hooks ---------------------------------------------------------------------------
    def task_params(self, tasks: Sequence[Any]) -> Params:
        index = np.asarray(tasks, dtype=np.int64)
        return {
            "goal": np.broadcast_to(np.asarray(GOAL_XY), (len(index), 2)).copy(),
            "home": np.array(ENEMY_HOMES)[index],
        }

    def initial_state(self, rng: np.random.Generator, params: Params) -> tuple[np.ndarray, np.ndarray]:
        qpos, qvel = super().initial_state(rng, params)
        qpos[ANT_NQ : ANT_NQ + 2] = params["home"][0]
        return qpos, qvel

    def extra_controls(self, params: Params, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """The enemy's target velocity: toward the ant inside the trigger radius, else back home."""
        enemy = enemy_xy(qpos)
        to_ant = qpos[:, :2] - enemy
        to_home = params["home"] - enemy
        ant_distance = np.linalg.norm(to_ant, axis=1, keepdims=True)
        home_distance = np.linalg.norm(to_home, axis=1, keepdims=True)
        chase = ant_distance < self.enemy_trigger_radius
        direction = np.where(chase, to_ant / np.maximum(ant_distance, 1e-9), to_home / np.maximum(home_distance, 1e-9))
        speed = np.where(chase | (home_distance > 0.5), self.enemy_speed, 0.0)
        return direction * speed

    def outcome(
        self, params: Params, xy_before: np.ndarray, qpos: np.ndarray, action: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        distance = np.linalg.norm(qpos[:, :2] - params["goal"], axis=1)
        reached = distance <= self.goal_radius
        reward = reached.astype(np.float64)
        terms = {
            "reward_goal": reward,
            "distance_to_goal": distance,
            "goal_reached": reached,
            "enemy_x": enemy_xy(qpos)[:, 0],
            "enemy_y": enemy_xy(qpos)[:, 1],
        }
        return reward, reached, terms


class AntObstaclesVector(AntBatchVectorEnv):
    """:class:`AntObstacles` batched on ``mujoco.batch`` (the registered ``vector_entry_point``)."""

    env_class = AntObstacles
