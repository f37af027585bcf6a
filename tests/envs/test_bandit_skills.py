"""scripts/bandit_skills.py: the per-sub-policy goal shares, on scripted skills."""

from __future__ import annotations

import numpy as np

from mlsh.config import EnvConfig
from tests.conftest import load_script

SIZE, STEP = 400.0, 20.0


class _Toward:
    """A scripted skill: greedy lattice moves toward a point of the observation (goal 0 or goal 1)."""

    def __init__(self, offset: int | None) -> None:
        self.offset = offset

    def predict(self, obs: np.ndarray, deterministic: bool = False) -> tuple[int, None]:
        if self.offset is None:
            return 0, None  # stays put
        delta = (obs[self.offset : self.offset + 2] - obs[:2]) * SIZE
        if abs(delta[0]) > STEP / 2:
            return (1 if delta[0] > 0 else 2), None
        if abs(delta[1]) > STEP / 2:
            return (3 if delta[1] > 0 else 4), None
        return 0, None


class _ScriptedAgent:
    skills = [_Toward(2), _Toward(4), _Toward(2), _Toward(None)]
    num_subpolicies = len(skills)

    def subpolicy(self, k: int) -> _Toward:
        return self.skills[k]


def test_shares_name_goal_0_goal_1_and_nothing() -> None:
    module = load_script("bandit_skills")
    shares = module.skill_shares(_ScriptedAgent(), EnvConfig(id="mlsh/MovementBandits-v0"), episodes=10)
    assert [module.skill_name(s) for s in shares] == ["goal 0", "goal 1", "goal 0", "-"]
    assert shares[0] == {"goal 0": 1.0, "goal 1": 0.0} and shares[1] == {"goal 0": 0.0, "goal 1": 1.0}
    assert shares[3]["goal 0"] < 0.5 and shares[3]["goal 1"] < 0.5  # staying at the centre reaches few goals
