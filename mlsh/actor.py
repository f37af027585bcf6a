"""A trained hierarchical policy that acts: one slot's master over K frozen sub-policies, with
Stable-Baselines3's ``predict`` signature (the user API, :class:`agents.MLSHAgent`, adds ``adapt``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from mlsh.checkpoint import check_fits_env, checkpoint_path, load_checkpoint, load_shared_weights, save_checkpoint
from mlsh.checks import check_device
from mlsh.config import Config, check_seed, config_from_dict
from mlsh.envs import env_signature, make_env
from mlsh.errors import ConfigError
from mlsh.meta import resolve_device
from mlsh.policy import HierarchicalPolicy, advance_macro_clock
from mlsh.schedule import SlotSchedule

# predict()'s recurrent state: (active sub-policy [n], primitive steps left in the macro step [n]).
AgentState = tuple[np.ndarray, np.ndarray]


class PolicyActor:
    """K frozen sub-policies and one master, usable wherever SB3 expects a model with ``predict``.

    Build it with :meth:`load` or :meth:`from_policy_state`. The master is the checkpoint's most-trained
    one (see :meth:`load`) unless another is chosen.

    Args:
        cfg: the run's settings (hierarchy, env, PPO settings used by :meth:`adapt`).
        policy: a one-slot :class:`HierarchicalPolicy` (normaliser, K sub-policies, one master).
        master_task: the task the master was trained on, if known.
        seed: seeds the generator of the agent's action and sub-policy draws (``None``: a random seed).

    It acts through :meth:`HierarchicalPolicy.step`, the policy step of training's rollouts, with its own
    random stream (a ``torch.Generator`` on the policy's device).
    """

    def __init__(
        self, cfg: Config, policy: HierarchicalPolicy, master_task: Any = None, seed: int | None = None
    ) -> None:
        if policy.num_slots != 1:
            raise ValueError(f"MLSHAgent needs a one-slot policy, got {policy.num_slots} slots.")
        self.cfg = cfg
        self.policy = policy.eval()
        self.device = next(policy.parameters()).device
        self.master_task = master_task
        self.generator = torch.Generator(device=self.device)
        self.set_random_seed(seed)
        env = make_env(cfg.env)
        self.observation_space: gym.Space = env.observation_space
        self.action_space: gym.Space = env.action_space
        self.env_signature = env_signature(env)
        env.close()

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_policy_state(
        cls,
        cfg: Config,
        policy_state: Mapping[str, torch.Tensor],
        master_slot: int | None,
        device: str = "auto",
        path: Path | None = None,
        master_task: Any = None,
        seed: int | None = None,
    ) -> PolicyActor:
        """An agent from a (possibly many-slot) policy ``state_dict``, keeping master ``master_slot``.

        ``master_slot=None`` leaves the master freshly initialised.
        """
        cfg = dataclasses.replace(cfg, device=device)
        env = make_env(cfg.env)
        policy = HierarchicalPolicy(
            env.observation_space,
            env.action_space,
            num_subpolicies=cfg.mlsh.num_subpolicies,
            num_slots=1,
            master_hidden=cfg.master.hidden_sizes,
            sub_hidden=cfg.sub.hidden_sizes,
            master_epsilon=cfg.mlsh.master_epsilon,
            normalize_obs=cfg.train.normalize_obs,
            sub_sharing=cfg.sub.sharing,
            hash_compression=cfg.sub.hash_compression,
            sub_hidden_obs=cfg.sub.hidden_obs,
            sub_init_log_std=cfg.sub.init_log_std,
        )
        env.close()
        load_shared_weights(policy, policy_state, path or Path("<state>"))
        if master_slot is not None:
            masters = {
                k.removeprefix("masters."): v[master_slot : master_slot + 1]
                for k, v in policy_state.items()
                if k.startswith("masters.")
            }
            policy.masters.load_state_dict(masters)
        return cls(cfg, policy.to(resolve_device(device)), master_task=master_task, seed=seed)

    @classmethod
    def load(
        cls, path: str | Path, device: str = "auto", slot: int | None = None, seed: int | None = None
    ) -> PolicyActor:
        """Loads a run directory, a training ``checkpoint.pt`` or a file written by :meth:`save`.

        The config comes from the checkpoint itself (no Hydra).

        Args:
            path: run directory or checkpoint file.
            device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.
            slot: which task slot's master to keep from a training checkpoint; default: the one
                that has trained longest on its current task.
            seed: seeds the agent's sampling generator.

        Like training, this applies the run's ``train.torch_threads`` (1 by default: small MLPs run
        fastest single-threaded, and far faster than multi-threaded on a busy machine).

        Raises:
            CheckpointError: missing, corrupt or foreign file.
            ConfigError: ``slot`` out of range.
        """
        check_device(device)
        if seed is not None:
            check_seed("seed", seed)
        file = checkpoint_path(path)
        payload = load_checkpoint(file)
        cfg = config_from_dict(payload["config"])
        if cfg.train.torch_threads:
            torch.set_num_threads(cfg.train.torch_threads)
        check_fits_env(payload, cfg.env, file)
        learner = payload["learner"]
        state = learner["policy"]
        num_slots = int(state["masters.actor.layers.0.weight"].shape[0])
        if slot is None:
            schedule = SlotSchedule.from_config(cfg.mlsh)
            # A checkpoint holding another number of masters (rank 0's share of a multi-process run) keeps slot 0.
            most_trained = (
                schedule.most_trained_slot(learner.get("iteration", 0)) if num_slots == schedule.num_slots else 0
            )
            slot = payload.get("agent", {}).get("slot", most_trained)
        if not isinstance(slot, int) or not 0 <= slot < num_slots:
            raise ConfigError(f"slot must be an integer in [0, {num_slots}), got {slot!r}.")
        tasks = payload.get("agent", {}).get("tasks", learner.get("tasks"))
        task = tasks[slot] if tasks else None
        return cls.from_policy_state(cfg, state, slot, device, file, master_task=task, seed=seed)

    def save(self, path: str | Path) -> Path:
        """Writes the agent as a checkpoint (atomically); :meth:`load` and ``mlsh.evaluate`` read it.

        ``path`` is a directory (``checkpoint.pt`` inside) or a ``.pt`` file.
        """
        payload = {
            "config": self.cfg.to_dict(),
            "env_id": self.cfg.env.id,
            "env_signature": self.env_signature,
            "learner": {"policy": {k: v.detach().cpu() for k, v in self.policy.state_dict().items()}},
            "agent": {"slot": 0, "tasks": [self.master_task]},
        }
        return save_checkpoint(checkpoint_path(path), payload)

    # -- properties ----------------------------------------------------------------------------
    @property
    def num_subpolicies(self) -> int:
        return self.policy.num_subpolicies

    @property
    def macro_len(self) -> int:
        return self.cfg.mlsh.macro_len

    def set_random_seed(self, seed: int | None) -> None:
        """Reseeds the generator behind the agent's sampled actions and sub-policy choices (``None``: randomly)."""
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

    # -- acting --------------------------------------------------------------------------------
    def _batch(self, observation: Any) -> tuple[torch.Tensor, bool]:
        """Normalised ``[n, obs_dim]`` observations, and whether the input was a batch."""
        obs = np.asarray(observation, dtype=np.float32)
        shape = tuple(self.observation_space.shape or ())
        if obs.shape == shape:
            obs, vectorized = obs[None], False
        elif obs.shape[1:] == shape:
            vectorized = True
        else:
            raise ConfigError(
                f"Observation of shape {obs.shape} does not fit the agent's observation space {shape}; pass one "
                f"observation of shape {shape} or a batch of shape (n, {', '.join(map(str, shape))})."
            )
        return self.policy.normalize(torch.as_tensor(obs, device=self.device)), vectorized

    def _env_action(self, action: torch.Tensor) -> np.ndarray:
        """Actions as the env takes them: clipped to a ``Box``'s bounds, in the space's dtype."""
        out = action.cpu().numpy()
        space = self.action_space
        if isinstance(space, gym.spaces.Box):
            return np.clip(out, space.low, space.high).astype(space.dtype)
        return out

    @torch.no_grad()
    def act(
        self,
        obs: torch.Tensor,
        sub_idx: np.ndarray,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """Actions of each row's sub-policy ``sub_idx [n]`` on normalised observations ``[n, obs_dim]``
        (no master decision; ``generator``: default the agent's)."""
        index = torch.as_tensor(sub_idx, device=obs.device, dtype=torch.long)
        subpolicies = self.policy.subpolicy_snapshot()
        action, _, _ = subpolicies.act(obs, index, deterministic, generator or self.generator)
        return self._env_action(action)

    @torch.no_grad()
    def predict(
        self,
        observation: np.ndarray,
        state: AgentState | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        greedy_master: bool = False,
    ) -> tuple[np.ndarray, AgentState]:
        """Stable-Baselines3's ``predict``: actions for one observation or a batch of them.

        Args:
            observation: ``obs_shape`` or ``[n, *obs_shape]`` (a vector env's observations).
            state: the previous call's state: ``(active sub-policy [n], steps left in the macro step
                [n])``; None starts every env afresh.
            episode_start: ``[n]`` bools; true resets that env's state, so its master decides now.
            deterministic: the master's and sub-policies' most likely choices instead of samples.
            greedy_master: the master's most likely choice, the sub-policies' actions sampled (unless
                ``deterministic``).

        Returns:
            ``(action, state)``: ``action`` has the action space's shape, with a leading ``n`` for a batch.
        """
        obs, vectorized = self._batch(observation)
        n, macro_len = obs.shape[0], self.macro_len
        if state is None:
            sub_idx, steps_left = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        else:
            sub_idx, steps_left = (np.array(x, dtype=np.int64).reshape(n) for x in state)
        if episode_start is not None:
            steps_left[np.asarray(episode_start, dtype=bool).reshape(n)] = 0
        # The state counts down what the macro clock counts up: the steps left until the master chooses.
        clock = np.where(steps_left > 0, (macro_len - steps_left) % macro_len, 0)
        step = self.policy.step(
            obs,
            torch.as_tensor(sub_idx, device=self.device),
            clock == 0,
            self.policy.subpolicy_snapshot(),
            deterministic,
            generator=self.generator,
            master_deterministic=deterministic or greedy_master,
        )
        action = self._env_action(step.action)
        clock = advance_macro_clock(clock, macro_len)  # an episode end comes with the next call's episode_start
        new_state = (step.sub_idx.cpu().numpy(), (macro_len - clock) % macro_len)
        return (action if vectorized else action[0]), new_state

    def subpolicy(self, k: int, generator: torch.Generator | None = None) -> SubPolicy:
        """Sub-policy ``k`` alone, as a policy object with ``predict`` (``generator``: its draws' stream,
        default the agent's)."""
        if not isinstance(k, int) or not 0 <= k < self.num_subpolicies:
            raise ConfigError(f"Sub-policy index must be an integer in [0, {self.num_subpolicies}), got {k!r}.")
        return SubPolicy(self, k, generator)

    def reset_master(self) -> None:
        """Re-initialises the master (the state of a new task, before adaptation)."""
        self.policy.masters.reset_member(0)
        self.master_task = None


class SubPolicy:
    """One frozen sub-policy of a :class:`PolicyActor`, with SB3's ``predict`` signature.

    Args:
        agent: the agent holding the weights and the observation normaliser.
        index: k.
        generator: the stream of sampled actions (default: the agent's).
    """

    def __init__(self, agent: PolicyActor, index: int, generator: torch.Generator | None = None) -> None:
        self.agent = agent
        self.index = index
        self.generator = generator
        self.observation_space = agent.observation_space
        self.action_space = agent.action_space

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, None]:
        """Actions of sub-policy k for one observation or a batch (it keeps no state)."""
        obs, vectorized = self.agent._batch(observation)
        sub_idx = np.full(obs.shape[0], self.index, dtype=np.int64)
        action = self.agent.act(obs, sub_idx, deterministic, self.generator)
        return (action if vectorized else action[0]), None
