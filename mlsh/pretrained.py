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


def available() -> list[str]:
    """The names of the shipped runs (folders of :data:`ROOT` that hold a checkpoint), sorted."""
    if not ROOT.is_dir():
        return []
    return sorted(p.name for p in ROOT.iterdir() if (p / "checkpoint.pt").is_file())


def name(spec: str | Path) -> str | None:
    """``<Name>`` of ``pretrained:<Name>``; None for any other run dir or path."""
    return spec[len(PREFIX) :] if isinstance(spec, str) and spec.startswith(PREFIX) else None


def resolve(spec: str | Path) -> Path:
    """``spec`` as a path: ``pretrained:<Name>`` -> the shipped run's folder; anything else unchanged.

    Raises:
        CheckpointError: no shipped run has that name (the message lists those that exist).
    """
    shipped_name = name(spec)
    if shipped_name is None:
        return Path(spec)
    names = available()
    if shipped_name not in names:
        shipped = ", ".join(f"{PREFIX}{n}" for n in names) if names else "none are shipped with this version"
        raise CheckpointError(f"No pretrained run named {shipped_name!r}; the available ones: {shipped}.")
    return ROOT / shipped_name
