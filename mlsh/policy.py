"""The hierarchical policy: K sub-policies shared by every task, M per-slot masters, one observation normaliser."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Normal

from mlsh.config import SHARING_MODES, check_hidden_obs
from mlsh.errors import ConfigError
from mlsh.networks import (
    BatchedMLP,
    ConditionedMLP,
    HashedMLP,
    Layer,
    MemberMLP,
    SharedTrunkMLP,
    apply_layers_indexed,
)

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))  # as in torch.distributions.Normal


def merge_moments(
    mean: torch.Tensor,
    var: torch.Tensor,
    count: Any,
    other_mean: torch.Tensor,
    other_var: torch.Tensor,
    other_count: Any,
) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """The mean, (biased) variance and count of two samples together, from each one's (Chan et al.'s
    parallel formula). Counts are numbers or 0-d tensors; the result's count is ``count + other_count``."""
    delta = other_mean - mean
    total = count + other_count
    merged_mean = mean + delta * other_count / total
    merged_var = (var * count + other_var * other_count + delta**2 * count * other_count / total) / total
    return merged_mean, merged_var, total


def advance_macro_clock(clock: np.ndarray, macro_len: int, ended: np.ndarray | None = None) -> np.ndarray:
    """The macro clock after one env step: ``clock [B]`` counts the steps since each env's master last
    chose, and the master chooses where it is 0, i.e. every ``macro_len`` steps and at every episode start
    (an episode end, ``ended [B]``, restarts it at once)."""
    clock = (clock + 1) % macro_len
    if ended is not None and ended.any():
        clock[ended] = 0
    return clock


class PolicyStep(NamedTuple):
    """What :meth:`HierarchicalPolicy.step` did, every field ``[B]``."""

    sub_idx: torch.Tensor  # long, the active sub-policy after the masters' choices
    action: torch.Tensor  # [B] (discrete) or [B, act_dim], before clipping to the action space
    logprob: torch.Tensor  # of the action under the active sub-policy
    value: torch.Tensor  # the active sub-policy's value
    master_logprob: torch.Tensor | None  # of the choice where a master chose, 0 elsewhere; None: no choice
    master_value: torch.Tensor | None  # the master's value where it chose, 0 elsewhere


class RunningMeanStd(nn.Module):
    """Running mean and variance of observations (parallel-merge update); saved with the model.

    Args:
        shape: observation shape.
        clip: normalised observations are clipped to ``[-clip, clip]``.
    """

    def __init__(self, shape: Sequence[int], clip: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(*shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(*shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))
        self.clip = clip
        self.eps = eps

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merges the statistics of a batch ``x`` of shape ``[N, *shape]``."""
        x = x.to(torch.float64).reshape(-1, *self.mean.shape)
        self.merge(x.mean(0), x.var(0, unbiased=False), x.shape[0])

    @torch.no_grad()
    def merge(self, batch_mean: torch.Tensor, batch_var: torch.Tensor, batch_count: float) -> None:
        """Merges a batch summarised by its mean, (biased) variance and count (:func:`merge_moments`)."""
        mean, var, count = merge_moments(self.mean, self.var, self.count, batch_mean, batch_var, batch_count)
        self.mean.copy_(mean)
        self.var.copy_(var)
        self.count.copy_(count)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normalised = (x - self.mean.to(x.dtype)) / torch.sqrt(self.var.to(x.dtype) + self.eps)
        return normalised.clamp(-self.clip, self.clip)

    @torch.no_grad()
    def frozen(self, dtype: torch.dtype = torch.float32) -> Callable[[torch.Tensor], torch.Tensor]:
        """The normalisation with the current statistics, converted once (a rollout's loop calls it per step).

        Three tensor operations per call instead of seven, with the same arithmetic as
        :meth:`forward` (the same bits). Later updates of the statistics do not reach the returned
        function.
        """
        mean = self.mean.to(dtype)
        std = torch.sqrt(self.var.to(dtype) + self.eps)
        clip = self.clip

        def normalize(x: torch.Tensor) -> torch.Tensor:
            return ((x - mean) / std).clamp_(-clip, clip)

        return normalize


def member_network(
    sharing: str,
    num_members: int,
    in_features: int,
    hidden_sizes: Sequence[int],
    out_features: int,
    out_gain: float,
    hash_compression: float | None = None,
    salt: int = 0,
) -> MemberMLP:
    """The K-member network of a ``sub.sharing`` mode (docs: sharing).

    Args:
        sharing: ``separate``, ``trunk``, ``conditioned`` or ``hashed``.
        num_members: K.
        in_features: input width.
        hidden_sizes: hidden widths.
        out_features: output width.
        out_gain: init gain of the output layer.
        hash_compression: ``hashed``: virtual weights per real weight; ``None``: K.
        salt: ``hashed``: the network's own hash (the actor's differs from the critic's).

    Raises:
        ConfigError: an unknown mode.
    """
    if sharing == "separate":
        return BatchedMLP(num_members, in_features, hidden_sizes, out_features, out_gain=out_gain)
    if sharing == "trunk":
        return SharedTrunkMLP(num_members, in_features, hidden_sizes, out_features, out_gain=out_gain)
    if sharing == "conditioned":
        return ConditionedMLP(num_members, in_features, hidden_sizes, out_features, out_gain=out_gain)
    if sharing == "hashed":
        compression = float(num_members if hash_compression is None else hash_compression)
        return HashedMLP(num_members, in_features, hidden_sizes, out_features, out_gain, compression, salt=salt)
    raise ConfigError(
        f"sub.sharing must be one of {', '.join(SHARING_MODES)}, got {sharing!r}; set e.g. sub.sharing=trunk."
    )


class SubPolicies(nn.Module):
    """K sub-policies (actor and separate critic per member), Gaussian or categorical by action space.

    Args:
        num_subpolicies: K.
        obs_dim: flat observation width.
        action_space: ``Discrete`` or 1-d ``Box``.
        hidden_sizes: MLP hidden widths.
        sharing: what the K sub-policies share (``sub.sharing``, see :func:`member_network`); the K
            critics share among themselves as the K actors do, never with the actors. Each
            sub-policy keeps its own Gaussian standard deviations in every mode.
        hash_compression: ``sub.hash_compression`` (``hashed`` only).
        hidden_obs: ``sub.hidden_obs``, the observation entries no member sees: every method takes the full
            observation and keeps the other entries (:meth:`select`) before the networks, whose input width
            is the number kept.
        init_log_std: ``sub.init_log_std``, every member's Gaussian log standard deviation at initialisation
            (and after :meth:`reset_member`); unused with discrete actions.

    Raises:
        ConfigError: an unsupported action space, or ``hidden_obs`` outside ``[0, obs_dim)`` or hiding everything.
    """

    def __init__(
        self,
        num_subpolicies: int,
        obs_dim: int,
        action_space: gym.Space,
        hidden_sizes: Sequence[int],
        sharing: str = "separate",
        hash_compression: float | None = None,
        hidden_obs: Sequence[int] = (),
        init_log_std: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_subpolicies = num_subpolicies
        self.init_log_std = float(init_log_std)
        self.sharing = sharing
        check_hidden_obs(list(hidden_obs), obs_dim)
        hidden = set(hidden_obs)
        # Not saved with the model (persistent=False): the run's config says which entries are hidden, and
        # checkpoints written before the setting existed load as they are. It draws no random numbers, so that
        # without hidden entries the members are initialised as they always were.
        self.register_buffer(
            "kept_obs", torch.tensor([i for i in range(obs_dim) if i not in hidden], dtype=torch.long), persistent=False
        )
        self.hides_obs = bool(hidden)
        if isinstance(action_space, gym.spaces.Discrete):
            self.discrete = True
            out = int(action_space.n)
            self.log_std = None
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            self.discrete = False
            out = int(action_space.shape[0])
            # State-independent, per member; filled in place (no random draws), so that a log-std of 0 gives the
            # bits of runs from before the setting existed.
            self.log_std = nn.Parameter(torch.full((num_subpolicies, out), self.init_log_std))
        else:
            raise ConfigError(
                f"Action space {action_space} is not supported; MLSH sub-policies need a Discrete or a 1-d Box "
                f"action space (wrap the env, e.g. with gymnasium.wrappers.FlattenObservation for observations)."
            )
        self.action_dim = out
        width = len(self.kept_obs)
        self.actor = member_network(sharing, num_subpolicies, width, hidden_sizes, out, 0.01, hash_compression, 0)
        self.critic = member_network(sharing, num_subpolicies, width, hidden_sizes, 1, 1.0, hash_compression, 1)

    def select(self, obs: torch.Tensor) -> torch.Tensor:
        """The entries the members see: ``[..., obs_dim] -> [..., len(kept_obs)]`` (``obs`` itself when none
        is hidden)."""
        return obs.index_select(-1, self.kept_obs) if self.hides_obs else obs

    def distribution(self, obs: torch.Tensor) -> Categorical | Normal:
        """Action distributions of every member on its own inputs.

        Args:
            obs: ``[K, N, obs_dim]`` normalised observations.

        Returns:
            A distribution with batch shape ``[K, N]`` (Normal: ``[K, N, act_dim]``).
        """
        out = self.actor(self.select(obs))
        # No argument checks (they cost more than the network here): the trainer checks every
        # parameter and metric for NaN after each iteration instead.
        if self.discrete:
            return Categorical(logits=out, validate_args=False)
        log_std = self.log_std.unsqueeze(1).expand_as(out)
        return Normal(out, log_std.exp(), validate_args=False)

    def log_prob_entropy(self, dist: Categorical | Normal, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability of ``actions`` and entropy, both with shape ``dist``'s ``[K, N]``."""
        if self.discrete:
            return dist.log_prob(actions.long()), dist.entropy()
        return dist.log_prob(actions).sum(-1), dist.entropy().sum(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """``[K, N, obs_dim] -> [K, N]``."""
        return self.critic(self.select(obs)).squeeze(-1)

    def value_indexed(self, obs: torch.Tensor, sub_idx: torch.Tensor) -> torch.Tensor:
        """Each row's sub-policy's value: ``obs [B, obs_dim]``, ``sub_idx [B]`` -> ``[B]``.

        ``separate`` runs all K critics on every row and picks (the arithmetic of :meth:`value`, bit for
        bit); the sharing modes run one network per row (:func:`mlsh.networks.apply_layers_indexed`).
        """
        if self.sharing == "separate":
            values = self.value(obs.unsqueeze(0).expand(self.num_subpolicies, -1, -1))
            return values.gather(0, sub_idx.view(1, -1))[0]
        return apply_layers_indexed(self.critic.effective_layers(), self.select(obs), sub_idx)[:, 0]

    @torch.no_grad()
    def reset_member(self, member: int) -> None:
        """Re-initialises sub-policy ``member`` (actor, critic, log-std) as a fresh one; ``separate`` only.

        Raises:
            ValueError: the sub-policies share weights, so that one cannot be reset alone.
        """
        if self.sharing != "separate":
            raise ValueError(f"sub.sharing={self.sharing}: a sub-policy shares weights and cannot be reset alone.")
        self.actor.reset_member(member)
        self.critic.reset_member(member)
        if self.log_std is not None:
            self.log_std[member].fill_(self.init_log_std)


def _frozen(layers: list[Layer]) -> list[Layer]:
    return [(weight.detach().clone(), bias.detach().clone()) for weight, bias in layers]


class SubPolicySnapshot:
    """The K sub-policies with their weights of now, arranged for one env step at a time (a rollout).

    A rollout runs the K actors and K critics on every env at every step, with weights that change
    only after it. Their hidden layers are stacked here once into 2K members (K actors, then K
    critics), so that each hidden layer is one batched matmul instead of two; each member computes
    exactly what its own network does. The Gaussian's standard deviations are precomputed. Later
    updates of the module do not reach it.

    With weights shared between sub-policies (``sub.sharing`` other than ``separate``) each env gets
    its active sub-policy's output only (:func:`mlsh.networks.apply_layers_indexed`): shared layers
    run once per env, per-member layers of many members gather each env's weights, so the work per
    step grows with the number of envs, not with K; only the active sub-policies' actions are drawn.
    ``separate`` keeps the K-member path above, so that seeded runs draw the random numbers they
    always drew.

    With ``sub.hidden_obs`` it keeps the entries the members see first, as :meth:`SubPolicies.select` does.

    Args:
        subs: the sub-policies (actor and critic of the same depth, as built by :class:`SubPolicies`).
    """

    @torch.no_grad()
    def __init__(self, subs: SubPolicies) -> None:
        self.num_subpolicies = subs.num_subpolicies
        self.discrete = subs.discrete
        self.select = subs.select  # sub.hidden_obs: the entries the members see
        self._envs: torch.Tensor | None = None  # arange(B), kept across the steps of a rollout
        if not self.discrete:
            self.std = subs.log_std.exp()  # [K, A]
            self.log_scale = self.std.log()  # as Normal computes it from the scale
        self.indexed = subs.sharing != "separate"
        if self.indexed:
            self.actor_layers = _frozen(subs.actor.effective_layers())
            self.critic_layers = _frozen(subs.critic.effective_layers())
            return
        actor, critic = list(subs.actor.layers), list(subs.critic.layers)
        self.hidden = [
            (torch.cat([a.bias, c.bias]).unsqueeze(1), torch.cat([a.weight, c.weight]))
            for a, c in zip(actor[:-1], critic[:-1], strict=True)
        ]
        self.actor_out = (actor[-1].bias.unsqueeze(1).clone(), actor[-1].weight.clone())
        self.critic_out = (critic[-1].bias.unsqueeze(1).clone(), critic[-1].weight.clone())

    @torch.no_grad()
    def act(
        self,
        obs: torch.Tensor,
        sub_idx: torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Samples an action from each env's active sub-policy.

        With ``sub.sharing=separate`` all K sub-policies run on all B envs (K is small: one batched
        matmul per layer) and the active one's action is picked; the sharing modes compute each env's
        active one only. Sampling and scoring use the formulas and the random draws of
        ``torch.distributions`` (same results, bit for bit), without building distribution objects,
        which cost more than the networks at rollout batch sizes.

        Args:
            obs: ``[B, obs_dim]`` normalised observations.
            sub_idx: ``[B]`` active sub-policy per env.
            deterministic: the most likely action (the Gaussian's mean) instead of a sample.
            generator: the random stream of the draws (``None``: torch's global one).

        Returns:
            ``(action [B, ...], logprob [B], value [B])``.
        """
        obs = self.select(obs)
        if self.indexed:
            return self._act_indexed(obs, sub_idx, deterministic, generator)
        k = self.num_subpolicies
        x = obs.unsqueeze(0).expand(2 * k, -1, -1)
        for bias, weight in self.hidden:
            x = torch.tanh(torch.baddbmm(bias, x, weight))
        out = torch.baddbmm(self.actor_out[0], x[:k], self.actor_out[1])  # [K, B, A]: means or logits
        values = torch.baddbmm(self.critic_out[0], x[k:], self.critic_out[1])  # [K, B, 1]
        envs = self._envs
        if envs is None or envs.shape[0] != obs.shape[0] or envs.device != obs.device:
            envs = self._envs = torch.arange(obs.shape[0], device=obs.device)  # once per rollout
        value = values[sub_idx, envs, 0]  # the active member's
        # Every member's distribution is sampled, as torch.distributions would, so that the random
        # stream, and with it a seeded run, is the same as with Normal / Categorical objects; the
        # formulas are theirs, so are the bits.
        if self.discrete:
            logits = out - out.logsumexp(-1, keepdim=True)
            probs = logits.softmax(-1)
            if deterministic:
                actions = probs.argmax(-1)
            else:
                actions = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, True, generator=generator).view(
                    k, -1
                )
            action = actions[sub_idx, envs]
            return action, logits[sub_idx, envs].gather(-1, action.unsqueeze(-1))[:, 0], value
        mean, scale = out[sub_idx, envs], self.std[sub_idx]
        if deterministic:
            action = mean
        else:
            action = torch.normal(out, self.std.unsqueeze(1).expand_as(out), generator=generator)[sub_idx, envs]
        log_density = -((action - mean) ** 2) / (2 * scale**2) - self.log_scale[sub_idx] - _LOG_SQRT_2PI
        return action, log_density.sum(-1), value

    def _act_indexed(
        self, obs: torch.Tensor, sub_idx: torch.Tensor, deterministic: bool, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`act` running each env's active sub-policy only (weight-sharing modes)."""
        out = apply_layers_indexed(self.actor_layers, obs, sub_idx)  # [B, A]: means or logits
        value = apply_layers_indexed(self.critic_layers, obs, sub_idx)[:, 0]
        if self.discrete:  # Categorical's formulas, as in act
            logits = out - out.logsumexp(-1, keepdim=True)
            probs = logits.softmax(-1)
            action = probs.argmax(-1) if deterministic else torch.multinomial(probs, 1, True, generator=generator)[:, 0]
            return action, logits.gather(-1, action.unsqueeze(-1))[:, 0], value
        scale = self.std[sub_idx]
        action = out if deterministic else torch.normal(out, scale, generator=generator)
        log_density = -((action - out) ** 2) / (2 * scale**2) - self.log_scale[sub_idx] - _LOG_SQRT_2PI
        return action, log_density.sum(-1), value


class Masters(nn.Module):
    """M per-slot master policies: a categorical choice over K sub-policies, and a critic.

    With ``epsilon > 0`` the choice is drawn from the mixture ``(1 - epsilon) * pi + epsilon / K``
    (the original code's random sub-policy choice) and log-probabilities are those of that mixture,
    so that PPO's ratio is computed for the distribution actually sampled.
    """

    def __init__(
        self, num_slots: int, obs_dim: int, num_subpolicies: int, hidden_sizes: Sequence[int], epsilon: float = 0.0
    ) -> None:
        super().__init__()
        self.num_slots = num_slots
        self.num_subpolicies = num_subpolicies
        self.epsilon = epsilon
        self.actor = BatchedMLP(num_slots, obs_dim, hidden_sizes, num_subpolicies, out_gain=0.01)
        self.critic = BatchedMLP(num_slots, obs_dim, hidden_sizes, 1, out_gain=1.0)

    def distribution(self, obs: torch.Tensor) -> Categorical:
        """``[M, N, obs_dim]`` -> Categorical with batch shape ``[M, N]`` over K (the sampled mixture)."""
        logits = self.actor(obs)
        if self.epsilon > 0.0:
            probs = (1.0 - self.epsilon) * logits.softmax(-1) + self.epsilon / self.num_subpolicies
            return Categorical(probs=probs, validate_args=False)
        return Categorical(logits=logits, validate_args=False)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """``[M, N, obs_dim] -> [M, N]``."""
        return self.critic(obs).squeeze(-1)

    def reset_member(self, member: int) -> None:
        """Re-initialises slot ``member``'s actor and critic; other slots are untouched."""
        self.actor.reset_member(member)
        self.critic.reset_member(member)


class HierarchicalPolicy(nn.Module):
    """Observation normaliser + :class:`SubPolicies` + :class:`Masters`.

    Args:
        observation_space: a ``Box`` (flattened if multi-dimensional).
        action_space: ``Discrete`` or 1-d ``Box``.
        num_subpolicies: K.
        num_slots: M.
        master_hidden: hidden widths of the masters.
        sub_hidden: hidden widths of the sub-policies.
        master_epsilon: see :class:`Masters`.
        normalize_obs: standardise observations with running statistics (off for inputs that are
            already well scaled, such as one-hot cells, whose rare entries would be blown up).
        sub_sharing: what the sub-policies share (``sub.sharing``; see :class:`SubPolicies`).
        hash_compression: ``sub.hash_compression``.
        sub_hidden_obs: ``sub.hidden_obs``, observation entries the sub-policies do not see (the masters and
            the normaliser see them all; see :class:`SubPolicies`).
        sub_init_log_std: ``sub.init_log_std`` (see :class:`SubPolicies`).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        num_subpolicies: int,
        num_slots: int,
        master_hidden: Sequence[int] = (64, 64),
        sub_hidden: Sequence[int] = (64, 64),
        master_epsilon: float = 0.0,
        normalize_obs: bool = True,
        sub_sharing: str = "separate",
        hash_compression: float | None = None,
        sub_hidden_obs: Sequence[int] = (),
        sub_init_log_std: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(observation_space, gym.spaces.Box):
            raise ConfigError(
                f"Observation space {observation_space} is not supported; MLSH needs a Box observation space "
                f"(wrap the env with gymnasium.wrappers.FlattenObservation)."
            )
        self.obs_dim = int(np.prod(observation_space.shape))
        self.action_space = action_space
        self.normalize_obs = normalize_obs
        self.obs_rms = RunningMeanStd((self.obs_dim,))
        self.subpolicies = SubPolicies(
            num_subpolicies,
            self.obs_dim,
            action_space,
            sub_hidden,
            sub_sharing,
            hash_compression,
            sub_hidden_obs,
            sub_init_log_std,
        )
        self.masters = Masters(num_slots, self.obs_dim, num_subpolicies, master_hidden, master_epsilon)

    @property
    def num_subpolicies(self) -> int:
        return self.subpolicies.num_subpolicies

    @property
    def num_slots(self) -> int:
        return self.masters.num_slots

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Flattens and normalises raw observations ``[..., *obs_shape] -> [..., obs_dim]``."""
        flat = obs.reshape(*obs.shape[: obs.dim() - len(self.obs_rms.mean.shape)], -1)
        return self.obs_rms(flat).float() if self.normalize_obs else flat.float()

    def frozen_normalizer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """:meth:`normalize` for flat float32 ``[..., obs_dim]`` inputs, with the statistics of now.

        For loops that normalise every step while the statistics stay put (a rollout): see
        :meth:`RunningMeanStd.frozen`.
        """
        if self.normalize_obs:
            return self.obs_rms.frozen()
        return lambda obs: obs

    @torch.no_grad()
    def choose_subpolicies(
        self, obs: torch.Tensor, deterministic: bool = False, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Samples each env's sub-policy from its slot's master.

        Args:
            obs: ``[M, E, obs_dim]`` normalised observations, E envs per slot.
            deterministic: each master's most likely choice instead of a sample.
            generator: the random stream of the draws (``None``: torch's global one).

        Returns:
            ``(sub_idx, logprob, value)``, each ``[M, E]``.
        """
        dist = self.masters.distribution(obs)
        if deterministic:
            sub_idx = dist.probs.argmax(-1)
        else:  # Categorical.sample's draw, with a choice of stream
            probs = dist.probs
            sub_idx = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, True, generator=generator)
            sub_idx = sub_idx.view(probs.shape[:-1])
        return sub_idx, dist.log_prob(sub_idx), self.masters.value(obs)

    def subpolicy_snapshot(self) -> SubPolicySnapshot:
        """The sub-policies with their current weights, for a loop of steps (a rollout)."""
        return SubPolicySnapshot(self.subpolicies)

    @torch.no_grad()
    def step(
        self,
        obs: torch.Tensor,
        sub_idx: torch.Tensor,
        decide: np.ndarray,
        subpolicies: SubPolicySnapshot,
        deterministic: bool = False,
        decide_t: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        master_deterministic: bool | None = None,
    ) -> PolicyStep:
        """One step of every env: each slot's master chooses where its env is at a decision point, then
        each env's active sub-policy acts (the one policy step of rollouts, agents, inspection and videos).

        Args:
            obs: ``[B, obs_dim]`` normalised observations, env b in slot ``b // (B / M)``.
            sub_idx: ``[B]`` long, the sub-policy active before this step.
            decide: ``[B]`` bool on the host, the envs whose master chooses now (:func:`advance_macro_clock`).
            subpolicies: :meth:`subpolicy_snapshot` of now.
            deterministic: most likely choices and actions instead of samples.
            decide_t: ``decide`` on ``obs``'s device, if the caller has it.
            generator: the random stream of the draws (``None``: torch's global one).
            master_deterministic: the masters' most likely choices (or samples) whatever ``deterministic`` says
                of the sub-policies' actions; ``None``: as ``deterministic``.
        """
        master_logprob = master_value = None
        greedy_master = deterministic if master_deterministic is None else master_deterministic
        if decide.any():
            if decide_t is None:
                decide_t = torch.as_tensor(decide, device=obs.device)
            choice, logprob, value = self.choose_subpolicies(
                obs.view(self.num_slots, -1, obs.shape[-1]), greedy_master, generator
            )
            sub_idx = torch.where(decide_t, choice.view(-1), sub_idx)
            master_logprob = torch.where(decide_t, logprob.view(-1), 0.0)
            master_value = torch.where(decide_t, value.view(-1), 0.0)
        action, logprob, value = subpolicies.act(obs, sub_idx, deterministic, generator)
        return PolicyStep(sub_idx, action, logprob, value, master_logprob, master_value)

    @torch.no_grad()
    def sub_value(self, obs: torch.Tensor, sub_idx: torch.Tensor) -> torch.Tensor:
        """Value of each env's sub-policy: ``obs [B, obs_dim]``, ``sub_idx [B]`` -> ``[B]``."""
        return self.subpolicies.value_indexed(obs, sub_idx)

    @torch.no_grad()
    def master_value(self, obs: torch.Tensor) -> torch.Tensor:
        """``[M, E, obs_dim] -> [M, E]``."""
        return self.masters.value(obs)
