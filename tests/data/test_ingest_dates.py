"""Ingest never stores a row on the wrong day, and says why it refused what it refused.

One date format per file (ISO as is; a day/month order only when the file proves it), dates
outside 1900 … tomorrow rejected per row, returns that disagree with the prices, bad volumes,
unusable tickers, and a run that accepts nothing failing loudly (issue 12, section 1).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.etf_holdings import ingest_etf_holdings
from riskstrata.data.ingest import ingest_classifications, ingest_prices
from riskstrata.data.readers import date_format, latest_plausible_date, parse_date_column, read_price_file
from riskstrata.data.store import Store
from riskstrata.data.validation import validate_prices
from riskstrata.errors import DataValidationError
from tests.files import write


def stored_days(store: Store, ticker: str = "AAA") -> list[str]:
    prices = store.read_table("prices")
    return [str(d.date()) for d in prices.loc[prices["ticker"] == ticker, "date"]]


def reasons(report) -> dict[str, int]:
    return report.issues.groupby("reason").size().to_dict()


# ---------------------------------------------------------------------- one format per file


def test_a_day_first_file_proven_by_a_day_above_12_is_stored_on_the_right_days(store: Store, tmp_path: Path) -> None:
    text = "date,ticker,adj_close\n02/01/2024,AAA,10\n03/01/2024,AAA,11\n04/01/2024,AAA,12\n15/01/2024,AAA,13"
    report = ingest_prices(store, write(tmp_path, "dayfirst.csv", text))
    assert report.rows_accepted == 4
    assert stored_days(store) == ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-15"]


def test_an_unproven_day_month_order_is_an_error_asking_for_the_format(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "ambiguous.csv", "date,ticker,adj_close\n02/01/2024,AAA,10\n03/01/2024,AAA,11")
    with pytest.raises(DataValidationError, match="--date-format"):
        ingest_prices(store, path)
    assert not store.has_table("prices")  # nothing written on a guess
    ingest_prices(store, path, date_format="%d/%m/%Y")
    assert stored_days(store) == ["2024-01-02", "2024-01-03"]
    ingest_prices(Store(tmp_path / "us"), path, date_format="%m/%d/%Y")
    assert stored_days(Store(tmp_path / "us")) == ["2024-02-01", "2024-03-01"]


def test_a_file_mixing_day_first_and_month_first_is_refused(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "mixed.csv", "date,ticker,adj_close\n15/01/2024,AAA,10\n01/16/2024,AAA,11\n02/01/2024,AAA,12")
    with pytest.raises(DataValidationError, match="mixes date orders"):
        ingest_prices(store, path)


def test_rows_in_another_format_than_the_files_are_rejected_not_reinterpreted(tmp_path: Path) -> None:
    rows = [f"2024-01-{d:02d},AAA,{10 + d}" for d in range(2, 12)] + ["01/12/2024,AAA,30", "Jan 13 2024,AAA,31"]
    clean, report = validate_prices(read_price_file(write(tmp_path, "m.csv", "date,ticker,adj_close\n" + "\n".join(rows))))
    assert report.rows_accepted == 10 and reasons(report)["bad_date"] == 2
    bad = report.issues[report.issues["reason"] == "bad_date"]
    assert bad["source_row"].tolist() == ["11", "12"] and bad["detail"].str.contains("one format per file").all()
    assert clean["date"].max() == pd.Timestamp("2024-01-11")


def test_a_wide_file_follows_the_same_rule(tmp_path: Path) -> None:
    path = write(tmp_path, "wide.csv", "date,AAA,BBB\n02/01/2024,1,2\n03/01/2024,1.1,2.1")
    with pytest.raises(DataValidationError, match="--date-format"):
        read_price_file(path)
    assert read_price_file(path, date_format="%d/%m/%Y")["date"].dt.day.tolist() == [2, 2, 3, 3]


def test_iso_and_yyyymmdd_need_no_proof() -> None:
    parsed = parse_date_column(pd.Series(["2024-01-02", "2024-01-03T00:00:00Z", ""]))
    assert parsed.dates.dt.day.tolist()[:2] == [2, 3] and parsed.reason.tolist() == [None, None, None]
    assert parse_date_column(pd.Series([20240102, 20240103])).dates.dt.day.tolist() == [2, 3]


# ---------------------------------------------------------------------- plausible range


def test_dates_before_1900_or_after_tomorrow_are_rejected_per_row_with_their_row(store: Store, tmp_path: Path) -> None:
    tomorrow = latest_plausible_date()
    text = (f"date,ticker,adj_close\n2024-01-02,AAA,10\n2999-01-01,AAA,11\n1850-03-01,AAA,12\n"
            f"{tomorrow + pd.Timedelta(days=1):%Y-%m-%d},AAA,13\n{tomorrow:%Y-%m-%d},BBB,14")
    report = ingest_prices(store, write(tmp_path, "far.csv", text))  # used to abort with OutOfBoundsDatetime
    far = report.issues[report.issues["reason"] == "date_out_of_range"]
    assert far["source_row"].tolist() == ["2", "3", "4"] and (far["action"] == "rejected").all()
    assert far["detail"].iloc[0].startswith("date 2999-01-01 is outside")
    assert report.rows_accepted == 2 and stored_days(store) == ["2024-01-02"]


# ---------------------------------------------------------------------- values and tickers


def test_a_given_return_that_disagrees_with_the_prices_is_flagged(tmp_path: Path) -> None:
    text = ("date,ticker,adj_close,ret\n2024-01-02,AAA,100,\n2024-01-03,AAA,101,0.01\n"
            "2024-01-04,AAA,110,0.01\n2024-01-05,AAA,111,0.00909")
    clean, report = validate_prices(read_price_file(write(tmp_path, "both.csv", text)))
    off = report.issues[report.issues["reason"] == "ret_inconsistent"]
    assert off["source_row"].tolist() == ["3"] and (off["action"] == "flagged").all()
    assert "+8.91%" in off["detail"].iloc[0]
    assert clean["ret"].iloc[2] == pytest.approx(0.01)  # the given return is kept


def test_non_numeric_or_negative_volume_is_reported_and_stored_as_missing(store: Store, tmp_path: Path) -> None:
    text = "date,ticker,adj_close,volume\n2024-01-02,AAA,10,100\n2024-01-03,AAA,11,abc\n2024-01-04,AAA,12,-5\n2024-01-05,AAA,13,"
    report = ingest_prices(store, write(tmp_path, "vol.csv", text))
    bad = report.issues[report.issues["reason"] == "bad_volume"]
    assert bad["source_row"].tolist() == ["2", "3"] and (bad["action"] == "repaired").all()
    assert report.rows_accepted == 4
    volume = store.read_table("prices")["volume"].tolist()
    assert volume[0] == 100 and np.isnan(volume[1:]).all()


def test_tickers_with_control_characters_spaces_or_over_32_characters_are_rejected(store: Store, tmp_path: Path) -> None:
    long_name = "X" * 33
    text = f"date,ticker,adj_close\n2024-01-02,AAA,10\n2024-01-02,A\x01B,10\n2024-01-02,BRK B,10\n2024-01-02,{long_name},10"
    report = ingest_prices(store, write(tmp_path, "tickers.csv", text))
    bad = report.issues[report.issues["reason"] == "bad_ticker"]
    assert bad["source_row"].tolist() == ["2", "3", "4"]
    assert "control character" in bad["detail"].iloc[0] and "\x01" not in bad["detail"].iloc[0]
    assert store.read_table("prices")["ticker"].tolist() == ["AAA"]


def test_a_file_without_ticker_column_and_with_text_columns_is_not_a_wide_file(tmp_path: Path) -> None:
    path = write(tmp_path, "named.csv", "date,name,px\n2024-01-02,Apple,10\n2024-01-03,Apple,11")
    with pytest.raises(DataValidationError, match="no ticker column.*'name' holds text"):
        read_price_file(path)


# ---------------------------------------------------------------------- other ingests


def test_classification_dates_follow_the_same_rule(store: Store, tmp_path: Path) -> None:
    text = "snapshot_date,ticker,gics_sector\n02/01/2020,AAA,Energy\n03/01/2020,AAA,Energy"
    path = write(tmp_path, "cls.csv", text)
    with pytest.raises(DataValidationError, match="--date-format"):
        ingest_classifications(store, path)
    ingest_classifications(store, path, date_format="%d/%m/%Y")
    assert store.read_table("classifications")["valid_from"].tolist() == [pd.Timestamp("2020-01-02")]
    text = "valid_from,ticker,gics_sector\n2020-01-02,BBB,Energy\n2999-01-01,CCC,Energy\n2020-01-02,C C,Energy"
    report = ingest_classifications(store, write(tmp_path, "cls2.csv", text))
    assert reasons(report) == {"date_out_of_range": 1, "bad_ticker": 1}


def test_etf_holdings_dates_follow_the_same_rule(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "h.csv", "date,etf,holding,weight\n02/01/2024,XLK,AAPL,0.6\n02/01/2024,XLK,MSFT,0.4")
    with pytest.raises(DataValidationError, match="--date-format"):
        ingest_etf_holdings(store, path)
    with date_format("%d/%m/%Y"):
        ingest_etf_holdings(store, path)
    assert set(store.read_table("etf_holdings")["date"]) == {pd.Timestamp("2024-01-02")}


# ---------------------------------------------------------------------- the command line


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("RISKSTRATA_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "riskstrata.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_cli_date_format_and_a_run_that_accepts_nothing_fails(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    ambiguous = write(tmp_path, "a.csv", "date,ticker,adj_close\n02/01/2024,AAA,10\n03/01/2024,AAA,11")
    proc = _cli("ingest", "prices", str(ambiguous), "--store", store)
    assert proc.returncode != 0 and "--date-format" in proc.stderr and "Traceback" not in proc.stderr
    from typer.testing import CliRunner

    from riskstrata.cli import app

    done = CliRunner().invoke(app, ["ingest", "prices", str(ambiguous), "--date-format", "%d/%m/%Y", "--store", store])
    assert done.exit_code == 0, done.output
    assert stored_days(Store(store)) == ["2024-01-02", "2024-01-03"]
    nothing = write(tmp_path, "n.csv", "date,ticker,adj_close\n2999-01-01,AAA,10\n2024-01-02,AAA,-1")
    proc = _cli("ingest", "prices", str(nothing), "--store", store)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "no row" in proc.stderr and "date_out_of_range 1" in proc.stderr and "non_positive_price 1" in proc.stderr


def test_etf_holdings_dates_outside_1900_to_tomorrow_are_rejected_per_row(store: Store, tmp_path: Path) -> None:
    text = "date,etf,holding,weight\n2024-01-02,XLK,AAPL,0.6\n2024-01-02,XLK,MSFT,0.4\n2999-01-01,XLK,AAPL,1.0"
    report = ingest_etf_holdings(store, write(tmp_path, "h2.csv", text))
    far = report.issues[report.issues["reason"] == "date_out_of_range"]
    assert far["source_row"].tolist() == ["3"] and report.rows_accepted == 2
