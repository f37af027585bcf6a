"""mlsh: Meta Learning Shared Hierarchies (Frans et al., ICLR 2018) in PyTorch.

The library is usable without Hydra::

    from mlsh import Config, train, evaluate_run
    cfg = Config()                       # MovementBandits with the paper's settings
    train(cfg, "runs/my_run")
    print(evaluate_run("runs/my_run", num_tasks=20).ratio)
"""

from __future__ import annotations

from mlsh.config import Config, EnvConfig, MLSHConfig, PPOConfig, TrainConfig, config_from_dict
from mlsh.errors import CheckpointError, ConfigError, MLSHError, TrainingDivergedError
from mlsh.evaluation import AdaptOptions, CompareOptions, EvaluationResult, evaluate_run
from mlsh.meta import MetaLearner
from mlsh.policy import HierarchicalPolicy
from mlsh.trainer import train

__all__ = [
    "AdaptOptions",
    "CheckpointError",
    "CompareOptions",
    "Config",
    "ConfigError",
    "EnvConfig",
    "EvaluationResult",
    "HierarchicalPolicy",
    "MLSHConfig",
    "MLSHError",
    "MetaLearner",
    "PPOConfig",
    "TrainConfig",
    "TrainingDivergedError",
    "config_from_dict",
    "evaluate_run",
    "train",
]
__version__ = "0.1.0"
