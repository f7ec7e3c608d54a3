"""Validating long price frames, with a reason code for every row not taken as is.

Input is a long price frame (see :mod:`riskstrata.data.readers`). Validation runs in two stages
so that ingest can route rows to securities in between: :func:`screen_prices` rejects or merges
rows (bad values, duplicates), then :func:`chain_returns` computes returns along each series and
repairs/flags them (gaps, implausible moves). :func:`validate_prices` runs both, chaining by
ticker. Nothing is dropped silently: every row not accepted as is appears in the report's
``issues`` (see :mod:`riskstrata.data.report`) with a reason code from
:data:`~riskstrata.data.report.REASONS`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
import pandas as pd

from riskstrata.data.readers import parse_date_column, parse_dates
from riskstrata.data.report import Detail, IngestReport, concat_issues, issue_rows
from riskstrata.errors import DataValidationError

__all__ = [
    "RATE_TICKERS",
    "as_calendar",
    "chain_returns",
    "default_calendar",
    "row_keys",
    "screen_prices",
    "ticker_problems",
    "validate_prices",
]

# Yahoo yield series: levels in percent, not prices. They can be zero or negative (2020) and a
# "return" of a yield means nothing, so they are kept as levels with ret NaN.
RATE_TICKERS = frozenset({"^IRX", "^FVX", "^TNX", "^TYX"})
MAX_TICKER_LENGTH = 32  # OCC option symbols are 21; anything longer is a pasted description, not a symbol
_CONTROL = r"[\x00-\x1f\x7f]"


def ticker_problems(tickers: pd.Series) -> np.ndarray:
    """Why each (stripped, upper-case) ticker cannot be a symbol, or None: a control character
    (it forges log and report lines), a space inside, or more than ``MAX_TICKER_LENGTH``
    characters. tickers: (n,) str, NaN = missing (not judged here). Returns (n,) object."""
    # Judged once per distinct ticker: millions of rows carry a few thousand symbols.
    codes, uniques = pd.factorize(pd.Series(tickers, dtype=object).reset_index(drop=True))
    text = pd.Series(uniques, dtype=object).astype("str")
    verdict = np.full(len(text), None, dtype=object)
    for bad, why in [
        (text.str.len().to_numpy() > MAX_TICKER_LENGTH, f"is longer than {MAX_TICKER_LENGTH} characters"),
        (text.str.contains(r"\s", regex=True).to_numpy(), "contains a space"),
        (text.str.contains(_CONTROL, regex=True).to_numpy(), "contains a control character"),
    ]:
        for i in np.flatnonzero(bad):
            verdict[i] = f"ticker {ascii(text.iloc[i][:40])} {why}"
    out = np.full(len(codes), None, dtype=object)
    known = codes >= 0  # -1: missing ticker, judged elsewhere
    out[known] = verdict[codes[known]]
    return out


def row_keys(codes: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """One int64 per (series, day): ``codes`` (n,) non-negative ints, ``dates`` (n,) datetime64.

    Hashing and sorting these is an order of magnitude faster than (string, timestamp) pairs.
    Days since 1970 lie within ±2^19 for every representable date, so they fit in 20 bits.
    """
    days = np.asarray(dates, dtype="datetime64[D]").astype(np.int64)
    return np.asarray(codes, dtype=np.int64) * (1 << 20) + (days + (1 << 19))


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

    long_df: a long price frame (see :mod:`riskstrata.data.readers`); may carry ``file`` (str)
    and ``file_order`` (int, later = newer) when several files are screened together, and
    ``source_row``.
    Rules, first match wins: missing_ticker, bad_ticker (control character, space, over 32
    characters), date_out_of_range (before 1900 or after tomorrow), bad_date, non_finite,
    non_positive_price, return_below_minus_one (rejected); bad_volume (negative or not a number:
    repaired, volume stored as missing); superseded (rejected: a later file has the key);
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

    if "date_reason" in df.columns:  # read by readers.read_price_file: one format per file already applied
        dates = parse_dates(df["date"])
        date_reason, date_detail = df["date_reason"].to_numpy(dtype=object), df["date_detail"].to_numpy(dtype=object)
    else:
        parsed = parse_date_column(df["date"], what=f"date column of {source or 'the frame'}")
        dates, date_reason, date_detail = parsed.dates, parsed.reason.to_numpy(), parsed.detail.to_numpy()
    volume = number("volume")
    rows = pd.DataFrame(
        {
            "date": dates,
            "ticker": df["ticker"].astype("str").str.strip().str.upper().replace("", np.nan),
            "adj_close": number("adj_close", "close"),
            "ret": number("ret"),
            "volume": volume,
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
    bad_ticker = ticker_problems(rows["ticker"])
    reject(pd.notna(bad_ticker), "bad_ticker", lambda sel, pos: bad_ticker[pos])
    reject(date_reason == "date_out_of_range", "date_out_of_range", lambda sel, pos: date_detail[pos])
    reject(
        rows["date"].isna().to_numpy(), "bad_date",
        lambda sel, pos: np.where(pd.notna(date_detail[pos]), date_detail[pos], "date missing or not parseable"),
    )  # fmt: skip
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

    # A bad volume does not make a bad price: the row is kept, its volume stored as missing.
    if "volume" in df.columns:
        given = df["volume"].notna().to_numpy().copy()
        if not pd.api.types.is_numeric_dtype(df["volume"].dtype):  # text: a blank cell is absence
            given &= (df["volume"].astype("str").str.strip() != "").to_numpy()
        with np.errstate(invalid="ignore"):
            bad_volume = alive & given & ~(volume >= 0)
        if bad_volume.any():
            raw_volume = df["volume"].astype("str").to_numpy()
            issues.append(issue_rows(
                rows, bad_volume, "repaired", "bad_volume",
                lambda sel, pos: [f"volume {ascii(v[:40])} is negative or not a number; stored as missing"
                                  for v in raw_volume[pos]],
            ))  # fmt: skip
            rows.loc[bad_volume, "volume"] = np.nan

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
    - ret_inconsistent: a given return that disagrees with the move of the given prices by more
      than 0.1 percentage point plus two cents of rounding → flagged, the given return kept.

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
    with np.errstate(divide="ignore", invalid="ignore"):
        tolerance = 1e-3 + 0.02 / np.abs(prev_price)
        off = reportable & given & has_prev & ~gap & np.isfinite(computed) & (np.abs(ret - computed) > tolerance)
    if off.any():
        issues.append(
            issue_rows(
                f, off, "flagged", "ret_inconsistent",
                lambda sel, pos: [f"given return {r:+.2%} but adj_close moves {c:+.2%} ({p:g} → {q:g}); "
                                  "the given return is kept" for r, c, p, q in
                                  zip(ret[pos], computed[pos], prev_price[pos], price[pos])],
            )
        )  # fmt: skip
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
