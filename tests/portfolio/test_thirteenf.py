"""SEC Form 13F information tables into holdings: the synthetic cases and the real EDGAR samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskstrata.errors import DataValidationError
from riskstrata.portfolio.holdings import HOLDING_COLUMNS
from riskstrata.portfolio.thirteenf import read_13f

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

ENTRY = """
  <ns1:infoTable>
    <ns1:nameOfIssuer>{name}</ns1:nameOfIssuer>
    <ns1:titleOfClass>COM</ns1:titleOfClass>
    <ns1:cusip>{cusip}</ns1:cusip>
    <ns1:value>{value}</ns1:value>
    <ns1:shrsOrPrnAmt>
      <ns1:sshPrnamt>{amount}</ns1:sshPrnamt><ns1:sshPrnamtType>{kind}</ns1:sshPrnamtType>
    </ns1:shrsOrPrnAmt>
    {put_call}
    <ns1:investmentDiscretion>SOLE</ns1:investmentDiscretion>
    <ns1:votingAuthority>
      <ns1:Sole>0</ns1:Sole><ns1:Shared>0</ns1:Shared><ns1:None>{amount}</ns1:None>
    </ns1:votingAuthority>
  </ns1:infoTable>"""


def table(*entries: dict[str, object]) -> str:
    body = "".join(ENTRY.format(**{"kind": "SH", "put_call": "", **e}) for e in entries)
    return ('\n\n<?xml version="1.0" encoding="UTF-8"?>\n<ns1:informationTable '
            'xmlns:ns1="http://www.sec.gov/edgar/document/thirteenf/informationtable">'
            f"{body}\n</ns1:informationTable>\n")


SAMPLE = table(
    {"name": "APPLE INC", "cusip": "037833100", "value": 1_700_000, "amount": 10_000},
    {"name": "MICROSOFT CORP", "cusip": "594918104", "value": 800_000, "amount": 2_000},
    {"name": "APPLE INC", "cusip": "037833100", "value": 170_000, "amount": 1_000},
    {"name": "TESLA INC", "cusip": "88160RAG6", "value": 990_000, "amount": 1_000_000, "kind": "PRN"},
    {"name": "NVIDIA CORP", "cusip": "67066G104", "value": 90_000, "amount": 1_000,
     "put_call": "<ns1:putCall>Put</ns1:putCall>"},
    {"name": "UNKNOWN CO", "cusip": "999999999", "value": 5_000, "amount": 100},
)
CUSIP_MAP = pd.DataFrame({"cusip": ["037833100", "594918104", "88160RAG6", "67066G104"],
                          "ticker": ["AAPL", "MSFT", "TSLA", "NVDA"]})


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "infotable.xml"
    path.write_text(SAMPLE, encoding="utf-8")
    return path


def shared(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"real-data test: {path} is absent (the SEC samples live in ../shared/data/sec)")
    return path


# ----------------------------------------------------------------------------- synthetic


def test_one_line_per_entry_with_shares_values_and_mapped_tickers(sample: Path) -> None:
    h = read_13f(sample, CUSIP_MAP)
    lines = h.lines
    assert list(lines.columns) == HOLDING_COLUMNS and h.source == "infotable.xml"
    assert lines["line"].tolist() == [1, 2, 3, 4, 5, 6]
    assert lines["ticker"].tolist() == ["AAPL", "MSFT", "AAPL", "TSLA", "NVDA", None]
    assert lines["shares"].iloc[0] == 10_000 and lines["market_value"].iloc[0] == 1_700_000
    assert (lines["kind"] == "security").all() and (lines["currency"] == "USD").all()
    assert lines["weight"].isna().all()


def test_the_value_unit_is_stated_and_can_be_scaled(sample: Path) -> None:
    h = read_13f(sample, CUSIP_MAP)
    assert any("13F value read as USD" in n and "value_multiplier=1000" in n for n in h.notes)
    older = read_13f(sample, CUSIP_MAP, value_multiplier=1000)
    assert older.lines["market_value"].iloc[0] == 1_700_000_000
    assert any("USD × 1000" in n for n in older.notes)


def test_values_in_thousands_are_flagged_by_their_implied_price(tmp_path: Path) -> None:
    path = tmp_path / "old.xml"
    path.write_text(table({"name": "APPLE INC", "cusip": "037833100", "value": 1_700, "amount": 10_000}))
    assert any("look like thousands of USD" in n for n in read_13f(path).notes)


def test_principal_amount_lines_have_no_share_count_and_say_so(sample: Path) -> None:
    tsla = read_13f(sample, CUSIP_MAP).lines.iloc[3]
    assert np.isnan(tsla["shares"]) and tsla["market_value"] == 990_000
    assert "PRN: principal amount $1,000,000" in tsla["note"]


def test_option_lines_are_noted(sample: Path) -> None:
    h = read_13f(sample, CUSIP_MAP)
    assert "PUT option on 1,000 shares" in h.lines["note"].iloc[4]
    assert any("1 put and 0 call option entries" in n for n in h.notes)


def test_repeated_cusips_stay_separate_lines_with_a_note(sample: Path) -> None:
    h = read_13f(sample, CUSIP_MAP)
    assert (h.lines["cusip"] == "037833100").sum() == 2
    assert any("1 CUSIPs appear on several entries" in n for n in h.notes)


def test_unmapped_cusips_keep_no_ticker_and_the_issuer_name(sample: Path) -> None:
    h = read_13f(sample, CUSIP_MAP)
    unknown = h.lines.iloc[5]
    assert unknown["ticker"] is None and unknown["cusip"] == "999999999"
    assert "UNKNOWN CO" in unknown["note"]
    assert any("5/6 CUSIPs mapped" in n for n in h.notes)


def test_without_a_map_every_line_lacks_a_ticker_and_the_notes_say_why(sample: Path) -> None:
    h = read_13f(sample)
    assert h.lines["ticker"].isna().all()
    assert any("no CUSIP map given" in n for n in h.notes)


def test_a_map_file_in_csv_works_like_a_frame(sample: Path, tmp_path: Path) -> None:
    path = tmp_path / "map.csv"
    CUSIP_MAP.to_csv(path, index=False)
    assert read_13f(sample, path).lines["ticker"].tolist() == read_13f(sample, CUSIP_MAP).lines["ticker"].tolist()


def test_files_without_an_information_table_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text("<?xml version='1.0'?><edgarSubmission/>")
    with pytest.raises(DataValidationError, match="no 13F information table"):
        read_13f(tmp_path / "a.xml")
    (tmp_path / "b.xml").write_text("<informationTable><infoTable><cusip>1</cusip></informationTable>")
    with pytest.raises(DataValidationError, match="not well-formed"):
        read_13f(tmp_path / "b.xml")
    (tmp_path / "c.xml").write_text("<informationTable></informationTable>")
    with pytest.raises(DataValidationError, match="no <infoTable> entries"):
        read_13f(tmp_path / "c.xml")
    with pytest.raises(DataValidationError, match="not found"):
        read_13f(tmp_path / "missing.xml")


# ----------------------------------------------------------------------------- real EDGAR samples


@pytest.mark.realdata
def test_the_real_13f_sample_reads_255_lines_and_every_cusip_maps() -> None:
    h = read_13f(shared("sec/13F-HR.infotable.xml"), shared("sec/cusip_ticker.parquet"))
    assert len(h.lines) == 255
    assert h.lines["ticker"].notna().all(), h.lines.loc[h.lines["ticker"].isna(), ["line", "cusip", "note"]]
    assert any("255/255 CUSIPs mapped" in n for n in h.notes)
    assert h.lines.loc[h.lines["cusip"] == "037833100", "ticker"].tolist() == ["AAPL"]
    assert (h.lines["market_value"] > 0).all()


@pytest.mark.realdata
def test_the_sec_technical_sample_has_169_rows() -> None:
    h = read_13f(shared("sec/information_table.xml"), shared("sec/cusip_ticker.parquet"))
    assert len(h.lines) == 169
    assert h.lines["cusip"].notna().all()


@pytest.mark.realdata
@pytest.mark.parametrize("name, entries", [("0001951757-25-000093.nc", 77), ("13F.0001894188-23-000007.txt", 14)])
def test_full_submissions_embed_a_table_that_reads_the_same(name: str, entries: int) -> None:
    h = read_13f(shared(f"sec/{name}"))
    assert len(h.lines) == entries
    assert any("median implied price" in n for n in h.notes)
