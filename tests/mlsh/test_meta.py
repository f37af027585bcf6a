"""The meta-loop: master resets, the warmup / joint schedule, determinism, epsilon-random choice."""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch

from mlsh.errors import ConfigError
from mlsh.meta import MetaLearner
from tests.conftest import GOAL_ID, RANDOM_END_ID, small_config


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_master_reset_keeps_subpolicies_and_other_slots_and_restarts_optimizer_state() -> None:
    learner = MetaLearner(small_config())
    learner.train_iteration()
    learner.train_iteration()
    subs = _params(learner.policy.subpolicies)
    masters = _params(learner.policy.masters)
    state_before = {
        id(p): {k: v.clone() for k, v in learner.master_optimizer.state[p].items()}
        for p in learner.policy.masters.parameters()
    }
    learner.reset_master(1)
    assert _same(subs, _params(learner.policy.subpolicies)), "sub-policies must be bit-identical"
    for before, after in zip(masters, _params(learner.policy.masters), strict=True):
        assert torch.equal(before[0], after[0]), "slot 0's master must be untouched"
        assert not torch.equal(before[1], after[1]), "slot 1's master must be re-initialised"
        if after.dim() == 2:  # biases [M, out] start at zero
            assert after[1].abs().sum() == 0
    for p in learner.policy.masters.parameters():
        state = learner.master_optimizer.state[p]
        old = state_before[id(p)]
        assert (
            state["step"][1] == 0 and state["exp_avg"][1].abs().sum() == 0 and state["exp_avg_sq"][1].abs().sum() == 0
        )
        assert state["step"][0] == old["step"][0] == 2 * learner.cfg.master.update_epochs
        assert torch.equal(state["exp_avg"][0], old["exp_avg"][0])


def test_fresh_master_is_uniform_over_subpolicies() -> None:
    learner = MetaLearner(small_config(num_subpolicies=4))
    learner.train_iteration()
    learner.reset_master(0)
    obs = torch.randn(2, 5, learner.policy.obs_dim)
    probs = learner.policy.masters.distribution(obs).probs[0]
    assert torch.allclose(probs, torch.full_like(probs, 0.25), atol=0.02)


@pytest.mark.parametrize("stagger", [False, True])
def test_schedule_warmup_then_joint_with_resets_and_new_tasks(stagger: bool) -> None:
    cfg = small_config(num_slots=3, warmup_iters=2, joint_iters=1, stagger=stagger)
    learner = MetaLearner(cfg)
    phases = []
    for it in range(6):
        phases.append([learner.cycle_position(s, it) for s in range(3)])
    if stagger:
        assert phases[0] == [0, 1, 2]
        for row in phases:  # exactly one slot is in its joint phase at every iteration
            assert sum(p >= 2 for p in row) == 1
    else:
        assert phases[:3] == [[0, 0, 0], [1, 1, 1], [2, 2, 2]]


def test_balanced_task_sampling_deals_each_task_once_per_round() -> None:
    cfg = small_config(num_slots=3, warmup_iters=1, joint_iters=1, stagger=True)
    cfg.mlsh.task_sampling = "balanced"
    learner = MetaLearner(cfg)
    drawn = [learner._new_task(slot % 3) for slot in range(40)]
    assert all(sorted(drawn[i : i + 2]) == [0, 1] for i in range(0, 40, 2))
    cfg.mlsh.task_sampling = "iid"
    iid = MetaLearner(cfg)
    iid_drawn = [iid._new_task(slot % 3) for slot in range(40)]
    assert not all(sorted(iid_drawn[i : i + 2]) == [0, 1] for i in range(0, 40, 2))


def test_balanced_task_sampling_resumes_mid_round() -> None:
    cfg = small_config(num_slots=3, warmup_iters=1, joint_iters=1, stagger=True)
    cfg.mlsh.task_sampling = "balanced"
    learner = MetaLearner(cfg)
    for _ in range(4):  # 7 tasks drawn: the fourth round has one left
        learner.train_iteration()
    state = copy.deepcopy(learner.state_dict())
    assert len(state["task_decks"]) == 1 and state["task_decks"][0]["remaining"]  # stopped mid-round
    straight = []
    for _ in range(4):
        learner.train_iteration()
        straight.append(list(learner.tasks))
    resumed = MetaLearner(cfg)
    resumed.load_state_dict(state)
    after = []
    for _ in range(4):
        resumed.train_iteration()
        after.append(list(resumed.tasks))
    assert after == straight


def _reinit_learner(share: float, window: int = 1, after: int = 0) -> MetaLearner:
    cfg = small_config(warmup_iters=2, joint_iters=1)  # 2 slots, cycles end at iterations 2, 5, ...
    cfg.mlsh.reinit_share, cfg.mlsh.reinit_window, cfg.mlsh.reinit_after = share, window, after
    return MetaLearner(cfg)


def test_reinit_resets_the_sub_policy_no_master_prefers_and_its_adam_state() -> None:
    learner = _reinit_learner(share=1.0)  # no master chooses one sub-policy for all its decisions
    for _ in range(2):
        assert learner.train_iteration()["meta/reinits"] == 0.0
    metrics = learner.train_iteration()  # iteration 2 ends both slots' cycles: 2 cycles >= the window of 1
    assert metrics["meta/reinits"] == 1.0 and learner.reinits == 1 and learner.cycle_shares == []
    subs, optimizer = learner.policy.subpolicies, learner.sub_optimizer
    states = [optimizer.state[p] for p in optimizer.param_groups[0]["params"]]
    steps = states[0]["step"].tolist()
    assert sorted(steps)[0] == 0.0 < sorted(steps)[1]  # one member's Adam state is fresh, the other's is not
    member = steps.index(0.0)
    assert all(not state["exp_avg"][member].any() and not state["exp_avg_sq"][member].any() for state in states)
    fresh = _reinit_learner(share=1.0).policy.subpolicies  # a fresh draw: zero biases, log-std 0, same shapes
    for layer, new_layer in zip(subs.actor.layers, fresh.actor.layers, strict=True):
        assert not layer.bias[member].any()
        assert torch.allclose(layer.weight[member].norm(), new_layer.weight[member].norm(), rtol=0.05)
    if subs.log_std is not None:
        assert not subs.log_std[member].any()


def test_reinit_is_off_with_shared_sub_policies_and_one_iteration_cycles(caplog: pytest.LogCaptureFixture) -> None:
    cfg = small_config(warmup_iters=2, joint_iters=1)
    cfg.mlsh.reinit_share, cfg.mlsh.reinit_window, cfg.sub.sharing = 1.0, 1, "trunk"
    with caplog.at_level("WARNING", logger="mlsh"):
        learner = MetaLearner(cfg)
    assert "mlsh.reinit_share=1.0 is off" in caplog.text and not learner.reinit
    assert all("meta/reinits" not in learner.train_iteration() for _ in range(3))
    cfg.sub.sharing, cfg.mlsh.warmup_iters = "separate", 0  # W + U = 1: a cycle ends before its master trains
    assert not MetaLearner(cfg).reinit


def test_a_reset_sub_policy_is_exempt_from_the_next_check() -> None:
    learner = _reinit_learner(share=1.0)  # every sub-policy is unserved at every check (each cycle end)
    reset = []
    for _ in range(6):
        if learner.train_iteration()["meta/reinits"] > len(reset):
            reset.append(learner.reinit_exempt)
    assert len(reset) == 2 and reset[0] != reset[1]  # iterations 2 and 5: the other one the second time


def test_reinit_leaves_served_sub_policies_and_waits_for_its_window() -> None:
    served = _reinit_learner(share=1e-9)  # any sub-policy chosen once serves
    assert all(served.train_iteration()["meta/reinits"] == 0.0 for _ in range(6))
    late = _reinit_learner(share=1.0, window=4, after=10**9)
    assert all(late.train_iteration()["meta/reinits"] == 0.0 for _ in range(3))
    assert len(late.cycle_shares) == 2  # recorded, not yet checked
    state = copy.deepcopy(late.state_dict())
    resumed = _reinit_learner(share=1.0, window=4, after=10**9)
    resumed.load_state_dict(state)
    assert resumed.cycle_shares == late.cycle_shares and resumed.reinits == 0


def test_balanced_task_sampling_needs_a_finite_task_family() -> None:
    cfg = small_config(RANDOM_END_ID)
    cfg.mlsh.task_sampling = "balanced"
    with pytest.raises(ConfigError, match=f"{RANDOM_END_ID} has no train_tasks; set mlsh.task_sampling=iid"):
        MetaLearner(cfg)


def test_auto_task_sampling_is_balanced_with_a_task_family_and_iid_without() -> None:
    cfg = small_config(num_slots=3, warmup_iters=1, joint_iters=1, stagger=True)
    draws = {}
    for sampling in ("balanced", "auto", "iid"):
        cfg.mlsh.task_sampling = sampling
        learner = MetaLearner(cfg)
        draws[sampling] = [learner._new_task(slot % 3) for slot in range(40)]
    assert draws["auto"] == draws["balanced"] != draws["iid"]
    cfg = small_config(RANDOM_END_ID)
    for sampling in ("auto", "iid"):
        cfg.mlsh.task_sampling = sampling
        learner = MetaLearner(cfg)
        draws[sampling] = [learner._new_task(0) for _ in range(10)]
    assert draws["auto"] == draws["iid"]


def test_subpolicies_change_only_in_joint_iterations() -> None:
    learner = MetaLearner(small_config(warmup_iters=2, joint_iters=1))
    reset_calls = []
    original = learner.reset_master
    learner.reset_master = lambda slot: (reset_calls.append((learner.iteration, slot)), original(slot))[1]
    for it in range(6):
        subs = _params(learner.policy.subpolicies)
        learner.train_iteration()
        changed = not _same(subs, _params(learner.policy.subpolicies))
        assert changed == (it % 3 == 2), f"iteration {it}"
    assert reset_calls == [(0, 0), (0, 1), (3, 0), (3, 1)]


def test_same_seed_gives_identical_training_and_other_seed_does_not() -> None:
    def run(seed: int) -> list[torch.Tensor]:
        cfg = small_config()
        cfg.seed = seed
        learner = MetaLearner(cfg)
        for _ in range(3):
            learner.train_iteration()
        return _params(learner.policy)

    assert _same(run(0), run(0))
    assert not _same(run(0), run(1))


def test_epsilon_master_samples_and_scores_the_mixture() -> None:
    learner = MetaLearner(small_config(master_epsilon=0.1, num_subpolicies=2))
    masters = learner.policy.masters
    obs = torch.randn(2, 7, learner.policy.obs_dim)
    with torch.no_grad():
        masters.actor.layers[-1].bias[:, 0] = 10.0  # master all but certain of sub-policy 0
    dist = masters.distribution(obs)
    expected = 0.9 * torch.softmax(masters.actor(obs), -1) + 0.05
    assert torch.allclose(dist.probs, expected, atol=1e-6)
    assert dist.log_prob(torch.ones(2, 7, dtype=torch.long)).exp().min() > 0.049
    draws = torch.distributions.Categorical(probs=dist.probs[0, 0]).sample((20000,))
    assert math.isclose(draws.float().mean().item(), 0.05, abs_tol=0.01)


def test_frozen_subpolicies_stay_bit_identical_through_joint_iterations() -> None:
    learner = MetaLearner(small_config(warmup_iters=0, joint_iters=2), train_subpolicies=False)
    subs = _params(learner.policy.subpolicies)
    masters = _params(learner.policy.masters)
    for _ in range(2):
        metrics = learner.train_iteration()
    assert _same(subs, _params(learner.policy.subpolicies))
    assert not _same(masters, _params(learner.policy.masters)), "masters still adapt"
    assert metrics["train/subpolicy_samples"] == 0


def test_warmup_iterations_can_be_zero() -> None:
    learner = MetaLearner(small_config(warmup_iters=0, joint_iters=2))
    subs = _params(learner.policy.subpolicies)
    learner.train_iteration()
    assert not _same(subs, _params(learner.policy.subpolicies))


@pytest.mark.parametrize("per_slot", [False, True])
def test_sub_advantages_are_normalised_per_slot_when_asked(per_slot: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlsh.update as update_module

    calls: list[tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]] = []
    original = update_module.normalize_advantages

    def recording(advantages: torch.Tensor, group_ids: torch.Tensor, num_groups: int) -> torch.Tensor:
        out = original(advantages, group_ids, num_groups)
        calls.append((group_ids.clone(), num_groups, advantages.clone(), out))
        return out

    monkeypatch.setattr(update_module, "normalize_advantages", recording)
    num_slots, num_subs = 3, 2
    cfg = small_config(
        num_slots=num_slots, num_subpolicies=num_subs, warmup_iters=0, joint_iters=1, sub_adv_norm_per_slot=per_slot
    )
    learner = MetaLearner(cfg)
    learner.train_iteration()
    assert len(calls) == 2  # the masters', then the sub-policies'
    ids, count, raw, normalised = calls[1]
    assert count == (num_subs * num_slots if per_slot else num_subs)
    cells = torch.unique(ids)
    samples_per_slot = cfg.train.envs_per_slot * cfg.train.rollout_len
    assert ids.numel() == num_slots * samples_per_slot
    if per_slot:
        # Samples come slot after slot ([T, envs] flattened by env within a step): cell = sub * M + slot.
        slot_of_sample = (torch.arange(ids.numel()) % (num_slots * cfg.train.envs_per_slot)) // cfg.train.envs_per_slot
        assert torch.equal(ids % num_slots, slot_of_sample)
    for cell in cells:
        values = normalised[ids == cell]
        if values.numel() > 1:
            assert abs(float(values.mean())) < 1e-5
            assert abs(float(values.std(unbiased=False)) - 1.0) < 1e-3
    if not per_slot:  # per sub-policy only: some (sub, slot) cell keeps a non-zero mean
        slot_ids = (torch.arange(ids.numel()) % (num_slots * cfg.train.envs_per_slot)) // cfg.train.envs_per_slot
        means = [float(normalised[(ids == s) & (slot_ids == m)].mean()) for s in cells for m in range(num_slots)]
        assert max(abs(x) for x in means if x == x) > 1e-3


@pytest.mark.parametrize("threads", [None, 0, 2])
def test_updates_run_on_update_threads_and_the_rollout_count_comes_back(
    threads: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = small_config()
    cfg.train.update_threads = threads
    learner = MetaLearner(cfg)
    seen: list[int] = []
    update = learner.update

    def counting_update(*args: object) -> dict[str, float]:
        seen.append(torch.get_num_threads())
        return update(*args)

    monkeypatch.setattr(learner, "update", counting_update)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        learner.train_iteration()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    cores = len(os.sched_getaffinity(0))
    assert seen == [{None: 1, 0: cores, 2: 2}[threads]]


def test_integer_task_families_get_per_task_usage_and_joint_returns() -> None:
    cfg = small_config()  # MovementBandits: the task is the paying goal, 0 or 1
    learner = MetaLearner(cfg, fixed_tasks=[0, 1])
    metrics: dict[str, float] = {}
    for _ in range(cfg.mlsh.warmup_iters + 2):  # into the joint iterations, where the returns are logged
        metrics.update(learner.train_iteration())
    for task in (0, 1):
        usage = [metrics[f"meta/sub_usage_task{task}_{k}"] for k in range(cfg.mlsh.num_subpolicies)]
        assert sum(usage) == pytest.approx(1.0)
        assert 0.0 <= metrics[f"meta/ep_rew_joint_task{task}"] <= 50.0  # reward <= 1 per step, T = 50
    overall = [metrics[f"meta/sub_usage_{k}"] for k in range(cfg.mlsh.num_subpolicies)]
    per_task_mean = [(metrics[f"meta/sub_usage_task0_{k}"] + metrics[f"meta/sub_usage_task1_{k}"]) / 2 for k in (0, 1)]
    assert per_task_mean == pytest.approx(overall)  # one slot per task, as many decisions in each


def test_tasks_that_are_not_a_few_integers_get_no_per_task_scalars() -> None:
    learner = MetaLearner(small_config("mlsh/FourRooms-v0"))  # the task is a goal cell
    metrics = learner.train_iteration()
    assert "meta/sub_usage_0" in metrics
    assert not [key for key in metrics if "_task" in key]


def test_the_sub_policies_learning_rate_ramps_up_linearly_then_stays() -> None:
    cfg = small_config()
    cfg.sub.lr_ramp_steps = 2 * cfg.steps_per_iteration
    cfg.sub.lr_ramp_start = 0.25
    learner = MetaLearner(cfg)
    rates = []
    for _ in range(4):
        rates.append(learner.train_iteration()["train/learning_rate"])
    lr = cfg.sub.lr
    assert rates == pytest.approx([0.25 * lr, 0.625 * lr, lr, lr])
    assert learner.sub_optimizer.param_groups[0]["lr"] == pytest.approx(lr)
    cfg = small_config()  # no ramp: the rate is sub.lr from the start
    assert MetaLearner(cfg).train_iteration()["train/learning_rate"] == cfg.sub.lr


def test_the_sub_policies_learning_rate_falls_linearly_to_its_end_share_after_the_ramp() -> None:
    cfg = small_config()
    cfg.sub.lr_ramp_steps = cfg.steps_per_iteration
    cfg.sub.lr_ramp_start = 0.5
    cfg.sub.lr_end = 0.2
    cfg.train.total_timesteps = 5 * cfg.steps_per_iteration
    learner = MetaLearner(cfg)
    rates = [learner.train_iteration()["train/learning_rate"] for _ in range(5)]
    lr = cfg.sub.lr
    # ramp at iteration 0; from 1 iteration to 5 the fall of 0.8 * lr takes 4 iterations
    assert rates == pytest.approx([0.5 * lr, lr, 0.8 * lr, 0.6 * lr, 0.4 * lr])


def test_success_rate_is_the_share_of_episodes_that_reached_the_goal() -> None:
    # GoalCountEnv (tests/conftest.py): 5 four-step episodes per env in the first 20-step rollout; task 0 never
    # reaches, task 1 in its 2nd and 4th episodes, task 2 in every one. Every slot ends as many episodes.
    learner = MetaLearner(small_config(GOAL_ID, num_slots=4))
    learner._new_task = lambda slot: [0, 1, 2, 2][slot]
    metrics = learner.train_iteration()
    assert learner.tasks == [0, 1, 2, 2]
    assert metrics["rollout/success_rate"] == pytest.approx((0.0 + 0.4 + 1.0 + 1.0) / 4)
    assert "rollout/success_rate" not in MetaLearner(small_config()).train_iteration()  # bandits say nothing
