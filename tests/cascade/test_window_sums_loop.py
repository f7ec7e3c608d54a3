"""window_sums is the same, bit for bit, as before its cumulative sums became row loops.

`window_sums` (cascade/moments.py) once summed every block with ``np.cumsum`` along the block
axis and, for a few rows wanted (``first`` inside block 0), summed the whole history. It now adds
whole rows in a Python loop when rows are wide, and sums only the blocks the wanted rows read.
Both change only which additions are skipped or how they are scheduled, never their operands or
order, so every number — NaN, ±inf and the sign of a zero included — must be unchanged. The
previous implementation is kept here verbatim (as ``_reference_*``) to compare against.
"""

from __future__ import annotations

import numpy as np
import pytest

from riskstrata.cascade import moments
from riskstrata.cascade.moments import window_sums


# ---- the implementation before the row loops (riskstrata 2be74f7), verbatim but renamed ----

def _reference_window_sums(x: np.ndarray, window: int, decay: float = 1.0, first: int = 0) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    rows = x.shape[0]
    block = first // window
    if block == 0:
        out = _reference_block_sums(x, window, decay)
        return out if first == 0 else out[first:]
    start = block * window
    out = (_reference_block_sums(x[start:], window, decay) if rows - start > window
           else _reference_prefix_sums(x[start:], decay))
    lo, hi = first - start, min(window - 1, rows - start)
    if lo < hi:
        prev = x[start - window:start]
        if decay == 1.0:
            suffix = np.cumsum(prev[:lo:-1], axis=0)[::-1]
            out[lo:hi] += suffix[:hi - lo]
        else:
            to_end, lift = _reference_decay_powers(window, decay)
            along = (window - 1 - lo,) + (1,) * (x.ndim - 1)
            suffix = np.cumsum((prev[lo + 1:] * to_end[lo:].reshape(along))[::-1], axis=0)[::-1]
            out[lo:hi] += lift[lo:hi].reshape((hi - lo,) + along[1:]) * suffix[:hi - lo]
    return out[lo:]


def _reference_decay_powers(window: int, decay: float) -> tuple[np.ndarray, np.ndarray]:
    return decay ** np.arange(window - 2, -1, -1.0), decay ** np.arange(1.0, window)


def _reference_prefix_sums(x: np.ndarray, decay: float) -> np.ndarray:
    return np.cumsum(x, axis=0) if decay == 1.0 else _reference_ew_filter(x, decay)


def _reference_ew_filter(x: np.ndarray, decay: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    b0, b1, a1 = 1.0, 0.0, -decay
    if x.ndim == 1:
        z1 = 0.0
        sums = []
        for v in x.tolist():
            y = z1 + b0 * v
            z1 = v * b1 - y * a1
            sums.append(y)
        return np.array(sums, dtype=np.float64)
    out = np.empty_like(x)
    z = np.zeros_like(x[:1])
    with np.errstate(all="ignore"):
        for t in range(len(x)):
            out[t:t + 1] = z + b0 * x[t:t + 1]
            z = x[t:t + 1] * b1 - out[t:t + 1] * a1
    return out


def _reference_block_sums(x: np.ndarray, window: int, decay: float) -> np.ndarray:
    rows, rest = x.shape[0], x.shape[1:]
    n_blocks = -(-rows // window)
    pad = n_blocks * window - rows
    if pad:
        x = np.concatenate([x, np.zeros((pad, *rest))], axis=0)
    blocks = x.reshape(n_blocks, window, *rest)
    along = (1, window - 1) + (1,) * len(rest)
    if decay == 1.0:
        out = np.cumsum(blocks, axis=1)
        suffix = np.cumsum(blocks[:, :0:-1], axis=1)[:, ::-1]
        out[1:, :-1] += suffix[:-1]
    else:
        from scipy.signal import lfilter

        out = lfilter([1.0], [1.0, -decay], blocks, axis=1)
        to_end, lift = _reference_decay_powers(window, decay)
        suffix = np.cumsum((blocks[:, 1:] * to_end.reshape(along))[:, ::-1], axis=1)[:, ::-1]
        out[1:, :-1] += lift.reshape(along) * suffix[:-1]
    return out.reshape(n_blocks * window, *rest)[:rows]


# ---- comparison ----

def assert_same_bits(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Equal shapes, equal values with NaN where NaN, and the same sign on every non-NaN value
    (so −0.0 ≠ +0.0)."""
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == np.float64, f"{what}: dtype {got.dtype}"
    assert np.array_equal(got, want, equal_nan=True), (
        f"{what}: {np.sum(~((got == want) | (np.isnan(got) & np.isnan(want))))} values differ")
    numbers = ~np.isnan(want)
    assert np.array_equal(np.signbit(got[numbers]), np.signbit(want[numbers])), f"{what}: a zero's sign differs"


def awkward_values(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Normal draws of mixed magnitude with NaN, ±inf, −0.0, +0.0, huge values, and a few whole
    columns of −0.0 (whose sums must stay −0.0)."""
    x = rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, size=shape)
    kind = rng.random(shape)
    x[kind < 0.02] = np.nan
    x[(kind >= 0.02) & (kind < 0.03)] = np.inf
    x[(kind >= 0.03) & (kind < 0.04)] = -np.inf
    x[(kind >= 0.04) & (kind < 0.10)] = -0.0
    x[(kind >= 0.10) & (kind < 0.14)] = 0.0
    x[(kind >= 0.14) & (kind < 0.15)] = 1e300
    if x.ndim > 1:
        columns = x.reshape(shape[0], -1)
        columns[:, rng.random(columns.shape[1]) < 0.05] = -0.0
    return x


# Columns per row: narrow ones take np.cumsum, wide ones (≥ _ROW_LOOP_MIN_CELLS cells a row) the row loop.
TRAILING_SHAPES = [(), (7,), (300,), (3, 4), (2, 150)]
DECAYS = [1.0, 0.5 ** (1 / 42), 0.9]
LENGTHS = {1: [1, 3, 8], 5: [1, 4, 5, 7, 13, 23], 252: [1, 100, 252, 253, 254, 300, 505, 600]}


def firsts(rows: int, window: int, rng: np.random.Generator) -> list[int]:
    """Rows worth starting at: 0, either side of block boundaries, the last rows, one at random."""
    wanted = {0, 1, window - 1, window, window + 1, 2 * window - 1, 2 * window, rows - 2, rows - 1, rows,
              int(rng.integers(0, rows + 1))}
    return sorted(f for f in wanted if 0 <= f <= rows)


def test_the_row_loop_threshold_is_inside_the_tested_shapes():
    """The wide trailing shapes above do take the row loop, the narrow ones np.cumsum."""
    assert 7 < moments._ROW_LOOP_MIN_CELLS <= 300


@pytest.mark.parametrize("window", sorted(LENGTHS))
@pytest.mark.parametrize("trailing", TRAILING_SHAPES, ids=lambda s: "x".join(map(str, s)) or "1d")
@pytest.mark.parametrize("decay", DECAYS, ids=lambda d: f"decay{d:.4f}")
def test_window_sums_match_the_previous_implementation_bit_for_bit(window, trailing, decay):
    rng = np.random.default_rng(hash((window, trailing, decay)) % 2**32)
    for rows in LENGTHS[window]:
        x = awkward_values(rng, (rows, *trailing))
        for first in firsts(rows, window, rng):
            with np.errstate(all="ignore"):  # inf − inf and inf·0 are part of the test
                want = _reference_window_sums(x, window, decay, first)
                got = window_sums(x, window, decay, first)
            assert_same_bits(got, want, f"T={rows} W={window} decay={decay} first={first} shape={x.shape}")


@pytest.mark.parametrize("decay", [1.0, 0.5 ** (1 / 63)])
def test_a_wide_daily_update_matches_bit_for_bit(decay):
    """The shape of Model A's stacked sums and of a descriptor panel: (T, k, n) and (T, n) with a
    252-row window, T = 253 (first inside block 0) and a long history, the last one or two rows."""
    rng = np.random.default_rng(7)
    for shape in [(253, 4, 150), (253, 2980), (1010, 3, 200)]:
        x = awkward_values(rng, shape)
        for first in (shape[0] - 2, shape[0] - 1, 0):
            with np.errstate(all="ignore"):
                want = _reference_window_sums(x, 252, decay, first)
                got = window_sums(x, 252, decay, first)
            assert_same_bits(got, want, f"shape={shape} decay={decay} first={first}")


def test_running_sums_are_cumsum_on_either_side_of_the_threshold():
    """The private helper itself: on every axis, reversed views included, narrow and wide."""
    rng = np.random.default_rng(3)
    for shape in [(9,), (9, 5), (9, 300), (4, 9, 80), (2, 9, 3, 100)]:
        x = awkward_values(rng, shape)
        for axis in range(x.ndim):
            for view in (x, np.flip(x, axis=axis)):
                with np.errstate(all="ignore"):
                    assert_same_bits(moments._running_sums(view, axis), np.cumsum(view, axis=axis),
                                     f"shape={shape} axis={axis}")
