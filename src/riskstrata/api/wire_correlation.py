"""Factor correlation routes of riskmodels-py (api-contract §5.10), over the factor ETFs.

``GET /metrics/{T}/correlation`` (``get_factor_correlation_single``) and ``POST /correlation``
(``get_factor_correlation``, one ticker or a list). The numbers are
:func:`riskstrata.services.correlation.factor_correlation`'s; ``factors`` are ETF tickers
(default: the market ETF, the sector SPDRs and the stock's subsector ETF). A list request answers
``{"results": [...]}`` with an error entry per unknown ticker, never a silent drop.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from riskstrata.api.wire import TickerPath, WireDep
from riskstrata.api.wire_meta import json_response
from riskstrata.api.wire_schemas import MAX_BATCH, Ticker, WholeInt
from riskstrata.errors import UnknownTicker
from riskstrata.services.correlation import MAX_WINDOW, MIN_WINDOW, factor_correlation

router = APIRouter(tags=["wire-compatible (riskmodels-py)"])

ReturnType = Literal["gross", "l1", "l2", "l3_residual"]
Method = Literal["pearson", "spearman"]


class CorrelationRequest(BaseModel):
    """POST /correlation: one ticker or up to 100; ``factors`` are ETF tickers (default: the cascade's)."""

    model_config = ConfigDict(strict=True)

    ticker: Ticker | Annotated[list[Ticker], Field(min_length=1, max_length=MAX_BATCH)] = Field(examples=["NVDA"])
    factors: list[Ticker] | None = Field(default=None, max_length=50)
    return_type: ReturnType = "l3_residual"
    window_days: WholeInt = Field(default=252, ge=MIN_WINDOW, le=MAX_WINDOW)
    method: Method = "pearson"


def _body(w, requested: str, factors: list[str] | None, return_type: str, window_days: int, method: str,
          started: float) -> dict:
    symbol = w.symbol(requested)
    out = factor_correlation(w.store, symbol, factors=factors, return_type=return_type, window_days=window_days,
                             method=method)
    out["ticker"] = requested.strip().upper()
    out["_metadata"] = w.lin.metadata(list(out["correlations"]))
    out["_agent"] = {"latency_ms": round(1000 * (time.perf_counter() - started), 1), "request_id": w.lin.request_id}
    return out


@router.get("/metrics/{ticker}/correlation", summary="Correlation of a stock's returns with the factor ETFs")
def get_correlation(w: WireDep, ticker: TickerPath, return_type: ReturnType = "l3_residual",
                    window_days: Annotated[int, Query(ge=MIN_WINDOW, le=MAX_WINDOW)] = 252, method: Method = "pearson",
                    factors: str | None = None, factor: str | None = None) -> Response:
    chosen = factors or factor
    names = [f for f in chosen.split(",") if f.strip()] if chosen else None
    return json_response(_body(w, ticker, names, return_type, window_days, method, time.perf_counter()), w.lin)


@router.post("/correlation", summary="Correlations with the factor ETFs for one ticker or a list")
def post_correlation(w: WireDep, req: CorrelationRequest) -> Response:
    started = time.perf_counter()
    if isinstance(req.ticker, str):
        return json_response(_body(w, req.ticker, req.factors, req.return_type, req.window_days, req.method, started),
                             w.lin)
    results = []
    for t in req.ticker:
        try:
            body = _body(w, t, req.factors, req.return_type, req.window_days, req.method, started)
            body.pop("_metadata"), body.pop("_agent")
            results.append({**body, "status": "success"})
        except UnknownTicker:
            results.append({"ticker": t.strip().upper(), "status": "error", "error": f"Symbol not found for ticker {t}"})
    return json_response({"results": results, "_metadata": w.lin.metadata(),
                          "_agent": {"latency_ms": round(1000 * (time.perf_counter() - started), 1),
                                     "request_id": w.lin.request_id}}, w.lin)
