"""The learner on CUDA against the CPU (docs: scaling and GPU); run with ``pytest -m gpu`` on a machine with a GPU.

Sampling draws from each device's own random stream, so collected data cannot match across devices;
these tests feed both devices the same data and compare what each computes from it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mlsh.distributed import DistContext
from mlsh.gae import compute_gae
from mlsh.meta import MetaLearner
from mlsh.policy import RunningMeanStd
from mlsh.rollout import RolloutBatch
from mlsh.trainer import train
from tests.conftest import CONTINUOUS_ID, RANDOM_END_ID, small_config

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

CUDA = torch.device("cuda")


def _to(batch: RolloutBatch, device: torch.device) -> RolloutBatch:
    return RolloutBatch(*[field.to(device) for field in batch])


def _assert_policies_close(cpu: MetaLearner, gpu: MetaLearner, what: str) -> None:
    gpu_state = gpu.policy.state_dict()
    for key, value in cpu.policy.state_dict().items():
        torch.testing.assert_close(gpu_state[key].cpu(), value, rtol=1e-4, atol=1e-5, msg=f"{what}: {key}")


@pytest.mark.parametrize(
    ("env_id", "sharded", "sub_minibatches"),
    [(RANDOM_END_ID, False, 1), (CONTINUOUS_ID, False, 1), (RANDOM_END_ID, True, 2)],
)
def test_updates_on_cuda_match_cpu(env_id: str, sharded: bool, sub_minibatches: int) -> None:
    # One-process minibatches shuffle with the device's random stream: one minibatch per epoch keeps the
    # sample sets equal. The slot-sharded update (multi-process runs) draws device-independent keys.
    cfg = small_config(env_id, num_slots=2, joint_iters=2)
    cfg.sub.num_minibatches = sub_minibatches
    cpu = MetaLearner(cfg, dist=DistContext() if sharded else None)
    cfg_gpu = small_config(env_id, num_slots=2, joint_iters=2)
    cfg_gpu.sub.num_minibatches = sub_minibatches
    cfg_gpu.device = "cuda"
    gpu = MetaLearner(cfg_gpu, dist=DistContext() if sharded else None)
    for iteration in range(4):
        cpu.begin_iteration()
        joint = [cpu.in_joint_phase(slot) for slot in range(cpu.num_local_slots)]
        batch, _ = cpu.collector.collect(cfg.train.rollout_len)
        if iteration == 0:  # the same starting point, masters reset and normaliser included
            gpu.policy.load_state_dict(cpu.policy.state_dict())
            gpu.master_optimizer.load_state_dict(cpu.master_optimizer.state_dict())
            gpu.sub_optimizer.load_state_dict(cpu.sub_optimizer.state_dict())
        else:  # the normaliser update of this rollout
            gpu.policy.obs_rms.load_state_dict(cpu.policy.obs_rms.state_dict())
        gpu.iteration = cpu.iteration
        cpu_metrics = cpu.update(batch, joint)
        gpu_metrics = gpu.update(_to(batch, CUDA), joint)
        cpu.iteration += 1
        _assert_policies_close(cpu, gpu, f"iteration {iteration}")
        for key in ("master/policy_loss", "master/value_loss", "sub/value_loss"):
            if key in cpu_metrics:
                assert gpu_metrics[key] == pytest.approx(cpu_metrics[key], rel=1e-3, abs=1e-5), key
    cpu.close()
    gpu.close()


def test_inference_gae_and_normaliser_on_cuda_match_cpu() -> None:
    cfg = small_config(CONTINUOUS_ID)
    learner = MetaLearner(cfg)
    policy = learner.policy
    generator = torch.Generator().manual_seed(0)
    raw = torch.randn(64, 2, generator=generator) * 3 + 1
    policy.obs_rms.update(raw)
    gpu_policy = MetaLearner(cfg).policy.to(CUDA)
    gpu_policy.load_state_dict(policy.state_dict())
    obs = policy.normalize(raw)
    torch.testing.assert_close(gpu_policy.normalize(raw.to(CUDA)).cpu(), obs)
    expanded = obs.unsqueeze(0).expand(cfg.mlsh.num_subpolicies, -1, -1)
    actions = torch.randn(cfg.mlsh.num_subpolicies, 64, 2, generator=generator)
    dist = policy.subpolicies.distribution(expanded)
    gpu_dist = gpu_policy.subpolicies.distribution(expanded.to(CUDA))
    for cpu_out, gpu_out in zip(
        policy.subpolicies.log_prob_entropy(dist, actions),
        gpu_policy.subpolicies.log_prob_entropy(gpu_dist, actions.to(CUDA)),
        strict=True,
    ):
        torch.testing.assert_close(gpu_out.cpu(), cpu_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        gpu_policy.subpolicies.value(expanded.to(CUDA)).cpu(), policy.subpolicies.value(expanded)
    )
    rms, gpu_rms = RunningMeanStd((2,)), RunningMeanStd((2,)).to(CUDA)
    rms.update(raw)
    gpu_rms.update(raw.to(CUDA))
    for key, value in rms.state_dict().items():
        torch.testing.assert_close(gpu_rms.state_dict()[key].cpu(), value)
    steps, envs = 20, 4
    rewards = torch.randn(steps, envs, generator=generator)
    values = torch.randn(steps, envs, generator=generator)
    terminated = torch.rand(steps, envs, generator=generator) < 0.1
    truncated = (torch.rand(steps, envs, generator=generator) < 0.1) & ~terminated
    boot, last = torch.randn(steps, envs, generator=generator), torch.randn(envs, generator=generator)
    args = (rewards, values, terminated, truncated, boot, last)
    for cpu_out, gpu_out in zip(
        compute_gae(*args, 0.99, 0.95), compute_gae(*[a.to(CUDA) for a in args], 0.99, 0.95), strict=True
    ):
        torch.testing.assert_close(gpu_out.cpu(), cpu_out, rtol=1e-5, atol=1e-5)
    learner.close()


def test_training_on_cuda_runs_and_resumes(tmp_path: Path) -> None:
    cfg = small_config(RANDOM_END_ID)
    cfg.device = "cuda"
    train(cfg, tmp_path, max_iterations=3)
    summary = train(cfg, tmp_path, resume=True, max_iterations=2)  # optimizer state back on the GPU
    assert summary["iteration"] == 5
    assert all(torch.isfinite(torch.tensor(v)) for k, v in summary["last_metrics"].items() if "explained" not in k)
