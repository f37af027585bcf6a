"""A mutation run over the core: targeted mutants, each the smallest edit that breaks one invariant the results
rest on, applied one at a time to a copy of the repository; the tests covering that file run against each, and a
mutant is killed when they fail.

    python scripts/mutants.py                      # every mutant (about 15 minutes on 2 cores)
    python scripts/mutants.py --only rollout-final-obs gae-lambda
    python scripts/mutants.py --list

Prints one row per mutant (killed / SURVIVED, seconds, the first failing test) and the kill rate; ``--json``
writes them. Exit status 1 when a mutant survives. The copy lives in a temporary directory, so the working
tree is never modified.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]

ROLLOUT = ["tests/mlsh/test_reliability_invariants.py", "tests/mlsh/test_rollout.py", "tests/mlsh/test_gae.py"]
EVALUATION = ["tests/mlsh/test_reliability_invariants.py", "tests/mlsh/test_evaluation.py"]
PPO = ["tests/mlsh/test_reliability_invariants.py", "tests/mlsh/test_ppo.py", "tests/mlsh/test_meta.py"]
GAE = ["tests/mlsh/test_gae.py"]
META = ["tests/mlsh/test_meta.py", "tests/mlsh/test_reliability_invariants.py", "tests/mlsh/test_checkpoint.py"]
TRAINER = [
    "tests/mlsh/test_checkpoint.py",
    "tests/mlsh/test_reliability_runs.py",
    "tests/mlsh/test_reliability_signals.py",
]
INPUTS = ["tests/mlsh/test_config.py", "tests/mlsh/test_reliability_inputs.py"]


class Mutant(NamedTuple):
    name: str
    path: str
    original: str
    mutated: str
    what: str
    tests: list[str]


MUTANTS = [
    Mutant(
        "rollout-final-obs",
        "mlsh/rollout.py",
        'info["final_obs"][b] if cut[b]',
        "next_obs[b] if cut[b]",
        "a truncated episode bootstraps from the next episode's first observation",
        ROLLOUT,
    ),
    Mutant(
        "rollout-master-boot",
        "mlsh/rollout.py",
        "master_bootstrap[t] = torch.where(cut_t, boot, 0.0)",
        "master_bootstrap[t] = torch.where(cut_t, boot * 0.0, 0.0)",
        "the master's value at a truncation is dropped",
        ROLLOUT,
    ),
    Mutant(
        "rollout-sub-boot",
        "mlsh/rollout.py",
        "torch.where(cut_t, policy.sub_value(final_obs, sub_idx), 0.0)",
        "torch.where(cut_t, 0.0 * policy.sub_value(final_obs, sub_idx), 0.0)",
        "the sub-policy's value at a truncation is dropped",
        ROLLOUT,
    ),
    Mutant(
        "eval-measure-rms",
        "mlsh/evaluation.py",
        "collect(rollout_len, update_obs_rms=False,",
        "collect(rollout_len, update_obs_rms=True,",
        "the normaliser is updated while the adapted policy is measured",
        EVALUATION,
    ),
    Mutant(
        "eval-adapt-rms",
        "mlsh/evaluation.py",
        "train_subpolicies=False, update_obs_rms=False)",
        "train_subpolicies=False, update_obs_rms=True)",
        "the normaliser is updated while masters adapt",
        EVALUATION,
    ),
    Mutant(
        "eval-task-stream",
        "mlsh/evaluation.py",
        "rng = task_rng(seed, EVAL_TASK_STREAM)",
        "rng = task_rng(seed, 0)",
        "evaluation tasks are drawn from the training task stream",
        EVALUATION,
    ),
    Mutant(
        "eval-heldout-split",
        "mlsh/evaluation.py",
        "        if callable(sample):\n            return sample",
        "        if False:\n            return sample",
        "split=heldout ignores the env's held-out split",
        EVALUATION,
    ),
    Mutant(
        "agent-most-trained",
        "agents/agent.py",
        "return int(np.argmax(trained))",
        "return 0",
        "the agent keeps slot 0's master, not the most trained one",
        ["tests/mlsh/test_reliability_invariants.py", "tests/agents/test_agent.py"],
    ),
    Mutant(
        "ppo-norm-adv",
        "mlsh/update.py",
        "    if cfg.norm_adv:\n        ids, count",
        "    if False:\n        ids, count",
        "advantages are not normalised",
        PPO,
    ),
    Mutant(
        "ppo-target-kl",
        "mlsh/update.py",
        "torch.stack(epoch_kl).mean() > cfg.target_kl:",
        "torch.stack(epoch_kl).mean() > cfg.target_kl * 1e30:",
        "target_kl never stops the epochs",
        PPO,
    ),
    Mutant(
        "ppo-nan-guard",
        "mlsh/update.py",
        "    if not torch.isfinite(loss):",
        "    if False:",
        "a NaN loss is stepped into the parameters",
        PPO,
    ),
    Mutant(
        "ppo-clip-range",
        "mlsh/ppo.py",
        "ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef)",
        "ratio.clamp(1.0 - clip_coef, 1.0 + 2 * clip_coef)",
        "the ratio's upper clip is doubled",
        ["tests/mlsh/test_ppo.py"],
    ),
    Mutant(
        "ppo-value-clip",
        "mlsh/ppo.py",
        "value_error = torch.max(value_error, (clipped - terms.returns) ** 2)",
        "value_error = torch.min(value_error, (clipped - terms.returns) ** 2)",
        "the clipped value loss takes the smaller error",
        ["tests/mlsh/test_ppo.py"],
    ),
    Mutant(
        "gae-lambda",
        "mlsh/gae.py",
        "carry_coef = np.float32(gamma * gae_lambda) * ~(term | trunc)",
        "carry_coef = np.float32(gamma) * ~(term | trunc)",
        "GAE ignores lambda",
        GAE,
    ),
    Mutant(
        "gae-truncation",
        "mlsh/gae.py",
        "np.where(trunc, boot, following)",
        "np.where(trunc, 0.0, following)",
        "truncation is treated as termination",
        GAE,
    ),
    Mutant(
        "gae-carry-episodes",
        "mlsh/gae.py",
        "* ~(term | trunc)  # GAE",
        "* ~term  # GAE",
        "GAE carries over a truncated episode's end",
        GAE,
    ),
    Mutant(
        "macro-gae-discount",
        "mlsh/gae.py",
        "delta = segment_reward + gamma * segment_next_value - v[t]",
        "delta = segment_reward + segment_next_value - v[t]",
        "the master's GAE does not discount",
        GAE,
    ),
    Mutant(
        "meta-joint-phase",
        "mlsh/schedule.py",
        "return self.position(slot, iteration) >= self.warmup_iters",
        "return self.position(slot, iteration) > self.warmup_iters",
        "the joint phase starts one iteration late",
        META,
    ),
    Mutant(
        "meta-optimizer-reset",
        "mlsh/meta.py",
        "        self.master_optimizer.reset_member(slot)\n",
        "        pass\n",
        "a master reset keeps its Adam state",
        META,
    ),
    Mutant(
        "trainer-wall-time",
        "mlsh/trainer.py",
        "due = minutes is not None and",
        "due = False and",
        "checkpoints never come by wall time",
        ["tests/mlsh/test_reliability_signals.py"],
    ),
    Mutant(
        "trainer-record-resume",
        "mlsh/trainer.py",
        "if is_main and (payload is None or changes):",
        "if is_main and payload is None:",
        "a resume's budget change is not recorded in config.yaml",
        TRAINER,
    ),
    Mutant(
        "trainer-keep-summary",
        "mlsh/trainer.py",
        "if done_this_call == 0 and summary_file.is_file():",
        "if False:",
        "a resume with nothing to do truncates summary.json",
        TRAINER,
    ),
    Mutant(
        "trainer-lock-check",
        "mlsh/trainer.py",
        "    if owner is not None and owner != os.getpid():\n        raise in_use_error(run_dir, owner)",
        "    if False:\n        raise in_use_error(run_dir, owner)",
        "a locked run dir is noticed only when the lock is taken (after the checks)",
        TRAINER,
    ),
    Mutant(
        "config-vf-coef",
        "mlsh/config.py",
        'p.vf_coef >= 0, f"{level}.vf_coef',
        'True, f"{level}.vf_coef',
        "a negative vf_coef is accepted",
        INPUTS,
    ),
    Mutant(
        "config-finite",
        "mlsh/config.py",
        "and not math.isfinite(value):",
        "and False:",
        "an infinite learning rate or entropy coefficient is accepted",
        INPUTS,
    ),
]


def _copy_repo(target: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()  # fmt: skip
    for name in files:
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def run_mutant(mutant: Mutant, copy: Path, timeout: float) -> tuple[str, float, str]:
    """``(outcome, seconds, first failure)`` of one mutant, applied to ``copy`` and reverted afterwards."""
    path = copy / mutant.path
    source = path.read_text()
    if source.count(mutant.original) != 1:
        return "NOT APPLIED", 0.0, f"'{mutant.original[:50]}' found {source.count(mutant.original)} times"
    path.write_text(source.replace(mutant.original, mutant.mutated))
    env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not learning",
             *mutant.tests],
            cwd=copy, env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        code, output = done.returncode, done.stdout
    except subprocess.TimeoutExpired:
        code, output = -1, "timed out"
    finally:
        path.write_text(source)
    seconds = time.perf_counter() - start
    failed = re.findall(r"^FAILED (\S+)", output, re.M)
    if code == 0:
        return "SURVIVED", seconds, ""
    if code == -1:
        return "killed", seconds, "timed out"
    return "killed", seconds, failed[0] if failed else output.strip().splitlines()[-1][:100]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", default=None, help="names of the mutants to run")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant's tests")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if args.only is None or m.name in args.only]
    if args.only is not None and len(chosen) != len(args.only):
        known = ", ".join(m.name for m in MUTANTS)
        parser.error(f"unknown mutant in {args.only}; choose from {known}")
    if args.list:
        for mutant in chosen:
            print(f"{mutant.name:<24} {mutant.path:<20} {mutant.what}")
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlsh_mutants_") as tmp:
        copy = Path(tmp)
        _copy_repo(copy)
        for mutant in chosen:
            outcome, seconds, detail = run_mutant(mutant, copy, args.timeout)
            rows.append({"name": mutant.name, "path": mutant.path, "what": mutant.what, "outcome": outcome,
                         "seconds": round(seconds, 1), "detail": detail})  # fmt: skip
            print(f"{mutant.name:<24} {outcome:<11} {seconds:6.1f}s  {mutant.what}  {detail}", flush=True)
    killed = sum(r["outcome"] == "killed" for r in rows)
    print(f"\nkilled {killed} of {len(rows)} mutants ({100 * killed / max(len(rows), 1):.0f}%)")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if killed == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
