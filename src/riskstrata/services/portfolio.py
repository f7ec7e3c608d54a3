"""The portfolio layer over the store: analyze, hedge, scale, look through, a fund over time.

Holdings arrive in memory (a file path, a DataFrame, a dict) and are never written to the
store or to logs. Everything numeric is done by :mod:`riskstrata.portfolio.risk` and the
cascade engine; this module only gathers the model rows and prices for the analysis date.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from riskstrata.cascade.attribution import Attribution, geometric_attribution
from riskstrata.data.etf_holdings import etf_holdings_as_of
from riskstrata.data.ingest import load_returns
from riskstrata.data.master import SecurityMaster
from riskstrata.data.registry import EtfRegistry
from riskstrata.data.store import Store
from riskstrata.errors import DataValidationError, DateOutOfRange, InsufficientHistory, ModelNotBuilt
from riskstrata.portfolio.holdings import Holdings, read_holdings
from riskstrata.portfolio.lookthrough import LookThrough, active_share, benchmark_weights, look_through
from riskstrata.portfolio.matching import MatchResult, MatchUniverse, match_holdings
from riskstrata.portfolio.risk import (NEGATIVE_SHARE_NOTE, BookExposure, PortfolioRisk, PositionLegs, book_exposure,
                                       describe_trades, etf_exposures, etf_roles, market_beta, portfolio_hedge,
                                       portfolio_risk, scaling_trade, trade_list)
from riskstrata.services.cascade import MODEL, stored_snapshot
from riskstrata.services.factors import LatestFactorModel, load_latest, model_names, portfolio_factor_risk

HEDGE_LEVELS = ("L1", "L2", "L3", "lstar")
FACTOR_SPEC = "US21"  # the Model B spec whose factor-group decomposition analyze() adds when built


@dataclass
class RiskInputs:
    """Everything the risk functions need on one date, for the matched positions."""

    as_of: pd.Timestamp
    positions: pd.DataFrame   # index ticker: model fields of the matched holdings
    weights: pd.Series        # index ticker: value / gross Σ|value| over matched holdings (shorts < 0)
    etf_cov: pd.DataFrame     # daily covariance of raw ETF returns over the model window
    roles: pd.Series          # ETF → market / sector / subsector
    market_etf: str
    values: pd.Series | None = None  # index ticker: signed value (USD; weight units when match.unit == 'weight')


@dataclass
class PortfolioAnalysis:
    """analyze(): matching, Risk Index with its decomposition, hedge ratios per level."""

    match: MatchResult
    risk: PortfolioRisk
    hedge_ratios: pd.DataFrame  # index ETF, columns L1/L2/L3/lstar: $ per $1 of gross (= of a long-only book)
    inputs: RiskInputs
    factor_risk: dict | None = None  # Model B: market / styles / industries / specific shares, when built
    notes: list[str] = field(default_factory=list)
    book: BookExposure | None = None  # long / short / gross / net, beta-dollars, hedge trades in dollars


@dataclass(frozen=True)
class PortfolioContext:
    """What analyze / hedge / scale / exposure read on the model's last date, loaded once per
    published version (a server worker holds one: see :mod:`riskstrata.api.published`), so a
    request for the latest date reads nothing from the store. Every field is exactly what the
    store path reads per call, so both paths give the same numbers.

    meta:         the version's model meta (start, end, params).
    as_of:        the model's last date.
    snapshot:     :func:`stored_snapshot` on ``as_of`` with ``ticker`` as a column, indexed by
                  security_id (the frame :func:`risk_inputs` reindexes the matched ids on).
    universe:     :func:`model_universe` on ``as_of`` (what holdings are matched against).
    matcher:      that universe indexed for matching, built once.
    etf_ids:      ETF ticker → security_id on ``as_of``, for the market ETF and every sector and
                  subsector ETF of the snapshot (unresolved ones left out).
    etf_returns:  (dates × security_id, sorted) raw daily ETF returns over the window's date span,
                  NaN where a row is missing or its return is null.
    etf_rows:     same shape, True where ``prices`` has a row (a date any chosen ETF has is kept,
                  as :func:`~riskstrata.data.ingest.load_returns` keeps it).
    sector_etfs:  the registry's sector ETFs.
    stored_etfs:  tickers the security master records as ETFs (look-through).
    factor_model: Model B's last-date snapshot as the worker holds it (None when not built).
    """

    meta: dict
    as_of: pd.Timestamp
    snapshot: pd.DataFrame
    universe: pd.DataFrame
    matcher: MatchUniverse
    etf_ids: pd.Series
    etf_returns: pd.DataFrame
    etf_rows: pd.DataFrame
    sector_etfs: frozenset[str]
    stored_etfs: frozenset[str]
    factor_model: Callable[[], LatestFactorModel | None] = field(default=lambda: None, compare=False, repr=False)

    def serves(self, as_of: object | None) -> bool:
        """True when a request for ``as_of`` (None = the latest) is answered from this context."""
        return as_of is None or pd.Timestamp(as_of) == self.as_of

    @functools.cached_property
    def _etf_arrays(self) -> tuple[np.ndarray, np.ndarray, dict[str, int], dict[str, str]]:
        """etf_returns and etf_rows as numpy arrays, column of each security_id, ticker → security_id."""
        return (self.etf_returns.to_numpy(dtype=np.float64), self.etf_rows.to_numpy(dtype=bool),
                {sid: j for j, sid in enumerate(self.etf_returns.columns)}, self.etf_ids.to_dict())

    def etf_covariance(self, etfs: list[str]) -> pd.DataFrame:
        """:func:`_etf_covariance` from memory: the same rows, columns and statistic (the same
        bits: pandas' own sample covariance of the same matrix), on arrays indexed once."""
        returns, rows, col_of, sid_of = self._etf_arrays
        # Columns ordered by security_id as the store path's pivot orders them (a repeated ETF repeats).
        chosen = sorted((sid_of[e], e) for e in etfs if isinstance(sid_of.get(e), str))
        cols = np.array([col_of[sid] for sid, _ in chosen], dtype=np.intp)
        window = int(self.meta["params"]["window"])
        keep = np.flatnonzero(rows[:, cols].any(axis=1))[-window:]
        cov = _sample_cov(returns[np.ix_(keep, cols)], [e for _, e in chosen], max(20, window // 4))
        cov.index.name = cov.columns.name = self.etf_returns.columns.name  # as the store path's pivot names them
        return cov


def portfolio_context(store: Store, version: str | None = None, snapshot: pd.DataFrame | None = None,
                      factor_model: Callable[[], LatestFactorModel | None] | None = None) -> PortfolioContext:
    """Read once what the portfolio services need on the last date of the cascade ``version``
    (default: the current one). ``snapshot``: :func:`stored_snapshot` of that date when the caller
    has read it already (its ticker index as stored). ``factor_model``: returns Model B's held
    snapshot (None when not built); a server passes its own, held and reloaded on publish. Without
    it, Model B's current snapshot is read from the store once, on first use.
    Its reads share one DuckDB connection."""
    with store.one_connection():
        return _read_context(store, version, snapshot, factor_model)


def _read_context(store: Store, version: str | None, snapshot: pd.DataFrame | None,
                  factor_model: Callable[[], LatestFactorModel | None] | None) -> PortfolioContext:
    meta = store.model_meta(MODEL, version)
    day = pd.Timestamp(meta["end"])
    snap = stored_snapshot(store, day) if snapshot is None else snapshot
    market = meta["params"]["market_etf"]
    etfs = sorted({market, *snap["sector_etf"].dropna(), *snap["subsector_etf"].dropna()})
    master = SecurityMaster.from_store(store)
    ids = master.resolve_many(etfs, day).dropna()
    start = day - pd.Timedelta(days=int(int(meta["params"]["window"]) * 1.6) + 14)
    long = (store.read_table("prices", columns=["date", "security_id", "ret"],
                             where=f"date >= ? AND date <= ? AND security_id IN ({', '.join('?' * len(ids))})",
                             params=[start.to_pydatetime(), day.to_pydatetime(), *ids.to_numpy()])
            if len(ids) else pd.DataFrame(columns=["date", "security_id", "ret"]))
    returns = (long.pivot(index="date", columns="security_id", values="ret").astype("float64")
               .sort_index().sort_index(axis=1))
    # A row with a null return still keeps its date in load_returns' pivot: remember the rows.
    present = long.assign(row=1.0).pivot(index="date", columns="security_id", values="row")
    present = present.reindex(index=returns.index, columns=returns.columns).notna()
    returns.index = present.index = pd.DatetimeIndex(returns.index, name="date")
    records = master.records
    universe = model_universe(store, day)
    return PortfolioContext(
        meta=meta, as_of=day, snapshot=snap.reset_index().set_index("security_id", drop=False),
        universe=universe, matcher=MatchUniverse(universe), etf_ids=ids, etf_returns=returns, etf_rows=present,
        sector_etfs=frozenset(EtfRegistry.default().sector_etfs()),
        stored_etfs=frozenset(records.loc[records["asset_type"] == "etf", "ticker"]),
        factor_model=factor_model or _factor_model_once(store))


def _factor_model_once(store: Store) -> Callable[[], LatestFactorModel | None]:
    """Model B's current snapshot (None when not built), read from the store at the first call only."""

    @functools.cache
    def load() -> LatestFactorModel | None:
        try:
            return load_latest(store, FACTOR_SPEC)
        except ModelNotBuilt:
            return None
    return load


def _held(held: PortfolioContext | None, as_of: object | None) -> PortfolioContext | None:
    """``held`` when it answers ``as_of``; None sends the call down the store path."""
    return held if held is not None and held.serves(as_of) else None


@contextlib.contextmanager
def _store_path(store: Store, held: PortfolioContext | None) -> Iterator[None]:
    """The reads of one call on one DuckDB connection when it takes the store path (``held`` None):
    a dozen reads would otherwise open a connection each (~20 ms of CPU apiece). A held context
    reads nothing through DuckDB, so no connection is opened for it."""
    if held is not None:
        yield
        return
    with store.one_connection():
        yield


def _as_of(store: Store, as_of: object | None) -> pd.Timestamp:
    meta = store.model_meta(MODEL)
    day = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp(meta["end"])
    if day < pd.Timestamp(meta["start"]) or day > pd.Timestamp(meta["end"]):
        raise DateOutOfRange(f"{day.date()} is outside the built model ({meta['start']} … {meta['end']})")
    return day


def model_universe(store: Store, as_of: pd.Timestamp) -> pd.DataFrame:
    """Every security the model knows, for matching: ticker (as traded on as_of, else its last),
    security_id, first_date (first day with an estimate), last_date, close (adjusted close on
    or before as_of; equal to the traded close on the latest date, not on older ones), cusip."""
    with store.one_connection():
        return _read_universe(store, as_of)


def _read_universe(store: Store, as_of: pd.Timestamp) -> pd.DataFrame:
    spans = store.query(
        f"SELECT security_id, min(date) FILTER (WHERE l1_mkt_hr IS NOT NULL) AS first_date, max(date) AS last_date, "
        f"arg_max(ticker, date) AS last_ticker FROM model_{MODEL} GROUP BY security_id")
    master = SecurityMaster.from_store(store)
    current = master.snapshot(as_of).set_index("security_id")
    now = current["ticker"]
    spans["ticker"] = spans["security_id"].map(now).fillna(spans["last_ticker"])
    spans["cusip"] = spans["security_id"].map(current["cusip"])  # lets a 13F match without a CUSIP map
    # A recycled ticker: prefer the security that holds it on as_of.
    spans["alive"] = spans["security_id"].isin(now.index)
    spans = spans.sort_values("alive", ascending=False).drop_duplicates("ticker")
    closes = store.query(
        "SELECT security_id, arg_max(adj_close, date) AS close FROM prices "
        "WHERE date <= ? AND adj_close IS NOT NULL GROUP BY security_id", [as_of.to_pydatetime()])
    spans = spans.merge(closes, on="security_id", how="left")
    return spans[["ticker", "security_id", "first_date", "last_date", "close", "cusip"]].reset_index(drop=True)


def _etf_covariance(store: Store, etfs: list[str], as_of: pd.Timestamp, window: int) -> pd.DataFrame:
    """Sample covariance (daily, ddof=1) of raw ETF returns over the last ``window`` days to as_of."""
    ids = SecurityMaster.from_store(store).resolve_many(etfs, as_of).dropna()
    start = as_of - pd.Timedelta(days=int(window * 1.6) + 14)
    returns = load_returns(store, start, as_of, security_ids=list(ids.to_numpy()))
    return _window_cov(returns, ids, window)


def _window_cov(returns: pd.DataFrame, ids: pd.Series, window: int) -> pd.DataFrame:
    """returns: (dates × security_id); ids: ticker → security_id. The last ``window`` rows' covariance."""
    returns = returns.rename(columns={sid: t for t, sid in ids.items()}).iloc[-window:]
    return returns.cov(min_periods=max(20, window // 4))


def _sample_cov(mat: np.ndarray, names: list[str], min_periods: int) -> pd.DataFrame:
    """``pd.DataFrame(mat, columns=names).cov(min_periods)`` for a C-ordered (rows × names) matrix,
    without the frame: DataFrame.cov takes ``np.cov`` of a complete matrix (what this does, on the
    same C-ordered rows, so the same bits), and its pairwise NaN-aware kernel otherwise (left to it)."""
    if not len(names) or not np.isfinite(mat).all():
        return pd.DataFrame(mat, columns=names).cov(min_periods=min_periods)
    k = len(names)
    cov = np.full((k, k), np.nan) if min_periods > len(mat) else np.cov(mat.T, ddof=1).reshape((k, k))
    return pd.DataFrame(cov, index=names, columns=names)


def risk_inputs(store: Store, match: MatchResult, held: PortfolioContext | None = None) -> RiskInputs:
    """Model rows for the matched holdings on the analysis date and the ETF covariance
    (from ``held`` when it holds that date, else read from the store)."""
    if match.matched.empty:
        raise DataValidationError(f"none of the holdings can be analysed: {match.summary()}")
    held = _held(held, match.as_of)
    by_id = (stored_snapshot(store, match.as_of).reset_index().set_index("security_id", drop=False)
             if held is None else held.snapshot)
    positions = by_id.reindex(match.matched["security_id"])
    positions.index = match.matched["ticker"].to_numpy()
    if positions.index.has_duplicates:
        raise DataValidationError("the same security appears on several matched lines; merge them first")
    meta = store.model_meta(MODEL) if held is None else held.meta
    market = meta["params"]["market_etf"]
    etfs = sorted({market, *(e for c in ("sector_etf", "subsector_etf")
                             for e in positions[c].to_numpy(dtype=object) if isinstance(e, str))})
    cov = (_etf_covariance(store, etfs, match.as_of, int(meta["params"]["window"])) if held is None
           else held.etf_covariance(etfs))
    weights = pd.Series(match.matched["weight"].to_numpy(dtype=float), index=positions.index)
    values = pd.Series(match.matched["value"].to_numpy(dtype=float), index=positions.index)
    sectors = set(EtfRegistry.default().sector_etfs()) if held is None else set(held.sector_etfs)
    return RiskInputs(match.as_of, positions, weights, cov, etf_roles(etfs, market, sectors), market, values)


def _hedge_ratios(inp: RiskInputs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ETFs × HEDGE_LEVELS) position-weighted hedge ratios, $ of ETF per $1 of gross, and the
    positions' L3 hedge ratios (positions × ETFs) they were netted from."""
    legs = PositionLegs(inp.positions, inp.market_etf)
    per_level = {lvl: legs.matrix(lvl) for lvl in HEDGE_LEVELS}
    w = inp.weights.to_numpy(dtype=float)
    aligned = inp.weights.index.equals(inp.positions.index)
    netted: dict[str, pd.Series] = {}
    for lvl, (etfs, hr) in per_level.items():
        if aligned:  # portfolio_hedge on arrays: the same products, summed per ETF as pandas sums them
            netted[lvl] = pd.Series(np.ascontiguousarray((hr * w[:, None]).T).sum(axis=1), index=etfs)
        else:
            netted[lvl] = portfolio_hedge(inp.weights, pd.DataFrame(hr, index=inp.positions.index, columns=etfs))
    etfs, l3 = per_level["L3"]
    return _frame_of_columns(netted), pd.DataFrame(l3, index=inp.positions.index, columns=etfs)


def _frame_of_columns(columns: dict[str, pd.Series]) -> pd.DataFrame:
    """``pd.DataFrame(columns).fillna(0.0)`` for float Series with unique labels: rows are their
    common labels in order when all agree, else the sorted union (as pandas aligns them)."""
    indexes = [list(c.index) for c in columns.values()]
    rows = indexes[0] if all(ix == indexes[0] for ix in indexes) else sorted(set().union(*indexes))
    at = {e: i for i, e in enumerate(rows)}
    out = np.zeros((len(rows), len(columns)))
    for j, c in enumerate(columns.values()):
        out[[at[e] for e in c.index], j] = c.to_numpy()
    return pd.DataFrame(out, index=rows, columns=list(columns))


def _risk(inp: RiskInputs, extra: pd.Series | None = None, l3: pd.DataFrame | None = None) -> PortfolioRisk:
    """Risk of the matched positions, plus optional ETF overlay positions ($ per $1 of portfolio).
    ``l3``: the positions' L3 hedge ratios when already computed."""
    exposures = -(etf_exposures(inp.positions, "L3", inp.market_etf) if l3 is None else l3)
    residual = inp.positions["l3_res_er"] * inp.positions["stock_var"]
    weights = inp.weights
    if extra is not None and len(extra):
        overlay = pd.DataFrame(np.eye(len(extra)), index=[f"hedge:{e}" for e in extra.index], columns=extra.index)
        exposures = pd.concat([exposures, overlay]).fillna(0.0)
        weights = pd.concat([weights, pd.Series(extra.to_numpy(), index=overlay.index)])
        residual = pd.concat([residual, pd.Series(0.0, index=overlay.index)])
    return portfolio_risk(weights, exposures, residual, inp.etf_cov, inp.roles, inp.market_etf)


def analyze_portfolio(store: Store, holdings: Holdings | object, as_of: object | None = None,
                      value: float | None = None, held: PortfolioContext | None = None) -> PortfolioAnalysis:
    """Match holdings, compute the Risk Index and its decomposition, hedge ratios per level and the
    book in dollars (``value`` USD turns weight-only holdings into dollars; shares and market
    values are dollars already).

    ``held``: the published version's :class:`PortfolioContext`; a request for its date (or no
    date) reads nothing from the store, any other date takes the store path. Same numbers.
    """
    holdings = holdings if isinstance(holdings, Holdings) else read_holdings(holdings)
    held = _held(held, as_of)
    with _store_path(store, held):
        return _analyze(store, holdings, as_of, value, held)


def _analyze(store: Store, holdings: Holdings, as_of: object | None, value: float | None,
             held: PortfolioContext | None) -> PortfolioAnalysis:
    """:func:`analyze_portfolio` once the holdings are read and ``held`` answers ``as_of`` (or is None)."""
    day = _as_of(store, as_of) if held is None else held.as_of
    universe = model_universe(store, day) if held is None else held.matcher
    match = match_holdings(holdings, universe, day, portfolio_value=value)
    inp = risk_inputs(store, match, held)
    hrs, l3 = _hedge_ratios(inp)
    risk = _risk(inp, l3=l3)
    book = book_exposure(inp.values, inp.positions, hrs, match.unit)
    notes = [*match.notes, *risk.notes]
    if (risk.by_position["share"] < 0).any() or (risk.by_role < 0).any():
        notes.append(NEGATIVE_SHARE_NOTE)
    factor_risk = None
    latest = None if held is None else held.factor_model()
    if (store.current_version(model_names(FACTOR_SPEC)["factors"]) is None if held is None else latest is None):
        notes.append(f"the factor model ({FACTOR_SPEC}) is not built: no decomposition by style and industry "
                     f"(run `riskstrata factors build`)")
    else:
        try:
            factor_risk = portfolio_factor_risk(store, inp.weights, match.as_of, FACTOR_SPEC, latest=latest)
        except DataValidationError as exc:  # e.g. only ETFs: the Risk Index stands without Model B's view
            notes.append(f"no decomposition by style and industry: {exc}")
    return PortfolioAnalysis(match, risk, hrs, inp, factor_risk, notes=notes, book=book)


@dataclass
class HedgeResult:
    level: str
    value: float              # the portfolio value given (USD); see hedged_value for what is hedged
    trades: pd.DataFrame      # etf, side, notional_usd, hedge_ratio ($ of ETF per $1 of gross)
    description: str          # "short $X SPY, short $Y XLK, …"
    before: PortfolioRisk
    after: PortfolioRisk
    market_beta_after: float
    hedged_value: float = float("nan")  # USD the trades are sized on: the matched positions' gross
    hedge_basis: str = ""               # which value was used and what was left unhedged, in words
    book: BookExposure | None = None


def hedged_dollars(analysis: PortfolioAnalysis, value: float) -> tuple[float, str]:
    """The dollars a hedge is sized on: the matched positions' gross value (cash and excluded lines
    are not hedged), and a sentence saying where it came from."""
    match, book = analysis.match, analysis.book
    gross = book.gross if match.unit == "USD" else value * book.gross
    bases = set(match.matched["basis"])
    source = ("the value × the matched weights" if bases == {"weight"}
              else "shares × close and market values" if len(bases) > 1 else
              "shares × close" if bases == {"shares"} else "market values")
    signed = (f" (long ${book.long * gross / book.gross:,.0f}, short ${-book.short * gross / book.gross:,.0f})"
              if book.short < 0 else "")
    excluded = match.excluded_value * (1.0 if match.unit == "USD" else value)
    text = f"sized on the matched positions' gross ${gross:,.0f}{signed}, from {source}"
    if bases == {"weight"}:
        text += f" (portfolio value ${value:,.0f})"
    elif value and abs(value - gross) > 0.5:
        text += f"; the given value ${value:,.0f} is not used (positions are in dollars)"
    if excluded > 0:
        text += f"; cash and excluded lines (${excluded:,.0f}) are not hedged"
    return gross, text


def hedge_portfolio(store: Store, holdings: Holdings | object, level: str = "L3", value: float = 1_000_000.0,
                    as_of: object | None = None, held: PortfolioContext | None = None) -> HedgeResult:
    """Hedge trade list at a level and the risk that remains.

    Trades are Σ_i value_i·HR_i per ETF over the matched positions in dollars: shares × close or
    market values as given, or ``value`` × the weights of weight-only holdings. Cash and excluded
    lines are not hedged; ``hedge_basis`` says which value was used. ``held``: as for
    :func:`analyze_portfolio`.
    """
    if level not in HEDGE_LEVELS and level.upper() not in HEDGE_LEVELS:
        raise DataValidationError(f"unknown hedge level {level!r}; use one of {', '.join(HEDGE_LEVELS)}")
    level = level if level == "lstar" else level.upper()
    analysis = analyze_portfolio(store, holdings, as_of, value, held)
    gross, basis = hedged_dollars(analysis, value)
    hr = analysis.hedge_ratios[level]
    trades = trade_list(hr, gross)
    after = _risk(analysis.inputs, hr[hr != 0])
    beta = market_beta(after.exposures, analysis.inputs.etf_cov, analysis.inputs.market_etf)
    return HedgeResult(level, value, trades, describe_trades(trades), analysis.risk, after, beta, gross, basis,
                       analysis.book)


@dataclass
class ScaleResult:
    exposure: str
    reduce: float
    trade: pd.DataFrame       # etf, side, notional_usd, hedge_ratio
    before_exposure: float
    after_exposure: float
    before: PortfolioRisk
    after: PortfolioRisk


def scale_portfolio(store: Store, holdings: Holdings | object, exposure: str, reduce: float,
                    value: float = 1_000_000.0, as_of: object | None = None,
                    held: PortfolioContext | None = None) -> ScaleResult:
    """Cut one exposure (market beta, or a sector/subsector ETF) by a fraction with ETFs only
    (``held``: as for :func:`analyze_portfolio`)."""
    analysis = analyze_portfolio(store, holdings, as_of, value, held)
    inp = analysis.inputs
    before = analysis.risk
    overlay = scaling_trade(before.exposures, inp.etf_cov, exposure, reduce, inp.market_etf)
    after = _risk(inp, overlay)

    def measure(r: PortfolioRisk) -> float:
        if overlay.index[0] == inp.market_etf:
            return market_beta(r.exposures, inp.etf_cov, inp.market_etf)
        return float(r.exposures.get(overlay.index[0], 0.0))

    gross, _basis = hedged_dollars(analysis, value)  # the overlay is per $1 of the matched gross
    return ScaleResult(overlay.index[0], reduce, trade_list(overlay, gross), measure(before), measure(after),
                       before, after)


@dataclass
class FundHistory:
    """A fund through time from dated holdings: per-date risk and the geometric bridge."""

    risk: pd.DataFrame        # index holdings date: risk_index, market/sector/subsector/residual shares, analyzed
    attribution: Attribution  # daily fund returns bridged over the whole span
    daily: pd.DataFrame       # gross, l1_cfr, l2_cfr, l3_cfr of the fund per day


def fund_over_time(store: Store, dated: dict[object, Holdings | object], end: object | None = None) -> FundHistory:
    """Weights fixed at each holdings date until the next (no drift within a period)."""
    if not dated:
        raise DataValidationError("no dated holdings given")
    with store.one_connection():  # every date's analysis and daily rows on one DuckDB connection
        return _fund_over_time(store, dated, end)


def _fund_over_time(store: Store, dated: dict[object, Holdings | object], end: object | None) -> FundHistory:
    dates = sorted(pd.Timestamp(d) for d in dated)
    last = _as_of(store, end)
    rows, pieces = [], []
    for i, day in enumerate(dates):
        a = analyze_portfolio(store, dated[next(k for k in dated if pd.Timestamp(k) == day)], day)
        rows.append({"date": day, "risk_index": a.risk.risk_index, **a.risk.by_role.to_dict(),
                     "analyzed": a.match.summary()})
        stop = dates[i + 1] if i + 1 < len(dates) else last
        pieces.append(frozen_daily(store, a.inputs, day, stop))
    daily = pd.concat(pieces).sort_index()
    if daily.empty:
        raise InsufficientHistory("no model days after the first holdings date")
    bridge = geometric_attribution(daily["returns_gross"], daily["l1_cfr"], daily["l2_cfr"], daily["l3_cfr"])
    return FundHistory(pd.DataFrame(rows).set_index("date"), bridge, daily.rename(columns={"returns_gross": "gross"}))


def frozen_daily(store: Store, inp: RiskInputs, after: pd.Timestamp, until: pd.Timestamp) -> pd.DataFrame:
    """Daily returns of the matched book with its weights frozen, for dates in (after, until]:
    columns returns_gross, l1_cfr, l2_cfr, l3_cfr (Σ_i w_i·x_i, decimal; a day no name has is NaN)."""
    ids = inp.positions["security_id"].to_numpy()
    where = f"security_id IN ({', '.join('?' for _ in ids)}) AND date > ? AND date <= ?"
    h = store.read_model(MODEL, columns=["date", "security_id", "returns_gross", "l1_cfr", "l2_cfr", "l3_cfr"],
                         where=where, params=[*ids, after.to_pydatetime(), until.to_pydatetime()])
    h["w"] = h["security_id"].map(pd.Series(inp.weights.to_numpy(), index=ids))
    fields = ["returns_gross", "l1_cfr", "l2_cfr", "l3_cfr"]
    return h[fields].mul(h["w"], axis=0).groupby(h["date"]).sum(min_count=1)


@dataclass
class LookThroughResult:
    match: MatchResult
    look: LookThrough
    active_share: float | None
    benchmark: str | None
    notes: list[str] = field(default_factory=list)


def lookthrough_portfolio(store: Store, holdings: Holdings | object, as_of: object | None = None,
                          benchmark: str | None = None, held: PortfolioContext | None = None) -> LookThroughResult:
    """Expand ETF positions into constituents (ETF holdings from ``riskstrata ingest etf-holdings``),
    show combined exposure per name and fund/direct overlap; active share against ``benchmark``
    (an ETF with holdings data, or a weights file). ``held``: the universe and the master's ETFs
    from memory (the ETF holdings themselves are still read from the store)."""
    holdings = holdings if isinstance(holdings, Holdings) else read_holdings(holdings)
    held = _held(held, as_of)
    with _store_path(store, held):
        return _lookthrough(store, holdings, as_of, benchmark, held)


def _lookthrough(store: Store, holdings: Holdings, as_of: object | None, benchmark: str | None,
                 held: PortfolioContext | None) -> LookThroughResult:
    day = _as_of(store, as_of) if held is None else held.as_of
    match = match_holdings(holdings, model_universe(store, day) if held is None else held.matcher, day)
    if match.matched.empty:
        raise DataValidationError(f"none of the holdings can be analysed: {match.summary()}")
    weights = pd.Series(match.matched["weight"].to_numpy(dtype=float), index=match.matched["ticker"].to_numpy())
    registry = EtfRegistry.default()
    etfs = set(registry.known_etfs()) | (_stored_etfs(store) if held is None else set(held.stored_etfs))
    held_etfs = sorted(e for e in weights.index if e in etfs)
    snapshot = (etf_holdings_as_of(store, held_etfs + ([benchmark.upper()] if benchmark else []), day)
                if store.has_table("etf_holdings") else None)
    look = look_through(weights, snapshot, etfs)
    share = None
    if benchmark:
        if Path(benchmark).exists():
            bench = benchmark_weights(benchmark)
        else:
            if snapshot is None:
                raise DataValidationError("no ETF holdings in the store: run `riskstrata ingest etf-holdings FILE`")
            bench = benchmark_weights(etf=benchmark.upper(), etf_holdings=snapshot)
        share = active_share(look.exposures["combined_weight"], bench)
    notes = list(look.notes)
    for etf, when in (snapshot.attrs.get("snapshot_dates", {}) if snapshot is not None else {}).items():
        if (day - pd.Timestamp(when)).days > 92:
            notes.append(f"{etf} holdings are from {pd.Timestamp(when).date()}, {(day - pd.Timestamp(when)).days} days "
                         f"before the analysis date")
    return LookThroughResult(match, look, share, benchmark, notes)


def _stored_etfs(store: Store) -> set[str]:
    """Tickers the security master records as ETFs."""
    records = SecurityMaster.from_store(store).records
    return set(records.loc[records["asset_type"] == "etf", "ticker"])


def diversification(analysis: PortfolioAnalysis) -> dict:
    """Σ|w_i|·σ_i (single-name vols, annualised from each name's daily stock_var) against the
    portfolio's model vol σ_p: their ratio (≥ 1 when names diversify) and the benefit 1 − σ_p / Σ|w|σ."""
    single = np.sqrt(analysis.inputs.positions["stock_var"].astype(float) * 252)
    average = float((analysis.inputs.weights.abs() * single).sum())
    vol = analysis.risk.vol_ann
    return {"weighted_average_volatility": average, "portfolio_volatility": vol,
            "diversification_ratio": average / vol if vol > 0 else None,
            "diversification_benefit": 1.0 - vol / average if average > 0 else None,
            "note": "single-name and portfolio vols from the model's own estimation window"}


def book_exposure_report(store: Store, holdings: Holdings | object, as_of: object | None = None,
                         held: PortfolioContext | None = None) -> dict:
    """A signed dollar book (``POST /api/portfolio/exposure``): beta-dollars, the hedge trades at
    L1 / L2 / L3 / L* in dollars, and its risk in dollars — systematic from the raw-ETF exposures and
    the ETF covariance (x'Σx), residual Σ v_i²·σ²_ε,i (names uncorrelated beyond the ETFs) — with
    the coverage of the input and warnings. Positions are signed market values in USD (short < 0);
    nothing is normalised away: a book whose net is ~0 is measured on its gross. ``held``: as for
    :func:`analyze_portfolio`.
    """
    a = analyze_portfolio(store, holdings, as_of, held=held)
    book, risk, match = a.book, a.risk, a.match
    scale2 = book.gross ** 2                   # variance per $1 of gross → USD²
    days = 252
    layer = {r: float(risk.by_role[r] * risk.variance * scale2) for r in ("market", "sector", "subsector")}
    systematic = sum(layer.values())
    residual = float(risk.by_role["residual"] * risk.variance * scale2)
    total = float(risk.variance * scale2)

    def vol(var: float) -> dict:
        daily = float(np.sqrt(max(var, 0.0)))
        return {"daily_variance_usd2": var, "daily_vol_usd": daily, "annual_vol_usd": daily * np.sqrt(days)}

    input_gross = book.gross + match.excluded_value
    hedges = {}
    for lvl in HEDGE_LEVELS:
        trades = trade_list(a.hedge_ratios[lvl], book.gross)
        hedges[lvl] = {"trades_usd": {etf: (-1.0 if side == "short" else 1.0) * float(notional) for etf, side, notional
                                      in zip(trades["etf"], trades["side"], trades["notional_usd"])},
                       "description": describe_trades(trades)}
    by_name = (a.inputs.values * -a.inputs.positions["l1_mkt_hr"].astype(float).fillna(0.0))
    warnings = [f"line {r.line} ({r.ticker if isinstance(r.ticker, str) else r.cusip}): {r.reason}"
                for r in match.excluded.itertuples()]
    missing = int(match.excluded["value"].isna().sum())
    if missing:
        warnings.append(f"{missing} excluded lines have no known value and are not in the coverage")
    return {
        "as_of": str(match.as_of.date()),
        "exposure": {"long_usd": book.long, "short_usd": book.short, "gross_usd": book.gross, "net_usd": book.net,
                     "net_over_gross": book.net / book.gross if book.gross > 0 else None},
        "beta": {"beta_dollars": book.beta_dollars, "beta_over_gross": book.beta,
                 "by_position_usd": {str(k): float(v) for k, v in by_name.items()},
                 "note": "Σ value_i·β_i with β_i the cascade's L1 market beta (−l1_mkt_hr)"},
        "hedges": hedges,
        "risk": {"systematic": {**vol(systematic), "by_layer_usd2": layer,
                                "exposure_usd": {str(k): float(v) * book.gross for k, v in risk.exposures.items()
                                                 if v != 0},
                                "method": "x'Σx: raw-ETF dollar exposures (−L3 hedge ratios) × the ETF covariance"},
                 "residual": {**vol(residual), "method": "Σ v_i²·l3_res_er_i·stock_var_i (diagonal)"},
                 "total": {**vol(total), "systematic_share": systematic / total if total > 0 else None,
                           "residual_share": residual / total if total > 0 else None},
                 "risk_index": float(risk.risk_index), "share_note": NEGATIVE_SHARE_NOTE},
        "coverage": {"input_gross_usd": input_gross, "modelled_gross_usd": book.gross,
                     "coverage": book.gross / input_gross if input_gross > 0 else None,
                     "holdings_analyzed": match.summary(), "names": len(match.matched),
                     "excluded": [{"line": int(r.line), "ticker": r.ticker if isinstance(r.ticker, str) else None,
                                   "reason": r.reason} for r in match.excluded.itertuples()]},
        "warnings": warnings,
        "notes": a.notes,
    }
