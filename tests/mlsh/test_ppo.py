"""Tests for mlsh/ppo.py: the masked, member-batched PPO loss and the grouping helpers."""

from __future__ import annotations

import math

import pytest
import torch

from mlsh.ppo import PPOTerms, grouped_indices, masked_mean, normalize_advantages, ppo_loss

CLIP = 0.2


def _hand_terms(**overrides: torch.Tensor) -> PPOTerms:
    """One member, three samples: ratios 1.5 (clipped), 1.1 (inside), 0.5 (clipped, pessimistic)."""
    fields = {
        "new_logprob": torch.log(torch.tensor([[1.5, 1.1, 0.5]], dtype=torch.float64)),
        "old_logprob": torch.zeros(1, 3, dtype=torch.float64),
        "advantages": torch.tensor([[2.0, -1.0, -1.0]], dtype=torch.float64),
        "new_value": torch.tensor([[1.0, 2.0, 0.0]], dtype=torch.float64),
        "old_value": torch.tensor([[0.0, 2.0, 0.5]], dtype=torch.float64),
        "returns": torch.tensor([[1.5, 1.0, 0.0]], dtype=torch.float64),
        "entropy": torch.tensor([[0.3, 0.6, 0.9]], dtype=torch.float64),
        "mask": torch.ones(1, 3, dtype=torch.bool),
    }
    fields.update(overrides)
    return PPOTerms(**fields)


def test_ppo_loss_hand_computed_policy_terms() -> None:
    _, metrics = ppo_loss(_hand_terms(), clip_coef=CLIP, vf_coef=0.5, ent_coef=0.0, clip_vloss=False)
    # Surrogates: -min(2*1.5, 2*1.2) = -2.4; -min(-1.1, -1.1) = 1.1; -min(-0.5, -0.8) = 0.8.
    assert metrics["policy_loss"].shape == (1,)
    assert metrics["policy_loss"].item() == pytest.approx((-2.4 + 1.1 + 0.8) / 3, abs=1e-9)
    assert metrics["clipfrac"].item() == pytest.approx(2 / 3, abs=1e-6)
    expected_kl = sum((r - 1) - math.log(r) for r in (1.5, 1.1, 0.5)) / 3
    assert metrics["approx_kl"].item() == pytest.approx(expected_kl, abs=1e-9)
    assert metrics["entropy"].item() == pytest.approx(0.6, abs=1e-9)


def test_ppo_loss_clipped_ratio_has_no_policy_gradient() -> None:
    terms = _hand_terms(new_logprob=torch.log(torch.tensor([[1.5, 1.1, 0.5]], dtype=torch.float64)).requires_grad_())
    loss, _ = ppo_loss(terms, clip_coef=CLIP, vf_coef=0.5, ent_coef=0.0, clip_vloss=False)
    loss.backward()
    # d/dlogp of -A * ratio / N = -A * ratio / 3 inside the clip range, 0 where the clipped term is the min.
    expected = torch.tensor([[0.0, 1.1 / 3, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(terms.new_logprob.grad, expected, atol=1e-9, rtol=0)


@pytest.mark.parametrize(
    ("clip_vloss", "vf_clip_coef", "expected_value_loss"),
    [
        (False, None, 0.5 * (0.25 + 1.0 + 0.0) / 3),
        # Clipped values (old + clamp(new - old, +-0.2)): 0.2, 2.0, 0.3 -> errors 1.69, 1.0, 0.09.
        (True, None, 0.5 * (1.69 + 1.0 + 0.09) / 3),
        # Clip range 0.6: clipped values 0.6, 2.0, 0.0 -> errors 0.81, 1.0, 0.0.
        (True, 0.6, 0.5 * (0.81 + 1.0 + 0.0) / 3),
        # A wide clip range is the unclipped loss.
        (True, 10.0, 0.5 * (0.25 + 1.0 + 0.0) / 3),
    ],
)
def test_ppo_loss_value_clipping(clip_vloss: bool, vf_clip_coef: float | None, expected_value_loss: float) -> None:
    vf_coef, ent_coef = 0.5, 0.01
    loss, metrics = ppo_loss(
        _hand_terms(),
        clip_coef=CLIP,
        vf_coef=vf_coef,
        ent_coef=ent_coef,
        clip_vloss=clip_vloss,
        vf_clip_coef=vf_clip_coef,
    )
    assert metrics["value_loss"].item() == pytest.approx(expected_value_loss, abs=1e-9)
    expected_loss = (-2.4 + 1.1 + 0.8) / 3 + vf_coef * expected_value_loss - ent_coef * 0.6
    assert loss.item() == pytest.approx(expected_loss, abs=1e-9)


def test_ppo_loss_entropy_bonus_lowers_the_loss() -> None:
    entropy = torch.tensor([[0.3, 0.6, 0.9]], dtype=torch.float64, requires_grad=True)
    terms = _hand_terms(entropy=entropy)
    without, _ = ppo_loss(terms, clip_coef=CLIP, vf_coef=0.5, ent_coef=0.0, clip_vloss=False)
    with_bonus, _ = ppo_loss(terms, clip_coef=CLIP, vf_coef=0.5, ent_coef=0.1, clip_vloss=False)
    assert (with_bonus - without).item() == pytest.approx(-0.1 * 0.6, abs=1e-9)
    with_bonus.backward()
    torch.testing.assert_close(entropy.grad, torch.full((1, 3), -0.1 / 3, dtype=torch.float64))


def _random_terms(gen: torch.Generator, mask: torch.Tensor) -> PPOTerms:
    shape = mask.shape

    def rand() -> torch.Tensor:
        return torch.randn(shape, generator=gen, dtype=torch.float64)

    return PPOTerms(
        new_logprob=(0.3 * rand()).requires_grad_(),
        old_logprob=0.3 * rand(),
        advantages=rand(),
        new_value=rand().requires_grad_(),
        old_value=rand(),
        returns=rand(),
        entropy=rand().abs().requires_grad_(),
        mask=mask,
    )


LOSS_KWARGS = {"clip_coef": CLIP, "vf_coef": 0.5, "ent_coef": 0.01, "clip_vloss": True}


def test_ppo_loss_ignores_padding() -> None:
    gen = torch.Generator().manual_seed(0)
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])
    terms = _random_terms(gen, mask)
    loss, metrics = ppo_loss(terms, **LOSS_KWARGS)
    # Different (finite) values on padding.
    noisy = _random_terms(gen, mask)
    replaced = PPOTerms(
        *(
            torch.where(mask, original.detach(), 5.0 * other.detach()) if original.dtype != torch.bool else original
            for original, other in zip(terms, noisy)
        )
    )
    other_loss, other_metrics = ppo_loss(replaced, **LOSS_KWARGS)
    assert other_loss.item() == pytest.approx(loss.item(), abs=1e-12)
    for key, value in metrics.items():
        torch.testing.assert_close(other_metrics[key], value, atol=1e-12, rtol=0)
    loss.backward()
    for tensor in (terms.new_logprob, terms.new_value, terms.entropy):
        assert torch.all(tensor.grad[~mask] == 0)
        assert tensor.grad[mask].abs().sum() > 0


def test_ppo_loss_is_sum_of_per_member_means() -> None:
    gen = torch.Generator().manual_seed(1)
    mask = torch.tensor([[True, True, False, False, False, False], [True] * 6])
    terms = _random_terms(gen, mask)
    loss, metrics = ppo_loss(terms, **LOSS_KWARGS)
    member_losses = []
    for member, count in ((0, 2), (1, 6)):
        alone = PPOTerms(*(t.detach()[member : member + 1, :count] for t in terms))
        member_loss, member_metrics = ppo_loss(alone, **LOSS_KWARGS)
        member_losses.append(member_loss.item())
        for key, value in member_metrics.items():
            assert metrics[key][member].item() == pytest.approx(value.item(), abs=1e-12)
    assert loss.item() == pytest.approx(sum(member_losses), abs=1e-12)

    # Member 0's gradient does not depend on how many samples member 1 has.
    loss.backward()
    grad_full = terms.new_logprob.grad[0].clone()
    fewer = PPOTerms(*(t.detach().clone() for t in terms[:-1]), mask=mask.clone())
    fewer.mask[1, 1:] = False
    fewer.new_logprob.requires_grad_()
    ppo_loss(fewer, **LOSS_KWARGS)[0].backward()
    torch.testing.assert_close(fewer.new_logprob.grad[0], grad_full, atol=1e-12, rtol=0)
    assert grad_full[:2].abs().sum() > 0


def test_masked_mean_per_member_and_empty_member() -> None:
    x = torch.tensor([[1.0, 2.0, 100.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    mask = torch.tensor([[True, True, False], [True, True, True], [False, False, False]])
    torch.testing.assert_close(masked_mean(x, mask), torch.tensor([1.5, 5.0, 0.0]))


def test_normalize_advantages_per_group() -> None:
    torch.manual_seed(0)
    num_groups = 4
    group_ids = torch.randint(0, num_groups - 1, (200,))  # group 3 stays empty
    advantages = torch.randn(200, dtype=torch.float64) * 5 + group_ids.to(torch.float64) * 10
    normalized = normalize_advantages(advantages, group_ids, num_groups)
    assert normalized.shape == (200,)
    for group in range(num_groups - 1):
        values = normalized[group_ids == group]
        assert values.mean().item() == pytest.approx(0.0, abs=1e-9)
        assert values.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-6)
    # Per group, not global: normalising one group alone gives the same values.
    alone = normalize_advantages(
        advantages[group_ids == 1], torch.zeros(int((group_ids == 1).sum()), dtype=torch.long), 1
    )
    torch.testing.assert_close(normalized[group_ids == 1], alone)


def _check_layout(index: torch.Tensor, mask: torch.Tensor, group_ids: torch.Tensor, num_groups: int) -> None:
    counts = torch.bincount(group_ids, minlength=num_groups)
    assert index.shape == mask.shape == (num_groups, max(int(counts.max()), 1))
    assert torch.equal(mask.sum(1), counts)
    # Valid entries form a prefix of each row; padding points at sample 0.
    assert torch.equal(mask, torch.arange(mask.shape[1])[None] < counts[:, None])
    assert torch.all(index[~mask] == 0)
    assert torch.equal(torch.sort(index[mask]).values, torch.arange(group_ids.shape[0]))
    for group in range(num_groups):
        assert torch.all(group_ids[index[group][mask[group]]] == group)


def test_grouped_indices_layout_without_shuffle_keeps_sample_order() -> None:
    torch.manual_seed(0)
    group_ids = torch.tensor([2, 0, 2, 2, 0, 3, 2])  # group 1 empty
    index, mask = grouped_indices(group_ids, 4, shuffle=False)
    _check_layout(index, mask, group_ids, 4)
    expected = torch.tensor([[1, 4, 0, 0], [0, 0, 0, 0], [0, 2, 3, 6], [5, 0, 0, 0]])
    assert torch.equal(index, expected)


def test_grouped_indices_shuffle_changes_order_not_membership() -> None:
    torch.manual_seed(0)
    num_groups = 5
    group_ids = torch.randint(0, num_groups, (300,))
    ordered, ordered_mask = grouped_indices(group_ids, num_groups, shuffle=False)
    shuffled, shuffled_mask = grouped_indices(group_ids, num_groups, shuffle=True)
    _check_layout(ordered, ordered_mask, group_ids, num_groups)
    _check_layout(shuffled, shuffled_mask, group_ids, num_groups)
    assert torch.equal(ordered_mask, shuffled_mask)
    assert not torch.equal(ordered, shuffled)
    for group in range(num_groups):
        row = shuffled[group][shuffled_mask[group]]
        assert not torch.equal(row, ordered[group][ordered_mask[group]])
        assert torch.equal(torch.sort(row).values, ordered[group][ordered_mask[group]])
    # Seeded: the same torch seed gives the same layout.
    torch.manual_seed(0)
    torch.randint(0, num_groups, (300,))
    assert torch.equal(grouped_indices(group_ids, num_groups, shuffle=True)[0], shuffled)
