"""What each KeyDoor sub-policy does on its own: fetch the key, or head for door 0 or door 1.

Door collapse (two door skills that go to the same door) shows here directly, where the evaluation
only shows tasks of one door scoring zero. For every sub-policy of a trained run, acting alone
with its most likely actions over ``--episodes`` fresh layouts:

* ``key``: share of episodes that collect the key within half an episode, starting without it;
* ``door 0`` / ``door 1``: share of episodes that end inside that door's radius, starting with the
  key (``reset(options={"has_key": True})``);
* ``skill``: "key", "door 0", "door 1" when that share is at least 0.5, else "-".

Writes the shares to ``<run>/key_door_skills.json``.

    python scripts/key_door_skills.py --run runs/key_door/v0/seed0 [more runs] [--episodes 40]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import envs  # noqa: F401  (registers mlsh/*)
from agents import MLSHAgent
from mlsh.config import EnvConfig
from mlsh.envs import make_env


def skill_shares(agent: MLSHAgent, env_cfg: EnvConfig, episodes: int, seed: int = 10_000) -> list[dict[str, float]]:
    """Per sub-policy: ``{"key": share, "door 0": share, "door 1": share}`` over ``episodes`` layouts."""
    env = make_env(env_cfg)
    base = env.unwrapped
    horizon = env.spec.max_episode_steps or 100
    shares = []
    for k in range(agent.num_subpolicies):
        sub = agent.subpolicy(k)
        key = np.zeros(episodes)
        doors = np.zeros((episodes, 2))
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            for _ in range(horizon // 2):
                obs, *_ = env.step(sub.predict(obs, deterministic=True)[0])
            key[episode] = base.has_key
            obs, _ = env.reset(seed=seed + episode, options={"has_key": True})
            for _ in range(horizon):
                obs, *_ = env.step(sub.predict(obs, deterministic=True)[0])
            agent_xy = obs[:2].astype(np.float64) * base.size
            doors[episode] = np.linalg.norm(base.door_positions - agent_xy, axis=1) < base.radius
        door0, door1 = doors.mean(axis=0)
        shares.append({"key": float(key.mean()), "door 0": float(door0), "door 1": float(door1)})
    env.close()
    return shares


def skill_name(share: dict[str, float]) -> str:
    best = max(share, key=share.__getitem__)
    return best if share[best] >= 0.5 else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", nargs="+", required=True, help="run dirs (or checkpoint files) of KeyDoor runs")
    parser.add_argument("--episodes", type=int, default=40)
    args = parser.parse_args()
    for run in args.run:
        agent = MLSHAgent.load(run)
        if agent.cfg.env.id != "mlsh/KeyDoor-v0":
            raise SystemExit(f"error: {run} was trained on {agent.cfg.env.id}; pass a KeyDoor run.")
        shares = skill_shares(agent, agent.cfg.env, args.episodes)
        print(f"{run}:")
        print("  k   key  door 0  door 1  skill")
        for k, share in enumerate(shares):
            print(f"  {k}  {share['key']:.2f}    {share['door 0']:.2f}    {share['door 1']:.2f}  {skill_name(share)}")
        names = {skill_name(s) for s in shares}
        missing = [name for name in ("key", "door 0", "door 1") if name not in names]
        print(f"  missing skills: {', '.join(missing) if missing else 'none'}")
        run_dir = Path(run) if Path(run).is_dir() else Path(run).parent
        (run_dir / "key_door_skills.json").write_text(json.dumps(shares, indent=2))


if __name__ == "__main__":
    main()
