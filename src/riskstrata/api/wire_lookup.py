"""What the wire routes look up besides the services' numbers: symbols, the universe, closes.

- Symbols: the client maps GOOGL→GOOG while the commercial batch route maps GOOG→GOOGL
  (api-contract §2.5, §10.5), so either share class resolves to whichever the store holds.
- The universe: the securities modelled on the latest date, with the names, asset types and
  GICS sectors the security master and classifications give them (cached per model version).
- Closes: the adjusted close, which is the only price a riskstrata store keeps.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd

from riskstrata.api.errors import ApiError
from riskstrata.api.state import AppState
from riskstrata.cascade.result import WIRE_FIELDS
from riskstrata.data.master import SecurityMaster
from riskstrata.data.store import Store, date_range_clause
from riskstrata.errors import DateOutOfRange, InsufficientHistory, UnknownTicker
from riskstrata.services.cascade import MODEL, metrics

SHARE_CLASS_ALIASES = {"GOOG": "GOOGL", "GOOGL": "GOOG"}
NOT_FOUND = (UnknownTicker, InsufficientHistory, DateOutOfRange)  # a batch answers these per ticker
BATCH_WORKERS = 8
K = TypeVar("K")
V = TypeVar("V")
_TICKER = re.compile(r"^[A-Z0-9][A-Z0-9.\-_^=]{0,11}$")


def clean_ticker(raw: object) -> str:
    """Trimmed, upper-cased ticker; 400 "Malformed ticker" unless 1–12 symbol characters."""
    ticker = str(raw).strip().upper()
    if not _TICKER.match(ticker):
        raise ApiError(400, "Malformed ticker", f"{str(raw)[:40]!r} is not a ticker (1–12 letters, digits, '.', '-')")
    return ticker


def resolve_symbol(ticker: str, known: pd.Index | set[str]) -> str:
    """The symbol as the store knows it: itself, else its share-class alias; an unknown symbol
    comes back unchanged so the service raises UnknownTicker with its own explanation."""
    if ticker in known:
        return ticker
    alias = SHARE_CLASS_ALIASES.get(ticker)
    return alias if alias is not None and alias in known else ticker


@dataclass(frozen=True)
class Universe:
    """The securities modelled on the latest date.

    rows: index ticker (sorted) → security_id, asset_type, name, sector (GICS), sector_etf,
    subsector_etf, shares_outstanding.
    """

    rows: pd.DataFrame
    market_etf: str

    @property
    def stock_count(self) -> int:
        return int((self.rows["asset_type"] == "stock").sum())

    @property
    def sector_etfs(self) -> list[str]:
        return sorted(set(self.rows["sector_etf"].dropna()))

    def asset_type(self, ticker: str) -> str:
        return str(self.rows.at[ticker, "asset_type"]) if ticker in self.rows.index else "stock"


_cache: dict[tuple[str, str | None], Universe] = {}
_cache_lock = threading.Lock()


def universe(state: AppState) -> Universe:
    """The latest snapshot's securities with their descriptive fields, cached per model version."""
    snap = state.snapshot()
    key = (str(state.store.root), state.version)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    meta = state.meta()
    day = pd.Timestamp(meta["end"])
    records = SecurityMaster.from_store(state.store).snapshot(day).set_index("security_id")
    ids = snap["security_id"].astype(str)
    rows = pd.DataFrame({
        "security_id": ids.to_numpy(),
        "asset_type": ids.map(records["asset_type"]).fillna("stock").to_numpy(),
        "name": ids.map(records["name"].where(records["name"].astype(str).str.lower() != "nan")).to_numpy(),
        "sector": ids.map(_gics_sectors(state.store, day)).to_numpy(),
        "sector_etf": snap["sector_etf"].astype(object).where(snap["sector_etf"].notna(), None).to_numpy(),
        "subsector_etf": snap["subsector_etf"].astype(object).where(snap["subsector_etf"].notna(), None).to_numpy(),
        "shares_outstanding": ids.map(records["shares_outstanding"]).to_numpy(dtype=float),
    }, index=pd.Index(snap.index.astype(str), name="ticker")).sort_index()
    result = Universe(rows, str(meta["params"]["market_etf"]))
    with _cache_lock:
        if len(_cache) > 8:
            _cache.clear()
        _cache[key] = result
    return result


def _gics_sectors(store: Store, day: pd.Timestamp) -> pd.Series:
    """security_id → GICS sector valid on ``day`` (empty where no classifications were ingested)."""
    if not store.has_table("classifications"):
        return pd.Series(dtype=object)
    cls = store.read_table("classifications", columns=["security_id", "valid_from", "valid_to", "gics_sector"])
    live = (cls["valid_from"].isna() | (cls["valid_from"] <= day)) & (cls["valid_to"].isna() | (cls["valid_to"] >= day))
    cls = cls[live & cls["gics_sector"].notna() & (cls["gics_sector"].astype(str).str.lower() != "nan")]
    return cls.sort_values("valid_from").groupby("security_id")["gics_sector"].last()


def closes(store: Store, security_id: str, start: object | None = None, end: object | None = None) -> pd.Series:
    """Adjusted closes of one security by date over [start, end]."""
    where, params = ["security_id = ?"], [security_id]
    if start is not None:
        where.append("date >= ?")
        params.append(pd.Timestamp(start).to_pydatetime())
    if end is not None:
        where.append("date <= ?")
        params.append(pd.Timestamp(end).to_pydatetime())
    rows = store.read_table("prices", columns=["date", "adj_close"], where=" AND ".join(where), params=params)
    return rows.set_index("date")["adj_close"].sort_index()


def last_closes(store: Store, security_ids: list[str], day: object) -> dict[str, float]:
    """security_id → the adjusted close on or before ``day`` (absent where there is none)."""
    if not security_ids:
        return {}
    marks = ", ".join("?" for _ in security_ids)
    rows = store.query(f"SELECT security_id, arg_max(adj_close, date) AS close FROM prices WHERE date <= ? "
                       f"AND adj_close IS NOT NULL AND security_id IN ({marks}) GROUP BY security_id",
                       [pd.Timestamp(day).to_pydatetime(), *security_ids])
    return dict(zip(rows["security_id"].astype(str), rows["close"].astype(float)))


def snapshot_row(row: pd.Series, ticker: str, market_etf: str) -> dict:
    """A stored snapshot row as the dict :func:`riskstrata.services.cascade.metrics` returns
    (the subset the wire needs: ticker, security_id, date, wire fields, ETFs)."""
    out = {"ticker": ticker, "security_id": str(row["security_id"]), "date": str(pd.Timestamp(row["date"]).date())}
    for f in WIRE_FIELDS:
        v = row[f]
        out[f] = None if v is None or not np.isfinite(float(v)) else float(v)
    level = out["lstar_level"]
    out["lstar_level"] = int(level) if level else None  # stored 0 = no recommendation
    out["sector_etf"] = None if pd.isna(row["sector_etf"]) else str(row["sector_etf"])
    out["subsector_etf"] = None if pd.isna(row["subsector_etf"]) else str(row["subsector_etf"])
    out["market_etf"] = market_etf
    return out


def latest_rows(state: AppState, tickers: list[str]) -> tuple[dict[str, dict], dict[str, str]]:
    """Each requested ticker's latest model row, and an error for each one that has none.

    Returns ({requested ticker: row dict}, {requested ticker: error}); both keyed by the
    ticker as requested (upper-cased), in request order, duplicates once. Rows come from the
    cached snapshot; a name missing from the latest date falls back to the service's lookup.
    """
    snap = state.snapshot()
    market = str(state.meta()["params"]["market_etf"])
    rows: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for raw in tickers:
        requested = str(raw).strip().upper()
        if requested in rows or requested in errors:
            continue
        try:
            symbol = resolve_symbol(clean_ticker(requested), snap.index)
        except ApiError:
            errors[requested] = f"Malformed ticker {requested[:40]!r}"
            continue
        if symbol in snap.index:
            rows[requested] = snapshot_row(snap.loc[symbol], symbol, market)
            continue
        try:
            rows[requested] = metrics(state.store, symbol)
        except (UnknownTicker, InsufficientHistory, DateOutOfRange):
            errors[requested] = f"Symbol not found for ticker {requested}"
    return rows, errors


def model_dates(store: Store) -> pd.DatetimeIndex:
    """Every date of the built cascade model, ascending."""
    days = store.query(f"SELECT DISTINCT date FROM model_{MODEL} ORDER BY date")["date"]
    return pd.DatetimeIndex(days)


def security_id(state: AppState, ticker: str) -> str:
    """The security trading as ``ticker`` on the model's last date (UnknownTicker otherwise)."""
    rows = universe(state).rows
    if ticker in rows.index:
        return str(rows.at[ticker, "security_id"])
    return SecurityMaster.from_store(state.store).resolve(ticker, state.meta()["end"])


def prices_and_caps(state: AppState, rows: dict[str, dict]) -> dict[str, tuple[float | None, float | None]]:
    """For each row (keyed as given): its latest adjusted close and market cap (shares × close).

    Market cap needs shares outstanding in the security master; it is None where they are not
    recorded (the synthetic market, price-only stores).
    """
    day = state.meta()["end"]
    close = last_closes(state.store, sorted({r["security_id"] for r in rows.values()}), day)
    shares = universe(state).rows.set_index("security_id")["shares_outstanding"]
    out = {}
    for key, row in rows.items():
        c = close.get(row["security_id"])
        s = shares.get(row["security_id"])
        cap = c * float(s) if c is not None and s is not None and np.isfinite(s) and s > 0 else None
        out[key] = (c, cap)
    return out


MAG7 = ("AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA")
MAX_SUGGESTIONS = 10


def search(uni: Universe, query: str) -> dict:
    """GET /tickers?search=: an exact (or share-class alias) match → {"ticker"}; otherwise the
    best match with suggestions, ranked ticker-prefix, ticker-contains, name-contains; with no
    match at all, {"ticker": QUERY} as the commercial route answers (api-contract §5.8)."""
    q = query.strip().upper()
    exact = resolve_symbol(q, uni.rows.index)
    if exact in uni.rows.index:
        return {"ticker": exact}
    tickers = uni.rows.index.to_series()
    names = uni.rows["name"].fillna("").astype(str).str.upper()
    ranked = [*tickers[tickers.str.startswith(q)], *tickers[tickers.str.contains(q, regex=False)],
              *tickers[names.str.contains(q, regex=False) & (q != "")]]
    found = list(dict.fromkeys(ranked))[:MAX_SUGGESTIONS]
    if not found:
        return {"ticker": q, "suggestions": []}
    rows = uni.rows
    return {"ticker": found[0],
            "suggestions": [{"ticker": t, "company_name": rows.at[t, "name"], "sector": rows.at[t, "sector"]}
                            for t in found]}


def ticker_list(uni: Universe, mag7: bool = False, include_metadata: bool = False) -> dict:
    """GET /tickers: every modelled ticker, sorted (or the Magnificent 7 this store has)."""
    tickers = [t for t in MAG7 if t in uni.rows.index] if mag7 else list(uni.rows.index)
    body: dict = {"tickers": tickers}
    if include_metadata:
        r = uni.rows
        body["metadata"] = {t: {"name": r.at[t, "name"], "sector": r.at[t, "sector"],
                                "asset_type": r.at[t, "asset_type"],
                                "sector_etf": r.at[t, "sector_etf"],
                                "subsector_etf": r.at[t, "subsector_etf"] or r.at[t, "sector_etf"]} for t in tickers}
    return body


def each(fn: Callable[[K], V], keys: Iterable[K], expected: tuple[type[Exception], ...] = NOT_FOUND
         ) -> dict[K, V | Exception]:
    """``fn(key)`` for every key, a few at a time, in key order; an ``expected`` exception takes
    the place of its key's result, anything else propagates.

    Per-ticker service calls spend their time in DuckDB scans, which release the GIL, so a
    100-ticker batch runs several times faster on a few threads than one after the other.
    """
    keys = list(dict.fromkeys(keys))

    def call(key: K) -> V | Exception:
        try:
            return fn(key)
        except expected as exc:
            return exc

    if len(keys) <= 1:
        return {k: call(k) for k in keys}
    with ThreadPoolExecutor(max_workers=min(BATCH_WORKERS, len(keys)), thread_name_prefix="wire-batch") as pool:
        return dict(zip(keys, pool.map(call, keys)))


def histories(store: Store, security_ids: dict[K, str], start: object, end: object,
              fields: list[str]) -> dict[K, pd.DataFrame]:
    """For each key, the rows :func:`riskstrata.services.cascade.history` returns for its security
    (dates × fields over [start, end], ascending), read in one scan instead of one per ticker.

    security_ids: key → security_id, already resolved (e.g. by :func:`latest_rows`). A
    security with no rows in the range gets an empty frame.
    """
    ids = sorted(set(security_ids.values()))
    if not ids:
        return {}
    where, params = date_range_clause(start, end)
    where.append(f"security_id IN ({', '.join('?' for _ in ids)})")
    rows = store.read_model(MODEL, columns=["date", "security_id", *fields], where=" AND ".join(where),
                            params=[*params, *ids])
    rows["security_id"] = rows["security_id"].astype(str)
    by_id = {sid: g.drop(columns="security_id").sort_values("date").set_index("date")
             for sid, g in rows.groupby("security_id", sort=False)}
    empty = pd.DataFrame({f: pd.Series(dtype=float) for f in fields}, index=pd.DatetimeIndex([], name="date"))
    return {k: by_id.get(sid, empty) for k, sid in security_ids.items()}
