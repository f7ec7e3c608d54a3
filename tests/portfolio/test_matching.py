"""Matching holdings to the model universe: X/Y analysed, each exclusion with its reason, weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskstrata.errors import DataValidationError
from riskstrata.portfolio.holdings import Holdings, read_holdings
from riskstrata.portfolio.matching import (
    EXCLUDED_COLUMNS,
    MATCHED_COLUMNS,
    REASONS,
    MatchResult,
    match_holdings,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
AS_OF = "2024-05-01"


@pytest.fixture
def universe() -> pd.DataFrame:
    rows = [
        ("AAPL", "S-AAPL", "1980-12-12", None, 200.0),
        ("MSFT", "S-MSFT", "1986-03-13", None, 400.0),
        ("TSLA", "S-TSLA", "2010-06-29", None, 250.0),
        ("GOOGL", "S-GOOGL", "2004-08-19", None, 150.0),
        ("BRK-B", "S-BRKB", "1996-05-09", None, 400.0),
        ("NEWCO", "S-NEWCO", "2025-01-02", None, np.nan),   # lists after the analysis date
        ("OLDCO", "S-OLDCO", "1990-01-02", "2020-01-02", np.nan),  # delisted before it
        ("NOPX", "S-NOPX", "2000-01-03", None, np.nan),     # modelled, but no close on the date
    ]
    frame = pd.DataFrame(rows, columns=["ticker", "security_id", "first_date", "last_date", "close"])
    frame[["first_date", "last_date"]] = frame[["first_date", "last_date"]].apply(pd.to_datetime)
    return frame


def holdings(rows: dict[str, dict[str, float]]) -> Holdings:
    return read_holdings(rows)


EIGHT_LINES = {
    "AAPL": {"shares": 100},
    "MSFT": {"shares": 50},
    "TSLA": {"shares": -20},
    "CASH": {"market_value": 5_000},
    "EUR": {"market_value": 1_000},
    "ZZZZ": {"shares": 10, "market_value": 700},
    "NEWCO": {"shares": 10, "market_value": 300},
    "OLDCO": {"shares": 5, "market_value": 200},
}


@pytest.fixture
def eight(universe: pd.DataFrame) -> MatchResult:
    return match_holdings(holdings(EIGHT_LINES), universe, AS_OF)


def assert_accounted(result: MatchResult, total: int) -> None:
    """Nothing silently dropped: every input line is analysed or excluded with a known reason."""
    assert result.total_lines == total
    assert result.analyzed + len(result.excluded) == total
    assert set(result.excluded["reason"]) <= set(REASONS)


# ----------------------------------------------------------------------------- X/Y and reasons


def test_x_of_y_holdings_analyzed_with_each_exclusion_reason(eight: MatchResult) -> None:
    assert eight.summary() == ("3/8 holdings analyzed (5 excluded: 1 cash, 1 currency, 1 unknown symbol, "
                               "1 no history yet, 1 delisted; excluded value $7,200)")
    reasons = eight.excluded.set_index("ticker")["reason"].to_dict()
    assert reasons == {"CASH": "cash", "EUR": "currency", "ZZZZ": "unknown symbol",
                       "NEWCO": "no history yet", "OLDCO": "delisted"}
    assert_accounted(eight, 8)
    assert list(eight.matched.columns) == MATCHED_COLUMNS and list(eight.excluded.columns) == EXCLUDED_COLUMNS
    assert eight.as_of == pd.Timestamp(AS_OF)


def test_the_excluded_value_and_its_share_are_stated(eight: MatchResult) -> None:
    assert eight.excluded_value == 7_200
    share = 7_200 / (7_200 + 20_000 + 20_000 + 5_000)
    assert any(f"excluded value $7,200: {share:.1%}" in n for n in eight.notes)


def test_shares_are_valued_at_the_close_of_the_analysis_date(eight: MatchResult) -> None:
    m = eight.matched.set_index("ticker")
    assert m.loc["AAPL", "value"] == 100 * 200 and m.loc["AAPL", "price"] == 200
    assert (m["basis"] == "shares").all()
    assert m.loc["AAPL", "security_id"] == "S-AAPL"


def test_weights_are_relative_to_gross_and_a_short_shows_as_such(eight: MatchResult) -> None:
    """A long/short book: weight = value / Σ|value| (gross), so Σ|w| = 1 and Σw = net / gross."""
    m = eight.matched.set_index("ticker")
    assert m["weight"].abs().sum() == pytest.approx(1.0)
    gross, net = 20_000 + 20_000 + 5_000, 20_000 + 20_000 - 5_000
    assert m["weight"].sum() == pytest.approx(net / gross)
    assert m.loc["TSLA", "weight"] == pytest.approx(-5_000 / gross)
    assert (eight.long_value, eight.short_value, eight.gross_value, eight.net_value) == (40_000, -5_000, gross, net)
    assert m.loc["TSLA", "side"] == "short" and m.loc["AAPL", "side"] == "long"
    assert any("long/short book: weights are value / gross" in n for n in eight.notes)


def test_market_values_are_used_as_given_where_there_are_no_shares(universe: pd.DataFrame) -> None:
    r = match_holdings(holdings({"AAPL": {"shares": 10}, "MSFT": {"market_value": 6_000}}), universe, AS_OF)
    m = r.matched.set_index("ticker")
    assert m.loc["MSFT", "value"] == 6_000 and m.loc["MSFT", "basis"] == "market_value"
    assert m["weight"].tolist() == pytest.approx([0.25, 0.75])


def test_no_close_falls_back_to_the_market_value_else_no_price(universe: pd.DataFrame) -> None:
    r = match_holdings(holdings({"AAPL": {"shares": 10}, "NOPX": {"shares": 5, "market_value": 50}}), universe, AS_OF)
    assert r.matched.set_index("ticker").loc["NOPX", "value"] == 50
    assert any("line 2: no close on the analysis date" in n for n in r.notes)
    r = match_holdings(holdings({"AAPL": {"shares": 10}, "NOPX": {"shares": 5}}), universe, AS_OF)
    assert r.excluded["reason"].tolist() == ["no price"]
    assert "1 without a value" in r.summary()


def test_lines_without_a_quantity_or_with_zero_are_excluded_not_dropped(universe: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("Symbol,Shares\nAAPL,100\nMSFT,\nTSLA,0\n")
    r = match_holdings(read_holdings(path), universe, AS_OF)
    assert r.excluded.set_index("ticker")["reason"].to_dict() == {"MSFT": "no quantity", "TSLA": "zero position"}
    assert r.summary().startswith("1/3 holdings analyzed")
    assert_accounted(r, 3)


# ----------------------------------------------------------------------------- symbols


def test_goog_is_read_as_googl_when_only_googl_is_modelled(universe: pd.DataFrame) -> None:
    r = match_holdings(holdings({"GOOG": {"shares": 10}}), universe, AS_OF)
    assert r.matched["security_id"].tolist() == ["S-GOOGL"]
    assert any("GOOG is not in the model universe: read as GOOGL" in n for n in r.notes)


def test_lines_of_one_security_are_combined_into_one_position(universe: pd.DataFrame) -> None:
    h = holdings({"GOOG": {"shares": 10}, "GOOGL": {"shares": 5}, "AAPL": {"shares": 1}})
    r = match_holdings(h, universe, AS_OF)
    m = r.matched.set_index("ticker")
    assert len(m) == 2 and m.loc["GOOGL", "shares"] == 15 and m.loc["GOOGL", "value"] == 15 * 150
    assert r.analyzed == 3 and r.summary() == "3/3 holdings analyzed"
    assert any("lines 1, 2 are the same security (GOOGL)" in n for n in r.notes)


@pytest.mark.parametrize("symbol", ["BRK.B", "BRK/B", "brk b", "BRKB"])
def test_share_class_punctuation_matches_the_model_ticker(universe: pd.DataFrame, symbol: str) -> None:
    r = match_holdings(holdings({symbol: {"shares": 1}}), universe, AS_OF)
    assert r.matched["ticker"].tolist() == ["BRK-B"]


def test_a_recycled_ticker_matches_the_listing_alive_on_the_date(universe: pd.DataFrame) -> None:
    old = pd.DataFrame([("AAPL", "S-OLD-AAPL", pd.Timestamp("1970-01-02"), pd.Timestamp("1975-01-02"), np.nan)],
                       columns=universe.columns)
    r = match_holdings(holdings({"AAPL": {"shares": 1}}), pd.concat([old, universe]), AS_OF)
    assert r.matched["security_id"].tolist() == ["S-AAPL"]
    r = match_holdings(holdings({"AAPL": {"shares": 1}}), pd.concat([old, universe]), "1978-06-30")
    assert r.excluded["reason"].tolist() == ["delisted"]


def test_a_cusip_line_matches_through_the_universe_cusip_column(universe: pd.DataFrame) -> None:
    uni = universe.assign(cusip=["037833100", None, None, None, None, None, None, None])
    h = read_holdings(pd.DataFrame({"CUSIP": ["037833100", "999999999"], "Shares": [10.0, 5.0]}))
    r = match_holdings(h, uni, AS_OF)
    assert r.matched["ticker"].tolist() == ["AAPL"]
    assert r.excluded[["cusip", "reason"]].values.tolist() == [["999999999", "unknown symbol"]]


# ----------------------------------------------------------------------------- weights


def test_a_weight_only_portfolio_uses_its_weights(universe: pd.DataFrame) -> None:
    r = match_holdings(holdings({"AAPL": 0.6, "MSFT": 0.3, "CASH": 0.1}), universe, AS_OF)
    assert r.unit == "weight"
    assert r.matched["weight"].tolist() == pytest.approx([2 / 3, 1 / 3])
    assert r.summary() == "2/3 holdings analyzed (1 excluded: 1 cash; excluded weight 10.0%)"


def test_a_portfolio_value_turns_weights_into_dollars(universe: pd.DataFrame) -> None:
    r = match_holdings(holdings({"AAPL": 0.6, "MSFT": 0.3, "CASH": 0.1}), universe, AS_OF, portfolio_value=1_000_000)
    assert r.unit == "USD"
    assert r.matched["value"].tolist() == pytest.approx([600_000, 300_000])
    assert r.summary().endswith("excluded value $100,000)")


def test_mixed_shares_and_weights_are_refused(universe: pd.DataFrame) -> None:
    h = read_holdings(pd.DataFrame({"ticker": ["AAPL", "MSFT"], "shares": [10.0, np.nan], "weight": [np.nan, 0.5]}))
    message = "mixed quantities: shares or a market value on line 1, only a weight on line 2"
    with pytest.raises(DataValidationError, match=message):
        match_holdings(h, universe, AS_OF)


def test_a_net_short_book_is_weighted_by_gross_value(universe: pd.DataFrame) -> None:
    r = match_holdings(holdings({"AAPL": {"shares": 10}, "MSFT": {"shares": -10}}), universe, AS_OF)
    assert r.matched["weight"].tolist() == pytest.approx([2_000 / 6_000, -4_000 / 6_000])
    assert any("long/short book: weights are value / gross" in n for n in r.notes)


def test_values_too_large_to_sum_are_refused_as_overflow(universe: pd.DataFrame) -> None:
    from riskstrata.errors import ValueOverflow

    with pytest.raises(ValueOverflow, match="beyond 1e\\+15"):
        match_holdings(holdings({"AAPL": 1e308, "MSFT": 1e308}), universe, AS_OF)
    with pytest.raises(ValueOverflow, match="too large to be a position"):  # shares × close past the bound
        match_holdings(holdings({"AAPL": {"shares": 1e14}}), universe, AS_OF)


def test_a_universe_without_its_columns_is_refused(universe: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match="lacks columns \\['close'\\]"):
        match_holdings(holdings({"AAPL": 1.0}), universe.drop(columns="close"), AS_OF)


# ----------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_the_real_13f_sample_matches_against_the_real_price_universe() -> None:
    from riskstrata.portfolio.thirteenf import read_13f

    paths = [SHARED / "sec" / "13F-HR.infotable.xml", SHARED / "sec" / "cusip_ticker.parquet",
             SHARED / "prices" / "core.parquet"]
    if not all(p.exists() for p in paths):
        pytest.skip("real-data test: ../shared/data (sec/ and prices/core.parquet) is absent")
    as_of = pd.Timestamp("2022-12-30")
    prices = pd.read_parquet(paths[2], columns=["date", "ticker", "adj_close"])
    spans = prices.groupby("ticker")["date"].agg(first_date="min", last_date="max")
    close = prices[prices["date"] == as_of].set_index("ticker")["adj_close"]
    uni = spans.assign(close=close).reset_index().assign(security_id=lambda f: "TKR:" + f["ticker"])

    r = match_holdings(read_13f(paths[0], paths[1]), uni, as_of)
    assert_accounted(r, 255)
    assert r.analyzed > 120  # S&P 500 names and ETFs; the rest are small caps, other ETFs, funds
    assert "BRK-B" in set(r.matched["ticker"])  # mapped as BRKB by the CUSIP file
    assert r.matched["weight"].sum() == pytest.approx(1.0)
    assert not r.matched["security_id"].duplicated().any()
    assert r.summary().startswith(f"{r.analyzed}/255 holdings analyzed")
