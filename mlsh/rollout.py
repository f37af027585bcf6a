"""Collecting hierarchical rollouts from a Gymnasium vector env (knows nothing of the losses).

Env ``b`` of the vector env belongs to task slot ``b // envs_per_slot``. The vector env must use
``AutoresetMode.SAME_STEP``: the observation returned with an episode end is already the next
episode's first one, and the true final observation is in ``info["final_obs"]`` (needed to
bootstrap truncated episodes).

Host->device traffic (docs: scaling and GPU): each env step makes one upload. The next observation, reward,
terminated, truncated and the next step's decision mask (the macro clock lives on the host) are
packed into one flat float32 staging tensor and copied at once, then sliced on the device; one more
upload at rollout start carries the first observation, decision mask and active sub-policies. On
CUDA the staging tensor is pinned and copied with ``non_blocking=True``; two pinned buffers
alternate, and a CUDA event per buffer keeps a buffer from being refilled while its copy may still
be in flight. On a CPU device each upload is a fresh tensor (never a reused buffer: the batch keeps
slices of it). The raw observations stay on the device for the normaliser update; the only other
upload is the final observation of a truncated episode, needed to bootstrap it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from mlsh.envs import success_key
from mlsh.policy import HierarchicalPolicy, advance_macro_clock, merge_moments


class RolloutBatch(NamedTuple):
    """One iteration's data; every field is time-major ``[L, B, ...]`` unless noted."""

    obs: torch.Tensor  # [L, B, obs_dim] normalised with the statistics in force when collected
    actions: torch.Tensor  # [L, B] (discrete) or [L, B, act_dim]
    sub_idx: torch.Tensor  # [L, B] long, active sub-policy
    sub_logprob: torch.Tensor  # [L, B]
    sub_values: torch.Tensor  # [L, B] value of the active sub-policy
    rewards: torch.Tensor  # [L, B], times the collector's reward_scale
    terminated: torch.Tensor  # [L, B] bool
    truncated: torch.Tensor  # [L, B] bool
    sub_bootstrap: torch.Tensor  # [L, B] sub-policy value of the final obs where truncated
    decisions: torch.Tensor  # [L, B] bool, the master chose before this step
    master_logprob: torch.Tensor  # [L, B] where decisions
    master_values: torch.Tensor  # [L, B] where decisions
    master_bootstrap: torch.Tensor  # [L, B] master value of the final obs where truncated
    next_sub_values: torch.Tensor  # [B]
    next_master_values: torch.Tensor  # [B]


class EpisodeStats(NamedTuple):
    """Episodes completed during a rollout."""

    returns: np.ndarray  # [n] float
    lengths: np.ndarray  # [n] int
    slots: np.ndarray  # [n] int, slot of each episode
    # [m, 3]: (sub-policy, dx, dy) of each complete macro step, for envs that report the agent's
    # position as info["x_position"] / info["y_position"] (the Ant tasks, Gymnasium's locomotion envs)
    macro_moves: np.ndarray = np.zeros((0, 3))
    # [n] bool: whether each episode reached the goal, for envs whose step info has a boolean
    # ``goal_reached`` (AntObstacles, AntMaze); None where the env reported none during the rollout
    goals: np.ndarray | None = None


class RolloutCollector:
    """Steps a vector env with a :class:`HierarchicalPolicy`, keeping the macro clock across rollouts.

    The master decides for env b at every episode start and then every ``macro_len`` steps;
    an episode end is honoured at once (the next step is a new decision), unlike the original code,
    which let a sub-policy run on across episode boundaries.

    Args:
        vec_env: vector env with ``num_slots * envs_per_slot`` sub-envs and SAME_STEP autoreset.
        policy: the policy (its ``num_slots`` must equal ``num_slots``).
        envs_per_slot: E.
        macro_len: N.
        device: where the policy lives.
        reward_scale: multiplies the rewards stored for learning (the episode returns reported stay raw).
        reward_norm_gamma: when set, the rewards stored for learning are also divided by the running
            standard deviation of each env's discounted return with this discount (and clipped to
            ``[-10, 10]``), as Stable-Baselines3's ``VecNormalize`` does: returns of hundreds then
            reach the critics as returns of a few units, whatever the task's reward scale.
        merge_obs_stats: merges a rollout's raw observations ``[L * B, obs_dim]`` into the policy's
            normaliser (default ``policy.obs_rms.update``; several processes merge every process's).
    """

    def __init__(
        self,
        vec_env: gym.vector.VectorEnv,
        policy: HierarchicalPolicy,
        envs_per_slot: int,
        macro_len: int,
        device: torch.device,
        reward_scale: float = 1.0,
        reward_norm_gamma: float | None = None,
        merge_obs_stats: Callable[[torch.Tensor], None] | None = None,
    ) -> None:
        mode = vec_env.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(f"The vector env must use AutoresetMode.SAME_STEP, got {mode}.")
        if vec_env.num_envs != policy.num_slots * envs_per_slot:
            raise ValueError(
                f"The vector env has {vec_env.num_envs} envs but {policy.num_slots} slots x {envs_per_slot} "
                f"envs per slot were asked for."
            )
        self.vec_env = vec_env
        self.policy = policy
        self.num_slots = policy.num_slots
        self.envs_per_slot = envs_per_slot
        self.num_envs = vec_env.num_envs
        self.macro_len = macro_len
        self.reward_scale = reward_scale
        self.reward_norm_gamma = reward_norm_gamma
        self.merge_obs_stats = policy.obs_rms.update if merge_obs_stats is None else merge_obs_stats
        # Running mean, variance and count of the discounted returns (VecNormalize's ret_rms).
        self.return_mean, self.return_var, self.return_count = 0.0, 1.0, 1e-4
        self.discounted_return = np.zeros(self.num_envs)  # each env's, for reward normalisation
        self.macro_start_xy = np.full((self.num_envs, 2), np.nan)  # agent's x, y at the last decision
        self.device = torch.device(device)
        self.obs: np.ndarray | None = None
        self.clock = np.zeros(self.num_envs, dtype=np.int64)  # steps since the master's last decision
        self.sub_idx = np.zeros(self.num_envs, dtype=np.int64)
        self.episode_return = np.zeros(self.num_envs)
        self.episode_length = np.zeros(self.num_envs, dtype=np.int64)
        self.episode_goal = np.zeros(self.num_envs, dtype=bool)  # the running episode has reached the goal
        # Two pinned staging buffers used in turn, each with the event of its last copy (CUDA only).
        self._staging: list[torch.Tensor] = []
        self._copied: list[torch.cuda.Event] = []
        self._next_staging = 0

    # -- env control ---------------------------------------------------------------------------
    def reset(self, seed: int | None, tasks: list[Any]) -> None:
        """Sets one task per slot and resets every env (``seed`` seeds env b with ``seed + b``)."""
        self.vec_env.set_attr("task", [tasks[b // self.envs_per_slot] for b in range(self.num_envs)])
        self.obs, _ = self.vec_env.reset(seed=seed)
        self.clock[:] = 0
        self.episode_return[:] = 0.0
        self.episode_length[:] = 0
        self.episode_goal[:] = False
        self.discounted_return[:] = 0.0
        self.macro_start_xy[:] = np.nan

    def reset_slots(self, slots: list[int], tasks: list[Any]) -> None:
        """Gives ``slots`` new tasks and starts new episodes in their envs (others carry on)."""
        if not slots:
            return
        current = list(self.vec_env.get_attr("task"))
        mask = np.zeros(self.num_envs, dtype=bool)
        for slot, task in zip(slots, tasks, strict=True):
            envs = slice(slot * self.envs_per_slot, (slot + 1) * self.envs_per_slot)
            mask[envs] = True
            current[envs] = [task] * self.envs_per_slot
        self.vec_env.set_attr("task", current)
        # A masked reset returns every env's current observation, the reset ones' fresh.
        self.obs, _ = self.vec_env.reset(options={"reset_mask": mask})
        self.clock[mask] = 0
        self.episode_return[mask] = 0.0
        self.episode_length[mask] = 0
        self.episode_goal[mask] = False
        self.discounted_return[mask] = 0.0
        self.macro_start_xy[mask] = np.nan

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x), dtype=torch.float32, device=self.device)

    def _normalized(self, obs: np.ndarray) -> torch.Tensor:
        return self.policy.normalize(self._tensor(obs))

    def _host_staging(self, size: int) -> tuple[torch.Tensor, int | None]:
        """A host tensor of ``size`` float32 to fill, and the index of the pinned buffer it is (CUDA)."""
        if self.device.type != "cuda":
            return torch.empty(size, dtype=torch.float32), None
        if not self._staging or self._staging[0].numel() < size:
            for event in self._copied:
                event.synchronize()
            self._staging = [torch.empty(size, dtype=torch.float32, pin_memory=True) for _ in range(2)]
            self._copied = [torch.cuda.Event() for _ in range(2)]
        index = self._next_staging
        self._next_staging = 1 - index
        self._copied[index].synchronize()  # its previous copy has finished reading it
        return self._staging[index][:size], index

    def _upload(self, *arrays: np.ndarray) -> list[torch.Tensor]:
        """Copies host arrays with leading dimension B to the device in one transfer.

        Args:
            *arrays: each ``[B]`` or ``[B, ...]`` (any numeric or bool dtype).

        Returns:
            float32 device tensors, ``[B]`` for a ``[B]`` array and ``[B, n]`` (flattened) otherwise.
        """
        arrays = tuple(np.asarray(a) for a in arrays)
        sizes = [a.size for a in arrays]
        host, index = self._host_staging(sum(sizes))
        filled = host.numpy()
        offset = 0
        for a, size in zip(arrays, sizes, strict=True):
            filled[offset : offset + size] = a.reshape(-1)
            offset += size
        if index is None:
            staged = host.to(self.device)
        else:
            staged = host.to(self.device, non_blocking=True)
            self._copied[index].record(torch.cuda.current_stream(self.device))
        parts = torch.split(staged, sizes)
        return [p if a.ndim == 1 else p.view(self.num_envs, -1) for p, a in zip(parts, arrays, strict=True)]

    # -- collection ----------------------------------------------------------------------------
    @torch.inference_mode()
    def collect(
        self, rollout_len: int, update_obs_rms: bool = True, deterministic: bool = False
    ) -> tuple[RolloutBatch, EpisodeStats]:
        """Runs ``rollout_len`` steps in every env.

        Runs under ``torch.inference_mode``: the batch's tensors are inference tensors. Index them,
        copy them or feed them to networks; outside inference mode, do not modify them in place
        (``.clone()`` first).

        Args:
            rollout_len: L.
            update_obs_rms: merge the raw observations seen into the normaliser after collecting
                (off when evaluating frozen sub-policies).
            deterministic: masters and sub-policies take their most likely choices (evaluation
                only: the batch's log-probabilities are then those of the chosen actions, not samples).
        """
        if self.obs is None:
            raise RuntimeError("Call reset() before collect().")
        policy, device = self.policy, self.device
        num_envs, num_slots, per_slot = self.num_envs, self.num_slots, self.envs_per_slot
        obs_dim = policy.obs_dim
        discrete = policy.subpolicies.discrete
        act_shape = () if discrete else (policy.subpolicies.action_dim,)

        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(rollout_len, num_envs, *shape, dtype=dtype, device=device)

        obs_buf = zeros(obs_dim)
        raw_obs: list[torch.Tensor] = []  # [B, obs_dim] each, raw, on the device
        actions_buf = zeros(*act_shape, dtype=torch.long if discrete else torch.float32)
        sub_idx_buf = zeros(dtype=torch.long)
        sub_logprob, sub_values, rewards = zeros(), zeros(), zeros()
        terminated_buf, truncated_buf = zeros(dtype=torch.bool), zeros(dtype=torch.bool)
        sub_bootstrap, master_bootstrap = zeros(), zeros()
        decisions_buf = zeros(dtype=torch.bool)
        master_logprob, master_values = zeros(), zeros()
        episodes: list[tuple[float, int, int, bool]] = []  # (return, length, slot, goal) of each episode that ended
        reports_goal = False  # the env's step info carried ``goal_reached`` during this rollout
        macro_moves: list[np.ndarray] = []

        # float32 holds sub-policy indices exactly (K << 2**24).
        decide = self.clock == 0  # host copy of the decision mask; decide_t is its device twin
        raw_t, decide_t, sub_idx = self._upload(self.obs, decide, self.sub_idx)
        decide_t, sub_idx = decide_t != 0, sub_idx.long()
        # The weights and the normaliser's statistics change after the rollout only.
        normalize, subpolicies = policy.frozen_normalizer(), policy.subpolicy_snapshot()
        obs = normalize(raw_t)
        low = high = None
        if not discrete:
            space = self.vec_env.single_action_space
            low, high = space.low, space.high

        for t in range(rollout_len):
            raw_obs.append(raw_t)
            step = policy.step(obs, sub_idx, decide, subpolicies, deterministic, decide_t)
            sub_idx, action = step.sub_idx, step.action
            if step.master_logprob is not None:
                decisions_buf[t], master_logprob[t], master_values[t] = decide_t, step.master_logprob, step.master_value
            obs_buf[t], actions_buf[t], sub_idx_buf[t] = obs, action, sub_idx
            sub_logprob[t], sub_values[t] = step.logprob, step.value

            env_action = action.cpu().numpy()
            if not discrete:
                env_action = np.clip(env_action, low, high)
            next_obs, reward, terminated, truncated, info = self.vec_env.step(env_action)
            ended = terminated | truncated
            any_ended = bool(ended.any())
            if "x_position" in info and "y_position" in info:
                self._track_moves(info, ended, any_ended, sub_idx, macro_moves)
            goal_key = success_key(info)
            if goal_key is not None:
                reports_goal = True
                self._track_goals(info, goal_key, ended, any_ended)
            self.clock = advance_macro_clock(self.clock, self.macro_len, ended)
            decide = self.clock == 0
            raw_t, reward_t, terminated_t, truncated_t, decide_t = self._upload(
                next_obs, reward, terminated, truncated, decide
            )
            terminated_t, truncated_t, decide_t = terminated_t != 0, truncated_t != 0, decide_t != 0
            rewards[t], terminated_buf[t], truncated_buf[t] = reward_t, terminated_t, truncated_t
            cut = truncated & ~terminated  # a terminal state has no value to bootstrap from
            if cut.any():
                cut_t = truncated_t & ~terminated_t
                sub_bootstrap[t], master_bootstrap[t] = self._bootstrap(info, next_obs, cut, cut_t, sub_idx)
            self._count_episodes(reward, ended, any_ended, episodes)
            self.obs = next_obs
            obs = normalize(raw_t)

        next_sub_values = policy.sub_value(obs, sub_idx)
        next_master_values = policy.master_value(obs.view(num_slots, per_slot, obs_dim)).view(-1)
        self.sub_idx = sub_idx.cpu().numpy()
        if self.reward_scale != 1.0:
            rewards.mul_(self.reward_scale)  # once per rollout, not per step: same products
        if self.reward_norm_gamma is not None:
            self._normalize_rewards(rewards, terminated_buf | truncated_buf)
        if update_obs_rms:
            self.merge_obs_stats(torch.stack(raw_obs).reshape(-1, obs_dim))
        batch = RolloutBatch(
            obs=obs_buf,
            actions=actions_buf,
            sub_idx=sub_idx_buf,
            sub_logprob=sub_logprob,
            sub_values=sub_values,
            rewards=rewards,
            terminated=terminated_buf,
            truncated=truncated_buf,
            sub_bootstrap=sub_bootstrap,
            decisions=decisions_buf,
            master_logprob=master_logprob,
            master_values=master_values,
            master_bootstrap=master_bootstrap,
            next_sub_values=next_sub_values,
            next_master_values=next_master_values,
        )
        stats = EpisodeStats(
            np.array([ret for ret, _, _, _ in episodes]),
            np.array([length for _, length, _, _ in episodes], dtype=np.int64),
            np.array([slot for _, _, slot, _ in episodes], dtype=np.int64),
            np.concatenate(macro_moves) if macro_moves else np.zeros((0, 3)),
            np.array([goal for _, _, _, goal in episodes], dtype=bool) if reports_goal else None,
        )
        return batch, stats

    def _bootstrap(
        self, info: dict[str, Any], next_obs: np.ndarray, cut: np.ndarray, cut_t: torch.Tensor, sub_idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Values ``[B]`` of the true final observations of the episodes that were ``cut`` (truncated, not
        terminated) at both levels, the active sub-policy's and the slot master's; 0 elsewhere."""
        policy = self.policy
        final = np.stack([info["final_obs"][b] if cut[b] else next_obs[b] for b in range(self.num_envs)])
        final_obs = self._normalized(final)
        sub = torch.where(cut_t, policy.sub_value(final_obs, sub_idx), 0.0)
        master = policy.master_value(final_obs.view(self.num_slots, self.envs_per_slot, policy.obs_dim)).view(-1)
        return sub, torch.where(cut_t, master, 0.0)

    def _count_episodes(
        self, reward: np.ndarray, ended: np.ndarray, any_ended: bool, episodes: list[tuple[float, int, int, bool]]
    ) -> None:
        """Adds this step to each env's running episode and appends ``(return, length, slot, goal)`` of those
        that ended (``goal``: the episode reached the goal, see :meth:`_track_goals`)."""
        self.episode_return += reward
        self.episode_length += 1
        if any_ended:
            for b in np.flatnonzero(ended):
                episodes.append(
                    (
                        float(self.episode_return[b]),
                        int(self.episode_length[b]),
                        b // self.envs_per_slot,
                        bool(self.episode_goal[b]),
                    )
                )
            self.episode_return[ended] = 0.0
            self.episode_length[ended] = 0
            self.episode_goal[ended] = False

    def _track_goals(self, info: dict[str, Any], key: str, ended: np.ndarray, any_ended: bool) -> None:
        """ORs this step's ``info[key]`` (:func:`mlsh.envs.success_key`: ``goal_reached`` for the Ant tasks) into
        each env's running-episode flag.

        With SAME_STEP autoreset the info of an env whose episode just ended describes the next
        episode's start; its last step's info is in ``info["final_info"]`` (Gymnasium's vector layout:
        values ``[B]`` and ``_key`` masks), so that is read for the envs that ended.
        """
        reached = _flag(info, key, self.num_envs)
        final = info.get("final_info") if any_ended else None
        if final is not None and key in final:
            reached = np.where(ended, _flag(final, key, self.num_envs), reached)
        self.episode_goal |= reached

    def _track_moves(
        self,
        info: dict[str, Any],
        ended: np.ndarray,
        any_ended: bool,
        sub_idx: torch.Tensor,
        moves: list[np.ndarray],
    ) -> None:
        """Appends ``(sub-policy, dx, dy)`` for each macro step that this env step completes.

        Called after the step and before the macro clock advances. Only complete macro steps count
        (``macro_len`` steps under one sub-policy, from a known start position), so that each
        sub-policy's mean displacement per macro step is comparable across episodes and runs.
        """
        xy = np.stack([np.asarray(info["x_position"], float), np.asarray(info["y_position"], float)], axis=1)
        end_xy = xy
        final = info.get("final_info") if any_ended else None
        if final is not None and "x_position" in final:
            end_xy = xy.copy()
            final_xy = np.stack([np.asarray(final["x_position"], float), np.asarray(final["y_position"], float)], 1)
            end_xy[ended] = final_xy[ended]
        complete = (self.clock + 1 == self.macro_len) & ~np.isnan(self.macro_start_xy[:, 0])
        if complete.any():
            active = sub_idx.cpu().numpy()[complete].astype(float)
            moves.append(np.column_stack([active, end_xy[complete] - self.macro_start_xy[complete]]))
        # The next macro step starts where this one ended, or at the new episode's first position.
        starts = (self.clock + 1 == self.macro_len) | ended
        self.macro_start_xy[starts] = xy[starts]

    def _normalize_rewards(self, rewards: torch.Tensor, ended: torch.Tensor) -> None:
        """Divides ``rewards`` (``[L, B]``, in place) by the running std of the discounted returns.

        The statistics first take in this rollout's discounted returns (each env's running sum,
        restarted at its episode ends), then every reward of the rollout is scaled by the same
        factor, so that an iteration's advantages and value targets share one scale. The std is
        taken around the returns' running mean, as Stable-Baselines3's ``VecNormalize`` does (not
        their root mean square, which a large mean return, e.g. Ant's healthy reward, would inflate).
        """
        gamma = self.reward_norm_gamma
        raw, ends = rewards.cpu().numpy().astype(np.float64), ended.cpu().numpy()
        returns = np.empty_like(raw)
        running = self.discounted_return
        for t in range(raw.shape[0]):
            running = running * gamma + raw[t]
            returns[t] = running
            running = np.where(ends[t], 0.0, running)
        self.discounted_return = running
        batch = (float(returns.mean()), float(returns.var()), returns.size)
        self.return_mean, self.return_var, self.return_count = merge_moments(
            self.return_mean, self.return_var, self.return_count, *batch
        )
        rewards.div_(float(np.sqrt(self.return_var + 1e-8))).clamp_(-10.0, 10.0)

    # -- checkpointing -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "return_mean": self.return_mean,
            "return_var": self.return_var,
            "return_count": self.return_count,
            "discounted_return": self.discounted_return.copy(),
            "macro_start_xy": self.macro_start_xy.copy(),
            "obs": None if self.obs is None else np.copy(self.obs),
            "clock": self.clock.copy(),
            "sub_idx": self.sub_idx.copy(),
            "episode_return": self.episode_return.copy(),
            "episode_length": self.episode_length.copy(),
            "episode_goal": self.episode_goal.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.obs = state["obs"]
        self.clock = state["clock"].copy()
        self.sub_idx = state["sub_idx"].copy()
        self.episode_return = state["episode_return"].copy()
        self.episode_length = state["episode_length"].copy()
        # Runs saved before reward normalisation existed have no statistics: they start afresh. Runs saved
        # before the mean was kept (scaled by the root mean square) carry on with their statistics about 0.
        self.return_mean = state.get("return_mean", 0.0)
        self.return_var = state.get("return_var", 1.0)
        self.return_count = state.get("return_count", 1e-4)
        self.discounted_return = state.get("discounted_return", np.zeros(self.num_envs)).copy()
        self.macro_start_xy = state.get("macro_start_xy", np.full((self.num_envs, 2), np.nan)).copy()
        self.episode_goal = state.get("episode_goal", np.zeros(self.num_envs, dtype=bool)).copy()


def _flag(info: dict[str, Any], key: str, num_envs: int) -> np.ndarray:
    """``info[key]`` as ``[num_envs]`` bools, False where its ``_key`` mask says the env did not report it."""
    values = np.asarray(info[key], dtype=bool).reshape(num_envs)
    mask = info.get(f"_{key}")
    return values if mask is None else values & np.asarray(mask, dtype=bool)
