"""The Python API over the store gives the same frames as the in-memory fit."""

from __future__ import annotations

import numpy as np
import pytest

import riskstrata
from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.errors import DataValidationError
from riskstrata.services.cascade import build_cascade, load_market_inputs, metrics, stored_frame, stored_snapshot
from riskstrata.services.demo import load_synthetic_into_store


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    market = synthetic_market(n_stocks=40, n_days=252 * 3, seed=21)
    store = Store(tmp_path_factory.mktemp("api") / "store")
    load_synthetic_into_store(store, market)
    build_cascade(store)
    return store, market


def test_stored_frames_equal_the_in_memory_fit(built):
    store, market = built
    # The same inputs as the store build saw (ingest turns a return spanning a gap into NaN).
    inputs = load_market_inputs(store)
    returns = inputs.returns.rename(columns=lambda sid: sid.removeprefix("TKR:"))
    res = riskstrata.fit_cascade(returns[market.returns.columns], inputs.etf_returns, market.assignments)
    stored = stored_frame(store, "l3_mkt_hr")
    common = stored.columns.intersection(res.tickers)
    assert set(market.returns.columns) <= set(common)  # stocks, plus the ETFs decomposed as assets
    mem = res["l3_mkt_hr"].reindex(index=stored.index, columns=common)
    np.testing.assert_allclose(stored[common].to_numpy(), mem.to_numpy(), atol=1e-10, rtol=0)
    assert stored[common].notna().sum().sum() > 10_000


def test_snapshot_metrics_and_assignment_source(built):
    store, market = built
    snap = stored_snapshot(store)
    assert {"l3_mkt_hr", "lstar_level", "sector_etf"} <= set(snap.columns)
    ticker = snap["l3_mkt_hr"].dropna().index[0]
    m = metrics(store, ticker)
    assert m["assignment_source"] == "gics"
    assert m["l3_mkt_hr"] == pytest.approx(float(snap.loc[ticker, "l3_mkt_hr"]))
    etf = metrics(store, "XLK")
    assert etf["assignment_source"] == "registry_etf" and etf["sector_etf"] is None


def test_unknown_field_is_a_clear_error(built):
    store, _ = built
    with pytest.raises(DataValidationError, match="no field"):
        stored_frame(store, "l9_hr")
