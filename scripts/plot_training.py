"""A run's training curves as one PNG, and a table of them by stretches of env steps.

    python scripts/plot_training.py RUN_DIR [--out FILE.png] [--window 50] [--rows 10 | --stretch 5e5] [--extra TAG ...]

Reads the run's TensorBoard scalars (``RUN_DIR/tb``, written by ``python -m mlsh.train``) and plots,
against env steps: the training return (``rollout/ep_rew_mean``, with a moving mean over
``--window`` iterations), and the critics' explained variance at both levels. It prints the mean
of each over ``--rows`` equal stretches of the run (or stretches of ``--stretch`` env steps, the same rows
for every run), so the curve can be quoted in numbers;
``--extra`` adds other scalars to the table (e.g. ``master/entropy``, ``meta/ep_rew_after_warmup``).
The PNG goes to ``--out`` (default ``RUN_DIR/training.png``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

CURVES = {
    "rollout/ep_rew_mean": "training return (episodes ended in the iteration)",
    "sub/explained_variance": "sub-policy critic, explained variance",
    "master/explained_variance": "master critic, explained variance",
}


def read_scalars(run_dir: Path, extra: tuple[str, ...] = ()) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``tag -> (env steps, values)`` for the tags of :data:`CURVES` that the run logged, then ``extra``.

    Raises:
        SystemExit: the run has no TensorBoard scalars, or lacks an ``extra`` tag, with the fix.
    """
    events = open_scalars(run_dir)
    tags = set(events.Tags()["scalars"])
    tb = run_dir / "tb"
    if "rollout/ep_rew_mean" not in tags:
        raise SystemExit(f"{tb} holds no rollout/ep_rew_mean yet; let the run finish an iteration first.")
    unknown = [tag for tag in extra if tag not in tags]
    if unknown:
        raise SystemExit(f"{tb} has no scalar {unknown[0]}; the run logged: {', '.join(sorted(tags))}.")
    return {tag: series(events, tag) for tag in [*CURVES, *extra] if tag in tags}


def open_scalars(run_dir: Path) -> Any:
    """The run's TensorBoard scalars (``RUN_DIR/tb``), loaded: an ``EventAccumulator``.

    Raises:
        SystemExit: the run has no ``tb`` directory, with the fix.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = run_dir / "tb"
    if not tb.is_dir():
        raise SystemExit(f"{tb} does not exist; pass a run dir written by python -m mlsh.train.")
    events = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    events.Reload()
    return events


def series(events: Any, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """``(env steps, values)`` of one scalar, sorted by step; a resumed run may rewrite a step: the last counts."""
    values = {s.step: s.value for s in events.Scalars(tag)}
    steps = np.array(sorted(values), dtype=np.int64)
    return steps, np.array([values[k] for k in steps], dtype=float)


def moving_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each point (of all values so far at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    ends = np.arange(1, len(values) + 1)
    counts = np.minimum(ends, window)
    return (sums[ends] - sums[ends - counts]) / counts


def stretch_table(curves: dict[str, tuple[np.ndarray, np.ndarray]], rows: int, stretch: int | None = None) -> list[str]:
    """Lines of a Markdown table: the mean of each curve over ``rows`` equal stretches of env steps, or, with
    ``stretch``, over stretches of that many env steps from 0 (the same rows for every run, to compare runs)."""
    steps = curves["rollout/ep_rew_mean"][0]
    if stretch is None:
        edges = np.linspace(0, steps[-1], rows + 1)
    else:
        edges = stretch * np.arange(int(np.ceil(steps[-1] / stretch)) + 1, dtype=np.float64)
    header = "| env steps | " + " | ".join(tag for tag in curves) + " |"
    lines = [header, "|" + "---|" * (len(curves) + 1)]
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        cells = []
        for x, y in curves.values():
            inside = (x > low) & (x <= high)
            cells.append(f"{y[inside].mean():.2f}" if inside.any() else "")
        lines.append(f"| {low / 1e6:.1f}M-{high / 1e6:.1f}M | " + " | ".join(cells) + " |")
    return lines


def plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], window: int, title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_return, ax_ev) = plt.subplots(1, 2, figsize=(11.0, 4.0), dpi=100)
    x, y = curves["rollout/ep_rew_mean"]
    ax_return.plot(x / 1e6, y, color="0.75", linewidth=0.8, label="per iteration")
    ax_return.plot(x / 1e6, moving_mean(y, window), color="C0", label=f"mean of {window} iterations")
    ax_return.set_xlabel("env steps (millions)")
    ax_return.set_title(CURVES["rollout/ep_rew_mean"], fontsize=10)
    ax_return.legend(fontsize=8)
    for i, tag in enumerate(("sub/explained_variance", "master/explained_variance")):
        if tag in curves:
            x, y = curves[tag]
            ax_ev.plot(x / 1e6, moving_mean(y, window), color=f"C{i + 1}", label=tag.split("/")[0])
    ax_ev.set_ylim(-0.5, 1.0)
    ax_ev.set_xlabel("env steps (millions)")
    ax_ev.set_title(f"critics' explained variance (mean of {window} iterations)", fontsize=10)
    ax_ev.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, help="PNG path (default: RUN_DIR/training.png)")
    parser.add_argument("--window", type=int, default=50, help="iterations per moving mean")
    parser.add_argument("--rows", type=int, default=10, help="stretches of the printed table")
    parser.add_argument(
        "--stretch", type=float, default=None, help="env steps per row (e.g. 5e5), instead of --rows equal stretches"
    )
    parser.add_argument("--title", default=None)
    parser.add_argument("--extra", nargs="*", default=[], metavar="TAG", help="more scalars for the table")
    args = parser.parse_args()
    curves = read_scalars(args.run_dir, tuple(dict.fromkeys(args.extra)))
    out = args.out or args.run_dir / "training.png"
    plot(curves, max(1, args.window), args.title or str(args.run_dir), out)
    if args.stretch is not None and args.stretch <= 0:
        parser.error(f"--stretch must be a positive number of env steps, got {args.stretch:g}")
    stretch = None if args.stretch is None else int(args.stretch)
    print("\n".join(stretch_table(curves, max(1, args.rows), stretch)))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
