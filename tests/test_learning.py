"""Learning tests: MLSH reproduces the moving-bandits result; flat PPO on the same budget does not.

MLSH is trained on MovementBandits with the default settings (seed 19), then a fresh
master adapts for W = 9 iterations on 20 unseen tasks over the frozen sub-policies. A single flat
PPO policy trained with the same budget commits to one goal and gets about half the oracle's return
(paper, section 6.1). Both runs go in parallel, one per core.

``mlsh.inspect``'s task coverage must find both goals served on the trained run, and must flag the
run once one sub-policy's weights are copied over the other's: the collapse of some seeds, where no
sub-policy serves one goal (docs/results/bandits.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlsh.checkpoint import load_checkpoint, save_checkpoint
from mlsh.inspect import inspect_run
from tests.conftest import evaluation_result, start_train_and_evaluate

pytestmark = pytest.mark.learning

EVAL_ARGS = "num_tasks=20 adapt_iters=9"
# Not one of the seeds the default's re-initialisation and balanced task draws were chosen on (4, 9, 11-14;
# docs: results, bandits); its 20 evaluation tasks and 8 inspection tasks are half of each goal.
SEED = 19


def test_mlsh_reaches_80_percent_of_oracle_on_unseen_tasks_and_flat_ppo_about_half(tmp_path: Path) -> None:
    jobs = {
        "mlsh": start_train_and_evaluate(tmp_path / "mlsh", (), EVAL_ARGS, SEED),
        "flat": start_train_and_evaluate(tmp_path / "flat", ("algo=flat_ppo",), EVAL_ARGS, SEED),
    }
    ratios = {}
    for name, process in jobs.items():
        result = evaluation_result(name, process, tmp_path / name)
        ratios[name] = result["ratio"]
        print(f"{name}: return {result['return_after_adaptation']:.2f} / oracle {result['oracle_return']:.2f}")
    assert ratios["mlsh"] >= 0.80, ratios
    assert 0.20 <= ratios["flat"] <= 0.70, ratios  # near half: it commits to one goal (5 seeds: 0.30-0.65)
    assert ratios["mlsh"] - ratios["flat"] >= 0.25, ratios

    report, _ = inspect_run(tmp_path / "mlsh", num_tasks=8, episodes=2, seed=SEED)
    assert report["uncovered"] is False, report["task_coverage"]
    payload = load_checkpoint(tmp_path / "mlsh")
    policy = payload["learner"]["policy"]
    for key, value in policy.items():  # sub-policy 1 becomes a copy of sub-policy 0: one goal left unserved
        if key.startswith("subpolicies.") and value.dim():
            policy[key] = value[:1].expand_as(value).clone()
    collapsed = tmp_path / "collapsed"
    collapsed.mkdir()
    save_checkpoint(collapsed / "checkpoint.pt", {k: v for k, v in payload.items() if k != "format_version"})
    report, _ = inspect_run(collapsed, num_tasks=8, episodes=2, seed=SEED)
    assert report["uncovered"] is True, report["task_coverage"]
    assert 0.25 <= report["task_coverage"]["uncovered_share"] <= 0.75, report["task_coverage"]
