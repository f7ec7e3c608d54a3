"""The portfolio layer over REST: analyze, hedge, scale, look through.

Holdings come in the request body only. They are read into memory, analysed, and dropped with
the request: nothing here writes to the store or logs a holding (the error handlers log only
an exception's type). Response keys are the CLI's ``--json`` keys (one vocabulary). The
services get the worker's held :class:`~riskstrata.services.portfolio.PortfolioContext`: a
request for the latest date reads nothing from the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from riskstrata.api.deps import get_state
from riskstrata.api.errors import ApiError
from riskstrata.api.ours_schemas import (AnalyzeRequest, HedgeRequest, LookthroughRequest, ScaleRequest, iso, records,
                                         respond)
from riskstrata.api.state import AppState
from riskstrata.portfolio.risk import NEGATIVE_SHARE_NOTE, PortfolioRisk, nonzero_by_column
from riskstrata.services import portfolio as svc

router = APIRouter(prefix="/portfolio", tags=["portfolio"])
State = Annotated[AppState, Depends(get_state)]

_ERRORS = {400: {"description": "Holdings that cannot be read or analysed (the message says which and why)."},
           503: {"description": "The cascade model is not built in this store."}}


def _risk(r: PortfolioRisk) -> dict:
    return {"risk_index": r.risk_index, "vol_ann": r.vol_ann, "market_vol_ann": r.market_vol_ann,
            "decomposition": {k: float(v) for k, v in r.by_role.items()}, "share_note": NEGATIVE_SHARE_NOTE}


@router.post("/analyze", summary="Matching, Risk Index and its decomposition", responses=_ERRORS)
def analyze(body: AnalyzeRequest, state: State) -> JSONResponse:
    """"X/Y holdings analyzed" with every exclusion's reason; Risk Index (100 · σ_p / σ_SPY, weights
    relative to gross); Euler shares of variance by market / sector / subsector / residual, by
    position and by ETF (negative = diversifies); hedge ratios per level ($ of ETF per $1 of gross);
    the book (long, short, gross, net, beta-dollars, hedges in dollars); Model B's factor-group
    shares when built."""
    a = svc.analyze_portfolio(state.store, body.frame(), body.day(), body.value, held=state.portfolio())
    hrs = a.hedge_ratios
    return respond({
        "as_of": iso(a.match.as_of), "holdings_analyzed": a.match.summary(), "analyzed": a.match.analyzed,
        "total": a.match.total_lines, "excluded": records(a.match.excluded), **_risk(a.risk),
        "by_position": records(a.risk.by_position, index="ticker"), "by_etf": records(a.risk.by_etf, index="etf"),
        "hedge_ratios": nonzero_by_column(hrs),
        "book": a.book.as_dict(),
        "factor_model": None if a.factor_risk is None else {k: a.factor_risk[k] for k in ("date", "vol_ann", "shares")},
        "notes": a.notes})


@router.post("/hedge", summary="Hedge trade list in dollars at a level", responses=_ERRORS)
def hedge(body: HedgeRequest, state: State) -> JSONResponse:
    """Hedge trades netted by ETF ("short $X SPY, short $Y XLK"), sized on the matched positions'
    dollars (``value`` × weights for weight-only holdings; cash and excluded lines are not hedged;
    ``hedge_basis`` says which value was used), and the risk that remains after them."""
    h = svc.hedge_portfolio(state.store, body.frame(), body.level, body.value, body.day(), held=state.portfolio())
    return respond({"level": h.level, "value": h.value, "hedged_value": h.hedged_value, "hedge_basis": h.hedge_basis,
                    "book": h.book.as_dict(), "trades": records(h.trades), "description": h.description,
                    "risk_index_before": h.before.risk_index, "risk_index_after": h.after.risk_index,
                    "residual_share_after": float(h.after.by_role["residual"]),
                    "market_beta_after": h.market_beta_after, "before": _risk(h.before), "after": _risk(h.after)})


@router.post("/scale", summary="Cut one exposure with ETFs only (no holdings sold)", responses=_ERRORS)
def scale(body: ScaleRequest, state: State) -> JSONResponse:
    """Reduce ``exposure`` ('market' beta or an ETF's net exposure) by the fraction ``reduce``."""
    s = svc.scale_portfolio(state.store, body.frame(), body.exposure, body.reduce, body.value, body.day(),
                            held=state.portfolio())
    return respond({"exposure": s.exposure, "reduce": s.reduce, "trade": records(s.trade),
                    "exposure_before": s.before_exposure, "exposure_after": s.after_exposure,
                    "risk_index_before": s.before.risk_index, "risk_index_after": s.after.risk_index})


@router.post("/lookthrough", summary="ETF positions expanded into their constituents", responses=_ERRORS)
def lookthrough(body: LookthroughRequest, state: State) -> JSONResponse:
    """Combined exposure per name (direct + through ETFs), each fund's overlap with the direct picks,
    ETFs without holdings data, and active share against ``benchmark`` (an ETF with holdings loaded)."""
    if body.benchmark and Path(body.benchmark).exists():
        # The service also reads a benchmark weights *file*; over HTTP a name must never reach the disk.
        raise ApiError(400, "Bad Request", f"benchmark {body.benchmark!r} must be an ETF ticker")
    r = svc.lookthrough_portfolio(state.store, body.frame(), body.day(), body.benchmark, held=state.portfolio())
    lt = r.look
    return respond({"holdings_analyzed": r.match.summary(), "exposures": records(lt.exposures, index="ticker"),
                    "overlap": records(lt.overlap, index="etf"), "unexpanded": records(lt.unexpanded),
                    "residual_weight": lt.residual_weight, "active_share": r.active_share,
                    "benchmark": r.benchmark, "notes": r.notes})
