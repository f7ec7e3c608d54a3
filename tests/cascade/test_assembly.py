"""fit_cascade's output assembly: every block lands in its stocks' columns, in the caller's order,
fields equal by construction share one array, and nothing in the result can be written to."""

import numpy as np
import pandas as pd
import pytest

from riskstrata.cascade import fit_cascade
from riskstrata.cascade.fit import SAME_AS, CascadeEngine, CascadeParams, prepare_inputs
from riskstrata.data.synthetic import synthetic_market


@pytest.fixture(scope="module")
def market():
    """60 stocks in shuffled column order, 8 of them reclassified mid-sample, 4 unassigned."""
    m = synthetic_market(n_stocks=60, n_days=420, seed=5)
    cols = list(m.returns.columns)
    np.random.default_rng(1).shuffle(cols)
    returns = m.returns[cols]
    static = m.assignments.reset_index().assign(valid_from=pd.NaT)
    pairs = m.assignments.drop_duplicates().to_numpy()
    own = {t: tuple(m.assignments.loc[t]) for t in cols}
    moves = pd.DataFrame([{"ticker": t, "valid_from": returns.index[150 + 20 * k],
                           "sector_etf": new[0], "subsector_etf": new[1]}
                          for k, t in enumerate(cols[4:12])
                          for new in [next(p for p in pairs[k:] if tuple(p) != own[t])]])
    dated = pd.concat([static, moves], ignore_index=True)
    dated = dated[~dated["ticker"].isin(cols[:4])]
    return returns, m.etf_returns, dated[["ticker", "valid_from", "sector_etf", "subsector_etf"]]


@pytest.fixture(scope="module")
def fitted(market):
    return fit_cascade(*market)


def _engine(market) -> CascadeEngine:
    params = CascadeParams()
    return CascadeEngine(prepare_inputs(*market, params), params)


def test_every_block_lands_in_its_stocks_columns(market, fitted):
    returns = market[0]
    assert list(fitted.tickers) == list(returns.columns)  # the caller's order, not the blocks'
    engine = _engine(market)
    seen = np.zeros(len(returns.columns), dtype=int)
    moved = 0
    for block in engine.blocks(check=True, workers=1):
        assert list(fitted.tickers[block.cols]) == block.tickers
        seen[block.cols] += 1
        moved += int((~(block.codes == block.codes[:1]).all(axis=0)).sum())
        for key, arr in block.values.items():
            np.testing.assert_array_equal(fitted.values[key][:, block.cols], arr, err_msg=key)
            np.testing.assert_array_equal(fitted[key].to_numpy()[:, block.cols], arr, err_msg=key)
    assert (seen == 1).all() and moved == 8
    np.testing.assert_array_equal(fitted.values["returns_gross"], returns.to_numpy())


def test_fields_equal_by_construction_share_one_array(market, fitted):
    for alias, source in SAME_AS.items():
        assert fitted.values[alias] is fitted.values[source]
    for block in _engine(market).blocks(check=False, workers=1):  # the engine's own arrays agree
        for alias, source in SAME_AS.items():
            np.testing.assert_array_equal(block.values[alias], block.values[source], err_msg=alias)


def test_result_arrays_are_read_only(fitted):
    for key, arr in fitted.values.items():
        with pytest.raises(ValueError):
            arr[0, 0] = 1
    # Frames handed out are the caller's to change.
    frame = fitted["l1_mkt_hr"]
    frame.iloc[0, 0] = 1.0


def test_a_block_of_mixed_pairs_matches_the_usual_blocks(market):
    """_block on stocks of different last-date pairs (no shared base pair) gives the same numbers."""
    engine = _engine(market)
    usual = {key: np.empty((len(engine.inputs.dates), len(engine.inputs.tickers))) for key in ("l3_mkt_hr", "l2_rr",
                                                                                                "flags")}
    for block in engine.blocks(check=False, workers=1):
        for key, arr in usual.items():
            arr[:, block.cols] = block.values[key]
    cols = np.arange(0, len(engine.inputs.tickers), 3)
    assert len(np.unique(engine.inputs.assignment.codes[-1, cols])) > 1
    mixed = engine._block(cols, check=True)
    for key, arr in usual.items():
        np.testing.assert_array_equal(mixed.values[key], arr[:, cols], err_msg=key)


def test_only_the_regression_outputs_are_held_the_rest_is_derived_once(market, fitted):
    """A fresh result holds HELD_FIELDS (and the inputs' returns); every other field is derived on
    first read, kept, equal to the engine's (test above); peek(), to_long(), snapshot() and
    history() keep nothing."""
    from concurrent.futures import ThreadPoolExecutor

    from riskstrata.cascade.fit import HELD_FIELDS

    fresh = fit_cascade(*market)
    values = fresh.values
    assert set(values.held()) == set(HELD_FIELDS) | set(SAME_AS) | {"returns_gross"}
    assert len(values) == len(list(values)) and "l3_rr" in values and "nope" not in values
    long = fresh.to_long()
    assert set(values.held()) == set(HELD_FIELDS) | set(SAME_AS) | {"returns_gross"}  # the store write kept nothing
    np.testing.assert_array_equal(values.peek("l2_rr"), long.pivot(index="date", columns="ticker", values="l2_rr")
                                  .reindex(index=fresh.dates, columns=fresh.tickers).to_numpy())
    assert "l2_rr" not in values.held()
    with ThreadPoolExecutor(4) as pool:  # racing first reads derive one array
        got = list(pool.map(lambda _: values["lstar_rr"], range(8)))
    assert all(a is got[0] for a in got) and "lstar_rr" in values.held()
    with pytest.raises(KeyError):
        values["nope"]
    # A snapshot or a history derives only its cells (the same bits as the whole arrays; moved
    # stocks included) and keeps nothing.
    before = values.held()
    for i in (0, 1, 150, 151, 171, len(fresh.dates) - 1):
        snap = fresh.snapshot(fresh.dates[i])
        for f in fresh.fields:
            np.testing.assert_array_equal(snap[f].to_numpy(), fitted.values[f][i], err_msg=f"{f} on row {i}")
    for ticker in (fresh.tickers[0], fresh.tickers[5], fresh.tickers[-1]):  # unassigned, moved, static
        hist = fresh.history(ticker)
        for f in fresh.fields:
            np.testing.assert_array_equal(hist[f].to_numpy(), fitted[f][ticker].to_numpy(), err_msg=f"{f} of {ticker}")
    assert values.held() == before
    import pickle

    again = pickle.loads(pickle.dumps(fresh))  # derived fields still derive after a round trip
    np.testing.assert_array_equal(again.values["l3_cfr"], fresh.values["l3_cfr"])
