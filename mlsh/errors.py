"""User-facing errors: each carries one sentence that names the fix.

Entry points print ``error: <message>`` on stderr and exit with :attr:`MLSHError.exit_code` (2 for every user
mistake), never a traceback.
"""

from __future__ import annotations


class MLSHError(Exception):
    """Base class for errors caused by user input; entry points print the message, not a traceback."""

    exit_code = 2


class ConfigError(MLSHError, ValueError):
    """An impossible or unknown setting."""


class CheckpointError(MLSHError):
    """A checkpoint that is missing, corrupt or does not match the requested env or settings."""


class TrainingDivergedError(MLSHError):
    """A loss or parameter became NaN or infinite; the last good checkpoint is kept."""


class StorageError(MLSHError):
    """A file could not be written (no space, read-only file system, missing or unwritable directory)."""


class RunInUseError(MLSHError):
    """The run directory is locked by another live process."""


class RunAborted(MLSHError):
    """A second stop signal aborted the iteration in progress; the last checkpoint is kept."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
