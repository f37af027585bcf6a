"""User-facing agents and baselines.

Baselines share mlsh's trainer so that budget, networks, PPO settings and evaluation protocol are
identical to MLSH's: see :func:`agents.baselines.flat_ppo_config` (CLI: ``algo=flat_ppo``).
"""

from __future__ import annotations

from agents.baselines import flat_ppo_config

__all__ = ["flat_ppo_config"]
