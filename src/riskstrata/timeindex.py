"""Finding a date's row in a model's trading calendar (shared by the model results)."""

from __future__ import annotations

import pandas as pd

from riskstrata.errors import DateOutOfRange


def row_on_or_before(dates: pd.DatetimeIndex, date: object | None) -> int:
    """Row of the last trading day on or before ``date`` (None → the last row).

    Raises DateOutOfRange for a date outside [first, last] of ``dates``.
    """
    if date is None:
        return len(dates) - 1
    ts = pd.Timestamp(date)
    if ts < dates[0] or ts > dates[-1]:
        raise DateOutOfRange(f"{ts.date()} is outside the model's dates ({dates[0].date()} … {dates[-1].date()})")
    return int(dates.searchsorted(ts, side="right")) - 1
