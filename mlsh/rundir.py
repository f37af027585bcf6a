"""Run directories that cannot be claimed twice: an exclusive lock file held for the whole run.

``<run dir>/.mlsh.lock`` holds the owner's pid (and host) and an exclusive ``flock`` for as long as the owning
process runs a training in that directory. Another process that finds the lock held is refused before it writes
anything; a lock file whose owner died (the kernel drops the ``flock`` with the process, even on ``kill -9``) is
stale and taken over. The file is removed when the owner releases it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from mlsh.errors import RunInUseError

log = logging.getLogger("mlsh")

LOCK_NAME = ".mlsh.lock"

# Locks this process holds, by resolved run dir (re-entrant: the CLI takes it, then train() again).
_HELD: dict[Path, RunLock] = {}


def lock_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / LOCK_NAME


def _read_pid(path: Path) -> int | None:
    try:
        first = path.read_text().split()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return int(first[0]) if first else None
    except ValueError:
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _no_flock(exc: OSError) -> bool:
    """The file system does not support ``flock`` (some network file systems)."""
    return exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def lock_owner(run_dir: str | Path) -> int | None:
    """The pid of the live process that holds ``run_dir``'s lock (this one included), else None: no lock file, or
    a stale one. Reads only; writes nothing."""
    key = Path(run_dir).resolve()
    if key in _HELD:
        return os.getpid()
    path = lock_path(run_dir)
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(path) or -1
    except OSError as exc:
        if not _no_flock(exc):
            raise
        pid = _read_pid(path)
        return pid if pid is not None and _alive(pid) else None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def in_use_error(run_dir: str | Path, pid: int) -> RunInUseError:
    who = f"process {pid}" if pid > 0 else "another process"
    stop = f" (Ctrl-C or kill {pid})" if pid > 0 else ""
    return RunInUseError(
        f"Run dir {run_dir} is in use by {who} (lock {lock_path(run_dir)}); wait for it to finish, stop it{stop}, "
        f"or choose another run dir."
    )


def _write_owner(fd: int) -> None:
    """Writes this process's pid and host into the locked file ``fd`` (what :func:`_read_pid` reads)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)


def _release_file(path: Path, fd: int) -> None:
    """Removes ``path`` if it is still the file ``fd`` holds (not a successor's new file), then closes ``fd``
    (which drops the lock)."""
    try:
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            path.unlink()
    except OSError:
        pass
    os.close(fd)


class RunLock:
    """An acquired lock; :meth:`release` it (or use :func:`run_lock`)."""

    def __init__(self, run_dir: Path, fd: int) -> None:
        self.run_dir = run_dir
        self.path = lock_path(run_dir)
        self.fd = fd
        self.depth = 1

    def release(self) -> None:
        self.depth -= 1
        if self.depth > 0:
            return
        _HELD.pop(self.run_dir.resolve(), None)
        _release_file(self.path, self.fd)


def acquire(run_dir: str | Path) -> RunLock:
    """Claims ``run_dir`` (created if missing) for this process: creates the lock file, locks it and writes this
    process's pid into it. Re-entrant within a process.

    Raises:
        RunInUseError: another live process holds the lock.
    """
    run_dir = Path(run_dir)
    key = run_dir.resolve()
    held = _HELD.get(key)
    if held is not None:
        held.depth += 1
        return held
    run_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(run_dir)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise in_use_error(run_dir, _read_pid(path) or -1) from None
        except OSError as exc:
            if not _no_flock(exc):
                os.close(fd)
                raise
            pid = _read_pid(path)
            if pid is not None and pid != os.getpid() and _alive(pid):
                os.close(fd)
                raise in_use_error(run_dir, pid) from None
        # The previous owner may have removed the file between our open and our lock: lock the current file.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    previous = _read_pid(path)
    if previous is not None and previous != os.getpid():
        log.warning("mlsh: took over the stale lock of process %d in %s (it is no longer running)", previous, run_dir)
    _write_owner(fd)
    lock = RunLock(run_dir, fd)
    _HELD[key] = lock
    return lock


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[RunLock]:
    """Holds ``run_dir``'s lock for the block (see :func:`acquire`)."""
    lock = acquire(run_dir)
    try:
        yield lock
    finally:
        lock.release()


# -- evaluation outputs -------------------------------------------------------------------------------------------
class OutputClaim:
    """The JSON path of an evaluation (its CSV, PNG, videos and ``tb/<stem>`` go next to it), claimed for this process
    by a locked marker ``.<stem>.claim`` in its directory until :meth:`release`."""

    def __init__(self, json_path: Path, marker: Path, fd: int) -> None:
        self.json_path = json_path
        self.marker = marker
        self.fd = fd

    def release(self) -> None:
        _release_file(self.marker, self.fd)


def _outputs_exist(directory: Path, stem: str) -> list[Path]:
    found = [directory / f"{stem}{suffix}" for suffix in (".json", ".csv", ".png")]
    found = [path for path in found if path.exists()]
    if (directory / "tb" / stem).exists():
        found.append(directory / "tb" / stem)
    return found + sorted(path for suffix in ("gif", "mp4") for path in directory.glob(f"{stem}_task*.{suffix}"))


def _try_claim(directory: Path, stem: str) -> OutputClaim | None:
    marker = directory / f".{stem}.claim"
    fd = os.open(marker, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError as exc:
        if not _no_flock(exc):
            os.close(fd)
            raise
    _write_owner(fd)
    return OutputClaim(directory / f"{stem}.json", marker, fd)


def claim_output(explicit: str | Path | None, default: Path, overwrite: bool) -> OutputClaim:
    """Claims the JSON path of an evaluation so that no two evaluations write the same files.

    Args:
        explicit: the ``output=`` path given, or None for ``default``.
        default: ``<dir>/<stem>.json``; when taken (files of that stem exist, or another evaluation is writing
            them), ``<stem>_1.json``, ``<stem>_2.json``, ... is claimed instead.
        overwrite: an explicit path whose files exist is replaced (else refused).

    Raises:
        ConfigError: the explicit path holds results (without ``overwrite``) or another evaluation writes it.
    """
    from mlsh.errors import ConfigError

    if explicit is not None:
        path = Path(explicit)
        directory, stem = path.parent, path.stem
        existing = _outputs_exist(directory, stem) if directory.is_dir() else []
        if existing and not overwrite:
            raise ConfigError(
                f"output={explicit} would replace {existing[0]} of an earlier evaluation; pass overwrite=true to "
                f"replace it, or another output=."
            )
        directory.mkdir(parents=True, exist_ok=True)
        claim = _try_claim(directory, stem)
        if claim is None:
            raise ConfigError(
                f"output={explicit} is being written by another evaluation right now; wait for it or pass "
                f"another output=."
            )
        claim.json_path = path
        return claim
    directory, base = default.parent, default.stem
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(10_000):
        stem = base if index == 0 else f"{base}_{index}"
        if _outputs_exist(directory, stem):
            continue
        claim = _try_claim(directory, stem)
        if claim is None:
            continue
        if _outputs_exist(directory, stem):  # written between the look and the claim
            claim.release()
            continue
        return claim
    raise ConfigError(f"{directory} holds 10,000 evaluations named {base}*; pass output=<another path>.")
