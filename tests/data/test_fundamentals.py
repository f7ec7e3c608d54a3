"""Fundamentals ingest and point-in-time panels: units, no look-ahead, max age, reasons, idempotence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.fundamentals import (
    FUNDAMENTAL_FIELDS,
    FUNDAMENTALS_COLUMNS,
    check_fundamentals_file,
    fundamentals_panel,
    ingest_fundamentals,
    read_fundamentals_file,
)
from riskstrata.data.ingest import ingest_prices
from riskstrata.data.master import SecurityMaster
from riskstrata.data.store import Store
from riskstrata.errors import DataValidationError
from tests.files import write

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SNAPSHOTS = SHARED / "fundamentals" / "snapshots.parquet"
OHLCV = SHARED / "prices" / "ohlcv_2021.parquet"


def reasons(report, action: str | None = None) -> dict[str, int]:
    issues = report.issues if action is None else report.issues[report.issues["action"] == action]
    return issues.groupby("reason").size().to_dict()


def assert_accounted(report) -> None:
    """Nothing dropped silently: every rejected row is in the issues with its reason."""
    assert report.rows_read == report.rows_accepted + report.rows_rejected
    rejected = report.issues[report.issues["action"] == "rejected"]
    assert len(rejected[["file", "source_row"]].drop_duplicates()) == report.rows_rejected


# ---------------------------------------------------------------------- reading


def test_aliases_map_to_canonical_fields_in_stated_units(tmp_path):
    path = write(tmp_path, "f.csv", """
Availability Date,Symbol,market_cap_usd,ebitda_usd,Book Value,name
2020-03-31,aapl,1.1e12,7.6e10,4.9,Apple
""")
    df = read_fundamentals_file(path)
    assert list(df.columns) == [
        "available_date", "ticker", "market_cap", "book_value_per_share", "ebitda", "source_row",
    ]  # fmt: skip
    row = df.iloc[0]
    assert row["available_date"] == pd.Timestamp("2020-03-31") and row["ticker"] == "AAPL"
    assert (row["market_cap"], row["ebitda"], row["book_value_per_share"]) == (1.1e12, 7.6e10, 4.9)
    assert FUNDAMENTAL_FIELDS["market_cap"] == "USD" and FUNDAMENTAL_FIELDS["dividend_yield"] == "decimal"


def test_file_without_date_or_fields_is_refused(tmp_path):
    with pytest.raises(DataValidationError, match="availability date"):
        read_fundamentals_file(write(tmp_path, "a.csv", "ticker,market_cap\nAAPL,1e12"))
    with pytest.raises(DataValidationError, match="none of the fields"):
        read_fundamentals_file(write(tmp_path, "b.csv", "date,ticker,sector\n2020-01-01,AAPL,Tech"))


# ---------------------------------------------------------------------- validation rules


def test_bad_rows_are_rejected_or_repaired_each_with_its_reason(store, tmp_path):
    path = write(tmp_path, "f.csv", """
date,ticker,market_cap,dividend_yield,pe,price
2020-01-31,AAA,1e9,0.02,15,10
2020-01-31,,1e9,0.02,15,10
not-a-date,BBB,1e9,0.02,15,10
2020-01-31,CCC,-5e9,0.02,15,10
2020-01-31,DDD,1e9,2.5,15,10
2020-01-31,EEE,1e9,0.01,inf,10
2020-01-31,FFF,,,abc,
2020-01-31,GGG,1e9,0.03,15,10
2020-01-31,GGG,2e9,0.03,15,10
2020-01-31,HHH,3e9,0.01,12,0
2020-01-31,HHH,3e9,0.01,12,0
2020-01-31,III,4e6,0.01,12,5
""")
    report = ingest_fundamentals(store, path)
    assert_accounted(report)
    assert reasons(report, "rejected") == {
        "missing_ticker": 1, "bad_date": 1, "negative_market_cap": 1, "dividend_yield_percent": 1,
        "no_values": 1, "duplicate_conflict": 2,
    }  # fmt: skip
    assert reasons(report, "repaired") == {"non_finite": 2, "impossible_value": 2, "duplicate_identical": 1}
    assert reasons(report, "flagged") == {"suspect_units": 1}
    yield_issue = report.issues[report.issues["reason"] == "dividend_yield_percent"]["detail"].iloc[0]
    assert "2.5" in yield_issue and "decimal" in yield_issue

    table = store.read_table("fundamentals")
    assert list(table.columns) == FUNDAMENTALS_COLUMNS
    assert sorted(table["ticker"]) == ["AAA", "EEE", "HHH", "III"]
    eee = table.set_index("ticker").loc["EEE"]
    assert np.isnan(eee["pe"]) and eee["market_cap"] == 1e9  # inf cell set to NaN, row kept
    assert np.isnan(table.set_index("ticker").loc["HHH", "price"])  # a zero price is a placeholder
    logged = store.read_table("ingest_issues")
    assert set(logged["kind"]) == {"fundamentals"} and len(logged) == len(report.issues)


def test_reingest_is_idempotent_and_a_partial_file_keeps_other_fields(store, tmp_path):
    full = write(tmp_path, "full.csv", """
date,ticker,market_cap,eps,price
2020-01-31,AAA,1e9,2.0,20
2020-04-30,AAA,1.2e9,2.1,24
2020-01-31,BBB,5e9,-1.0,50
""")
    ingest_fundamentals(store, full)
    first = store.read_table("fundamentals")
    ingest_fundamentals(store, full)
    pd.testing.assert_frame_equal(store.read_table("fundamentals"), first)

    debt = write(tmp_path, "debt.csv", "date,ticker,total_debt\n2020-01-31,AAA,3e8\n")
    ingest_fundamentals(store, debt)
    after = store.read_table("fundamentals").set_index(["ticker", "available_date"])
    row = after.loc[("AAA", pd.Timestamp("2020-01-31"))]
    assert (row["market_cap"], row["eps"], row["total_debt"]) == (1e9, 2.0, 3e8)
    assert len(after) == 3


# ---------------------------------------------------------------------- point in time


@pytest.fixture
def snapshots(store, tmp_path) -> Store:
    path = write(tmp_path, "f.csv", """
date,ticker,market_cap,price,eps
2020-01-15,AAA,1e9,10,1.0
2020-06-15,AAA,2e9,20,
2020-01-15,BBB,5e9,50,5.0
""")
    ingest_fundamentals(store, path)
    return store


@pytest.mark.parametrize("as_frame", [False, True])
def test_no_look_ahead_a_value_dated_d_is_invisible_on_d_minus_1_and_visible_on_d(snapshots, as_frame):
    source = snapshots.read_table("fundamentals") if as_frame else snapshots
    dates = pd.DatetimeIndex(["2020-01-14", "2020-01-15", "2020-06-14", "2020-06-15"])
    panel = fundamentals_panel(source, "market_cap", dates, ["AAA", "BBB"])
    assert panel.shape == (4, 2)
    assert np.isnan(panel.loc["2020-01-14", "AAA"]) and np.isnan(panel.loc["2020-01-14", "BBB"])
    assert panel.loc["2020-01-15", "AAA"] == 1e9
    assert panel.loc["2020-06-14", "AAA"] == 1e9  # the June snapshot is not known yet
    assert panel.loc["2020-06-15", "AAA"] == 2e9


def test_max_age_is_honoured_in_calendar_days(snapshots):
    d = pd.Timestamp("2020-01-15")
    dates = pd.DatetimeIndex([d + pd.Timedelta(days=k) for k in (0, 100, 101)])
    panel = fundamentals_panel(snapshots, "market_cap", dates, ["BBB"], max_age_days=100)
    assert panel["BBB"].tolist()[:2] == [5e9, 5e9] and np.isnan(panel["BBB"].iloc[2])
    default = fundamentals_panel(snapshots, "market_cap", pd.DatetimeIndex([d + pd.Timedelta(days=400),
                                                                            d + pd.Timedelta(days=401)]), ["BBB"])
    assert default["BBB"].iloc[0] == 5e9 and np.isnan(default["BBB"].iloc[1])


def test_a_field_missing_from_the_latest_snapshot_comes_from_the_previous_one_and_derived_shares(snapshots):
    dates = pd.DatetimeIndex(["2020-07-01"])
    eps = fundamentals_panel(snapshots, "eps", dates, ["AAA"])
    assert eps.iloc[0, 0] == 1.0  # June has no eps: January's is the latest known
    shares = fundamentals_panel(snapshots, "shares_outstanding", dates, ["AAA"])
    assert shares.iloc[0, 0] == pytest.approx(1e8)  # market_cap / price of the June snapshot
    assert np.isnan(fundamentals_panel(snapshots, "shares_outstanding", dates, ["AAA"], derive=False).iloc[0, 0])


def test_security_ids_and_tickers_give_the_same_panel(snapshots):
    dates = pd.bdate_range("2020-01-01", "2020-12-31")
    by_ticker = fundamentals_panel(snapshots, "market_cap", dates, ["AAA", "BBB"])
    ids = SecurityMaster.from_store(snapshots).resolve_many(["AAA", "BBB"], "2020-06-30").tolist()
    by_id = fundamentals_panel(snapshots, "market_cap", dates, ids)
    np.testing.assert_array_equal(by_ticker.to_numpy(), by_id.to_numpy())
    assert list(by_id.columns) == ids


def test_a_recycled_ticker_never_shows_the_previous_companys_numbers(store, tmp_path):
    SecurityMaster(pd.DataFrame({
        "security_id": ["OLD", "NEW"], "ticker": ["XYZ", "XYZ"],
        "valid_from": ["2010-01-01", "2016-01-01"], "valid_to": ["2015-12-31", None],
    })).to_store(store)  # fmt: skip
    ingest_fundamentals(store, write(tmp_path, "f.csv", "date,ticker,market_cap\n2015-06-30,XYZ,1e9\n"))
    day = pd.DatetimeIndex(["2015-12-31", "2016-03-01"])
    by_ticker = fundamentals_panel(store, "market_cap", day, ["XYZ"])
    assert by_ticker["XYZ"].iloc[0] == 1e9 and np.isnan(by_ticker["XYZ"].iloc[1])
    assert fundamentals_panel(store, "market_cap", day, ["OLD"])["OLD"].tolist() == [1e9, 1e9]


def test_unknown_field_is_refused(snapshots):
    with pytest.raises(DataValidationError, match="unknown fundamental field"):
        fundamentals_panel(snapshots, "free_cash_flow", pd.DatetimeIndex(["2020-01-31"]), ["AAA"])


# ---------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_snapshots_ingest_with_units_stated(store):
    if not SNAPSHOTS.is_file():
        pytest.skip(f"reference fundamentals not present at {SNAPSHOTS}")
    report = ingest_fundamentals(store, SNAPSHOTS)
    assert_accounted(report)
    assert report.rows_read == len(pd.read_parquet(SNAPSHOTS, columns=["ticker"]))
    # Rejections are rows with no value at all; the five infinite P/Es of KEY are repaired.
    assert set(reasons(report, "rejected")) <= {"no_values"}
    assert reasons(report, "repaired").get("non_finite", 0) >= 1
    table = store.read_table("fundamentals")
    assert table["available_date"].nunique() == 142
    assert not table.duplicated(["security_id", "available_date"]).any()
    # Units: caps in USD (a median S&P 500 cap is tens of billions), yields decimals.
    assert 5e9 < table["market_cap"].median() < 2e11
    assert table["dividend_yield"].max() <= 1 and 0.005 < table["dividend_yield"].median() < 0.05
    assert 1 < table["eps"].median() < 20  # USD per share
    aapl = fundamentals_panel(store, "market_cap", pd.DatetimeIndex(["2013-03-01", "2025-01-02"]), ["AAPL"])["AAPL"]
    assert 3e11 < aapl.iloc[0] < 7e11 and 2e12 < aapl.iloc[1] < 5e12
    ingest_fundamentals(store, SNAPSHOTS)
    pd.testing.assert_frame_equal(store.read_table("fundamentals"), table)


@pytest.mark.realdata
def test_volume_survives_price_ingest(store, tmp_path):
    if not OHLCV.is_file():
        pytest.skip(f"reference OHLCV prices not present at {OHLCV}")
    tickers = ["AAPL", "MSFT", "JPM", "XOM", "KO"]
    raw = pd.read_parquet(OHLCV, filters=[("ticker", "in", tickers)])
    assert set(raw["ticker"]) == set(tickers)
    subset = tmp_path / "ohlcv_subset.parquet"
    raw.to_parquet(subset)
    ingest_prices(store, subset)
    prices = store.read_table("prices", columns=["ticker", "date", "volume"])
    merged = raw[["ticker", "date", "volume"]].merge(prices, on=["ticker", "date"], suffixes=("_file", "_store"))
    assert len(merged) >= 0.99 * len(raw)
    np.testing.assert_array_equal(merged["volume_store"].to_numpy(), merged["volume_file"].to_numpy(dtype="float64"))


# ---------------------------------------------------------------------- rolling from the snapshot (issue 9 §1)


@pytest.fixture
def split_stock():
    """One stock, one snapshot on Friday 2020-01-10 (price 100, cap 1e9, P/B 2, P/E 20, yield 2 %),
    then a 2:1 split on 2020-01-15 and a rally. The adjusted closes are re-based by the split (and
    a later dividend): on the snapshot day the adjusted close is 45, not the traded 100."""
    snaps = pd.DataFrame({"available_date": pd.to_datetime(["2020-01-10"]), "ticker": ["AAA"],
                          "price": [100.0], "market_cap": [1e9], "price_to_book": [2.0], "pe": [20.0],
                          "dividend_yield": [0.02], "price_to_sales": [4.0]})
    days = pd.bdate_range("2020-01-06", "2020-01-24")
    adj = pd.DataFrame({"AAA": np.linspace(40.0, 60.0, len(days))}, index=days)
    return snaps, adj


def test_caps_prices_and_ratios_roll_by_the_adjusted_close_relative(split_stock):
    snaps, adj = split_stock
    dates = adj.index
    snap_adj = adj.loc["2020-01-10", "AAA"]
    rel = adj["AAA"] / snap_adj
    panel = {f: fundamentals_panel(snaps, f, dates, ["AAA"], adj_close=adj)["AAA"]
             for f in ("market_cap", "price", "book_to_price", "earnings_yield", "dividend_yield", "sales_to_price")}
    after = dates >= "2020-01-10"
    # Worked by hand: cap_t = 1e9 × adj_t / adj_snap; price_t = 100 × rel; ratios ÷ rel.
    np.testing.assert_allclose(panel["market_cap"][after], 1e9 * rel[after], rtol=1e-15)
    np.testing.assert_allclose(panel["price"][after], 100.0 * rel[after], rtol=1e-15)
    np.testing.assert_allclose(panel["book_to_price"][after], 0.5 / rel[after], rtol=1e-15)
    np.testing.assert_allclose(panel["earnings_yield"][after], 0.05 / rel[after], rtol=1e-15)
    np.testing.assert_allclose(panel["dividend_yield"][after], 0.02 / rel[after], rtol=1e-15)
    np.testing.assert_allclose(panel["sales_to_price"][after], 0.25 / rel[after], rtol=1e-15)
    assert panel["market_cap"]["2020-01-10"] == 1e9 and panel["price"]["2020-01-10"] == 100.0
    # Before the first snapshot there is no cap: missing, never invented from the adjusted close.
    for f in panel.values():
        assert f[~after].isna().all()
    # Without adjusted closes the snapshot's values are carried unchanged (as before).
    assert (fundamentals_panel(snaps, "market_cap", dates[after], ["AAA"])["AAA"] == 1e9).all()


def test_a_weekend_snapshot_rolls_from_the_last_close_and_price_date_wins(split_stock):
    snaps, adj = split_stock
    weekend = snaps.assign(available_date=pd.to_datetime(["2020-01-12"]))  # a Sunday
    cap = fundamentals_panel(weekend, "market_cap", adj.index, ["AAA"], adj_close=adj)["AAA"]
    assert np.isnan(cap["2020-01-10"])  # not available before its date
    assert cap["2020-01-13"] == pytest.approx(1e9 * adj.loc["2020-01-13", "AAA"] / adj.loc["2020-01-10", "AAA"])
    # A report published later whose price was observed on 2020-01-07.
    late = snaps.assign(available_date=pd.to_datetime(["2020-01-20"]), price_date=pd.to_datetime(["2020-01-07"]))
    cap = fundamentals_panel(late, "market_cap", adj.index, ["AAA"], adj_close=adj)["AAA"]
    assert np.isnan(cap["2020-01-17"])
    assert cap["2020-01-20"] == pytest.approx(1e9 * adj.loc["2020-01-20", "AAA"] / adj.loc["2020-01-07", "AAA"])
    # No adjusted close within 10 days before the price date: the snapshot cannot be rolled.
    stale = snaps.assign(price_date=pd.to_datetime(["2019-12-01"]))
    assert fundamentals_panel(stale, "market_cap", adj.index, ["AAA"], adj_close=adj)["AAA"].isna().all()


def test_the_store_path_rolls_the_same_way(store, tmp_path, split_stock):
    snaps, adj = split_stock
    path = tmp_path / "f.parquet"
    snaps.to_parquet(path)
    ingest_fundamentals(store, path)
    sid = SecurityMaster.from_store(store).resolve("AAA", "2020-01-10")
    by_store = fundamentals_panel(store, "book_to_price", adj.index, [sid], adj_close=adj.set_axis([sid], axis=1))
    by_frame = fundamentals_panel(snaps, "book_to_price", adj.index, ["AAA"], adj_close=adj)
    np.testing.assert_array_equal(by_store.to_numpy(), by_frame.to_numpy())


# ---------------------------------------------------------------------- source errors (issue 9 §2)


def test_implausible_ratios_and_per_share_values_are_set_to_nan_with_their_reason(tmp_path):
    path = write(tmp_path, "f.csv", """
date,ticker,price,market_cap,dividend_yield,pe,price_to_book,price_to_sales,book_value_per_share,eps
2020-01-31,OK,50,1e10,0.03,18,3,2,16,2.7
2020-01-31,YLD,50,1e10,0.97,18,3,2,16,2.7
2020-01-31,PE,50,1e10,0.03,0.01,3,2,16,2.7
2020-01-31,PEHI,50,1e10,0.03,4000,3,2,16,2.7
2020-01-31,PB,50,1e10,0.03,18,16000,2,16,2.7
2020-01-31,NEGPB,50,1e10,0.03,18,-40,2,16,2.7
2020-01-31,PS,50,1e10,0.03,18,3,5000,16,2.7
2020-01-31,BV,108,1e10,0.03,18,3,2,114213,2.7
2020-01-31,EPS,108,1e10,0.03,18,3,2,16,8977
2020-01-31,LOSS,8,1e10,0.03,,3,2,16,-13.9
""")
    clean, report = check_fundamentals_file(path)
    assert_accounted(report)
    hit = report.issues[report.issues["reason"] == "implausible_value"]
    assert sorted(zip(hit["ticker"], hit["detail"].str.split(" = ").str[0])) == [
        ("BV", "book_value_per_share"), ("EPS", "eps"), ("PB", "price_to_book"), ("PE", "pe"), ("PEHI", "pe"),
        ("PS", "price_to_sales"), ("YLD", "dividend_yield")]
    assert (hit["action"] == "repaired").all()
    rows = clean.set_index("ticker")
    assert np.isnan(rows.loc["YLD", "dividend_yield"]) and rows.loc["YLD", "pe"] == 18  # only the bad cell
    assert rows.loc["NEGPB", "price_to_book"] == -40  # negative book equity is not an error
    assert rows.loc["LOSS", "eps"] == -13.9  # a loss above the price is a write-down year
    assert rows.loc["OK"].notna().all()


def test_a_cap_in_the_wrong_unit_is_scaled_and_an_irreconcilable_one_dropped(tmp_path):
    # BBB's caps in 2013–14 are mostly 1,000× too small (EBITDA 30e9 against a 1.8e8 cap); CCC's March
    # cap is a spike 1,200× off both neighbours; DDD has a 100× jump that persists (flagged only).
    path = write(tmp_path, "f.csv", """
date,ticker,price,market_cap,ebitda
2013-05-05,BBB,108,1.79e8,3.0e10
2013-11-03,BBB,115,1.50e11,3.0e10
2014-05-05,BBB,120,2.10e8,3.2e10
2018-02-08,BBB,191,2.61e11,3.5e10
2020-01-31,CCC,50,1.0e10,
2020-03-31,CCC,52,1.2e13,
2020-06-30,CCC,55,1.1e10,
2020-01-31,DDD,50,1.0e10,
2020-03-31,DDD,52,1.5e12,
2020-06-30,DDD,55,1.6e12,
2020-01-31,EEE,50,1.0e10,5e9
2020-03-31,EEE,52,4.0e7,5e9
""")
    clean, report = check_fundamentals_file(path)
    caps = clean.set_index(["ticker", "available_date"])["market_cap"]
    assert caps[("BBB", pd.Timestamp("2013-05-05"))] == pytest.approx(1.79e11)
    assert caps[("BBB", pd.Timestamp("2014-05-05"))] == pytest.approx(2.10e11)
    assert caps[("BBB", pd.Timestamp("2018-02-08"))] == 2.61e11  # the plausible one is the reference
    assert caps[("BBB", pd.Timestamp("2013-11-03"))] == 1.50e11  # a right cap between two wrong ones stays
    assert caps[("CCC", pd.Timestamp("2020-03-31"))] == pytest.approx(1.2e10)
    assert caps[("DDD", pd.Timestamp("2020-03-31"))] == 1.5e12  # persisted: kept, flagged
    assert np.isnan(caps[("EEE", pd.Timestamp("2020-03-31"))])  # 250× off: no power of 1000 fits
    got = report.issues.groupby(["ticker", "reason"]).size().to_dict()
    assert got[("BBB", "market_cap_units")] == 2 and got[("CCC", "market_cap_units")] == 1
    assert got[("EEE", "market_cap_inconsistent")] == 1 and got[("DDD", "field_jump")] == 1
    units = report.issues[report.issues["reason"] == "market_cap_units"]["detail"].iloc[0]
    assert "1.79e+08" in units and "power of 1000" in units


def test_known_funds_in_a_fundamentals_file_are_typed_etf(store, tmp_path):
    ingest_fundamentals(store, write(tmp_path, "f.csv", "date,ticker,market_cap\n2020-01-31,IVV,4e11\n"
                                                        "2020-01-31,AAPL,1.3e12\n2020-01-31,TLT,3e10\n"))
    types = SecurityMaster.from_store(store).records.set_index("ticker")["asset_type"]
    assert types.to_dict() == {"AAPL": "stock", "IVV": "etf", "TLT": "etf"}


def test_availability_dates_outside_1900_to_tomorrow_are_rejected_per_row_with_the_date(store, tmp_path):
    path = write(tmp_path, "f.csv", """
date,ticker,market_cap,pe
2020-01-31,AAA,1e9,15
1850-06-30,BBB,1e9,15
2999-01-01,CCC,1e9,15
""")
    report = ingest_fundamentals(store, path)
    assert_accounted(report)
    assert reasons(report, "rejected") == {"date_out_of_range": 2}
    rows = report.issues.sort_values("ticker")
    assert rows["ticker"].tolist() == ["BBB", "CCC"] and [int(r) for r in rows["source_row"]] == [2, 3]
    assert "1850-06-30" in rows["detail"].iloc[0] and "2999-01-01" in rows["detail"].iloc[1]
    assert store.read_table("fundamentals")["ticker"].tolist() == ["AAA"]
