"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from riskstrata.data.store import Store
from tests.shared_builds import shared_build

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
    GICS, the cascade built 2016 onwards (built once per run for every xdist worker, see
    tests/shared_builds.py; read it only; skipped where the data is absent)."""
    from riskstrata.data.ingest import ingest_classifications, ingest_prices
    from riskstrata.data.registry import EtfRegistry
    from riskstrata.services.cascade import build_cascade

    prices, gics = SHARED_DATA / "prices" / "core.parquet", SHARED_DATA / "reference" / "gics_current.csv"
    if not prices.exists():
        pytest.skip(f"real market data not present at {SHARED_DATA}")

    def build(tmp: Path) -> None:
        px = pd.read_parquet(prices, filters=[("date", ">=", pd.Timestamp("2014-06-01"))])
        px = px[~px["ticker"].str.startswith("^")]  # yields are not prices
        path = tmp / "core_2014.parquet"
        px.to_parquet(path, index=False)
        store = Store(tmp / "store")
        ingest_prices(store, [path], etf_tickers=set(EtfRegistry.default().known_etfs()))
        ingest_classifications(store, gics)
        build_cascade(store, start="2016-01-01")

    return Store(shared_build(tmp_path_factory, "real-store", [prices, gics], build) / "store")


# --------------------------------------------------------------------------- file order under xdist

# Seconds each of the longest files took in `make test` (two workers, 966 tests, 4 Dec 2026, before
# the run-wide shared builds). pytest-xdist's --dist loadfile hands whole files, in the queue's
# order, to whichever worker asks; its default queue puts the files with the most tests first, so
# a file with a few long tests (a browser, servers, the real data) can come last and run alone
# while the other worker has finished. Longest first (LPT scheduling) leaves only short files for
# the end; files not listed keep their collection order. (Measured at 13:18 UTC: the workers spent
# 568 s and 547 s in tests of a 588 s run; the real store is built by the third file, long before
# the other real-data files ask for it, so no worker waits on its lock.)
LONGEST_FILES_SECONDS = {
    "tests/api/test_security.py": 142, "tests/web/test_pages.py": 67, "tests/services/test_cascade_real_data.py": 53,
    "tests/services/test_portfolio_service.py": 51, "tests/api/test_published_version.py": 49,
    "tests/services/test_cli.py": 41, "tests/mcp/test_mcp_server.py": 38, "tests/api/test_wire_real_data.py": 33,
    "tests/factors/test_model_real_data.py": 29, "tests/api/test_portfolio_held.py": 26,
    "tests/services/test_factors_service.py": 24, "tests/cli/test_every_command.py": 24,
    "tests/api/test_client_reports.py": 23, "tests/factors/test_factors_update.py": 20,
    "tests/factors/test_factors_dask.py": 20, "tests/api/test_hardening.py": 19,
    "tests/services/test_cluster_worker_killed.py": 19, "tests/services/test_build_crash.py": 18,
    "tests/cascade/test_dask.py": 17, "tests/api/test_ours.py": 17, "tests/services/test_update.py": 17,
    "tests/factors/test_model.py": 16, "tests/data/test_ingest.py": 14, "tests/research/test_lstar_study_real_data.py": 14,
}


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist, keep the collection order below instead of ordering files by test count."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first, longest at the front; the order inside a file is unchanged."""
    def seconds(item: pytest.Item) -> int:
        return LONGEST_FILES_SECONDS.get(item.nodeid.split("::", 1)[0], 0)
    items.sort(key=lambda item: -seconds(item))  # a stable sort: ties keep the collection order
