"""Reading price files and validating them, with a reason code for every row not taken as is.

Shapes: a *long price frame* has one row per (date, ticker) observation with columns
``date`` (datetime64[ns], midnight), ``ticker`` (str, upper case), ``adj_close`` (float, price
units, NaN = not given), ``ret`` (float, simple daily return as a decimal, 0.01 = 1%, NaN = not
given), optional ``volume`` (float, shares) and ``source_row`` (where the row came from).

Validation runs in two stages so that ingest can route rows to securities in between:
:func:`screen_prices` rejects or merges rows (bad values, duplicates), then :func:`chain_returns`
computes returns along each series and repairs/flags them (gaps, implausible moves).
:func:`validate_prices` runs both, chaining by ticker. Nothing is dropped silently: every row not
accepted as is appears in the report's ``issues`` with a reason code from :data:`REASONS`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from riskstrata.errors import DataValidationError

__all__ = [
    "ISSUE_COLUMNS",
    "RATE_TICKERS",
    "REASONS",
    "IngestReport",
    "as_calendar",
    "chain_returns",
    "default_calendar",
    "parse_dates",
    "read_price_file",
    "row_keys",
    "screen_prices",
    "validate_prices",
]

ValueKind = Literal["price", "return"]

# Reason code → what it means, for reports and the CLI.
REASONS: dict[str, str] = {
    "missing_ticker": "row has no ticker",
    "bad_date": "date missing or not a date",
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
# Yahoo yield series: levels in percent, not prices. They can be zero or negative (2020) and a
# "return" of a yield means nothing, so they are kept as levels with ret NaN.
RATE_TICKERS = frozenset({"^IRX", "^FVX", "^TNX", "^TYX"})
ISSUE_COLUMNS = ["file", "source_row", "date", "ticker", "action", "reason", "detail"]

_ALIASES: dict[str, tuple[str, ...]] = {
    "date": ("date", "datetime", "timestamp", "time", "day", "trade_date", "asof", "as_of"),
    "ticker": ("ticker", "symbol", "tic", "sym"),
    "adj_close": ("adj_close", "adjclose", "adjusted_close", "adj_price", "adjusted_price"),
    "close": ("close", "price", "px_last", "last"),
    "ret": ("ret", "return", "returns", "total_return", "daily_return"),
    "value": ("value",),
    "volume": ("volume", "vol"),
}


# ---------------------------------------------------------------------- the report


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


def row_keys(codes: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """One int64 per (series, day): ``codes`` (n,) non-negative ints, ``dates`` (n,) datetime64.

    Hashing and sorting these is an order of magnitude faster than (string, timestamp) pairs.
    Days since 1970 lie within ±2^19 for every representable date, so they fit in 20 bits.
    """
    days = np.asarray(dates, dtype="datetime64[D]").astype(np.int64)
    return np.asarray(codes, dtype=np.int64) * (1 << 20) + (days + (1 << 19))


# ---------------------------------------------------------------------- reading files


def parse_dates(raw: pd.Series) -> pd.Series:
    """Parse dates to midnight ``datetime64[ns]``; unparsable → NaT. Accepts ISO text, other
    common text formats, ``YYYYMMDD`` integers and datetimes (time zone dropped)."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        out = raw.dt.tz_localize(None)
    elif pd.api.types.is_datetime64_any_dtype(raw.dtype):
        out = raw
    elif pd.api.types.is_numeric_dtype(raw.dtype):
        # Numbers are YYYYMMDD (as in CRSP/French files), never epoch nanoseconds.
        whole = raw.where(raw == np.floor(raw))  # a fractional number is no date
        out = pd.to_datetime(whole.astype("Int64").astype("str"), format="%Y%m%d", errors="coerce")
    else:
        text = raw.astype("str").str.strip()
        # Fast path: one format inferred from the data; only the leftovers go through the
        # slow per-element parser.
        with warnings.catch_warnings():  # "could not infer format": the fallback below handles it
            warnings.simplefilter("ignore", UserWarning)
            out = pd.to_datetime(text, errors="coerce")
        left = out.isna() & text.notna() & (text != "")
        if left.any():
            out = out.astype("datetime64[ns]")
            out[left] = pd.to_datetime(text[left], errors="coerce", format="mixed").astype("datetime64[ns]")
        if isinstance(out.dtype, pd.DatetimeTZDtype):
            out = out.dt.tz_localize(None)
    return out.dt.normalize().astype("datetime64[ns]")


def _canonical(columns: Sequence[Any]) -> dict[Any, str]:
    """Map original column names to canonical ones (first match wins per canonical name)."""
    mapping: dict[Any, str] = {}
    taken: set[str] = set()
    for col in columns:
        norm = str(col).strip().lower().replace(" ", "_").replace("-", "_")
        for canon, names in _ALIASES.items():
            if norm in names and canon not in taken:
                mapping[col] = canon
                taken.add(canon)
                break
    return mapping


def _read_any(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataValidationError(f"price file {path} does not exist")
    if path.stat().st_size == 0:
        raise DataValidationError(f"price file {path} is empty")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, low_memory=False)
    except Exception as exc:  # any reader failure means the file is not what it claims to be
        raise DataValidationError(f"cannot read {path} as CSV or Parquet: {type(exc).__name__}: {exc}") from exc


def read_price_file(path: str | os.PathLike[str], *, value_kind: ValueKind | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet price file into a long price frame.

    Long files: columns ``date, ticker`` and at least one of ``adj_close`` / ``close`` / ``return``
    (or a generic ``value``), optional ``volume``; names are case-insensitive and ``Date``,
    ``Ticker``, ``Adj Close``, ``symbol`` are understood. ``adj_close`` is preferred over ``close``.
    Wide files (no ticker column): first column dates, every other column a ticker; values are
    prices unless ``value_kind="return"``. Empty cells of a wide file are absence, not rows.

    Returns columns ``date, ticker, adj_close, ret, volume, source_row`` (see the module doc);
    ``attrs["value_kind"]`` is ``"price"``, ``"return"`` or ``"both"``. Unparsable values become
    NaN (and are rejected by validation, not here).

    Raises DataValidationError for an empty or unreadable file, or one without a date or value column.
    """
    path = Path(path)
    raw = _read_any(path)
    if raw.empty or raw.shape[1] == 0:
        raise DataValidationError(f"price file {path} has no data rows")
    raw = raw.loc[:, [not str(c).startswith("Unnamed:") for c in raw.columns]]
    names = _canonical(raw.columns)
    if "ticker" in names.values():
        out = _long_frame(path, raw.rename(columns=names), value_kind)
    else:
        out = _wide_frame(path, raw, names, value_kind)
    if out.empty:
        raise DataValidationError(f"price file {path} has no values")
    return out


def _long_frame(path: Path, df: pd.DataFrame, value_kind: ValueKind | None) -> pd.DataFrame:
    if "date" not in df.columns:
        raise DataValidationError(f"price file {path} has no date column (columns: {list(df.columns)})")
    price_col = "adj_close" if "adj_close" in df.columns else ("close" if "close" in df.columns else None)
    ret_col = "ret" if "ret" in df.columns else None
    if "value" in df.columns and price_col is None and ret_col is None:
        price_col, ret_col = (None, "value") if value_kind == "return" else ("value", None)
    if value_kind == "return" and ret_col is None and price_col is not None:
        price_col, ret_col = None, price_col  # the caller says the single value column holds returns
    if price_col is None and ret_col is None:
        raise DataValidationError(
            f"price file {path} has no value column: expected adj_close, close or return "
            f"(columns: {list(df.columns)})"
        )
    n = len(df)
    nan = np.full(n, np.nan)
    out = pd.DataFrame(
        {
            "date": parse_dates(df["date"]),
            "ticker": df["ticker"].astype("str").str.strip().str.upper().replace("", np.nan),
            "adj_close": pd.to_numeric(df[price_col], errors="coerce").astype("float64") if price_col else nan,
            "ret": pd.to_numeric(df[ret_col], errors="coerce").astype("float64") if ret_col else nan,
            "volume": pd.to_numeric(df["volume"], errors="coerce").astype("float64") if "volume" in df else nan,
            "source_row": np.arange(1, n + 1),
        }
    )
    out.attrs["value_kind"] = "both" if price_col and ret_col else ("price" if price_col else "return")
    return out


def _wide_frame(path: Path, raw: pd.DataFrame, names: dict[Any, str], value_kind: ValueKind | None) -> pd.DataFrame:
    date_col = next((c for c, canon in names.items() if canon == "date"), raw.columns[0])
    dates = parse_dates(raw[date_col])
    given = raw[date_col].notna()
    if given.sum() == 0 or dates[given].isna().mean() > 0.5:
        raise DataValidationError(
            f"price file {path} has no date column: no ticker column, so it was read as a wide file, "
            f"but its first column {str(date_col)!r} does not hold dates"
        )
    values = raw.drop(columns=[date_col])
    if values.shape[1] == 0:
        raise DataValidationError(f"price file {path} has a date column but no ticker columns")
    tickers = pd.Index([str(c).strip().upper() for c in values.columns])
    n_rows, n_cols = values.shape
    grid = np.full((n_rows, n_cols), np.nan)
    filled = np.zeros((n_rows, n_cols), dtype=bool)
    for j in range(n_cols):  # column by column: each is one vectorised conversion
        col = values.iloc[:, j]
        if pd.api.types.is_numeric_dtype(col.dtype):
            grid[:, j] = col.to_numpy(dtype="float64", na_value=np.nan)
            filled[:, j] = col.notna().to_numpy()
        else:  # text: blank cells are absence, anything else is a value (maybe unparsable)
            text = col.astype("str").str.strip()
            filled[:, j] = (text.notna() & (text != "")).to_numpy()
            grid[:, j] = pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    present = filled.ravel()  # row-major: (row, column)
    row_no = np.repeat(np.arange(1, n_rows + 1), n_cols)[present]
    col_no = np.tile(np.arange(n_cols), n_rows)[present]
    numbers = grid.ravel()[present]
    # Strings for millions of cells are built in Arrow: an order of magnitude faster than numpy/object.
    tick = pa.array(tickers.to_numpy(dtype=object), pa.string()).take(pa.array(col_no))
    where = pc.binary_join_element_wise(pc.cast(pa.array(row_no), pa.string()), tick, ":")
    nan = np.full(len(row_no), np.nan)
    is_ret = value_kind == "return"
    out = pd.DataFrame(
        {
            "date": dates.to_numpy()[row_no - 1],
            "ticker": tick.to_pandas().astype("str"),
            "adj_close": nan if is_ret else numbers,
            "ret": numbers if is_ret else nan,
            "volume": nan,
            "source_row": where.to_pandas().astype("str"),
        }
    )
    out.attrs["value_kind"] = "return" if is_ret else "price"
    return out


def _value_kind(df: pd.DataFrame) -> str:
    kind = df.attrs.get("value_kind")
    if kind in ("price", "return", "both"):
        return kind
    has_price = "adj_close" in df.columns and df["adj_close"].notna().any()
    has_ret = "ret" in df.columns and df["ret"].notna().any()
    if has_ret:
        return "both" if has_price else "return"
    return "price"


# ---------------------------------------------------------------------- stage 1: screening


def screen_prices(
    long_df: pd.DataFrame, *, source: str | None = None, rate_tickers: Collection[str] = RATE_TICKERS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reject bad rows and resolve duplicates; no returns yet.

    long_df: a long price frame (see module doc); may carry ``file`` (str) and ``file_order``
    (int, later = newer) when several files are screened together, and ``source_row``.
    Rules, first match wins: missing_ticker, bad_date, non_finite, non_positive_price,
    return_below_minus_one (rejected); superseded (rejected: a later file has the key);
    duplicate_conflict (rejected, all copies); duplicate_identical (one copy kept, the others
    repaired = merged into it).

    Rows of ``rate_tickers`` are yield levels: never rejected for being ≤ 0, and they get no return.

    Returns ``(clean, issues)``: clean has columns ``date, ticker, adj_close, ret, ret_given,
    is_level, volume, file, source_row`` (``ret_given``: the file supplied this row's return, so
    it is used as is; ``is_level``: a rate), one row per (date, ticker), original order.
    """
    df = long_df.reset_index(drop=True)
    missing = {"date", "ticker"} - set(df.columns)
    if missing:
        raise DataValidationError(f"price frame lacks column(s) {sorted(missing)} (has {list(df.columns)})")
    n = len(df)
    # The kind of value each row carries: one per frame, or per row when files of different
    # kinds are screened together (column ``value_kind``).
    if "value_kind" in df.columns:
        kind = df["value_kind"].astype("str").to_numpy()
    else:
        kind = np.full(n, _value_kind(df), dtype=object)
    is_price, is_ret, is_both = kind == "price", kind == "return", kind == "both"

    def number(*names: str) -> np.ndarray:
        for name in names:
            if name in df.columns:
                return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        return np.full(n, np.nan)

    rows = pd.DataFrame(
        {
            "date": parse_dates(df["date"]),
            "ticker": df["ticker"].astype("str").str.strip().str.upper().replace("", np.nan),
            "adj_close": number("adj_close", "close"),
            "ret": number("ret"),
            "volume": number("volume"),
            "file": df["file"].astype("str") if "file" in df.columns else source or "<frame>",
            "source_row": df["source_row"] if "source_row" in df.columns else np.arange(1, n + 1),
        }
    )
    rows.loc[is_price, "ret"] = np.nan
    rows.loc[is_ret, "adj_close"] = np.nan
    price, ret = rows["adj_close"].to_numpy(), rows["ret"].to_numpy()
    rows["is_level"] = rows["ticker"].isin(list(rate_tickers)).to_numpy()
    rows["ret_given"] = (is_ret | (is_both & np.isfinite(ret))) & ~rows["is_level"].to_numpy()

    alive = np.ones(n, dtype=bool)
    issues: list[pd.DataFrame] = []

    def reject(mask: np.ndarray, reason: str, detail: Detail) -> None:
        mask = mask & alive
        if mask.any():
            issues.append(issue_rows(rows, mask, "rejected", reason, detail))
            alive[mask] = False

    value = np.where(is_ret, ret, price)
    reject(rows["ticker"].isna().to_numpy(), "missing_ticker", "no ticker")
    reject(rows["date"].isna().to_numpy(), "bad_date", "date missing or not parseable")
    reject(
        ~np.isfinite(value), "non_finite",
        lambda sel, pos: np.where(is_ret[pos], "return", "adj_close") + " is missing, infinite or not a number",
    )  # fmt: skip
    with np.errstate(invalid="ignore"):
        reject(
            ~is_ret & ~rows["is_level"].to_numpy() & (price <= 0), "non_positive_price",
            lambda sel, pos: "adj_close " + sel["adj_close"].astype("str") + " is not positive",
        )  # fmt: skip
        reject(
            ~is_price & (ret <= -1), "return_below_minus_one",
            lambda sel, pos: "return " + sel["ret"].astype("str") + " is at or below -1 (-100%)",
        )  # fmt: skip

    key = ["date", "ticker"]
    keys = np.zeros(n, dtype=np.int64)
    keys[alive] = row_keys(pd.factorize(rows["ticker"][alive])[0], rows["date"][alive].to_numpy("datetime64[ns]"))
    if "file_order" in df.columns and df["file_order"].nunique() > 1:
        order = pd.Series(df["file_order"].to_numpy()[alive])
        newest = np.full(n, -1)
        newest[alive] = order.groupby(keys[alive]).transform("max").to_numpy()
        older = alive & (df["file_order"].to_numpy() < newest)
        reject(older, "superseded", "a later file gives this date and ticker; its value is used")

    live_keys = keys[alive]
    if len(live_keys) < 2 or np.all(live_keys[1:] > live_keys[:-1]):  # sorted by ticker, date: no duplicates
        dup_pos = np.array([], dtype=np.int64)
    else:
        dup_pos = np.flatnonzero(alive)[pd.Series(live_keys).duplicated(keep=False).to_numpy()]
    if len(dup_pos):
        # Only the (usually few) duplicated rows are compared value by value.
        d = rows.iloc[dup_pos]
        variants = d.drop_duplicates([*key, "adj_close", "ret", "volume"]).groupby(key).size()
        conflict_keys = variants[variants > 1].index
        mask = np.zeros(n, dtype=bool)
        mask[dup_pos[pd.MultiIndex.from_frame(d[key]).isin(conflict_keys)]] = True
        reject(mask, "duplicate_conflict", "this date and ticker appear with different values; all copies rejected")
        d = rows.iloc[dup_pos[alive[dup_pos]]]
        twins = d.duplicated(key, keep="first")
        if twins.any():
            first_row = d.groupby(key)["source_row"].transform("first").astype("str")
            mask = np.zeros(n, dtype=bool)
            mask[d.index[twins]] = True
            issues.append(
                issue_rows(
                    rows, mask, "repaired", "duplicate_identical",
                    lambda sel, pos: "identical to source row " + first_row.loc[pos] + "; merged into it",
                )
            )  # fmt: skip
            alive[mask] = False  # merged: accepted, but not a separate row of the clean data

    clean = rows[alive].reset_index(drop=True)
    return clean, concat_issues(issues)


# ---------------------------------------------------------------------- stage 2: returns


def default_calendar(frame: pd.DataFrame, market: str = "SPY") -> np.ndarray:
    """Trading days implied by the data: the dates ``market`` traded where it has data, and the
    union of all dates outside its first..last range (or everywhere, if it is absent).

    frame: columns ``date`` (datetime64) and ``ticker``. Returns sorted unique datetime64[ns].
    """
    dates = frame["date"].dropna()
    mkt = frame.loc[frame["ticker"] == market, "date"].dropna()
    if mkt.empty:
        cal = dates.unique()
    else:
        outside = dates[(dates < mkt.min()) | (dates > mkt.max())]
        cal = np.concatenate([mkt.unique(), outside.unique()])
    return np.unique(np.asarray(cal, dtype="datetime64[ns]"))


def as_calendar(days: Any) -> np.ndarray:
    """Any sequence of dates as a sorted unique datetime64[ns] calendar."""
    return np.unique(parse_dates(pd.Series(list(days))).dropna().to_numpy("datetime64[ns]"))


def chain_returns(
    frame: pd.DataFrame,
    *,
    key: str = "ticker",
    calendar: np.ndarray,
    max_abs_return: float = 0.75,
    update: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compute simple returns ``P_t / P_{t-1} - 1`` along each ``key`` series and check them.

    frame: columns ``key, date, adj_close, ret, ret_given`` [+ ``is_level``] (+ ``ticker, file,
    source_row`` for issues). Rows with ``ret_given`` keep their return; ``is_level`` rows (rates)
    get none. ``update`` (bool, aligned with frame; default all) marks the rows to compute and
    report; other rows are context (e.g. stored data before a new file) and keep their ``ret``.

    - gap: calendar days (``calendar``, sorted datetime64[ns]) missing between a row and the
      previous row of its series. A computed return then spans several days: set to NaN, the
      price kept (repaired). A given return is kept and flagged.
    - implausible_move: ``|ret| > max_abs_return`` → flagged, kept.

    Returns ``(frame, issues)``, the frame grouped by ``key`` (in order of first appearance)
    and sorted by date within each series.
    """
    f = frame.reset_index(drop=True)
    f["_update"] = np.ones(len(f), dtype=bool) if update is None else np.asarray(update, dtype=bool)
    codes = pd.factorize(f[key])[0]
    dates = f["date"].to_numpy(dtype="datetime64[ns]")
    order = np.lexsort((dates, codes))
    f = f.iloc[order].reset_index(drop=True)
    codes, dates = codes[order], dates[order]
    price = f["adj_close"].to_numpy(dtype=float)
    ret = f["ret"].to_numpy(dtype=float).copy()
    given = f["ret_given"].to_numpy(dtype=bool)
    level = f["is_level"].to_numpy(dtype=bool) if "is_level" in f else np.zeros(len(f), dtype=bool)
    upd = f["_update"].to_numpy()

    has_prev = np.zeros(len(f), dtype=bool)
    has_prev[1:] = codes[1:] == codes[:-1]
    prev_price = np.roll(price, 1)
    prev_date = np.roll(dates, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        computed = np.where(has_prev, price / prev_price - 1.0, np.nan)
    cal = np.asarray(calendar, dtype="datetime64[ns]")
    missing = np.where(
        has_prev, np.searchsorted(cal, dates, "left") - np.searchsorted(cal, prev_date, "right"), 0
    )
    gap = has_prev & (missing > 0)

    compute = upd & ~given
    ret[compute] = np.where(gap[compute], np.nan, computed[compute])
    ret[upd & level] = np.nan
    f["ret"] = ret

    reportable = upd & ~level & (f["file"].notna().to_numpy() if "file" in f else False)
    issues = []

    def gap_text(suffix: str) -> Callable[[pd.DataFrame, np.ndarray], pd.Series]:
        def text(sel: pd.DataFrame, pos: np.ndarray) -> pd.Series:
            since = pd.Series(prev_date[pos]).dt.strftime("%Y-%m-%d")
            return pd.Series(missing[pos]).astype("str") + " trading day(s) missing since " + since + suffix
        return text

    if (gap & reportable).any():
        repaired = gap & reportable & ~given
        flagged = gap & reportable & given
        if repaired.any():
            text = gap_text("; the return spans them, set to NaN (price kept)")
            issues.append(issue_rows(f, repaired, "repaired", "gap", text))
        if flagged.any():
            issues.append(issue_rows(f, flagged, "flagged", "gap", gap_text("; the given return is kept")))
    with np.errstate(invalid="ignore"):
        wild = reportable & (np.abs(ret) > max_abs_return)
    if wild.any():
        tail = f" exceeds ±{max_abs_return:.0%}; kept as real data, please check the source"
        issues.append(
            issue_rows(
                f, wild, "flagged", "implausible_move",
                lambda sel, pos: ["one-day return " + f"{r:+.1%}" + tail for r in ret[pos]],
            )
        )  # fmt: skip
    return f.drop(columns="_update"), concat_issues(issues)


# ---------------------------------------------------------------------- both stages


def validate_prices(
    long_df: pd.DataFrame,
    *,
    max_abs_return: float = 0.75,
    trading_calendar: Sequence[Any] | np.ndarray | None = None,
    source: str | None = None,
    rate_tickers: Collection[str] = RATE_TICKERS,
) -> tuple[pd.DataFrame, IngestReport]:
    """Validate a long price frame: :func:`screen_prices`, then :func:`chain_returns` by ticker.

    trading_calendar: the trading days for gap detection; default :func:`default_calendar` of
    the frame's dates (rejected rows included: a day is a trading day even if its value is bad).
    source: the file name to report when ``long_df`` has no ``file`` column.
    rate_tickers: yield series, kept as levels without returns (see :func:`screen_prices`).

    Returns ``(clean, report)``: clean has columns ``date, ticker, adj_close, ret, volume,
    source_row, file``, grouped by ticker and sorted by date within each.
    """
    clean, screened = screen_prices(long_df, source=source, rate_tickers=rate_tickers)
    if trading_calendar is None:
        frame = pd.DataFrame(
            {"date": parse_dates(long_df["date"]), "ticker": long_df["ticker"].astype("str").str.strip().str.upper()}
        )
        calendar = default_calendar(frame)
    else:
        calendar = as_calendar(trading_calendar)
    chained, chain_issues = chain_returns(clean, key="ticker", calendar=calendar, max_abs_return=max_abs_return)
    files = sorted(long_df["file"].astype("str").unique()) if "file" in long_df else [source or "<frame>"]
    report = IngestReport.from_issues(len(long_df), concat_issues([screened, chain_issues]), files)
    out = chained[["date", "ticker", "adj_close", "ret", "volume", "source_row", "file"]]
    return out, report
