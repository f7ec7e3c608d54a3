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
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from riskstrata.errors import DataValidationError

__all__ = [
    "ValueKind",
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
