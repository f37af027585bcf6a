"""Task-distribution Gymnasium envs for MLSH; importing this package registers ``mlsh/<Name>-v<k>``."""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from envs.base import TaskEnv
from envs.four_rooms import FourRooms
from envs.key_door import KeyDoor
from envs.movement_bandits import MovementBandits

__all__ = ["TaskEnv", "FourRooms", "KeyDoor", "MovementBandits", "registered_ids"]

_ENVS = {
    "mlsh/MovementBandits-v0": ("envs.movement_bandits:MovementBandits", 50),
    "mlsh/FourRooms-v0": ("envs.four_rooms:FourRooms", 100),
    "mlsh/KeyDoor-v0": ("envs.key_door:KeyDoor", 100),
}

for _env_id, (_entry_point, _max_steps) in _ENVS.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point=_entry_point, max_episode_steps=_max_steps)


def registered_ids() -> list[str]:
    """Ids of every env this package registers."""
    return sorted(_ENVS)
