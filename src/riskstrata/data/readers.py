"""Reading CSV and Parquet price files into a long price frame.

Shapes: a *long price frame* has one row per (date, ticker) observation with columns
``date`` (datetime64[ns], midnight), ``ticker`` (str, upper case), ``adj_close`` (float, price
units, NaN = not given), ``ret`` (float, simple daily return as a decimal, 0.01 = 1%, NaN = not
given), optional ``volume`` (float, shares) and ``source_row`` (where the row came from).

Reading only reshapes: unparsable values become NaN here and are judged by
:mod:`riskstrata.data.validation`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from riskstrata.errors import DataValidationError

__all__ = [
    "MIN_PLAUSIBLE_DATE",
    "ParsedDates",
    "ValueKind",
    "date_format",
    "latest_plausible_date",
    "parse_date_column",
    "parse_dates",
    "read_price_file",
]

ValueKind = Literal["price", "return"]

_ALIASES: dict[str, tuple[str, ...]] = {
    "date": ("date", "datetime", "timestamp", "time", "day", "trade_date", "asof", "as_of"),
    "ticker": ("ticker", "symbol", "tic", "sym"),
    "adj_close": ("adj_close", "adjclose", "adjusted_close", "adj_price", "adjusted_price"),
    "close": ("close", "price", "px_last", "last"),
    "ret": ("ret", "return", "returns", "total_return", "daily_return"),
    "value": ("value",),
    "volume": ("volume", "vol"),
}


# Dates outside [1900-01-01, tomorrow] are not market data: a typo (2999 for 1999), a placeholder
# (1900-01-00 in a spreadsheet), or a time zone pushing "today" one day ahead is the most to allow.
MIN_PLAUSIBLE_DATE = pd.Timestamp("1900-01-01")

# The format the caller named (``--date-format``) for readers that take no parameter for it.
_DATE_FORMAT: ContextVar[str | None] = ContextVar("riskstrata_date_format", default=None)

_ISO = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?$")
_YEAR_FIRST = re.compile(r"^\d{4}(?P<sep>[/.])\d{1,2}(?P=sep)\d{1,2}$")
_COMPACT = re.compile(r"^\d{8}$")
# day/month or month/day, then the year: the order is what a file has to prove.
_DAY_MONTH = re.compile(r"^(?P<a>\d{1,2})(?P<sep>[/.-])(?P<b>\d{1,2})(?P=sep)(?P<year>\d{4}|\d{2})$")


def latest_plausible_date() -> pd.Timestamp:
    """Tomorrow (UTC): the latest date a row of market data can carry."""
    return pd.Timestamp.now(tz="UTC").normalize().tz_localize(None) + pd.Timedelta(days=1)


@contextmanager
def date_format(fmt: str | None) -> Iterator[None]:
    """Within the block, readers that find no format argument parse dates with ``fmt``
    (a ``strptime`` format such as ``%d/%m/%Y``; None: detect it from the file)."""
    token = _DATE_FORMAT.set(fmt)
    try:
        yield
    finally:
        _DATE_FORMAT.reset(token)


class ParsedDates(NamedTuple):
    """A parsed date column: ``dates`` datetime64[ns] at midnight (NaT = missing or rejected),
    ``reason`` (object: None, ``"bad_date"`` or ``"date_out_of_range"``) and ``detail`` (object:
    None or the text for the ingest report), all aligned with the input; ``format`` is the one
    format used for the whole column."""

    dates: pd.Series
    reason: pd.Series
    detail: pd.Series
    format: str


def _to_datetime(values: pd.Series, fmt: str) -> pd.Series:
    """``values`` (text) parsed with one format; failures NaT; time zones dropped (local wall time)."""
    try:
        out = pd.to_datetime(values, format=fmt, errors="coerce")
    except ValueError:  # mixed UTC offsets in one column: the wall date is still each row's date
        out = pd.to_datetime(values.str.replace(r"(?:Z|[+-]\d{2}:?\d{2})$", "", regex=True), format=fmt,
                             errors="coerce")
    if isinstance(out.dtype, pd.DatetimeTZDtype):
        out = out.dt.tz_localize(None)
    return out


def _order_format(values: pd.Series, candidates: list[str], what: str) -> str:
    """The one candidate format the values prove (a value only it can read); raises when none
    or several do — the order of day and month is never guessed."""
    parsed = {fmt: _to_datetime(values, fmt).notna().to_numpy() for fmt in candidates}
    proven = [f for f in candidates if (parsed[f] & ~np.logical_or.reduce([parsed[g] for g in candidates if g != f])).any()]
    if len(proven) == 1:
        return proven[0]
    example = values.iloc[0]
    hint = " or ".join(candidates)
    if not proven:
        raise DataValidationError(
            f"{what}: dates such as {example!r} could be day-first or month-first and no value in the file settles "
            f"it (none has a day above 12); pass the format, e.g. --date-format {hint}"
        )
    samples = {f: values[parsed[f] & ~np.logical_or.reduce([parsed[g] for g in candidates if g != f])].iloc[0]
               for f in proven}
    raise DataValidationError(
        f"{what}: the file mixes date orders ({', '.join(f'{v!r} reads only as {f}' for f, v in samples.items())}); "
        f"one format per file: fix the file or pass --date-format"
    )


def _detect_format(uniques: pd.Series, what: str) -> str:
    """The one format of a column of distinct date texts: the kind most values share (ISO,
    year-first, YYYYMMDD, day/month, or a text format pandas recognises), its day/month order
    proven by the file. Values of other kinds are then rejected, not read another way."""
    def kind_of(value: str) -> str:
        if _ISO.match(value):
            return "ISO8601"
        if m := _YEAR_FIRST.match(value):
            return f"%Y{m['sep']}%m{m['sep']}%d"
        if _COMPACT.match(value):
            return "%Y%m%d"
        if m := _DAY_MONTH.match(value):
            return f"dm{m['sep']}{len(m['year'])}"
        return "other"

    kinds = pd.Series([kind_of(str(v)) for v in uniques], index=uniques.index, dtype=object)
    kind = kinds.value_counts().index[0]
    mine = uniques[kinds == kind]
    if kind.startswith("dm"):
        sep, year = kind[2], "%Y" if kind[3] == "4" else "%y"
        return _order_format(mine, [f"%d{sep}%m{sep}{year}", f"%m{sep}%d{sep}{year}"], what)
    if kind != "other":
        return kind
    from pandas.tseries.api import guess_datetime_format

    candidates = []
    for dayfirst in (False, True):
        fmt = guess_datetime_format(str(mine.iloc[0]), dayfirst=dayfirst)
        if fmt is not None and fmt not in candidates:
            candidates.append(fmt)
    if not candidates:
        return ""  # no date format at all: every value is rejected (or the column is not dates)
    return candidates[0] if len(candidates) == 1 else _order_format(mine, candidates, what)


def parse_date_column(
    raw: pd.Series, date_format: str | None = None, *, what: str = "date column", plausible: bool = True
) -> ParsedDates:
    """Parse a column of dates with ONE format for the whole column, never a per-row guess.

    raw: text, YYYYMMDD numbers, or datetimes (time zone dropped). date_format: a ``strptime``
    format; None takes the one set by :func:`date_format`, else detects it: ISO ``YYYY-MM-DD``
    as is; ``DD/MM/YYYY`` vs ``MM/DD/YYYY`` (also ``.`` and ``-``) only when some value proves the
    order (a field above 12), otherwise DataValidationError asking for ``--date-format``.
    Values not in the column's format are ``bad_date``; with ``plausible`` dates before
    :data:`MIN_PLAUSIBLE_DATE` or after tomorrow are ``date_out_of_range`` (NaT, with the value).
    what: names the column and file in errors.
    """
    raw = pd.Series(raw).reset_index(drop=True)
    n = len(raw)
    fmt = date_format or _DATE_FORMAT.get()
    detail = pd.Series([None] * n, dtype=object)
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        out, used = raw.dt.tz_localize(None), "datetime"
    elif pd.api.types.is_datetime64_any_dtype(raw.dtype):
        out, used = raw, "datetime"
    elif pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        # Numbers are YYYYMMDD (as in CRSP/French files), never epoch nanoseconds.
        whole = raw.where(raw == np.floor(raw))  # a fractional number is no date
        out, used = pd.to_datetime(whole.astype("Int64").astype("str"), format="%Y%m%d", errors="coerce"), "%Y%m%d"
    else:
        text = raw.astype("str").str.strip().where(raw.notna(), "")
        codes, uniques = pd.factorize(text)
        uniques = pd.Series(uniques, dtype=object)
        given = uniques != ""
        used = fmt or (_detect_format(uniques[given].reset_index(drop=True), what) if given.any() else "ISO8601")
        parsed_u = _to_datetime(uniques, used) if used else pd.Series(pd.NaT, index=uniques.index)
        out = pd.Series(parsed_u.to_numpy()[codes], dtype=parsed_u.dtype if used else "datetime64[ns]")
        bad_u = (given & parsed_u.isna()).to_numpy()
        if bad_u.any():
            shown = used or "no recognisable date format"
            texts = np.where(bad_u, [f"{u!r} is not a date in the file's format ({shown}); one format per file"
                                     if b else None for u, b in zip(uniques, bad_u)], None)
            detail = pd.Series(texts[codes], dtype=object)
    reason = pd.Series(np.where(detail.notna(), "bad_date", None), dtype=object)
    if plausible:
        day = out.dt.normalize()
        high = latest_plausible_date()
        far = (day < MIN_PLAUSIBLE_DATE) | (day > high)
        if far.any():
            texts = "date " + day[far].dt.strftime("%Y-%m-%d") + f" is outside {MIN_PLAUSIBLE_DATE:%Y-%m-%d} … {high:%Y-%m-%d}"
            detail[far.to_numpy()] = texts.to_numpy()
            reason[far.to_numpy()] = "date_out_of_range"
            out = out.where(~far)
    # Outside datetime64[ns] (1677 … 2262) there is nothing to store: NaT (rejected above if plausible).
    lo, hi = pd.Timestamp.min, pd.Timestamp.max
    out = out.where((out >= lo) & (out <= hi)) if len(out) else out
    dates = out.dt.normalize().astype("datetime64[ns]")
    return ParsedDates(dates, reason, detail, used)


def parse_dates(raw: pd.Series, date_format: str | None = None) -> pd.Series:
    """Parse dates to midnight ``datetime64[ns]``; unparsable → NaT. One format per column (see
    :func:`parse_date_column`; ambiguous day/month order raises), no plausibility bound."""
    parsed = parse_date_column(pd.Series(raw), date_format, plausible=False)
    return parsed.dates.set_axis(pd.Series(raw).index)


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


def read_price_file(
    path: str | os.PathLike[str], *, value_kind: ValueKind | None = None, date_format: str | None = None
) -> pd.DataFrame:
    """Read a CSV or Parquet price file into a long price frame.

    Long files: columns ``date, ticker`` and at least one of ``adj_close`` / ``close`` / ``return``
    (or a generic ``value``), optional ``volume``; names are case-insensitive and ``Date``,
    ``Ticker``, ``Adj Close``, ``symbol`` are understood. ``adj_close`` is preferred over ``close``.
    Wide files (no ticker column): first column dates, every other column a ticker; values are
    prices unless ``value_kind="return"``. Empty cells of a wide file are absence, not rows.

    Dates: one format for the whole file (``date_format``, else detected; see
    :func:`parse_date_column`): a day/month order the file does not prove raises.

    Returns columns ``date, ticker, adj_close, ret, volume, source_row, date_reason, date_detail``
    (see the module doc; ``volume`` as given, judged by validation; ``date_reason``/``date_detail``
    say why a date is NaT); ``attrs["value_kind"]`` is ``"price"``, ``"return"`` or ``"both"``.
    Unparsable values become NaN (and are rejected by validation, not here).

    Raises DataValidationError for an empty or unreadable file, one without a date or value column,
    or a file without a ticker column whose other columns hold text (not a wide file of values).
    """
    path = Path(path)
    raw = _read_any(path)
    if raw.empty or raw.shape[1] == 0:
        raise DataValidationError(f"price file {path} has no data rows")
    raw = raw.loc[:, [not str(c).startswith("Unnamed:") for c in raw.columns]]
    names = _canonical(raw.columns)
    if "ticker" in names.values():
        out = _long_frame(path, raw.rename(columns=names), value_kind, date_format)
    else:
        out = _wide_frame(path, raw, names, value_kind, date_format)
    if out.empty:
        raise DataValidationError(f"price file {path} has no values")
    return out


def _long_frame(path: Path, df: pd.DataFrame, value_kind: ValueKind | None, date_format: str | None) -> pd.DataFrame:
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
    dates = parse_date_column(df["date"], date_format, what=f"date column of {path}")
    out = pd.DataFrame(
        {
            "date": dates.dates.to_numpy(),
            "ticker": df["ticker"].astype("str").str.strip().str.upper().replace("", np.nan),
            "adj_close": pd.to_numeric(df[price_col], errors="coerce").astype("float64") if price_col else nan,
            "ret": pd.to_numeric(df[ret_col], errors="coerce").astype("float64") if ret_col else nan,
            # As given: a volume that is not a number is reported by validation, not silently NaN.
            "volume": df["volume"].to_numpy() if "volume" in df else nan,
            "source_row": np.arange(1, n + 1),
            "date_reason": dates.reason.to_numpy(),
            "date_detail": dates.detail.to_numpy(),
        }
    )
    out.attrs["value_kind"] = "both" if price_col and ret_col else ("price" if price_col else "return")
    return out


def _wide_frame(
    path: Path, raw: pd.DataFrame, names: dict[Any, str], value_kind: ValueKind | None, date_format: str | None
) -> pd.DataFrame:
    date_col = next((c for c, canon in names.items() if canon == "date"), raw.columns[0])
    parsed = parse_date_column(raw[date_col], date_format, what=f"date column {str(date_col)!r} of {path}")
    # Out-of-range dates are still dates: they count as such when telling a wide file from another.
    dates = parsed.dates.where(parsed.reason != "date_out_of_range", pd.Timestamp("1900-01-01"))
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
            # Not one number in a filled column: a label column (a name), not a ticker's series.
            if filled[:, j].any() and np.isnan(grid[filled[:, j], j]).all():
                raise DataValidationError(
                    f"price file {path} has no ticker column (ticker or symbol), so it was read as a wide file "
                    f"(one column per ticker), but column {str(values.columns[j])!r} holds text, not "
                    f"{'returns' if value_kind == 'return' else 'prices'}: a long file needs a ticker column"
                )
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
            "date": parsed.dates.to_numpy()[row_no - 1],
            "ticker": tick.to_pandas().astype("str"),
            "adj_close": nan if is_ret else numbers,
            "ret": numbers if is_ret else nan,
            "volume": nan,
            "source_row": where.to_pandas().astype("str"),
            "date_reason": parsed.reason.to_numpy()[row_no - 1],
            "date_detail": parsed.detail.to_numpy()[row_no - 1],
        }
    )
    out.attrs["value_kind"] = "return" if is_ret else "price"
    return out
