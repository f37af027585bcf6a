"""scripts/fuzz_config.py: NaN, inf, negative, zero and wrong-type values on every numeric key of the commands'
settings give one error sentence or are accepted, never a traceback (docs: reliability)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import load_script


def test_fuzzed_settings_never_give_a_traceback(tmp_path: Path) -> None:
    fuzz = load_script("fuzz_config")
    # A sample of the values per command keeps this under a minute (each case composes the config with Hydra);
    # `python scripts/fuzz_config.py` tries all six on every key.
    values = {"train": ["nan", "negative", "wrong type"], "evaluate": ["nan", "zero"], "inspect": ["negative"]}
    rows = fuzz.run_fuzz(["train", "evaluate", "inspect"], False, tmp_path, values)
    tracebacks = [row for row in rows if row[3].startswith("TRACEBACK")]
    assert not tracebacks, fuzz.format_rows(tracebacks)
    keys = {key for command, key, _, _ in rows if command == "train"}
    assert {"seed", "master.vf_coef", "sub.ent_coef", "env.max_episode_steps", "train.checkpoint_minutes"} <= keys
    assert {"oracle_episodes", "video_fps", "unused_below", "episodes"} <= {key for _, key, _, _ in rows}
    outcome = {(command, key, name): result for command, key, name, result in rows}
    assert outcome["train", "seed", "negative"].startswith("refused: seed must be an integer in [0, 4294967295]")
    assert outcome["train", "master.vf_coef", "nan"] == "refused: master.vf_coef must be 0 or more, got nan."[:-1] + (
        "; set e.g. master.vf_coef=0.5."
    )
    assert outcome["evaluate", "adapt_iters", "zero"] == "ok"
    assert outcome["evaluate", "oracle_episodes", "zero"].startswith("refused: oracle_episodes must be a positive")
    assert not list(tmp_path.glob("case*")), "the checks wrote nothing"
