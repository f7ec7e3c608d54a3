"""Trailing-window moment kernels: the one place where rolling sums are computed.

Every rolling regression in Model A reduces to trailing weighted sums of products of series
(Σw, Σw·x, Σw·x·y). They are computed for all stocks at once along the time axis, in O(T·N),
by the two-pass sliding-window method: time is cut into blocks of W rows; a window ending in
block b is the prefix of block b up to its last row plus the suffix of block b − 1 from its
first row, both plain running sums within one block. Nothing is ever subtracted, so a window's
rounding comes from the ≤ W values inside it only. (A whole-history cumulative sum minus its
value W rows back, the textbook shortcut, cancels catastrophically after one huge value: a
single 62,499× bad print left an error of 7e-6 in every later window's Σx² for the rest of the
history, and made a rebuild differ from an incremental update of the same data.)

- uniform window (decay = 1): prefix and suffix are cumulative sums within blocks;
- exponentially weighted window (decay = 0.5 ** (1 / halflife)): the prefix is the recursive
  filter E_t = x_t + δ·E_{t−1} restarted at each block (``scipy.signal.lfilter``); the suffix is
  the within-block reverse sum of δ^(block end − i)·x_i, lifted by δ^(t − block end). Together
  they are the exact W-row truncated EW sum.

Inputs are demeaned by the caller (see :func:`center`) so the products stay small.
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
    Rows t < W−1 sum over the t+1 rows available. Returns a new array of x's shape.
    """
    if window < 1:
        raise ValueError(f"window must be ≥ 1, got {window}")
    x = np.asarray(x, dtype=np.float64)
    rows, rest = x.shape[0], x.shape[1:]
    n_blocks = -(-rows // window)
    pad = n_blocks * window - rows
    if pad:
        x = np.concatenate([x, np.zeros((pad, *rest))], axis=0)
    blocks = x.reshape(n_blocks, window, *rest)  # row t = b·W + i is blocks[b, i]
    along = (1, window - 1) + (1,) * len(rest)  # broadcasts a per-row weight over blocks[:, 1:]
    if decay == 1.0:
        out = np.cumsum(blocks, axis=1)
        suffix = np.cumsum(blocks[:, :0:-1], axis=1)[:, ::-1]  # suffix[b, i − 1] = Σ_{j ≥ i} blocks[b, j]
        out[1:, :-1] += suffix[:-1]
    else:
        from scipy.signal import lfilter  # here, not at import: scipy.signal alone costs ~0.7 s

        out = lfilter([1.0], [1.0, -decay], blocks, axis=1)
        to_end = decay ** np.arange(window - 2, -1, -1.0)  # δ^(W − 1 − i) for i = 1 … W − 1
        suffix = np.cumsum((blocks[:, 1:] * to_end.reshape(along))[:, ::-1], axis=1)[:, ::-1]
        lift = decay ** np.arange(1.0, window)  # row b·W + i − 1 is δ^i past the end of block b − 1
        out[1:, :-1] += lift.reshape(along) * suffix[:-1]
    return out.reshape(n_blocks * window, *rest)[:rows]


def center(x: np.ndarray) -> np.ndarray:
    """Subtract each column's full-sample mean (NaN-aware); NaN stays NaN.

    Covariances with an intercept are shift invariant, so this changes no estimate; it keeps
    the products summed by :func:`window_sums` (x·x, x·y) small, so a window's sums of them
    lose nothing to a large common level.
    """
    with np.errstate(invalid="ignore"):
        counts = np.sum(np.isfinite(x), axis=0)
        totals = np.nansum(x, axis=0)
    means = np.divide(totals, counts, out=np.zeros_like(totals, dtype=np.float64), where=counts > 0)
    return x - means
