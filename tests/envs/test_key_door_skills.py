"""scripts/key_door_skills.py: the per-sub-policy key / door shares, on scripted skills."""

from __future__ import annotations

from mlsh.config import EnvConfig
from tests.conftest import load_script
from tests.scripted_skills import ScriptedAgent


def test_shares_name_key_door_0_door_1_and_nothing() -> None:
    module = load_script("key_door_skills")
    shares = module.skill_shares(ScriptedAgent([2, 4, 6, None]), EnvConfig(id="mlsh/KeyDoor-v0"), episodes=10)
    assert [module.skill_name(s) for s in shares] == ["key", "door 0", "door 1", "-"]
    assert shares[0]["key"] == 1.0 and shares[1]["door 0"] == 1.0 and shares[2]["door 1"] == 1.0
    assert shares[1]["door 1"] == 0.0 and shares[2]["door 0"] == 0.0  # doors are at least 100 apart, radius 50
