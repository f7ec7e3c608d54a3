"""ETF holdings ingest: units, every rejection with its reason, repeated labels, idempotence, real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.etf_holdings import (
    RENAMES,
    apply_renames,
    etf_holdings_as_of,
    ingest_etf_holdings,
    normalise_tickers,
    read_etf_holdings_file,
)
from riskstrata.data.report import IngestReport
from riskstrata.data.store import Store
from riskstrata.errors import DataValidationError
from tests.files import write

REAL_HOLDINGS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "reference" / "etf_holdings.parquet"


def issue(report: IngestReport, reason: str) -> pd.DataFrame:
    return report.issues[report.issues["reason"] == reason]


def assert_accounted(report: IngestReport, table: pd.DataFrame) -> None:
    """Nothing dropped silently: every row read is accepted or rejected (and listed), and the
    table is the accepted rows less those merged into a twin."""
    assert report.rows_read == report.rows_accepted + report.rows_rejected
    rejected = report.issues[report.issues["action"] == "rejected"]
    assert len(rejected[["file", "source_row"]].drop_duplicates()) == report.rows_rejected
    merged = report.issues[report.issues["reason"].isin(["duplicate_identical", "duplicate_summed"])]
    assert len(table) + len(merged) == report.rows_accepted


# ---------------------------------------------------------------------- units


def test_weight_pct_is_percent_and_is_stored_as_a_decimal(tmp_path: Path, store: Store) -> None:
    path = write(
        tmp_path, "h.csv", "date,etf,holding_ticker,weight_pct\n2022-08-25,SPY,AAPL,7.38\n2022-08-25,SPY,MSFT,5.95"
    )
    df = read_etf_holdings_file(path)
    assert df["weight"].tolist() == pytest.approx([0.0738, 0.0595], abs=1e-15)
    assert df.attrs["weight_unit"] == "percent"
    assert "divided by 100" in df.attrs["notes"][0]

    report = ingest_etf_holdings(store, path)
    table = store.read_table("etf_holdings")
    assert list(table.columns) == ["date", "etf", "holding", "weight", "source"]
    assert table.set_index("holding")["weight"].to_dict() == pytest.approx({"AAPL": 0.0738, "MSFT": 0.0595})
    assert (table["source"] == "h.csv").all()
    assert "divided by 100" in report.summary()


def test_a_weight_column_summing_to_about_100_per_snapshot_is_read_as_percent(tmp_path: Path) -> None:
    path = write(tmp_path, "h.csv", "date,fund,symbol,weight\n2022-01-03,XLK,AAPL,60\n2022-01-03,XLK,MSFT,40")
    df = read_etf_holdings_file(path)
    assert df.attrs["weight_unit"] == "percent"
    assert df["weight"].tolist() == pytest.approx([0.6, 0.4])
    assert any("read as percent" in n for n in df.attrs["notes"])


def test_a_weight_column_of_decimals_stays_decimal(tmp_path: Path) -> None:
    path = write(tmp_path, "h.csv", "date,etf,ticker,weight\n2022-01-03,XLK,AAPL,0.6\n2022-01-03,XLK,MSFT,0.4")
    df = read_etf_holdings_file(path)
    assert df.attrs["weight_unit"] == "decimal"
    assert df["weight"].tolist() == [0.6, 0.4]
    assert read_etf_holdings_file(path, weight_unit="percent")["weight"].tolist() == pytest.approx([0.006, 0.004])


def test_a_file_without_a_weight_column_is_refused_with_the_columns_it_has(tmp_path: Path) -> None:
    path = write(tmp_path, "h.csv", "date,etf,ticker,shares\n2022-01-03,XLK,AAPL,10")
    with pytest.raises(DataValidationError, match=r"weight .*columns: \['date', 'etf', 'ticker', 'shares'\]"):
        read_etf_holdings_file(path)


# ---------------------------------------------------------------------- labels


def test_class_shares_use_a_dash_and_foreign_symbols_and_text_keep_their_form() -> None:
    got = normalise_tickers(pd.Series(["brk.b", "BF/B", " aapl ", "HO.PA", "4704.T", "n/a", "US Dollar", ""]))
    assert got.tolist()[:7] == ["BRK-B", "BF-B", "AAPL", "HO.PA", "4704.T", "N/A", "US DOLLAR"]
    assert pd.isna(got.iloc[7])


def test_renames_map_2021_symbols_to_todays_and_say_which() -> None:
    labels, used = apply_renames(pd.Series(["FB", "AAPL", "ANTM"]))
    assert labels.tolist() == ["META", "AAPL", "ELV"]
    assert used == {"ANTM": "ELV", "FB": "META"}
    assert RENAMES["BLL"] == "BALL"


# ---------------------------------------------------------------------- validation


BAD = """
date,etf,holding,weight_pct
2022-08-25,SPY,AAPL,7.38
not-a-date,SPY,MSFT,5.95
2022-08-25,,MSFT,5.95
2022-08-25,SPY,,1.0
2022-08-25,SPY,AMZN,abc
2022-08-25,SPY,TSLA,inf
2022-08-25,SPHB,CASH,-0.5
2022-08-25,GLD,GOLD,150
"""


def test_every_rejected_row_is_listed_with_its_reason(tmp_path: Path, store: Store) -> None:
    path = write(tmp_path, "bad.csv", BAD)
    report = ingest_etf_holdings(store, path)
    table = store.read_table("etf_holdings")
    assert (report.rows_read, report.rows_accepted, report.rows_rejected) == (8, 3, 5)
    rejected = report.issues[report.issues["action"] == "rejected"].set_index("source_row")["reason"].to_dict()
    assert rejected == {
        "2": "bad_date",
        "3": "missing_etf",
        "4": "missing_ticker",
        "5": "non_finite",
        "6": "non_finite",
    }
    assert "SPY 2022-08-25" in issue(report, "missing_ticker")["detail"].iloc[0]
    assert sorted(table["holding"]) == ["AAPL", "CASH", "GOLD"]
    assert_accounted(report, table)


def test_negative_and_above_100pct_weights_are_kept_and_flagged(tmp_path: Path, store: Store) -> None:
    report = ingest_etf_holdings(store, write(tmp_path, "bad.csv", BAD))
    table = store.read_table("etf_holdings").set_index("holding")["weight"]
    assert table["CASH"] == pytest.approx(-0.005) and table["GOLD"] == pytest.approx(1.5)
    assert issue(report, "negative_weight")["ticker"].tolist() == ["CASH"]
    assert issue(report, "implausible_weight")["ticker"].tolist() == ["GOLD"]
    assert report.rows_flagged == 2


def test_repeated_labels_identical_are_merged_and_different_are_summed(tmp_path: Path, store: Store) -> None:
    path = write(
        tmp_path, "dup.csv",
        "date,etf,holding,weight_pct\n"
        "2022-08-25,SHY,TREASURY NOTE,1.5\n2022-08-25,SHY,treasury note,2.0\n2022-08-25,SHY,TREASURY NOTE,0.5\n"
        "2022-08-25,SPY,AAPL,7.38\n2022-08-25,SPY,AAPL,7.38\n",
    )  # fmt: skip
    report = ingest_etf_holdings(store, path)
    table = store.read_table("etf_holdings").set_index(["etf", "holding"])["weight"]
    # The source sums repeated labels (several bond lines under one description): so does ingest.
    assert table[("SHY", "TREASURY NOTE")] == pytest.approx(0.04)
    assert table[("SPY", "AAPL")] == pytest.approx(0.0738)
    assert issue(report, "duplicate_summed")["source_row"].tolist() == ["2", "3"]
    assert "summed into row 1" in issue(report, "duplicate_summed")["detail"].iloc[0]
    assert issue(report, "duplicate_identical")["source_row"].tolist() == ["5"]
    assert report.rows_rejected == 0 and report.rows_repaired == 3
    assert_accounted(report, table.reset_index())


# ---------------------------------------------------------------------- upsert


def test_ingesting_the_same_file_twice_leaves_the_table_unchanged(tmp_path: Path, store: Store) -> None:
    path = write(tmp_path, "bad.csv", BAD)
    first = ingest_etf_holdings(store, path)
    table1 = store.read_table("etf_holdings")
    second = ingest_etf_holdings(store, path)
    table2 = store.read_table("etf_holdings")
    pd.testing.assert_frame_equal(table1, table2)
    assert first.summary() == second.summary()
    runs = store.read_table("ingest_issues")
    assert runs["run_id"].nunique() == 2 and set(runs["kind"]) == {"etf_holdings"}


def test_a_new_snapshot_replaces_the_stored_one_whole_and_keeps_the_others(tmp_path: Path, store: Store) -> None:
    ingest_etf_holdings(store, write(tmp_path, "a.csv", """
date,etf,holding,weight_pct
2022-08-24,XLK,AAPL,22
2022-08-24,XLK,MSFT,21
2022-08-25,XLK,AAPL,23
2022-08-25,XLK,TWTR,1
"""))  # fmt: skip
    ingest_etf_holdings(store, write(tmp_path, "b.csv", "date,etf,holding,weight_pct\n2022-08-25,XLK,AAPL,24"))
    table = store.read_table("etf_holdings")
    day2 = table[table["date"] == "2022-08-25"]
    assert day2["holding"].tolist() == ["AAPL"]  # TWTR left the fund: it does not linger
    assert day2["weight"].iloc[0] == pytest.approx(0.24) and day2["source"].iloc[0] == "b.csv"
    assert len(table[table["date"] == "2022-08-24"]) == 2


# ---------------------------------------------------------------------- reading back


def test_as_of_takes_each_etfs_latest_snapshot_on_or_before_the_date(tmp_path: Path, store: Store) -> None:
    ingest_etf_holdings(store, write(tmp_path, "a.csv", """
date,etf,holding,weight_pct
2022-01-03,XLK,AAPL,20
2022-02-01,XLK,AAPL,21
2022-03-01,XLK,AAPL,22
2022-03-01,SPY,AAPL,7
"""))  # fmt: skip
    got = etf_holdings_as_of(store, ["xlk", "SPY", "QQQ"], "2022-02-15")
    assert got[["etf", "date"]].astype("str").values.tolist() == [["XLK", "2022-02-01"]]
    assert got["weight"].iloc[0] == pytest.approx(0.21)
    assert got.attrs["missing"] == ["QQQ", "SPY"]  # SPY only later, QQQ never
    frame = store.read_table("etf_holdings")
    pd.testing.assert_frame_equal(
        etf_holdings_as_of(frame, ["XLK"], "2022-02-15"), etf_holdings_as_of(store, ["XLK"], "2022-02-15")
    )


def test_as_of_on_a_store_without_holdings_reports_every_etf_missing(store: Store) -> None:
    got = etf_holdings_as_of(store, ["SPY"], "2022-01-01")
    assert got.empty and got.attrs["missing"] == ["SPY"]


# ---------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_the_real_holdings_file_ingests_and_spy_holds_4_to_8pct_apple(tmp_path: Path) -> None:
    if not REAL_HOLDINGS.is_file():
        pytest.skip(f"real ETF holdings not present at {REAL_HOLDINGS}")
    store = Store(tmp_path / "store")
    report = ingest_etf_holdings(store, REAL_HOLDINGS)
    table = store.read_table("etf_holdings")
    assert report.rows_read == 1_362_593 and report.rows_rejected == 0
    assert set(report.issues["reason"]) <= {"negative_weight", "duplicate_identical", "duplicate_summed"}
    assert_accounted(report, table)
    assert table["etf"].nunique() == 88
    spy = etf_holdings_as_of(store, ["SPY"], "2030-01-01")
    assert spy.attrs["snapshot_dates"]["SPY"] == pd.Timestamp("2022-08-25")
    aapl = float(spy.loc[spy["holding"] == "AAPL", "weight"].iloc[0])
    assert 0.04 < aapl < 0.08, f"AAPL is {aapl:.2%} of SPY"
    assert np.isclose(spy["weight"].sum(), 0.8346, atol=1e-6)  # the source's SUM column: top-N only
