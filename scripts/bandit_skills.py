"""What each MovementBandits sub-policy does on its own: head for goal 0, for goal 1, or neither.

Goal collapse (two sub-policies that go to the same goal, or one that goes nowhere) shows here
directly, where ``mlsh.inspect`` compares the sub-policies' actions state by state and can find them
different while both serve one goal. For every sub-policy of a trained run, acting alone with its
most likely actions over ``--episodes`` fresh goal draws of ``max_episode_steps`` steps:

* ``goal 0`` / ``goal 1``: share of episodes that end within the goal radius of that goal (the
  observation's goal 0 and goal 1, whichever the task pays);
* ``skill``: "goal 0" or "goal 1" when that share is at least 0.5, else "-".

And how two sub-policies differ, on the states those episodes visit: the difference of their action
logits (each centred over the actions) split into its mean over states, a constant preference for
some actions whatever the goals, and the rest, which depends on the state (RMS over actions and
states). Two skills that head for different goals differ mostly in the state-dependent part.

Writes the shares and the differences to ``<run>/bandit_skills.json``.

    python scripts/bandit_skills.py --run runs/sharing/MovementBandits/separate/seed0 [more runs] [--episodes 100]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import envs  # noqa: E402, F401  (registers mlsh/*)
from agents import MLSHAgent  # noqa: E402
from mlsh.config import EnvConfig  # noqa: E402
from mlsh.envs import make_env  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from key_door_skills import skill_name  # noqa: E402  (the same naming rule: the share >= 0.5, else "-")

GOALS = ("goal 0", "goal 1")


def skill_shares(
    agent: MLSHAgent, env_cfg: EnvConfig, episodes: int, seed: int = 10_000, visited: list[np.ndarray] | None = None
) -> list[dict[str, float]]:
    """Per sub-policy: ``{"goal 0": share, "goal 1": share}`` over ``episodes`` goal draws; appends every
    observation the episodes see to ``visited`` when given."""
    env = make_env(env_cfg)
    base = env.unwrapped
    horizon = env.spec.max_episode_steps or 50
    radius = base.goal_radius / base.size  # observations are positions divided by the plane's size
    shares = []
    for k in range(agent.num_subpolicies):
        sub = agent.subpolicy(k)
        reached = np.zeros((episodes, 2))
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            for _ in range(horizon):
                if visited is not None:
                    visited.append(obs)
                obs, *_ = env.step(sub.predict(obs, deterministic=True)[0])
            goals = obs[2:6].astype(np.float64).reshape(2, 2)
            reached[episode] = np.linalg.norm(goals - obs[:2], axis=1) < radius
        shares.append(dict(zip(GOALS, map(float, reached.mean(axis=0)), strict=True)))
    env.close()
    return shares


@torch.no_grad()
def logit_difference(agent: MLSHAgent, observations: np.ndarray) -> dict[str, tuple[float, float]]:
    """For every pair ``"i-j"`` of sub-policies, ``(constant, state-dependent)``: the RMS of the mean over
    states of ``logits_j - logits_i`` (logits centred over the actions), and of the rest.

    Args:
        observations: ``[N, obs_dim]`` raw observations.
    """
    policy = agent.policy
    obs = policy.normalize(torch.as_tensor(observations, dtype=torch.float32, device=agent.device))
    k = policy.num_subpolicies
    logits = policy.subpolicies.distribution(obs.unsqueeze(0).expand(k, -1, -1)).logits  # [K, N, A]
    logits = logits - logits.mean(-1, keepdim=True)
    out = {}
    for i in range(k):
        for j in range(i + 1, k):
            diff = logits[j] - logits[i]
            constant = diff.mean(0)
            rest = diff - constant
            out[f"{i}-{j}"] = (constant.pow(2).mean().sqrt().item(), rest.pow(2).mean().sqrt().item())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", nargs="+", required=True, help="MovementBandits run dirs (or checkpoints)")
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()
    for run in args.run:
        agent = MLSHAgent.load(run)
        if agent.cfg.env.id != "mlsh/MovementBandits-v0":
            raise SystemExit(f"error: {run} was trained on {agent.cfg.env.id}; pass a MovementBandits run.")
        visited: list[np.ndarray] = []
        shares = skill_shares(agent, agent.cfg.env, args.episodes, visited=visited)
        differences = logit_difference(agent, np.stack(visited))
        print(f"{run}:")
        print("  k  goal 0  goal 1  skill")
        for k, share in enumerate(shares):
            print(f"  {k}    {share['goal 0']:.2f}    {share['goal 1']:.2f}  {skill_name(share)}")
        names = {skill_name(s) for s in shares}
        missing = [name for name in GOALS if name not in names]
        print(f"  missing skills: {', '.join(missing) if missing else 'none'}")
        for pair, (constant, state) in differences.items():
            print(f"  logits {pair}: constant {constant:.2f}, state-dependent {state:.2f}")
        run_dir = Path(run) if Path(run).is_dir() else Path(run).parent
        report = {"shares": shares, "logit_difference": differences}
        (run_dir / "bandit_skills.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
