"""User-facing agents and baselines.

* :class:`MLSHAgent`: a trained MLSH agent with Stable-Baselines3's ``predict`` (``load``, ``save``,
  ``adapt`` to a new task, ``subpolicy(k)``).
* :class:`SubPolicyEnv`: a task env plus frozen sub-policies as a ``Discrete(K)`` semi-MDP, so any
  SB3 algorithm can train a master.
* Baselines share mlsh's trainer so that budget, networks, PPO settings and evaluation protocol are
  identical to MLSH's: see :func:`agents.baselines.flat_ppo_config` (CLI: ``algo=flat_ppo``).
"""

from __future__ import annotations

from agents.agent import MLSHAgent
from agents.baselines import flat_ppo_config
from agents.subpolicy_env import SubPolicyEnv
from mlsh.actor import SubPolicy

__all__ = ["MLSHAgent", "SubPolicy", "SubPolicyEnv", "flat_ppo_config"]
