"""The point-in-time security master: as-of lookups, renames, recycled tickers, stable ids."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from riskstrata.data.master import SecurityMaster, guess_asset_type, ingest_issuers, read_securities_file
from riskstrata.data.store import Store
from riskstrata.errors import DataValidationError, UnknownTicker


def records(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


@pytest.fixture
def meta_and_xyz() -> SecurityMaster:
    """FB renamed to META (one FIGI); XYZ held by A 2000–2010 and by unrelated B from 2015."""
    return SecurityMaster(
        records(
            {"figi": "BBG000MM2P62", "ticker": "FB", "name": "Facebook",
             "valid_from": "2012-05-18", "valid_to": "2022-06-08"},
            {"figi": "BBG000MM2P62", "ticker": "META", "name": "Meta Platforms", "valid_from": "2022-06-09"},
            {"isin": "US0000000A11", "ticker": "XYZ", "name": "A Corp",
             "valid_from": "2000-01-03", "valid_to": "2010-12-31"},
            {"ticker": "XYZ", "name": "B Inc", "valid_from": "2015-01-02", "shares_outstanding": 1e6},
        )
    )


def test_lookups_are_as_of_a_date(meta_and_xyz: SecurityMaster) -> None:
    m = meta_and_xyz
    assert m.resolve("FB", "2020-01-02") == "BBG000MM2P62"
    assert m.resolve("meta", pd.Timestamp("2023-01-03")) == "BBG000MM2P62"
    assert m.ticker_of("BBG000MM2P62", "2020-01-02") == "FB"
    assert m.ticker_of("BBG000MM2P62", "2024-01-02") == "META"
    assert m.record("BBG000MM2P62", "2024-01-02")["name"] == "Meta Platforms"
    assert set(m.snapshot("2005-06-30")["ticker"]) == {"XYZ"}
    assert set(m.snapshot("2020-06-30")["ticker"]) == {"FB", "XYZ"}


def test_a_rename_keeps_one_security_id(meta_and_xyz: SecurityMaster) -> None:
    m = meta_and_xyz
    assert m.resolve("FB", "2022-06-08") == m.resolve("META", "2022-06-09")
    assert m.records.groupby("security_id").size()["BBG000MM2P62"] == 2
    with pytest.raises(UnknownTicker, match="no security holds it on 2023-01-03"):
        m.resolve("FB", "2023-01-03")


def test_a_rename_upserted_as_a_new_record_closes_the_old_one() -> None:
    m = SecurityMaster(records({"figi": "F1", "ticker": "FB", "valid_from": "2012-05-18"}))
    m = m.upsert(records({"figi": "F1", "ticker": "META", "valid_from": "2022-06-09"}))
    old = m.records.set_index("ticker").loc["FB"]
    assert old["valid_to"] == pd.Timestamp("2022-06-08")
    assert m.resolve("META", "2023-01-03") == m.resolve("FB", "2021-01-04") == "F1"


def test_a_recycled_ticker_resolves_to_two_securities_never_merged(meta_and_xyz: SecurityMaster) -> None:
    m = meta_and_xyz
    a, b = m.resolve("XYZ", "2005-06-30"), m.resolve("XYZ", "2020-06-30")
    assert a == "US0000000A11"
    assert b == "TKR:XYZ"  # the first ticker-based security of XYZ
    assert m.record(a, "2005-06-30")["name"] == "A Corp"
    assert m.record(b, "2020-06-30")["name"] == "B Inc"
    with pytest.raises(UnknownTicker) as err:
        m.resolve("XYZ", "2012-06-29")
    message = str(err.value)
    assert "no security holds it on 2012-06-29" in message
    assert "US0000000A11 2000-01-03..2010-12-31" in message and "TKR:XYZ 2015-01-02..open" in message


def test_ticker_only_records_with_a_gap_are_two_securities() -> None:
    m = SecurityMaster(
        records(
            {"ticker": "XYZ", "name": "A", "valid_from": "2000-01-03", "valid_to": "2010-12-31"},
            {"ticker": "XYZ", "name": "B", "valid_from": "2015-01-02"},
        )
    )
    assert m.resolve("XYZ", "2005-01-03") == "TKR:XYZ"
    assert m.resolve("XYZ", "2016-01-04") == "TKR:XYZ:20150102"


def test_an_unknown_ticker_says_it_is_not_in_the_master(meta_and_xyz: SecurityMaster) -> None:
    with pytest.raises(UnknownTicker, match="'NOPE': not in the security master"):
        meta_and_xyz.resolve("NOPE", "2020-01-02")
    with pytest.raises(UnknownTicker, match="security has no record on 1999-01-04"):
        meta_and_xyz.record("US0000000A11", "1999-01-04")


def test_resolve_many_gives_nan_for_unknowns(meta_and_xyz: SecurityMaster) -> None:
    got = meta_and_xyz.resolve_many(["FB", "XYZ", "NOPE", "META"], "2020-01-02")
    assert got["FB"] == "BBG000MM2P62" and got["XYZ"] == "TKR:XYZ"
    assert got[["NOPE", "META"]].isna().all()


def test_two_securities_cannot_hold_a_ticker_on_the_same_day() -> None:
    with pytest.raises(DataValidationError, match="ticker 'ABC' is held by two securities"):
        SecurityMaster(
            records(
                {"figi": "F1", "ticker": "ABC", "valid_from": "2000-01-03", "valid_to": "2010-12-31"},
                {"figi": "F2", "ticker": "ABC", "valid_from": "2010-12-31"},
            )
        )


def test_bad_records_are_refused_with_reasons() -> None:
    with pytest.raises(DataValidationError, match="valid_to before valid_from"):
        SecurityMaster(records({"ticker": "A", "valid_from": "2001-01-01", "valid_to": "2000-01-01"}))
    with pytest.raises(DataValidationError, match="asset_type not one of"):
        SecurityMaster(records({"ticker": "A", "valid_from": "2001-01-01", "asset_type": "bond"}))
    with pytest.raises(DataValidationError, match="no ticker"):
        SecurityMaster(records({"ticker": None, "valid_from": "2001-01-01"}))


def test_upsert_is_idempotent_and_carries_the_name_forward(meta_and_xyz: SecurityMaster) -> None:
    update = records({"ticker": "XYZ", "valid_from": "2018-01-02", "shares_outstanding": 2e6})
    once = meta_and_xyz.upsert(update)
    twice = once.upsert(update)
    pd.testing.assert_frame_equal(once.records, twice.records)
    rec = once.record("TKR:XYZ", "2019-01-02")
    assert rec["shares_outstanding"] == 2e6 and rec["name"] == "B Inc"
    assert once.record("TKR:XYZ", "2016-01-04")["shares_outstanding"] == 1e6


def test_ensure_tickers_creates_what_is_missing_once(meta_and_xyz: SecurityMaster) -> None:
    seen = pd.DataFrame(
        {
            "ticker": ["NEW", "XYZ", "XYZ", "^IRX"],
            "first_date": ["2019-03-01", "2011-06-01", "2016-01-04", "1990-01-02"],
            "last_date": ["2020-12-31", "2012-06-29", "2020-12-31", "2020-12-31"],
        }
    )
    m = meta_and_xyz.ensure_tickers(seen, asset_type_hint={"NEW": "etf"})
    assert m.record("TKR:NEW", "2020-01-02")["asset_type"] == "etf"
    assert m.record("TKR:^IRX", "2020-01-02")["asset_type"] == "rate"
    # XYZ between A and B was a third company: its own security, not A's or B's.
    mid = m.resolve("XYZ", "2012-01-03")
    assert mid == "TKR:XYZ:20110601"
    assert m.record(mid, "2012-01-03")["valid_to"] == pd.Timestamp("2015-01-01")
    assert m.resolve("XYZ", "2020-01-02") == "TKR:XYZ"  # existing records untouched
    pd.testing.assert_frame_equal(m.ensure_tickers(seen).records, m.records)


def test_ensure_tickers_extends_a_ticker_based_security_back_on_a_backfill() -> None:
    m = SecurityMaster(records({"ticker": "AAPL", "valid_from": "2012-12-27"}))
    m = m.ensure_tickers(pd.DataFrame({"ticker": ["AAPL"], "first_date": ["1980-12-12"], "last_date": ["2012-12-26"]}))
    assert len(m) == 1
    assert m.resolve("AAPL", "1990-01-02") == "TKR:AAPL"


def test_the_master_round_trips_through_the_store(tmp_path: Path, meta_and_xyz: SecurityMaster) -> None:
    store = Store(tmp_path / "store")
    assert len(SecurityMaster.from_store(store)) == 0
    meta_and_xyz.to_store(store)
    pd.testing.assert_frame_equal(SecurityMaster.from_store(store).records, meta_and_xyz.records)


def test_a_securities_csv_is_read_with_optional_columns(tmp_path: Path) -> None:
    path = tmp_path / "securities.csv"
    path.write_text(
        "Ticker,FIGI,Name,Asset_Type,Valid_From,Valid_To\n"
        "FB,BBG000MM2P62,Facebook,stock,2012-05-18,2022-06-08\n"
        "META,BBG000MM2P62,Meta,stock,2022-06-09,\n"
        "SPY,,SPDR S&P 500,etf,,\n"
    )
    m = SecurityMaster(read_securities_file(path))
    assert m.resolve("META", "2023-01-03") == m.resolve("FB", "2020-01-02")
    assert m.resolve("SPY", "1995-01-03") == "TKR:SPY"  # no valid_from: valid since forever
    assert m.record("TKR:SPY", "2020-01-02")["asset_type"] == "etf"


# ---------------------------------------------------------------------- issuers and funds (issue 9)


def test_share_classes_share_an_issuer_and_other_securities_are_their_own(tmp_path: Path) -> None:
    path = tmp_path / "securities.csv"
    path.write_text("ticker,cik\nGOOG,0001652044\nGOOGL,0001652044\nAAPL,\n")
    m = SecurityMaster(read_securities_file(path))  # ``cik`` is read as the issuer id
    ids = [m.resolve(t, "2020-01-02") for t in ("GOOG", "GOOGL", "AAPL")]
    assert m.issuers(ids).tolist() == ["0001652044", "0001652044", "TKR:AAPL"]
    assert m.issuers(["NOT-THERE"]).tolist() == ["NOT-THERE"]


def test_an_issuer_mapping_annotates_known_securities_and_reports_the_rest(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    SecurityMaster(records({"ticker": "FOX", "valid_from": "2019-03-19"}, {"ticker": "FOXA", "valid_from": "2019-03-19"},
                           {"ticker": "KO", "valid_from": "1990-01-02"})).to_store(store)
    path = tmp_path / "company_tickers.csv"
    path.write_text("cik,ticker,name\n0001754301,FOX,Fox Corp\n0001754301,FOXA,Fox Corp\n"
                    "0000021344,KO,Coca-Cola\n0000000001,ZZZZ,Unknown\n,KO,blank\n"
                    "0000000002,DUP,a\n0000000003,DUP,b\n")
    report = ingest_issuers(store, path)
    assert report.rows_read == 7 and report.rows_rejected == 3
    assert report.issues.groupby("reason").size().to_dict() == {
        "duplicate_conflict": 2, "missing_issuer": 1, "not_in_master": 1}
    m = SecurityMaster.from_store(store)
    sids = [m.resolve(t, "2020-01-02") for t in ("FOX", "FOXA", "KO")]
    assert m.issuers(sids).tolist() == ["0001754301", "0001754301", "0000021344"]
    ingest_issuers(store, path)  # again: nothing changes
    pd.testing.assert_frame_equal(SecurityMaster.from_store(store).records, m.records)
    assert set(store.read_table("ingest_issues")["kind"]) == {"issuers"}


def test_known_funds_are_typed_etf_on_first_sight() -> None:
    assert [guess_asset_type(t) for t in ("IVV", "TLT", "GLD", "SPY", "AAPL", "^IRX", "^GSPC")] == [
        "etf", "etf", "etf", "etf", "stock", "rate", "index"]
    m = SecurityMaster.empty().ensure_tickers(pd.DataFrame({"ticker": ["GLD", "MSFT"], "first_date": ["2020-01-02"] * 2,
                                                            "last_date": ["2020-12-31"] * 2}))
    assert m.records.set_index("ticker")["asset_type"].to_dict() == {"GLD": "etf", "MSFT": "stock"}
