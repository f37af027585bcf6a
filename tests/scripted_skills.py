"""Scripted plane-env skills for the skill-script tests (scripts/bandit_skills.py, scripts/key_door_skills.py)."""

from __future__ import annotations

import numpy as np

SIZE, STEP = 400.0, 20.0  # the plane envs' default size and move length


class Toward:
    """A scripted skill: greedy lattice moves toward a point of the observation (its entries at ``offset``,
    ``offset + 1``); ``None`` stays put."""

    def __init__(self, offset: int | None) -> None:
        self.offset = offset

    def predict(self, obs: np.ndarray, deterministic: bool = False) -> tuple[int, None]:
        if self.offset is None:
            return 0, None
        delta = (obs[self.offset : self.offset + 2] - obs[:2]) * SIZE
        if abs(delta[0]) > STEP / 2:
            return (1 if delta[0] > 0 else 2), None
        if abs(delta[1]) > STEP / 2:
            return (3 if delta[1] > 0 else 4), None
        return 0, None


class ScriptedAgent:
    """What the skill scripts use of an agent: ``num_subpolicies`` and ``subpolicy(k)``."""

    def __init__(self, offsets: list[int | None]) -> None:
        self.skills = [Toward(offset) for offset in offsets]
        self.num_subpolicies = len(self.skills)

    def subpolicy(self, k: int) -> Toward:
        return self.skills[k]
