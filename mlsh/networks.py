"""Many small MLPs evaluated at once, and an Adam that treats each member as its own network.

One building block serves both levels of the hierarchy: the K sub-policies are one
:class:`BatchedMLP` with K members, the masters of M task slots are another with M members.
Every parameter's leading dimension is the member dimension (weights ``[G, in, out]``), so one
``baddbmm`` serves all members and a member can be re-initialised by writing its slice.

The sub-policies may also share weights with each other (``sub.sharing``; docs: sharing). A shared
parameter has leading dimension 1 instead of G: it belongs to every member at once. Such networks
describe themselves as a list of layers ``(weight [1 or G, in, out], bias [1 or G, out])``
(:meth:`BatchedMLP.effective_layers` and its kin), which :func:`apply_layers` evaluates for every
member on its own inputs and :func:`apply_layers_indexed` for one chosen member per row, at a cost
that grows with the rows, not with G.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

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


class MemberMLP(nn.Module):
    """G tanh MLPs that describe themselves as :data:`Layer` pairs (:meth:`effective_layers`) and are evaluated
    by :func:`apply_layers`: the base of :class:`BatchedMLP` and its kin, which differ in what their members share.

    Args:
        num_members: G.
    """

    def __init__(self, num_members: int) -> None:
        super().__init__()
        self.num_members = num_members

    def effective_layers(self) -> list[Layer]:
        """The layers as ``(weight [1 or G, in, out], bias [1 or G, out])`` pairs."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x ``[G, N, in]``. Returns ``[G, N, out]``."""
        return apply_layers(self.effective_layers(), x)


def _hidden_layers(num_members: int, widths: Sequence[int]) -> list[BatchedLinear]:
    """Layers ``widths[i] -> widths[i + 1]`` of ``num_members`` members (1: shared), with the orthogonal-init
    gain sqrt(2) of layers followed by a tanh."""
    return [
        BatchedLinear(num_members, w_in, w_out, gain=math.sqrt(2.0))
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True)
    ]


class BatchedMLP(MemberMLP):
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
        super().__init__(num_members)
        widths = [in_features, *hidden_sizes]
        self.layers = nn.ModuleList(_hidden_layers(num_members, widths))
        self.layers.append(BatchedLinear(num_members, widths[-1], out_features, gain=out_gain))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x ``[G, N, in]``. Returns ``[G, N, out]``."""
        # Every layer is per-member: each one's own baddbmm, without building the list of layer pairs.
        *hidden, last = self.layers  # (slicing a ModuleList builds a new one on every call)
        for layer in hidden:
            x = torch.tanh(layer(x))
        return last(x)

    def reset_member(self, member: int) -> None:
        for layer in self.layers:
            layer.reset_member(member)

    def effective_layers(self) -> list[Layer]:
        """The layers as ``(weight [G, in, out], bias [G, out])`` pairs (see :func:`apply_layers`)."""
        return [(layer.weight, layer.bias) for layer in self.layers]


# (weight [1 or G, in, out], bias [1 or G, out]): leading dimension 1 is a parameter every member shares.
Layer = tuple[torch.Tensor, torch.Tensor]


def _member_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x [G, N, in]`` through member g's (or the shared) weight and bias -> ``[G, N, out]``."""
    if weight.shape[0] == x.shape[0]:
        return torch.baddbmm(bias.unsqueeze(1), x, weight)
    return torch.matmul(x, weight[0]) + bias.unsqueeze(1)  # one shared weight: a plain matmul over G * N rows


def apply_layers(layers: Sequence[Layer], x: torch.Tensor) -> torch.Tensor:
    """A tanh MLP given as :data:`Layer` pairs, member g applied to ``x[g]``.

    Args:
        layers: ``(weight, bias)`` per layer, each with leading dimension G (per member) or 1 (shared).
        x: ``[G, N, in]``.

    Returns:
        ``[G, N, out]``.
    """
    *hidden, last = layers
    for weight, bias in hidden:
        x = torch.tanh(_member_linear(x, weight, bias))
    return _member_linear(x, *last)


# Up to this many members, a per-member layer runs every member on every row and keeps each row's own:
# one large batched matmul beats gathering a weight matrix per row on the CPU (64x64 layers, 100 rows,
# one thread: 0.1 ms against 1.0 ms at 2 members, even at 32). Beyond it, gathering bounds the work.
ALL_MEMBERS_UP_TO = 32


def apply_layers_indexed(layers: Sequence[Layer], x: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
    """A tanh MLP given as :data:`Layer` pairs, member ``member[b]`` applied to row ``x[b]`` only.

    Shared layers are one matmul over the rows. Per-member layers of more than
    :data:`ALL_MEMBERS_UP_TO` members gather each row's weight (a ``[B, in, out]`` copy) for one
    batched matmul, so that the work grows with B, not with the number of members G; with fewer
    members, running all of them on every row and keeping each row's own is faster.

    Args:
        layers: as in :func:`apply_layers`.
        x: ``[B, in]``.
        member: ``[B]`` long, each row's member.

    Returns:
        ``[B, out]``.
    """
    rows = torch.arange(x.shape[0], device=x.device)
    last = len(layers) - 1
    for i, (weight, bias) in enumerate(layers):
        members = weight.shape[0]
        if members == 1:
            y = x @ weight[0] + (bias[0] if bias.shape[0] == 1 else bias[member])
        elif members <= ALL_MEMBERS_UP_TO:
            y = torch.baddbmm(bias.unsqueeze(1), x.unsqueeze(0).expand(members, -1, -1), weight)[member, rows]
        else:
            y = torch.bmm(x.unsqueeze(1), weight[member]).squeeze(1) + (bias[0] if bias.shape[0] == 1 else bias[member])
        x = torch.tanh(y) if i < last else y
    return x


class SharedTrunkMLP(MemberMLP):
    """G tanh MLPs that share their hidden layers and have one output layer each (``sub.sharing=trunk``).

    Parameters: ``sum_l (w_l * w_{l+1} + w_{l+1})`` over the hidden layers (once) plus
    ``G * (w_last * out + out)`` for the heads, with ``w = [in, *hidden_sizes]``.

    Args:
        num_members: G.
        in_features: input width.
        hidden_sizes: widths of the shared hidden layers.
        out_features: output width of each member's head.
        out_gain: init gain of the heads.
    """

    def __init__(
        self, num_members: int, in_features: int, hidden_sizes: Sequence[int], out_features: int, out_gain: float
    ) -> None:
        super().__init__(num_members)
        widths = [in_features, *hidden_sizes]
        self.trunk = nn.ModuleList(_hidden_layers(1, widths))
        self.head = BatchedLinear(num_members, widths[-1], out_features, gain=out_gain)

    def effective_layers(self) -> list[Layer]:
        """Shared hidden layers (leading dimension 1), then the per-member heads."""
        return [(layer.weight, layer.bias) for layer in self.trunk] + [(self.head.weight, self.head.bias)]


class ConditionedMLP(MemberMLP):
    """One tanh MLP whose input is the observation and a learned embedding of the member's index
    (``sub.sharing=conditioned``).

    The embedding enters the first layer only, so ``[x, e_g] @ W + b = x @ W_x + (b + e_g @ W_e)``:
    member g is the shared network with a first-layer bias of its own, which is how
    :meth:`effective_layers` presents it. Parameters: ``G * embed_dim`` plus one MLP with input width
    ``in + embed_dim``.

    Args:
        num_members: G.
        in_features: input width (without the embedding).
        hidden_sizes: hidden widths.
        out_features: output width.
        out_gain: init gain of the output layer.
        embed_dim: width of the index embedding (initialised N(0, 1), as ``nn.Embedding``).
    """

    def __init__(
        self,
        num_members: int,
        in_features: int,
        hidden_sizes: Sequence[int],
        out_features: int,
        out_gain: float,
        embed_dim: int = 16,
    ) -> None:
        super().__init__(num_members)
        self.in_features = in_features
        self.embedding = nn.Parameter(torch.randn(num_members, embed_dim))
        widths = [in_features + embed_dim, *hidden_sizes]
        self.layers = nn.ModuleList(_hidden_layers(1, widths))
        self.layers.append(BatchedLinear(1, widths[-1], out_features, gain=out_gain))

    def effective_layers(self) -> list[Layer]:
        """The shared layers, the first with a per-member bias ``b + e_g @ W_e`` (``[G, hidden]``)."""
        first, *rest = self.layers
        weight_x, weight_e = first.weight[:, : self.in_features], first.weight[0, self.in_features :]
        bias = first.bias + self.embedding @ weight_e
        return [(weight_x, bias)] + [(layer.weight, layer.bias) for layer in rest]


_HASH_PRIME = 2**31 - 1  # values stay below 2^31, so the products with 17-bit multipliers fit int64


def _mix(x: torch.Tensor, salt: int) -> torch.Tensor:
    """An integer hash of non-negative int64 values into ``[0, 2^31)``: the same on every device."""
    x = (x % _HASH_PRIME + (salt * 2654435761) % _HASH_PRIME) % _HASH_PRIME
    for multiplier, shift in ((40692, 12), (40014, 16), (52774, 9)):
        x = (x * multiplier + 12345) % _HASH_PRIME
        x = x ^ (x >> shift)
    return x


def weight_hash(
    num_members: int, in_features: int, out_features: int, num_buckets: int, salt: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """HashedNets' two hashes of a layer's virtual weights (Chen et al. 2015, arXiv 1504.04788, sec. 4).

    Virtual weight ``(g, i, j)`` (member g, input i, output j) is read from bucket ``h(g, i, j)`` with
    sign ``xi(g, i, j)``; the sign hash makes the collisions' errors cancel in expectation. Both are
    fixed functions of the position and ``salt`` (integer arithmetic only, so every device and
    process computes the same): nothing about them is stored.

    Returns:
        ``(index, sign)``: ``[G, in, out]`` long in ``[0, num_buckets)`` and float in ``{-1, 1}``.
    """
    position = torch.arange(num_members * in_features * out_features, dtype=torch.int64)
    index = _mix(position, 2 * salt) % num_buckets
    sign = (_mix(position, 2 * salt + 1) >> 7 & 1).to(torch.float32) * 2.0 - 1.0
    shape = (num_members, in_features, out_features)
    return index.view(shape), sign.view(shape)


HashFn = Callable[[int, int, int, int, int], tuple[torch.Tensor, torch.Tensor]]


class HashedLinear(nn.Module):
    """G virtual linear layers whose weights are drawn from one shared bucket array by a hash.

    Member g's weight is ``W_g[i, j] = sign[g, i, j] * buckets[index[g, i, j]]``; biases are the
    members' own (``[G, out]``, as HashedNets leaves biases unhashed). Parameters: ``num_buckets + G * out``.

    Args:
        num_members: G.
        in_features: input width.
        out_features: output width.
        gain: the virtual weights start with the spread of an orthogonal init of that gain
            (normal, std ``gain / sqrt(max(in, out))``); biases start at zero.
        num_buckets: real weights shared by the G virtual matrices.
        salt: makes this layer's hash differ from the other layers'.
        hash_fn: ``(G, in, out, num_buckets, salt) -> (index, sign)``; :func:`weight_hash` by default.
    """

    def __init__(
        self,
        num_members: int,
        in_features: int,
        out_features: int,
        gain: float,
        num_buckets: int,
        salt: int,
        hash_fn: HashFn = weight_hash,
    ) -> None:
        super().__init__()
        self.num_members = num_members
        self.buckets = nn.Parameter(torch.empty(1, num_buckets))
        self.bias = nn.Parameter(torch.zeros(num_members, out_features))
        with torch.no_grad():
            self.buckets.normal_(0.0, gain / math.sqrt(max(in_features, out_features)))
        index, sign = hash_fn(num_members, in_features, out_features, num_buckets, salt)
        # Not saved: the hash is a fixed function, recomputed on construction (checkpoints stay small).
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("sign", sign, persistent=False)

    def effective_weight(self) -> torch.Tensor:
        """The G virtual weight matrices, ``[G, in, out]`` (differentiable in the buckets)."""
        return self.buckets[0][self.index] * self.sign


class HashedMLP(MemberMLP):
    """G tanh MLPs whose weight matrices are hashed into one bucket array per layer (``sub.sharing=hashed``).

    Layer l, with ``G * w_l * w_{l+1}`` virtual weights, has ``ceil(G * w_l * w_{l+1} / compression)``
    buckets; ``compression = G`` stores as many real weights as one network has.

    Args:
        num_members: G.
        in_features: input width.
        hidden_sizes: hidden widths.
        out_features: output width.
        out_gain: init gain of the output layer.
        compression: virtual weights per real weight (at least 1).
        salt: makes this network's hashes differ from another's (the actor's from the critic's).
        hash_fn: see :class:`HashedLinear`.
    """

    def __init__(
        self,
        num_members: int,
        in_features: int,
        hidden_sizes: Sequence[int],
        out_features: int,
        out_gain: float,
        compression: float,
        salt: int = 0,
        hash_fn: HashFn = weight_hash,
    ) -> None:
        super().__init__(num_members)
        widths = [in_features, *hidden_sizes, out_features]
        gains = [math.sqrt(2.0)] * len(hidden_sizes) + [out_gain]
        self.layers = nn.ModuleList(
            HashedLinear(
                num_members,
                w_in,
                w_out,
                gain,
                num_buckets=hashed_buckets(num_members, w_in, w_out, compression),
                salt=salt * 64 + i,
                hash_fn=hash_fn,
            )
            for i, (w_in, w_out, gain) in enumerate(zip(widths[:-1], widths[1:], gains, strict=True))
        )

    def effective_layers(self) -> list[Layer]:
        """Every layer's G virtual weights ``[G, in, out]`` and biases ``[G, out]``."""
        return [(layer.effective_weight(), layer.bias) for layer in self.layers]


def hashed_buckets(num_members: int, in_features: int, out_features: int, compression: float) -> int:
    """Buckets of a hashed layer: ``ceil(G * in * out / compression)``."""
    return max(1, math.ceil(num_members * in_features * out_features / compression))


def clip_grad_norm_per_member(params: Iterable[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clips each member's gradient (slice ``[g]`` of every parameter) to ``max_norm`` on its own.

    Members are independent networks (different tasks' masters, different sub-policies), so one
    member's large gradient must not shrink another's step.

    Parameters shared by the members (leading dimension 1 among members of G > 1, see
    :func:`apply_layers`) hold every member's gradient summed, which no longer splits by member: the
    members then form one network, clipped as one (as ``nn.utils.clip_grad_norm_`` would).

    Returns:
        ``[G]`` gradient norms before clipping (with shared parameters: the one norm, G times).
    """
    grads = [p.grad for p in params if p.grad is not None]
    num_members = max(g.shape[0] for g in grads)
    if any(g.shape[0] != num_members for g in grads):
        total = torch.stack([g.pow(2).sum() for g in grads]).sum().sqrt()
        torch._foreach_mul_(grads, (max_norm / (total + 1e-6)).clamp(max=1.0))
        return total.expand(num_members)
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

    A parameter with leading dimension 1 among members of G > 1 is shared by all members (sub-policies
    with ``sub.sharing`` other than ``separate``): it has one step count, steps whenever any member
    has data, and :meth:`reset_member` never touches it (it belongs to no member alone).

    Args:
        params: parameters whose dim 0 is the member dimension, all with the same size G (or 1: shared).
        lr: learning rate.
        betas: Adam's betas.
        eps: Adam's epsilon.
    """

    def __init__(
        self, params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-5
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})
        sizes = {p.shape[0] for group in self.param_groups for p in group["params"]}
        if len(sizes - {1}) > 1:
            raise ValueError(f"MemberAdam needs one member count across parameters, got {sorted(sizes)}.")
        self.num_members = max(sizes)

    def is_shared(self, p: torch.Tensor) -> bool:
        """Whether ``p`` is shared by every member (leading dimension 1 among more members)."""
        return p.shape[0] == 1 and self.num_members > 1

    def _state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros(p.shape[0], dtype=torch.float64, device=p.device)
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
            params = [p for p in group["params"] if p.grad is not None]
            shared = [p for p in params if self.is_shared(p)]
            if shared:
                params = [p for p in params if not self.is_shared(p)]
                if active is None or bool(active.any()):  # some member's data reached the shared weights
                    self._step_params(shared, group, True, None)
            if params:
                self._step_params(params, group, all_active, active)

    def _step_params(
        self, params: list[torch.Tensor], group: dict[str, Any], all_active: bool, active: torch.Tensor | None
    ) -> None:
        """Adam on ``params``: every slice when ``all_active``, else the members in ``active`` (``[G]`` bool)."""
        beta1, beta2 = group["betas"]
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
        """Drops member ``member``'s moments and step count (a fresh Adam for that member); shared
        parameters keep theirs."""
        for group in self.param_groups:
            for p in group["params"]:
                if self.state[p] and not self.is_shared(p):
                    state = self.state[p]
                    state["step"][member] = 0.0
                    state["exp_avg"][member].zero_()
                    state["exp_avg_sq"][member].zero_()
