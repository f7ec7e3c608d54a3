"""Trailing-window moment kernels: the one place where rolling sums are computed.

Every rolling regression in Model A reduces to trailing weighted sums of products of series
(Σw, Σw·x, Σw·x·y). They are computed for all stocks at once along the time axis:

- uniform window (decay = 1): a cumulative sum and one shifted subtraction, O(T·N);
- exponentially weighted window (decay = 0.5 ** (1 / halflife)): the recursive filter
  E_t = x_t + δ·E_{t−1} (``scipy.signal.lfilter``) and S_t = E_t − δ^W·E_{t−W}, which is the
  exact W-row truncated EW sum, also O(T·N).

Inputs are demeaned by the caller (see :func:`center`) so the running sums stay near zero
and the subtraction loses no precision over decades of daily data.
"""

from __future__ import annotations

import numpy as np


def decay_for(halflife: float | None) -> float:
    """Per-row weight decay δ for a half-life in rows (None → 1.0, a uniform window)."""
    if halflife is None:
        return 1.0
    if not np.isfinite(halflife) or halflife <= 0:
        raise ValueError(f"halflife must be a positive number of days, got {halflife!r}")
    return float(0.5 ** (1.0 / halflife))


def window_sums(x: np.ndarray, window: int, decay: float = 1.0) -> np.ndarray:
    """Trailing weighted sums S_t = Σ_{k=0}^{W−1} δ^k · x_{t−k} along axis 0.

    x: (T, ...) float64 with zeros where a value is missing (mask before calling).
    Rows t < W−1 sum over the t+1 rows available. Returns an array of x's shape.
    """
    if window < 1:
        raise ValueError(f"window must be ≥ 1, got {window}")
    x = np.asarray(x, dtype=np.float64)
    if decay == 1.0:
        out = np.cumsum(x, axis=0)
        if x.shape[0] > window:
            out[window:] -= out[:-window].copy()
        return out
    from scipy.signal import lfilter  # here, not at import: scipy.signal alone costs ~0.7 s

    out = lfilter([1.0], [1.0, -decay], x, axis=0)
    if x.shape[0] > window:
        out[window:] -= (decay**window) * out[:-window]
    return out


def center(x: np.ndarray) -> np.ndarray:
    """Subtract each column's full-sample mean (NaN-aware); NaN stays NaN.

    Covariances with an intercept are shift invariant, so this changes no estimate; it keeps
    the cumulative sums in :func:`window_sums` small, which is what keeps them exact.
    """
    with np.errstate(invalid="ignore"):
        counts = np.sum(np.isfinite(x), axis=0)
        totals = np.nansum(x, axis=0)
    means = np.divide(totals, counts, out=np.zeros_like(totals, dtype=np.float64), where=counts > 0)
    return x - means
