"""Typed settings of a run, validated before any work starts.

The library takes these dataclasses; the Hydra entry point (``mlsh/train.py``) only turns its
composed config into them with :func:`config_from_dict`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from mlsh.errors import ConfigError


@dataclass
class EnvConfig:
    """Which task distribution to train on (``env.*``; ``env=<Name>`` picks ``configs/env/<Name>.yaml``)."""

    id: str = "mlsh/MovementBandits-v0"
    """Gymnasium id of the task-distribution env; ``"my_pkg.my_module:MyEnv-v0"`` imports
    ``my_pkg.my_module`` first, so that a user's own env registers itself."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the env's constructor, e.g. ``env.kwargs.obs_mode=onehot`` (FourRooms);
    ``+env.kwargs.<key>=`` adds one the env config does not list."""
    max_episode_steps: int | None = None
    """Truncation length T; null keeps the registered time limit."""


@dataclass
class MLSHConfig:
    """The hierarchy and the meta-learning schedule (``mlsh.*``; paper notation in brackets)."""

    num_subpolicies: int = 2
    """K: the number of shared sub-policies."""
    macro_len: int = 10
    """N: primitive steps per master decision."""
    warmup_iters: int = 9
    """W: master-only iterations after a master reset (the sub-policies are not updated)."""
    joint_iters: int = 1
    """U: iterations that update the master and then the sub-policies, after the warmup."""
    num_slots: int = 10
    """M: task slots (the original's MPI groups), each with its own task and master."""
    stagger: bool = True
    """Offset the slots' schedules so that the sub-policies get gradients every iteration."""
    master_epsilon: float = 0.0
    """The original code's exploration: the probability of replacing the master's choice by a random
    sub-policy; log-probabilities are those of the mixture."""
    sub_adv_norm_per_slot: bool = False
    """Normalise the sub-policies' advantages per (sub-policy, task slot) rather than per sub-policy,
    so that every joint task weighs the same in a sub-policy's gradient (on for KeyDoor)."""
    reinit_share: float | None = None
    """Re-initialise a sub-policy that serves no task: one that slot masters, at the end of their cycles, chose
    for at least this share of their decisions in fewer than 1 / (2K) of the last ``reinit_window`` cycles.
    Off (with a warning) under torchrun, with shared sub-policies (``sub.sharing``) and with one-iteration cycles
    (W + U = 1: the master has not trained when its cycle ends). null: never (the paper)."""
    reinit_window: int = 20
    """Cycles, over every slot, between two checks of ``reinit_share``."""
    reinit_after: int = 0
    """Env steps before the first check of ``reinit_share`` (the sub-policies need time to differ first)."""
    task_sampling: str = "iid"
    """How a new cycle's task is drawn: ``iid``, independently (the paper); ``balanced``, in shuffled rounds
    of the env's finite task family (``train_tasks``), each task once per round, so that no task gets the
    sub-policies' early joint iterations more often than another (docs: results, bandits); ``auto``,
    ``balanced`` where the env has a finite task family and ``iid`` where it has none (MovementBandits'
    default, which a user env set with ``env.id=`` inherits)."""


TASK_SAMPLING = ("iid", "balanced", "auto")


@dataclass
class PPOConfig:
    """PPO settings of one level of the hierarchy (``master.*`` and ``sub.*``; CleanRL names)."""

    lr: float = 3e-4
    """Adam learning rate."""
    update_epochs: int = 10
    """Passes over the iteration's data per update."""
    num_minibatches: int = 4
    """Minibatches per epoch."""
    clip_coef: float = 0.2
    """Clip range of the policy's probability ratio."""
    clip_vloss: bool = True
    """Clip the value update (range ``vf_clip_coef``)."""
    vf_clip_coef: float | None = 10.0
    """Clip range of the value update in return units (returns are not normalised); null: ``clip_coef``,
    as in CleanRL."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip, applied to each member (slot master or sub-policy) on its own."""
    norm_adv: bool = True
    """Normalise advantages per member: per slot for masters, per sub-policy for sub-policies."""
    target_kl: float | None = None
    """Stop the update's epochs early once an epoch's mean approximate KL exceeds this; null: never."""
    gamma: float = 0.99
    """Discount factor; for masters it applies once per macro step."""
    gae_lambda: float = 0.98
    """GAE lambda; for masters it applies once per macro step."""
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    """Widths of the hidden layers (tanh) of the actor and of the separate critic."""


SHARING_MODES = ("separate", "trunk", "conditioned", "hashed")


PPO_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PPOConfig))
"""The settings of a :class:`PPOConfig` (``master.*``; ``sub.*`` has more)."""


@dataclass
class SubConfig(PPOConfig):
    """PPO settings of the sub-policies (``sub.*``), and how much the K sub-policies share."""

    sharing: str = "separate"
    """What the K sub-policies share (docs: sharing): ``separate``, K independent actors and critics;
    ``trunk``, shared hidden layers and one output layer per sub-policy; ``conditioned``, one network
    that takes a learned embedding of the sub-policy index as extra input; ``hashed``, the K networks'
    weights drawn from one bucket array per layer by a fixed hash with a sign hash (HashedNets). The
    critics share among themselves the way the actors do, never with the actors."""
    hash_compression: float | None = None
    """``sub.sharing=hashed`` only: virtual weights per real weight in each layer (at least 1); null: K,
    which stores as many weights as one network."""
    lr_ramp_steps: int = 0
    """Env steps over which the sub-policies' learning rate rises linearly from ``lr_ramp_start * lr`` to
    ``lr``; 0 keeps ``lr`` from the start. A slow start keeps the K sub-policies from all locking onto the
    tasks that happen to come first (docs: results, bandits)."""
    lr_ramp_start: float = 0.25
    """The sub-policies' learning rate at the first iteration, as a share of ``lr`` (with ``lr_ramp_steps``)."""
    lr_end: float = 1.0
    """The sub-policies' learning rate at the end of the budget (``train.total_timesteps``), as a share of ``lr``:
    after the ramp, the rate falls linearly from ``lr`` to ``lr_end * lr``. 1 keeps it constant; 0 anneals it to
    zero, as CleanRL's MuJoCo PPO does. Resuming with a larger budget stretches the rest of the fall."""
    hidden_obs: list[int] = field(default_factory=list)
    """Indices of flat observation entries the sub-policies (actors and critics) do not see, e.g. ``[0,1]``, the
    Ant's torso x and y, so that walking does not depend on where in the arena it happens; the masters see every
    entry, and the observation normaliser covers them all. ``[]``: the sub-policies see everything."""
    init_log_std: float = 0.0
    """Continuous actions: the log standard deviation of every sub-policy's Gaussian at initialisation (0: a
    standard deviation of 1 on actions in [-1, 1]); learned from there, per sub-policy and action entry."""


@dataclass
class TrainConfig:
    """Budget and bookkeeping (``train.*``)."""

    total_timesteps: int = 3_000_000
    """Env steps of the whole run, all slots together."""
    envs_per_slot: int = 10
    """Envs per task slot."""
    rollout_len: int = 200
    """Steps per env and iteration, a multiple of ``mlsh.macro_len``; D = envs_per_slot x rollout_len
    steps per slot and iteration."""
    checkpoint_every: int = 25
    """Iterations between checkpoints (one is also written at the end and on Ctrl-C or SIGTERM)."""
    checkpoint_minutes: float | None = 5.0
    """Also write a checkpoint at the end of the first iteration after this many minutes since the last one, so
    that a kill loses at most this long plus one iteration; null: by ``checkpoint_every`` only."""
    normalize_obs: bool = True
    """Running mean/std normalisation of observations, saved with the model."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this for learning, at both levels; logged returns stay raw. Returns of
    hundreds or more (Ant) need it small, or the critics cannot follow them."""
    normalize_reward: bool = False
    """Divide the rewards used for learning (both levels) by the running std of the discounted return
    (``sub.gamma``), clipped to [-10, 10], as Stable-Baselines3's ``VecNormalize`` does; what Gymnasium's
    MuJoCo locomotion needs (docs: results, locomotion). Logged returns stay raw."""
    progress: bool = True
    """Show the progress bar (ETA, current reward, fps)."""
    torch_threads: int | None = 1
    """Torch threads; small MLPs run fastest single-threaded. null: torch's default."""
    update_threads: int | None = None
    """Threads of the PPO updates (CPU): null = ``torch_threads``; 0 = every core this process may use.
    The env's threads are idle during updates, and their minibatches are large enough to gain from more."""


@dataclass
class Config:
    """All settings of a run: the sections above, plus the top-level keys."""

    env: EnvConfig = field(default_factory=EnvConfig)
    """The task distribution."""
    mlsh: MLSHConfig = field(default_factory=MLSHConfig)
    """The hierarchy and its schedule."""
    master: PPOConfig = field(default_factory=lambda: PPOConfig(lr=0.01, num_minibatches=1))
    """PPO of the masters."""
    sub: SubConfig = field(default_factory=lambda: SubConfig(lr=3e-4, num_minibatches=8))
    """PPO of the sub-policies."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Budget and bookkeeping."""
    seed: int = 0
    """Seed of the run: tasks, env seeds, initialisation and sampling."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``."""
    init_from: str | None = None
    """A run (directory or checkpoint) whose sub-policies and observation normaliser this run starts
    from; masters, optimisers and the schedule start afresh (:func:`mlsh.trainer.init_from_run`)."""
    adapt_master: dict[str, Any] = field(default_factory=lambda: dict.fromkeys(PPO_KEYS))
    """PPO settings of the fresh masters when the trained run is evaluated or adapted (``mlsh.evaluate``,
    ``mlsh.inspect``, ``MLSHAgent.adapt``), any key of ``master``; null keeps ``master``'s. Training
    ignores them; a command's own ``master.<key>=`` overrides them. Set when the run starts (e.g.
    ``adapt_master.gamma=0.5``)."""

    @property
    def steps_per_iteration(self) -> int:
        """Env steps collected per iteration, all slots together."""
        return self.mlsh.num_slots * self.train.envs_per_slot * self.train.rollout_len

    @property
    def num_iterations(self) -> int:
        return max(1, self.train.total_timesteps // self.steps_per_iteration)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(default: Any, data: dict[str, Any] | None, prefix: str) -> Any:
    """Returns ``default`` (a dataclass instance) with the entries of ``data`` replaced, recursively."""
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(default)}
    names = set(fields)
    unknown = sorted(set(data) - names)
    if unknown:
        section = prefix.rstrip(".") or "the top level"
        raise ConfigError(
            f"Unknown setting '{prefix}{unknown[0]}': the settings under {section} are "
            f"{', '.join(sorted(names))}; check the spelling."
        )
    kwargs = {}
    for name, value in data.items():
        current = getattr(default, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"'{prefix}{name}' is a group of settings, not a value; set '{prefix}{name}.<key>=...'."
                )
            value = _build(current, value, f"{prefix}{name}.")
        else:
            # Annotations are strings here (PEP 563): "float | None" marks a setting that may be null.
            _check_type(f"{prefix}{name}", value, current, optional="None" in str(fields[name].type))
        kwargs[name] = value
    return dataclasses.replace(default, **kwargs)


def _check_type(key: str, value: Any, default: Any, optional: bool) -> None:
    """Refuses a value whose type cannot stand for the default's (ints pass for floats; None where optional)."""
    if default is None or (value is None and optional):
        return
    expected: tuple[type, ...]
    if isinstance(default, bool):
        expected, name = (bool,), "true or false"
    elif isinstance(default, int):
        expected, name = (int,), "an integer"
    elif isinstance(default, float):
        expected, name = (int, float), "a number"
    elif isinstance(default, str):
        expected, name = (str,), "a string"
    elif isinstance(default, list):
        expected, name = (list, tuple), "a list like [64,64]"
    elif isinstance(default, dict):
        expected, name = (dict,), "a mapping like {a: 1}"
    else:
        return
    if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
        raise ConfigError(f"{key} must be {name}, got {value!r}; fix the override {key}=...")


def config_from_dict(data: dict[str, Any]) -> Config:
    """Builds and validates a :class:`Config` from a plain (resolved) dict.

    Raises:
        ConfigError: unknown key or impossible value, with a sentence naming the fix.
    """
    cfg = _build(Config(), data, "")
    cfg = dataclasses.replace(cfg, adapt_master={**dict.fromkeys(PPO_KEYS), **cfg.adapt_master})  # every key
    validate(cfg)
    return cfg


def replace_section(cfg: Config, section: str, values: dict[str, Any]) -> Config:
    """``cfg`` with settings under ``section`` (e.g. ``master``) replaced by ``values``, type-checked and validated.

    Raises:
        ConfigError: unknown key or impossible value, naming the setting as ``<section>.<key>``.
    """
    out = dataclasses.replace(cfg, **{section: _build(getattr(cfg, section), values, f"{section}.")})
    validate(out)
    return out


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def is_int(value: Any) -> bool:
    """An int that is not a bool (YAML and Hydra give true/false as bools, which Python counts as ints)."""
    return isinstance(value, int) and not isinstance(value, bool)


# Seeds seed NumPy, torch and every env (offset per env and slot): non-negative and within 32 bits.
SEED_MAX = 2**32 - 1

_DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")


def check_config(cfg: Config) -> Config:
    """Type-checks and validates a :class:`Config` built in code (the library path), like the command line's;
    returns it unchanged.

    Raises:
        ConfigError: a value of the wrong type or an impossible one, with a sentence naming the fix.
    """
    if not isinstance(cfg, Config):
        raise ConfigError(f"Expected an mlsh Config, got {type(cfg).__name__}; build one with mlsh.Config(...).")
    config_from_dict(cfg.to_dict())
    return cfg


def check_seed(key: str, value: Any) -> None:
    """Refuses a seed that is not an integer in ``[0, SEED_MAX]``."""
    _require(
        is_int(value) and 0 <= value <= SEED_MAX,
        f"{key} must be an integer in [0, {SEED_MAX}], got {value!r}; set e.g. {key}=0.",
    )


def check_hidden_obs(hidden_obs: Any, obs_width: int | None = None) -> None:
    """Refuses a ``sub.hidden_obs`` that is not a list of distinct indices from 0 or, given the observation's
    width, one that names an entry the observation lacks or hides every entry."""
    key = "sub.hidden_obs"
    _require(
        isinstance(hidden_obs, (list, tuple)) and all(is_int(i) and i >= 0 for i in hidden_obs),
        f"{key} must be a list of observation indices (integers from 0), got {hidden_obs!r}; set e.g. {key}=[0,1].",
    )
    repeated = sorted({i for i in hidden_obs if list(hidden_obs).count(i) > 1})
    if repeated:
        raise ConfigError(f"{key} lists {repeated[0]} more than once; list each index once.")
    if obs_width is None:
        return
    outside = [i for i in hidden_obs if i >= obs_width]
    if outside:
        raise ConfigError(
            f"{key} has {outside[0]}, but the observation has {obs_width} entries (0-{obs_width - 1}); drop it."
        )
    _require(
        len(hidden_obs) < obs_width,
        f"{key} hides all {obs_width} observation entries, so the sub-policies would see nothing; keep at least one.",
    )


def check_device_name(key: str, device: Any) -> None:
    """Refuses a device that is not ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (availability: see mlsh.checks)."""
    _require(
        isinstance(device, str) and _DEVICE.match(device) is not None,
        f"{key} must be auto, cpu or cuda[:N], got {device!r}; set e.g. {key}=cpu.",
    )


def _check_finite(section: Any, default: Any, prefix: str) -> None:
    """Refuses NaN and infinite numbers anywhere in ``section`` (a dataclass), naming the key and its default."""
    for f in dataclasses.fields(section):
        value, fallback = getattr(section, f.name), getattr(default, f.name, None)
        if dataclasses.is_dataclass(value):
            _check_finite(value, fallback, f"{prefix}{f.name}.")
        elif isinstance(value, float) and not math.isfinite(value):
            hint = f"e.g. {prefix}{f.name}={fallback}" if isinstance(fallback, (int, float)) else "a finite number"
            raise ConfigError(f"{prefix}{f.name} must be a finite number, got {value}; set {hint}.")


def validate(cfg: Config) -> None:
    """Refuses impossible settings before any work, with one sentence naming the fix."""
    m, t = cfg.mlsh, cfg.train
    check_seed("seed", cfg.seed)
    e = cfg.env
    _require(
        isinstance(e.id, str) and e.id.strip() != "",
        f"env.id must be a Gymnasium id, got {e.id!r}; set e.g. env.id=mlsh/MovementBandits-v0 or env=<Name>.",
    )
    _require(
        e.max_episode_steps is None or (is_int(e.max_episode_steps) and e.max_episode_steps >= 1),
        f"env.max_episode_steps must be null (the registered time limit) or an integer >= 1, got "
        f"{e.max_episode_steps!r}; set e.g. env.max_episode_steps=100.",
    )
    for key, value, low in [
        ("mlsh.num_subpolicies", m.num_subpolicies, 1),
        ("mlsh.macro_len", m.macro_len, 1),
        ("mlsh.warmup_iters", m.warmup_iters, 0),
        ("mlsh.joint_iters", m.joint_iters, 0),
        ("mlsh.num_slots", m.num_slots, 1),
        ("mlsh.reinit_window", m.reinit_window, 1),
        ("mlsh.reinit_after", m.reinit_after, 0),
        ("train.envs_per_slot", t.envs_per_slot, 1),
        ("train.rollout_len", t.rollout_len, 1),
        ("train.total_timesteps", t.total_timesteps, 1),
        ("train.checkpoint_every", t.checkpoint_every, 1),
    ]:
        _require(is_int(value), f"{key} must be an integer, got {value!r}; set e.g. {key}={max(low, 1)}.")
        _require(value >= low, f"{key} must be at least {low}, got {value}; set {key}={max(low, 1)} or more.")
    _require(
        m.warmup_iters + m.joint_iters >= 1,
        "mlsh.warmup_iters + mlsh.joint_iters must be at least 1, so that each task lasts one iteration or more.",
    )
    _require(
        t.rollout_len % m.macro_len == 0,
        f"train.rollout_len ({t.rollout_len}) must be a multiple of mlsh.macro_len ({m.macro_len}); "
        f"set train.rollout_len={max(1, round(t.rollout_len / m.macro_len)) * m.macro_len}.",
    )
    _require(
        not isinstance(t.reward_scale, bool)
        and isinstance(t.reward_scale, (int, float))
        and 0 < t.reward_scale < float("inf"),
        f"train.reward_scale must be a positive number, got {t.reward_scale!r}; set e.g. train.reward_scale=0.01.",
    )
    _require(
        t.checkpoint_minutes is None
        or (not isinstance(t.checkpoint_minutes, bool) and isinstance(t.checkpoint_minutes, (int, float)))
        and t.checkpoint_minutes > 0,
        f"train.checkpoint_minutes must be a positive number of minutes or null, got {t.checkpoint_minutes!r}; "
        f"set e.g. train.checkpoint_minutes=5.",
    )
    for key, value in [("train.torch_threads", t.torch_threads), ("train.update_threads", t.update_threads)]:
        _require(
            value is None or (is_int(value) and value >= 0),
            f"{key} must be null or an integer >= 0, got {value!r}; set e.g. {key}=1.",
        )
    _require(
        0.0 <= m.master_epsilon <= 1.0,
        f"mlsh.master_epsilon must lie in [0, 1], got {m.master_epsilon}.",
    )
    _require(
        m.reinit_share is None
        or (not isinstance(m.reinit_share, bool) and isinstance(m.reinit_share, (int, float)))
        and 0 < m.reinit_share <= 1,
        f"mlsh.reinit_share must be null or a share in (0, 1], got {m.reinit_share!r}; set e.g. mlsh.reinit_share=0.7.",
    )
    _require(
        m.task_sampling in TASK_SAMPLING,
        f"mlsh.task_sampling must be iid, balanced or auto, got {m.task_sampling!r}; set e.g. mlsh.task_sampling=iid.",
    )
    unknown = sorted(set(cfg.adapt_master) - set(PPO_KEYS))
    _require(
        not unknown,
        f"Unknown setting 'adapt_master.{unknown[0] if unknown else ''}': its keys are master's "
        f"({', '.join(PPO_KEYS)}); check the spelling.",
    )
    given = {key: value for key, value in cfg.adapt_master.items() if value is not None}
    adapted = _build(cfg.master, given, "adapt_master.")
    for level, p in (("master", cfg.master), ("sub", cfg.sub), ("adapt_master", adapted)):
        _require(p.lr > 0, f"{level}.lr must be positive, got {p.lr}.")
        _require(p.vf_coef >= 0, f"{level}.vf_coef must be 0 or more, got {p.vf_coef}; set e.g. {level}.vf_coef=0.5.")
        _require(
            p.ent_coef >= 0, f"{level}.ent_coef must be 0 or more, got {p.ent_coef}; set e.g. {level}.ent_coef=0.0."
        )
        _require(
            is_int(p.update_epochs) and p.update_epochs >= 1,
            f"{level}.update_epochs must be an integer >= 1, got {p.update_epochs}.",
        )
        _require(
            is_int(p.num_minibatches) and p.num_minibatches >= 1,
            f"{level}.num_minibatches must be an integer >= 1, got {p.num_minibatches}.",
        )
        _require(p.clip_coef > 0, f"{level}.clip_coef must be positive, got {p.clip_coef}.")
        _require(
            p.vf_clip_coef is None or (isinstance(p.vf_clip_coef, (int, float)) and p.vf_clip_coef > 0),
            f"{level}.vf_clip_coef must be positive or null, got {p.vf_clip_coef}.",
        )
        _require(
            p.target_kl is None or (isinstance(p.target_kl, (int, float)) and p.target_kl > 0),
            f"{level}.target_kl must be positive or null, got {p.target_kl}.",
        )
        _require(0 <= p.gamma <= 1, f"{level}.gamma must lie in [0, 1], got {p.gamma}.")
        _require(0 <= p.gae_lambda <= 1, f"{level}.gae_lambda must lie in [0, 1], got {p.gae_lambda}.")
        _require(p.max_grad_norm > 0, f"{level}.max_grad_norm must be positive, got {p.max_grad_norm}.")
        _require(
            len(p.hidden_sizes) >= 1 and all(is_int(h) and h >= 1 for h in p.hidden_sizes),
            f"{level}.hidden_sizes must be a non-empty list of positive integers, got {p.hidden_sizes}.",
        )
    _require(
        cfg.sub.sharing in SHARING_MODES,
        f"sub.sharing must be one of {', '.join(SHARING_MODES)}, got {cfg.sub.sharing!r}; set e.g. sub.sharing=trunk.",
    )
    compression = cfg.sub.hash_compression
    _require(
        compression is None
        or (not isinstance(compression, bool) and isinstance(compression, (int, float)) and 1 <= compression < 1e12),
        f"sub.hash_compression must be null or a number of at least 1 (virtual weights per stored weight), "
        f"got {compression!r}; set e.g. sub.hash_compression=8.",
    )
    ramp = cfg.sub.lr_ramp_steps
    _require(
        not isinstance(ramp, bool) and isinstance(ramp, int) and ramp >= 0,
        f"sub.lr_ramp_steps must be a whole number of env steps, 0 or more, got {ramp!r}; set e.g. "
        f"sub.lr_ramp_steps=1500000 (or 0 for a constant rate).",
    )
    start = cfg.sub.lr_ramp_start
    _require(
        not isinstance(start, bool) and isinstance(start, (int, float)) and 0 < start <= 1,
        f"sub.lr_ramp_start must be a share of sub.lr in (0, 1], got {start!r}; set e.g. sub.lr_ramp_start=0.25.",
    )
    end = cfg.sub.lr_end
    _require(
        not isinstance(end, bool) and isinstance(end, (int, float)) and 0 <= end <= 1,
        f"sub.lr_end must be a share of sub.lr in [0, 1], got {end!r}; set e.g. sub.lr_end=0.1 (or 1 for a "
        f"constant rate).",
    )
    log_std = cfg.sub.init_log_std
    _require(
        not isinstance(log_std, bool) and isinstance(log_std, (int, float)) and -5 <= log_std <= 2,
        f"sub.init_log_std must be a number in [-5, 2] (the log of the initial standard deviation), got {log_std!r}; "
        f"set e.g. sub.init_log_std=-0.5.",
    )
    check_hidden_obs(cfg.sub.hidden_obs)  # the range needs the env: SubPolicies and mlsh.trainer.prepare_run
    check_device_name("device", cfg.device)
    _require(
        cfg.init_from is None or (isinstance(cfg.init_from, str) and cfg.init_from.strip() != ""),
        f"init_from must be a run directory (or its checkpoint.pt) or null, got {cfg.init_from!r}; "
        f"set e.g. init_from=runs/AntMaze/mlsh/<run>.",
    )
    _check_finite(cfg, Config(), "")  # last: the checks above give NaN and inf their own sentence where they can
