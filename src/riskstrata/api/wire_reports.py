"""Snapshots, PDF reports and the signed-book exposure route of riskmodels-py 0.5.0.

- ``POST /snapshot`` (``snapshot`` / ``snapshot_ticker``): the canonical JSON snapshot of a
  portfolio or a ticker (:mod:`riskstrata.reports.snapshot`).
- ``POST /portfolio/risk-snapshot`` (``post_portfolio_risk_snapshot[_pdf]``): the risk-index
  body of ``/portfolio/risk-index`` (weights renormalised over the resolved names) with hedge
  ratios per name, the snapshot, and optionally a diversification block; ``format=pdf`` answers
  the one-page PDF (:mod:`riskstrata.reports.pdf`); ``png`` is a 422 saying so.
- ``GET /metrics/{T}/snapshot.pdf`` (``get_metrics_snapshot_pdf``): a stock's one-page PDF.
- ``POST /portfolio/exposure``: a signed dollar book of up to 1,000 names
  (:func:`riskstrata.services.portfolio.book_exposure_report`).

Holdings are request data: read in memory, never stored or logged.
"""

from __future__ import annotations

from typing import Annotated, Literal

import pandas as pd
from fastapi import APIRouter, Body
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from riskstrata.api import wire_lookup as lookup
from riskstrata.api import wire_pri as pri
from riskstrata.api.errors import ApiError
from riskstrata.api.wire import TickerPath, WireDep
from riskstrata.api.wire_meta import json_response
from riskstrata.api.wire_schemas import MAX_BATCH, MAX_QUANTITY, IsoDate, Position, Ticker, WholeInt
from riskstrata.api.wire_snapshot import hedge_levels
from riskstrata.reports.pdf import render_pdf
from riskstrata.reports.snapshot import MAX_LOOKBACK, MIN_LOOKBACK, portfolio_snapshot, snapshot_of, ticker_snapshot
from riskstrata.services.portfolio import analyze_portfolio, book_exposure_report, diversification

router = APIRouter(tags=["wire-compatible (riskmodels-py)"])

MAX_EXPOSURE_NAMES = 1000
PDF_RESPONSE = {200: {"content": {"application/pdf": {}}, "description": "A one-page PDF report."}}
HR_FIELDS = ("l1_mkt_hr", "l2_mkt_hr", "l2_sec_hr", "l3_mkt_hr", "l3_sec_hr", "l3_sub_hr")


class SnapshotPosition(BaseModel):
    """A weight (any positive scale) or a number of shares (valued at the last close): one of them."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False,
                              json_schema_extra={"oneOf": [{"required": ["weight"]}, {"required": ["shares"]}]})

    ticker: Ticker
    # Numbers when present (never null): the schema's "weight or shares" is then exactly the rule.
    weight: float = Field(None, gt=0, le=MAX_QUANTITY)
    shares: float = Field(None, gt=0, le=MAX_QUANTITY)

    @model_validator(mode="after")
    def _one_quantity(self) -> SnapshotPosition:
        if (self.weight is None) == (self.shares is None):
            raise ValueError("each position needs a weight or shares (one of them)")
        return self


class _SnapshotBase(BaseModel):
    model_config = ConfigDict(strict=True)

    lookback_days: WholeInt = Field(default=252, ge=MIN_LOOKBACK, le=MAX_LOOKBACK)
    mode: Literal["frozen"] = "frozen"
    benchmark: Ticker | None = None


class PortfolioSnapshotRequest(_SnapshotBase):
    """POST /snapshot with type 'portfolio' (the client's ``snapshot``)."""

    type: Literal["portfolio"]
    portfolio: list[SnapshotPosition] = Field(min_length=1, max_length=MAX_BATCH)


class TickerSnapshotRequest(_SnapshotBase):
    """POST /snapshot with type 'ticker' (the client's ``snapshot_ticker``)."""

    type: Literal["ticker"]
    ticker: Ticker


SnapshotRequest = Annotated[PortfolioSnapshotRequest | TickerSnapshotRequest, Field(discriminator="type")]


class RiskSnapshotRequest(BaseModel):
    """POST /portfolio/risk-snapshot (json or pdf; png is refused with a message saying so)."""

    model_config = ConfigDict(strict=True)

    positions: list[Position] = Field(min_length=1, max_length=MAX_BATCH)
    title: str | None = Field(default=None, max_length=200)
    as_of_date: IsoDate | None = None
    format: Literal["json", "pdf", "png"] = "json"
    include_diversification: bool = False
    window_days: WholeInt = Field(default=252, ge=20, le=2000)
    no_cache: bool | None = None


class ExposurePosition(BaseModel):
    """A signed dollar position (short < 0)."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)

    ticker: Ticker
    value: float = Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY, description="Market value in USD; negative = short.")


class ExposureRequest(BaseModel):
    """POST /portfolio/exposure: a long/short book of up to 1,000 names in dollars."""

    model_config = ConfigDict(strict=True)

    positions: list[ExposurePosition] = Field(min_length=1, max_length=MAX_EXPOSURE_NAMES)
    lookback_days: WholeInt | None = Field(default=None, ge=20, le=2000,
                                           description="accepted and ignored: the ETF covariance is estimated "
                                                       "over the model's own window")


def _pdf(content: bytes, w, name: str) -> Response:
    return Response(content, media_type="application/pdf",
                    headers={**w.lin.headers(), "Content-Disposition": f'inline; filename="{name}"'})


def _with_lineage(body: dict, w) -> dict:
    return {**body, "_metadata": w.lin.metadata(), "_agent": w.lin.agent()}


@router.post("/snapshot", summary="Canonical JSON snapshot of a portfolio or a ticker")
def post_snapshot(w: WireDep, req: Annotated[SnapshotRequest, Body()]) -> Response:
    if isinstance(req, TickerSnapshotRequest):
        symbol = w.symbol(req.ticker)
        body = ticker_snapshot(w.store, symbol, lookback_days=req.lookback_days, benchmark=req.benchmark)
    else:
        rows = [{"ticker": p.ticker, "weight": p.weight, "shares": p.shares} for p in req.portfolio]
        holdings = pd.DataFrame(rows).dropna(axis=1, how="all")
        body = portfolio_snapshot(w.store, holdings, lookback_days=req.lookback_days, benchmark=req.benchmark)
    return json_response(_with_lineage(body, w), w.lin)


@router.get("/metrics/{ticker}/snapshot.pdf", summary="One-page PDF risk report of a stock", response_class=Response,
            responses=PDF_RESPONSE)
def get_metrics_snapshot_pdf(w: WireDep, ticker: TickerPath) -> Response:
    symbol = w.symbol(ticker)
    return _pdf(render_pdf(ticker_snapshot(w.store, symbol)), w, f"{symbol}-snapshot.pdf")


@router.post("/portfolio/risk-snapshot", summary="Portfolio risk snapshot: JSON or a one-page PDF",
             responses=PDF_RESPONSE)
def post_portfolio_risk_snapshot(w: WireDep, req: RiskSnapshotRequest) -> Response:
    if req.format == "png":
        raise ApiError(422, "Unprocessable Entity", "format=png is not served: ask for format=pdf or format=json")
    weights = pri.normalized_weights(req.positions)
    rows, errors = lookup.latest_rows(w.pub, w.store, list(weights))
    if not rows:
        raise ApiError(400, "No valid positions", "None of the provided tickers could be resolved",
                       extra={"errors": [{"ticker": t, "error": e} for t, e in errors.items()]})
    holdings = {rows[t]["ticker"] if t in rows else t: wt for t, wt in weights.items()}
    as_of = req.as_of_date.isoformat() if req.as_of_date else None
    analysis = analyze_portfolio(w.store, holdings, as_of, held=w.pub.portfolio)
    snap = snapshot_of(w.store, analysis, kind="portfolio", title=req.title)
    if req.format == "pdf":
        return _pdf(render_pdf(snap), w, "portfolio-risk-snapshot.pdf")
    closes = {rows[t]["security_id"]: close for t, (close, _cap) in lookup.prices_and_caps(w.pub, w.store, rows).items()
              if close is not None}
    body = pri.risk_index_body(weights, rows, errors, closes, analysis, None, None, w.lin.metadata(), w.lin.agent())
    for t, entry in body["per_ticker"].items():  # the service's includeHedgeRatios
        entry.update({f: rows[t].get(f) for f in HR_FIELDS})
        entry["hedge_levels"] = hedge_levels(rows[t])
    if req.include_diversification:
        body["portfolio_risk_index"]["diversification"] = {**diversification(analysis),
                                                           "window_days_requested": req.window_days}
    body = {"title": req.title, "as_of": snap["snapshot"]["as_of"], **body, "snapshot": snap}
    return json_response(body, w.lin)


@router.post("/portfolio/exposure", summary="Signed long/short book: beta-dollars, hedges in dollars, risk in dollars")
def post_portfolio_exposure(w: WireDep, req: ExposureRequest) -> Response:
    holdings = pd.DataFrame({"ticker": [p.ticker for p in req.positions],
                             "market_value": [p.value for p in req.positions]})
    body = book_exposure_report(w.store, holdings, held=w.pub.portfolio)
    if req.lookback_days is not None:
        body["warnings"].append("lookback_days is ignored: the ETF covariance uses the model's estimation window")
    return json_response(_with_lineage(body, w), w.lin)
