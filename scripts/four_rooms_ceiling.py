"""Best success a master can reach over given FourRooms skills, computed exactly.

A master that picks one of K fixed sub-policies every ``macro_len`` steps (T = 100, fixed start) is
an MDP over (cell, decision); dynamic programming over the sub-policies' exact multi-step
transition matrices under the slip dynamics gives its best success probability for each goal. This
bounds what any master can reach over those skills, so it separates "the skills are poor" from
"the master has not learned yet". Hand-made skill sets: always one direction ("directions"), and
shortest routes to the four outer corners ("corners").

    python scripts/four_rooms_ceiling.py                        # hand-made skills, N = 25, 10, 5
    python scripts/four_rooms_ceiling.py --run runs/FourRooms/mlsh/<run>   # a trained run's sub-policies
    python scripts/four_rooms_ceiling.py --run <run A> <run B>             # both runs' sub-policies pooled
"""

from __future__ import annotations

import argparse
from collections import deque

import numpy as np
import torch

from envs import four_rooms as fr

NUM_CELLS = len(fr.FREE_CELLS)


def cell_transitions(action_probs: np.ndarray) -> np.ndarray:
    """``[S, S]`` one-step transition matrix of a stochastic policy ``action_probs[s, a]`` under the slip."""
    move_probs = action_probs @ fr._TRANSITION_PROBS  # [S, direction]
    matrix = np.zeros((NUM_CELLS, NUM_CELLS))
    for direction in range(4):
        np.add.at(matrix, (np.arange(NUM_CELLS), fr._NEXT_INDEX[:, direction]), move_probs[:, direction])
    return matrix


def best_master_success(skills: list[np.ndarray], goal: fr.Cell, macro_len: int, horizon: int = 100) -> float:
    """Highest probability of reaching ``goal`` from the start cell choosing among ``skills`` every ``macro_len``."""
    g = fr._CELL_INDEX[goal]
    macro = []
    for probs in skills:
        step = cell_transitions(probs)
        stay = step.copy()
        stay[:, g] = 0.0  # paths that have not yet reached the goal
        reach, alive = np.zeros(NUM_CELLS), np.eye(NUM_CELLS)
        for _ in range(macro_len):
            reach += alive @ step[:, g]
            alive = alive @ stay
        macro.append((reach, alive))
    if horizon % macro_len:
        raise ValueError(f"macro_len ({macro_len}) must divide the horizon ({horizon}).")
    values = np.zeros(NUM_CELLS)  # best success from each cell with no decision left
    for _ in range(horizon // macro_len):
        values = np.max([reach + alive @ values for reach, alive in macro], axis=0)
    return float(values[fr._CELL_INDEX[fr.START_CELL]])


def one_hot_policy(actions: np.ndarray) -> np.ndarray:
    return np.eye(4)[actions]


def route_to(target: fr.Cell) -> np.ndarray:
    """Shortest-route action in every cell towards ``target`` (breadth-first search)."""
    distance = {target: 0}
    frontier = deque([target])
    while frontier:
        cell = frontier.popleft()
        for direction in range(4):
            neighbour = fr._move(cell, direction)
            if neighbour not in distance:
                distance[neighbour] = distance[cell] + 1
                frontier.append(neighbour)
    actions = [min(range(4), key=lambda d: distance[fr._move(cell, d)]) for cell in fr.FREE_CELLS]
    return one_hot_policy(np.array(actions))


def run_skills(run: str) -> tuple[list[np.ndarray], int]:
    """A trained run's sub-policies as ``[S, 4]`` action probabilities, and its macro_len."""
    from agents import MLSHAgent

    agent = MLSHAgent.load(run, device="cpu")
    env = fr.FourRooms(**(agent.cfg.env.kwargs or {}))
    obs = []
    for cell in fr.FREE_CELLS:
        env.reset(options={"start": cell})
        obs.append(env._obs())
    with torch.no_grad():
        normalised = agent.policy.normalize(torch.as_tensor(np.stack(obs)))
        k = agent.num_subpolicies
        probs = agent.policy.subpolicies.distribution(normalised.unsqueeze(0).expand(k, -1, -1)).probs
    return [p.numpy().astype(np.float64) for p in probs], agent.macro_len


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--run", nargs="+", default=None, help="trained FourRooms run dirs: their sub-policies, pooled (same macro_len)"
    )
    args = parser.parse_args()
    goals = fr.HELDOUT_GOALS
    if args.run:
        loaded = [run_skills(run) for run in args.run]
        lengths = {macro_len for _, macro_len in loaded}
        if len(lengths) > 1:
            parser.error(f"the runs have different macro_len values {sorted(lengths)}; pool runs of one macro_len.")
        skills = [probs for run_probs, _ in loaded for probs in run_probs]
        sets = {"trained run" if len(loaded) == 1 else f"{len(loaded)} runs": (skills, sorted(lengths))}
    else:
        corners = [(1, 1), (1, 11), (11, 1), (11, 11)]
        sets = {
            "directions": ([one_hot_policy(np.full(NUM_CELLS, a)) for a in range(4)], [25, 10, 5]),
            "corners": ([route_to(c) for c in corners], [25, 10, 5]),
        }
    print(f"best master success over {len(goals)} held-out goals (oracle: 1.00)")
    for name, (skills, lengths) in sets.items():
        for macro_len in lengths:
            success = np.array([best_master_success(skills, goal, macro_len) for goal in goals])
            print(f"  {name:<12} N = {macro_len:>2}: mean {success.mean():.3f}, worst goal {success.min():.3f}")


if __name__ == "__main__":
    main()
