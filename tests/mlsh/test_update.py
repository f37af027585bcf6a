"""The one PPO epoch loop's pieces: explained variance over one or several processes."""

from __future__ import annotations

import numpy as np
import torch

from mlsh.update import explained_variance


def test_explained_variance_matches_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    returns = rng.normal(size=200)
    values = returns + 0.5 * rng.normal(size=200)
    expected = 1.0 - np.var(returns - values, ddof=1) / np.var(returns, ddof=1)
    found = explained_variance(torch.as_tensor(returns), torch.as_tensor(values))
    assert abs(found - expected) < 1e-12
    assert explained_variance(torch.ones(5), torch.zeros(5)) == 0.0  # no variance in the returns
    assert explained_variance(torch.zeros(0), torch.zeros(0)) == 0.0


def test_explained_variance_over_processes_is_that_of_all_samples() -> None:
    torch.manual_seed(0)
    returns, values = torch.randn(60), torch.randn(60)
    first, second = slice(0, 25), slice(25, 60)
    # Two processes' sums, added up as all_reduce would: each process's reduce adds the other's sums.
    other_sums: list[torch.Tensor] = []

    def recording(tensor: torch.Tensor) -> torch.Tensor:
        other_sums.append(tensor.clone())
        return tensor

    explained_variance(returns[second], values[second], recording)

    def add_other(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.add_(other_sums[0])

    split = explained_variance(returns[first], values[first], add_other)
    assert abs(split - explained_variance(returns, values)) < 1e-12
