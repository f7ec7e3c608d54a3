"""Wire-compatible routes for the riskmodels-py 0.5.0 client (api-contract §5), under /api.

Each route resolves the symbol (:mod:`wire_lookup`), calls a service for the numbers and hands
them to a shaping function (:mod:`wire_snapshot`, :mod:`wire_series`, :mod:`wire_batch`,
:mod:`wire_pri`); lineage and JSON safety come from :mod:`wire_meta`. Unknown tickers are 404
``{"error": "Symbol not found", "message"}`` on single-ticker routes and an explicit error entry
inside batches. Request bodies are never logged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

import pandas as pd
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from riskstrata import __version__
from riskstrata.api import wire_batch as batch
from riskstrata.api import wire_lookup as lookup
from riskstrata.api import wire_pri as pri
from riskstrata.api import wire_series as series
from riskstrata.api import wire_snapshot as snapshot
from riskstrata.api.deps import get_state
from riskstrata.api.errors import ApiError, day_in_model
from riskstrata.api.published import LatestRow, Published
from riskstrata.api.state import AppState
from riskstrata.api.wire_meta import (
    DATA_SOURCE,
    UNIVERSE_NAME,
    Lineage,
    json_response,
    lineage,
    table_response,
)
from riskstrata.api.wire_schemas import (
    MAX_YEARS,
    TICKER_PATTERN,
    BatchAnalyzeRequest,
    BatchLstarRequest,
    DecomposeRequest,
    Format,
    RiskIndexRequest,
    Segment,
)
from riskstrata.cascade.lstar import DEFAULT_SEGMENT
from riskstrata.data.store import Store
from riskstrata.errors import RiskstrataError
from riskstrata.jsonsafe import dumps_json
from riskstrata.services import cascade
from riskstrata.services.portfolio import analyze_portfolio

router = APIRouter(tags=["wire-compatible (riskmodels-py)"])
# format=parquet|csv answers with a table: declare the media types so the OpenAPI document is true.
TABULAR_RESPONSES = {200: {"description": "JSON by default; with format=csv or format=parquet, the same rows as a "
                                          "table (a file download).",
                           "content": {"application/json": {},
                                       "application/vnd.apache.parquet": {"schema": {"type": "string",
                                                                                      "format": "binary"}},
                                       "text/csv": {"schema": {"type": "string"}}}}}
_TICKER_DOC = "Ticker: 1–12 letters, digits, '.', '-', '_', '^' or '=' (case-insensitive); malformed → 400"
TickerPath = Annotated[str, Path(min_length=1, max_length=12, pattern=TICKER_PATTERN, description=_TICKER_DOC)]
TickerQuery = Annotated[str, Query(min_length=1, max_length=12, pattern=TICKER_PATTERN, description=_TICKER_DOC)]

Years = Annotated[int, Query(ge=1, le=MAX_YEARS, description="calendar years of daily history, ending on the "
                                                                "model's last date")]
IgnoredInt = Annotated[int | None, Query(description="accepted and ignored, as by the commercial service")]
IgnoredBool = Annotated[bool | None, Query(description="accepted and ignored, as by the commercial service")]
Threshold = Annotated[float | None, Query(ge=0.0, le=0.5, description="L* marginal-ER threshold θ; omit for the level "
                                          "the build published, give any value (0.01 included) to recompute")]


@dataclass
class Wire:
    """What every data route needs: the store, the published version it answers from, lineage,
    symbol lookup. One request sees one version, even while a build publishes the next."""

    store: Store
    pub: Published
    lin: Lineage

    def symbol(self, raw: str) -> str:
        """The requested ticker as the store holds it (GOOG ⇄ GOOGL); 404 when the model has never
        seen it (answered from memory: a flood of unknown tickers costs no store reads)."""
        symbol = lookup.resolve_symbol(lookup.clean_ticker(raw), self.pub.latest)
        self.pub.check_modelled(symbol)
        return symbol

    def window(self, years: int) -> tuple[pd.Timestamp, pd.Timestamp]:
        """[end − years, end] in calendar years, end being the model's last date."""
        end = pd.Timestamp(self.lin.data_as_of)
        return end - pd.DateOffset(years=years), end

    def check_market(self, etf: str | None) -> None:
        if etf and etf.strip().upper() != self.lin.market_etf:
            raise ApiError(400, "Invalid request",
                           f"market_factor_etf {etf!r}: this model's market factor is {self.lin.market_etf}")

    def history_meta(self, start: pd.Timestamp, end: pd.Timestamp, factors: list | None = None) -> dict:
        return self.lin.metadata(factors, data_source=DATA_SOURCE,
                                 range=[str(start.date()), str(end.date())])

    def ticker_factors(self, symbol: str) -> list[str | None]:
        rows = self.pub.universe.rows
        if symbol not in rows.index:
            return [self.lin.market_etf]
        return [self.lin.market_etf, rows.at[symbol, "sector_etf"], rows.at[symbol, "subsector_etf"]]

    def stored_threshold(self) -> float:
        """The θ the build published ``lstar_level`` with."""
        return self.pub.lstar_threshold

    def lstar_provenance(self, threshold: float | None) -> dict:
        """Which L* an /lstar body carries: the published level (no θ given) or the rule with θ."""
        return {"axis": "industry", "threshold_used": self.stored_threshold() if threshold is None else threshold,
                "lstar_source": "materialized" if threshold is None else "rule"}


async def wire(request: Request, state: Annotated[AppState, Depends(get_state)]) -> Wire:
    """Async, so a request whose version is in memory never waits for a threadpool thread."""
    pub = await state.current_async()
    return Wire(state.store, pub, lineage(pub, request))


WireDep = Annotated[Wire, Depends(wire)]


def _respond(body: dict, fmt: str, lin: Lineage, table: pd.DataFrame | None = None) -> Response:
    return json_response(body, lin) if fmt == "json" else table_response(table, fmt, lin)


# --------------------------------------------------------------------------- single ticker


def _stored_row(w: Wire, symbol: str) -> LatestRow:
    """The latest row of a ticker that is not on the model's last date (delisted, an older
    listing), with its close and cap, read from the store."""
    row = cascade.metrics(w.store, symbol)
    return (row, *lookup.prices_and_caps(w.pub, w.store, {symbol: row})[symbol])


def _metrics_body(w: Wire, latest: LatestRow, requested: str, segment: str) -> dict:
    row, close, cap = latest
    return snapshot.metrics_body(row, requested, w.pub.universe.asset_type(row["ticker"]), close, cap, segment,
                                 w.lin.metadata([row["market_etf"], row["sector_etf"], row["subsector_etf"]]))


@router.get("/metrics/{ticker}", summary="Latest risk snapshot of one ticker", responses=TABULAR_RESPONSES)
async def get_metrics(w: WireDep, ticker: TickerPath, user_segment: Segment = DEFAULT_SEGMENT,
                      format: Format = "json") -> Response:
    requested, symbol = lookup.clean_ticker(ticker), w.symbol(ticker)
    latest = w.pub.latest.get(symbol)
    if latest is None:  # off the last date: a store read, on a worker thread
        latest = await run_in_threadpool(_stored_row, w, symbol)
    elif format == "json":  # the body depends only on the version and the request: rendered once
        content = w.pub.memo(("metrics", requested, symbol, user_segment),
                             lambda: dumps_json(_metrics_body(w, latest, requested, user_segment)))
        return Response(content, media_type="application/json", headers=w.lin.headers())
    body = _metrics_body(w, latest, requested, user_segment)
    table = pd.DataFrame([snapshot.metrics_table_row(body)]) if format != "json" else None
    return _respond(body, format, w.lin, table)


@router.post("/decompose", summary="Four-bet exposure and hedge map of one ticker")
def post_decompose(w: WireDep, req: DecomposeRequest) -> Response:
    requested = lookup.clean_ticker(req.ticker)
    symbol = w.symbol(req.ticker)
    day_in_model(req.as_of, w.pub.meta, "as_of")  # the one rule for dates outside the model: 400
    latest = w.pub.latest.get(symbol) if req.as_of is None else None  # the last date: from memory
    bets = cascade.four_bets(latest[0]) if latest is not None else cascade.decompose(w.store, symbol, req.as_of)
    body = snapshot.decompose_body(bets, requested, w.lin.metadata(w.ticker_factors(symbol)))
    return json_response(body, w.lin)


@router.get("/ticker-returns", summary="Daily returns with L3 hedge ratios and explained risk",
            responses=TABULAR_RESPONSES)
def get_ticker_returns(w: WireDep, ticker: TickerQuery, years: Years = 1, format: Format = "json",
                       limit: IgnoredInt = None, nocache: IgnoredBool = None) -> Response:
    requested, symbol = lookup.clean_ticker(ticker), w.symbol(ticker)
    start, end = w.window(years)
    history = cascade.history(w.store, symbol, start, end, list(series.RETURN_FIELDS))
    sid = lookup.security_id(w.pub, w.store, symbol)
    rows = series.ticker_returns_rows(history, lookup.closes(w.store, sid, start, end))
    factors = w.ticker_factors(symbol)
    body = series.ticker_returns_body(requested, sid, w.pub.universe.asset_type(symbol), rows, factors,
                                      w.history_meta(start, end, factors))
    return _respond(body, format, w.lin, pd.DataFrame(rows) if format != "json" else None)


@router.get("/l3-decomposition", summary="Daily L3 hedge ratios and explained risk (semantic names)")
def get_l3_decomposition(w: WireDep, ticker: TickerQuery, market_factor_etf: str | None = None, years: Years = 1) -> Response:
    w.check_market(market_factor_etf)
    requested, symbol = lookup.clean_ticker(ticker), w.symbol(ticker)
    start, end = w.window(years)
    history = cascade.history(w.store, symbol, start, end, list(series.L3_FIELDS))
    body = {"ticker": requested, **series.l3_arrays(history), "market_factor_etf": w.lin.market_etf,
            "universe": UNIVERSE_NAME, "data_source": DATA_SOURCE,
            "_metadata": w.history_meta(start, end, w.ticker_factors(symbol))}
    return json_response(body, w.lin)


def _lstar_arrays(w: Wire, symbol: str, start: pd.Timestamp, end: pd.Timestamp, threshold: float | None) -> dict:
    """The /lstar arrays of one ticker plus which θ produced them (one scan of its rows)."""
    rows = cascade.history(w.store, symbol, start, end, list(dict.fromkeys(series.LEVEL_FIELDS + cascade.LSTAR_FIELDS)))
    return {**series.lstar_arrays(cascade.lstar_from_rows(rows, threshold), rows), **w.lstar_provenance(threshold)}


@router.get("/lstar", summary="L* hedge depth per date with that level's hedge ratios")
def get_lstar(w: WireDep, ticker: TickerQuery, market_factor_etf: str | None = None, years: Years = 1,
              threshold: Threshold = None, axis: Literal["industry", "style"] = "industry") -> Response:
    if axis == "style":
        raise ApiError(400, "Invalid request", "axis=style was removed in v4; use axis=industry")
    w.check_market(market_factor_etf)
    requested, symbol = lookup.clean_ticker(ticker), w.symbol(ticker)
    start, end = w.window(years)
    body = {"ticker": requested, **_lstar_arrays(w, symbol, start, end, threshold),
            "market_factor_etf": w.lin.market_etf, "universe": UNIVERSE_NAME, "data_source": DATA_SOURCE,
            "_metadata": w.history_meta(start, end, w.ticker_factors(symbol))}
    return json_response(body, w.lin)


@router.get("/returns-decomposition", summary="Daily gross, factor, combined-factor and residual returns per level")
def get_returns_decomposition(w: WireDep, ticker: TickerQuery, market_factor_etf: str | None = None, years: Years = 1,
                              include_lstar: bool = False, threshold: Threshold = None) -> Response:
    w.check_market(market_factor_etf)
    requested, symbol = lookup.clean_ticker(ticker), w.symbol(ticker)
    start, end = w.window(years)
    fields = series.DECOMPOSITION_FIELDS + (cascade.LSTAR_FIELDS if include_lstar else ())
    history = cascade.history(w.store, symbol, start, end, list(dict.fromkeys(fields)))
    body = {"ticker": requested, **series.returns_decomposition_arrays(history)}
    if include_lstar:
        chosen = cascade.lstar_from_rows(history, threshold)
        body["lstar"] = [snapshot.level_name(v) for v in chosen["lstar_level"].fillna(0)]
        body["lstar_residual_return"] = series.column(chosen, "lstar_rr")
        body["threshold_used"] = w.stored_threshold() if threshold is None else threshold
    body.update({"market_factor_etf": w.lin.market_etf, "universe": UNIVERSE_NAME, "data_source": DATA_SOURCE,
                 "_metadata": w.history_meta(start, end, w.ticker_factors(symbol))})
    return json_response(body, w.lin)


# --------------------------------------------------------------------------- batches


@router.post("/batch/analyze", summary="Metric blocks for up to 100 tickers (json, parquet or csv)", responses=TABULAR_RESPONSES)
def post_batch_analyze(w: WireDep, req: BatchAnalyzeRequest) -> Response:
    rows, errors = lookup.latest_rows(w.pub, w.store, req.tickers)
    prices = lookup.prices_and_caps(w.pub, w.store, rows)
    histories: dict[str, pd.DataFrame] = {}
    if batch.batch_needs_history(req.metrics, req.format):
        start, end = w.window(req.years)
        fields = list(batch.BATCH_HISTORY_FIELDS)
        histories = lookup.histories(w.store, {t: r["security_id"] for t, r in rows.items()}, start, end, fields)
    results = {}
    for t in dict.fromkeys(str(x).strip().upper() for x in req.tickers):  # request order, once each
        if t in rows:
            row = rows[t]
            levels = w.pub.memo(("hedge_levels", row["security_id"]), lambda: snapshot.hedge_levels(row))  # noqa: B023
            results[t] = batch.batch_entry(t, row, *prices[t], list(req.metrics), histories.get(t), levels)
        else:
            results[t] = batch.error_entry(t, errors[t])
    if req.format != "json":
        return table_response(batch.batch_table(results, list(req.metrics), histories), req.format, w.lin)
    body = {"results": results, "summary": batch.batch_summary(results), "_agent": w.lin.agent(),
            "_metadata": w.lin.metadata()}
    return json_response(body, w.lin)


@router.post("/batch/lstar", summary="L* series for up to 100 tickers (json, parquet or csv)", responses=TABULAR_RESPONSES)
def post_batch_lstar(w: WireDep, req: BatchLstarRequest) -> Response:
    w.check_market(req.market_factor_etf)
    start, end = w.window(req.years)
    rows, errors = lookup.latest_rows(w.pub, w.store, req.tickers)
    fields = dict.fromkeys(series.LSTAR_INPUT_FIELDS + (cascade.LSTAR_FIELDS if req.threshold is not None else ()))
    levels = lookup.histories(w.store, {t: r["security_id"] for t, r in rows.items()}, start, end, list(fields))
    if req.threshold is None:  # the published level: the stored columns lstar_history would read
        chosen = levels
    else:  # a custom θ: L* recomputed from the rows of the same scan
        chosen = {t: cascade.lstar_from_rows(h, req.threshold) for t, h in levels.items()}
    results: dict[str, dict] = {}
    for t in dict.fromkeys(str(x).strip().upper() for x in req.tickers):  # request order, once each
        if t in rows:
            results[t] = {"ticker": t, "status": "success", **series.lstar_arrays(chosen[t], levels[t]),
                          **w.lstar_provenance(req.threshold)}
        else:
            results[t] = batch.error_entry(t, errors[t])
    if req.format != "json":
        return table_response(series.lstar_table(results), req.format, w.lin)
    body = {"results": results, "summary": batch.batch_summary(results),
            "threshold_used": w.stored_threshold() if req.threshold is None else req.threshold,
            "_agent": w.lin.agent(), "_metadata": w.history_meta(start, end)}
    return json_response(body, w.lin)


# --------------------------------------------------------------------------- portfolio


@router.post("/portfolio/risk-index", summary="Portfolio Risk Index: weighted L3 ER (contract) and riskstrata's "
                                               "100 × σ_p/σ_SPY")
def post_portfolio_risk_index(w: WireDep, req: RiskIndexRequest) -> Response:
    if not req.positions:
        return json_response({"status": "syncing", "message": "No holdings loaded yet. Send positions "
                              "[{ticker, weight}] to compute the Portfolio Risk Index.",
                              "_metadata": w.lin.metadata(), "_agent": w.lin.agent()}, w.lin)
    weights = pri.normalized_weights(req.positions)
    rows, errors = lookup.latest_rows(w.pub, w.store, list(weights))
    if not rows:
        raise ApiError(400, "No valid positions", "None of the provided tickers could be resolved",
                       extra={"errors": [{"ticker": t, "error": e} for t, e in errors.items()]})
    closes = {rows[t]["security_id"]: close for t, (close, _cap) in lookup.prices_and_caps(w.pub, w.store, rows).items()
              if close is not None}
    holdings = {rows[t]["ticker"] if t in rows else t: wt for t, wt in weights.items()}
    try:
        analysis, failure = analyze_portfolio(w.store, holdings, held=w.pub.portfolio), None
    except RiskstrataError as exc:  # the contract's fields stand on their own; say why ours is missing
        analysis, failure = None, str(exc)
    time_series = None
    if req.time_series:
        start, end = w.window(req.years)
        daily = lookup.histories(w.store, {t: r["security_id"] for t, r in rows.items()}, start, end,
                                 list(pri.ER_KEYS.values()))
        time_series = pri.er_time_series(weights, daily)
    body = pri.risk_index_body(weights, rows, errors, closes, analysis, failure, time_series, w.lin.metadata(),
                               w.lin.agent())
    return json_response(body, w.lin)


# --------------------------------------------------------------------------- public


@router.get("/tickers", summary="The modelled universe, or a ticker search (public)")
def get_tickers(w: WireDep, search: str | None = None, mag7: bool = False, include_metadata: bool = False,
                array: Literal["ticker", "teo"] = "ticker") -> Response:
    uni = w.pub.universe
    if search is not None:
        body = lookup.search(uni, search)
    elif array == "teo":
        origin = pd.Timestamp("2007-01-01")
        body = {"teo": [int((d - origin).days) for d in lookup.model_dates(w.store)]}
    else:
        body = lookup.ticker_list(uni, mag7, include_metadata)
    body["_metadata"] = w.lin.metadata()
    return json_response(body, w.lin)


@router.get("/health", summary="Liveness and model status (public)")
async def health(request: Request, state: Annotated[AppState, Depends(get_state)]) -> Response:
    began = time.perf_counter()
    now = datetime.now(UTC).isoformat(timespec="seconds")
    body: dict = {"status": "healthy", "timestamp": now, "version": __version__}
    pub: Published | None = None
    try:
        version = state.store.current_version(cascade.MODEL)  # a real read of the store, timed
        store_ms = round(1000 * (time.perf_counter() - began), 2)
        if version is None:
            body["status"] = "degraded"
            model = {"status": "not_built", "message": "no cascade model: run `riskstrata build cascade` (or `riskstrata demo`)"}
        else:
            pub = await state.current_async()
            model = {"status": "up", "version": pub.version, "last_update": pub.end,
                     "universe_size": pub.universe.stock_count}
        body["services"] = {"store": {"status": "up", "latency_ms": store_ms, "last_update": None},
                            "cascade": model}
    except Exception as exc:  # noqa: BLE001 - health reports any failure as "down" instead of raising
        body.update(status="down", services={"store": {"status": "down", "error": type(exc).__name__}})
        return json_response(body, status=503)
    capability = "up" if body["status"] == "healthy" else "unavailable"
    body["capabilities"] = {c: {"status": capability} for c in (
        "metrics-snapshot", "decompose-position", "batch-analysis", "ticker-returns", "l3-decomposition",
        "lstar", "returns-decomposition", "portfolio-risk-index")}
    if pub is not None:
        lin = lineage(pub, request)
        body["_metadata"] = lin.metadata()
        return json_response(body, lin)
    return json_response(body)
