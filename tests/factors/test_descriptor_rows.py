"""Descriptors of some rows only (``first``): the same numbers, bit for bit, as those rows of the
whole panels — the window sums keep the whole array's blocks, so no rounding moves. A daily
update computes only its new rows this way; its exactness against a rebuild rests on this."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from riskstrata.cascade.moments import ew_filter, window_sums
from riskstrata.data.synthetic import synthetic_market
from riskstrata.factors import descriptors as D
from riskstrata.factors.model import compute_descriptors, lookback_start, market_return
from riskstrata.factors.spec import load_spec

from tests.factors.test_model import synthetic_inputs


def assert_bits(part: np.ndarray, whole: np.ndarray, what: str) -> None:
    """Identical float64 bits (NaN where NaN, the sign of zero included)."""
    part, whole = np.asarray(part, dtype=np.float64), np.asarray(whole, dtype=np.float64)
    assert part.shape == whole.shape, f"{what}: shape {part.shape} ≠ {whole.shape}"
    assert np.array_equal(part.view(np.int64), whole.view(np.int64)), \
        f"{what}: {int((part.view(np.int64) != whole.view(np.int64)).sum())} values differ"


def wild(T: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Values over many orders of magnitude, zeros (missing) and one huge print: running sums of
    them round differently in every order of addition."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, *shape)) * np.exp(rng.standard_normal((T, *shape)) * 4)
    x[rng.random((T, *shape)) < 0.2] = 0.0
    if T > 3:
        x[T // 2].flat[0] = 6.25e4 ** 2
    return x


@pytest.mark.parametrize("decay", [1.0, 0.5 ** (1 / 63), 0.5 ** (1 / 126)])
@pytest.mark.parametrize("window", [1, 2, 21, 63, 231, 252])
def test_window_sums_of_the_last_rows_are_the_whole_results_bit_for_bit(window, decay):
    for T in (1, 5, 62, 251, 252, 253, 254, 256, 505, 760):
        x = wild(T, (6,), seed=T * 1000 + window)
        whole = window_sums(x, window, decay)
        firsts = {0, 1, T // 2, T - 2, T - 1, T, T - window, T - window - 1, T - window + 1,
                  window - 1, window, window + 1, 2 * window - 1, 2 * window}
        for first in sorted(f for f in firsts if 0 <= f <= T):
            assert_bits(window_sums(x, window, decay, first=first), whole[first:],
                        f"T={T} W={window} δ={decay} first={first}")


def test_window_sums_of_the_last_rows_keep_trailing_axes():
    x = wild(300, (4, 3), seed=5)
    for decay in (1.0, 0.5 ** (1 / 42)):
        assert_bits(window_sums(x, 63, decay, first=290), window_sums(x, 63, decay)[290:], f"(T, 4, 3) δ={decay}")


def test_window_sums_refuse_a_first_row_outside_the_array():
    with pytest.raises(ValueError, match="first"):
        window_sums(np.zeros((10, 2)), 5, first=11)
    with pytest.raises(ValueError, match="first"):
        window_sums(np.zeros((10, 2)), 5, first=-1)


@pytest.mark.parametrize("decay", [0.5 ** (1 / 63), 0.5, 0.999999])
def test_ew_filter_is_lfilters_output_bit_for_bit(decay):
    from scipy.signal import lfilter

    rng = np.random.default_rng(8)
    for T in (0, 1, 2, 5, 252):
        x = wild(T, (3, 4), seed=T)
        x[rng.random(x.shape) < 0.1] = -0.0       # signed zeros (a product of 0 and a negative)
        if T > 3:
            x[1, 0, 0], x[2, 0, 1], x[2, 0, 2], x[0, 1, 0], x[1, 1, 0] = np.nan, np.inf, -np.inf, 1e308, 1e308
        assert_bits(ew_filter(x, decay), lfilter([1.0], [1.0, -decay], x, axis=0), f"T={T}")
        if T:
            zi = rng.standard_normal((1, 3, 4))
            assert_bits(ew_filter(x, decay, zi), lfilter([1.0], [1.0, -decay], x, axis=0, zi=zi)[0], f"T={T} zi")


def test_a_daily_updates_window_sums_do_not_import_scipy_signal():
    """~1 s of a fresh process's CPU: the few rows of an update (a block's own rows from the
    252nd of its trailing panel on, :func:`~riskstrata.factors.model.lookback_start`) are summed
    without it."""
    code = ("import sys, numpy as np; from riskstrata.cascade.moments import window_sums; "
            "x = np.random.default_rng(0).normal(size=(254, 30)); "
            "[window_sums(x, 252, 0.5 ** (1 / h), first=f) for h in (42, 63, 126) for f in (252, 253)]; "
            "print('scipy.signal' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture(scope="module")
def inputs():
    market = synthetic_market(n_stocks=60, n_days=700, seed=11, styles=True)
    return synthetic_inputs(market)


def frames_bits(part: pd.DataFrame, whole: pd.DataFrame, first: int, what: str) -> None:
    assert part.index.equals(whole.index[first:]) and part.columns.equals(whole.columns), f"{what}: labels"
    assert_bits(part.to_numpy(), whole.to_numpy()[first:], what)


@pytest.mark.parametrize("first", [1, 251, 252, 253, 500, 699])
def test_each_descriptor_of_the_last_rows_is_the_whole_panels_rows(inputs, first):
    r, cap = inputs.returns, inputs.market_cap
    market = market_return(inputs)
    for name, whole, part in [
        ("beta/residual_vol", D.beta_and_residual_vol(r, market), D.beta_and_residual_vol(r, market, first=first)),
        ("momentum", [D.momentum(r)], [D.momentum(r, first=first)]),
        ("total_vol", [D.total_volatility(r)], [D.total_volatility(r, first=first)]),
        ("log_size", [D.log_size(cap)], [D.log_size(cap, first=first)]),
        ("liquidity", [D.liquidity(inputs.volume, inputs.shares_outstanding)],
         [D.liquidity(inputs.volume, inputs.shares_outstanding, first=first)]),
    ]:
        for w, p in zip(whole, part):
            frames_bits(p, w, first, f"{name} from row {first}")
    whole = D.value_descriptors(inputs.fundamentals, cap, inputs.price)
    part = D.value_descriptors(inputs.fundamentals, cap, inputs.price, first=first)
    assert set(part) == set(whole)
    assert np.isfinite(whole["growth"].to_numpy()[first:]).any(), "the rows compared hold growth values"
    for name in whole:
        frames_bits(part[name], whole[name], first, f"{name} from row {first}")


def test_a_blocks_descriptors_are_those_rows_of_its_trailing_panels(inputs):
    """What :func:`~riskstrata.factors.model.block_exposures` computes: the block's rows of the
    descriptors of its trailing panel (here a daily update's: the last two dates)."""
    spec = load_spec("US21")
    needed = {d for s in spec.styles for d in s.descriptors} | {"liquidity", "total_vol"}
    dates = inputs.returns.index
    a = len(dates) - 2
    lo = lookback_start(dates, a)
    market = market_return(inputs)
    trailing = type(inputs)(inputs.returns.iloc[lo:], inputs.market_cap.iloc[lo:], inputs.sector,
                            {k: v.iloc[lo:] for k, v in inputs.fundamentals.items()}, inputs.volume.iloc[lo:],
                            inputs.shares_outstanding.iloc[lo:], inputs.price.iloc[lo:], inputs.issuer)
    whole = compute_descriptors(trailing, needed, market.iloc[lo:])
    part = compute_descriptors(trailing, needed, market.iloc[lo:], first=a - lo)
    assert set(part) == set(whole) == needed
    for name in needed:
        frames_bits(part[name], whole[name], a - lo, name)
