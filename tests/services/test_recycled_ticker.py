"""A recycled ticker stays two securities through ingest, build and queries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskstrata.cascade.kernel import Flag
from riskstrata.data.ingest import ingest_prices
from riskstrata.data.master import SecurityMaster
from riskstrata.data.store import Store
from riskstrata.services.cascade import build_cascade, history, metrics


def test_recycled_ticker_is_never_merged_into_one_history(tmp_path):
    rng = np.random.default_rng(4)
    dates = pd.bdate_range("2015-01-02", "2021-12-31")
    spy = rng.normal(0.0004, 0.01, len(dates))
    first_life = dates <= "2017-06-30"   # company A trades as XYZ
    second_life = dates >= "2019-01-02"  # unrelated company B takes the symbol
    xyz = np.where(first_life, 1.5 * spy + rng.normal(0, 0.01, len(dates)),
                   np.where(second_life, 0.3 * spy + rng.normal(0, 0.01, len(dates)), np.nan))
    frames = [pd.DataFrame({"date": dates, "ticker": "SPY", "adj_close": 100 * np.cumprod(1 + spy)})]
    alive = ~np.isnan(xyz)
    levels = 50 * np.cumprod(1 + np.nan_to_num(xyz))
    frames.append(pd.DataFrame({"date": dates[alive], "ticker": "XYZ", "adj_close": levels[alive]}))
    path = tmp_path / "prices.csv"
    pd.concat(frames).to_csv(path, index=False)

    store = Store(tmp_path / "store")
    SecurityMaster(pd.DataFrame({
        "figi": ["BBG000AAAAAA", "BBG000BBBBBB"], "ticker": ["XYZ", "XYZ"], "name": ["Old XYZ Corp", "New XYZ Inc"],
        "asset_type": ["stock", "stock"], "valid_from": ["2015-01-02", "2019-01-02"],
        "valid_to": ["2017-06-30", None]})).to_store(store)
    ingest_prices(store, [path], etf_tickers={"SPY"})
    build_cascade(store, start="2015-06-01")

    old, new = metrics(store, "XYZ", "2017-06-30"), metrics(store, "XYZ", "2021-12-31")
    assert old["security_id"] == "BBG000AAAAAA" and new["security_id"] == "BBG000BBBBBB"
    assert old["l1_mkt_beta"] == pytest.approx(1.5, abs=0.15)
    assert new["l1_mkt_beta"] == pytest.approx(0.3, abs=0.15)
    # B's history starts from scratch: its first weeks have too little data, not A's old window.
    b = history(store, "XYZ", "2019-01-02", "2019-02-15")
    assert (b["flags"] & Flag.INSUFFICIENT_HISTORY).all() and b["l1_mkt_hr"].isna().all()
    assert b["ticker"].eq("XYZ").all()
