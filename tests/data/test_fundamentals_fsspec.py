"""Fundamentals on a store at an fsspec URL: ingest and point-in-time panels read through the
store's own methods (no local path), equal to the same on a local store."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd

from riskstrata.data.fundamentals import fundamentals_panel, ingest_fundamentals
from riskstrata.data.store import Store
from tests.files import write

SNAPSHOTS = """
date,ticker,market_cap,price,eps
2020-01-15,AAA,1e9,10,1.0
2020-06-15,AAA,2e9,20,
2020-01-15,BBB,5e9,50,5.0
"""


def test_a_memory_store_gives_the_local_stores_panels(tmp_path):
    path = write(tmp_path, "f.csv", SNAPSHOTS)
    local, remote = Store(tmp_path / "store"), Store(f"memory://fundamentals-{uuid.uuid4().hex}")
    for store in (local, remote):
        ingest_fundamentals(store, path)
    dates = pd.bdate_range("2020-01-01", "2020-12-31")
    for field in ("market_cap", "eps", "shares_outstanding", "earnings_yield"):
        want = fundamentals_panel(local, field, dates, ["AAA", "BBB"])
        got = fundamentals_panel(remote, field, dates, ["AAA", "BBB"])
        np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())
        assert not np.isnan(got.to_numpy()).all()
