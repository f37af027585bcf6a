"""The MLSH meta-learning loop over M task slots (paper, Algorithm 1).

Each slot has its own task and master. At the start of a slot's cycle the slot samples a task and
its master is re-initialised together with its optimizer state; the slot then runs
``warmup_iters`` iterations updating only its master, followed by ``joint_iters`` iterations in
which its data also updates the shared sub-policies (after the master, on the same data). When each
slot's cycle starts is :class:`mlsh.schedule.SlotSchedule`'s to say.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from mlsh.checks import task_family
from mlsh.config import Config
from mlsh.distributed import DistContext, merge_rms_batches, rank_seed
from mlsh.envs import TaskVectorEnv, make_env, make_vec_env
from mlsh.errors import ConfigError
from mlsh.gae import compute_gae, compute_macro_gae
from mlsh.networks import MemberAdam
from mlsh.policy import HierarchicalPolicy
from mlsh.rollout import EpisodeStats, RolloutBatch, RolloutCollector
from mlsh.schedule import SlotSchedule, TaskDeck
from mlsh.threads import update_threads
from mlsh.update import LevelData, ppo_update, sharded_ppo_update

log = logging.getLogger("mlsh")

# Task families with at most this many integer tasks get per-task TensorBoard scalars.
MAX_TASK_SCALARS = 8

# Spawn keys of the task-sampling streams: evaluation never sees training's tasks' stream.
TRAIN_TASK_STREAM = 0
EVAL_TASK_STREAM = 1


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU.

    Raises:
        ConfigError: a CUDA device is asked for and none is visible.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device} but this machine has no usable CUDA GPU; set device=cpu or device=auto.")
    return torch.device(device)


def task_rng(seed: int, stream: int) -> np.random.Generator:
    """The task-sampling generator of a run; different streams never share draws."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))


def slot_task_rng(seed: int, stream: int, slot: int) -> np.random.Generator:
    """The task-sampling generator of global slot ``slot`` (multi-process runs: the same for any P)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, slot)))


class MetaLearner:
    """Owns the vector env, the policy, both optimizers and the slot schedule.

    Args:
        cfg: validated settings.
        fixed_tasks: one task per slot, kept forever (evaluation); ``None`` samples tasks.
        train_subpolicies: update the sub-policies in joint iterations (off to evaluate frozen ones).
        update_obs_rms: keep updating the observation normaliser (off with frozen sub-policies).
        dist: this process's place in a multi-process run (``mlsh.distributed``): it owns
            ``cfg.mlsh.num_slots / world_size`` of the run's slots, each slot draws its tasks from its own
            stream, and sub-policies and normaliser are updated with every process's data.
            ``None``: one plain process (one task stream for all slots).
    """

    def __init__(
        self,
        cfg: Config,
        fixed_tasks: list[Any] | None = None,
        train_subpolicies: bool = True,
        update_obs_rms: bool = True,
        dist: DistContext | None = None,
    ) -> None:
        self.cfg = cfg
        m = cfg.mlsh
        self.dist = dist
        # This process's slots are the global slots [slot_offset, slot_offset + num_local_slots).
        self.slot_offset, self.num_local_slots = (0, m.num_slots) if dist is None else dist.local_slots(m.num_slots)
        self.device = resolve_device(cfg.device)
        if dist is not None:
            self.device = dist.device(self.device)
        torch.manual_seed(cfg.seed)
        self.task_env = make_env(cfg.env)
        self.vec_env = make_vec_env(cfg.env, self.num_local_slots * cfg.train.envs_per_slot)
        self.policy = HierarchicalPolicy(
            self.vec_env.single_observation_space,
            self.vec_env.single_action_space,
            num_subpolicies=m.num_subpolicies,
            num_slots=self.num_local_slots,
            master_hidden=cfg.master.hidden_sizes,
            sub_hidden=cfg.sub.hidden_sizes,
            master_epsilon=m.master_epsilon,
            normalize_obs=cfg.train.normalize_obs,
            sub_sharing=cfg.sub.sharing,
            hash_compression=cfg.sub.hash_compression,
            sub_hidden_obs=cfg.sub.hidden_obs,
            sub_init_log_std=cfg.sub.init_log_std,
        ).to(self.device)
        self.master_optimizer = MemberAdam(self.policy.masters.parameters(), lr=cfg.master.lr)
        self.sub_optimizer = MemberAdam(self.policy.subpolicies.parameters(), lr=cfg.sub.lr)
        self.collector = RolloutCollector(
            self.vec_env,
            self.policy,
            cfg.train.envs_per_slot,
            m.macro_len,
            self.device,
            cfg.train.reward_scale,
            reward_norm_gamma=cfg.sub.gamma if cfg.train.normalize_reward else None,
            merge_obs_stats=None if dist is None else self._merge_obs_stats,
        )
        if fixed_tasks is not None and len(fixed_tasks) != self.num_local_slots:
            raise ValueError(f"fixed_tasks has {len(fixed_tasks)} tasks for {self.num_local_slots} slots.")
        self.fixed_tasks = fixed_tasks
        self.train_subpolicies = train_subpolicies
        self.update_obs_rms = update_obs_rms
        self.task_rng = task_rng(cfg.seed, TRAIN_TASK_STREAM)
        self.slot_task_rngs: list[np.random.Generator] = []
        if dist is not None:
            self.slot_task_rngs = [
                slot_task_rng(cfg.seed, TRAIN_TASK_STREAM, self.slot_offset + slot)
                for slot in range(self.num_local_slots)
            ]
            # Replicas start from rank 0's copy; each rank then samples from its own torch stream.
            dist.broadcast_module(self.policy.subpolicies)
            dist.broadcast_module(self.policy.obs_rms)
            torch.manual_seed(rank_seed(cfg.seed, dist.rank))
        # The env's finite task family (envs.base.TaskEnv.train_tasks), None where it has none.
        family = task_family(self.task_env, cfg.env.id, cfg.mlsh.task_sampling)
        self.task_decks = self._task_decks(family)
        self.one_task = family is not None and len(family) == 1
        self.reinit = m.reinit_share is not None and m.num_subpolicies > 1  # one sub-policy: nothing to redraw
        if self.reinit and (dist is not None or cfg.sub.sharing != "separate" or m.warmup_iters + m.joint_iters < 2):
            # Several processes would each draw the fresh weights from their own torch stream, shared weights
            # cannot be reset for one sub-policy alone, and a one-iteration cycle ends before its master has
            # learned anything to prefer: the setting is off there.
            log.warning(
                "mlsh.reinit_share=%s is off: it needs one process, sub.sharing=separate and cycles of 2 or more "
                "iterations (docs: results, bandits).",
                m.reinit_share,
            )
            self.reinit = False
        # Each finished cycle's decision shares per sub-policy (mlsh.reinit_share), since the last check.
        self.cycle_shares: list[list[float]] = []
        self.reinits = 0
        self.reinit_exempt = -1  # the sub-policy reset at the last check, exempt from the next one
        self.schedule = SlotSchedule.from_config(m)
        self.tasks: list[Any] = [None] * self.num_local_slots
        self.iteration = 0
        self.gradient_steps = 0
        self.last_episodes = EpisodeStats(np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))

    @property
    def timesteps(self) -> int:
        """Env steps collected so far, all slots together."""
        return self.iteration * self.cfg.steps_per_iteration

    def _merge_obs_stats(self, raw_obs: torch.Tensor) -> None:
        """Merges every process's rollout observations into the (replicated) normaliser."""
        assert self.dist is not None
        merge_rms_batches(self.policy.obs_rms, [raw_obs], self.dist)

    # -- schedule ------------------------------------------------------------------------------
    def cycle_position(self, slot: int, iteration: int | None = None) -> int:
        """Iterations since local slot ``slot``'s last master reset (0 = reset at the start of this iteration)."""
        return self.schedule.position(self.slot_offset + slot, self.iteration if iteration is None else iteration)

    def in_joint_phase(self, slot: int) -> bool:
        """Whether local slot ``slot``'s data trains the sub-policies in this iteration."""
        return self.schedule.in_joint_phase(self.slot_offset + slot, self.iteration)

    def reset_master(self, slot: int) -> None:
        """Re-initialises ``slot``'s master and drops its Adam state (moments and step count)."""
        self.policy.masters.reset_member(slot)
        self.master_optimizer.reset_member(slot)

    def _task_decks(self, family: list[Any] | None) -> list[TaskDeck]:
        """With ``mlsh.task_sampling=balanced`` (or ``auto`` and a finite ``family``): one deck of the env's task
        ``family`` over every slot (each slot its own where several processes run), dealt with the task
        generators; else none."""
        if self.cfg.mlsh.task_sampling == "iid" or family is None:  # balanced without a family: task_family refused
            return []
        return [TaskDeck(family, rng) for rng in (self.slot_task_rngs or [self.task_rng])]

    def _new_task(self, slot: int) -> Any:
        if self.fixed_tasks is not None:
            return self.fixed_tasks[slot]
        if self.task_decks:
            return self.task_decks[slot if self.slot_task_rngs else 0].draw()
        rng = self.slot_task_rngs[slot] if self.slot_task_rngs else self.task_rng
        return self.task_env.unwrapped.sample_task(rng)

    def start(self) -> None:
        """Draws the first tasks and resets the envs, as the first iteration does, unless an iteration
        has run; for measuring a policy that may not have trained (evaluation with ``adapt_iters=0``)."""
        if self.iteration == 0:
            self.begin_iteration()

    def begin_iteration(self) -> list[int]:
        """Starts new tasks where a cycle begins; returns the slots that were reset.

        :meth:`train_iteration` calls it first; scripts call it alone (then advance ``iteration``) to see
        which tasks a run's slots get without training (``scripts/joint_tasks.py``).
        """
        num_slots = self.num_local_slots
        if self.iteration == 0:
            slots = list(range(num_slots))
            self.tasks = [self._new_task(slot) for slot in slots]
            for slot in slots:
                self.reset_master(slot)
            # Env b of global slot s is seeded seed + s * envs_per_slot + (b mod envs_per_slot), whatever P is.
            self.collector.reset(self.cfg.seed + self.slot_offset * self.cfg.train.envs_per_slot, self.tasks)
            return slots
        slots = [slot for slot in range(num_slots) if self.cycle_position(slot) == 0]
        new_tasks = []
        for slot in slots:
            self.tasks[slot] = self._new_task(slot)
            new_tasks.append(self.tasks[slot])
            self.reset_master(slot)
        if not self.one_task:
            # A new task starts new episodes. With a one-task family (a plain Gymnasium env) the task cannot
            # change: the episodes run on (under the fresh master from its next decision), as a flat PPO's
            # would, instead of being cut at every cycle (every iteration with algo=flat_ppo).
            self.collector.reset_slots(slots, new_tasks)
        return slots

    # -- one iteration -------------------------------------------------------------------------
    def train_iteration(self) -> dict[str, float]:
        """Collects one rollout in every slot and updates masters, then (joint slots) sub-policies."""
        cfg = self.cfg
        self.begin_iteration()
        joint = [self.in_joint_phase(slot) for slot in range(self.num_local_slots)]
        positions = [self.cycle_position(slot) for slot in range(self.num_local_slots)]
        batch, stats = self.collector.collect(cfg.train.rollout_len, update_obs_rms=self.update_obs_rms)
        self.last_episodes = stats
        metrics = self._rollout_metrics(batch, stats, positions)
        with update_threads(self.cfg.train.update_threads, self.device):
            metrics.update(self.update(batch, joint))
        if self.reinit:
            metrics.update(self._reinit_unserved(batch, positions))
        self.gradient_steps += int(metrics.get("master/gradient_steps", 0) + metrics.get("sub/gradient_steps", 0))
        metrics["train/n_updates"] = float(self.gradient_steps)
        metrics["train/learning_rate"] = self.sub_lr()
        metrics["train/master_learning_rate"] = self.cfg.master.lr
        sub_slots = sum(joint) if self.train_subpolicies else 0  # this process's slots
        metrics["train/subpolicy_samples"] = float(
            sub_slots * self.cfg.train.envs_per_slot * self.cfg.train.rollout_len
        )
        if self.dist is not None:  # episodes and sub-policy samples of every process (rank 0 logs them)
            goals = 0.0 if stats.goals is None else float(stats.goals.sum())
            samples = metrics["train/subpolicy_samples"]
            local = [stats.returns.sum(), stats.lengths.sum(), len(stats.returns), samples, goals]
            totals = self.dist.all_reduce(torch.tensor(np.asarray(local, dtype=np.float64), device=self.device))
            ret_sum, len_sum, episodes, samples, goal_sum = totals.tolist()
            if episodes:
                metrics["rollout/ep_rew_mean"] = ret_sum / episodes
                metrics["rollout/ep_len_mean"] = len_sum / episodes
                if stats.goals is not None:  # the same env on every process
                    metrics["rollout/success_rate"] = goal_sum / episodes
            metrics["train/subpolicy_samples"] = samples
        self.iteration += 1
        return metrics

    def update(self, batch: RolloutBatch, joint: list[bool]) -> dict[str, float]:
        """PPO on every slot's master; PPO on the sub-policies with the joint slots' data."""
        num_steps, num_envs = batch.rewards.shape
        metrics = {f"master/{key}": value for key, value in self._update_masters(batch).items()}
        slot_of_env = torch.arange(num_envs, device=self.device) // self.cfg.train.envs_per_slot
        joint_envs = torch.tensor(joint, device=self.device)[slot_of_env].expand(num_steps, num_envs)
        # Several processes: each takes part in the sub-policy update when any global slot is in its joint phase.
        any_joint = bool(joint_envs.any()) if self.dist is None else self.schedule.any_joint(self.iteration)
        if self.train_subpolicies and any_joint:
            lr = self.sub_lr()
            for group in self.sub_optimizer.param_groups:
                group["lr"] = lr
            sub_metrics = self._update_subpolicies(batch, joint_envs)
            metrics.update({f"sub/{key}": value for key, value in sub_metrics.items()})
        return metrics

    def _reinit_unserved(self, batch: RolloutBatch, positions: list[int]) -> dict[str, float]:
        """Records the decision shares of the slots whose cycle ends with this iteration; once
        ``mlsh.reinit_window`` cycles are in (and ``mlsh.reinit_after`` env steps have run), re-initialises a
        sub-policy that serves no task, if one does, and starts a new window.

        At the end of its cycle a slot's master has trained on its task for W + U - 1 iterations; where it
        chooses one sub-policy for at least ``mlsh.reinit_share`` of its decisions, that sub-policy serves the
        task. A sub-policy serves tasks if it does so in at least 1 / (2K) of the window's last cycles (half
        its share of K, so that a master that drifts between two equally useless sub-policies does not count).
        One that serves none is dead weight: on MovementBandits' failing seeds both sub-policies go to one goal
        and the masters of the other goal's tasks stay undecided (docs: results, bandits). Of several such, the
        one chosen least is reset, and is exempt from the next check, so that masters have a window to take
        it up. A fresh sub-policy is random again: the masters of the tasks that the others serve badly prefer
        it. Returns ``meta/reinits`` (the run's count so far).
        """
        m = self.cfg.mlsh
        num_subs, per_slot = m.num_subpolicies, self.cfg.train.envs_per_slot
        for slot, position in enumerate(positions):
            if position != self.schedule.cycle_len - 1:
                continue
            envs = slice(slot * per_slot, (slot + 1) * per_slot)
            decided = batch.decisions[:, envs]
            picks = batch.sub_idx[:, envs][decided]
            if picks.numel():
                shares = torch.bincount(picks, minlength=num_subs).double() / picks.numel()
                self.cycle_shares.append(shares.tolist())
        self.cycle_shares = self.cycle_shares[-m.reinit_window :]
        if len(self.cycle_shares) < m.reinit_window or self.timesteps < m.reinit_after:
            return {"meta/reinits": float(self.reinits)}
        shares = np.asarray(self.cycle_shares)  # [window, K]
        self.cycle_shares = []
        serving = (shares >= m.reinit_share).mean(axis=0)  # share of the window's cycles each one serves
        unserved = [k for k in np.flatnonzero(serving < 1.0 / (2 * num_subs)) if k != self.reinit_exempt]
        self.reinit_exempt = -1
        if unserved:
            member = int(min(unserved, key=lambda k: (shares[:, k].sum(), k)))
            self.policy.subpolicies.reset_member(member)
            self.sub_optimizer.reset_member(member)
            self.reinits += 1
            self.reinit_exempt = member
            log.info(
                "Re-initialised sub-policy %d: masters chose it for %.0f%% of their decisions in %.0f%% of the "
                "last %d cycles (mlsh.reinit_share).", member, 100 * m.reinit_share, 100 * serving[member],
                len(shares),
            )  # fmt: skip
        return {"meta/reinits": float(self.reinits)}

    def sub_lr(self) -> float:
        """The sub-policies' learning rate at this iteration: ``sub.lr``, on its linear ramp from
        ``sub.lr_ramp_start * sub.lr`` over the first ``sub.lr_ramp_steps`` env steps, then on its linear fall to
        ``sub.lr_end * sub.lr`` at ``train.total_timesteps``."""
        ppo = self.cfg.sub
        if ppo.lr_ramp_steps > 0 and self.timesteps < ppo.lr_ramp_steps:
            return ppo.lr * (ppo.lr_ramp_start + (1.0 - ppo.lr_ramp_start) * self.timesteps / ppo.lr_ramp_steps)
        fall = max(self.cfg.train.total_timesteps - ppo.lr_ramp_steps, 1)
        done = min(max(self.timesteps - ppo.lr_ramp_steps, 0) / fall, 1.0)
        return ppo.lr * (1.0 - (1.0 - ppo.lr_end) * done)

    def _slots(self, batch: RolloutBatch) -> torch.Tensor:
        """``[L, B]``: the local slot of every sample."""
        num_steps, num_envs = batch.rewards.shape
        slot_of_env = torch.arange(num_envs, device=self.device) // self.cfg.train.envs_per_slot
        return slot_of_env.expand(num_steps, num_envs)

    def _update_masters(self, batch: RolloutBatch) -> dict[str, float]:
        """PPO on every slot's master, on its decisions (macro-step GAE)."""
        cfg, masters = self.cfg, self.policy.masters
        b, ppo = batch, cfg.master
        adv, ret = compute_macro_gae(
            b.rewards, b.decisions, b.master_values, b.terminated, b.truncated, b.master_bootstrap,
            b.next_master_values, ppo.gamma, ppo.gae_lambda,
        )  # fmt: skip
        fields = (batch.obs, batch.sub_idx, batch.master_logprob, batch.master_values, adv, ret, self._slots(batch))
        data = LevelData(*(x[batch.decisions] for x in fields))

        def evaluate(obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
            dist = masters.distribution(obs)
            return dist.log_prob(actions), dist.entropy(), masters.value(obs)

        return ppo_update(data, self.num_local_slots, evaluate, self.master_optimizer, cfg.master, "master")

    def _update_subpolicies(self, batch: RolloutBatch, joint_envs: torch.Tensor) -> dict[str, float]:
        """PPO on the sub-policies with the samples of the joint slots (``joint_envs [L, B]``), in one process or
        sharded by global slot over several."""
        cfg, subs = self.cfg, self.policy.subpolicies
        b, ppo = batch, cfg.sub
        adv, ret = compute_gae(
            b.rewards, b.sub_values, b.terminated, b.truncated, b.sub_bootstrap, b.next_sub_values, ppo.gamma,
            ppo.gae_lambda,
        )  # fmt: skip
        j = joint_envs
        data = LevelData(
            *(x[j] for x in (batch.obs, batch.actions, batch.sub_logprob, batch.sub_values, adv, ret)), batch.sub_idx[j]
        )

        def evaluate(obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
            dist = subs.distribution(obs)
            logprob, entropy = subs.log_prob_entropy(dist, actions)
            return logprob, entropy, subs.value(obs)

        num_subs, per_slot_norm = cfg.mlsh.num_subpolicies, cfg.mlsh.sub_adv_norm_per_slot
        if self.dist is None:
            num_slots = self.num_local_slots
            norm_groups = None
            if per_slot_norm:  # (sub-policy, slot) cells
                norm_groups = (data.group_ids * num_slots + self._slots(batch)[j], num_subs * num_slots)
            return ppo_update(data, num_subs, evaluate, self.sub_optimizer, cfg.sub, "sub", norm_groups=norm_groups)
        # Samples are identified globally (step t, global env) and sharded by global slot, so the update is the
        # same whatever the number of processes (mlsh.update.sharded_ppo_update).
        num_steps, num_envs = batch.rewards.shape
        per_slot = cfg.train.envs_per_slot
        global_env = self.slot_offset * per_slot + torch.arange(num_envs, device=self.device)
        sample_ids = torch.arange(num_steps, device=self.device).view(-1, 1) * cfg.mlsh.num_slots * per_slot
        return sharded_ppo_update(
            data,
            shard_ids=(global_env // per_slot).expand(num_steps, num_envs)[j],
            sample_ids=(sample_ids + global_env)[j],
            salt=cfg.seed * 1_000_003 + self.iteration,
            num_groups=num_subs,
            num_shards=cfg.mlsh.num_slots,
            evaluate=evaluate,
            optimizer=self.sub_optimizer,
            cfg=cfg.sub,
            level="sub",
            reduce=self.dist.all_reduce,
            norm_per_shard=per_slot_norm,
        )

    def _rollout_metrics(self, batch: RolloutBatch, stats: EpisodeStats, positions: list[int]) -> dict[str, float]:
        warmup = self.cfg.mlsh.warmup_iters
        metrics: dict[str, float] = {}
        if len(stats.returns):
            metrics["rollout/ep_rew_mean"] = float(stats.returns.mean())
            metrics["rollout/ep_len_mean"] = float(stats.lengths.mean())
            if stats.goals is not None:  # envs that say when the goal is reached (AntMaze): SB3's scalar
                metrics["rollout/success_rate"] = float(stats.goals.mean())
            pos = np.asarray(positions)[stats.slots]
            for name, sel in (("warmup", pos < warmup), ("joint", pos >= warmup), ("after_warmup", pos == warmup)):
                if sel.any():
                    metrics[f"meta/ep_rew_{name}"] = float(stats.returns[sel].mean())
        chosen = batch.sub_idx[batch.decisions]
        if chosen.numel():
            usage = torch.bincount(chosen, minlength=self.cfg.mlsh.num_subpolicies).float() / chosen.numel()
            for k, share in enumerate(usage.tolist()):
                metrics[f"meta/sub_usage_{k}"] = share
        metrics["meta/slots_joint"] = float(sum(p >= warmup for p in positions))
        metrics.update(self._per_task_metrics(batch, stats, positions))
        for k in range(self.cfg.mlsh.num_subpolicies):
            moves = stats.macro_moves[stats.macro_moves[:, 0] == k, 1:]
            if len(moves):  # envs that report the agent's position: how far and where each sub-policy goes
                mean = moves.mean(axis=0)
                metrics[f"meta/sub_move_{k}"] = float(np.hypot(*mean))
                metrics[f"meta/sub_heading_{k}"] = float(np.degrees(np.arctan2(mean[1], mean[0])))
        return metrics

    def _per_task_metrics(self, batch: RolloutBatch, stats: EpisodeStats, positions: list[int]) -> dict[str, float]:
        """For task families of a few integer tasks (MovementBandits' paying goal): each task's return in
        the joint slots, ``meta/ep_rew_joint_task<t>``, and each sub-policy's share of the decisions in slots
        of that task, ``meta/sub_usage_task<t>_<k>``. Where one sub-policy serves every task, the returns
        of one task fall while the overall usage still looks balanced (see docs/results/bandits.md)."""
        tasks = self.tasks
        if not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in tasks):
            return {}
        labels = sorted({int(t) for t in tasks})
        if len(labels) > MAX_TASK_SCALARS:
            return {}
        metrics: dict[str, float] = {}
        slot_task = np.asarray([int(t) for t in tasks])
        if len(stats.returns):
            joint = np.asarray(positions)[stats.slots] >= self.cfg.mlsh.warmup_iters
            episode_task = slot_task[stats.slots]
            for t in labels:
                sel = joint & (episode_task == t)
                if sel.any():
                    metrics[f"meta/ep_rew_joint_task{t}"] = float(stats.returns[sel].mean())
        env_task = torch.as_tensor(np.repeat(slot_task, self.cfg.train.envs_per_slot), device=batch.sub_idx.device)
        chosen = batch.sub_idx[batch.decisions]
        chosen_task = env_task.expand_as(batch.sub_idx)[batch.decisions]
        for t in labels:
            picks = chosen[chosen_task == t]
            if picks.numel():
                usage = torch.bincount(picks, minlength=self.cfg.mlsh.num_subpolicies).float() / picks.numel()
                for k, share in enumerate(usage.tolist()):
                    metrics[f"meta/sub_usage_task{t}_{k}"] = share
        return metrics

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the run stopped."""
        # The vector env saves its copies (TaskVectorEnv: each copy's state; the batched Ant envs: their
        # physics state).
        save_envs = getattr(self.vec_env, "state_dict", None)
        env_states: list[bytes] | dict[str, Any] | None = save_envs() if callable(save_envs) else None
        return {
            "iteration": self.iteration,
            "gradient_steps": self.gradient_steps,
            "policy": self.policy.state_dict(),
            "master_optimizer": self.master_optimizer.state_dict(),
            "sub_optimizer": self.sub_optimizer.state_dict(),
            "tasks": list(self.tasks),
            "task_rng": self.task_rng.bit_generator.state,
            "slot_task_rngs": [rng.bit_generator.state for rng in self.slot_task_rngs],
            "task_decks": [deck.state_dict() for deck in self.task_decks],
            "cycle_shares": [list(row) for row in self.cycle_shares],
            "reinits": self.reinits,
            "reinit_exempt": self.reinit_exempt,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "collector": self.collector.state_dict(),
            "env_states": env_states,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration = state["iteration"]
        self.gradient_steps = state.get("gradient_steps", 0)
        self.policy.load_state_dict(state["policy"])
        for optimizer, key in ((self.master_optimizer, "master_optimizer"), (self.sub_optimizer, "sub_optimizer")):
            optimizer.load_state_dict(state[key])
            # torch leaves "step" entries where the checkpoint had them (the CPU): MemberAdam needs them by
            # their parameter (a CUDA run's resume).
            for param, param_state in optimizer.state.items():
                if "step" in param_state:
                    param_state["step"] = param_state["step"].to(param.device)
        self.tasks = list(state["tasks"])
        self.task_rng.bit_generator.state = state["task_rng"]
        for rng, rng_state in zip(self.slot_task_rngs, state.get("slot_task_rngs", []), strict=False):
            rng.bit_generator.state = rng_state
        for deck, deck_state in zip(self.task_decks, state.get("task_decks", []), strict=False):
            deck.load_state_dict(deck_state)
        self.cycle_shares = [list(row) for row in state.get("cycle_shares", [])]
        self.reinits = int(state.get("reinits", 0))
        self.reinit_exempt = int(state.get("reinit_exempt", -1))
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if state.get("env_states") is not None and self.iteration > 0:
            self.collector.load_state_dict(state["collector"])
            if isinstance(self.vec_env, TaskVectorEnv):  # with the observations the collector holds
                self.vec_env.load_state_dict(state["env_states"], self.collector.obs)
            else:  # a batched vector env (envs/mujoco_batch.py)
                self.vec_env.load_state_dict(state["env_states"])
        elif self.iteration > 0:
            self.collector.reset(None, self.tasks)

    def close(self) -> None:
        self.vec_env.close()
        self.task_env.close()
