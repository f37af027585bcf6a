"""scripts/fuzz_config.py: NaN, inf, negative, zero and wrong-type values on every numeric key of the commands'
settings give one error sentence or are accepted, never a traceback (docs: reliability)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import load_script


def test_fuzzed_settings_never_give_a_traceback(tmp_path: Path) -> None:
    fuzz = load_script("fuzz_config")
    # Two of the six values per key (rotating, so each value meets every third key) keeps this near a minute:
    # each case composes the config with Hydra. `python scripts/fuzz_config.py` tries all six on every key.
    rows = fuzz.run_fuzz(["train", "evaluate", "inspect"], False, tmp_path, {"train": 2, "evaluate": 1, "inspect": 1})
    tracebacks = [row for row in rows if row[3].startswith("TRACEBACK")]
    assert not tracebacks, fuzz.format_rows(tracebacks)
    keys = {key for command, key, _, _ in rows if command == "train"}
    assert {"seed", "master.vf_coef", "sub.ent_coef", "env.max_episode_steps", "train.checkpoint_minutes"} <= keys
    assert {"oracle_episodes", "video_fps", "unused_below", "episodes"} <= {key for _, key, _, _ in rows}
    assert {name for command, _, name, _ in rows if command == "train"} == set(fuzz.VALUES)
    assert any(result.startswith("refused: ") for *_, result in rows)
    assert any(result == "ok" for *_, result in rows)
    assert not list(tmp_path.glob("case*")), "the checks wrote nothing"
