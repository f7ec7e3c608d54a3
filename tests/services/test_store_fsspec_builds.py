"""Both models build into a store on an fsspec URL exactly as into a local directory (issue 13 §3).

One small styled synthetic market is ingested into a local store and into a ``memory://`` one;
Model A (the cascade) and Model B (US21) built in each agree to 1e-12 on every stored field. A
``local:2`` cluster of worker processes, started by the CLI, builds the cascade into a ``file://``
store — the workers write their parts through the URL, the client publishes — equal to the local
build; a ``memory://`` store, which lives in one process, builds on workers of that process and
refuses worker processes with a clear error. A daily update on ``memory://`` copies the published
parts into its version (no hard links there) and equals the full build.
"""

from __future__ import annotations

import uuid

import pytest

from riskstrata.data.ingest import ingest_classifications, ingest_prices
from riskstrata.data.store import Store
from riskstrata.data.store_fsspec import FsspecStore
from riskstrata.data.synthetic import synthetic_market
from riskstrata.errors import StoreError
from riskstrata.services import factors as svc
from riskstrata.services.cascade import MODEL, build_cascade
from riskstrata.services.demo import load_synthetic_into_store
from riskstrata.services.update import update_cascade
from tests.cli.test_every_command import assert_ran, invoke
from tests.factors.frames import assert_same_frames
from tests.factors.test_factors_dask import stored
from tests.services.test_update import ETFS, KEY, assert_same_rows

WINDOW = 63


@pytest.fixture(scope="module")
def market():
    return synthetic_market(n_stocks=40, n_days=330, seed=23, styles=True)


@pytest.fixture(scope="module")
def local(market, tmp_path_factory):
    """A local store of the market with both models built: (store, cascade version, US21 version)."""
    store = Store(tmp_path_factory.mktemp("fsspec-builds") / "store")
    load_synthetic_into_store(store, market)
    return store, build_cascade(store, window=WINDOW).version, svc.build_factor_model(store, "US21")["version"]


@pytest.fixture(scope="module")
def memory(market):
    store = Store(f"memory://builds-{uuid.uuid4().hex}")
    load_synthetic_into_store(store, market)
    yield store
    store.fs.rm(str(store.path()), recursive=True)


def test_both_models_built_into_memory_equal_the_local_builds(local, memory) -> None:
    store, cascade, factors = local
    assert isinstance(memory, FsspecStore)
    built = build_cascade(memory, window=WINDOW)
    assert_same_rows(memory.read_model(MODEL), store.read_model(MODEL, version=cascade), KEY, tol=1e-12)
    assert built.rows == store.model_meta(MODEL, cascade)["rows"]
    version = svc.build_factor_model(memory, "US21")["version"]
    want, got = stored(store, factors), stored(memory, version)
    for part, frame in want.items():
        assert_same_frames(got[part], frame, part)
    own = {"companions", "version", "started_at", "committed_at"}  # the rest (digest, parts, notes…) the same
    assert ({k: v for k, v in memory.model_meta("factors_US21").items() if k not in own}
            == {k: v for k, v in store.model_meta("factors_US21", factors).items() if k not in own})


def test_a_memory_store_builds_on_workers_of_its_own_process(local, memory) -> None:
    distributed = pytest.importorskip("distributed")
    store, cascade, _ = local
    with pytest.raises(StoreError, match="memory:// store lives in this process"):
        build_cascade(memory, window=WINDOW, cluster="local:2")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
        built = build_cascade(memory, window=WINDOW, cluster=cl.scheduler_address)
    assert memory.current_version(MODEL) == built.version and memory.model_meta(MODEL)["cluster"]["workers"] == 2
    assert_same_rows(memory.read_model(MODEL), store.read_model(MODEL, version=cascade), KEY, tol=1e-12)


def test_the_cli_builds_on_a_local_cluster_into_a_file_url_store(local, market, tmp_path) -> None:
    pytest.importorskip("distributed")
    store, cascade, _ = local
    url = (tmp_path / "shared").as_uri()
    load_synthetic_into_store(Store(url), market)
    args = ["build", "cascade", "--window", str(WINDOW), "--cluster", "local:2", "--json", "--store", url]
    result = invoke(args)
    assert_ran(result, args)
    shared = Store(url, create=False)
    assert shared.model_meta(MODEL)["cluster"]["workers"] == 2
    assert_same_rows(shared.read_model(MODEL), store.read_model(MODEL, version=cascade), KEY, tol=1e-12)
    assert not [p for p in (tmp_path / "shared" / "models" / MODEL).iterdir() if p.name.startswith(".tmp-")]


def test_a_daily_update_on_memory_carries_the_parts_over_and_equals_the_build(local, market, tmp_path) -> None:
    """The update copies the published parts into its new version (no hard links on object
    storage) and appends the new days: the same rows as the full local build."""
    store, cascade, _ = local
    prices = market.prices()
    days = sorted(prices["date"].unique())
    prices[prices["date"] < days[-3]].to_parquet(tmp_path / "old.parquet", index=False)
    prices[prices["date"] >= days[-3]].to_parquet(tmp_path / "new.parquet", index=False)
    market.classifications[["ticker", "gics_sector", "gics_sub_industry"]].to_csv(tmp_path / "gics.csv", index=False)
    mem = Store(f"memory://update-{uuid.uuid4().hex}")
    try:
        ingest_prices(mem, [tmp_path / "old.parquet"], etf_tickers=ETFS)
        ingest_classifications(mem, tmp_path / "gics.csv")
        first = build_cascade(mem, window=WINDOW).version
        ingest_prices(mem, [tmp_path / "new.parquet"], etf_tickers=ETFS)
        updated = update_cascade(mem)
        assert mem.current_version(MODEL) != first and mem.model_meta(MODEL)["parts"][0]["file"] in {
            p["file"] for p in mem.model_meta(MODEL, first)["parts"]}
        assert_same_rows(mem.read_model(MODEL), store.read_model(MODEL, version=cascade), KEY)
        assert updated.rows > 0 and len(mem.read_model(MODEL, version=first)) < len(mem.read_model(MODEL))
    finally:
        mem.fs.rm(str(mem.path()), recursive=True)
