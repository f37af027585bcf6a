"""Many small MLPs evaluated at once, and an Adam that treats each member as its own network.

One building block serves both levels of the hierarchy: the K sub-policies are one
:class:`BatchedMLP` with K members, the masters of M task slots are another with M members.
Every parameter's leading dimension is the member dimension (weights ``[G, in, out]``), so one
``baddbmm`` serves all members and a member can be re-initialised by writing its slice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn


class BatchedLinear(nn.Module):
    """G independent linear layers applied as one ``baddbmm``.

    Args:
        num_members: G, the number of independent layers.
        in_features: input width.
        out_features: output width.
        gain: orthogonal-init gain of every member's weight; biases start at zero.
    """

    def __init__(self, num_members: int, in_features: int, out_features: int, gain: float) -> None:
        super().__init__()
        self.num_members = num_members
        self.gain = gain
        self.weight = nn.Parameter(torch.empty(num_members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(num_members, out_features))
        for member in range(num_members):
            self.reset_member(member)

    @torch.no_grad()
    def reset_member(self, member: int) -> None:
        """Re-initialises member ``member`` in place (orthogonal weight, zero bias)."""
        # orthogonal_ treats dim 0 as rows: initialise the [out, in] view as nn.Linear would.
        nn.init.orthogonal_(self.weight[member].T, gain=self.gain)
        self.bias[member].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Applies member g to ``x[g]``.

        Args:
            x: ``[G, N, in_features]``.

        Returns:
            ``[G, N, out_features]``.
        """
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)


class BatchedMLP(nn.Module):
    """G independent tanh MLPs (CleanRL-style orthogonal init).

    Args:
        num_members: G.
        in_features: input width.
        hidden_sizes: widths of the hidden layers, e.g. ``(64, 64)``.
        out_features: output width.
        out_gain: init gain of the output layer (0.01 for policy heads, 1.0 for value heads).
    """

    def __init__(
        self,
        num_members: int,
        in_features: int,
        hidden_sizes: Sequence[int],
        out_features: int,
        out_gain: float,
    ) -> None:
        super().__init__()
        self.num_members = num_members
        widths = [in_features, *hidden_sizes]
        self.layers = nn.ModuleList(
            BatchedLinear(num_members, w_in, w_out, gain=math.sqrt(2.0))
            for w_in, w_out in zip(widths[:-1], widths[1:], strict=True)
        )
        self.layers.append(BatchedLinear(num_members, widths[-1], out_features, gain=out_gain))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x ``[G, N, in]``. Returns ``[G, N, out]``."""
        *hidden, last = self.layers  # (slicing a ModuleList builds a new one on every call)
        for layer in hidden:
            x = torch.tanh(layer(x))
        return last(x)

    def reset_member(self, member: int) -> None:
        for layer in self.layers:
            layer.reset_member(member)


def clip_grad_norm_per_member(params: Iterable[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clips each member's gradient (slice ``[g]`` of every parameter) to ``max_norm`` on its own.

    Members are independent networks (different tasks' masters, different sub-policies), so one
    member's large gradient must not shrink another's step.

    Returns:
        ``[G]`` gradient norms before clipping.
    """
    grads = [p.grad for p in params if p.grad is not None]
    squared = torch.stack([g.pow(2).reshape(g.shape[0], -1).sum(-1) for g in grads]).sum(0)
    norms = squared.sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))
    return norms


class MemberAdam(torch.optim.Optimizer):
    """Adam in which slice ``[g]`` of every parameter is member g's own network.

    Each member has its own step count, so :meth:`reset_member` gives a member exactly the state of
    a freshly built ``torch.optim.Adam`` (bias correction restarts), which ``torch.optim.Adam``
    cannot do for a slice: it keeps one step count per tensor. :meth:`step` takes the members that
    had data; the others are left untouched (moments and step count), as separate optimizers would.

    Args:
        params: parameters whose dim 0 is the member dimension, all with the same size G.
        lr: learning rate.
        betas: Adam's betas.
        eps: Adam's epsilon.
    """

    def __init__(
        self, params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-5
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})
        sizes = {p.shape[0] for group in self.param_groups for p in group["params"]}
        if len(sizes) != 1:
            raise ValueError(f"MemberAdam needs one member count across parameters, got {sorted(sizes)}.")
        self.num_members = sizes.pop()

    def _state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros(self.num_members, dtype=torch.float64, device=p.device)
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        return state

    @torch.no_grad()
    def step(self, closure: None = None, active: torch.Tensor | None = None) -> None:  # type: ignore[override]
        """Adam step for the members in ``active`` (``[G]`` bool; all members when ``None``).

        Every tensor operation runs on the whole parameter list at once (``torch._foreach_*``), with
        the same arithmetic, in the same order, as a per-parameter loop.
        """
        all_active = active is None or bool(active.all())
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self._state(p) for p in params]
            grads = [p.grad for p in params]
            exp_avgs = [state["exp_avg"] for state in states]
            exp_avg_sqs = [state["exp_avg_sq"] for state in states]
            steps = [state["step"] for state in states]
            shapes = [(-1, *([1] * (p.dim() - 1))) for p in params]
            if all_active:
                torch._foreach_add_(steps, 1.0)
                torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
                torch._foreach_mul_(exp_avg_sqs, beta2)
                torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
            else:
                masks = [active.view(shape) for shape in shapes]
                torch._foreach_add_(steps, [active.to(torch.float64)] * len(steps))
                moved = torch._foreach_lerp(exp_avgs, grads, 1 - beta1)
                for exp_avg, mask, new in zip(exp_avgs, masks, moved, strict=True):
                    exp_avg.copy_(torch.where(mask, new, exp_avg))
                squares = torch._foreach_mul(grads, grads)
                torch._foreach_mul_(squares, 1 - beta2)
                updated_sqs = torch._foreach_mul(exp_avg_sqs, beta2)
                torch._foreach_add_(updated_sqs, squares)
                for exp_avg_sq, mask, new in zip(exp_avg_sqs, masks, updated_sqs, strict=True):
                    exp_avg_sq.copy_(torch.where(mask, new, exp_avg_sq))
            # Bias corrections of every parameter at once: [P, G] (each parameter has its own count).
            counts = torch.stack(steps).clamp_min(1.0)
            bias1 = (1 - beta1**counts).to(params[0].dtype)
            bias2_sqrt = (1 - beta2**counts).sqrt().to(params[0].dtype)
            denoms = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denoms, [bias2_sqrt[i].view(shape) for i, shape in enumerate(shapes)])
            torch._foreach_add_(denoms, group["eps"])
            torch._foreach_mul_(denoms, [bias1[i].view(shape) for i, shape in enumerate(shapes)])
            updates = torch._foreach_div(exp_avgs, denoms)
            if not all_active:
                torch._foreach_mul_(updates, masks)
            torch._foreach_add_(params, updates, alpha=-group["lr"])

    @torch.no_grad()
    def reset_member(self, member: int) -> None:
        """Drops member ``member``'s moments and step count (a fresh Adam for that member)."""
        for group in self.param_groups:
            for p in group["params"]:
                if self.state[p]:
                    state = self.state[p]
                    state["step"][member] = 0.0
                    state["exp_avg"][member].zero_()
                    state["exp_avg_sq"][member].zero_()
