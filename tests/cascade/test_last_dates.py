"""The engine's fast paths give the whole fit's numbers, bit for bit.

A daily update asks the engine for the last date(s) only (``first_row``) and solves every
stock in one block of mixed ETF pairs, in one pass (its pairs' shared sums gathered per column,
its window sums stacked into one call). All must give exactly the numbers of the general path
(``blocks()`` over every date, one block per pair, solved group by group, one window_sums call
per series): the windows and the column means still see every date, and each later step is
elementwise or looks back one date. The market has what
makes a path differ: stocks reclassified on the very last dates (the time-safe returns of that
date follow the pair held the day before), stocks with missing days inside the last window
(their own masked moments), a stock listed inside the window, unassigned stocks, and an ETF
listed late (its level falls back until it has a whole window).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskstrata.cascade import fit
from riskstrata.cascade.fit import CascadeEngine, CascadeParams, prepare_inputs
from riskstrata.data.synthetic import synthetic_market

WINDOW = 63


@pytest.fixture(scope="module")
def market() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    m = synthetic_market(n_stocks=40, n_days=330, seed=7)
    returns, etfs = m.returns.copy(), m.etf_returns.copy()
    dates, cols = returns.index, list(returns.columns)
    returns.iloc[-30:-20, 5] = np.nan  # holes inside the last window
    returns.iloc[-3, 6] = np.nan
    returns.iloc[:-40, 7] = np.nan  # listed inside the last window
    late = m.assignments["subsector_etf"][m.assignments["subsector_etf"] != m.assignments["sector_etf"]].iloc[0]
    etfs.loc[etfs.index[:300], late] = np.nan  # a subsector ETF listed 30 days before the end
    static = m.assignments.reset_index().assign(valid_from=pd.NaT)
    pairs = [tuple(p) for p in m.assignments.drop_duplicates().to_numpy()]
    own = {t: tuple(m.assignments.loc[t]) for t in cols}
    moves = []
    for k, (t, day) in enumerate([(cols[0], dates[-1]), (cols[1], dates[-2]), (cols[2], dates[-2]),
                                  (cols[3], dates[100]), (cols[5], dates[-1])]):
        new = next(p for p in pairs[k:] + pairs if p != own[t])
        moves.append({"ticker": t, "valid_from": day, "sector_etf": new[0], "subsector_etf": new[1]})
    moves.append({"ticker": cols[2], "valid_from": dates[-1], "sector_etf": own[cols[2]][0],
                  "subsector_etf": own[cols[2]][1]})  # and back again the next day
    dated = pd.concat([static, pd.DataFrame(moves)], ignore_index=True)
    dated = dated[~dated["ticker"].isin(cols[-3:])]  # unassigned: market only
    return returns, etfs, dated[["ticker", "valid_from", "sector_etf", "subsector_etf"]]


def _engine(market, halflife: float | None = None) -> CascadeEngine:
    params = CascadeParams(window=WINDOW, halflife=halflife)
    return CascadeEngine(prepare_inputs(*market, params), params)


def _whole(engine: CascadeEngine) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The general path: every date, one block per pair, each solved group by group (a pair's
    stocks with no gap, the stocks with gaps) with one window_sums call per series (as a build
    over a long history runs), gathered to (T, N) per field."""
    T, N = engine.T, len(engine.inputs.tickers)
    values: dict[str, np.ndarray] = {}
    codes = np.zeros((T, N), dtype=np.int32)
    with pytest.MonkeyPatch.context() as general:
        general.setattr(fit, "ONE_PASS_CELLS", 0)
        general.setattr(fit, "STACK_CELLS", 0)
        for block in engine.blocks(check=True, workers=1):
            for key, arr in block.values.items():
                values.setdefault(key, np.empty((T, N), dtype=arr.dtype))[:, block.cols] = arr
            codes[:, block.cols] = block.codes
    return values, codes


def assert_bit_equal(fast: dict[str, np.ndarray], whole: dict[str, np.ndarray], rows: slice, what: str) -> None:
    assert sorted(fast) == sorted(whole), f"{what}: other fields"
    for key, arr in whole.items():
        assert fast[key].dtype == arr.dtype, f"{what}: {key} is {fast[key].dtype}, not {arr.dtype}"
        np.testing.assert_array_equal(fast[key], arr[rows], err_msg=f"{what}: {key} differs from the whole fit")


@pytest.mark.parametrize("one_pass", [True, False])
@pytest.mark.parametrize("halflife", [None, 21.0])
def test_the_last_dates_alone_equal_the_whole_fit(market, halflife, one_pass, monkeypatch) -> None:
    engine = _engine(market, halflife)
    whole, codes = _whole(engine)
    if not one_pass:  # the last dates by the general path too
        monkeypatch.setattr(fit, "ONE_PASS_CELLS", 0)
        monkeypatch.setattr(fit, "STACK_CELLS", 0)
    assert np.isfinite(whole["l3_mkt_hr"][-1]).sum() > 25  # the comparison is not of NaNs
    assert (whole["flags"][-40:] & 4).any()  # the late ETF's fallback is inside it
    everyone = np.arange(len(engine.inputs.tickers))
    for first_row in (engine.T - 1, engine.T - 2, engine.T - 5, 1, 0):
        block = _engine(market, halflife).block(everyone, check=True, first_row=first_row)
        assert_bit_equal(block.values, whole, slice(first_row, None), f"first_row={first_row}")
        np.testing.assert_array_equal(block.codes, codes[first_row:])


def test_one_block_of_every_pair_equals_the_blocks_per_pair(market) -> None:
    engine = _engine(market)
    whole, _ = _whole(engine)
    block = _engine(market).block(np.arange(len(engine.inputs.tickers)), check=True)
    assert_bit_equal(block.values, whole, slice(None), "one block")


def test_blocks_of_the_last_dates_equal_the_whole_fit(market) -> None:
    engine = _engine(market)
    whole, _ = _whole(engine)
    for block in _engine(market).blocks(check=True, workers=2, first_row=engine.T - 2):
        assert_bit_equal({k: v for k, v in block.values.items()},
                         {k: v[:, block.cols] for k, v in whole.items()}, slice(engine.T - 2, None), "blocks")


def test_link_betas_of_the_kept_dates_are_those_rows_of_all(market) -> None:
    engine = _engine(market)
    everything = engine.link_betas()
    keep = np.zeros(engine.T, dtype=bool)
    keep[-3:] = True
    kept = engine.link_betas(keep)
    expected = everything[everything["date"].isin(engine.inputs.dates[keep])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, expected, check_exact=True)
    assert kept[["lambda_sm", "lambda_um"]].notna().any().all()


def test_a_first_row_outside_the_dates_is_refused(market) -> None:
    engine = _engine(market)
    with pytest.raises(ValueError, match="first_row"):
        engine.block(np.arange(3), first_row=engine.T)
