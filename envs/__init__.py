"""Task-distribution Gymnasium envs for MLSH; importing this package registers ``mlsh/<Name>-v<k>``."""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from envs.ant_maze import AntMaze
from envs.ant_movement import AntMovement
from envs.ant_obstacles import AntObstacles
from envs.ant_twowalk import AntTwowalk
from envs.base import TaskEnv
from envs.four_rooms import FourRooms
from envs.key_door import KeyDoor
from envs.movement_bandits import MovementBandits
from envs.single_task import SingleTask

__all__ = [
    "TaskEnv",
    "AntMaze",
    "AntMovement",
    "AntObstacles",
    "AntTwowalk",
    "FourRooms",
    "KeyDoor",
    "MovementBandits",
    "SingleTask",
    "registered_ids",
]

_ENVS = {
    "mlsh/MovementBandits-v0": ("envs.movement_bandits:MovementBandits", 50),
    "mlsh/FourRooms-v0": ("envs.four_rooms:FourRooms", 100),
    "mlsh/KeyDoor-v0": ("envs.key_door:KeyDoor", 100),
}

# MuJoCo Ant tasks, each with a batched vector env on mujoco.batch (``gym.make_vec`` uses it).
_ANT_ENVS = {
    "mlsh/AntTwowalk-v0": ("envs.ant_twowalk:AntTwowalk", "envs.ant_twowalk:AntTwowalkVector", 1000),
    "mlsh/AntMaze-v0": ("envs.ant_maze:AntMaze", "envs.ant_maze:AntMazeVector", 1000),
    "mlsh/AntMovement-v0": ("envs.ant_movement:AntMovement", "envs.ant_movement:AntMovementVector", 1000),
    "mlsh/AntObstacles-v0": ("envs.ant_obstacles:AntObstacles", "envs.ant_obstacles:AntObstaclesVector", 2000),
}

# Any plain Gymnasium env as a distribution of one task; the inner env keeps its own time limit.
if "mlsh/SingleTask-v0" not in registry:
    register(id="mlsh/SingleTask-v0", entry_point="envs.single_task:SingleTask")

for _env_id, (_entry_point, _max_steps) in _ENVS.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point=_entry_point, max_episode_steps=_max_steps)
for _env_id, (_entry_point, _vector_entry_point, _max_steps) in _ANT_ENVS.items():
    if _env_id not in registry:
        register(
            id=_env_id,
            entry_point=_entry_point,
            vector_entry_point=_vector_entry_point,
            max_episode_steps=_max_steps,
        )


def registered_ids() -> list[str]:
    """Ids of every task distribution this package registers (``mlsh/SingleTask-v0``, a wrapper, is not one)."""
    return sorted([*_ENVS, *_ANT_ENVS])
