"""The trailing-window sums every rolling regression rests on, against a direct sum per row."""

from __future__ import annotations

import numpy as np
import pytest

from riskstrata.cascade.moments import decay_for, window_sums


def direct_sums(x: np.ndarray, window: int, decay: float) -> np.ndarray:
    """Σ_{k<W} δ^k · x_{t−k} row by row: the definition, with no running sum to go wrong."""
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        lo = max(0, t - window + 1)
        weights = decay ** (t - np.arange(lo, t + 1))
        out[t] = np.tensordot(weights, x[lo:t + 1], axes=(0, 0))
    return out


@pytest.mark.parametrize("rows, window", [(0, 5), (1, 5), (5, 10), (7, 7), (8, 1), (10, 3), (11, 3), (600, 252)])
@pytest.mark.parametrize("halflife", [None, 0.5, 63.0])
def test_window_sums_equal_the_direct_sums(rows: int, window: int, halflife: float | None) -> None:
    x = np.random.default_rng(rows + window).standard_normal((rows, 3, 2))
    got = window_sums(x, window, decay_for(halflife))
    assert got.shape == x.shape
    np.testing.assert_allclose(got, direct_sums(x, window, decay_for(halflife)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("halflife", [None, 63.0])
def test_one_huge_value_leaves_no_error_once_it_leaves_the_window(halflife: float | None) -> None:
    """A 62,499× bad print (PPCB, 2025-01-29, in the real data) squared is 3.9e9: a running sum over
    the whole history minus its value W rows back kept ~1e-6 of it in every later window. Each
    window must be as exact as if the print had never been there."""
    rng = np.random.default_rng(3)
    x = 0.02 * rng.standard_normal((2_000, 2))
    clean = window_sums(x * x, 252, decay_for(halflife))
    x[300, 0] = 62_499.0
    after = window_sums(x * x, 252, decay_for(halflife))[300 + 252:]
    np.testing.assert_allclose(after, clean[300 + 252:], rtol=1e-13, atol=0)
