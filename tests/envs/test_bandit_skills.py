"""scripts/bandit_skills.py: the per-sub-policy goal shares, on scripted skills."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.distributions import Categorical

from mlsh.config import EnvConfig
from tests.conftest import load_script
from tests.scripted_skills import ScriptedAgent


def test_shares_name_goal_0_goal_1_and_nothing() -> None:
    module = load_script("bandit_skills")
    shares = module.skill_shares(ScriptedAgent([2, 4, 2, None]), EnvConfig(id="mlsh/MovementBandits-v0"), episodes=10)
    assert [module.skill_name(s) for s in shares] == ["goal 0", "goal 1", "goal 0", "-"]
    assert shares[0] == {"goal 0": 1.0, "goal 1": 0.0} and shares[1] == {"goal 0": 0.0, "goal 1": 1.0}
    assert shares[3]["goal 0"] < 0.5 and shares[3]["goal 1"] < 0.5  # staying at the centre reaches few goals


class _LogitPolicy:
    """Two sub-policies over 2 actions: sub-policy 1 = sub-policy 0 + a constant (1, -1) + a state term (s, -s)."""

    num_subpolicies = 2

    def __init__(self) -> None:
        self.subpolicies = self

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return obs

    def distribution(self, obs: torch.Tensor) -> Categorical:
        s = obs[0, :, 0]
        base = torch.stack([s * 3, torch.zeros_like(s)], -1)
        other = base + torch.tensor([1.0, -1.0]) + torch.stack([s, -s], -1)
        return Categorical(logits=torch.stack([base, other]))


def test_the_logit_difference_splits_into_a_constant_and_a_state_dependent_part() -> None:
    module = load_script("bandit_skills")
    agent = SimpleNamespace(policy=_LogitPolicy(), device=torch.device("cpu"))
    states = np.array([[-1.0], [1.0], [-1.0], [1.0]])  # s has mean 0 and RMS 1
    constant, state_dependent = module.logit_difference(agent, states)["0-1"]
    # centred over the 2 actions, the difference is (1 + s, -1 - s): constant RMS 1, state-dependent RMS 1
    assert constant == pytest.approx(1.0) and state_dependent == pytest.approx(1.0)
