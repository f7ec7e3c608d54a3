"""`riskstrata update` (issue 13 §2): appending the newest days to Model A equals a full rebuild.

One small synthetic market is ingested without its last five days and the cascade built; the
five days are then ingested and the store updated. Each scenario works on its own copy of that
store. The identity checked: every stored field of every row of the updated version equals a
full rebuild of the same data to 1e-10 (the link betas too), including a stock that lists on a
new day, a stock with missing days inside the window and a reclassification that takes effect
on a new day. What an update cannot see right is refused with the reason, never published.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.ingest import ingest_classifications, ingest_prices
from riskstrata.data.registry import EtfRegistry
from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.errors import DataValidationError, ModelNotBuilt
from riskstrata.services.cascade import LINK_MODEL, MODEL, build_cascade
from riskstrata.services.update import update, update_cascade
from tests.api.test_ours import _client, wait_for
from tests.cli.test_every_command import assert_ran, invoke

WINDOW = 63  # a short window keeps the market small; the update re-reads max(window, 252) + k days
NEW_DAYS = 5
ETFS = set(EtfRegistry.default().etfs())
KEY = ["security_id", "date"]


@dataclass
class Market:
    root: Path  # the built store (the last NEW_DAYS days not yet ingested)
    files: Path
    new_days: list[pd.Timestamp]
    newcomer: str  # a stock whose first price is on the first new day
    holey: str  # a stock with missing days inside the trailing window
    mover: str  # a stock reclassified from the third new day on (its file: files / "reclass.csv")


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Market:
    tmp = tmp_path_factory.mktemp("update")
    m = synthetic_market(n_stocks=30, n_days=330, seed=13)
    prices = m.prices()
    dates = np.sort(prices["date"].unique())
    new_days = [pd.Timestamp(d) for d in dates[-NEW_DAYS:]]
    stocks = [t for t in m.returns.columns if t not in ETFS]
    newcomer, holey, mover = stocks[0], stocks[1], stocks[2]
    prices = prices[~((prices["ticker"] == newcomer) & (prices["date"] < new_days[0]))]
    holes = pd.DatetimeIndex(dates[-40:-30])  # ten days inside the 252-day window
    prices = prices[~((prices["ticker"] == holey) & prices["date"].isin(holes))]
    old = prices[prices["date"] < new_days[0]]
    old.to_parquet(tmp / "old.parquet", index=False)
    prices[prices["date"] >= new_days[0]].to_parquet(tmp / "new.parquet", index=False)
    classes = m.classifications[["ticker", "gics_sector", "gics_sub_industry"]]
    classes.to_csv(tmp / "gics.csv", index=False)
    # The mover keeps its row and gains a dated one: another sector from the third new day on.
    row = classes[classes["ticker"] == mover].iloc[0]
    other = classes[classes["gics_sector"] != row["gics_sector"]].iloc[0]
    reclass = pd.DataFrame({"ticker": [mover], "gics_sector": [other["gics_sector"]],
                            "gics_sub_industry": [other["gics_sub_industry"]], "valid_from": [str(new_days[2].date())]})
    reclass.to_csv(tmp / "reclass.csv", index=False)
    store = Store(tmp / "built")
    ingest_prices(store, [tmp / "old.parquet"], etf_tickers=ETFS)
    ingest_classifications(store, tmp / "gics.csv")
    build_cascade(store, window=WINDOW)
    return Market(store.root, tmp, new_days, newcomer, holey, mover)


def _copy(market: Market, tmp_path: Path, ingest_new: bool = True) -> Store:
    shutil.copytree(market.root, tmp_path / "store")
    store = Store(tmp_path / "store")
    if ingest_new:
        ingest_prices(store, [market.files / "new.parquet"], etf_tickers=ETFS)
    return store


def _ingest(store: Store, prices: pd.DataFrame, path: Path) -> None:
    prices.to_parquet(path, index=False)
    ingest_prices(store, [path], etf_tickers=ETFS)


def assert_refused(store: Store, reason: str) -> None:
    """The update raises DataValidationError matching ``reason`` and publishes nothing."""
    before = store.current_version(MODEL)
    with pytest.raises(DataValidationError, match=reason):
        update_cascade(store)
    assert store.current_version(MODEL) == before and store.versions(MODEL) == [before]


def _sorted(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    return frame.sort_values(key).reset_index(drop=True)


def assert_same_rows(updated: pd.DataFrame, rebuilt: pd.DataFrame, key: list[str], tol: float = 1e-10) -> None:
    """Every column of every row equal: floats to ``tol`` (NaN where NaN), labels exactly."""
    assert sorted(updated.columns) == sorted(rebuilt.columns)
    a, b = _sorted(updated, key), _sorted(rebuilt, key)
    assert len(a) == len(b), f"{len(a)} rows after the update, {len(b)} in the rebuild"
    for col in b.columns:
        x, y = a[col], b[col]
        if pd.api.types.is_float_dtype(y) or pd.api.types.is_integer_dtype(y):
            x, y = x.to_numpy(np.float64), y.to_numpy(np.float64)
            assert (np.isnan(x) == np.isnan(y)).all(), f"{col}: missing in one and not the other"
            worst = np.nanmax(np.abs(x - y), initial=0.0)
            assert worst <= tol, f"{col}: the update differs from the rebuild by {worst:.2e}"
        else:
            labels = lambda s: [None if pd.isna(v) else str(v) for v in s]  # noqa: E731
            assert labels(x) == labels(y), f"{col}: labels differ"


def test_an_update_of_the_last_five_days_equals_a_full_rebuild(market: Market, tmp_path: Path) -> None:
    store = _copy(market, tmp_path)
    ingest_classifications(store, market.files / "reclass.csv")
    previous = store.current_version(MODEL)
    summary = update_cascade(store)
    assert summary.status == "updated" and summary.previous == previous
    assert summary.new_dates == [str(d.date()) for d in market.new_days]
    updated = store.read_model(MODEL, version=summary.version)
    updated_links = store.read_model(LINK_MODEL, version=store.model_meta(MODEL, summary.version)["link_version"])
    assert store.current_version(LINK_MODEL) == store.model_meta(MODEL, summary.version)["link_version"]

    rebuilt_version = build_cascade(store, window=WINDOW).version
    rebuilt = store.read_model(MODEL, version=rebuilt_version)
    assert_same_rows(updated, rebuilt, KEY)
    assert_same_rows(updated_links, store.read_model(LINK_MODEL), ["date", "sector_etf", "subsector_etf"])
    new = updated[updated["date"] >= market.new_days[0]]
    assert len(new) == summary.rows and new["l3_mkt_hr"].notna().sum() > 0.8 * len(new)
    # The cases the equality covers: a listing on a new day, holes in the window, a reclassification.
    assert (new["ticker"] == market.newcomer).sum() == NEW_DAYS - 1  # its first price has no return
    assert new.loc[new["ticker"] == market.newcomer, "l1_mkt_hr"].isna().all()  # no history yet
    holey = updated[(updated["ticker"] == market.holey) & updated["date"].isin(market.new_days)]
    assert (holey["n_obs"] < WINDOW).all() and holey["l1_mkt_hr"].notna().all()
    mover = _sorted(new[new["ticker"] == market.mover], ["date"])
    assert mover["sector_etf"].iloc[0] != mover["sector_etf"].iloc[-1]
    meta, rebuilt_meta = store.model_meta(MODEL, summary.version), store.model_meta(MODEL, rebuilt_version)
    for key in ("start", "end", "params", "securities", "registry"):
        assert meta[key] == rebuilt_meta[key], key
    assert meta["rows"] == rebuilt_meta["rows"] and meta["updated_from"] == previous
    assignments = store.read_table("cascade_assignments")
    assert (assignments["security_id"].astype(str).isin(updated["security_id"].astype(str).unique())).all()


def test_with_exponential_weights_too(market: Market, tmp_path: Path) -> None:
    """The EWMA window sums restart at the window's first row; the truncated sum is exact anyway."""
    store = _copy(market, tmp_path, ingest_new=False)
    build_cascade(store, window=WINDOW, halflife=21)
    ingest_prices(store, [market.files / "new.parquet"], etf_tickers=ETFS)
    summary = update_cascade(store)
    assert store.model_meta(MODEL, summary.version)["params"]["halflife"] == 21
    updated = store.read_model(MODEL, version=summary.version)
    assert_same_rows(updated, store.read_model(MODEL, version=build_cascade(store, window=WINDOW, halflife=21).version),
                     KEY)


def test_inferred_etfs_are_kept_and_check_inferred_refuses_when_a_rebuild_would_move_them(tmp_path: Path) -> None:
    """NEWCO has no classification and 125 returns at the build: too few to infer its ETFs
    ('unassigned', market only). Five new days take it past the 126 the inference needs, so a
    rebuild would infer ETFs and rewrite all its rows. The default update keeps the build's
    choice and says so; --check-inferred refuses; every other security equals the rebuild."""
    m = synthetic_market(n_stocks=12, n_days=300, seed=4)
    prices = m.prices()
    dates = np.sort(prices["date"].unique())
    recent = prices[prices["date"] >= dates[-131]]  # 131 prices: 125 returns before the new days, 130 after
    full = recent.groupby("ticker")["date"].count()
    twin = recent[recent["ticker"] == full[full == 131].index.intersection(m.classifications["ticker"])[0]]
    rng = np.random.default_rng(1)
    prices = pd.concat([prices, twin.assign(ticker="NEWCO", adj_close=twin["adj_close"].to_numpy()
                                            * np.exp(rng.normal(0, 0.004, len(twin)).cumsum()))])
    store = Store(tmp_path / "store")
    _ingest(store, prices[prices["date"] < dates[-NEW_DAYS]], tmp_path / "old.parquet")
    m.classifications[["ticker", "gics_sector", "gics_sub_industry"]].to_csv(tmp_path / "gics.csv", index=False)
    ingest_classifications(store, tmp_path / "gics.csv")
    build_cascade(store, window=WINDOW)
    assert store.read_table("cascade_assignments").set_index("security_id").filter(like="NEWCO", axis=0)[
        "assignment_source"].eq("unassigned").all()
    _ingest(store, prices[prices["date"] >= dates[-NEW_DAYS]], tmp_path / "new.parquet")
    assert_refused_inferred = pytest.raises(DataValidationError, match="inferred from returns change for 1 securities.*NEWCO")
    with assert_refused_inferred:
        update_cascade(store, check_inferred=True)
    summary = update_cascade(store)
    assert any("keep the ETFs inferred from returns" in note for note in summary.notes)
    updated = store.read_model(MODEL, version=summary.version)
    rebuilt = store.read_model(MODEL, version=build_cascade(store, window=WINDOW).version)
    newco = lambda f: f[f["ticker"].astype(str) == "NEWCO"]  # noqa: E731
    assert newco(rebuilt)["sector_etf"].notna().any() and newco(updated)["sector_etf"].isna().all()
    others = lambda f: f[f["ticker"].astype(str) != "NEWCO"]  # noqa: E731
    assert_same_rows(others(updated), others(rebuilt), KEY)


def test_no_new_day_is_a_no_op(market: Market, tmp_path: Path) -> None:
    store = _copy(market, tmp_path, ingest_new=False)
    before = store.current_version(MODEL)
    summary = update_cascade(store)
    assert summary.status == "up to date" and summary.version is None
    assert "up to date" in summary.message and "nothing published" in summary.message
    assert store.current_version(MODEL) == before and store.versions(MODEL) == [before]


def test_a_gap_of_more_than_a_week_is_refused_unless_allowed(market: Market, tmp_path: Path) -> None:
    store = _copy(market, tmp_path, ingest_new=False)
    late = pd.read_parquet(market.files / "new.parquet")
    _ingest(store, late.assign(date=late["date"] + pd.Timedelta(days=21)), tmp_path / "late.parquet")
    assert_refused(store, "weekdays between .* --allow-gap")
    assert update_cascade(store, allow_gap=True).status == "updated"


def test_history_changed_inside_the_window_is_refused(market: Market, tmp_path: Path) -> None:
    store = _copy(market, tmp_path)
    fixed = pd.read_parquet(market.files / "old.parquet")
    day = fixed["date"].max() - pd.Timedelta(days=10)
    fixed = fixed[(fixed["date"] >= day - pd.Timedelta(days=5)) & (fixed["ticker"] == market.mover)]
    fixed.loc[fixed["date"] >= day, "adj_close"] *= 1.01  # a corrected price
    _ingest(store, fixed, tmp_path / "fix.parquet")
    assert_refused(store, "returns inside the trailing window differ.*build cascade")


def test_a_new_ticker_with_backfilled_history_is_refused(market: Market, tmp_path: Path) -> None:
    store = _copy(market, tmp_path)
    twin = pd.read_parquet(market.files / "old.parquet")
    _ingest(store, twin[twin["ticker"] == market.mover].assign(ticker="BACKFILL"), tmp_path / "backfill.parquet")
    assert_refused(store, "no rows in it .*history ingested since the build.*build cascade")


def test_a_reclassification_on_a_covered_date_is_refused(market: Market, tmp_path: Path) -> None:
    store = _copy(market, tmp_path)
    moved = pd.read_csv(market.files / "reclass.csv")
    moved.loc[0, "valid_from"] = str((market.new_days[0] - pd.Timedelta(days=30)).date())
    moved.to_csv(tmp_path / "past.csv", index=False)
    ingest_classifications(store, tmp_path / "past.csv")
    assert_refused(store, "assignments of 1 securities changed.*build cascade")


def test_update_says_plainly_that_model_b_needs_its_build(market: Market, tmp_path: Path) -> None:
    store = _copy(market, tmp_path, ingest_new=False)
    with store.begin_version("factors_US21") as writer:  # a published Model B version (its content unused)
        writer.commit({"model": "factors_US21"})
    summaries = {s.model: s for s in update(store)}
    assert summaries[MODEL].status == "up to date"
    b = summaries["factors_US21"]
    assert b.status in ("not incremental", "updated", "up to date")
    if b.status == "not incremental":
        assert "not updated incrementally" in b.message and "riskstrata factors build --model US21" in b.message
    with pytest.raises(ModelNotBuilt, match="build cascade"):
        update(Store(tmp_path / "empty"))


def test_post_update_runs_as_a_job(market: Market, tmp_path: Path) -> None:
    store = _copy(market, tmp_path)
    with _client(store) as client:
        started = client.post("/api/update")
        assert started.status_code == 202, started.text
        body = wait_for(client, started.json()["job_id"])
    assert body["status"] == "done", body
    (cascade,) = [r for r in body["result"] if r["model"] == MODEL]
    assert cascade["status"] == "updated" and cascade["version"] == store.current_version(MODEL)
    assert cascade["new_dates"][-1] == str(market.new_days[-1].date())


def test_cli_update_twice_updates_then_says_up_to_date(market: Market, tmp_path: Path) -> None:

    store = _copy(market, tmp_path)
    args = ["update", "--store", str(store.root)]
    first = invoke(args)
    assert_ran(first, args)
    assert "appended 5 trading day(s)" in first.output
    again = invoke(args)
    assert_ran(again, args)
    assert "up to date" in again.output and "nothing published" in again.output
