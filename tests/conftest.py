"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from riskstrata.data.store import Store

# The real reference data lives beside the repository: <repo>/../shared/data.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the real reference data; the test is skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED_DATA


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """An empty store in the test's temporary directory."""
    return Store(tmp_path / "store")


@pytest.fixture(scope="session")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The real S&P 500 + ETFs of ../shared/data/prices/core.parquet from mid-2014, with current
    GICS, the cascade built 2016 onwards (built once per session; skipped where the data is absent)."""
    from riskstrata.data.ingest import ingest_classifications, ingest_prices
    from riskstrata.data.registry import EtfRegistry
    from riskstrata.services.cascade import build_cascade

    if not (SHARED_DATA / "prices" / "core.parquet").exists():
        pytest.skip(f"real market data not present at {SHARED_DATA}")
    tmp = tmp_path_factory.mktemp("real")
    px = pd.read_parquet(SHARED_DATA / "prices" / "core.parquet", filters=[("date", ">=", pd.Timestamp("2014-06-01"))])
    px = px[~px["ticker"].str.startswith("^")]  # yields are not prices
    path = tmp / "core_2014.parquet"
    px.to_parquet(path, index=False)
    store = Store(tmp / "store")
    ingest_prices(store, [path], etf_tickers=set(EtfRegistry.default().known_etfs()))
    ingest_classifications(store, SHARED_DATA / "reference" / "gics_current.csv")
    build_cascade(store, start="2016-01-01")
    return store
