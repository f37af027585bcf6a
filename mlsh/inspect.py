"""``python -m mlsh.inspect checkpoint=<run dir>``: what each sub-policy does, and how much it is used.

Spots collapsed or unused sub-policies. Fresh masters first adapt on unseen tasks (as in
``mlsh.evaluate``); then, per sub-policy k:

* **usage**: the share of env steps in which k is active when the adapted masters act;
* **behaviour alone**: k runs alone from episode starts; for envs with a position (plane, grid,
  MuJoCo locomotion) the mean displacement per macro step, and the action histogram (discrete) or
  mean action (continuous);
* **agreement**: how often two sub-policies pick the same most likely action on the observations
  either visits alone;
* **flags**: ``unused`` (usage below ``unused_below``) and ``alike`` pairs (agreement of
  ``ALIKE_AGREEMENT`` or more: the sub-policies have collapsed onto one behaviour);
* **goal-directed choices** (envs with a ``goal_position``: AntTwowalk, AntMaze, AntObstacles): at each
  master decision, the "right" sub-policy is the one whose mean displacement alone points most toward
  the goal, ``argmax_k mean_displacement_k . unit(goal - position)``; the report gives the share of
  decisions that chose it, overall and per task (docs/results/ant.md reports it for the Ant tasks).
  ``null`` for envs without a goal or without displacements (MovementBandits, FourRooms, KeyDoor);
* **open floor** (envs that offer one, ``env.unwrapped.open_floor()``: the Ant tasks): k runs alone on an
  open floor with the same body and observations, where no wall stops it, for as many whole macro steps as
  an episode holds; the mean displacement per macro step, its heading, and the speed along that heading
  (the mean of each macro step's displacement projected on it, units per macro step). In a maze the
  walls cut a fast walk short, so the displacement alone above is lower than the gait's;
* **goal reached** (envs whose ``info`` has ``is_success`` or ``goal_reached``: AntMaze, AntObstacles):
  the share of the adapted masters' episodes in which it became true, overall and per task, and (envs with
  a goal position) the median over those episodes of the closest the agent came to the goal;
* **task coverage** (any env): per task, the best return a single sub-policy gets alone ("always k"
  instead of the master) and the adapted master's return, against a reference: the env's oracle on
  that task where it has one, else the best adapted return over the evaluated tasks. A task is
  *uncovered* when neither reaches ``covered_fraction`` of the reference: no sub-policy serves it, and
  the master cannot make one from them. The flag ``uncovered`` is raised when at least
  ``uncovered_share`` of the tasks are (a sub-policy that serves no task family, as on a collapsed
  MovementBandits seed, where every task of one goal is uncovered while the usage looks balanced).

Writes ``<run dir>/inspect/inspect_seed<seed>.json`` and a PNG: visit heat-maps for grid envs
(where k is active under the masters, and where k goes alone), displacement vectors otherwise.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from mlsh.actor import PolicyActor
from mlsh.checkpoint import write_atomic
from mlsh.checks import finite_number
from mlsh.cli import run_cli
from mlsh.config import Config, EnvConfig
from mlsh.envs import make_env, success
from mlsh.errors import ConfigError
from mlsh.evaluate import (
    CommandOutput,
    adapt_options,
    check_bool,
    check_video_settings,
    command_videos,
    env_override,
    parse_job,
    video_env,
)
from mlsh.evaluation import (
    AdaptedMasters,
    AdaptOptions,
    CompareOptions,
    check_positive_int,
    evaluate_run,
    has_oracle,
    macro_len_text,
    master_settings_text,
    oracle_returns,
)

# Two sub-policies are "alike" (collapsed onto one behaviour) when their most likely actions agree this
# often on the observations they visit.
ALIKE_AGREEMENT = 0.9


def agent_position(env: gym.Env) -> tuple[np.ndarray | None, bool]:
    """The agent's position, and whether it is a grid cell; ``(None, False)`` when the env has none.

    Asked of the env: the task contract's ``agent_position`` and ``position_is_cell`` (``envs.base.TaskEnv``).
    """
    env = env.unwrapped
    position = getattr(env, "agent_position", None)
    if position is None:
        return None, False
    return np.asarray(position, dtype=float), bool(getattr(env, "position_is_cell", False))


@dataclass
class SubPolicyRecord:
    """What was seen of one sub-policy."""

    active_steps: int = 0
    visits_active: dict[tuple[int, ...], int] = field(default_factory=dict)  # grid: cell -> steps active there
    visits_alone: dict[tuple[int, ...], int] = field(default_factory=dict)  # grid: cell -> steps, running alone
    displacements: list[np.ndarray] = field(default_factory=list)  # alone: position change per macro step
    actions: list[np.ndarray] = field(default_factory=list)  # alone: every action taken
    # alone: every sub-policy's most likely action on the observations k visits, [steps, K, *action_shape]
    all_modes: list[np.ndarray] = field(default_factory=list)


def _count(visits: dict[tuple[int, ...], int], position: np.ndarray | None) -> None:
    if position is not None:
        key = tuple(int(v) for v in position)
        visits[key] = visits.get(key, 0) + 1


def _goal_offset(env: gym.Env) -> np.ndarray | None:
    """``env.unwrapped.goal_position`` minus the agent's position ``[2]``; None without a goal or a position."""
    goal = getattr(env.unwrapped, "goal_position", None)
    position = agent_position(env)[0]
    if goal is None or position is None:
        return None
    return np.asarray(goal, dtype=float) - position[:2]


def goal_direction(env: gym.Env) -> np.ndarray | None:
    """Unit vector ``[2]`` from the agent to ``env.unwrapped.goal_position``; None without a goal or a
    position, or with the agent exactly on the goal."""
    offset = _goal_offset(env)
    length = 0.0 if offset is None else float(np.linalg.norm(offset))
    return offset / length if offset is not None and length > 0 else None


def goal_distance(env: gym.Env) -> float | None:
    """Distance from the agent to ``env.unwrapped.goal_position``; None without a goal or a position."""
    offset = _goal_offset(env)
    return None if offset is None else float(np.linalg.norm(offset))


class Episode(NamedTuple):
    """One episode under an adapted master."""

    decisions: list[tuple[int, np.ndarray]]  # (chosen sub-policy, unit goal direction) per decision
    reached: bool | None  # mlsh.envs.success became true; None: the env reports none
    closest: float | None  # the smallest distance from the agent to the goal; None without a goal or a position


def _run_with_master(
    agent: PolicyActor,
    env: gym.Env,
    records: list[SubPolicyRecord],
    seed: int,
    grid: bool,
    deterministic: bool | str = False,
) -> Episode:
    """One episode under the adapted master: its decisions (empty for envs without a goal), whether it
    reached the goal, and how close it came; ``deterministic`` as :func:`inspect_run`'s."""
    obs, _ = env.reset(seed=seed)
    state, start = None, np.ones(1, dtype=bool)
    decisions: list[tuple[int, np.ndarray]] = []
    reached: bool | None = None
    closest = goal_distance(env)
    while True:
        # predict's convention: the master decides at an episode start or when no steps are left.
        decides = bool(start[0]) or int(state[1][0]) <= 0
        direction = goal_direction(env) if decides else None
        action, state = agent.predict(obs, state, start, deterministic is True, greedy_master=deterministic == "master")
        sub = int(state[0][0])
        if direction is not None:
            decisions.append((sub, direction))
        records[sub].active_steps += 1
        if grid:
            _count(records[sub].visits_active, agent_position(env)[0])
        obs, _, terminated, truncated, info = env.step(action)
        reached_now = success(info)
        if reached_now is not None:
            reached = bool(reached) or reached_now
        if closest is not None:  # envs with a goal and a position only
            distance = goal_distance(env)
            closest = closest if distance is None else min(closest, distance)
        start = np.zeros(1, dtype=bool)
        if terminated or truncated:
            return Episode(decisions, reached, closest)


def _modes(agent: PolicyActor, obs: np.ndarray) -> np.ndarray:
    """Every sub-policy's most likely action on ``obs``: ``[K, *action_shape]``."""
    k_count = agent.num_subpolicies
    batch = np.repeat(np.asarray(obs)[None], k_count, axis=0)
    mid_macro_step = (np.arange(k_count), np.ones(k_count, dtype=np.int64))  # sub-policy i acts on row i
    return agent.predict(batch, mid_macro_step, deterministic=True)[0]


def _run_alone(
    agent: PolicyActor, env: gym.Env, k: int, record: SubPolicyRecord, seed: int, grid: bool, macro_len: int
) -> float:
    """One episode of sub-policy k alone (sampled actions, as the master's episodes), its displacements recorded
    per ``macro_len`` steps (the run's macro step); returns its return."""
    policy = agent.subpolicy(k)
    obs, _ = env.reset(seed=seed)
    position, _ = agent_position(env)
    macro_start, steps, episode_return = position, 0, 0.0
    while True:
        if grid:
            _count(record.visits_alone, position)
        action, _ = policy.predict(obs)
        record.actions.append(np.asarray(action))
        record.all_modes.append(_modes(agent, obs))
        obs, reward, terminated, truncated, _ = env.step(action)
        episode_return += float(reward)
        position, _ = agent_position(env)
        steps += 1
        if position is not None and (steps % macro_len == 0 or terminated or truncated):
            if steps % macro_len == 0:  # only whole macro steps: a cut one would bias the mean
                record.displacements.append(position - macro_start)
            macro_start = position
        if terminated or truncated:
            return episode_return


def open_floor_walk(moves: np.ndarray) -> dict[str, Any]:
    """How far and where a sub-policy walks, from its displacements per whole macro step ``[M, 2]`` (M >= 1).

    Returns:
        ``mean_displacement`` ``[2]``, ``heading_degrees`` (of the mean; 0 is +x, 90 is +y), ``speed_along_heading``
        (the mean of each displacement projected on the mean's direction, which is the mean's length: a
        sub-policy that zigzags or turns scores less than the distance it covers, ``mean_step_length``) and
        ``macro_steps`` (M).
    """
    moves = np.asarray(moves, dtype=float)[:, :2]
    step_length = float(np.linalg.norm(moves, axis=1).mean())
    return {**walk_of_mean(moves.mean(axis=0), len(moves)), "mean_step_length": step_length}


def walk_of_mean(mean: Sequence[float], macro_steps: int) -> dict[str, Any]:
    """:func:`open_floor_walk`'s figures that follow from the mean displacement of ``macro_steps`` macro steps
    alone (all but ``mean_step_length``): also for walks pooled from several reports."""
    x, y = float(mean[0]), float(mean[1])
    return {
        "mean_displacement": [x, y],
        "heading_degrees": float(np.degrees(np.arctan2(y, x))),
        "speed_along_heading": float(np.hypot(x, y)),
        "macro_steps": int(macro_steps),
    }


def _run_open_floor(
    agent: PolicyActor, floor: gym.Env, k: int, macro_steps: int, seed: int, macro_len: int
) -> list[np.ndarray]:
    """Sub-policy k alone on the open floor for ``macro_steps`` whole macro steps of ``macro_len`` steps (sampled
    actions, as :func:`_run_alone`); its displacement per macro step."""
    policy = agent.subpolicy(k)
    obs, _ = floor.reset(seed=seed)
    macro_start = agent_position(floor)[0]
    moves = []
    for step in range(1, macro_steps * macro_len + 1):
        action, _ = policy.predict(obs)
        obs, *_ = floor.step(action)
        if step % macro_len == 0:
            position = agent_position(floor)[0]
            moves.append(position - macro_start)
            macro_start = position
    return moves


def _open_floor_walks(
    agent: PolicyActor, env: gym.Env, episodes: int, seed: int, macro_len: int
) -> list[dict[str, Any]] | None:
    """:func:`open_floor_walk` of every sub-policy over ``episodes`` episodes on ``env``'s open floor, per macro
    step of ``macro_len`` steps (the run's); None for envs without one. An episode is as many whole macro steps as
    ``env``'s time limit holds (at least 1)."""
    make_floor = getattr(env.unwrapped, "open_floor", None)
    if make_floor is None:
        return None
    limit = env.spec.max_episode_steps if env.spec is not None and env.spec.max_episode_steps else macro_len
    macro_steps = max(1, int(limit) // macro_len)
    floor = make_floor()
    walks = []
    for k in range(agent.num_subpolicies):
        runs = (_run_open_floor(agent, floor, k, macro_steps, seed + 1000 * e, macro_len) for e in range(episodes))
        moves = [m for run in runs for m in run]
        walks.append(open_floor_walk(np.array(moves)))
    floor.close()
    return walks


def _summaries(agent: PolicyActor, records: list[SubPolicyRecord], unused_below: float) -> dict[str, Any]:
    total = max(1, sum(r.active_steps for r in records))
    discrete = isinstance(agent.action_space, gym.spaces.Discrete)
    subs = []
    for k, record in enumerate(records):
        entry: dict[str, Any] = {"index": k, "usage": record.active_steps / total}
        if record.displacements:
            mean = np.mean(record.displacements, axis=0)
            entry["mean_displacement"] = mean.tolist()
            entry["mean_displacement_length"] = float(np.linalg.norm(mean))
            entry["mean_step_length"] = float(np.mean(np.linalg.norm(record.displacements, axis=1)))
        actions = np.asarray(record.actions)
        if discrete:
            hist = np.bincount(actions.astype(int).ravel(), minlength=int(agent.action_space.n))
            entry["action_histogram"] = (hist / max(1, hist.sum())).tolist()
        elif len(actions):
            entry["mean_action"] = actions.mean(axis=0).tolist()
        subs.append(entry)
    unused = [s["index"] for s in subs if s["usage"] < unused_below]
    agreement = _agreement(agent, records)
    alike = [[i, j] for i in range(len(subs)) for j in range(i + 1, len(subs)) if agreement[i][j] >= ALIKE_AGREEMENT]
    return {"subpolicies": subs, "agreement": agreement, "unused": unused, "alike": alike}


def goal_directed_shares(
    mean_displacements: np.ndarray, directions: np.ndarray, chosen: np.ndarray, task_index: np.ndarray, num_tasks: int
) -> dict[str, Any]:
    """How often the master chose the sub-policy heading for the goal.

    Args:
        mean_displacements: ``[K, 2]``, each sub-policy's mean displacement per macro step alone.
        directions: ``[D, 2]``, the unit vector from the agent to the goal at each of D decisions.
        chosen: ``[D]``, the sub-policy chosen at each decision.
        task_index: ``[D]``, the task (in ``[0, num_tasks)``) of each decision.
        num_tasks: number of tasks.

    Returns:
        ``{"overall": share, "per_task": [share or None (no decision)] * num_tasks, "decisions": D}``; the
        right sub-policy is ``argmax_k mean_displacements[k] . direction`` (ties: the lowest k).
    """
    right = np.argmax(np.asarray(directions, dtype=float) @ np.asarray(mean_displacements, dtype=float).T, axis=1)
    hits = right == np.asarray(chosen)
    task_index = np.asarray(task_index)
    per_task = [float(hits[task_index == t].mean()) if np.any(task_index == t) else None for t in range(num_tasks)]
    return {"overall": float(hits.mean()) if len(hits) else None, "per_task": per_task, "decisions": int(len(hits))}


def _goal_directed_choices(
    subs: list[dict[str, Any]], decisions: list[tuple[int, int, np.ndarray]], num_tasks: int
) -> dict[str, Any] | None:
    """:func:`goal_directed_shares` of ``(task, sub-policy, direction)`` decisions; None without decisions
    or without every sub-policy's mean displacement."""
    if not decisions or not all("mean_displacement" in sub for sub in subs):
        return None
    tasks, chosen, directions = zip(*decisions)
    means = np.array([sub["mean_displacement"] for sub in subs])[:, :2]
    return goal_directed_shares(means, np.array(directions), np.array(chosen), np.array(tasks), num_tasks)


def _goal_reached(reached: list[tuple[int, bool, float | None]], num_tasks: int) -> dict[str, Any] | None:
    """Share of episodes that reached the goal, overall and per task, and the median over episodes of the
    closest each came to the goal (where the env has a goal position); None where the env never flags it."""
    if not reached:
        return None
    tasks = np.array([task for task, _, _ in reached])
    hits = np.array([hit for _, hit, _ in reached], dtype=float)
    per_task = [float(hits[tasks == t].mean()) if np.any(tasks == t) else None for t in range(num_tasks)]
    shares: dict[str, Any] = {"overall": float(hits.mean()), "per_task": per_task, "episodes": len(hits)}
    if all(closest is not None for _, _, closest in reached):
        closest = np.array([c for _, _, c in reached], dtype=float)
        shares["closest_approach"] = {
            "median": float(np.median(closest)),
            "per_task": [
                float(np.median(closest[tasks == t])) if np.any(tasks == t) else None for t in range(num_tasks)
            ],
        }
    return shares


def task_coverage(
    alone_returns: np.ndarray,
    adapted_returns: np.ndarray,
    reference: np.ndarray | None,
    covered_fraction: float,
    uncovered_share: float,
) -> dict[str, Any] | None:
    """Which tasks no single sub-policy (nor the adapted master) serves.

    Args:
        alone_returns: ``[num_tasks, K]``, mean return of sub-policy k alone on each task.
        adapted_returns: ``[num_tasks]``, the adapted master's return on each task.
        reference: ``[num_tasks]``, the oracle's return per task; None: the best adapted return over the
            tasks stands for every task.
        covered_fraction: a task is covered when its best single sub-policy or its adapted master
            reaches this fraction of its reference.
        uncovered_share: the flag is raised when at least this share of the tasks is uncovered.

    Returns:
        ``{"best_alone": [num_tasks], "best_alone_index": [num_tasks], "reference": [num_tasks],
        "reference_kind": "oracle" | "best adapted", "uncovered_tasks": [task indices], "uncovered_share":
        share of the checked tasks, "flag": bool}``. Tasks whose reference is not positive are not checked
        (a fraction of it means nothing); None when no task is checked.
    """
    alone_returns = np.asarray(alone_returns, dtype=float)
    adapted_returns = np.asarray(adapted_returns, dtype=float)
    kind = "oracle" if reference is not None else "best adapted"
    if reference is None:
        reference = np.full(len(adapted_returns), float(np.max(adapted_returns)))
    reference = np.asarray(reference, dtype=float)
    checked = reference > 0  # a fraction of a return of zero or less means nothing: such tasks are left out
    if not checked.any():
        return None
    best_alone = alone_returns.max(axis=1)
    served = np.maximum(best_alone, adapted_returns) >= covered_fraction * reference
    uncovered = [int(t) for t in np.flatnonzero(checked & ~served)]
    share = len(uncovered) / int(checked.sum())
    return {
        "best_alone": best_alone.tolist(),
        "best_alone_index": [int(k) for k in alone_returns.argmax(axis=1)],
        "adapted": adapted_returns.tolist(),
        "reference": reference.tolist(),
        "reference_kind": kind,
        "covered_fraction": covered_fraction,
        "uncovered_tasks": uncovered,
        "checked_tasks": int(checked.sum()),
        "uncovered_share": share,
        "flag": bool(uncovered) and share >= uncovered_share,
    }


def _agreement(agent: PolicyActor, records: list[SubPolicyRecord]) -> list[list[float]]:
    """``[K, K]``: how often sub-policies i and j pick the same most likely action, on the observations
    that either visits alone (continuous actions: 1 - mean distance / the action range's diagonal)."""
    modes = np.concatenate([np.asarray(r.all_modes) for r in records if r.all_modes])  # [steps, K, ...]
    k_count = agent.num_subpolicies
    out = np.ones((k_count, k_count))
    space = agent.action_space
    for i in range(k_count):
        for j in range(i + 1, k_count):
            if isinstance(space, gym.spaces.Discrete):
                value = float(np.mean(modes[:, i] == modes[:, j]))
            else:
                diagonal = float(np.linalg.norm(space.high - space.low))
                value = 1.0 - float(np.mean(np.linalg.norm(modes[:, i] - modes[:, j], axis=-1))) / diagonal
            out[i, j] = out[j, i] = value
    return out.tolist()


def inspect_run(
    run_dir: str | Path,
    num_tasks: int = 10,
    episodes: int = 2,
    seed: int = 0,
    *,
    adapt: AdaptOptions | None = None,
    unused_below: float = 0.05,
    covered_fraction: float = 0.5,
    uncovered_share: float = 0.2,
    deterministic: bool | str = False,
    env: EnvConfig | None = None,
    before_work: Callable[[Config], None] | None = None,
    on_adapted: Callable[[AdaptedMasters], None] | None = None,
) -> tuple[dict[str, Any], list[SubPolicyRecord]]:
    """Adapts fresh masters on ``num_tasks`` unseen tasks, then records every sub-policy.

    Args:
        episodes: episodes per task with the adapted master, and per task and sub-policy alone.
        adapt: how the masters adapt (see :class:`mlsh.evaluation.AdaptOptions`; its device also runs the
            recorded episodes, default cpu).
        unused_below: usage share under which a sub-policy is flagged unused.
        covered_fraction: share of a task's reference (oracle, else best adapted return) that its best
            single sub-policy or its adapted master must reach for the task to count as covered.
        uncovered_share: share of uncovered tasks at which the ``uncovered`` flag is raised.
        deterministic: the adapted masters' episodes with most likely choices: False samples every choice
            and action (as in training), True takes the masters' and the sub-policies' most likely ones,
            ``"master"`` the masters' only (the sub-policies' actions still sampled).
        env: inspect on this env (default: the run's), e.g. a transfer task; it must have the run's spaces.
        before_work: called once every argument has been checked, before any work (see :func:`evaluate_run`).
        on_adapted: called with the adapted masters once they are trained (videos of them, say).

    Returns:
        ``(report, records)``: a JSON-able report, and the raw records (for the plots).

    Raises:
        ConfigError: a bad argument, before any work (see :func:`mlsh.evaluation.evaluate_run`).
    """
    check_positive_int("episodes", episodes, 2)
    if not (isinstance(deterministic, bool) or deterministic == "master"):
        raise ConfigError(
            f"deterministic must be false, true or master, got {deterministic!r}; e.g. deterministic=master takes "
            "the masters' most likely choices."
        )
    if not finite_number(unused_below) or not 0 <= unused_below <= 1:
        raise ConfigError(f"unused_below must be a share in [0, 1], got {unused_below!r}; set e.g. unused_below=0.05.")
    for name, value, example in (
        ("covered_fraction", covered_fraction, 0.5),
        ("uncovered_share", uncovered_share, 0.2),
    ):
        if not finite_number(value) or not 0 < value <= 1:
            raise ConfigError(f"{name} must be a share in (0, 1], got {value!r}; set e.g. {name}={example}.")
    adapt = AdaptOptions() if adapt is None else adapt
    evaluation = evaluate_run(
        run_dir,
        num_tasks=num_tasks,
        seed=seed,
        adapt=adapt,
        compare=CompareOptions(oracle=False),
        env=env,
        keep_masters=True,
        before_work=before_work,
    )
    adapted = evaluation.adapted
    assert adapted is not None  # keep_masters=True
    macro_len = adapted.trained_macro_len  # sub-policies alone: per macro step of the run's, whatever the masters'
    if on_adapted is not None:
        on_adapted(adapted)
    result = evaluation.to_dict()
    records: list[SubPolicyRecord] = []
    decisions: list[tuple[int, int, np.ndarray]] = []  # (task index, chosen sub-policy, unit goal direction)
    # (task index, goal reached, closest distance to the goal) per episode, where the env flags reaching it
    reached: list[tuple[int, bool, float | None]] = []
    grid = False
    alone = np.zeros((len(adapted.tasks), 0))
    for index, task in enumerate(adapted.tasks):
        agent = PolicyActor.from_policy_state(
            adapted.cfg, adapted.policy_state, index, adapt.device or "cpu", adapted.path, master_task=task, seed=seed
        )
        if not records:
            records = [SubPolicyRecord() for _ in range(agent.num_subpolicies)]
            alone = np.zeros((len(adapted.tasks), agent.num_subpolicies))
        env = make_env(adapted.cfg.env)
        env.unwrapped.task = task
        env.reset(seed=seed)
        grid = agent_position(env)[1]
        for episode in range(episodes):
            episode_seed = seed + 1000 * index + episode
            episode_run = _run_with_master(agent, env, records, episode_seed, grid, deterministic)
            decisions += [(index, sub, direction) for sub, direction in episode_run.decisions]
            if episode_run.reached is not None:
                reached.append((index, episode_run.reached, episode_run.closest))
            for k in range(agent.num_subpolicies):
                alone[index, k] += _run_alone(agent, env, k, records[k], episode_seed, grid, macro_len) / episodes
        if index < len(adapted.tasks) - 1:
            env.close()
    summaries = _summaries(agent, records, unused_below)
    # The last task's env: any task's floor is the same.
    walks = _open_floor_walks(agent, env, episodes, seed, macro_len)
    env.close()
    if walks is not None:
        for sub, walk in zip(summaries["subpolicies"], walks):
            sub["open_floor"] = walk
    env_cfg = adapted.cfg.env
    reference = oracle_returns(env_cfg, adapted.tasks, episodes, seed) if has_oracle(env_cfg) else None
    coverage = task_coverage(
        alone, np.asarray(result["return_after_adaptation_per_task"]), reference, covered_fraction, uncovered_share
    )
    report = {
        "run_dir": result["run_dir"],
        "env_id": result["env_id"],
        "num_tasks": num_tasks,
        "tasks": result["tasks"],
        "episodes": episodes,
        "seed": seed,
        "adapt_iters": result["adapt_iters"],
        "master_settings": result["master_settings"],
        "adapt_macro_len": result["adapt_macro_len"],
        "steps_per_task_per_iter": result["steps_per_task_per_iter"],
        "return_after_adaptation": result["return_after_adaptation"],
        "deterministic": deterministic,
        "grid": grid,
        **summaries,
        "goal_directed_choices": _goal_directed_choices(summaries["subpolicies"], decisions, len(adapted.tasks)),
        "goal_reached": _goal_reached(reached, len(adapted.tasks)),
        "task_coverage": coverage,
        "uncovered": bool(coverage and coverage["flag"]),
    }
    return report, records


def _choices_text(deterministic: bool | str) -> str:
    """How the adapted masters' episodes chose, where not by sampling (the header of :func:`format_report`)."""
    if deterministic == "master":
        return "; their episodes with the masters' most likely choices"
    return "; their episodes with most likely choices and actions" if deterministic is True else ""


def format_report(report: dict[str, Any]) -> str:
    """A table, one row per sub-policy, then the flags."""
    lines = [
        f"Sub-policies of {report['run_dir']} ({report['env_id']}), {report['num_tasks']} unseen tasks, "
        f"masters adapted {report['adapt_iters']} iterations of {report['steps_per_task_per_iter']} steps each"
        f"{master_settings_text(report.get('master_settings'))}{macro_len_text(report.get('adapt_macro_len'))}; "
        f"return after adaptation "
        f"{report['return_after_adaptation']:.2f}{_choices_text(report.get('deterministic', False))}",
        f"{'k':>3} {'usage':>6}  {'mean displacement / macro step':<32} {'actions (alone)'}",
    ]
    for sub in report["subpolicies"]:
        move = "-"
        if "mean_displacement" in sub:
            vector = ", ".join(f"{v:+.2f}" for v in sub["mean_displacement"])
            move = f"({vector}) |{sub['mean_displacement_length']:.2f}|"
        if "action_histogram" in sub:
            actions = " ".join(f"{p:.2f}" for p in sub["action_histogram"])
        else:
            actions = "mean " + " ".join(f"{v:+.2f}" for v in sub.get("mean_action", []))
        lines.append(f"{sub['index']:>3} {sub['usage']:>6.2f}  {move:<32} {actions}")
    walks = [(sub["index"], sub["open_floor"]) for sub in report["subpolicies"] if "open_floor" in sub]
    if walks:
        lines.append("alone on an open floor (no walls), per macro step:")
        lines += [
            f"{k:>3} speed along its heading {walk['speed_along_heading']:.2f}, heading "
            f"{walk['heading_degrees']:+.0f} degrees (mean displacement "
            f"{', '.join(f'{v:+.2f}' for v in walk['mean_displacement'])}; {walk['macro_steps']} macro steps)"
            for k, walk in walks
        ]
    agreement = report["agreement"]
    pairs = [f"{i}~{j} {agreement[i][j]:.2f}" for i in range(len(agreement)) for j in range(i + 1, len(agreement))]
    lines.append(f"action agreement between sub-policies: {', '.join(pairs) or '-'}")
    lines.append(f"unused (usage < threshold): {report['unused'] or 'none'}")
    lines.append(f"alike (collapsed pairs): {report['alike'] or 'none'}")
    coverage = report.get("task_coverage")
    if coverage is not None:
        best = " ".join(f"{v:.2f}" for v in coverage["best_alone"])
        reference = " ".join(f"{v:.2f}" for v in coverage["reference"])
        kind = coverage["reference_kind"]
        lines.append(f"best single sub-policy's return alone per task: {best} (reference, {kind}: {reference})")
        flag = "FLAGGED" if coverage["flag"] else "not flagged"
        lines.append(
            f"uncovered tasks (neither a single sub-policy nor the adapted master reaches "
            f"{coverage['covered_fraction']:.2f} of the reference): {coverage['uncovered_tasks'] or 'none'} "
            f"({coverage['uncovered_share']:.2f} of tasks; {flag})"
        )
    for key, what, count in (
        ("goal_directed_choices", "master chose the sub-policy heading for the goal", "decisions"),
        ("goal_reached", "adapted masters reached the goal", "episodes"),
    ):
        shares = report.get(key)
        if shares is not None:
            per_task = " ".join("-" if v is None else f"{v:.2f}" for v in shares["per_task"])
            lines.append(f"{what} in {shares['overall']:.2f} of {shares[count]} {count} (per task: {per_task})")
    closest = (report.get("goal_reached") or {}).get("closest_approach")
    if closest is not None:
        per_task = " ".join("-" if v is None else f"{v:.1f}" for v in closest["per_task"])
        lines.append(
            f"closest approach to the goal, median over episodes: {closest['median']:.1f} (per task: {per_task})"
        )
    return "\n".join(lines)


def plot_report(report: dict[str, Any], records: list[SubPolicyRecord], path: Path) -> Path:
    """Grid envs: visit heat-maps per sub-policy (active under masters; alone). Others: displacements."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k_count = len(records)
    if report["grid"]:
        cells = [c for r in records for c in (*r.visits_active, *r.visits_alone)]
        shape = (max(c[0] for c in cells) + 2, max(c[1] for c in cells) + 2) if cells else (1, 1)
        fig, axes = plt.subplots(2, k_count, figsize=(2.6 * k_count, 5.4), squeeze=False)
        for k, record in enumerate(records):
            for row, (visits, title) in enumerate(
                ((record.visits_active, "active under masters"), (record.visits_alone, "alone"))
            ):
                image = np.full(shape, np.nan)
                for cell, count in visits.items():
                    image[cell] = count
                ax = axes[row][k]
                ax.imshow(image, cmap="viridis")
                ax.set_title(f"sub-policy {k}: {title}", fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
    else:
        fig, ax = plt.subplots(figsize=(5, 5))
        for k, record in enumerate(records):
            if record.displacements:
                d = np.asarray(record.displacements)
                ax.scatter(d[:, 0], d[:, 1], s=8, alpha=0.4, color=f"C{k}", label=f"sub-policy {k}")
                mean = d.mean(axis=0)
                ax.annotate("", xy=(mean[0], mean[1]), xytext=(0, 0), arrowprops={"color": f"C{k}", "width": 2})
        ax.axhline(0, color="gray", linewidth=0.5)
        ax.axvline(0, color="gray", linewidth=0.5)
        ax.set_xlabel("x displacement per macro step (alone)")
        ax.set_ylabel("y displacement per macro step (alone)")
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    _inspect(sys.argv[1:], dry_run=False)


def check_command(argv: list[str]) -> None:
    """Every check ``python -m mlsh.inspect <argv>`` makes before any work; does no work and writes nothing.

    Raises:
        MLSHError: one sentence naming the fix.
    """
    _inspect(argv, dry_run=True)


def _inspect(argv: list[str], dry_run: bool) -> None:
    data = parse_job("inspect", argv)
    overwrite = check_bool(data, "overwrite")
    video = check_video_settings(data)
    out = CommandOutput(data, f"inspect/inspect_seed{data['seed']}.json", 16 * 2**20, overwrite, dry_run)
    videos: list[Path] = []

    def before_work(cfg: Config) -> None:  # every argument has been checked: claim the output, then work
        if video:
            video_env(cfg.env).close()
        out.claim()

    def film(adapted: AdaptedMasters) -> None:
        videos.extend(command_videos(data, adapted, out.json_path))

    with out:
        report, records = inspect_run(
            data["checkpoint"],
            num_tasks=data["num_tasks"],
            episodes=data["episodes"],
            seed=data["seed"],
            adapt=adapt_options(data),
            unused_below=data["unused_below"],
            covered_fraction=data["covered_fraction"],
            uncovered_share=data["uncovered_share"],
            deterministic=data["deterministic"],
            env=env_override(data),
            before_work=before_work,
            on_adapted=film if video else None,
        )
        print(format_report(report))
        output = out.json_path
        write_atomic(output, json.dumps(report, indent=2, allow_nan=False))
        png = plot_report(report, records, output.with_suffix(".png"))
        print(f"mlsh: wrote {output}\nmlsh: wrote {png}")
        for path in videos:
            print(f"mlsh: wrote {path}")
        print(f"mlsh: results in {output}, plot in {png}")


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
