"""The update's check of its trailing window reads the arrays a version keeps, not its rows.

A cascade version keeps its last trading days' returns beside its parts (``window_returns``);
the daily update compares the window it re-reads against them, and falls back to scanning the
version's rows when a version has no such arrays (built before them). Both ways must decide
alike: the same rows published when nothing changed, the same refusal of a corrected price or
of a backfilled history; and an update keeps the arrays the next update needs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.ingest import ingest_classifications, ingest_prices
from riskstrata.data.registry import EtfRegistry
from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.errors import DataValidationError
from riskstrata.services.cascade import MODEL, WINDOW_ARRAYS, build_cascade
from riskstrata.services.update import update_cascade

ETFS = set(EtfRegistry.default().etfs())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store built without its last three days (files ``new.parquet`` and ``old.parquet`` beside it)."""
    tmp = tmp_path_factory.mktemp("window")
    m = synthetic_market(n_stocks=12, n_days=300, seed=21)
    prices = m.prices()
    last = np.sort(prices["date"].unique())[-3:]
    prices[prices["date"] < last[0]].to_parquet(tmp / "old.parquet", index=False)
    prices[prices["date"] >= last[0]].to_parquet(tmp / "new.parquet", index=False)
    m.classifications[["ticker", "gics_sector", "gics_sub_industry"]].to_csv(tmp / "gics.csv", index=False)
    store = Store(tmp / "store")
    ingest_prices(store, [tmp / "old.parquet"], etf_tickers=ETFS)
    ingest_classifications(store, tmp / "gics.csv")
    build_cascade(store, window=63)
    return tmp


def _store(built: Path, tmp_path: Path, arrays: bool) -> Store:
    store = Store(shutil.copytree(built / "store", tmp_path / ("with" if arrays else "without")))
    kept = store.model_dir(MODEL) / store.current_version(MODEL) / f"{WINDOW_ARRAYS}.npz"
    assert kept.is_file(), "a build keeps its window's returns"
    if not arrays:
        kept.unlink()  # as a version built before the arrays existed
    ingest_prices(store, [built / "new.parquet"], etf_tickers=ETFS)
    return store


def _rows(store: Store, version: str) -> pd.DataFrame:
    return store.read_model(MODEL, version=version).sort_values(["security_id", "date"]).reset_index(drop=True)


def test_with_or_without_the_arrays_the_same_rows_are_published(built: Path, tmp_path: Path) -> None:
    out = {}
    for arrays in (True, False):
        store = _store(built, tmp_path, arrays)
        summary = update_cascade(store)
        meta = store.model_meta(MODEL, summary.version)
        out[arrays] = (_rows(store, summary.version), meta["securities"], summary.rows)
        kept = store.read_arrays(MODEL, WINDOW_ARRAYS, summary.version)
        assert kept is not None, "an update keeps the arrays the next update checks against"
        assert pd.Timestamp(kept["dates"][-1]) == pd.Timestamp(meta["end"])
        assert len(kept["dates"]) == 252 and kept["returns"].shape == (252, len(kept["traded"]))
    pd.testing.assert_frame_equal(out[True][0], out[False][0], check_exact=True)
    assert out[True][1:] == out[False][1:]


def test_the_next_update_checks_against_the_arrays_the_last_one_kept(built: Path, tmp_path: Path) -> None:
    store = Store(shutil.copytree(built / "store", tmp_path / "twice"))
    new = pd.read_parquet(built / "new.parquet")
    days = np.sort(new["date"].unique())
    for day in days:  # one day at a time: each update checks the window the previous one kept
        new[new["date"] == day].to_parquet(tmp_path / "day.parquet", index=False)
        ingest_prices(store, [tmp_path / "day.parquet"], etf_tickers=ETFS)
        assert update_cascade(store).status == "updated"
    fixed = pd.read_parquet(built / "old.parquet")
    ticker = fixed["ticker"].iloc[-1]
    fixed = fixed[(fixed["ticker"] == ticker) & (fixed["date"] >= fixed["date"].max() - pd.Timedelta(days=20))]
    fixed.loc[fixed["date"] >= fixed["date"].max() - pd.Timedelta(days=7), "adj_close"] *= 1.01
    fixed.to_parquet(tmp_path / "fix.parquet", index=False)
    ingest_prices(store, [tmp_path / "fix.parquet"], etf_tickers=ETFS)
    late = new[new["date"] == days[-1]].assign(date=lambda f: f["date"] + pd.Timedelta(days=1))
    late.to_parquet(tmp_path / "late.parquet", index=False)
    ingest_prices(store, [tmp_path / "late.parquet"], etf_tickers=ETFS)
    with pytest.raises(DataValidationError, match="returns inside the trailing window differ"):
        update_cascade(store)


def _refusal(store: Store) -> str:
    with pytest.raises(DataValidationError) as refused:
        update_cascade(store)
    return str(refused.value)


def test_a_corrected_price_or_a_backfilled_history_is_refused_alike_either_way(built: Path, tmp_path: Path) -> None:
    old = pd.read_parquet(built / "old.parquet")
    ticker = sorted(set(old["ticker"]) - ETFS)[0]
    fixed = old[(old["ticker"] == ticker) & (old["date"] >= old["date"].max() - pd.Timedelta(days=20))].copy()
    fixed.loc[fixed["date"] >= fixed["date"].max() - pd.Timedelta(days=7), "adj_close"] *= 1.01
    fixed.to_parquet(tmp_path / "fix.parquet", index=False)
    old[old["ticker"] == ticker].assign(ticker="BACKFILL").to_parquet(tmp_path / "twin.parquet", index=False)
    said = {}
    for arrays in (True, False):
        for change in ("fix", "twin"):
            store = _store(built, tmp_path / f"{change}-{arrays}", arrays)
            ingest_prices(store, [tmp_path / f"{change}.parquet"], etf_tickers=ETFS)
            said[change, arrays] = _refusal(store)
    assert said["fix", True] == said["fix", False]
    assert "returns inside the trailing window differ" in said["fix", True] and f"first: " in said["fix", True]
    assert said["twin", True] == said["twin", False]
    assert "no rows in it" in said["twin", True] and "history ingested since the build" in said["twin", True]
