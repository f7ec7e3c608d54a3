"""What the wire routes look up besides the services' numbers: symbols, the universe, closes.

- Symbols: the client maps GOOGL→GOOG while the commercial batch route maps GOOG→GOOGL
  (api-contract §2.5, §10.5), so either share class resolves to whichever the store holds.
- The universe and the latest rows: held in memory per model version (:mod:`riskstrata.api.published`);
  names off the latest date fall back to the store.
- Closes: the adjusted close, which is the only price a riskstrata store keeps.
"""

from __future__ import annotations

import re
from collections.abc import Container
from typing import TypeVar

import pandas as pd

from riskstrata.api.errors import ApiError
from riskstrata.api.published import Published, Universe, last_closes, price_and_cap
from riskstrata.data.master import SecurityMaster
from riskstrata.data.store import Store, date_range_clause
from riskstrata.errors import DateOutOfRange, InsufficientHistory, UnknownTicker
from riskstrata.services.cascade import MODEL, metrics

SHARE_CLASS_ALIASES = {"GOOG": "GOOGL", "GOOGL": "GOOG"}
K = TypeVar("K")
_TICKER = re.compile(r"^[A-Z0-9][A-Z0-9.\-_^=]{0,11}$")


def clean_ticker(raw: object) -> str:
    """Trimmed, upper-cased ticker; 400 "Malformed ticker" unless 1–12 symbol characters."""
    ticker = str(raw).strip().upper()
    if not _TICKER.match(ticker):
        raise ApiError(400, "Malformed ticker", f"{str(raw)[:40]!r} is not a ticker (1–12 letters, digits, '.', '-')")
    return ticker


def resolve_symbol(ticker: str, known: Container[str]) -> str:
    """The symbol as the store knows it: itself, else its share-class alias; an unknown symbol
    comes back unchanged so the service raises UnknownTicker with its own explanation."""
    if ticker in known:
        return ticker
    alias = SHARE_CLASS_ALIASES.get(ticker)
    return alias if alias is not None and alias in known else ticker


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


def latest_rows(pub: Published, store: Store, tickers: list[str]) -> tuple[dict[str, dict], dict[str, str]]:
    """Each requested ticker's latest metrics row, and an error for each one that has none.

    Returns ({requested ticker: row dict}, {requested ticker: error}); both keyed by the
    ticker as requested (upper-cased), in request order, duplicates once. Rows come from the
    version in memory (shared: read, never modify them); a name missing from the latest date
    falls back to the service's lookup.
    """
    rows: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for raw in tickers:
        requested = str(raw).strip().upper()
        if requested in rows or requested in errors:
            continue
        try:
            symbol = resolve_symbol(clean_ticker(requested), pub.latest)
        except ApiError:
            errors[requested] = f"Malformed ticker {requested[:40]!r}"
            continue
        hit = pub.latest.get(symbol)
        if hit is not None:
            rows[requested] = hit[0]
            continue
        try:
            pub.check_modelled(symbol)
            rows[requested] = metrics(store, symbol)
        except (UnknownTicker, InsufficientHistory, DateOutOfRange):
            errors[requested] = f"Symbol not found for ticker {requested}"
    return rows, errors


def model_dates(store: Store) -> pd.DatetimeIndex:
    """Every date of the built cascade model, ascending."""
    days = store.query(f"SELECT DISTINCT date FROM model_{MODEL} ORDER BY date")["date"]
    return pd.DatetimeIndex(days)


def security_id(pub: Published, store: Store, ticker: str) -> str:
    """The security trading as ``ticker`` on the model's last date (UnknownTicker otherwise)."""
    rows = pub.universe.rows
    if ticker in rows.index:
        return str(rows.at[ticker, "security_id"])
    return SecurityMaster.from_store(store).resolve(ticker, pub.end)


def prices_and_caps(pub: Published, store: Store, rows: dict[str, dict]
                    ) -> dict[str, tuple[float | None, float | None]]:
    """For each row (keyed as given): its latest adjusted close and market cap (shares × close).

    Rows of the latest date take the values loaded with the version; others (a name off the
    last date) are read from the store in one query. Market cap needs shares outstanding in
    the security master; it is None where they are not recorded.
    """
    known: dict[str, tuple[float | None, float | None]] = {}
    for key, row in rows.items():
        hit = pub.latest.get(row["ticker"])
        if hit is not None and hit[0]["security_id"] == row["security_id"]:
            known[key] = hit[1], hit[2]
    missing = sorted({r["security_id"] for k, r in rows.items() if k not in known})
    closes = last_closes(store, missing, pub.end) if missing else {}
    shares = pub.universe.shares_by_id
    return {key: known[key] if key in known else price_and_cap(row["security_id"], closes, shares)
            for key, row in rows.items()}


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
