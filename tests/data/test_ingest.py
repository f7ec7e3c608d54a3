"""Price and classification ingest: file shapes, every validation rule, idempotence, recycled tickers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from riskstrata.data.ingest import (
    ingest_classifications,
    ingest_prices,
    load_returns,
    read_classification_file,
)
from riskstrata.data.master import SecurityMaster
from riskstrata.data.readers import read_price_file
from riskstrata.data.report import IngestReport
from riskstrata.data.store import Store
from riskstrata.data.validation import validate_prices
from riskstrata.errors import DataValidationError
from tests.files import write

DAYS = ["2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07", "2020-01-08", "2020-01-09"]


def long_csv(rows: list[tuple[str, str, object]], header: str = "date,ticker,adj_close") -> str:
    return header + "\n" + "\n".join(f"{d},{t},{v}" for d, t, v in rows)


def assert_accounted(report: IngestReport, clean: pd.DataFrame | None = None) -> None:
    """Nothing dropped silently: every row read is accepted or rejected, and every rejected or
    merged row is in the issues."""
    assert report.rows_read == report.rows_accepted + report.rows_rejected
    rejected = report.issues[report.issues["action"] == "rejected"]
    assert len(rejected[["file", "source_row"]].drop_duplicates()) == report.rows_rejected
    if clean is not None:
        merged = report.issues[report.issues["reason"] == "duplicate_identical"]
        assert len(clean) + len(merged) == report.rows_accepted


def issue(report: IngestReport, reason: str) -> pd.DataFrame:
    return report.issues[report.issues["reason"] == reason]


# ---------------------------------------------------------------------- file shapes


def test_a_long_csv_with_yahoo_headers_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "px.csv", "Date,Ticker,Adj Close,Volume\n2020-01-02,aapl,75.1,100\n2020-01-03,AAPL,74.4,200")
    df = read_price_file(path)
    assert df["ticker"].tolist() == ["AAPL", "AAPL"]
    assert df["adj_close"].tolist() == [75.1, 74.4]
    assert df["volume"].tolist() == [100.0, 200.0]
    assert df["source_row"].tolist() == [1, 2]
    assert df["date"].dtype == "datetime64[ns]"


def test_a_long_csv_with_symbol_and_close_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "px.csv", "symbol,DATE,close\nMSFT,2020-01-02,160.6")
    df = read_price_file(path)
    assert (df["ticker"].iloc[0], df["adj_close"].iloc[0]) == ("MSFT", 160.6)


def test_a_wide_csv_is_melted_with_row_and_column_as_source(tmp_path: Path) -> None:
    path = write(tmp_path, "wide.csv", "Date,SPY,XLK\n2020-01-02,324.9,\n2020-01-03,322.4,92.1")
    df = read_price_file(path)
    assert len(df) == 3  # the empty cell is absence, not a row
    assert set(df["source_row"]) == {"1:SPY", "2:SPY", "2:XLK"}
    clean, report = validate_prices(df, source=str(path))
    spy = clean[clean["ticker"] == "SPY"]
    assert spy["ret"].iloc[1] == pytest.approx(322.4 / 324.9 - 1)
    assert_accounted(report, clean)


def test_a_parquet_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "px.parquet"
    pd.DataFrame({"date": pd.to_datetime(DAYS[:2]), "ticker": ["A", "A"], "adj_close": [10.0, 11.0]}).to_parquet(path)
    clean, _ = validate_prices(read_price_file(path))
    assert clean["ret"].iloc[1] == pytest.approx(0.1)


def test_a_return_file_keeps_the_given_returns(tmp_path: Path) -> None:
    path = write(tmp_path, "ret.csv", long_csv([(DAYS[0], "A", 0.01), (DAYS[1], "A", -0.02)], "date,ticker,return"))
    clean, report = validate_prices(read_price_file(path))
    assert clean["ret"].tolist() == [0.01, -0.02]
    assert clean["adj_close"].isna().all()
    assert report.rows_rejected == 0


def test_a_wide_return_file_needs_value_kind(tmp_path: Path) -> None:
    path = write(tmp_path, "wide_ret.csv", "date,A\n2020-01-02,0.01\n2020-01-03,-0.5")
    clean, _ = validate_prices(read_price_file(path, value_kind="return"))
    assert clean["ret"].tolist() == [0.01, -0.5]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "is empty"),
        ("header_only.csv", b"date,ticker,adj_close\n", "no data rows"),
        ("no_date.csv", b"ticker,adj_close\nA,1.0\n", "no date column"),
        ("no_value.csv", b"date,ticker,comment\n2020-01-02,A,hello\n", "no value column"),
        ("garbage.csv", bytes(range(256)) * 4, "cannot read|no date column"),
        ("garbage.parquet", b"PAR1 this is not parquet", "cannot read"),
        ("wide_no_dates.csv", b"name,A\nfoo,1\nbar,2\n", "no date column"),
    ],
)
def test_malformed_files_raise_data_validation_error(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataValidationError, match=message) as err:
        read_price_file(path)
    assert name in str(err.value)


# ---------------------------------------------------------------------- validation rules


def test_identical_duplicates_are_merged_and_reported(tmp_path: Path) -> None:
    rows = [(DAYS[0], "A", 10), (DAYS[1], "A", 11), (DAYS[1], "A", 11)]
    clean, report = validate_prices(read_price_file(write(tmp_path, "p.csv", long_csv(rows))))
    assert len(clean) == 2 and report.rows_repaired == 1 and report.rows_rejected == 0
    dup = issue(report, "duplicate_identical")
    assert dup["action"].tolist() == ["repaired"] and dup["source_row"].tolist() == ["3"]
    assert_accounted(report, clean)


def test_conflicting_duplicates_reject_every_copy(tmp_path: Path) -> None:
    rows = [(DAYS[0], "A", 10), (DAYS[1], "A", 11), (DAYS[1], "A", 12), (DAYS[1], "A", 11)]
    clean, report = validate_prices(read_price_file(write(tmp_path, "p.csv", long_csv(rows))))
    assert clean["date"].tolist() == [pd.Timestamp(DAYS[0])]
    assert sorted(issue(report, "duplicate_conflict")["source_row"]) == ["2", "3", "4"]
    assert report.rows_rejected == 3
    assert_accounted(report, clean)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "abc", ""])
def test_non_finite_values_are_rejected(tmp_path: Path, bad: str) -> None:
    rows = [(DAYS[0], "A", 10), (DAYS[1], "A", bad), (DAYS[2], "A", 12)]
    clean, report = validate_prices(read_price_file(write(tmp_path, "p.csv", long_csv(rows))))
    assert issue(report, "non_finite")["source_row"].tolist() == ["2"]
    assert_accounted(report, clean)


def test_non_positive_prices_are_rejected(tmp_path: Path) -> None:
    rows = [(DAYS[0], "A", 10), (DAYS[1], "A", 0), (DAYS[2], "A", -3)]
    clean, report = validate_prices(read_price_file(write(tmp_path, "p.csv", long_csv(rows))))
    assert issue(report, "non_positive_price")["source_row"].tolist() == ["2", "3"]
    assert len(clean) == 1
    assert_accounted(report, clean)


def test_an_implausible_move_is_kept_but_flagged(tmp_path: Path) -> None:
    rows = [(DAYS[0], "A", 10), (DAYS[1], "A", 30), (DAYS[2], "A", 10)]
    clean, report = validate_prices(read_price_file(write(tmp_path, "p.csv", long_csv(rows))))
    assert clean["ret"].tolist()[1:] == pytest.approx([2.0, -2 / 3])
    flagged = issue(report, "implausible_move")
    assert flagged["action"].unique().tolist() == ["flagged"]
    assert flagged["source_row"].tolist() == ["2"]  # -66.7% is within the default ±75%
    assert "+200.0%" in flagged["detail"].iloc[0]
    assert report.rows_flagged == 1 and report.rows_rejected == 0


def test_the_plausibility_bound_is_a_parameter(tmp_path: Path) -> None:
    rows = [(DAYS[0], "A", 10), (DAYS[1], "A", 12)]
    _, report = validate_prices(read_price_file(write(tmp_path, "p.csv", long_csv(rows))), max_abs_return=0.1)
    assert issue(report, "implausible_move")["source_row"].tolist() == ["2"]


def test_a_return_at_or_below_minus_one_is_rejected(tmp_path: Path) -> None:
    rows = [(DAYS[0], "A", 0.01), (DAYS[1], "A", -1.0), (DAYS[2], "A", -1.5)]
    path = write(tmp_path, "r.csv", long_csv(rows, "date,ticker,ret"))
    clean, report = validate_prices(read_price_file(path))
    assert issue(report, "return_below_minus_one")["source_row"].tolist() == ["2", "3"]
    assert_accounted(report, clean)


def test_a_gap_sets_the_spanning_return_to_nan_and_keeps_the_price(tmp_path: Path) -> None:
    # B trades every day, so the calendar has 2020-01-06 and 2020-01-07; A misses both.
    rows = [(d, "B", 50 + i) for i, d in enumerate(DAYS[:4])]
    rows += [(DAYS[0], "A", 10), (DAYS[1], "A", 11), (DAYS[3], "A", 13)]
    clean, report = validate_prices(read_price_file(write(tmp_path, "p.csv", long_csv(rows))))
    a = clean[clean["ticker"] == "A"].set_index("date")
    assert a.loc[DAYS[3], "adj_close"] == 13 and np.isnan(a.loc[DAYS[3], "ret"])
    gap = issue(report, "gap")
    assert gap["action"].tolist() == ["repaired"] and gap["ticker"].tolist() == ["A"]
    assert gap["detail"].iloc[0].startswith("1 trading day(s) missing since 2020-01-03")
    assert report.rows_repaired == 1
    assert_accounted(report, clean)


def test_spy_defines_the_trading_calendar(tmp_path: Path) -> None:
    # Nobody else trades on 2020-01-06, but SPY does: A's return on 2020-01-07 spans it.
    rows = [(d, "SPY", 300 + i) for i, d in enumerate(DAYS[:4])] + [(DAYS[1], "A", 10), (DAYS[3], "A", 11)]
    _, report = validate_prices(read_price_file(write(tmp_path, "p.csv", long_csv(rows))))
    assert issue(report, "gap")["ticker"].tolist() == ["A"]
    _, report = validate_prices(
        read_price_file(write(tmp_path, "p.csv", long_csv(rows))), trading_calendar=[DAYS[1], DAYS[3]]
    )
    assert issue(report, "gap").empty


def test_a_rejected_row_inside_a_series_is_a_gap_not_a_silent_two_day_return(tmp_path: Path) -> None:
    rows = [(DAYS[0], "A", 10), (DAYS[1], "A", "oops"), (DAYS[2], "A", 12)]
    clean, report = validate_prices(read_price_file(write(tmp_path, "p.csv", long_csv(rows))))
    assert np.isnan(clean["ret"].iloc[1])
    assert set(report.issues["reason"]) == {"non_finite", "gap"}


def test_nothing_is_dropped_silently_from_a_messy_file(tmp_path: Path) -> None:
    text = """
date,ticker,adj_close
2020-01-02,A,10
2020-01-03,A,11
2020-01-03,A,11
2020-01-06,A,abc
2020-01-07,A,40
2020-01-02,B,5
2020-01-03,B,5
2020-01-03,B,6
2020-01-06,B,-1
not-a-date,B,7
2020-01-07,,7
2020-01-08,B,inf
2020-01-08,C,1
"""
    clean, report = validate_prices(read_price_file(write(tmp_path, "messy.csv", text)))
    assert report.rows_read == 13
    assert_accounted(report, clean)
    seen = set(clean["source_row"].astype(str)) | set(report.issues["source_row"])
    assert seen == {str(i) for i in range(1, 14)}
    assert set(report.issues["reason"]) >= {
        "duplicate_identical", "duplicate_conflict", "non_finite", "non_positive_price",
        "bad_date", "missing_ticker", "gap",
    }  # fmt: skip
    text = report.summary()
    assert "read 13 rows" in text and "rejected" in text


# ---------------------------------------------------------------------- ingest into the store


def prices_file(tmp_path: Path, name: str = "px.csv", shift: float = 0.0) -> Path:
    rows = [(d, t, base + i + shift) for t, base in [("SPY", 300), ("AAA", 10)] for i, d in enumerate(DAYS)]
    return write(tmp_path, name, long_csv(rows))


def test_ingest_writes_prices_and_registers_securities(store: Store, tmp_path: Path) -> None:
    report = ingest_prices(store, [prices_file(tmp_path)], etf_tickers={"SPY"})
    assert report.rows_read == report.rows_accepted == 12
    prices = store.read_table("prices")
    assert list(prices.columns) == ["security_id", "ticker", "date", "adj_close", "ret", "volume"]
    master = SecurityMaster.from_store(store)
    assert master.record(master.resolve("SPY", DAYS[0]), DAYS[0])["asset_type"] == "etf"
    assert master.record(master.resolve("AAA", DAYS[0]), DAYS[0])["asset_type"] == "stock"
    aaa = prices[prices["ticker"] == "AAA"]
    assert aaa["ret"].iloc[1] == pytest.approx(11 / 10 - 1)


def test_ingesting_the_same_file_twice_changes_nothing(store: Store, tmp_path: Path) -> None:
    path = prices_file(tmp_path)
    ingest_prices(store, [path])
    first = store.read_table("prices")
    securities = store.read_table("securities")
    ingest_prices(store, [path])
    pd.testing.assert_frame_equal(store.read_table("prices"), first)
    pd.testing.assert_frame_equal(store.read_table("securities"), securities)


def test_prices_are_stored_by_date_then_security_with_their_row_sums(store: Store, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Ordered by date in blocks of a row group, each block by security then date (a date filter
    skips row groups; a security's rows sit together in each), backfills and appends included;
    the footer's per-date sums are the fingerprint's scan of the file, and unchanged by a re-ingest."""
    import riskstrata.data.ingest as ingest_module
    import riskstrata.data.store as store_module

    for module in (ingest_module, store_module):  # row groups of 4 rows: several blocks of 15 rows
        monkeypatch.setattr(module, "ROW_GROUP_ROWS", 4)
    late = [(d, t, base + i) for t, base in [("SPY", 300), ("AAA", 10), ("BBB", 20)] for i, d in enumerate(DAYS) if i >= 3]
    early = [(d, t, base + i) for t, base in [("BBB", 20), ("AAA", 10)] for i, d in enumerate(DAYS) if i < 3]
    ingest_prices(store, [write(tmp_path, "late.csv", long_csv(late))])
    ingest_prices(store, [write(tmp_path, "early.csv", long_csv(early))])  # a backfill
    parquet = pq.ParquetFile(store.table_path("prices"))
    groups = [parquet.read_row_group(i).to_pandas() for i in range(parquet.num_row_groups)]
    assert [len(g) for g in groups] == [4, 4, 4, 3]
    by_date = sorted(zip(pd.concat(groups)["date"], pd.concat(groups)["security_id"]))
    for i, group in enumerate(groups):
        keys = list(zip(group["security_id"], group["date"]))
        assert keys == sorted(keys)                                          # by security, then date
        assert sorted(zip(group["date"], group["security_id"])) == by_date[4 * i:4 * i + 4]  # the i-th block by date
    on_disk = pq.read_table(store.table_path("prices")).to_pandas()
    assert len(on_disk) == 15
    kept = store.table_row_sums("prices")
    listed = '"security_id", "date", "ret", "volume"'
    for end in DAYS:
        scan = store.query(f"SELECT count(*) AS n, coalesce(sum(hash({listed})::HUGEINT), 0) AS h FROM prices "
                           "WHERE date <= ?", [pd.Timestamp(end).to_pydatetime()], models=False).iloc[0]
        assert kept.span(None, end) == (int(scan["n"]), int(scan["h"])), end
    ingest_prices(store, [write(tmp_path, "early.csv", long_csv(early))])
    again = store.table_row_sums("prices")
    assert again.span(None, DAYS[-1]) == kept.span(None, DAYS[-1])
    np.testing.assert_array_equal(again.days, kept.days)


def test_new_data_overrides_stored_values(store: Store, tmp_path: Path) -> None:
    ingest_prices(store, [prices_file(tmp_path, "old.csv")])
    ingest_prices(store, [prices_file(tmp_path, "new.csv", shift=1.0)])
    aaa = store.read_table("prices", where="ticker = 'AAA'")
    assert aaa["adj_close"].tolist() == [11.0 + i for i in range(6)]
    assert len(store.read_table("prices")) == 12


def test_an_incremental_file_chains_its_first_return_to_the_stored_price(store: Store, tmp_path: Path) -> None:
    rows = [(d, "AAA", 10 + i) for i, d in enumerate(DAYS)]
    ingest_prices(store, [write(tmp_path, "a.csv", long_csv(rows[:3]))])
    ingest_prices(store, [write(tmp_path, "b.csv", long_csv(rows[3:]))])
    ret = store.read_table("prices")["ret"].tolist()
    assert np.isnan(ret[0])
    assert ret[1:] == pytest.approx([(11 + i) / (10 + i) - 1 for i in range(5)])


def test_a_later_file_of_the_same_ingest_wins(store: Store, tmp_path: Path) -> None:
    old = write(tmp_path, "old.csv", long_csv([(DAYS[0], "AAA", 10), (DAYS[1], "AAA", 11)]))
    new = write(tmp_path, "new.csv", long_csv([(DAYS[1], "AAA", 12)]))
    report = ingest_prices(store, [old, new])
    assert store.read_table("prices")["adj_close"].tolist() == [10.0, 12.0]
    superseded = issue(report, "superseded")
    assert superseded["file"].tolist() == [str(old)] and superseded["source_row"].tolist() == ["2"]
    assert_accounted(report)


def test_files_of_prices_and_of_returns_ingest_together(store: Store, tmp_path: Path) -> None:
    px = write(tmp_path, "px.csv", long_csv([(DAYS[0], "AAA", 10), (DAYS[1], "AAA", 11)]))
    rt = write(tmp_path, "rt.csv", long_csv([(DAYS[0], "BBB", 0.01), (DAYS[1], "BBB", 0.02)], "date,ticker,return"))
    report = ingest_prices(store, [px, rt])
    assert report.rows_rejected == 0
    bbb = store.read_table("prices", where="ticker = 'BBB'")
    assert bbb["ret"].tolist() == [0.01, 0.02]


def test_issues_are_appended_to_the_store_with_a_run_id(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", long_csv([(DAYS[0], "AAA", 10), (DAYS[1], "AAA", -1)]))
    first = ingest_prices(store, [path])
    second = ingest_prices(store, [path])
    issues = store.read_table("ingest_issues")
    assert set(issues["run_id"]) == {first.run_id, second.run_id}
    assert issues["reason"].tolist() == ["non_positive_price", "non_positive_price"]


def test_recycled_ticker_prices_stay_on_two_securities(store: Store, tmp_path: Path) -> None:
    SecurityMaster(
        pd.DataFrame(
            [
                {"figi": "FIGI_A", "ticker": "XYZ", "valid_from": "2000-01-03", "valid_to": "2010-12-31"},
                {"figi": "FIGI_B", "ticker": "XYZ", "valid_from": "2011-01-03"},
            ]
        )
    ).to_store(store)
    # A's last days and B's first days are consecutive trading days: no gap would split them.
    rows = [("2010-12-30", "XYZ", 10), ("2010-12-31", "XYZ", 11), ("2011-01-03", "XYZ", 50), ("2011-01-04", "XYZ", 51)]
    ingest_prices(store, [write(tmp_path, "xyz.csv", long_csv(rows))])
    prices = store.read_table("prices").set_index("date")
    assert prices.loc["2010-12-31", "security_id"] == "FIGI_A"
    assert prices.loc["2011-01-03", "security_id"] == "FIGI_B"
    assert np.isnan(prices.loc["2011-01-03", "ret"])  # never a return from A's price to B's
    assert prices.loc["2011-01-04", "ret"] == pytest.approx(51 / 50 - 1)


def test_prices_for_a_ticker_after_its_security_ended_make_a_new_security(store: Store, tmp_path: Path) -> None:
    SecurityMaster(
        pd.DataFrame([{"figi": "FIGI_A", "ticker": "XYZ", "valid_from": "2000-01-03", "valid_to": "2010-12-31"}])
    ).to_store(store)
    rows = [("2010-12-30", "XYZ", 10), ("2015-06-01", "XYZ", 50), ("2015-06-02", "XYZ", 51)]
    ingest_prices(store, [write(tmp_path, "xyz.csv", long_csv(rows))], trading_calendar=[r[0] for r in rows])
    ids = store.read_table("prices")["security_id"].tolist()
    assert ids == ["FIGI_A", "TKR:XYZ", "TKR:XYZ"]


def test_load_returns_is_a_dates_by_security_matrix(store: Store, tmp_path: Path) -> None:
    ingest_prices(store, [prices_file(tmp_path)])
    ids = SecurityMaster.from_store(store).resolve_many(["SPY", "AAA"], DAYS[0])
    wide = load_returns(store)
    assert wide.shape == (6, 2) and wide.index.name == "date"
    assert wide[ids["AAA"]].iloc[1] == pytest.approx(0.1)
    part = load_returns(store, start=DAYS[2], end=DAYS[3], security_ids=[ids["SPY"]])
    assert part.shape == (2, 1) and list(part.columns) == [ids["SPY"]]


# ---------------------------------------------------------------------- classifications


def test_snapshots_become_intervals(store: Store, tmp_path: Path) -> None:
    text = """
snapshot_date,ticker,gics_sector,gics_sub_industry
2020-01-02,AAA,Information Technology,Semiconductors
2020-06-30,AAA,Information Technology,Semiconductors
2020-12-31,AAA,Communication Services,Interactive Media & Services
2020-01-02,BBB,Energy,Oil & Gas Drilling
2020-12-31,CCC,Utilities,
2020-06-30,,Energy,
2020-06-30,DDD,,
"""
    report = ingest_classifications(store, write(tmp_path, "gics.csv", text))
    assert report.rows_read == 7 and report.rows_rejected == 2
    assert set(report.issues["reason"]) == {"missing_ticker", "no_classification"}
    cls = store.read_table("classifications").set_index(["ticker", "valid_from"]).sort_index()
    aaa = cls.loc["AAA"]
    assert aaa.index.tolist() == [pd.Timestamp("2020-01-02"), pd.Timestamp("2020-12-31")]
    assert aaa["valid_to"].iloc[0] == pd.Timestamp("2020-12-30") and pd.isna(aaa["valid_to"].iloc[1])
    # BBB is absent from the next snapshot: known only until the day before it.
    assert cls.loc[("BBB", pd.Timestamp("2020-01-02")), "valid_to"] == pd.Timestamp("2020-06-29")
    assert set(cls["source"]) == {"file"}
    assert SecurityMaster.from_store(store).resolve("CCC", "2021-01-04") == "TKR:CCC"


def test_etf_columns_and_intervals_are_accepted(store: Store, tmp_path: Path) -> None:
    text = """
ticker,sector_etf,subsector_etf,valid_from,valid_to
AAA,xlk,SOXX,2019-01-02,2020-12-31
AAA,XLC,,2021-01-04,
"""
    ingest_classifications(store, write(tmp_path, "etf.csv", text))
    cls = store.read_table("classifications")
    assert cls["sector_etf"].tolist() == ["XLK", "XLC"]
    assert cls["subsector_etf"].iloc[0] == "SOXX" and pd.isna(cls["subsector_etf"].iloc[1])


def test_an_undated_file_applies_to_the_current_holder_and_is_idempotent(store: Store, tmp_path: Path) -> None:
    ingest_prices(store, [prices_file(tmp_path)])
    path = write(tmp_path, "now.csv", "ticker,gics_sector,gics_sub_industry\nAAA,Energy,Oil & Gas Drilling")
    ingest_classifications(store, path)
    once = store.read_table("classifications")
    ingest_classifications(store, path)
    pd.testing.assert_frame_equal(store.read_table("classifications"), once)
    assert once["security_id"].tolist() == [SecurityMaster.from_store(store).resolve("AAA", DAYS[0])]


def test_duplicate_classification_rows_are_merged_or_rejected(store: Store, tmp_path: Path) -> None:
    text = """
snapshot_date,ticker,gics_sector
2020-01-02,AAA,Energy
2020-01-02,AAA,Energy
2020-01-02,BBB,Energy
2020-01-02,BBB,Utilities
"""
    report = ingest_classifications(store, write(tmp_path, "dups.csv", text))
    assert issue(report, "duplicate_identical")["source_row"].tolist() == ["2"]
    assert sorted(issue(report, "duplicate_conflict")["source_row"]) == ["3", "4"]
    assert store.read_table("classifications")["ticker"].tolist() == ["AAA"]
    assert_accounted(report)


def test_an_interval_starting_before_a_listing_attaches_to_the_listed_security(store: Store, tmp_path: Path) -> None:
    ingest_prices(store, [write(tmp_path, "p.csv", long_csv([("2019-06-12", "CRWD", 10), ("2019-06-13", "CRWD", 11)]))])
    path = write(tmp_path, "c.csv", "ticker,gics_sector,valid_from\nCRWD,Information Technology,2010-01-04")
    ingest_classifications(store, path)
    assert len(SecurityMaster.from_store(store)) == 1
    assert store.read_table("classifications")["security_id"].tolist() == ["TKR:CRWD"]


def test_a_file_of_only_bad_rows_ingests_nothing_and_says_why(store: Store, tmp_path: Path) -> None:
    report = ingest_prices(store, [write(tmp_path, "bad.csv", long_csv([(DAYS[0], "AAA", -1), (DAYS[1], "AAA", "x")]))])
    assert (report.rows_read, report.rows_rejected) == (2, 2)
    assert store.read_table("prices").empty
    assert "2 rejected" in report.summary()


def test_a_classification_file_without_classes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="none of the columns"):
        read_classification_file(write(tmp_path, "c.csv", "ticker,name\nAAA,Foo"))


# ---------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_the_real_reference_classification_files_ingest_as_they_are(store: Store, shared_data: Path) -> None:
    history = ingest_classifications(store, shared_data / "reference" / "gics_history.parquet")
    assert history.rows_read == 93_573
    assert set(history.issues["reason"]) <= {"no_classification"}  # LYB's null-sector snapshots
    current = ingest_classifications(store, shared_data / "reference" / "gics_current.csv")
    assert current.rows_rejected == 0
    cls = store.read_table("classifications")
    aapl = cls[cls["ticker"] == "AAPL"].sort_values("valid_from")
    assert aapl["gics_sector"].iloc[-1] == "Information Technology" and pd.isna(aapl["valid_to"].iloc[-1])


@pytest.mark.realdata
def test_a_real_twenty_ticker_subset_ingests_right(store: Store, shared_data: Path, tmp_path: Path) -> None:
    tickers = ["SPY", "XLK", "XLC", "SOXX", "GLD", "AAPL", "MSFT", "NVDA", "TSLA", "CRWD",
               "ED", "UNH", "BRK-B", "JPM", "XOM", "KO", "PG", "WMT", "META", "^IRX"]  # fmt: skip
    core = pd.read_parquet(shared_data / "prices" / "core.parquet", filters=[("ticker", "in", tickers)])
    path = tmp_path / "subset.parquet"
    core.to_parquet(path, index=False)

    report = ingest_prices(store, [path], etf_tickers={"SPY", "XLK", "XLC", "SOXX", "GLD"})
    assert report.rows_read == len(core) and report.rows_rejected == 0
    wide = load_returns(store, start="2020-01-01", end="2020-12-31")
    master = SecurityMaster.from_store(store)
    spy, aapl = master.resolve("SPY", "2020-03-16"), master.resolve("AAPL", "2020-08-31")
    # Checks from the data's README: SPY's crash day and AAPL's split day (no split jump).
    assert wide.loc["2020-03-16", spy] == pytest.approx(-0.1094, abs=5e-5)
    assert wide.loc["2020-08-31", aapl] == pytest.approx(0.0339, abs=5e-5)
    # The yield is a level, not a price: negative values in 2020 are kept, with no return.
    irx = store.read_table("prices", where="ticker = '^IRX'")
    assert (irx["adj_close"] < 0).any() and irx["ret"].isna().all()
