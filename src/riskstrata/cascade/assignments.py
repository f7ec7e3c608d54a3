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
    ticker = frame["ticker"].to_numpy(dtype=object)
    valid_from = pd.to_datetime(frame["valid_from"]).to_numpy(dtype="datetime64[ns]")
    # By ticker, then valid_from with NaT (since the start) first: NaT is the smallest int64.
    rank = np.unique(ticker, return_inverse=True)[1].reshape(-1)
    order = np.lexsort((valid_from.view(np.int64), rank))
    ticker, valid_from, rank = ticker[order], valid_from[order], rank[order]
    same_ticker = rank[1:] == rank[:-1]
    duplicated = same_ticker & (valid_from[1:].view(np.int64) == valid_from[:-1].view(np.int64))
    if duplicated.any():
        dup = pd.unique(ticker[1:][duplicated])[:5]
        raise DataValidationError(f"several assignments for the same ticker and date: {list(dup)}")
    sectors = frame["sector_etf"].to_numpy(dtype=object)[order]
    subsectors = frame["subsector_etf"].to_numpy(dtype=object)[order]
    row_codes = np.empty(len(order), dtype=np.int32)
    for i, (sector, subsector) in enumerate(zip(sectors, subsectors)):  # pairs numbered in row order
        pair = normalise_pair(sector, subsector)
        code = index.setdefault(pair, len(pairs))
        if code == len(pairs):
            pairs.append(pair)
        row_codes[i] = code
    # A row holds from its valid_from until the ticker's next row (a later row overwrites from
    # its own valid_from on).
    T = len(dates)
    undated = np.isnat(valid_from)
    start = np.searchsorted(dates.to_numpy(dtype="datetime64[ns]"), valid_from)
    start[undated] = 0
    end = np.full(len(order), T)
    end[:-1] = np.where(same_ticker, start[1:], T)
    col = tickers.get_indexer(ticker)
    whole = (start == 0) & (end == T)
    codes[:, col[whole]] = row_codes[whole]
    for i in np.flatnonzero(~whole):
        codes[start[i]:end[i], col[i]] = row_codes[i]
    return AssignmentCodes(codes, pairs)
