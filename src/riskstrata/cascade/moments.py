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
  filter E_t = x_t + δ·E_{t−1} restarted at each block (``scipy.signal.lfilter``; for a few
  rows :func:`ew_filter`, the same arithmetic without importing scipy.signal); the suffix is
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


def window_sums(x: np.ndarray, window: int, decay: float = 1.0, first: int = 0) -> np.ndarray:
    """Trailing weighted sums S_t = Σ_{k=0}^{W−1} δ^k · x_{t−k} along axis 0.

    x: (T, ...) float64 with zeros where a value is missing (mask before calling).
    Rows t < W−1 sum over the t+1 rows available. first: the first row wanted; returns rows
    first … T − 1 (a new array, of x's shape but T − first rows), the same numbers bit for bit
    as those rows of the whole result: the blocks stay where the whole array puts them (W-row
    blocks from row 0), and only the blocks those rows read are summed — their own block's
    prefix and the previous block's suffix from the first row wanted on. (A daily update needs
    one or two rows of a 252-row window: a quarter of the work of the whole result. With first
    inside block 0, e.g. T = 253, first = 251, W = 252: block 0's prefix, its suffix for row W,
    and block 1's own prefix — not the two blocks' prefixes and suffixes.)
    """
    if window < 1:
        raise ValueError(f"window must be ≥ 1, got {window}")
    x = np.asarray(x, dtype=np.float64)
    rows = x.shape[0]
    if not 0 <= first <= rows:
        raise ValueError(f"first must be a row of x (0 … {rows}), got {first}")
    block = first // window
    if block == 0:
        if first == 0:
            return _block_sums(x, window, decay)
        # Rows first … W − 1 need only block 0's prefix; rows W … the path below (block 1 on).
        # The whole result would also sum block 0's suffix to no use and every later block twice.
        head = _prefix_sums(x[:window], decay)[first:]
        return head if rows <= window else np.concatenate([head, window_sums(x, window, decay, window)])
    start = block * window
    # Blocks ``block`` … of x are the blocks of x[start:]: their sums are the whole result's,
    # except that the first lacks the suffix of block − 1 (rows start − W … start − 1).
    out = _block_sums(x[start:], window, decay) if rows - start > window else _prefix_sums(x[start:], decay)
    lo, hi = first - start, min(window - 1, rows - start)  # rows of the first block that take the suffix
    if lo < hi:
        prev = x[start - window:start]
        if decay == 1.0:
            # suffix[i − lo] = Σ_{j ≥ i + 1} prev[j], summed from the block's end as the whole result does
            suffix = _running_sums(prev[:lo:-1], axis=0)[::-1]
            out[lo:hi] += suffix[:hi - lo]
        else:
            to_end, lift = _decay_powers(window, decay)
            along = (window - 1 - lo,) + (1,) * (x.ndim - 1)
            suffix = _running_sums((prev[lo + 1:] * to_end[lo:].reshape(along))[::-1], axis=0)[::-1]
            out[lo:hi] += lift[lo:hi].reshape((hi - lo,) + along[1:]) * suffix[:hi - lo]
    return out[lo:]


def _decay_powers(window: int, decay: float) -> tuple[np.ndarray, np.ndarray]:
    """(δ^(W − 1 − i) for i = 1 … W − 1, δ^i for i = 1 … W − 1): the weights of a block's suffix
    to its end, and of the end of block b − 1 as seen from row i − 1 of block b."""
    return decay ** np.arange(window - 2, -1, -1.0), decay ** np.arange(1.0, window)


def _prefix_sums(x: np.ndarray, decay: float) -> np.ndarray:
    """The running sums of one block of at most W rows (no padding to W rows): within a block
    they are :func:`_block_sums`' prefix, the same additions in the same order (the weighted
    prefix by :func:`ew_filter`, lfilter's arithmetic without importing ``scipy.signal``)."""
    return _running_sums(x, axis=0) if decay == 1.0 else ew_filter(x, decay)


# Cells per row from which :func:`_running_sums` loops over rows instead of calling np.cumsum:
# cumsum runs its sequential inner loop along the summed axis, one column at a time with a
# stride of a whole row, so on wide arrays it is 2-4× slower than a loop over rows adding whole
# contiguous rows (252 × 2,980: 3.9 ms vs 0.9 ms); the loop's ~1.7 µs per row of Python
# overhead wins from about 200 cells a row (measured: 128 cells, cumsum 0.32 ms vs 0.53 ms).
_ROW_LOOP_MIN_CELLS = 256


def _running_sums(x: np.ndarray, axis: int) -> np.ndarray:
    """``np.cumsum(x, axis=axis)``, bit for bit, as a new C-ordered array of x's shape.

    cumsum (``np.add.accumulate``) copies the first row and adds each next row to the running
    total, strictly in order; a loop over rows doing ``out[i] = out[i − 1] + x[i]`` performs the
    same IEEE additions on the same operands in the same order (NaN, inf and signed zeros
    included), only a whole row at a time — much faster when rows are wide.
    """
    length = x.shape[axis]
    # Along the last axis cumsum already reads contiguous memory; narrow rows don't pay the loop.
    if length < 2 or axis % x.ndim == x.ndim - 1 or x.size < _ROW_LOOP_MIN_CELLS * length:
        return np.cumsum(x, axis=axis)
    out = np.empty(x.shape, dtype=np.float64)
    rows_in, rows_out = np.moveaxis(x, axis, 0), np.moveaxis(out, axis, 0)  # views: row i along axis
    rows_out[0] = rows_in[0]
    for i in range(1, length):
        np.add(rows_out[i - 1], rows_in[i], out=rows_out[i])
    return out


def ew_filter(x: np.ndarray, decay: float, zi: np.ndarray | None = None) -> np.ndarray:
    """``scipy.signal.lfilter([1], [1, −δ], x, axis=0, zi=zi)``'s output, bit for bit: the
    running sums E_t = x_t + δ·E_{t−1} along axis 0, written out row by row in lfilter's own
    transposed direct form — y_t = z + 1·x_t, then z = 0·x_t − (−δ)·y_t, the same IEEE
    operations in the same order (signed zeros, NaN and inf included; z starts at 0, or ``zi``
    of shape (1, ...)).

    x: (T, ...) float64. A Python loop over the T rows (each a vector operation): for the few
    rows of a daily update, where importing ``scipy.signal`` (~1 s of a fresh process's CPU)
    would cost far more than the sums; a whole history is lfilter's (one C loop).
    """
    x = np.asarray(x, dtype=np.float64)
    b0, b1, a1 = 1.0, 0.0, -decay
    if x.ndim == 1:  # one series: the same operations on Python floats (IEEE doubles), ~50× faster per row
        z1 = 0.0 if zi is None else float(np.asarray(zi, dtype=np.float64).reshape(1)[0])
        sums = []
        for v in x.tolist():
            y = z1 + b0 * v
            z1 = v * b1 - y * a1
            sums.append(y)
        return np.array(sums, dtype=np.float64)
    out = np.empty_like(x)
    z = np.zeros_like(x[:1]) if zi is None else np.array(zi, dtype=np.float64).reshape(x[:1].shape)
    with np.errstate(all="ignore"):  # an inf or NaN runs on as it does in lfilter, silently
        for t in range(len(x)):
            out[t:t + 1] = z + b0 * x[t:t + 1]
            z = x[t:t + 1] * b1 - out[t:t + 1] * a1
    return out


def _block_sums(x: np.ndarray, window: int, decay: float) -> np.ndarray:
    """:func:`window_sums` of every row of x (module docstring: W-row blocks from row 0)."""
    rows, rest = x.shape[0], x.shape[1:]
    n_blocks = -(-rows // window)
    pad = n_blocks * window - rows
    if pad:
        x = np.concatenate([x, np.zeros((pad, *rest))], axis=0)
    blocks = x.reshape(n_blocks, window, *rest)  # row t = b·W + i is blocks[b, i]
    along = (1, window - 1) + (1,) * len(rest)  # broadcasts a per-row weight over blocks[:, 1:]
    # The last block's suffix is read by no window: only blocks 0 … n_blocks − 2 are summed.
    if decay == 1.0:
        out = _running_sums(blocks, axis=1)
        if n_blocks > 1:  # suffix[b, i − 1] = Σ_{j ≥ i} blocks[b, j]
            suffix = _running_sums(blocks[:-1, :0:-1], axis=1)[:, ::-1]
            out[1:, :-1] += suffix
    else:
        from scipy.signal import lfilter  # here, not at import: scipy.signal alone costs ~0.7 s

        out = lfilter([1.0], [1.0, -decay], blocks, axis=1)
        if n_blocks > 1:
            to_end, lift = _decay_powers(window, decay)
            suffix = _running_sums((blocks[:-1, 1:] * to_end.reshape(along))[:, ::-1], axis=1)[:, ::-1]
            out[1:, :-1] += lift.reshape(along) * suffix
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
