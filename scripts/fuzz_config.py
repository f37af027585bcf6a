"""Fuzzes the settings of ``mlsh.train``, ``mlsh.evaluate`` and ``mlsh.inspect``: NaN, inf, -inf, negative, zero
and wrong-type values over every numeric key of their ``--cfg job`` (list entries of ``hidden_sizes`` too), each
through the command's own check path (everything it checks before it writes or works: ``check_command``), and
prints a table of the outcome per key and value:

* ``refused``: one ``error:`` sentence (the first words are shown);
* ``ok``: accepted (with ``--train``: then trained for one tiny iteration, ``trained``, or refused while training);
* ``TRACEBACK``: anything else, the bug this script looks for.

    python scripts/fuzz_config.py                 # all three commands, checks only (about a minute)
    python scripts/fuzz_config.py --commands train --train   # accepted settings also train one iteration

Exit status 1 when any outcome is a traceback. ``tests/test_fuzz_config.py`` runs it in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# The values tried on every numeric key, as typed on a command line (Hydra parses nan, inf and -inf as floats).
VALUES = {"nan": "nan", "inf": "inf", "-inf": "-inf", "negative": "-1", "zero": "0", "wrong type": "abc"}
LIST_VALUES = {k: f"[{v}]" for k, v in VALUES.items()}

# Small runs: the base of every train case (and of the run evaluate and inspect read).
TINY = [
    "mlsh.num_slots=2",
    "train.envs_per_slot=2",
    "train.rollout_len=20",
    "mlsh.macro_len=5",
    "train.total_timesteps=80",
    "train.progress=false",
    "master.hidden_sizes=[8]",
    "sub.hidden_sizes=[8]",
    "master.update_epochs=1",
    "sub.update_epochs=1",
]
COMMON = {
    "evaluate": ["num_tasks=2", "adapt_iters=1", "oracle_episodes=1"],
    "inspect": ["num_tasks=2", "adapt_iters=1"],
}


def _numeric(value: Any, annotation: str) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return value is None and ("int" in annotation or "float" in annotation)


def _annotations() -> dict[str, str]:
    """Dotted key -> the type annotation of the train config's dataclass field."""
    import dataclasses

    from mlsh.config import Config

    out: dict[str, str] = {}

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            else:
                out[f"{prefix}{f.name}"] = str(f.type)

    walk(Config(), "")
    return out


def numeric_keys(command: str) -> list[tuple[str, bool]]:
    """``(key, is_list)`` for every numeric setting of ``python -m mlsh.<command> --cfg job``."""
    from mlsh.cli import compose_config

    extra = ["checkpoint=x"] if command != "train" else []
    data = compose_config(command, extra)
    annotations = _annotations() if command == "train" else {}
    keys: list[tuple[str, bool]] = []

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict) and key not in ("kwargs", "baseline_runs"):
                walk(value, f"{name}.")
            elif isinstance(value, list) and key == "hidden_sizes":
                keys.append((name, True))
            elif _numeric(value, annotations.get(name, "")):
                keys.append((name, False))
            elif value is None and name.startswith("master.") and command != "train":
                keys.append((name, False))  # the fresh masters' settings: null keeps the run's
            elif value is None and name in ("adapt_iters", "envs_per_task", "video_tasks"):
                keys.append((name, False))

    walk(data, "")
    return keys


@contextlib.contextmanager
def _quiet() -> Iterator[io.StringIO]:
    """Captures stdout, stderr and the mlsh logger (the commands' warnings) of one case."""
    buffer = io.StringIO()
    logger = logging.getLogger("mlsh")
    handler = logging.StreamHandler(buffer)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield buffer
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def outcome(check: Callable[[], Any]) -> str:
    """``refused: <message>``, ``ok`` or ``TRACEBACK: <exception>`` of one check."""
    from mlsh.errors import MLSHError

    with _quiet() as printed:
        try:
            check()
        except MLSHError as exc:
            return f"refused: {exc}"
        except SystemExit as exc:
            lines = [line for line in printed.getvalue().splitlines() if line.startswith("error: ")]
            if exc.code == 2 and len(lines) == 1:
                return f"refused: {lines[0].removeprefix('error: ')}"
            return f"TRACEBACK: SystemExit({exc.code}) with {printed.getvalue()[-300:]!r}"
        except Exception as exc:
            return f"TRACEBACK: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    return "ok"


def run_fuzz(
    commands: list[str], train_accepted: bool, work: Path, per_key: dict[str, int] | None = None
) -> list[tuple[str, str, str, str]]:
    """``(command, key, value name, outcome)`` for every case.

    Args:
        per_key: how many of the values to try on each key of a command (default all six); the values rotate
            from key to key, so that each is still tried on every sixth key.
    """
    import mlsh.evaluate
    import mlsh.inspect
    import mlsh.train
    from mlsh.trainer import train

    rows: list[tuple[str, str, str, str]] = []
    run_dir = work / "run"
    if {"evaluate", "inspect"} & set(commands):
        cfg, _, _ = mlsh.train.check_command([*TINY, f"hydra.run.dir={run_dir}"])
        with _quiet():
            train(cfg, run_dir)
    checks = {"train": mlsh.train.check_command, "evaluate": mlsh.evaluate.check_command,
              "inspect": mlsh.inspect.check_command}  # fmt: skip
    for command in commands:
        for index, (key, is_list) in enumerate(numeric_keys(command)):
            items = list((LIST_VALUES if is_list else VALUES).items())
            count = len(items) if per_key is None else per_key.get(command, len(items))
            for name, text in [items[(index * count + i) % len(items)] for i in range(count)]:
                case = work / f"case{len(rows)}"
                if command == "train":
                    argv = [*TINY, f"{key}={text}", f"hydra.run.dir={case}"]
                else:
                    argv = [f"checkpoint={run_dir}", *COMMON[command], f"{key}={text}", f"output={case}/out.json"]
                result = outcome(lambda argv=argv, command=command: checks[command](argv))
                if result == "ok" and train_accepted and command == "train":
                    result = outcome(lambda argv=argv: _train(argv))
                    result = "trained" if result == "ok" else result
                rows.append((command, key, name, result))
    return rows


def _train(argv: list[str]) -> None:
    import mlsh.train
    from mlsh.trainer import train

    cfg, run_dir, _ = mlsh.train.check_command(argv)
    cfg.train.total_timesteps = cfg.steps_per_iteration  # one iteration, whatever the budget fuzzed was
    train(cfg, run_dir)


def format_rows(rows: list[tuple[str, str, str, str]]) -> str:
    width = max(len(f"{c} {k}") for c, k, _, _ in rows) if rows else 10
    lines = [f"{'command key':<{width}}  {'value':<10}  outcome", "-" * (width + 80)]
    for command, key, name, result in rows:
        shown = result.splitlines()[0]
        lines.append(f"{f'{command} {key}':<{width}}  {name:<10}  {shown[:110]}")
    counts: dict[str, int] = {}
    for *_, result in rows:
        kind = result.split(":")[0]
        counts[kind] = counts.get(kind, 0) + 1
    lines.append("")
    lines.append("outcomes: " + ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items())))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", nargs="+", default=["train", "evaluate", "inspect"],
                        choices=["train", "evaluate", "inspect"])  # fmt: skip
    parser.add_argument("--train", action="store_true", help="train one tiny iteration with every accepted setting")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mlsh_fuzz_") as work:
        rows = run_fuzz(args.commands, args.train, Path(work))
    print(format_rows(rows))
    tracebacks = [row for row in rows if row[3].startswith("TRACEBACK")]
    for command, key, name, result in tracebacks:
        print(f"\n{command} {key}={name}: {result}", file=sys.stderr)
    return 1 if tracebacks else 0


if __name__ == "__main__":
    raise SystemExit(main())
