"""Pretrained runs shipped inside the package, named ``pretrained:<Name>`` wherever a run dir is accepted.

A shipped run is a folder ``mlsh/pretrained_runs/<Name>/`` holding the run's ``checkpoint.pt`` (sub-policies,
normaliser, settings) and ``CARD.md`` (training command, steps, wall time, seed and what it was measured to
do). :func:`resolve` turns ``pretrained:<Name>`` into that folder, so that ``MLSHAgent.load``,
``mlsh.evaluate checkpoint=``, ``mlsh.inspect checkpoint=`` and ``mlsh.train init_from=`` all take it; the
outputs of commands that read such a run go to ``runs/pretrained/<Name>/`` (the package is not written).
"""

from __future__ import annotations

from pathlib import Path

from mlsh.errors import CheckpointError

PREFIX = "pretrained:"
ROOT = Path(__file__).parent / "pretrained_runs"
OUTPUT_ROOT = Path("runs") / "pretrained"


def available(root: Path | None = None) -> list[str]:
    """The names of the shipped runs (folders of ``root`` that hold a checkpoint), sorted."""
    root = ROOT if root is None else root
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "checkpoint.pt").is_file())


def is_pretrained(spec: str | Path) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def resolve(spec: str | Path, root: Path | None = None) -> Path:
    """``spec`` as a path: ``pretrained:<Name>`` -> the shipped run's folder; anything else unchanged.

    Raises:
        CheckpointError: no shipped run has that name (the message lists those that exist).
    """
    if not is_pretrained(spec):
        return Path(spec)
    name = str(spec)[len(PREFIX) :]
    names = available(root)
    if name not in names:
        shipped = ", ".join(f"{PREFIX}{n}" for n in names) if names else "none are shipped with this version"
        raise CheckpointError(f"No pretrained run named {name!r}; the available ones: {shipped}.")
    return (ROOT if root is None else root) / name


def output_dir(spec: str | Path) -> Path:
    """Where a command that reads the run ``spec`` writes by default: the run dir, or for a shipped run
    ``runs/pretrained/<Name>/`` (relative to the working directory)."""
    if is_pretrained(spec):
        return OUTPUT_ROOT / str(spec)[len(PREFIX) :]
    return Path(spec)
