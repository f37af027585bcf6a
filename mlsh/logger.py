"""TensorBoard scalars (SB3-style tags) and a terminal progress display."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm


class RunLogger:
    """Writes scalars to TensorBoard and shows progress with ETA and current reward.

    Args:
        run_dir: TensorBoard events go to ``run_dir/tb``; ``None`` disables them.
        total_iterations: length of the progress bar.
        initial_iteration: where a resumed run starts.
        progress: show the progress bar (on stderr).
    """

    def __init__(
        self, run_dir: Path | None, total_iterations: int, initial_iteration: int = 0, progress: bool = True
    ) -> None:
        self.writer = None
        if run_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tb"))
        self.bar = (
            tqdm(
                total=total_iterations,
                initial=initial_iteration,
                desc="mlsh",
                unit="it",
                file=sys.stderr,
                dynamic_ncols=True,
            )
            if progress
            else None
        )
        self._last_time = time.perf_counter()
        self.last_reward = math.nan
        self.last_after_warmup = math.nan

    def log_iteration(self, iteration: int, timesteps: int, steps_this_iter: int, metrics: dict[str, float]) -> None:
        now = time.perf_counter()
        fps = steps_this_iter / max(now - self._last_time, 1e-9)
        self._last_time = now
        metrics = {**metrics, "time/fps": fps, "time/iterations": float(iteration)}
        if self.writer is not None:
            for key, value in metrics.items():
                if math.isfinite(value):
                    self.writer.add_scalar(key, value, timesteps)
        self.last_reward = metrics.get("rollout/ep_rew_mean", self.last_reward)
        self.last_after_warmup = metrics.get("meta/ep_rew_after_warmup", self.last_after_warmup)
        if self.bar is not None:
            self.bar.set_postfix(
                {
                    "ep_rew": f"{self.last_reward:.2f}",
                    "after_warmup": f"{self.last_after_warmup:.2f}",
                    "fps": f"{fps:.0f}",
                },
                refresh=False,
            )
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
