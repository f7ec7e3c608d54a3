"""Model B over REST: models and builds, factor summary, correlations, cumulative returns,
a stock's exposures, and a portfolio's factor risk.

Asking for anything of a packaged model that is not built yet starts its build in the
background (auto-build) and answers ``202 Accepted`` with the job to poll; the same request
succeeds once the job is done. A model whose last build in this worker failed answers 503
with that job's error instead of rebuilding on every request; ``POST …/build`` retries.
Jobs are per worker (see :mod:`riskstrata.api.jobs`). A built model's factor returns and last
date (exposures, covariance, specific risk) are held in memory per version (``AppState.factor_model``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from riskstrata.api.deps import get_state
from riskstrata.api.errors import ApiError, day_in_model
from riskstrata.api.jobs import DONE, FAILED, Job, JobConflict, JobRegistry, StoreClaim, registry_of
from riskstrata.api.ours_schemas import BuildRequest, FactorRiskRequest, iso, records, respond
from riskstrata.api.state import AppState
from riskstrata.api.wire_schemas import TICKER_PATTERN
from riskstrata.errors import DataValidationError
from riskstrata.factors import summary as S
from riskstrata.factors.spec import packaged_specs
from riskstrata.services import factors as svc

router = APIRouter(tags=["factors (Model B)"])

# The stages build_factor_model reports, in order: progress = share of them reached.
BUILD_STAGES = ("loading panels", "descriptors", "exposures", "regression", "specific risk",
                "factor covariance", "validation", "writing")
RETRY_AFTER_S = "2"

_PENDING = {202: {"description": "The model is not built: its build was started (or is running); poll the job."},
            404: {"description": "Unknown model, ticker or job."},
            503: {"description": "The model's last build failed (see message), or the store is missing data."}}


def get_jobs(request: Request) -> JobRegistry:
    return registry_of(request.app.state)


State = Annotated[AppState, Depends(get_state)]
Jobs = Annotated[JobRegistry, Depends(get_jobs)]
ModelName = Annotated[str, Path(description="A packaged model spec, e.g. US21 or US_CORE.", max_length=64)]


# ----------------------------------------------------------------------------- jobs and builds


def _known(model: str) -> str:
    """Only packaged specs are served: a spec path from a request would read the server's files."""
    specs = packaged_specs()
    if model not in specs:
        raise ApiError(404, "Not Found", f"unknown model {model!r}; models are: {', '.join(sorted(specs))}")
    return model


def _build_work(state: AppState, model: str, start: dt.date | None = None, end: dt.date | None = None):
    def work(progress):
        return svc.build_factor_model(state.store, model, start, end, progress=progress)
    return work


def _utc(t: float | None) -> str | None:
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def job_body(job: Job) -> dict[str, Any]:
    """A job on the wire: status queued | running | done | failed, the current stage, progress 0–1."""
    if job.status == DONE:
        progress = 1.0
    elif job.stage in BUILD_STAGES:
        progress = BUILD_STAGES.index(job.stage) / len(BUILD_STAGES)
    else:
        progress = 0.0 if job.stage is None else None
    return {"job_id": job.id, "kind": job.kind, "model": job.key, "status": job.status, "stage": job.stage,
            "progress": progress, "stages": [{"stage": s["stage"], "at": _utc(s["at"])} for s in job.stages],
            "error": job.error, "result": job.result, "created": _utc(job.created), "started": _utc(job.started),
            "finished": _utc(job.finished)}


def _accepted(job: Job, message: str) -> JSONResponse:
    return respond({**job_body(job), "message": message}, 202,
                   {"Location": f"/api/jobs/{job.id}", "Retry-After": RETRY_AFTER_S})


def _auto_build(state: AppState, jobs: JobRegistry, model: str) -> JSONResponse | None:
    """None when ``model`` is built; otherwise the 202 answer for its (started or running) build."""
    _known(model)
    if state.store.current_version(svc.model_names(model)["factors"]) is not None:
        return None
    last = jobs.latest(model)
    if last is not None and last.status == FAILED:
        raise ApiError(503, "Model Not Built",
                       f"model {model} is not built and its last build failed: {last.error}; "
                       f"POST /api/factors/{model}/build to retry", extra={"job_id": last.id})
    job, started = jobs.start("build", model, _build_work(state, model))
    how = "building it now" if started else "its build is running"
    return _accepted(job, f"model {model} is not built: {how}; poll /api/jobs/{job.id}")


@router.get("/factors/models", summary="Model specs and their build status")
def list_models(state: State, jobs: Jobs) -> JSONResponse:
    """Every packaged spec: its number of factors, whether it is built (version, date range), how many
    of its factors the build estimated (``estimated``), each one it did not with the reason
    (``not_estimated``), each factor's share of dates estimated (``coverage``), and the latest
    build job this worker knows of."""
    rows = records(svc.list_models(state.store))
    for row in rows:
        job = jobs.latest(row["model"])
        row["job"] = None if job is None else {k: v for k, v in job_body(job).items() if k != "stages"}
    return respond({"models": rows})


@router.post("/factors/{model}/build", status_code=202, summary="Build (or rebuild) a model in the background",
             responses={202: {"description": "The build job."},
                        404: _PENDING[404],
                        409: {"description": "This model is already building (one build per model at a time); "
                                             "the body's job_id is the running job."}})
def build(model: ModelName, state: State, jobs: Jobs,
          body: Annotated[BuildRequest | None, Body()] = None) -> JSONResponse:
    """Start a build; returns ``{job_id, status, stage, …}``. Progress: ``GET /api/jobs/{job_id}``."""
    _known(model)
    body = body or BuildRequest()
    try:
        job = jobs.start_exclusive("build", model, _build_work(state, model, body.start, body.end),
                                   claim=StoreClaim(state.store, svc.model_names(model)["factors"]))
    except JobConflict as exc:
        raise ApiError(409, "Conflict", f"{exc}; poll /api/jobs/{exc.job_id}", extra={"job_id": exc.job_id}) from None
    return _accepted(job, "build started")


@router.get("/jobs/{job_id}", summary="A background job's status, stage and error",
            responses={404: {"description": "No such job in this worker."}})
def get_job(job_id: Annotated[str, Path(max_length=80)], jobs: Jobs) -> JSONResponse:
    job = jobs.get(job_id)
    if job is None:
        raise ApiError(404, "Not Found", f"no job {job_id!r} in this worker: jobs live in the worker process that "
                                         "started them (GET /api/factors/models shows what is built)")
    return respond(job_body(job))


# ----------------------------------------------------------------------------- questions to a built model


def _factors_filter(returns: pd.DataFrame, factors: str | None) -> pd.DataFrame:
    if not factors:
        return returns
    wanted = [f.strip().upper() for f in factors.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in returns.columns]
    if unknown:
        raise DataValidationError(f"unknown factor {', '.join(map(repr, unknown))}; "
                                  f"factors are: {', '.join(map(str, returns.columns))}")
    return returns[wanted]


@router.get("/factors/{model}/summary", summary="Factor performance table", responses=_PENDING)
def summary(model: ModelName, state: State, jobs: Jobs) -> JSONResponse:
    """Per spec factor: cagr, cumulative_return, ann_vol, sharpe, latest_return, latest_date, max_drawdown,
    n_days (decimals, not percent), and its coverage: status ("estimated" | "not estimated"),
    dates_estimated of dates, coverage_last (share of the estimation universe's cap with fresh data
    behind the last return) and reason (why or when not estimated; null if estimated on every date)."""
    if (pending := _auto_build(state, jobs, model)) is not None:
        return pending
    latest = state.factor_model(model)
    table = svc.summary_table(latest.factor_returns, latest.model.meta)
    return respond({"model": model, "factors": records(table, index="factor")})


@router.get("/factors/{model}/correlation", summary="Factor correlation matrix", responses=_PENDING)
def correlation(model: ModelName, state: State, jobs: Jobs,
                window: Annotated[int | None, Query(ge=2, description="Trailing days (default: all).")] = None
                ) -> JSONResponse:
    """Pearson correlations of daily factor returns: ``matrix[i][j]`` for ``factors[i]``, ``factors[j]``
    (null where a factor has too few returns)."""
    if (pending := _auto_build(state, jobs, model)) is not None:
        return pending
    corr = S.correlation_matrix(state.factor_model(model).factor_returns, window)
    return respond({"model": model, "window": window, "factors": [str(c) for c in corr.columns],
                    "matrix": corr.to_numpy().tolist()})


@router.get("/factors/{model}/correlation/{a}/{b}", summary="Correlation of two factors", responses=_PENDING)
def pair_correlation(model: ModelName, a: str, b: str, state: State, jobs: Jobs,
                     window: Annotated[int | None, Query(ge=2, description="Trailing days (default: all).")] = None
                     ) -> JSONResponse:
    """The correlation over the window and its rolling 63-day history (``rolling.dates`` / ``rolling.values``)."""
    if (pending := _auto_build(state, jobs, model)) is not None:
        return pending
    pair = S.pair_correlation(state.factor_model(model).factor_returns, a.upper(), b.upper(), window)
    rolling = pair["rolling"]
    return respond({"model": model, "a": pair["a"], "b": pair["b"], "window": window,
                    "correlation": pair["correlation"], "n_days": int(pair["n_days"]),
                    "rolling": {"days": S.ROLLING_DAYS, "dates": [iso(d) for d in rolling.index],
                                "values": rolling.to_numpy().tolist()}})


@router.get("/factors/{model}/cumulative", summary="Cumulative factor returns", responses=_PENDING)
def cumulative(model: ModelName, state: State, jobs: Jobs,
               factors: Annotated[str | None, Query(description="Comma-separated factors (default: all).")] = None
               ) -> JSONResponse:
    """Compounded return path Π(1 + r) − 1 per factor on each date (decimals; null before a factor's first return)."""
    if (pending := _auto_build(state, jobs, model)) is not None:
        return pending
    path = S.cumulative_returns(_factors_filter(state.factor_model(model).factor_returns, factors))
    return respond({"model": model, "dates": [iso(d) for d in path.index],
                    "series": {str(f): path[f].to_numpy().tolist() for f in path.columns}})


@router.get("/factors/{model}/exposures/{ticker}", summary="A stock's exposure to every factor", responses=_PENDING)
def exposures(model: ModelName, ticker: Annotated[str, Path(max_length=32, pattern=TICKER_PATTERN)], state: State,
              jobs: Jobs,
              date: Annotated[dt.date | None, Query(description="As of (default: the model's last date).")] = None
              ) -> JSONResponse:
    """Z-score exposures on the last model date on or before ``date``; null for a style not estimated
    that date (its data cover too little of the market: see the summary's ``reason``)."""
    if (pending := _auto_build(state, jobs, model)) is not None:
        return pending
    latest = state.factor_model(model)
    row = svc.stock_exposures(state.store, ticker, day_in_model(date, latest.model.meta), model, latest=latest)
    return respond({"model": model, "ticker": ticker.upper(), "as_of": str(row.name).split(" ")[-1],
                    "exposures": {str(k): float(v) for k, v in row.items()}})


@router.post("/factors/{model}/risk", summary="A portfolio's factor risk", responses=_PENDING)
def risk(model: ModelName, body: FactorRiskRequest, state: State, jobs: Jobs) -> JSONResponse:
    """Annualised vol from X'FX + specific, Euler shares (market / styles / industries / specific),
    the portfolio's factor exposures, and the tickers not in the model. Holdings are not stored."""
    if (pending := _auto_build(state, jobs, model)) is not None:
        return pending
    weights = pd.Series([h.weight for h in body.holdings], index=[h.ticker.strip() for h in body.holdings], dtype=float)
    latest = state.factor_model(model)
    day = day_in_model(body.date, latest.model.meta)
    return respond({"model": model, **svc.portfolio_factor_risk(state.store, weights, day, model, latest=latest)})
