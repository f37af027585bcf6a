"""Saving and loading runs: atomic writes, clear errors, nothing overwritten on failure."""

from __future__ import annotations

import io
import os
import pickle
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mlsh import pretrained
from mlsh.checks import is_disk_error, storage_error
from mlsh.config import EnvConfig
from mlsh.envs import env_signature, make_env
from mlsh.errors import CheckpointError

if TYPE_CHECKING:
    from mlsh.policy import HierarchicalPolicy

CHECKPOINT_NAME = "checkpoint.pt"
# Format 2 holds only tensors and plain data (loads with torch.load(weights_only=True)); format 1 files,
# which hold NumPy objects and pickled envs, are still read.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
# A NumPy array (or scalar) is saved as a one-entry dict holding it as a tensor of the same dtype: torch's
# weights-only loader refuses NumPy objects, and the dtype and bits come back unchanged.
_NUMPY_ARRAY, _NUMPY_SCALAR = "__numpy_array__", "__numpy_scalar__"


def checkpoint_path(run_dir: str | Path) -> Path:
    """``run_dir/checkpoint.pt`` (a path to the file itself is accepted too; ``pretrained:<Name>``, a run
    shipped with the package, see :mod:`mlsh.pretrained`).

    Raises:
        CheckpointError: ``pretrained:<Name>`` names no shipped run.
    """
    path = pretrained.resolve(run_dir)
    return path if path.suffix == ".pt" else path / CHECKPOINT_NAME


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Writes ``payload`` atomically: a crash mid-write leaves the previous checkpoint intact.

    The payload is serialised in memory first, then written next to its destination, flushed to disk and
    renamed over it, so that a full disk is reported as such (not as a serialisation error).

    Raises:
        StorageError: the file system refused the write (no space, read-only, permissions); the previous
            checkpoint is kept.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **to_plain(payload)}, buffer)
    try:
        write_atomic(path, buffer.getbuffer())
    except OSError as exc:
        if not is_disk_error(exc):
            raise
        kept = "the previous checkpoint is kept" if path.exists() else "nothing was saved"
        raise storage_error(exc, path, "checkpoint", kept) from exc
    return path


def write_atomic(path: str | Path, data: bytes | memoryview | str) -> Path:
    """Writes ``data`` to ``path`` through a temporary file in the same directory, flushed to disk and renamed
    over ``path``: readers see the old file or the new one, never a part; on failure the old file is kept."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode(path))
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _file_mode(path: Path) -> int:
    """The mode of the file being replaced, else that of a new file under the process's umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def to_plain(tree: Any) -> Any:
    """``tree`` with every NumPy array and scalar replaced by a tagged tensor (see :func:`from_plain`).

    Dicts, lists and tuples are walked; a container without NumPy objects is returned as it is (a module's
    ``state_dict`` keeps its type and metadata), and so is everything else.
    """
    return _map_leaves(tree, _numpy_to_tensor)


def from_plain(tree: Any) -> Any:
    """The inverse of :func:`to_plain`: tagged tensors become NumPy arrays and scalars of their dtype again."""
    return _map_leaves(tree, _tensor_to_numpy)


def _numpy_to_tensor(leaf: Any) -> Any:
    if isinstance(leaf, np.ndarray):
        return {_NUMPY_ARRAY: torch.from_numpy(np.array(leaf, order="C"))}  # a copy: the state may change later
    if isinstance(leaf, np.generic):
        return {_NUMPY_SCALAR: torch.from_numpy(np.array(leaf))}
    return leaf


def _tensor_to_numpy(leaf: Any) -> Any:
    if isinstance(leaf, dict) and len(leaf) == 1 and _NUMPY_ARRAY in leaf:
        return leaf[_NUMPY_ARRAY].numpy()
    if isinstance(leaf, dict) and len(leaf) == 1 and _NUMPY_SCALAR in leaf:
        return leaf[_NUMPY_SCALAR].numpy()[()]
    return leaf


def _map_leaves(tree: Any, convert: Callable[[Any], Any]) -> Any:
    """``convert`` applied to ``tree`` and, where it returns its argument, to the items of dicts, lists and
    tuples; a container none of whose items changed is returned itself."""
    converted = convert(tree)
    if converted is not tree:
        return converted
    if isinstance(tree, dict):
        items = {key: _map_leaves(value, convert) for key, value in tree.items()}
        return tree if all(items[key] is value for key, value in tree.items()) else items
    if type(tree) in (list, tuple):
        values = [_map_leaves(value, convert) for value in tree]
        return tree if all(a is b for a, b in zip(values, tree, strict=True)) else type(tree)(values)
    return tree


def load_checkpoint(path: str | Path, required: tuple[str, ...] = ("config", "learner")) -> dict[str, Any]:
    """Reads a checkpoint written by :func:`save_checkpoint`.

    The file is read with ``torch.load(weights_only=True)``: it holds tensors, numbers, strings and
    containers only. A file of format 1 (written before that) is read as a full pickle: load only your own
    runs. Either way, resuming a run on an env without :meth:`envs.TaskEnv.state_dict` unpickles its saved
    env copies (see :class:`mlsh.envs.TaskVectorEnv`).

    Raises:
        CheckpointError: missing, unreadable or incomplete file, with a sentence naming the fix.
    """
    path = checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(
            f"No checkpoint at {path}; pass the run directory of a finished or interrupted run "
            f"(the one holding {CHECKPOINT_NAME})."
        )
    try:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            # Checkpoints of format 1 hold NumPy arrays and RNG states, which the weights-only loader refuses;
            # they are read as full pickles (a corrupt file fails here too, and is reported below).
            payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(
            f"Checkpoint {path} is corrupt or truncated ({type(exc).__name__}); restore it from a backup or "
            f"start a new run (the file was left as it is)."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format_version") not in READABLE_VERSIONS:
        version = payload.get("format_version") if isinstance(payload, dict) else None
        raise CheckpointError(
            f"{path} is not an mlsh checkpoint of format {FORMAT_VERSION} (found {version!r}); "
            f"use a checkpoint written by this version of mlsh."
        )
    payload = from_plain(payload)
    missing = [key for key in required if key not in payload]
    if missing:
        raise CheckpointError(f"Checkpoint {path} lacks {', '.join(missing)}; it is incomplete, start a new run.")
    return payload


def load_shared_weights(policy: HierarchicalPolicy, policy_state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Loads everything but the masters (sub-policies, normaliser) from a checkpoint's policy state.

    Raises:
        CheckpointError: the state does not fit ``policy`` (another version of mlsh, or other settings).
    """
    shared = {k: v for k, v in policy_state.items() if not k.startswith("masters.")}
    try:
        missing, unexpected = policy.load_state_dict(shared, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(
            f"Checkpoint {path} does not fit its own config ({str(exc).splitlines()[0]}); "
            f"it was written by another version of mlsh."
        ) from exc
    if unexpected or any(not k.startswith("masters.") for k in missing):
        raise CheckpointError(
            f"Checkpoint {path} does not fit its own config (missing {missing[:3]}, unexpected {unexpected[:3]}); "
            f"it was written by another version of mlsh."
        )


def check_fits_env(payload: Mapping[str, Any], env_cfg: EnvConfig, path: Path) -> None:
    """Raises :class:`CheckpointError` unless the env has the spaces the checkpoint was trained with.

    Another env id with the same spaces is allowed: that is a transfer task.
    """
    env = make_env(env_cfg)
    expected = env_signature(env)
    env.close()
    found = payload.get("env_signature")
    if found != expected:
        raise CheckpointError(
            f"Checkpoint {path} was trained on '{payload.get('env_id')}' ({found}) but '{env_cfg.id}' has "
            f"{expected}; pick the env the checkpoint was trained on (or one with the same spaces)."
        )
