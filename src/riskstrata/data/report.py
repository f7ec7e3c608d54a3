"""The ingest report: what happened to every row read, as issue rows with a reason code.

An *issue frame* has one row per (row, reason), columns :data:`ISSUE_COLUMNS`; ``action`` is
rejected / repaired / flagged and ``reason`` a code from :data:`REASONS`. Validation and ingest
build issue frames with :func:`issue_rows` and :func:`concat_issues`; :class:`IngestReport`
counts them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # the store imports nothing from here; avoid a cycle at run time anyway
    from riskstrata.data.store import Store

__all__ = [
    "ISSUE_COLUMNS",
    "REASONS",
    "Detail",
    "IngestReport",
    "append_issues",
    "concat_issues",
    "empty_issues",
    "issue_rows",
    "new_run_id",
]

# Reason code → what it means, for reports and the CLI.
REASONS: dict[str, str] = {
    "missing_ticker": "row has no ticker",
    "bad_date": "date missing, not a date, or not in the file's one date format",
    "date_out_of_range": "date before 1900-01-01 or after tomorrow",
    "bad_ticker": "ticker with a control character or a space, or longer than 32 characters",
    "bad_volume": "volume negative or not a number; stored as missing, the price kept",
    "ret_inconsistent": "given return disagrees with the move of the given adj_close; kept, please check",
    "non_finite": "value missing, infinite or not a number",
    "non_positive_price": "price is zero or negative",
    "return_below_minus_one": "return at or below -100%",
    "superseded": "a later file of the same ingest gives the same date and ticker",
    "duplicate_conflict": "same date and ticker given with different values; all copies rejected",
    "duplicate_identical": "same date and ticker given more than once with identical values; one kept",
    "gap": "series missing on trading days; the return spanning them is not a one-day return",
    "implausible_move": "one-day move larger than the plausibility bound; kept, please check",
    "no_classification": "row has no sector, sub-industry or ETF",
}
ISSUE_COLUMNS = ["file", "source_row", "date", "ticker", "action", "reason", "detail"]


def empty_issues() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "file": pd.Series(dtype="str"),
            "source_row": pd.Series(dtype="str"),
            "date": pd.Series(dtype="datetime64[ns]"),
            "ticker": pd.Series(dtype="str"),
            "action": pd.Series(dtype="str"),
            "reason": pd.Series(dtype="str"),
            "detail": pd.Series(dtype="str"),
        }
    )


@dataclass
class IngestReport:
    """What an ingest (or a validation) did with every row it read.

    ``rows_read == rows_accepted + rows_rejected``. Accepted rows may also be *repaired*
    (a gap's return set to NaN; an identical duplicate merged into its twin, so the clean data
    can be shorter than ``rows_accepted``) or *flagged* (kept, but a person should look).
    ``issues`` has one row per (row, reason), columns :data:`ISSUE_COLUMNS`, with ``action`` in
    rejected / repaired / flagged and ``source_row`` the 1-based data row in the file (header not
    counted; ``"row:TICKER"`` for wide files).
    """

    rows_read: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    rows_repaired: int = 0
    rows_flagged: int = 0
    issues: pd.DataFrame = field(default_factory=empty_issues)
    files: list[str] = field(default_factory=list)
    run_id: str | None = None

    @classmethod
    def from_issues(cls, rows_read: int, issues: pd.DataFrame, files: Sequence[str] = ()) -> IngestReport:
        """Count rows per action from ``issues`` (a row counts once per action)."""
        issues = issues.reset_index(drop=True)

        def rows(action: str) -> int:
            hit = issues.loc[issues["action"] == action, ["file", "source_row"]]
            return int(len(hit.drop_duplicates()))

        rejected = rows("rejected")
        return cls(
            rows_read=int(rows_read),
            rows_accepted=int(rows_read) - rejected,
            rows_rejected=rejected,
            rows_repaired=rows("repaired"),
            rows_flagged=rows("flagged"),
            issues=issues,
            files=list(files),
        )

    def reason_counts(self) -> pd.Series:
        """Issue count per (action, reason)."""
        return self.issues.groupby(["action", "reason"]).size().rename("rows")

    def summary(self) -> str:
        """A short human text, e.g. ``read 1,000 rows from 1 file: 990 accepted (...), 10 rejected``."""
        n_files = len(self.files)
        head = (
            f"read {self.rows_read:,} rows"
            + (f" from {n_files} file{'s' if n_files != 1 else ''}" if n_files else "")
            + f": {self.rows_accepted:,} accepted ({self.rows_repaired:,} repaired, {self.rows_flagged:,} flagged),"
            f" {self.rows_rejected:,} rejected"
        )
        if self.issues.empty:
            return head
        parts = [f"{action} {reason} {n:,}" for (action, reason), n in self.reason_counts().items()]
        return head + " — " + ", ".join(parts)

    def to_frame(self) -> pd.DataFrame:
        """The issues, one row per (row, reason), columns :data:`ISSUE_COLUMNS`."""
        return self.issues.copy()

    def __str__(self) -> str:
        return self.summary()


Detail = str | Callable[[pd.DataFrame, np.ndarray], Any]


def issue_rows(
    rows: pd.DataFrame, mask: np.ndarray | pd.Series, action: str, reason: str, detail: Detail
) -> pd.DataFrame:
    """Issue rows for ``rows[mask]`` (rows has file, source_row, date, ticker).

    detail: a text, or ``f(selected_rows, positions) -> texts`` evaluated on the selected rows
    only (building texts for millions of clean rows would dominate an ingest's run time).
    """
    mask = np.asarray(mask, dtype=bool)
    pos = np.flatnonzero(mask)
    sel = rows.iloc[pos]
    text = detail(sel, pos) if callable(detail) else detail
    if isinstance(text, pd.Series):
        text = text.to_numpy()
    return pd.DataFrame(
        {
            "file": sel["file"].astype("str").to_numpy(),
            "source_row": sel["source_row"].astype("str").to_numpy(),
            "date": sel["date"].to_numpy(),
            "ticker": sel["ticker"].to_numpy(),
            "action": action,
            "reason": reason,
            "detail": text,
        }
    )


def concat_issues(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_issues()
    out = pd.concat(parts, ignore_index=True)
    return out.astype({c: "str" for c in ISSUE_COLUMNS if c != "date"})


def append_issues(store: "Store", report: IngestReport, kind: str) -> None:
    """Append this run's issues to table ``ingest_issues`` (a run without issues adds nothing)."""
    if report.issues.empty:
        return
    new = report.issues.assign(
        run_id=report.run_id, ingested_at=pd.Timestamp(datetime.now(timezone.utc)).tz_localize(None), kind=kind
    )
    new = new[["run_id", "ingested_at", "kind", *report.issues.columns]]
    if store.has_table("ingest_issues"):
        new = pd.concat([store.read_table("ingest_issues"), new], ignore_index=True)
    store.write_table("ingest_issues", new)


def new_run_id() -> str:
    """A sortable id for one ingest run: UTC time plus a short random suffix."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
