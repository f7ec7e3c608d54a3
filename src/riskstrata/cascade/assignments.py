"""Which sector and subsector ETF each stock uses on each date, as integer codes.

The cascade groups stocks by their (sector ETF, subsector ETF) pair: stocks in a group share
the ETF window moments (their X'X). A stock's pair may change over time (reclassification),
so the assignment is a (T, N) matrix of codes into a list of pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from riskstrata.errors import DataValidationError

Pair = tuple[str | None, str | None]


def _clean(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None


@dataclass(frozen=True)
class AssignmentCodes:
    """codes: (T, N) int32 into ``pairs``; pairs[k] = (sector_etf | None, subsector_etf | None)."""

    codes: np.ndarray
    pairs: list[Pair]

    def sector_of(self, code: int) -> str | None:
        return self.pairs[code][0]

    def subsector_of(self, code: int) -> str | None:
        return self.pairs[code][1]


def normalise_pair(sector: object, subsector: object) -> Pair:
    """A subsector ETF equal to the sector ETF adds nothing: store it as None (L3 = L2)."""
    sec, sub = _clean(sector), _clean(subsector)
    if sub is not None and sub == sec:
        sub = None
    return sec, sub


def assignment_codes(assignments: pd.DataFrame | None, tickers: pd.Index,
                     dates: pd.DatetimeIndex) -> AssignmentCodes:
    """Code matrix from static or dated assignments.

    assignments: either indexed by ticker with columns ``sector_etf``, ``subsector_etf`` (static),
    or long with columns ``ticker``, ``valid_from`` (NaT = since the start), ``sector_etf``,
    ``subsector_etf`` (a row holds from its valid_from until the ticker's next row). Tickers
    absent from it get (None, None): market only, flagged downstream.
    """
    pairs: list[Pair] = [(None, None)]
    index: dict[Pair, int] = {(None, None): 0}
    codes = np.zeros((len(dates), len(tickers)), dtype=np.int32)
    if assignments is None or len(assignments) == 0:
        return AssignmentCodes(codes, pairs)
    frame = assignments
    if "ticker" not in frame.columns:
        frame = frame.rename_axis("ticker").reset_index()
    missing = {"sector_etf", "subsector_etf"} - set(frame.columns)
    if missing:
        raise DataValidationError(f"assignments need columns sector_etf and subsector_etf; missing {sorted(missing)}")
    if "valid_from" not in frame.columns:
        frame = frame.assign(valid_from=pd.NaT)
    frame = frame[frame["ticker"].isin(tickers)]
    frame = frame.assign(valid_from=pd.to_datetime(frame["valid_from"])).sort_values(
        ["ticker", "valid_from"], na_position="first")
    if frame.duplicated(["ticker", "valid_from"]).any():
        dup = frame.loc[frame.duplicated(["ticker", "valid_from"]), "ticker"].unique()[:5]
        raise DataValidationError(f"several assignments for the same ticker and date: {list(dup)}")
    col_of = pd.Series(np.arange(len(tickers)), index=tickers)
    for row in frame.itertuples(index=False):
        pair = normalise_pair(row.sector_etf, row.subsector_etf)
        code = index.setdefault(pair, len(pairs))
        if code == len(pairs):
            pairs.append(pair)
        start = 0 if pd.isna(row.valid_from) else int(dates.searchsorted(row.valid_from))
        # Later rows of the same ticker overwrite from their own valid_from on.
        codes[start:, col_of[row.ticker]] = code
    return AssignmentCodes(codes, pairs)
