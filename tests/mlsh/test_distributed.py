"""Multi-process training (docs: scaling): two gloo processes on localhost against one process with every slot."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from agents import MLSHAgent
from mlsh.checkpoint import load_checkpoint
from mlsh.distributed import DistContext, merge_rms_batches
from mlsh.errors import ConfigError
from mlsh.meta import MetaLearner
from mlsh.policy import RunningMeanStd
from mlsh.rollout import RolloutBatch
from mlsh.trainer import train
from tests.conftest import RANDOM_END_ID, free_port, small_config

WORLD = 2
ITERATIONS = 4


def _config() -> Any:
    # 4 slots, staggered over a 3-iteration cycle (offsets 0, 0, 1, 2): at iteration 0 only global slot 3
    # (rank 1) is in its joint phase, so rank 0 must take part in a sub-policy update without data.
    cfg = small_config(RANDOM_END_ID, num_slots=4, stagger=True)
    cfg.sub.num_minibatches = 2
    cfg.train.total_timesteps = ITERATIONS * cfg.steps_per_iteration
    return cfg


def _sub_state(learner: MetaLearner) -> dict[str, torch.Tensor]:
    state = learner.policy.state_dict()
    return {k: v.clone() for k, v in state.items() if not k.startswith("masters.")}


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        context = DistContext.current()
        assert context is not None
        cfg = _config()
        learner = MetaLearner(cfg, dist=context)
        record: dict[str, Any] = {"iterations": []}
        original_update = learner.update

        def recording_update(batch: RolloutBatch, joint: list[bool]) -> dict[str, float]:
            if learner.iteration == 0:
                record["tasks"] = list(learner.tasks)
            before = {
                "iteration": learner.iteration,
                "batch": batch,
                "joint": list(joint),
                "sub": _sub_state(learner),
                "sub_optimizer": copy.deepcopy(learner.sub_optimizer.state_dict()),  # live tensors otherwise
            }
            metrics = original_update(batch, joint)
            record["iterations"].append({**before, "after": _sub_state(learner), "metrics": metrics})
            return metrics

        learner.update = recording_update  # type: ignore[method-assign]
        record["train_metrics"] = [learner.train_iteration() for _ in range(ITERATIONS)]
        learner.close()

        # The normaliser merge on its own: each rank a batch of its own size.
        rms = RunningMeanStd((3,))
        batch = torch.randn(5 + 3 * rank, 3, generator=torch.Generator().manual_seed(rank)) * (rank + 1) + rank
        merge_rms_batches(rms, [batch], context)
        record["rms"] = {k: v.clone() for k, v in rms.state_dict().items()}

        # Resume: 2 iterations, save, resume for 2 more, against 4 straight.
        run = Path(out_dir)
        train(cfg, run / "straight", max_iterations=ITERATIONS)
        train(cfg, run / "resumed", max_iterations=2)
        train(cfg, run / "resumed", resume=True)
        torch.save(record, run / f"rank{rank}.pt")
        dist.barrier()  # no rank tears its gloo connections down while another still uses them
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("dist")
    mp.start_processes(_worker, args=(free_port(), str(out)), nprocs=WORLD, join=True, start_method="spawn")
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_subpolicies_stay_bit_identical_across_ranks(two_ranks: tuple[Path, list[dict[str, Any]]]) -> None:
    _, records = two_ranks
    updated = 0
    for it0, it1 in zip(records[0]["iterations"], records[1]["iterations"], strict=True):
        for key, value in it0["after"].items():
            assert torch.equal(value, it1["after"][key]), (it0["iteration"], key)
        updated += int(any(not torch.equal(v, it0["sub"][k]) for k, v in it0["after"].items()))
    assert updated >= 3  # the sub-policies did change (every iteration has a joint slot somewhere)
    # Rank 0 had no joint slot at iteration 0 and still took the same step as rank 1.
    assert not any(records[0]["iterations"][0]["joint"]) and any(records[1]["iterations"][0]["joint"])


def test_logged_episode_statistics_cover_every_rank(two_ranks: tuple[Path, list[dict[str, Any]]]) -> None:
    _, records = two_ranks
    cfg = _config()
    per_slot = cfg.train.envs_per_slot * cfg.train.rollout_len
    for step in range(ITERATIONS):
        m0, m1 = (r["train_metrics"][step] for r in records)
        joint_slots = sum(sum(r["iterations"][step]["joint"]) for r in records)
        assert m0["train/subpolicy_samples"] == m1["train/subpolicy_samples"] == joint_slots * per_slot
        assert m0["rollout/ep_rew_mean"] == m1["rollout/ep_rew_mean"]


def _concat(batches: list[RolloutBatch]) -> RolloutBatch:
    return RolloutBatch(*[torch.cat(fields, dim=1 if fields[0].dim() >= 2 else 0) for fields in zip(*batches)])


def test_two_ranks_equal_one_process_with_every_slot(two_ranks: tuple[Path, list[dict[str, Any]]]) -> None:
    _, records = two_ranks
    cfg = _config()
    reference = MetaLearner(cfg, dist=DistContext())  # one process, all 4 slots, no process group
    reference.begin_iteration()
    # Global slot s has the same task and env seeds whichever process owns it.
    assert reference.tasks == records[0]["tasks"] + records[1]["tasks"]
    first_obs = reference.policy.normalize(torch.as_tensor(reference.collector.obs))
    assert torch.equal(first_obs, torch.cat([r["iterations"][0]["batch"].obs[0] for r in records]))
    for step in range(ITERATIONS):
        it = [r["iterations"][step] for r in records]
        reference.policy.load_state_dict({**reference.policy.state_dict(), **it[0]["sub"]})
        reference.sub_optimizer.load_state_dict(it[0]["sub_optimizer"])
        reference.iteration = it[0]["iteration"]
        metrics = reference.update(_concat([i["batch"] for i in it]), it[0]["joint"] + it[1]["joint"])
        after = _sub_state(reference)
        for key, value in it[0]["after"].items():
            torch.testing.assert_close(after[key], value, rtol=1e-5, atol=1e-6, msg=f"iteration {step}, {key}")
        for key in ("sub/policy_loss", "sub/value_loss", "sub/approx_kl", "sub/gradient_steps"):
            assert metrics[key] == pytest.approx(it[0]["metrics"][key], rel=1e-4, abs=1e-6), key
    reference.close()


def test_normaliser_merge_equals_one_batch(two_ranks: tuple[Path, list[dict[str, Any]]]) -> None:
    _, records = two_ranks
    rms = RunningMeanStd((3,))
    parts = [torch.randn(5 + 3 * r, 3, generator=torch.Generator().manual_seed(r)) * (r + 1) + r for r in range(WORLD)]
    rms.update(torch.cat(parts))
    for record in records:
        for key, value in rms.state_dict().items():
            torch.testing.assert_close(record["rms"][key], value, rtol=1e-12, atol=1e-12)
    assert all(torch.equal(records[0]["rms"][k], records[1]["rms"][k]) for k in rms.state_dict())


def test_resume_continues_exactly(two_ranks: tuple[Path, list[dict[str, Any]]]) -> None:
    out, _ = two_ranks
    straight, resumed = load_checkpoint(out / "straight"), load_checkpoint(out / "resumed")
    assert straight["world_size"] == resumed["world_size"] == WORLD
    assert resumed["learner"]["iteration"] == ITERATIONS
    for rank in range(WORLD):
        a, b = straight["rank_learners"][rank]["policy"], resumed["rank_learners"][rank]["policy"]
        assert all(torch.equal(a[k], b[k]) for k in a), rank
    # The checkpoint's policy holds every global slot's master, as a one-process run of 4 slots would.
    masters = resumed["learner"]["policy"]["masters.actor.layers.0.weight"]
    assert masters.shape[0] == 4
    assert torch.equal(masters[2:], resumed["rank_learners"][1]["policy"]["masters.actor.layers.0.weight"])
    assert resumed["learner"]["tasks"] == resumed["rank_learners"][0]["tasks"] + resumed["rank_learners"][1]["tasks"]
    agent = MLSHAgent.load(out / "resumed", slot=3)  # agents read it like a one-process checkpoint of 4 slots
    assert agent.master_task == resumed["rank_learners"][1]["tasks"][1]


def test_slots_must_split_evenly() -> None:
    with pytest.raises(ConfigError, match="multiple of the number of processes"):
        DistContext(rank=0, world_size=3).local_slots(4)


def test_torchrun_command_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    common = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}"]
    args = ["-m", "mlsh.train", "mlsh.num_slots=2", "train.envs_per_slot=1", "train.rollout_len=10"]
    args += ["train.total_timesteps=40", "train.progress=false", "device=cpu", f"hydra.run.dir={run_dir}"]
    first = subprocess.run([*common, *args], cwd=tmp_path, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("finished at iteration 2/2") == 1  # rank 0 alone reports
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the other rank wrote nothing
    assert load_checkpoint(run_dir)["world_size"] == 2


@pytest.mark.parametrize("per_shard", [False, True])
def test_sharded_update_normalises_per_member_or_per_member_and_shard(
    per_shard: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gymnasium as gym

    import mlsh.update as update_module
    from mlsh.config import PPOConfig
    from mlsh.networks import MemberAdam
    from mlsh.policy import SubPolicies

    seen: list[tuple[torch.Tensor, int, torch.Tensor]] = []
    original = update_module.normalize_advantages

    def recording(advantages: torch.Tensor, ids: torch.Tensor, count: int, **kwargs: Any) -> torch.Tensor:
        assert kwargs.get("reduce") is not None  # statistics summed over processes
        out = original(advantages, ids, count, **kwargs)
        seen.append((ids.clone(), count, out))
        return out

    monkeypatch.setattr(update_module, "normalize_advantages", recording)
    torch.manual_seed(0)
    groups, shards, n = 2, 3, 60
    subs = SubPolicies(groups, 3, gym.spaces.Discrete(2), [8])
    group_ids, shard_ids = torch.arange(n) % groups, (torch.arange(n) // groups) % shards
    # Shard s's advantages sit around 10 * s: per-member normalisation keeps the shards apart.
    advantages = torch.randn(n) + 10.0 * shard_ids
    data = update_module.LevelData(
        obs=torch.randn(n, 3),
        actions=torch.randint(0, 2, (n,)),
        old_logprob=torch.full((n,), -0.69),
        old_values=torch.zeros(n),
        advantages=advantages,
        returns=torch.randn(n),
        group_ids=group_ids,
    )

    def evaluate(obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dist_ = subs.distribution(obs)
        return (*subs.log_prob_entropy(dist_, actions), subs.value(obs))

    update_module.sharded_ppo_update(
        data, shard_ids, torch.arange(n), 0, groups, shards, evaluate, MemberAdam(subs.parameters(), lr=1e-3),
        PPOConfig(update_epochs=1, num_minibatches=2), "sub", lambda t: t, norm_per_shard=per_shard,
    )  # fmt: skip
    ((ids, count, normalised),) = seen
    assert count == (groups * shards if per_shard else groups)
    cell_means = torch.stack(
        [normalised[(group_ids == g) & (shard_ids == s)].mean() for g in range(groups) for s in range(shards)]
    )
    if per_shard:
        assert torch.equal(ids, group_ids * shards + shard_ids)
        assert float(cell_means.abs().max()) < 1e-5
    else:
        assert torch.equal(ids, group_ids)
        assert float(cell_means.abs().max()) > 1.0
