"""Evaluation on unseen tasks: a fresh master adapts on top of frozen sub-policies.

This measures what MLSH optimises (the paper's "hierarchy strength"): on tasks drawn with a seed
stream disjoint from training's, each task gets a freshly initialised master that trains for
``warmup_iters`` iterations while the sub-policies and the observation normaliser stay frozen;
the return of the adapted policy is then compared with the env's oracle (scripted best policy).

Baselines get the same tasks, the same env seeds and the same env-step budget per task
(``adapt_iters`` iterations of ``envs_per_slot x rollout_len`` steps):

* ``scratch``: flat PPO trained from scratch on each task alone (``sb3_scratch``: the same with
  Stable-Baselines3's PPO, see :func:`sb3_ppo_adaptation`);
* ``flat``: the shared flat policy of an ``algo=flat_ppo`` run (trained on the whole task
  distribution), as it is: its one-choice master is inert, so its curve is flat;
* ``finetune``: that shared policy fine-tuned on each task alone (PPO, fresh optimizer state);
* ``no_warmup`` / ``every_step``: MLSH runs trained with ``mlsh.warmup_iters=0`` /
  ``mlsh.macro_len=1`` (the paper's ablations), evaluated exactly like MLSH.

On envs whose step info has a boolean ``goal_reached`` (AntObstacles, AntMaze), every method also
counts the episodes that ended in each adaptation iteration and how many reached the goal (the paper's
Ant obstacle-course transfer result counts goal reaches over an adaptation run).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from mlsh.checkpoint import check_fits_env, checkpoint_path, load_checkpoint, load_shared_weights
from mlsh.checks import check_device, notice
from mlsh.config import Config, EnvConfig, check_seed, config_from_dict, is_int, replace_section
from mlsh.envs import make_env, success
from mlsh.errors import ConfigError
from mlsh.meta import EVAL_TASK_STREAM, MetaLearner, task_rng

MAX_MEASURE_ROLLOUTS = 10

# Env seeds of evaluation start far from training's (seed + env index) so episodes differ too.
EVAL_ENV_SEED_OFFSET = 1_000_003

SPLITS = ("heldout", "train")

# Baselines of the unseen-task suite: name -> (label, the run it needs in ``baseline_runs``, or None).
BASELINES: dict[str, tuple[str, str | None]] = {
    "scratch": ("PPO from scratch", None),
    "sb3_scratch": ("PPO from scratch (Stable-Baselines3)", None),
    "flat": ("shared flat policy", "flat"),
    "finetune": ("shared flat policy, fine-tuned", "flat"),
    "no_warmup": ("MLSH without warmup", "no_warmup"),
    "every_step": ("MLSH, master every step", "every_step"),
}
METHOD_LABELS = {"mlsh": "MLSH", **{name: label for name, (label, _) in BASELINES.items()}}

# How to train the run each baseline needs, and the setting that run must have.
_BASELINE_RUN_RECIPES: dict[str, tuple[str, str, Any]] = {
    "flat": ("algo=flat_ppo", "num_subpolicies", 1),
    "no_warmup": ("mlsh.warmup_iters=0", "warmup_iters", 0),
    "every_step": ("mlsh.macro_len=1", "macro_len", 1),
}


class Adaptation(NamedTuple):
    """What adapting one learner per task (or one slot per task) gave."""

    curve: np.ndarray  # [iters, num_tasks] mean episode return per iteration; NaN where no episode ended
    after: np.ndarray  # [num_tasks] mean return of the adapted policy, measured after adaptation
    masters: dict[str, torch.Tensor]  # adapted masters' parameters ("masters.*"), member i = task i
    # [iters, num_tasks] int: episodes that ended in each iteration, and how many of them reached the goal;
    # None for envs whose step info has no ``goal_reached``
    episodes: np.ndarray | None = None
    goal_reaches: np.ndarray | None = None


class AdaptedMasters(NamedTuple):
    """The MLSH masters adapted by :func:`evaluate_run`, to rebuild one agent per task (videos)."""

    cfg: Config  # the run's settings, with the env evaluated on (and the masters' macro step, adapt_macro_len)
    policy_state: dict[str, torch.Tensor]  # the run's shared weights and the adapted masters (member i: task i)
    tasks: list[Any]
    path: Path  # the checkpoint
    trained_macro_len: int  # the run's own mlsh.macro_len: the macro step its sub-policies were trained for


def sample_eval_tasks(cfg: Config, num_tasks: int, seed: int, split: str = "heldout") -> list[Any]:
    """Tasks for evaluation, from a stream disjoint from training's.

    Args:
        split: ``heldout`` draws with the env's ``sample_test_task`` (its held-out split where it has
            one); ``train`` draws from the training distribution (``sample_task``), still on its own stream.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}; set split=heldout.")
    env = make_env(cfg.env)
    try:
        rng = task_rng(seed, EVAL_TASK_STREAM)
        sample = task_sampler(env, split, cfg.env.id)
        return [sample(rng) for _ in range(num_tasks)]
    finally:
        env.close()


def task_sampler(env: Any, split: str, name: str) -> Any:
    """The task contract's sampler for ``split``: ``sample_test_task`` for ``heldout``, ``sample_task`` for
    ``train``. ``sample_test_task`` is optional (duck-typed envs need not have it): without it, ``heldout``
    draws from the training distribution, with a one-line notice."""
    unwrapped = env.unwrapped
    if split == "heldout":
        sample = getattr(unwrapped, "sample_test_task", None)
        if callable(sample):
            return sample
        notice(
            f"'{name}' has no sample_test_task, so split=heldout draws its tasks from the training distribution "
            f"(sample_task), on the evaluation's own stream."
        )
    return unwrapped.sample_task


def has_oracle(env_cfg: EnvConfig) -> bool:
    """Whether the env has the task contract's optional ``oracle_action`` (one that does not raise
    ``NotImplementedError`` right after a reset)."""
    env = make_env(env_cfg)
    try:
        oracle = getattr(env.unwrapped, "oracle_action", None)
        if not callable(oracle):
            return False
        env.reset(seed=0)
        try:
            oracle()
        except NotImplementedError:
            return False
        return True
    finally:
        env.close()


def oracle_returns(env_cfg: EnvConfig, tasks: list[Any], episodes: int, seed: int) -> np.ndarray:
    """Mean return of the env's oracle policy on each task: ``[num_tasks]``.

    Raises:
        ConfigError: the env has no ``oracle_action``.
    """
    env = make_env(env_cfg)
    means = []
    try:
        for task_index, task in enumerate(tasks):
            env.unwrapped.task = task
            total = 0.0
            for episode in range(episodes):
                env.reset(seed=seed + task_index * episodes + episode)
                while True:
                    try:
                        action = env.unwrapped.oracle_action()
                    except (NotImplementedError, AttributeError) as exc:
                        raise ConfigError(
                            f"{env_cfg.id} has no oracle policy ({exc}); evaluate with oracle=false."
                        ) from exc
                    _, reward, terminated, truncated, _ = env.step(action)
                    total += float(reward)
                    if terminated or truncated:
                        break
            means.append(total / episodes)
    finally:
        env.close()
    return np.asarray(means)


def _per_slot_mean(returns: np.ndarray, slots: np.ndarray, num_slots: int) -> np.ndarray:
    out = np.full(num_slots, np.nan)
    for slot in range(num_slots):
        sel = slots == slot
        if sel.any():
            out[slot] = returns[sel].mean()
    return out


def _nan_mean(values: np.ndarray) -> float | None:
    """Mean ignoring NaN; None (strict JSON) where every value is NaN."""
    return None if np.isnan(values).all() else float(np.nanmean(values))


def _nullable(values: np.ndarray) -> list[Any]:
    """A (nested) list with NaN as None, for strict JSON."""
    return [_nullable(v) if isinstance(v, np.ndarray) else (None if np.isnan(v) else float(v)) for v in values]


def adaptation_config(cfg: Config, num_tasks: int, iters: int, seed: int, env_cfg: EnvConfig | None = None) -> Config:
    """A run's settings turned into an evaluation: one slot per task, master-only iterations."""
    return dataclasses.replace(
        cfg,
        env=env_cfg or cfg.env,
        mlsh=dataclasses.replace(
            cfg.mlsh, num_slots=num_tasks, stagger=False, warmup_iters=max(iters, 1), joint_iters=0
        ),
        seed=seed + EVAL_ENV_SEED_OFFSET,
    )


def _measure(learner: MetaLearner, num_slots: int, deterministic: bool = False) -> np.ndarray:
    """Mean return per slot of the current policy, collecting until every slot finished an episode.

    Long episodes may outlast one rollout, so this collects up to ``MAX_MEASURE_ROLLOUTS`` rollouts.
    With ``deterministic`` masters and sub-policies take their most likely choices. A learner that has
    not trained yet (``adapt_iters=0``) first draws its tasks and resets its envs.
    """
    learner.start()
    rollout_len = learner.cfg.train.rollout_len
    returns, slots = [], []
    for _ in range(MAX_MEASURE_ROLLOUTS):
        _, stats = learner.collector.collect(rollout_len, update_obs_rms=False, deterministic=deterministic)
        returns.append(stats.returns)
        slots.append(stats.slots)
        after = _per_slot_mean(np.concatenate(returns), np.concatenate(slots), num_slots)
        if not np.isnan(after).any():
            return after
    raise ConfigError(
        f"No episode ended within {MAX_MEASURE_ROLLOUTS} rollouts of {rollout_len} steps on some tasks; "
        f"check the env's time limit (env.max_episode_steps)."
    )


def _train_and_measure(learner: MetaLearner, iters: int, num_slots: int, deterministic: bool = False) -> Adaptation:
    """Trains ``iters`` iterations, then measures; the result's ``masters`` is empty (the caller's to fill).

    Episodes and goal reaches are counted per iteration and slot where the env's step info has
    ``goal_reached`` (see :class:`~mlsh.rollout.EpisodeStats`).
    """
    curve = np.full((iters, num_slots), np.nan)
    episodes = np.zeros((iters, num_slots), dtype=np.int64)
    goal_reaches = np.zeros((iters, num_slots), dtype=np.int64)
    reports_goal = False
    for iteration in range(iters):
        learner.train_iteration()
        stats = learner.last_episodes
        curve[iteration] = _per_slot_mean(stats.returns, stats.slots, num_slots)
        episodes[iteration] = np.bincount(stats.slots, minlength=num_slots)
        if stats.goals is not None:
            reports_goal = True
            goal_reaches[iteration] = np.bincount(stats.slots[stats.goals], minlength=num_slots)
    after = _measure(learner, num_slots, deterministic)
    if not reports_goal:
        return Adaptation(curve, after, {})
    return Adaptation(curve, after, {}, episodes, goal_reaches)


def adapt_masters(
    cfg: Config,
    policy_state: Mapping[str, torch.Tensor],
    tasks: Sequence[Any],
    iters: int,
    seed: int,
    path: Path,
    env_cfg: EnvConfig | None = None,
    deterministic: bool = False,
) -> Adaptation:
    """Adapts one fresh master per task over frozen sub-policies and normaliser (the paper's test time).

    All tasks run batched as the slots of one :class:`MetaLearner`.

    Args:
        cfg: the run's settings (network shapes, PPO settings, steps per iteration, device).
        policy_state: the run's policy ``state_dict``; its masters are ignored.
        tasks: one task per slot.
        iters: master-only PPO iterations per task.
        seed: evaluation seed (env seeds are offset from training's).
        path: the checkpoint, for error messages.
        env_cfg: evaluate on this env instead of the run's (same spaces).
        deterministic: measure the adapted policy with its most likely choices (the curve is
            always that of the sampling policy being trained).
    """
    eval_cfg = adaptation_config(cfg, len(tasks), iters, seed, env_cfg)
    learner = MetaLearner(eval_cfg, fixed_tasks=list(tasks), train_subpolicies=False, update_obs_rms=False)
    try:
        load_shared_weights(learner.policy, policy_state, path)
        adaptation = _train_and_measure(learner, iters, len(tasks), deterministic)
        masters = {f"masters.{k}": v.detach().cpu().clone() for k, v in learner.policy.masters.state_dict().items()}
    finally:
        learner.close()
    return adaptation._replace(masters=masters)


def flat_ppo_adaptation(
    cfg: Config,
    tasks: Sequence[Any],
    iters: int,
    seed: int,
    init_policy_state: Mapping[str, torch.Tensor] | None = None,
    path: Path | None = None,
    deterministic: bool = False,
) -> Adaptation:
    """Flat PPO trained on each task alone, as many steps per iteration as an MLSH slot gets.

    Each task gets a one-sub-policy learner (its "master" has a single choice and is inert), trained
    on every iteration with the sub-policy PPO settings of ``cfg``. From scratch by default; with
    ``init_policy_state`` (a flat run's policy) it fine-tunes that policy, normaliser frozen.
    ``deterministic`` measures the trained policy's most likely actions.
    """
    per_task: list[Adaptation] = []
    # From scratch, the policy is a plain network whatever the run's sub.sharing (one hashed network would
    # be a smaller, not a plainer, policy); a fine-tuned flat run keeps the network it was trained with.
    sub = cfg.sub if init_policy_state is not None else dataclasses.replace(cfg.sub, sharing="separate")
    for index, task in enumerate(tasks):
        task_cfg = dataclasses.replace(
            cfg,
            mlsh=dataclasses.replace(
                cfg.mlsh, num_subpolicies=1, num_slots=1, warmup_iters=0, joint_iters=max(iters, 1), stagger=False
            ),
            sub=sub,
            seed=seed + EVAL_ENV_SEED_OFFSET + 7919 * (index + 1),
        )
        learner = MetaLearner(task_cfg, fixed_tasks=[task], update_obs_rms=init_policy_state is None)
        try:
            if init_policy_state is not None:
                load_shared_weights(learner.policy, init_policy_state, path or Path("."))
            per_task.append(_train_and_measure(learner, iters, 1, deterministic))
        finally:
            learner.close()
    return _stack_tasks(per_task)


def _stack_tasks(per_task: Sequence[Adaptation]) -> Adaptation:
    """One-task adaptations side by side, task i in column i (goal counts only where every task has them)."""
    curves = np.concatenate([a.curve for a in per_task], axis=1)
    after = np.concatenate([a.after for a in per_task])
    if any(a.goal_reaches is None for a in per_task):
        return Adaptation(curves, after, {})
    episodes = np.concatenate([a.episodes for a in per_task], axis=1)
    goal_reaches = np.concatenate([a.goal_reaches for a in per_task], axis=1)
    return Adaptation(curves, after, {}, episodes, goal_reaches)


def sb3_ppo_adaptation(
    cfg: Config, tasks: Sequence[Any], iters: int, seed: int, deterministic: bool = False
) -> Adaptation:
    """Stable-Baselines3 PPO from scratch on each task alone, with the budget and settings of an MLSH slot.

    Per iteration it collects ``envs_per_slot x rollout_len`` steps, like one MLSH slot, and uses the
    run's sub-policy PPO settings: learning rate, epochs, minibatches, clipping (the value clip in
    return units, as SB3's ``clip_range_vf``), entropy and value coefficients, gradient clipping,
    gamma, lambda and tanh MLPs of the same widths; observations are normalised (``VecNormalize``)
    when the run normalised them.

    Returns:
        The curves (mean return of the episodes that ended in each iteration), the return measured
        after training, one episode per env (most likely actions with ``deterministic``), and, where the
        env's step info has ``goal_reached``, the episodes and goal reaches of each iteration.
    """
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    class EpisodeReturns(BaseCallback):
        """Mean return of the episodes that ended during each rollout, their number and their goal reaches
        (``goal_reached`` in a step's info at any step of the episode; SB3's info of an episode's last step
        is that step's own)."""

        def __init__(self, num_envs: int) -> None:
            super().__init__()
            self.rollout: list[float] = []
            self.rollout_goals: list[bool] = []
            self.reached = np.zeros(num_envs, dtype=bool)  # each env's running episode reached the goal
            self.reports_goal = False
            self.curve: list[float] = []
            self.episodes: list[int] = []
            self.goal_reaches: list[int] = []

        def _on_step(self) -> bool:
            for env_index, info in enumerate(self.locals["infos"]):
                reached = success(info)
                if reached is not None:
                    self.reports_goal = True
                    self.reached[env_index] |= reached
                if "episode" in info:
                    self.rollout.append(info["episode"]["r"])
                    self.rollout_goals.append(bool(self.reached[env_index]))
                    self.reached[env_index] = False
            return True

        def _on_rollout_end(self) -> None:
            self.curve.append(float(np.mean(self.rollout)) if self.rollout else np.nan)
            self.episodes.append(len(self.rollout))
            self.goal_reaches.append(sum(self.rollout_goals))
            self.rollout, self.rollout_goals = [], []

    ppo, envs, steps = cfg.sub, cfg.train.envs_per_slot, cfg.train.rollout_len
    per_task: list[Adaptation] = []
    for index, task in enumerate(tasks):

        def make(task: Any = task) -> Any:
            env = make_env(cfg.env)
            env.unwrapped.task = task
            return Monitor(env)

        vec = VecNormalize(DummyVecEnv([make] * envs), norm_obs=cfg.train.normalize_obs, norm_reward=False)
        task_seed = seed + EVAL_ENV_SEED_OFFSET + 7919 * (index + 1)
        vec.seed(task_seed)
        model = PPO(
            "MlpPolicy",
            vec,
            learning_rate=ppo.lr,
            n_steps=steps,
            batch_size=max(1, envs * steps // ppo.num_minibatches),
            n_epochs=ppo.update_epochs,
            gamma=ppo.gamma,
            gae_lambda=ppo.gae_lambda,
            clip_range=ppo.clip_coef,
            clip_range_vf=(ppo.vf_clip_coef or ppo.clip_coef) if ppo.clip_vloss else None,
            normalize_advantage=ppo.norm_adv,
            ent_coef=ppo.ent_coef,
            vf_coef=ppo.vf_coef,
            max_grad_norm=ppo.max_grad_norm,
            target_kl=ppo.target_kl,
            policy_kwargs={
                "net_arch": {"pi": list(ppo.hidden_sizes), "vf": list(ppo.hidden_sizes)},
                "activation_fn": torch.nn.Tanh,
            },
            seed=task_seed,
            device="cpu",
        )
        returns = EpisodeReturns(envs)
        model.learn(iters * envs * steps, callback=returns)
        curve = np.asarray(returns.curve[:iters], dtype=float).reshape(iters, 1)
        vec.training = False
        # Measured as MLSH's return after adaptation is: sampled actions unless deterministic.
        after = evaluate_policy(model, vec, n_eval_episodes=envs, deterministic=deterministic, warn=False)[0]
        vec.close()
        adaptation = Adaptation(curve, np.array([after], dtype=float), {})
        if returns.reports_goal:
            episodes, reaches = (
                np.asarray(counts[:iters], dtype=np.int64).reshape(iters, 1)
                for counts in (returns.episodes, returns.goal_reaches)
            )
            adaptation = adaptation._replace(episodes=episodes, goal_reaches=reaches)
        per_task.append(adaptation)
    return _stack_tasks(per_task)


@dataclasses.dataclass(frozen=True)
class MethodResult:
    """One method's adaptation on the evaluated tasks."""

    curve: np.ndarray  # [iters, num_tasks] mean episode return per iteration; NaN where no episode ended
    after: np.ndarray  # [num_tasks] mean return of the adapted policy, measured after adaptation
    steps_per_task_per_iter: int
    run_dir: str | None = None  # the run a baseline adapted (None: MLSH's own run, or from scratch)
    # [iters, num_tasks] int: episodes that ended in each adaptation iteration, and how many reached the goal;
    # None for envs whose step info has no ``goal_reached`` (only AntObstacles and AntMaze have it)
    episodes: np.ndarray | None = None
    goal_reaches: np.ndarray | None = None

    @classmethod
    def of(cls, adaptation: Adaptation, steps_per_task_per_iter: int, run_dir: str | None = None) -> MethodResult:
        """The result of one method's :class:`Adaptation` (its masters are not kept)."""
        a = adaptation
        return cls(a.curve, a.after, steps_per_task_per_iter, run_dir, a.episodes, a.goal_reaches)

    @property
    def mean_curve(self) -> list[float | None]:
        """Mean over tasks per iteration (None where no task ended an episode)."""
        return [_nan_mean(row) for row in self.curve]

    @property
    def success_curve(self) -> list[float | None] | None:
        """Per iteration, the mean over tasks of goal reaches / episodes ended (tasks that ended no episode
        left out; None where none did); None without goal counts."""
        if self.episodes is None or self.goal_reaches is None:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            rates = np.where(self.episodes > 0, self.goal_reaches / np.maximum(self.episodes, 1), np.nan)
        return [_nan_mean(row) for row in rates]

    @property
    def total_goal_reaches(self) -> int | None:
        """Goal reaches over the whole adaptation run, summed over tasks and iterations (None without goal counts)."""
        return None if self.goal_reaches is None else int(self.goal_reaches.sum())

    @property
    def adaptation_env_steps(self) -> int:
        """Env steps spent adapting, summed over tasks: iterations x tasks x steps per task and iteration."""
        iters, num_tasks = self.curve.shape
        return iters * num_tasks * self.steps_per_task_per_iter

    def summary(self, oracle: np.ndarray | None) -> dict[str, Any]:
        """The method's JSON entry; ``ratio`` to the oracle's mean return where there is one."""
        mean_curve = self.mean_curve
        summary: dict[str, Any] = {} if self.run_dir is None else {"run_dir": self.run_dir}
        summary.update(
            {
                "steps_per_task_per_iter": self.steps_per_task_per_iter,
                "curve_per_task": _nullable(self.curve.T),
                "curve": mean_curve,
                "return_after_adaptation_per_task": _nullable(self.after),
                "return_after_adaptation": float(np.mean(self.after)),
                "return_after_adaptation_std": float(np.std(self.after)),
                # Mean over iterations of the mean curve: the learning lifetime's return (area under the curve).
                "curve_mean": _nan_mean(np.asarray([np.nan if x is None else x for x in mean_curve], dtype=float)),
            }
        )
        if oracle is not None:
            summary["ratio"] = float(np.mean(self.after) / np.mean(oracle))
        if self.episodes is not None and self.goal_reaches is not None:
            summary.update(
                {
                    "episodes_per_task": self.episodes.T.tolist(),
                    "goal_reaches_per_task": self.goal_reaches.T.tolist(),
                    "success_curve": self.success_curve,
                    "goal_reaches_total": self.total_goal_reaches,
                    "episodes_total": int(self.episodes.sum()),
                    "adaptation_env_steps": self.adaptation_env_steps,
                }
            )
        return summary


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate_run` measured; :meth:`to_dict` is its JSON (``mlsh.evaluate``'s output file).

    ``methods`` holds MLSH first (``"mlsh"``), then the baselines in the order asked for.
    """

    run_dir: str
    env_id: str
    split: str
    seed: int
    adapt_iters: int
    deterministic: bool
    master_settings: dict[str, Any]  # the fresh masters' settings that replaced the run's
    tasks: list[Any]
    methods: dict[str, MethodResult]
    oracle: np.ndarray | None = None  # [num_tasks] the oracle's mean return per task
    adapted: AdaptedMasters | None = None  # the adapted masters (``keep_masters``), for videos and inspection
    adapt_macro_len: int | None = None  # the masters' macro step when AdaptOptions.macro_len replaced the run's

    @property
    def mlsh(self) -> MethodResult:
        return self.methods["mlsh"]

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def return_after_adaptation(self) -> float:
        """MLSH's mean return after adaptation over the tasks."""
        return float(np.mean(self.mlsh.after))

    @property
    def ratio(self) -> float | None:
        """:attr:`return_after_adaptation` over the oracle's mean return (None without an oracle)."""
        return None if self.oracle is None else self.return_after_adaptation / float(self.oracle.mean())

    def to_dict(self) -> dict[str, Any]:
        """The JSON: the run and settings, MLSH's results at the top level (with the oracle's, their ratio and,
        with the ``scratch`` baseline, the area-under-curve ratio), and every method under ``methods``."""
        mlsh, oracle = self.mlsh, self.oracle
        methods = {name: method.summary(oracle) for name, method in self.methods.items()}
        result: dict[str, Any] = {
            "run_dir": self.run_dir,
            "env_id": self.env_id,
            "split": self.split,
            "num_tasks": self.num_tasks,
            "seed": self.seed,
            "adapt_iters": self.adapt_iters,
            "deterministic": self.deterministic,
            "master_settings": self.master_settings,
            "adapt_macro_len": self.adapt_macro_len,
            "steps_per_task_per_iter": mlsh.steps_per_task_per_iter,
            "tasks": [_jsonable(t) for t in self.tasks],
            "return_after_adaptation": self.return_after_adaptation,
            "return_after_adaptation_per_task": mlsh.after.tolist(),
            # None where no episode ended during that iteration (strict JSON has no NaN).
            "adaptation_curve": methods["mlsh"]["curve"],
        }
        if "scratch" in methods:
            result["scratch_curve"] = methods["scratch"]["curve"]
            mlsh_area = _curve_area(methods["mlsh"]["curve"])
            scratch_area = _curve_area(methods["scratch"]["curve"])
            result["auc_ratio"] = mlsh_area / scratch_area if scratch_area > 0 else None
        if oracle is not None:
            result["oracle_return"] = float(oracle.mean())
            result["oracle_return_per_task"] = oracle.tolist()
            result["ratio"] = self.ratio
            result["ratio_per_task"] = (mlsh.after / np.maximum(oracle, 1e-8)).tolist()
        if mlsh.goal_reaches is not None:
            result["success_curve"] = methods["mlsh"]["success_curve"]
            result["goal_reaches_total"] = methods["mlsh"]["goal_reaches_total"]
            result["episodes_total"] = methods["mlsh"]["episodes_total"]
            result["adaptation_env_steps"] = methods["mlsh"]["adaptation_env_steps"]
        result["methods"] = methods
        return result


def master_overrides(master: Mapping[str, Any] | None) -> dict[str, Any]:
    """The master settings that were given: ``master`` without its None values (which keep the run's)."""
    return {key: value for key, value in (master or {}).items() if value is not None}


def adapt_master_settings(cfg: Config, master: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fresh masters' PPO settings that replace the run's ``master.*`` when it is evaluated or adapted: the
    run's ``adapt_master`` (its non-null values), then those ``master`` gives (a command's ``master.<key>=``)."""
    return {**master_overrides(cfg.adapt_master), **master_overrides(master)}


def with_master_settings(cfg: Config, master: Mapping[str, Any] | None) -> Config:
    """``cfg`` with the fresh masters' PPO settings replaced: :func:`adapt_master_settings`.

    Raises:
        ConfigError: an unknown key or an impossible value, naming ``master.<key>``.
    """
    return replace_section(cfg, "master", adapt_master_settings(cfg, master))


def _as_evaluated(cfg: Config, envs_per_task: int | None, master: Mapping[str, Any], device: str | None) -> Config:
    """A run's settings as this evaluation runs it: envs per task, master settings (given ones only:
    :func:`master_overrides`) and device."""
    if envs_per_task is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, envs_per_slot=envs_per_task))
    cfg = replace_section(cfg, "master", dict(master))
    return dataclasses.replace(cfg, device=device) if device else cfg


def with_macro_len(cfg: Config, macro_len: int | None) -> Config:
    """``cfg`` whose masters choose every ``macro_len`` steps (None: unchanged), for :attr:`AdaptOptions.macro_len`.

    Raises:
        ConfigError: ``macro_len`` does not divide the run's ``train.rollout_len``, with the values that do.
    """
    if macro_len is None:
        return cfg
    rollout_len = cfg.train.rollout_len
    if rollout_len % macro_len:
        divisors = [d for d in range(2, rollout_len) if rollout_len % d == 0 and d < cfg.mlsh.macro_len]
        example = f"; e.g. adapt_macro_len={divisors[-1]}" if divisors else ""
        raise ConfigError(
            f"adapt_macro_len={macro_len} does not divide the run's train.rollout_len ({rollout_len}); choose a "
            f"divisor of {rollout_len}{example}."
        )
    return dataclasses.replace(cfg, mlsh=dataclasses.replace(cfg.mlsh, macro_len=macro_len))


def _load_run(run_dir: str | Path) -> tuple[Path, dict[str, Any], Config]:
    path = checkpoint_path(run_dir)
    payload = load_checkpoint(path)
    return path, payload, config_from_dict(payload["config"])


def _baseline_run(name: str, baseline_runs: Mapping[str, Any], env_cfg: EnvConfig) -> tuple[Path, dict, Config]:
    """The run a baseline needs, checked to be the variant it stands for and to fit the env."""
    _, run_key = BASELINES[name]
    assert run_key is not None
    recipe, setting, value = _BASELINE_RUN_RECIPES[run_key]
    run_dir = baseline_runs.get(run_key)
    if not run_dir:
        raise ConfigError(
            f"Baseline '{name}' needs a run trained with {recipe}: train one with `python -m mlsh.train {recipe}` "
            f"and pass baseline_runs.{run_key}=<run dir>."
        )
    path, payload, cfg = _load_run(run_dir)
    found = getattr(cfg.mlsh, setting)
    if found != value:
        raise ConfigError(
            f"baseline_runs.{run_key}={run_dir} was trained with mlsh.{setting}={found}, not {value}; "
            f"pass a run trained with {recipe}."
        )
    check_fits_env(payload, env_cfg, path)
    return path, payload, cfg


def _check_bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}; write {key}=true or {key}=false.")


def check_positive_int(key: str, value: Any, example: int, nullable: bool = False) -> None:
    """Refuses anything but an integer >= 1 (or None where ``nullable``), naming ``key`` and an example."""
    if nullable and value is None:
        return
    if not is_int(value) or value < 1:
        null = " or null" if nullable else ""
        raise ConfigError(f"{key} must be a positive integer{null}, got {value!r}; set e.g. {key}={example}.")


@dataclasses.dataclass(frozen=True)
class AdaptOptions:
    """How :func:`evaluate_run` adapts fresh masters to each task and measures them (every method alike).

    Attributes:
        iters: adaptation iterations of the master (None: the run's ``mlsh.warmup_iters``).
        envs_per_task: episodes' envs per task in each adaptation iteration, for every method (None: each
            run's ``train.envs_per_slot``); the original's masters learned from a group of 12 workers each.
        master: PPO settings of the fresh masters (``lr``, ``gamma``, ...: the keys of the run's ``master``
            section) that replace the run's while adapting, for MLSH and the MLSH baselines (``no_warmup``,
            ``every_step``) alike; None values keep the run's.
        macro_len: the fresh masters of the evaluated run choose a sub-policy every ``macro_len`` steps instead
            of every ``mlsh.macro_len`` (None: the run's), while adapting and when measured; it must divide the
            run's ``train.rollout_len``. The sub-policies stay those trained for the run's macro step; the
            baselines keep their own (``every_step`` is defined by its macro step of 1).
        deterministic: measure every method's return after adaptation with its most likely choices
            (Stable-Baselines3's ``evaluate_policy`` default) instead of samples.
        device: run on this device instead of the run's.

    Raises:
        ConfigError: at construction, one sentence naming the setting and a valid value.
    """

    iters: int | None = None
    envs_per_task: int | None = None
    master: Mapping[str, Any] | None = None
    deterministic: bool = False
    device: str | None = None
    macro_len: int | None = None

    def __post_init__(self) -> None:
        if self.iters is not None and (not is_int(self.iters) or self.iters < 0):
            raise ConfigError(
                f"adapt_iters must be a non-negative integer or null (the run's warmup_iters), got {self.iters!r}; "
                f"set e.g. adapt_iters=9."
            )
        check_positive_int("envs_per_task", self.envs_per_task, 8, nullable=True)
        if self.master is not None and not isinstance(self.master, Mapping):
            raise ConfigError(f"master must map PPO settings to values, got {self.master!r}; set e.g. master.lr=0.003.")
        _check_bool("deterministic", self.deterministic)
        if self.device is not None:
            check_device(self.device)
        check_positive_int("adapt_macro_len", self.macro_len, 100, nullable=True)


@dataclasses.dataclass(frozen=True)
class CompareOptions:
    """What :func:`evaluate_run` compares MLSH with, on the same tasks.

    Attributes:
        oracle: run the env's oracle (scripted best policy) and report the ratio to its return.
        oracle_episodes: oracle episodes per task.
        baselines: names from :data:`BASELINES`, each given the same tasks and env-step budget.
        baseline_runs: run dirs the baselines need: ``flat`` (``algo=flat_ppo``), ``no_warmup``,
            ``every_step``.

    Raises:
        ConfigError: at construction, one sentence naming the setting and a valid value.
    """

    oracle: bool = True
    oracle_episodes: int = 10
    baselines: Sequence[str] = ()
    baseline_runs: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_bool("oracle", self.oracle)
        if self.oracle:
            check_positive_int("oracle_episodes", self.oracle_episodes, 10)
        if not isinstance(self.baselines, (list, tuple)) or not all(isinstance(b, str) for b in self.baselines):
            raise ConfigError(
                f"baselines must be a list of names, got {self.baselines!r}; write e.g. baselines=[scratch,flat]."
            )
        unknown = [name for name in self.baselines if name not in BASELINES]
        if unknown:
            raise ConfigError(
                f"Unknown baseline '{unknown[0]}'; choose from {', '.join(BASELINES)}, e.g. baselines=[scratch]."
            )
        if self.baseline_runs is not None and not isinstance(self.baseline_runs, Mapping):
            raise ConfigError(
                f"baseline_runs must map baseline names to run dirs, got {self.baseline_runs!r}; set e.g. "
                f"baseline_runs.flat=<run dir>."
            )


def evaluate_run(
    run_dir: str | Path,
    num_tasks: int = 20,
    seed: int = 0,
    *,
    adapt: AdaptOptions | None = None,
    compare: CompareOptions | None = None,
    env: EnvConfig | None = None,
    split: str = "heldout",
    keep_masters: bool = False,
    before_work: Callable[[Config], None] | None = None,
) -> EvaluationResult:
    """Adapts fresh masters on ``num_tasks`` unseen tasks over a run's frozen sub-policies.

    Args:
        run_dir: a run directory (or its ``checkpoint.pt``).
        num_tasks: tasks evaluated (one slot each, in one batched run).
        seed: evaluation seed; tasks come from a stream that training never draws from.
        adapt: how the masters adapt and are measured (default: :class:`AdaptOptions`'s defaults).
        compare: the oracle and the baselines (default: the oracle, no baseline).
        env: evaluate on this env (default: the run's); it must have the run's spaces.
        split: ``heldout`` (the env's test split where it has one) or ``train`` (see :func:`sample_eval_tasks`).
        keep_masters: keep the adapted masters in the result's ``adapted`` (for videos and inspection).
        before_work: called with the settings evaluated (the run's, as evaluated on its env) once every
            argument, the run and the baseline runs have been checked, before any adaptation (the command
            line checks and claims its output paths there).

    Every argument is checked before any work. The env's optional ``sample_test_task`` and ``oracle_action``
    fall back with a one-line notice (:func:`task_sampler`; without an oracle, no ratio is reported).

    Returns:
        An :class:`EvaluationResult`: every method's per-task curves and returns after adaptation, the
        oracle's returns; :meth:`EvaluationResult.to_dict` is the JSON (mean return after adaptation, the
        oracle's, their ratio, per-task values, the adaptation curve and every method's summary).
    """
    adapt = AdaptOptions() if adapt is None else adapt
    compare = CompareOptions() if compare is None else compare
    check_positive_int("num_tasks", num_tasks, 20)
    check_seed("seed", seed)
    _check_bool("keep_masters", keep_masters)
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}; set split=heldout.")
    chosen = list(dict.fromkeys(compare.baselines))
    path, payload, cfg = _load_run(run_dir)
    if cfg.train.torch_threads:  # as in training: small MLPs run fastest single-threaded
        torch.set_num_threads(cfg.train.torch_threads)
    master_settings = adapt_master_settings(cfg, adapt.master)
    cfg = _as_evaluated(cfg, adapt.envs_per_task, master_settings, adapt.device)
    trained_macro_len = cfg.mlsh.macro_len
    cfg = with_macro_len(cfg, adapt.macro_len)
    check_device(cfg.device)  # the run's own, unless device= replaced it
    iters = cfg.mlsh.warmup_iters if adapt.iters is None else adapt.iters
    if iters == 0 and chosen:
        raise ConfigError("Baselines need adaptation iterations to compare; set adapt_iters=1 or more.")
    env_cfg = env or cfg.env
    check_fits_env(payload, env_cfg, path)
    runs = {name: _baseline_run(name, compare.baseline_runs or {}, env_cfg) for name in chosen if BASELINES[name][1]}
    task_cfg = dataclasses.replace(cfg, env=env_cfg)
    tasks = sample_eval_tasks(task_cfg, num_tasks, seed, split)
    oracle = compare.oracle
    if oracle and not has_oracle(env_cfg):
        notice(f"'{env_cfg.id}' has no oracle policy (oracle_action), so no oracle return or ratio is reported.")
        oracle = False
    if before_work is not None:
        before_work(task_cfg)
    oracle_seed = seed + 2 * EVAL_ENV_SEED_OFFSET
    oracle_means = oracle_returns(env_cfg, tasks, compare.oracle_episodes, oracle_seed) if oracle else None

    deterministic = adapt.deterministic
    mlsh = adapt_masters(cfg, payload["learner"]["policy"], tasks, iters, seed, path, env_cfg, deterministic)
    steps_per_iter = cfg.train.envs_per_slot * cfg.train.rollout_len
    methods = {"mlsh": MethodResult.of(mlsh, steps_per_iter)}
    for name in chosen:
        run_dir_used = None
        if name == "scratch":
            adaptation, used = flat_ppo_adaptation(task_cfg, tasks, iters, seed, deterministic=deterministic), cfg
        elif name == "sb3_scratch":
            adaptation, used = sb3_ppo_adaptation(task_cfg, tasks, iters, seed, deterministic), cfg
        else:
            other_path, other_payload, used = runs[name]
            # Fine-tuning trains the flat run's policy, not fresh masters: it keeps the run's master settings.
            used = _as_evaluated(used, adapt.envs_per_task, {} if name == "finetune" else master_settings, adapt.device)
            state = other_payload["learner"]["policy"]
            if name == "finetune":
                adaptation = flat_ppo_adaptation(
                    dataclasses.replace(used, env=env_cfg), tasks, iters, seed, state, other_path, deterministic
                )
            else:
                adaptation = adapt_masters(used, state, tasks, iters, seed, other_path, env_cfg, deterministic)
            run_dir_used = str(other_path.parent)
        steps = used.train.envs_per_slot * used.train.rollout_len
        methods[name] = MethodResult.of(adaptation, steps, run_dir_used)
    adapted = None
    if keep_masters:
        policy_state = {**payload["learner"]["policy"], **mlsh.masters}
        adapted = AdaptedMasters(task_cfg, policy_state, tasks, path, trained_macro_len)
    return EvaluationResult(
        run_dir=str(path.parent),
        env_id=env_cfg.id,
        split=split,
        seed=seed,
        adapt_iters=iters,
        deterministic=deterministic,
        master_settings=master_settings,
        adapt_macro_len=adapt.macro_len,
        tasks=list(tasks),
        methods=methods,
        oracle=oracle_means,
        adapted=adapted,
    )


def _curve_area(curve: Sequence[float | None]) -> float:
    """Sum of a mean curve over the iterations where an episode ended."""
    return float(sum(x for x in curve if x is not None))


def _jsonable(task: Any) -> Any:
    if isinstance(task, np.ndarray):
        return task.tolist()
    if isinstance(task, np.generic):
        return task.item()
    if isinstance(task, tuple):
        return [_jsonable(t) for t in task]
    return task


def master_settings_text(settings: Mapping[str, Any] | None) -> str:
    """``"; masters with lr=0.003, gamma=0.5"`` for a report header; empty without settings."""
    if not settings:
        return ""
    return "; masters with " + ", ".join(f"{key}={value}" for key, value in settings.items())


def macro_len_text(macro_len: int | None) -> str:
    """``"; masters choose every 100 steps"`` for a report header where ``adapt_macro_len`` was given; else empty."""
    return "" if macro_len is None else f"; masters choose every {macro_len} steps"


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of per-task results and the means, then the methods' summary."""
    has_oracle = "oracle_return" in result
    lines = [
        f"Evaluation of {result['run_dir']} on {result['num_tasks']} unseen tasks "
        f"({result['adapt_iters']} adaptation iterations of a fresh master, sub-policies frozen"
        f"{'; returns after adaptation measured with the most likely choices' if result.get('deterministic') else ''}"
        f"{master_settings_text(result.get('master_settings'))}"
        f"{macro_len_text(result.get('adapt_macro_len'))})"
    ]
    header = f"{'task':>6} {'value':>12} {'return':>10}" + (f" {'oracle':>10} {'ratio':>7}" if has_oracle else "")
    lines.append(header)
    for i, task in enumerate(result["tasks"]):
        row = f"{i:>6} {str(task):>12} {result['return_after_adaptation_per_task'][i]:>10.2f}"
        if has_oracle:
            row += f" {result['oracle_return_per_task'][i]:>10.2f} {result['ratio_per_task'][i]:>7.2f}"
        lines.append(row)
    mean = f"{'mean':>6} {'':>12} {result['return_after_adaptation']:>10.2f}"
    if has_oracle:
        mean += f" {result['oracle_return']:>10.2f} {result['ratio']:>7.2f}"
    lines.append(mean)
    curve = " ".join("-" if x is None else f"{x:.2f}" for x in result["adaptation_curve"])
    lines.append(f"adaptation curve (mean return per iteration): {curve}")
    if "scratch_curve" in result:
        scratch = " ".join("-" if x is None else f"{x:.2f}" for x in result["scratch_curve"])
        lines.append(f"PPO from scratch, same tasks and steps:     {scratch}")
        auc = result["auc_ratio"]
        lines.append(f"area-under-curve ratio MLSH / scratch: {'-' if auc is None else f'{auc:.2f}'}")
    if "goal_reaches_total" in result:
        success = " ".join("-" if x is None else f"{x:.2f}" for x in result["success_curve"])
        lines.append(f"success rate per iteration (goal reaches / episodes ended, mean over tasks): {success}")
        lines.append(
            f"goal reaches during adaptation: {result['goal_reaches_total']} of {result['episodes_total']} episodes "
            f"in {result['adaptation_env_steps']} env steps (all tasks)"
        )
    if len(result.get("methods", {})) > 1:
        lines.append("")
        lines.append(format_summary(result))
    return "\n".join(lines)


def format_summary(result: dict[str, Any]) -> str:
    """One row per method: return after adaptation (mean and std over tasks), ratio, lifetime mean, and where
    the env flags ``goal_reached``, the goal reaches over the adaptation run and its env steps (all tasks)."""
    has_oracle = "oracle_return" in result
    has_goals = any("goal_reaches_total" in method for method in result["methods"].values())
    header = f"{'method':<38} {'return after':>12} {'std':>6} {'ratio':>6} {'curve mean':>10}"
    lines = [header + (f" {'goal reaches':>12} {'env steps':>10}" if has_goals else "")]
    for name, method in result["methods"].items():
        ratio = f"{method['ratio']:.2f}" if "ratio" in method else "-"
        lifetime = "-" if method["curve_mean"] is None else f"{method['curve_mean']:.2f}"
        row = (
            f"{METHOD_LABELS.get(name, name):<38} {method['return_after_adaptation']:>12.2f} "
            f"{method['return_after_adaptation_std']:>6.2f} {ratio:>6} {lifetime:>10}"
        )
        if has_goals:
            reaches = method.get("goal_reaches_total")
            steps = method.get("adaptation_env_steps")
            row += f" {'-' if reaches is None else reaches:>12} {'-' if steps is None else steps:>10}"
        lines.append(row)
    if has_oracle:
        lines.append(f"{'oracle':<38} {result['oracle_return']:>12.2f} {'':>6} {'1.00':>6} {'':>10}")
    return "\n".join(lines)
