"""User-facing errors: each carries one sentence that names the fix."""

from __future__ import annotations


class MLSHError(Exception):
    """Base class for errors caused by user input; entry points print the message, not a traceback."""


class ConfigError(MLSHError, ValueError):
    """An impossible or unknown setting."""


class CheckpointError(MLSHError):
    """A checkpoint that is missing, corrupt or does not match the requested env or settings."""


class TrainingDivergedError(MLSHError):
    """A loss or parameter became NaN or infinite; the last good checkpoint is kept."""
