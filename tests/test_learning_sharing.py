"""Learning test: sub-policies with a shared trunk (``sub.sharing=trunk``) still solve moving bandits.

The same run, evaluation and threshold as the separate sub-policies' test (tests/test_learning.py):
MLSH with the paper's settings (seed 0, 3M env steps; the default's sub-policy re-initialisation and
balanced task draws turned off, as in the sharing sweep: shared modes cannot re-initialise one sub-policy),
then a fresh master adapts for W = 9 iterations on 20 unseen tasks over the frozen sub-policies and must
reach 80% of the oracle.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import evaluation_result, start_train_and_evaluate

pytestmark = pytest.mark.learning

PAPER_SETTINGS = ("mlsh.reinit_share=null", "mlsh.task_sampling=iid")


def test_shared_trunk_mlsh_reaches_80_percent_of_oracle_on_unseen_tasks(tmp_path: Path) -> None:
    process = start_train_and_evaluate(
        tmp_path / "trunk", ("sub.sharing=trunk", *PAPER_SETTINGS), "num_tasks=20 adapt_iters=9"
    )
    result = evaluation_result("trunk", process, tmp_path / "trunk")
    print(f"trunk: return {result['return_after_adaptation']:.2f} / oracle {result['oracle_return']:.2f}")
    assert result["ratio"] >= 0.80, result["ratio"]
