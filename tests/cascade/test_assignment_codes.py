"""assignment_codes: which ETF pair each stock holds on each date, as a (T, N) code matrix.

A worked example of every rule: an undated row holds from the start, a dated row from its
first trading day on (a date before the sample counts from the start, a weekend from the next
trading day), a later row of the same ticker takes over from its own date, rows are read in
(ticker, date) order whatever order they come in, a subsector equal to the sector is no
subsector, tickers with no row are market only, and two rows of one ticker and date are refused.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskstrata.cascade.assignments import assignment_codes
from riskstrata.errors import DataValidationError

DATES = pd.bdate_range("2024-01-01", periods=8)  # Mon 1 … Wed 10 January


def test_every_rule_of_the_worked_example() -> None:
    rows = pd.DataFrame([
        ("B", "2024-01-06", "XLF", "KIE"),   # a Saturday: from Monday the 8th (row 5)
        ("A", None, "XLK", "SMH"),            # undated: from the start
        ("B", None, "XLK", "XLK"),            # subsector = sector: (XLK, None)
        ("C", "2023-06-30", "XLE", None),     # before the sample: from the start
        ("A", "2024-01-03", "XLK", "SMH"),    # the same pair again from the 3rd
        ("B", "2024-01-09", "XLK", "SMH"),    # and a third pair from the 9th (row 6)
        ("Z", None, "XLU", None),             # not a ticker of the inputs: ignored
    ], columns=["ticker", "valid_from", "sector_etf", "subsector_etf"])
    rows["valid_from"] = pd.to_datetime(rows["valid_from"])
    out = assignment_codes(rows, pd.Index(["C", "B", "A", "D"]), DATES)
    # Pairs are numbered as rows are read: by ticker, then date (undated first).
    assert out.pairs == [(None, None), ("XLK", "SMH"), ("XLK", None), ("XLF", "KIE"), ("XLE", None)]
    expected = np.zeros((8, 4), dtype=np.int32)
    expected[:, 0] = 4                   # C
    expected[:, 1] = [2, 2, 2, 2, 2, 3, 1, 1]  # B
    expected[:, 2] = 1                   # A
    np.testing.assert_array_equal(out.codes, expected)  # D: no row, market only (0)


def test_static_assignments_by_ticker_index() -> None:
    static = pd.DataFrame({"sector_etf": ["XLK", "XLF"], "subsector_etf": ["SMH", np.nan]}, index=["A", "B"])
    out = assignment_codes(static, pd.Index(["B", "A"]), DATES)
    assert out.pairs == [(None, None), ("XLK", "SMH"), ("XLF", None)]
    np.testing.assert_array_equal(out.codes, np.tile([2, 1], (8, 1)))


def test_two_rows_for_one_ticker_and_date_are_refused() -> None:
    rows = pd.DataFrame({"ticker": ["A", "A", "B"], "valid_from": pd.to_datetime([None, None, None]),
                         "sector_etf": ["XLK", "XLF", "XLE"], "subsector_etf": [None, None, None]})
    with pytest.raises(DataValidationError, match=r"several assignments for the same ticker and date: \['A'\]"):
        assignment_codes(rows, pd.Index(["A", "B"]), DATES)
