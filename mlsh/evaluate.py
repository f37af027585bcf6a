"""``python -m mlsh.evaluate checkpoint=<run dir> num_tasks=20``: adapt fresh masters on unseen tasks.

Prints a table (return after adaptation, oracle return, ratio) and writes it as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mlsh.cli import compose_config, fail, run_cli, split_overrides
from mlsh.evaluation import evaluate_run, format_table


def main() -> None:
    overrides = split_overrides(sys.argv[1:])
    data = compose_config("evaluate", overrides)
    if data.get("checkpoint") in (None, "???"):
        fail("checkpoint is required; pass checkpoint=<run dir>.")
    result = evaluate_run(
        data["checkpoint"],
        num_tasks=data["num_tasks"],
        seed=data["seed"],
        adapt_iters=data["adapt_iters"],
        oracle=data["oracle"],
        oracle_episodes=data["oracle_episodes"],
        device=data["device"],
        scratch_baseline=data["baseline_scratch"],
    )
    print(format_table(result))
    output = Path(data["output"] or Path(result["run_dir"]) / "eval" / f"evaluation_seed{data['seed']}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2))
    print(f"mlsh: wrote {output}")


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
