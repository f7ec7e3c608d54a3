"""Reading holdings: broker exports, frames and dicts; the bad inputs and what happens to them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskstrata.errors import DataValidationError
from riskstrata.portfolio.holdings import (
    HOLDING_COLUMNS,
    is_cusip,
    map_cusips,
    normalize_ticker,
    read_holdings,
)

SCHWAB = '''"Positions for account Individual ...123 as of 09:30 AM ET, 2024/05/01"

"Symbol","Description","Qty (Quantity)","Price","Mkt Val (Market Value)","% Of Acct (% Of Account)","Asset Type",
"AAPL","APPLE INC","1,000","$170.00","$170,000.00","68%","Equity",
"BRK/B","BERKSHIRE HATHAWAY CL B","100","$400.00","$40,000.00","16%","Equity",
"TSLA","TESLA INC","(20)","$150.00","($3,000.00)","(1.2%)","Equity",
"SWVXX","SCHWAB VALUE ADVANTAGE MONEY","5,000","$1.00","$5,000.00","2%","Cash and Money Market",
"Cash & Cash Investments","--","--","--","$38,000.00","15.2%","Cash and Money Market",
"Account Total","--","--","--","$250,000.00","100%","--",
'''

FIDELITY = '''Account Number,Account Name,Symbol,Description,Quantity,Last Price,Current Value,Percent Of Account,Type
X123,Individual,SPAXX**,HELD IN MONEY MARKET,,,$1200.50,1.20%,Cash
X123,Individual,MSFT,MICROSOFT CORP,50,$400.00,$20000.00,20.00%,Cash
X123,Individual,NVDA,NVIDIA CORP,100,$788.00,$78800.00,78.80%,Margin
X123,Individual,Pending Activity,,,,$-1.00,,

"The data and information in this spreadsheet is provided to you solely for your use"
"Date downloaded 05/01/2024 10:30 AM ET"
'''


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def by_ticker(lines: pd.DataFrame) -> pd.DataFrame:
    return lines.set_index("ticker")


# ----------------------------------------------------------------------------- broker exports


def test_broker_style_csv_columns_are_recognised(tmp_path: Path) -> None:
    h = read_holdings(write(tmp_path, "positions.csv", SCHWAB))
    assert list(h.lines.columns) == HOLDING_COLUMNS
    assert h.source == "positions.csv"
    assert h.notes[0].startswith("read columns: 'Symbol' as ticker, 'Qty (Quantity)' as shares")
    lines = by_ticker(h.lines)
    assert lines.loc["AAPL", "shares"] == 1000 and lines.loc["AAPL", "market_value"] == 170_000  # $ and , parsed
    assert lines.loc["AAPL", "line"] == 1  # the first data row under the header


def test_percent_weights_are_converted_with_a_note(tmp_path: Path) -> None:
    h = read_holdings(write(tmp_path, "positions.csv", SCHWAB))
    assert by_ticker(h.lines).loc["AAPL", "weight"] == pytest.approx(0.68)
    assert any("percent" in n and "divided by 100" in n for n in h.notes)


def test_percent_weights_without_a_percent_sign_are_recognised_by_their_sum() -> None:
    h = read_holdings({"AAPL": 60, "MSFT": 30, "NVDA": 10})
    assert h.lines["weight"].tolist() == pytest.approx([0.6, 0.3, 0.1])
    assert any("read as percent" in n for n in h.notes)


def test_decimal_weights_are_kept_as_they_are() -> None:
    h = read_holdings({"AAPL": 0.6, "MSFT": 0.3, "NVDA": 0.1})
    assert h.lines["weight"].tolist() == pytest.approx([0.6, 0.3, 0.1])
    assert h.notes == []


def test_parentheses_negatives_are_shorts(tmp_path: Path) -> None:
    tsla = by_ticker(read_holdings(write(tmp_path, "positions.csv", SCHWAB)).lines).loc["TSLA"]
    assert (tsla["shares"], tsla["market_value"]) == (-20, -3000)
    assert tsla["weight"] == pytest.approx(-0.012)


def test_total_rows_are_skipped_with_a_note_not_read_as_holdings(tmp_path: Path) -> None:
    h = read_holdings(write(tmp_path, "positions.csv", SCHWAB))
    assert "ACCOUNT TOTAL" not in set(h.lines["ticker"])
    assert len(h.lines) == 5
    assert any("skipped total rows" in n and "line 6" in n for n in h.notes)


def test_cash_lines_are_cash_whatever_the_broker_calls_them(tmp_path: Path) -> None:
    lines = by_ticker(read_holdings(write(tmp_path, "positions.csv", SCHWAB)).lines)
    assert lines.loc["SWVXX", "kind"] == "cash"
    assert lines.loc["CASH & CASH INVESTMENTS", "kind"] == "cash"
    assert lines.loc["CASH & CASH INVESTMENTS", "market_value"] == 38_000
    assert (lines.loc[["AAPL", "BRK-B", "TSLA"], "kind"] == "security").all()


def test_a_fidelity_export_with_sweep_pending_activity_and_footer(tmp_path: Path) -> None:
    h = read_holdings(write(tmp_path, "Portfolio_Positions.csv", FIDELITY))
    lines = by_ticker(h.lines)
    assert list(lines.index) == ["SPAXX", "MSFT", "NVDA", "PENDING ACTIVITY"]  # the ** mark dropped
    assert lines.loc["SPAXX", "kind"] == "cash" and lines.loc["PENDING ACTIVITY", "kind"] == "cash"
    assert lines.loc["NVDA", "weight"] == pytest.approx(0.788)
    assert any("skipped 2 rows" in n and "footer" in n for n in h.notes)  # disclaimer text, noted


@pytest.mark.parametrize("ticker, kind", [
    ("CASH", "cash"), ("USD", "cash"), ("SPAXX", "cash"), ("FDRXX", "cash"), ("VMFXX", "cash"),
    ("Cash & Cash Investments", "cash"), ("EUR", "currency"), ("GBP", "currency"), ("JPY", "currency"),
    ("EUR.USD", "currency"), ("CASH EUR", "currency"), ("AAPL", "security"), ("NOK", "security"),
])
def test_cash_and_currency_lines_are_recognised_by_ticker(ticker: str, kind: str) -> None:
    assert read_holdings({ticker: 1.0}).lines["kind"].iloc[0] == kind


def test_asset_type_and_currency_columns_classify_lines() -> None:
    frame = pd.DataFrame({"Symbol": ["XYZ", "ABC", "AAPL"], "Market Value": [100.0, 200.0, 700.0],
                          "Asset Type": ["Money Market", "Cash", "Stock"], "Currency": ["USD", "CHF", "USD"]})
    assert read_holdings(frame).lines["kind"].tolist() == ["cash", "currency", "security"]


@pytest.mark.parametrize("raw", ["BRK.B", "BRK/B", "brk b", "BRK-B", " brk.b* "])
def test_share_class_tickers_are_normalised_yahoo_style(raw: str) -> None:
    assert normalize_ticker(raw) == "BRK-B"


def test_cusips_in_the_ticker_column_are_read_as_cusips() -> None:
    assert is_cusip("037833100") and not is_cusip("037833101")
    lines = read_holdings(pd.DataFrame({"Security ID": ["037833100", "MSFT"], "Shares": [10, 5]})).lines
    assert lines["cusip"].tolist() == ["037833100", None]
    assert lines["ticker"].tolist() == [None, "MSFT"]


# ----------------------------------------------------------------------------- Python inputs


def test_a_dict_of_share_counts_and_values() -> None:
    lines = read_holdings({"AAPL": {"shares": 100}, "MSFT": {"market_value": 5000.0}}).lines
    assert lines["shares"].iloc[0] == 100 and np.isnan(lines["shares"].iloc[1])
    assert lines["market_value"].iloc[1] == 5000
    assert read_holdings({"AAPL": 1.0}).source == "dict"


def test_a_frame_or_series_indexed_by_ticker() -> None:
    frame = pd.DataFrame({"weight": [0.7, 0.3]}, index=["AAPL", "MSFT"])
    h = read_holdings(frame)
    assert h.lines["ticker"].tolist() == ["AAPL", "MSFT"] and h.source == "DataFrame"
    assert read_holdings(pd.Series({"AAPL": 0.7, "MSFT": 0.3})).lines["weight"].tolist() == [0.7, 0.3]


def test_a_parquet_file_reads_like_a_csv(tmp_path: Path) -> None:
    path = tmp_path / "h.parquet"
    pd.DataFrame({"Ticker": ["AAPL", "MSFT"], "Quantity": [10.0, -5.0]}).to_parquet(path)
    assert read_holdings(path).lines["shares"].tolist() == [10, -5]


def test_a_semicolon_file_with_decimal_commas(tmp_path: Path) -> None:
    text = "Symbol;Shares;Market Value;Weight\nSAP;10;1.234,56;12,5%\nAAPL;5;170,00;87,5%\n"
    h = read_holdings(write(tmp_path, "depot.csv", text))
    assert h.lines["market_value"].tolist() == [1234.56, 170.0]
    assert h.lines["weight"].tolist() == pytest.approx([0.125, 0.875])
    assert any("decimal comma" in n for n in h.notes)


def test_holdings_written_out_by_the_user_read_back_the_same(tmp_path: Path) -> None:
    h = read_holdings(write(tmp_path, "positions.csv", SCHWAB))
    path = tmp_path / "saved.csv"
    h.lines.to_csv(path, index=False)
    again = read_holdings(path).lines
    assert again["ticker"].tolist() == h.lines["ticker"].tolist()
    assert again["kind"].tolist() == h.lines["kind"].tolist()
    quantities = ["shares", "market_value", "weight"]
    np.testing.assert_allclose(again[quantities], h.lines[quantities])


def test_reading_writes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, "positions.csv", SCHWAB)
    before = sorted(tmp_path.rglob("*"))
    read_holdings(path)
    assert sorted(tmp_path.rglob("*")) == before


# ----------------------------------------------------------------------------- bad inputs


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="'empty.csv' is empty"):
        read_holdings(write(tmp_path, "empty.csv", "\n  \n"))


def test_a_header_without_rows_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="header but no holdings rows"):
        read_holdings(write(tmp_path, "h.csv", "Symbol,Shares\n"))
    with pytest.raises(DataValidationError, match="dict is empty"):
        read_holdings({})


def test_a_file_without_an_identifier_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="no identifier column.*'Name', 'Weight'"):
        read_holdings(write(tmp_path, "h.csv", "Name,Weight\nApple,0.5\n"))


def test_a_file_without_a_quantity_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="no quantity column"):
        read_holdings(write(tmp_path, "h.csv", "Symbol,Price\nAAPL,170\n"))


def test_share_counts_labelled_as_weights_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"does not read as weights.*-100, 250.*label the column 'Shares'"):
        read_holdings(write(tmp_path, "h.csv", "Ticker,Weight\nAAPL,-100\nMSFT,250\nNVDA,75\n"))


def test_mixed_sign_weights_summing_to_zero_are_refused_as_share_counts() -> None:
    with pytest.raises(DataValidationError, match="sum to 0"):
        read_holdings({"AAPL": 100, "MSFT": -100, "NVDA": 50, "TSLA": -50})


def test_an_unquoted_thousands_separator_is_refused_not_shifted(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="file line 3: more fields than the header"):
        read_holdings(write(tmp_path, "h.csv", "Symbol,Market Value\nAAPL,950\nMSFT,1,234.00\n"))


def test_an_unreadable_number_names_the_line_and_column(tmp_path: Path) -> None:
    message = r"h.csv, line 2 \(file line 3\): cannot read 'abc' in column 'Shares'"
    with pytest.raises(DataValidationError, match=message):
        read_holdings(write(tmp_path, "h.csv", "Symbol,Shares\nAAPL,100\nNVDA,abc\n"))


def test_a_line_without_a_quantity_is_kept_and_noted_not_dropped(tmp_path: Path) -> None:
    lines = read_holdings(write(tmp_path, "h.csv", "Symbol,Shares\nAAPL,100\nMSFT,\nNVDA,nan\nTSLA,inf\n")).lines
    assert lines["ticker"].tolist() == ["AAPL", "MSFT", "NVDA", "TSLA"]
    assert lines["shares"].isna().tolist() == [False, True, True, True]
    assert lines["note"].str.contains("no quantity").tolist() == [False, True, True, True]
    assert "infinite shares" in lines["note"].iloc[3]


def test_duplicate_lines_are_merged_with_a_note_naming_them(tmp_path: Path) -> None:
    h = read_holdings(write(tmp_path, "h.csv", "Symbol,Shares\nAAPL,100\nMSFT,5\nAAPL,100\nmsft,7\n"))
    lines = by_ticker(h.lines)
    assert len(lines) == 2
    assert lines.loc["AAPL", "shares"] == 200 and lines.loc["AAPL", "line"] == 1
    assert lines.loc["MSFT", "shares"] == 12
    assert "identical lines 1, 3 (AAPL) merged into line 1" in " | ".join(h.notes)
    assert "same holding on lines 2, 4 (MSFT)" in " | ".join(h.notes)
    assert lines.loc["AAPL", "note"] == "merged lines 1, 3"


def test_lines_of_one_security_in_different_units_stay_apart_with_a_note() -> None:
    frame = pd.DataFrame({"ticker": ["AAPL", "AAPL"], "shares": [10.0, np.nan], "market_value": [np.nan, 500.0]})
    h = read_holdings(frame)
    assert len(h.lines) == 2
    assert any("different kinds of quantity" in n for n in h.notes)


# ----------------------------------------------------------------------------- CUSIP map


def test_cusip_lines_get_tickers_from_a_map_choosing_deterministically() -> None:
    h = read_holdings(pd.DataFrame({"CUSIP": ["037833100", "594918104", "999999999"], "Shares": [1.0, 2.0, 3.0]}))
    cmap = pd.DataFrame({"Cusip": ["594918104", "037833100", "594918104"], "Ticker": ["MSFT", "AAPL", "MSFT1"]})
    mapped = map_cusips(h, cmap)
    assert mapped.lines["ticker"].tolist() == ["AAPL", "MSFT", None]
    assert "maps to MSFT, MSFT1: used MSFT" in mapped.lines["note"].iloc[1]
    assert any("2/3 CUSIPs mapped" in n for n in mapped.notes)
    assert any("1 CUSIPs have no ticker" in n and "line 3" in n for n in mapped.notes)
    assert h.lines["ticker"].isna().all()  # the input is not modified
