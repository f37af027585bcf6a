"""Tests for mlsh/networks.py: batched MLPs, per-member gradient clipping and the per-member Adam."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mlsh.networks import BatchedLinear, BatchedMLP, MemberAdam, clip_grad_norm_per_member

NUM_MEMBERS = 3
IN_FEATURES = 5
HIDDEN = (8, 6)
OUT_FEATURES = 4


def _mlp(seed: int = 0) -> BatchedMLP:
    torch.manual_seed(seed)
    return BatchedMLP(NUM_MEMBERS, IN_FEATURES, HIDDEN, OUT_FEATURES, out_gain=0.01)


def _member_sequential(mlp: BatchedMLP, member: int) -> nn.Sequential:
    """An ordinary nn.Linear/Tanh stack holding copies of member ``member``'s weights."""
    modules: list[nn.Module] = []
    for i, layer in enumerate(mlp.layers):
        in_features, out_features = layer.weight.shape[1:]
        linear = nn.Linear(in_features, out_features)
        with torch.no_grad():
            linear.weight.copy_(layer.weight[member].T)
            linear.bias.copy_(layer.bias[member])
        modules.append(linear)
        if i < len(mlp.layers) - 1:
            modules.append(nn.Tanh())
    return nn.Sequential(*modules)


def test_batched_mlp_matches_per_member_sequential() -> None:
    mlp = _mlp()
    # Perturb biases so the zero-bias init does not hide a bias bug.
    with torch.no_grad():
        for layer in mlp.layers:
            layer.bias.normal_()
    x = torch.randn(NUM_MEMBERS, 7, IN_FEATURES)
    out = mlp(x)
    assert out.shape == (NUM_MEMBERS, 7, OUT_FEATURES)
    for member in range(NUM_MEMBERS):
        expected = _member_sequential(mlp, member)(x[member])
        torch.testing.assert_close(out[member], expected, atol=1e-6, rtol=1e-5)


def test_batched_linear_shapes() -> None:
    torch.manual_seed(0)
    layer = BatchedLinear(2, 3, 5, gain=1.0)
    assert layer.weight.shape == (2, 3, 5)
    assert layer.bias.shape == (2, 5)
    assert torch.all(layer.bias == 0)
    assert layer(torch.randn(2, 11, 3)).shape == (2, 11, 5)


def test_gradients_stay_within_their_member() -> None:
    mlp = _mlp()
    x = torch.randn(NUM_MEMBERS, 4, IN_FEATURES)
    mlp(x)[1].pow(2).sum().backward()
    for param in mlp.parameters():
        assert param.grad is not None
        assert torch.all(param.grad[0] == 0)
        assert torch.all(param.grad[2] == 0)
        assert param.grad[1].abs().sum() > 0


@pytest.mark.parametrize(("in_features", "out_features", "gain"), [(5, 8, math.sqrt(2.0)), (8, 3, 0.01), (6, 6, 1.0)])
def test_reset_member_changes_only_its_slice_and_is_orthogonal(
    in_features: int, out_features: int, gain: float
) -> None:
    torch.manual_seed(0)
    layer = BatchedLinear(NUM_MEMBERS, in_features, out_features, gain=gain)
    with torch.no_grad():
        layer.bias.normal_()
    weight_before, bias_before = layer.weight.detach().clone(), layer.bias.detach().clone()
    layer.reset_member(1)
    for member in (0, 2):
        assert torch.equal(layer.weight[member], weight_before[member])
        assert torch.equal(layer.bias[member], bias_before[member])
    assert not torch.equal(layer.weight[1], weight_before[1])
    assert torch.all(layer.bias[1] == 0)
    weight = layer.weight[1].detach()  # [in, out]
    # Orthonormal along the smaller dimension, scaled by the gain.
    gram = weight.T @ weight if out_features <= in_features else weight @ weight.T
    torch.testing.assert_close(
        gram, gain**2 * torch.eye(min(in_features, out_features)), atol=1e-5 * gain**2 + 1e-7, rtol=0
    )


def test_batched_mlp_reset_member_resets_every_layer() -> None:
    mlp = _mlp()
    before = [p.detach().clone() for p in mlp.parameters()]
    mlp.reset_member(2)
    for old, new in zip(before, mlp.parameters()):
        assert torch.equal(old[:2], new[:2])
        if new.dim() == 3:
            assert not torch.equal(old[2], new[2])


def test_clip_grad_norm_per_member_returns_norms_and_clips_large_members() -> None:
    torch.manual_seed(0)
    params = [nn.Parameter(torch.zeros(NUM_MEMBERS, 4, 3)), nn.Parameter(torch.zeros(NUM_MEMBERS, 3))]
    grads = [torch.randn(NUM_MEMBERS, 4, 3), torch.randn(NUM_MEMBERS, 3)]
    grads[0][1] *= 0.01  # member 1 well under max_norm
    grads[1][1] *= 0.01
    for param, grad in zip(params, grads):
        param.grad = grad.clone()
    expected_norms = torch.stack(
        [torch.sqrt(sum((g[m] ** 2).sum() for g in grads)) for m in range(NUM_MEMBERS)]  # type: ignore[arg-type]
    )
    max_norm = 0.5
    assert expected_norms[1] < max_norm < expected_norms[[0, 2]].min()
    norms = clip_grad_norm_per_member(params, max_norm)
    assert norms.shape == (NUM_MEMBERS,)
    torch.testing.assert_close(norms, expected_norms, atol=1e-6, rtol=1e-6)
    new_norms = torch.stack([torch.sqrt(sum((p.grad[m] ** 2).sum() for p in params)) for m in range(NUM_MEMBERS)])
    torch.testing.assert_close(new_norms[[0, 2]], torch.full((2,), max_norm), atol=1e-5, rtol=0)
    # The small member is untouched; the clipped ones keep their direction.
    assert torch.equal(params[0].grad[1], grads[0][1])
    assert torch.equal(params[1].grad[1], grads[1][1])
    for member in (0, 2):
        scale = max_norm / expected_norms[member]
        torch.testing.assert_close(params[0].grad[member], grads[0][member] * scale, atol=1e-6, rtol=1e-5)


class _Reference:
    """Member ``g`` as separate unbatched tensors with its own ``torch.optim.Adam``."""

    def __init__(self, batched: list[nn.Parameter], member: int, lr: float) -> None:
        self.member = member
        self.lr = lr
        self.params = [nn.Parameter(p.detach()[member].clone()) for p in batched]
        self.reset_optimizer()

    def reset_optimizer(self) -> None:
        self.optimizer = torch.optim.Adam(self.params, lr=self.lr, eps=1e-5)

    def step(self, grads: list[torch.Tensor]) -> None:
        for param, grad in zip(self.params, grads):
            param.grad = grad[self.member].clone()
        self.optimizer.step()

    def assert_matches(self, batched: list[nn.Parameter]) -> None:
        for ref, param in zip(self.params, batched):
            torch.testing.assert_close(param.detach()[self.member], ref.detach(), atol=1e-6, rtol=0)


def _adam_setup(lr: float = 1e-2) -> tuple[list[nn.Parameter], MemberAdam, list[_Reference]]:
    mlp = _mlp()
    params = list(mlp.parameters())
    return params, MemberAdam(params, lr=lr), [_Reference(params, m, lr) for m in range(NUM_MEMBERS)]


def _random_grads(params: list[nn.Parameter]) -> list[torch.Tensor]:
    grads = [torch.randn_like(p) * 3.0 for p in params]
    for param, grad in zip(params, grads):
        param.grad = grad.clone()
    return grads


def test_member_adam_matches_separate_torch_adams() -> None:
    params, optimizer, references = _adam_setup()
    for _ in range(6):
        grads = _random_grads(params)
        optimizer.step()
        for ref in references:
            ref.step(grads)
    for ref in references:
        ref.assert_matches(params)
    assert torch.equal(optimizer.state[params[0]]["step"], torch.full((NUM_MEMBERS,), 6.0, dtype=torch.float64))


def test_member_adam_active_mask_leaves_inactive_members_untouched() -> None:
    params, optimizer, references = _adam_setup()
    for _ in range(2):
        grads = _random_grads(params)
        optimizer.step()
        for ref in references:
            ref.step(grads)
    params_before = [p.detach().clone() for p in params]
    state_before = [{k: v.clone() for k, v in optimizer.state[p].items()} for p in params]
    active = torch.tensor([True, False, True])
    for _ in range(3):
        grads = _random_grads(params)
        optimizer.step(active=active)
        for ref in (references[0], references[2]):
            ref.step(grads)
    for param, old, old_state in zip(params, params_before, state_before):
        assert torch.equal(param.detach()[1], old[1])
        state = optimizer.state[param]
        assert torch.equal(state["exp_avg"][1], old_state["exp_avg"][1])
        assert torch.equal(state["exp_avg_sq"][1], old_state["exp_avg_sq"][1])
        assert torch.equal(state["step"], torch.tensor([5.0, 2.0, 5.0], dtype=torch.float64))
    for ref in references:
        ref.assert_matches(params)


def test_member_adam_reset_member_gives_fresh_adam_for_that_member_only() -> None:
    params, optimizer, references = _adam_setup()
    for _ in range(4):
        grads = _random_grads(params)
        optimizer.step()
        for ref in references:
            ref.step(grads)
    optimizer.reset_member(1)
    references[1].reset_optimizer()
    assert torch.equal(optimizer.state[params[0]]["step"], torch.tensor([4.0, 0.0, 4.0], dtype=torch.float64))
    for param in params:
        assert torch.all(optimizer.state[param]["exp_avg"][1] == 0)
        assert torch.all(optimizer.state[param]["exp_avg_sq"][1] == 0)
    for _ in range(3):
        grads = _random_grads(params)
        optimizer.step()
        for ref in references:
            ref.step(grads)
    for ref in references:
        ref.assert_matches(params)
    assert torch.equal(optimizer.state[params[-1]]["step"], torch.tensor([7.0, 3.0, 7.0], dtype=torch.float64))


def test_member_adam_rejects_mismatched_member_counts() -> None:
    params = [nn.Parameter(torch.zeros(3, 2)), nn.Parameter(torch.zeros(4, 2))]
    with pytest.raises(ValueError, match=r"one member count across parameters, got \[3, 4\]"):
        MemberAdam(params, lr=1e-3)
