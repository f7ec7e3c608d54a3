"""Ingest price and classification files into the store; read the returns matrix back.

Tables written (all replaced atomically, see :class:`~riskstrata.data.store.Store`):

- ``prices``: ``security_id, ticker, date, adj_close, ret, volume``, one row per
  (security_id, date), sorted by date in blocks of a row group, each block by security then date:
  a read of the days after a date (a daily update's) skips the row groups before it by their
  min/max dates, and a security's rows sit together in each group. ``ret`` is the simple
  daily return (decimal), NaN where unknown (first day, after a gap). Its footer keeps the
  per-date row sums of the input fingerprint (:mod:`riskstrata.data.row_sums`).
- ``classifications``: ``security_id, ticker, valid_from, valid_to, gics_sector,
  gics_sub_industry, sector_etf, subsector_etf, source``, dated intervals per security.
- ``ingest_issues``: every issue of every run, with ``run_id``, ``ingested_at`` (UTC), ``kind``.
- ``securities``: the security master, extended with tickers first seen in ingested data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskstrata.data.master import MIN_DATE, SecurityMaster, clip_intervals, guess_asset_type
from riskstrata.data.store import ROW_GROUP_ROWS, Store, date_range_clause
from riskstrata.data.readers import ValueKind, parse_date_column, parse_dates, read_price_file
from riskstrata.data.report import IngestReport, append_issues, concat_issues, issue_rows, new_run_id
from riskstrata.data.validation import (
    RATE_TICKERS,
    as_calendar,
    chain_returns,
    default_calendar,
    row_keys,
    screen_prices,
    ticker_problems,
)
from riskstrata.errors import DataValidationError

__all__ = [
    "CLASSIFICATION_COLUMNS",
    "PRICE_COLUMNS",
    "ingest_classifications",
    "ingest_prices",
    "load_returns",
    "read_classification_file",
]

PRICE_COLUMNS = ["security_id", "ticker", "date", "adj_close", "ret", "volume"]
CLASS_FIELDS = ["gics_sector", "gics_sub_industry", "sector_etf", "subsector_etf"]
CLASSIFICATION_COLUMNS = ["security_id", "ticker", "valid_from", "valid_to", *CLASS_FIELDS, "source"]
_CLASS_ALIASES: dict[str, tuple[str, ...]] = {
    "ticker": ("ticker", "symbol"),
    "gics_sector": ("gics_sector", "sector"),
    "gics_sub_industry": ("gics_sub_industry", "sub_industry", "subindustry", "gics_subindustry"),
    "sector_etf": ("sector_etf",),
    "subsector_etf": ("subsector_etf", "sub_sector_etf"),
    "valid_from": ("valid_from",),
    "valid_to": ("valid_to",),
    "snapshot_date": ("snapshot_date", "date", "as_of", "asof"),
}
PathLike = str | os.PathLike[str]


# ---------------------------------------------------------------------- shared helpers


def ensure_and_resolve(
    master: SecurityMaster, tickers: pd.Series, dates: pd.Series, hint: Any
) -> tuple[SecurityMaster, pd.Series]:
    """Security id of each (ticker, date) row, creating ticker-based securities for rows no
    record covers. Unresolved rows are grouped by the gap between existing records they fall
    in, so a recycled ticker's rows never stretch one new security across another's dates."""
    sid = master.resolve_rows(tickers, dates)
    todo = sid.isna().to_numpy()
    if not todo.any():
        return master, sid
    rows = pd.DataFrame(
        {
            "ticker": pd.Series(tickers).iloc[todo].astype("str").to_numpy(),
            "date": parse_dates(pd.Series(dates).iloc[todo]).to_numpy(),
        }
    )
    recs = master.records[["ticker", "valid_from"]].sort_values("valid_from")
    rows = pd.merge_asof(
        rows.sort_values("date"), recs.rename(columns={"valid_from": "after"}),
        left_on="date", right_on="after", by="ticker", direction="backward",
    )  # fmt: skip
    rows["after"] = rows["after"].fillna(pd.Timestamp("1678-01-01"))
    spans = rows.groupby(["ticker", "after"], as_index=False)["date"].agg(first_date="min", last_date="max")
    master = master.ensure_tickers(spans[["ticker", "first_date", "last_date"]], asset_type_hint=hint)
    sid[todo] = master.resolve_rows(pd.Series(tickers).iloc[todo], pd.Series(dates).iloc[todo]).to_numpy()
    return master, sid


# ---------------------------------------------------------------------- prices


def _date_blocks_by_security(prices: pd.DataFrame) -> np.ndarray:
    """The stored order of the prices rows: by date, cut into blocks of the store's row-group
    size (:data:`~riskstrata.data.store.ROW_GROUP_ROWS`), each block by security, then date.

    Each row group then holds a range of dates, so a date filter (the days after a model's end,
    a trailing window) skips the groups outside it by their min/max dates; inside a group a
    security's rows are adjacent, so a read of one security's history (the API's per-ticker
    routes) decodes little of each group. (By date alone, that read cost ~4× more.)
    """
    sid = pd.factorize(prices["security_id"], sort=True)[0]
    dates = prices["date"].to_numpy("datetime64[ns]")
    by_date = np.lexsort((sid, dates))
    block = np.arange(len(by_date)) // ROW_GROUP_ROWS
    return by_date[np.lexsort((dates[by_date], sid[by_date], block))]


def ingest_prices(
    store: Store,
    paths: PathLike | Iterable[PathLike],
    *,
    max_abs_return: float = 0.75,
    etf_tickers: set[str] | None = None,
    value_kind: ValueKind | None = None,
    trading_calendar: Any = None,
    rate_tickers: Collection[str] = RATE_TICKERS,
    date_format: str | None = None,
) -> IngestReport:
    """Read, validate and upsert price files into table ``prices``.

    paths: one file or several; a later file wins over an earlier one for the same
    (date, ticker) (the earlier row is reported ``superseded``).
    etf_tickers: tickers to register as ETFs when first seen; otherwise ``^`` symbols are
    rates/indices and everything else a stock.
    value_kind: ``"return"`` for wide files (or single-value files) holding returns.
    trading_calendar: trading days for gap detection; default SPY's dates (in the files or the
    store) where SPY has data, else every date seen.
    rate_tickers: yield series (``^IRX`` …), stored as levels in ``adj_close`` with ``ret`` NaN.
    date_format: the ``strptime`` format of every file's dates (``%d/%m/%Y``); default: detected
    per file, ISO as is, a day/month order only when the file proves it (else an error asking
    for it). A row is never stored on a guessed day.

    Each row goes to the security holding its ticker on its date (a recycled ticker's rows
    land on two securities). Rows replace stored rows with the same (security_id, date); the
    returns at the seams with stored data (the first new day, the first stored day after new
    data) are recomputed from prices, so incremental and backfill ingests chain correctly.
    Ingesting the same files again leaves ``prices`` unchanged. Issues are appended to
    ``ingest_issues``.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise DataValidationError("no price files given")
    frames = []
    for order, path in enumerate(paths):
        frame = read_price_file(path, value_kind=value_kind, date_format=date_format)
        frame["value_kind"] = frame.attrs["value_kind"]  # per row: files of different kinds mix
        frame["file"] = str(path)
        frame["file_order"] = order
        frames.append(frame)
    raw = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    raw.attrs = {}
    clean, screen_issues = screen_prices(raw, rate_tickers=rate_tickers)

    hint: Callable[[str], str] | None = None
    if etf_tickers:
        etfs = {t.upper() for t in etf_tickers}
        hint = lambda t: "etf" if t in etfs else guess_asset_type(t)  # noqa: E731
    master = SecurityMaster.from_store(store)
    master, sid = ensure_and_resolve(master, clean["ticker"], clean["date"], hint)
    clean["security_id"] = sid.array

    stored = store.read_table("prices") if store.has_table("prices") else pd.DataFrame(columns=PRICE_COLUMNS)
    stored = stored.astype({"security_id": "str", "ticker": "str", "date": "datetime64[ns]"})
    if trading_calendar is None:
        seen = pd.concat([raw[["date", "ticker"]], stored[["date", "ticker"]]], ignore_index=True)
        calendar = default_calendar(seen)
    else:
        calendar = as_calendar(trading_calendar)

    # (security_id, date) as int64 keys: set operations on millions of rows in a fraction of a second.
    codes = pd.factorize(pd.concat([stored["security_id"], clean["security_id"]], ignore_index=True))[0]
    code_old, code_new = codes[: len(stored)], codes[len(stored) :]
    affected = pd.Series(code_old).isin(np.unique(code_new)).to_numpy()
    replaced = affected & pd.Series(row_keys(code_old, stored["date"].to_numpy("datetime64[ns]"))).isin(
        row_keys(code_new, clean["date"].to_numpy("datetime64[ns]"))
    ).to_numpy()
    context = stored[affected & ~replaced].assign(
        ret_given=lambda d: d["adj_close"].isna(),
        is_level=lambda d: d["ticker"].isin(list(rate_tickers)),
        file=None,
        source_row=None,
        _new=False,
    )
    combined = pd.concat([context, clean.assign(_new=True)], ignore_index=True)
    # Recompute new rows and the stored row right after each new row (its previous price changed).
    is_new = combined["_new"].to_numpy(dtype=bool)
    codes = pd.factorize(combined["security_id"])[0]
    order = np.lexsort((combined["date"].to_numpy("datetime64[ns]"), codes))
    after_new = np.zeros(len(combined), dtype=bool)
    same = codes[order][1:] == codes[order][:-1]
    after_new[order[1:]] = same & is_new[order][:-1] & ~is_new[order][1:]
    chained, chain_issues = chain_returns(
        combined, key="security_id", calendar=calendar, max_abs_return=max_abs_return, update=is_new | after_new
    )

    prices = pd.concat([stored[~affected], chained[PRICE_COLUMNS]], ignore_index=True)
    prices = prices.astype({"security_id": "str", "ticker": "str", "date": "datetime64[ns]",
                            "adj_close": "float64", "ret": "float64", "volume": "float64"})  # fmt: skip
    prices = prices.take(_date_blocks_by_security(prices)).reset_index(drop=True)

    report = IngestReport.from_issues(len(raw), concat_issues([screen_issues, chain_issues]), [str(p) for p in paths])
    report.run_id = new_run_id()
    master.to_store(store)  # first, so prices never name a security the store does not know
    store.write_table("prices", prices)
    append_issues(store, report, "prices")
    return report


def load_returns(
    store: Store,
    start: Any = None,
    end: Any = None,
    security_ids: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Daily returns as a (dates × security_id) float64 matrix, NaN = missing.

    start, end: inclusive date bounds (optional); security_ids: restrict to these (optional).
    The filters are pushed into the Parquet scan by DuckDB.
    """
    where, params = date_range_clause(start, end)
    if security_ids is not None:
        ids = [str(s) for s in security_ids]
        if not ids:
            return pd.DataFrame(dtype="float64")
        where.append(f"security_id IN ({', '.join('?' * len(ids))})")
        params.extend(ids)
    long = store.read_table(
        "prices", columns=["date", "security_id", "ret"], where=" AND ".join(where) or None, params=params
    )
    wide = long.pivot(index="date", columns="security_id", values="ret").astype("float64")
    wide.index = pd.DatetimeIndex(wide.index, name="date")
    return wide.sort_index().sort_index(axis=1)


# ---------------------------------------------------------------------- classifications


def read_classification_file(path: PathLike, date_format: str | None = None) -> pd.DataFrame:
    """Read a GICS / sector-ETF classification file (CSV or Parquet).

    Columns (case-insensitive): ``ticker`` (or ``symbol``) and any of ``gics_sector``,
    ``gics_sub_industry``, ``sector_etf``, ``subsector_etf``; dating either ``valid_from`` [+
    ``valid_to``] (intervals), or ``snapshot_date`` / ``date`` (dated snapshots), or none
    (undated: taken as valid for all dates). Other columns are ignored.

    Returns ``ticker, <the four fields>, source_row`` plus the dating columns found
    (``valid_from, valid_to`` or ``snapshot_date``, parsed to datetime64[ns], one format per
    column: see :func:`~riskstrata.data.readers.parse_date_column`) and, when dated,
    ``date_reason, date_detail`` (why the dating date is NaT). ``valid_from`` and
    ``snapshot_date`` must lie in 1900 … tomorrow; ``valid_to`` may lie in the future.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise DataValidationError(f"classification file {path} is missing or empty")
    try:
        raw = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path, dtype=str)
    except Exception as exc:  # any reader failure means the file is not what it claims to be
        raise DataValidationError(f"cannot read classification file {path}: {type(exc).__name__}: {exc}") from exc
    names: dict[Any, str] = {}
    for col in raw.columns:
        norm = str(col).strip().lower().replace(" ", "_").replace("-", "_")
        for canon, aliases in _CLASS_ALIASES.items():
            if norm in aliases and canon not in names.values():
                names[col] = canon
                break
    df = raw[list(names)].rename(columns=names)
    if "ticker" not in df.columns:
        raise DataValidationError(f"classification file {path} has no ticker column (columns: {list(raw.columns)})")
    fields = [c for c in CLASS_FIELDS if c in df.columns]
    if not fields:
        raise DataValidationError(
            f"classification file {path} has none of the columns {CLASS_FIELDS} (columns: {list(raw.columns)})"
        )
    out = pd.DataFrame({"ticker": df["ticker"].astype("str").str.strip().str.upper().replace("", np.nan)})
    for c in CLASS_FIELDS:
        given = df[c] if c in df else pd.Series(np.nan, index=df.index)
        out[c] = given.astype("str").str.strip().replace("", np.nan)
    for c in ("sector_etf", "subsector_etf"):
        out[c] = out[c].str.upper()
    dating = "valid_from" if "valid_from" in df.columns else ("snapshot_date" if "snapshot_date" in df.columns else None)
    if dating is not None:
        parsed = parse_date_column(df[dating], date_format, what=f"{dating} column of {path}")
        out[dating] = parsed.dates.to_numpy()
        out["date_reason"], out["date_detail"] = parsed.reason.to_numpy(), parsed.detail.to_numpy()
    if dating == "valid_from":
        to = df["valid_to"] if "valid_to" in df else pd.Series(pd.NaT, index=df.index)
        out["valid_to"] = parse_date_column(to, date_format, what=f"valid_to column of {path}",
                                            plausible=False).dates.to_numpy()
    out["source_row"] = np.arange(1, len(out) + 1)
    return out


def _class_rejections(df: pd.DataFrame, date_col: str | None) -> tuple[np.ndarray, np.ndarray, list[pd.DataFrame]]:
    """Screen classification rows. Returns ``(present, accepted, issues)``: *present* rows show
    a ticker on a valid date, once per (ticker, date) (even without a classification they break
    a run of snapshots); *accepted* rows also carry a classification.

    Rules: missing_ticker, bad_date, no_classification (rejected); the same ticker and date
    twice: with different classifications all copies are rejected (duplicate_conflict), with
    identical ones the extra copies are merged (duplicate_identical, repaired).
    """
    n = len(df)
    rows = df.assign(date=df[date_col] if date_col else pd.NaT)
    no_date = df[date_col].isna().to_numpy() if date_col else np.zeros(n, dtype=bool)
    if date_col == "valid_from":
        no_date = no_date | (df["valid_to"] < df["valid_from"]).to_numpy()
    reason_of = df["date_reason"].to_numpy(dtype=object) if "date_reason" in df else np.full(n, None, dtype=object)
    detail_of = df["date_detail"].to_numpy(dtype=object) if "date_detail" in df else np.full(n, None, dtype=object)
    bad_ticker = ticker_problems(df["ticker"])
    alive = np.ones(n, dtype=bool)
    issues = []
    present = alive
    for reason, bad, detail in [
        ("missing_ticker", df["ticker"].isna().to_numpy(), "no ticker"),
        ("bad_ticker", pd.notna(bad_ticker), lambda sel, pos: bad_ticker[pos]),
        ("date_out_of_range", reason_of == "date_out_of_range", lambda sel, pos: detail_of[pos]),
        ("bad_date", no_date, lambda sel, pos: np.where(pd.notna(detail_of[pos]), detail_of[pos],
                                                        f"{date_col} missing, not a date, or after valid_to")),
        ("no_classification", df[CLASS_FIELDS].isna().all(axis=1).to_numpy(), "no sector, sub-industry or ETF given"),
    ]:
        if reason == "no_classification":
            present = alive.copy()
        mask = bad & alive
        if mask.any():
            issues.append(issue_rows(rows, mask, "rejected", reason, detail))
        alive &= ~mask

    key = ["ticker"] + ([date_col] if date_col else [])
    live = df[alive]
    variants = live.drop_duplicates([*key, *CLASS_FIELDS]).groupby(key, dropna=False).size()
    clash = pd.MultiIndex.from_frame(live[key]).isin(variants[variants > 1].index) if len(key) > 1 else (
        live["ticker"].isin(variants[variants > 1].index)
    )
    if clash.any():
        mask = np.zeros(n, dtype=bool)
        mask[np.flatnonzero(alive)[np.asarray(clash)]] = True
        text = "same ticker and date with different classifications; all copies rejected"
        issues.append(issue_rows(rows, mask, "rejected", "duplicate_conflict", text))
        alive &= ~mask
    twins = np.zeros(n, dtype=bool)
    twins[np.flatnonzero(alive)[df[alive].duplicated(key).to_numpy()]] = True
    if twins.any():
        text = "identical copy of an earlier row; merged"
        issues.append(issue_rows(rows, twins, "repaired", "duplicate_identical", text))
        alive &= ~twins
    # One present row per (ticker, date), the accepted one where there is one.
    order = np.flatnonzero(present)
    order = order[np.argsort(~alive[order], kind="stable")]
    present = np.zeros(n, dtype=bool)
    present[order[~df.iloc[order].duplicated(key).to_numpy()]] = True
    return present, alive, issues


def _resolve_intervals(master: SecurityMaster, df: pd.DataFrame) -> tuple[SecurityMaster, pd.Series]:
    """Security of each (ticker, valid_from, valid_to) interval: the holder at its start, else
    at its end (the latest holder if open: a sector given from before a listing is harmless),
    else a new ticker-based security."""
    tick, start, end = df["ticker"].reset_index(drop=True), df["valid_from"], df["valid_to"]
    sid = master.resolve_rows(tick, start)
    closed = sid.isna().to_numpy() & end.notna().to_numpy()
    sid[closed] = master.resolve_rows(tick[closed], end[closed]).to_numpy()
    still = sid.isna().to_numpy() & end.isna().to_numpy()
    sid[still] = master.latest_holders(tick[still]).to_numpy()
    if sid.isna().any():
        master, sid = ensure_and_resolve(master, tick, start, "stock")
    return master, sid


def _snapshot_intervals(df: pd.DataFrame, accepted: np.ndarray, present: np.ndarray) -> pd.DataFrame:
    """Turn dated snapshots into intervals per (security, classification) run.

    A run continues while the security is in every consecutive snapshot with the same
    classification; it is valid from its first snapshot to the day before the first snapshot
    that no longer shows it (open if it is in the last snapshot).
    """
    snaps = np.unique(df.loc[df["snapshot_date"].notna(), "snapshot_date"].to_numpy("datetime64[ns]"))
    p = df[present].copy()
    p["accepted"] = accepted[present]
    pos = np.searchsorted(snaps, p["snapshot_date"].to_numpy("datetime64[ns]"), "right")
    p["next_snap"] = pd.Series(np.append(snaps, np.datetime64("NaT"))[pos], index=p.index)
    p = p.sort_values(["ticker", "snapshot_date"], kind="stable")
    sig = p["security_id"].astype("str").fillna("")
    for c in CLASS_FIELDS:  # one string per row, so that runs compare all fields at once
        sig = sig + "\x1f" + p[c].astype("str").fillna("\x00")
    by = p.groupby("ticker", sort=False)
    cont = (
        (by["next_snap"].shift(1) == p["snapshot_date"])
        & (sig.groupby(p["ticker"]).shift(1) == sig)
        & by["accepted"].shift(1, fill_value=False).astype(bool)
        & p["accepted"]
    )
    p["run"] = (~cont).cumsum()
    p = p[p["accepted"]]
    first = p.groupby("run", sort=False).head(1).set_index("run")
    last = p.groupby("run", sort=False).tail(1).set_index("run")
    runs = first[["security_id", "ticker", *CLASS_FIELDS]].assign(
        valid_from=first["snapshot_date"], valid_to=last["next_snap"] - pd.Timedelta(days=1)
    )
    return runs.reset_index(drop=True)


def ingest_classifications(store: Store, path: PathLike, date_format: str | None = None) -> IngestReport:
    """Read a classification file (see :func:`read_classification_file`) into ``classifications``.

    Each row is attached to the security holding its ticker on its date (undated rows: the
    ticker's latest holder); tickers not in the master are created as stocks. Snapshots become
    intervals. A stored interval with the same (security_id, valid_from) is replaced and
    intervals of one security are chained so they never overlap (an earlier open interval ends
    where the next begins). Idempotent. date_format: as for :func:`ingest_prices`.
    """
    df = read_classification_file(path, date_format).astype({"ticker": "str"})
    df["file"] = str(path)
    dating = "interval" if "valid_from" in df else ("snapshot" if "snapshot_date" in df else "undated")
    date_col = {"interval": "valid_from", "snapshot": "snapshot_date", "undated": None}[dating]
    present, accepted, issues = _class_rejections(df, date_col)
    df["security_id"] = pd.Series(np.nan, index=df.index, dtype=object)

    master = SecurityMaster.from_store(store)
    if dating == "undated":
        tick = df.loc[accepted, "ticker"]
        unknown = tick[master.latest_holders(tick).isna().to_numpy()].unique()
        if len(unknown):
            spans = pd.DataFrame({"ticker": unknown, "first_date": MIN_DATE, "last_date": MIN_DATE})
            master = master.ensure_tickers(spans, asset_type_hint="stock")
        df.loc[accepted, "security_id"] = master.latest_holders(tick).to_numpy()
        intervals = df[accepted].assign(valid_from=MIN_DATE, valid_to=pd.NaT)
    elif dating == "snapshot":
        master, sid = ensure_and_resolve(master, df.loc[present, "ticker"], df.loc[present, date_col], "stock")
        df.loc[present, "security_id"] = sid.to_numpy(dtype=object)
        intervals = _snapshot_intervals(df, accepted, present)
    else:
        master, sid = _resolve_intervals(master, df[accepted])
        df.loc[accepted, "security_id"] = sid.to_numpy(dtype=object)
        intervals = df[accepted]

    new = intervals.assign(source="file")[CLASSIFICATION_COLUMNS]
    new = new.astype({"valid_from": "datetime64[ns]", "valid_to": "datetime64[ns]"})
    if store.has_table("classifications"):
        old = store.read_table("classifications")
        key_new = pd.MultiIndex.from_frame(new[["security_id", "valid_from"]])
        old = old[~pd.MultiIndex.from_frame(old[["security_id", "valid_from"]]).isin(key_new)]
        new = pd.concat([old, new], ignore_index=True)
    table = clip_intervals(new, "security_id", clip_explicit=True)[CLASSIFICATION_COLUMNS]
    table = table.astype({c: "str" for c in ["security_id", "ticker", *CLASS_FIELDS, "source"]})

    report = IngestReport.from_issues(len(df), concat_issues(issues), [str(path)])
    report.run_id = new_run_id()
    master.to_store(store)
    store.write_table("classifications", table)
    append_issues(store, report, "classifications")
    return report
