"""The dashboard's routes: home, stock, factor summary, portfolio, and the small JSON helpers
the pages call (factor pair, model builds and their progress).

Routes choose what to show and which template draws it; the numbers come from
:mod:`riskstrata.services.dashboard`. Pages of a model version are rendered once and kept
(their content depends only on the version and the URL); a portfolio page is computed for its
request and kept nowhere: holdings arrive in the POST body, are analysed in memory and dropped
with the response (``Cache-Control: no-store``; the access log records the path only).
"""

from __future__ import annotations

import gzip
import threading
from collections import OrderedDict
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

import pandas as pd
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from riskstrata.api.deps import failed_auth_wait, record_failed_auth
from riskstrata.api.errors import log_unexpected
from riskstrata.api.jobs import DONE, FAILED, Job, registry_of
from riskstrata.api.ours_factors import BUILD_STAGES
from riskstrata.api.state import AppState
from riskstrata.errors import DataValidationError, ModelNotBuilt, RiskstrataError, UnknownTicker
from riskstrata.factors.spec import packaged_specs
from riskstrata.jsonsafe import dumps_json
from riskstrata.services import dashboard as D
from riskstrata.services import factors as F
from riskstrata.services.cascade import MODEL
from riskstrata.web import figures as fig
from riskstrata.web.access import COOKIE, COOKIE_DAYS, data_access, key_name, page_access, pages_open, safe_next
from riskstrata.web.render import GZIP_LEVEL, PAGE_HEADERS, html_response, page

router = APIRouter()
Page = [Depends(page_access)]
Data = [Depends(data_access)]
DEFAULT_VALUE = 1_000_000.0
MAX_CACHED_PAGES = 256  # stock pages kept per worker (each ≈ 100 kB)


def _state(request: Request) -> AppState:
    return request.app.state.riskstrata


# ----------------------------------------------------------------------------- rendered-page cache


class PageCache:
    """Rendered pages keyed by (model versions, URL), least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self._pages: OrderedDict[Any, tuple[bytes, bytes]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: Any) -> tuple[bytes, bytes] | None:
        with self._lock:
            html = self._pages.get(key)
            if html is not None:
                self._pages.move_to_end(key)
            return html

    def put(self, key: Any, html: tuple[bytes, bytes]) -> None:
        with self._lock:
            self._pages[key] = html
            self._pages.move_to_end(key)
            while len(self._pages) > self._size:
                self._pages.popitem(last=False)


def _cache(request: Request) -> PageCache:
    cache = getattr(request.app.state, "riskstrata_pages", None)
    if cache is None:
        cache = request.app.state.riskstrata_pages = PageCache(MAX_CACHED_PAGES)
    return cache


def _cached_page(request: Request, key: Any, render) -> Response:
    """The page for ``key`` from the cache, rendering (and keeping) it on a miss. The compressed
    copy is kept too: a model's page is compressed once, not per request."""
    cache = _cache(request)
    kept = cache.get(key)
    if kept is None:
        html = render()
        kept = (html, gzip.compress(html, GZIP_LEVEL))
        cache.put(key, kept)
    html, packed = kept
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(packed, media_type="text/html; charset=utf-8",
                        headers={**PAGE_HEADERS, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    return html_response(request, html)


def _render(request: Request, template: str, **context: Any) -> bytes:
    from riskstrata.web.render import env

    return env.get_template(template).render(request=request, **context).encode()


def _error_page(request: Request, exc: Exception, status: int | None = None) -> Response:
    """A domain error as a page that says what to do; anything else as a 500 without details."""
    if isinstance(exc, RiskstrataError):
        code = status or (503 if isinstance(exc, ModelNotBuilt) else 400)
        return page(request, "error.html", code, title="Cannot show this page", message=str(exc))
    log_unexpected(exc, request.scope)
    return page(request, "error.html", 500, title="Something went wrong",
                message=f"unexpected {type(exc).__name__}; the server log has the details")


def _cascade_or_none(state: AppState):
    try:
        return state.current()
    except ModelNotBuilt:
        return None


def _factor_or_none(state: AppState, spec: str) -> F.LatestFactorModel | None:
    if state.store.current_version(F.model_names(spec)["factors"]) is None:
        return None
    return state.factor_model(spec)


def _default_spec(state: AppState) -> str:
    """US21 when built, else the first built spec, else US21 (which the factor page offers to build)."""
    specs = sorted(packaged_specs())
    built = [s for s in specs if state.store.current_version(F.model_names(s)["factors"]) is not None]
    return "US21" if "US21" in built or not built else built[0]


# ----------------------------------------------------------------------------- home


@router.get("/", dependencies=Page)
def home(request: Request) -> Response:
    state = _state(request)
    try:
        published = _cascade_or_none(state)
        models = D.models_status(state.store, published.universe.stock_count if published else None)
        jobs = registry_of(request.app.state)
        running = {m.name: job.id for m in models if (job := jobs.latest(_job_key(m))) is not None and job.live}
        return page(request, "home.html", models=models, running=running, published=published,
                    examples=_examples(published))
    except Exception as exc:  # noqa: BLE001 - a page, not a traceback
        return _error_page(request, exc)


def _job_key(m: D.ModelStatus) -> str:
    return MODEL if m.kind == "cascade" else m.name


def _examples(published) -> list[str]:
    if published is None:
        return []
    rows = published.universe.rows
    stocks = rows.index[rows["asset_type"] == "stock"].tolist()
    return [t for t in ("AAPL", "NVDA", "JPM", "XOM") if t in published.latest] or stocks[:4]


@router.get("/stock", dependencies=Page)
def stock_search(ticker: Annotated[str, Query(max_length=32)] = "") -> RedirectResponse:
    """The search box: /stock?ticker=nvda → /stock/NVDA."""
    t = ticker.strip().upper()
    return RedirectResponse(f"/stock/{quote(t, safe='')}" if t else "/", status_code=303)


# ----------------------------------------------------------------------------- stock


@router.get("/stock/{ticker}", dependencies=Page)
def stock(request: Request, ticker: str, period: Annotated[str | None, Query(max_length=8)] = None,
          start: Annotated[str | None, Query(max_length=10)] = None,
          end: Annotated[str | None, Query(max_length=10)] = None) -> Response:
    state = _state(request)
    t = ticker.strip().upper()
    try:
        published = state.current()
        try:
            published.check_modelled(t)
        except UnknownTicker:
            known = sorted(published.latest)
            return page(request, "stock_unknown.html", 404, ticker=t, suggestions=D.suggest_tickers(t, known),
                        examples=_examples(published))
        lo, hi, label = D.period_bounds(published.meta["start"], published.end, period, start, end)
        spec = _default_spec(state)
        fm = _factor_or_none(state, spec)
        key = ("stock", published.version, fm.version if fm else None, t, lo, hi, label)

        def render() -> bytes:
            row = published.latest.get(t)
            view = D.stock_view(state.store, t, lo, hi, row[0] if row else None, fm)
            return _render(request, "stock.html", v=view, m=view.metrics, label=label, periods=list(D.PERIODS),
                           model_start=published.meta["start"], model_end=published.end, fig=fig,
                           lo=lo.strftime("%Y-%m-%d"), hi=hi.strftime("%Y-%m-%d"))
        return _cached_page(request, key, render)
    except Exception as exc:  # noqa: BLE001
        return _error_page(request, exc)


# ----------------------------------------------------------------------------- factor summary


@router.get("/factors", dependencies=Page)
def factors_index(request: Request, model: Annotated[str | None, Query(max_length=64)] = None) -> RedirectResponse:
    """/factors → the default model's page; /factors?model=X (the model selector) → /factors/X."""
    chosen = model if model in packaged_specs() else _default_spec(_state(request))
    return RedirectResponse(f"/factors/{chosen}", status_code=303)


@router.get("/factors/{model}", dependencies=Page)
def factors_page(request: Request, model: str) -> Response:
    state = _state(request)
    specs = sorted(packaged_specs())
    try:
        if model not in specs:
            return page(request, "error.html", 404, title="Unknown model",
                        message=f"no model {model!r}; models are: {', '.join(specs)}")
        fm = _factor_or_none(state, model)
        if fm is None:
            job = registry_of(request.app.state).latest(model)
            return page(request, "factors_unbuilt.html", model=model, specs=specs,
                        job=job.id if job is not None and job.live else None,
                        failed=job.error if job is not None and job.status == FAILED else None)

        def render() -> bytes:
            view = D.factor_view(state.store, fm)
            factors = [str(f) for f in view.correlation.columns]
            a, b = _default_pair(factors)
            pair = D.pair_view(fm, a, b)
            return _render(request, "factors.html", v=view, model=model, specs=specs, factors=factors, fig=fig,
                           pair=pair, a=a, b=b)
        return _cached_page(request, ("factors", model, fm.version), render)
    except Exception as exc:  # noqa: BLE001
        return _error_page(request, exc)


def _default_pair(factors: list[str]) -> tuple[str, str]:
    for a, b in (("SIZE", "VALUE"), ("MOMENTUM", "VALUE")):
        if a in factors and b in factors:
            return a, b
    return factors[0], factors[min(1, len(factors) - 1)]


@router.get("/factors/{model}/pair", dependencies=Data)
def factor_pair(request: Request, model: str, a: Annotated[str, Query(max_length=64)],
                b: Annotated[str, Query(max_length=64)]) -> JSONResponse:
    """The pair selector's answer: the correlation of a and b and the rolling chart's spec."""
    state = _state(request)
    try:
        if model not in packaged_specs():
            raise DataValidationError(f"unknown model {model!r}")
        fm = _factor_or_none(state, model)
        if fm is None:
            raise ModelNotBuilt(f"model {model} is not built")
        pair = D.pair_view(fm, a, b)
    except RiskstrataError as exc:
        return JSONResponse({"error": "Bad Request", "message": str(exc)}, status_code=400)
    return Response(dumps_json({"a": pair["a"], "b": pair["b"], "correlation": pair["correlation"],
                                "n_days": int(pair["n_days"]), "figure": fig.rolling_pair(pair)}),
                    media_type="application/json")


# ----------------------------------------------------------------------------- builds from the pages


def _job_json(job: Job) -> dict:
    """A build job for the progress bar: status, stage, progress 0–1 (None when unknown)."""
    if job.status == DONE:
        progress = 1.0
    elif job.stage in BUILD_STAGES:
        progress = BUILD_STAGES.index(job.stage) / len(BUILD_STAGES)
    elif job.stage and job.stage.startswith("securities "):  # the cascade: "securities 120/600"
        done, total = job.stage.split(" ", 1)[1].split("/")
        progress = int(done) / max(1, int(total))
    else:
        progress = 0.0
    return {"job_id": job.id, "model": job.key, "status": job.status, "stage": job.stage, "progress": progress,
            "error": job.error}


@router.post("/factors/{model}/build", dependencies=Data)
def build_factor_model(request: Request, model: str) -> JSONResponse:
    """Start (or join) the build of a packaged factor spec; poll /jobs/{job_id}."""
    if model not in packaged_specs():
        return JSONResponse({"error": "Not Found", "message": f"unknown model {model!r}"}, status_code=404)
    store = _state(request).store

    def work(progress):
        result = F.build_factor_model(store, model, progress=progress)
        return {"version": result["version"]}
    job, _ = registry_of(request.app.state).start("build", model, work)
    return JSONResponse(_job_json(job), status_code=202)


@router.post("/cascade/build", dependencies=Data)
def build_cascade(request: Request) -> JSONResponse:
    """Start (or join) a build of the ETF cascade with its default parameters."""
    from riskstrata.services.cascade import build_cascade as build

    store = _state(request).store

    def work(progress):
        summary = build(store, progress=lambda done, total: progress(f"securities {done}/{total}"))
        return {"version": summary.version}
    job, _ = registry_of(request.app.state).start("build", MODEL, work)
    return JSONResponse(_job_json(job), status_code=202)


@router.get("/jobs/{job_id}", dependencies=Data)
def job_status(request: Request, job_id: str) -> JSONResponse:
    job = registry_of(request.app.state).get(job_id)
    if job is None:
        return JSONResponse({"error": "Not Found", "message": f"no job {job_id!r} in this worker"}, status_code=404)
    return JSONResponse(_job_json(job))


# ----------------------------------------------------------------------------- portfolio


@router.get("/portfolio", dependencies=Page)
def portfolio_form(request: Request) -> Response:
    state = _state(request)
    published = _cascade_or_none(state)
    return page(request, "portfolio.html", view=None, text="", value=DEFAULT_VALUE, published=published,
                exposures=_exposure_choices(published, None), scale_exposure="market", scale_reduce=0.5)


@router.post("/portfolio", dependencies=Page)
async def portfolio_analyze(request: Request) -> Response:
    """Holdings from the form (CSV text: the file picker or the sample fills the text box)."""
    body = await request.body()
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True).items()}
    text = form.get("holdings", "")
    return await run_in_threadpool(_portfolio_page, request, form, text)


def _portfolio_page(request: Request, form: dict[str, str], text: str) -> Response:
    state = _state(request)
    published = _cascade_or_none(state)
    scale_exposure = form.get("scale_exposure", "").strip() or None
    context: dict[str, Any] = {"text": text, "published": published, "scale_exposure": scale_exposure or "market",
                               "value": DEFAULT_VALUE, "scale_reduce": 0.5}
    try:
        value = _number(form.get("value"), "portfolio value", DEFAULT_VALUE)
        reduce = _number(form.get("scale_reduce"), "reduction", 0.5)
        context.update(value=value, scale_reduce=reduce)
        if published is None:
            raise ModelNotBuilt("the ETF cascade is not built: build it on the home page first")
        holdings = D.holdings_from_text(text)
        view = D.portfolio_view(state.store, holdings, value, scale_exposure if form.get("action") == "scale" else None,
                                reduce, held=published.portfolio)
        fm = view.analysis.factor_risk
        return page(request, "portfolio.html", view=view, a=view.analysis, fig=fig, factor_risk=fm,
                    exposures=_exposure_choices(published, view), **context)
    except RiskstrataError as exc:
        return page(request, "portfolio.html", 400, view=None, error=str(exc),
                    exposures=_exposure_choices(published, None), **context)
    except Exception as exc:  # noqa: BLE001
        return _error_page(request, exc)


def _number(text: str | None, what: str, default: float) -> float:
    if text is None or not text.strip():
        return default
    try:
        v = float(text.replace(",", "").replace("$", "").strip())
    except ValueError:
        raise DataValidationError(f"{what} must be a number, got {text!r}") from None
    if not pd.notna(v) or v in (float("inf"), float("-inf")):
        raise DataValidationError(f"{what} must be a finite number, got {text!r}")
    return v


def _exposure_choices(published, view) -> list[str]:
    """What the scaling form can cut: market beta, and the ETFs the portfolio is exposed to."""
    if view is not None:
        return ["market", *[str(e) for e in view.analysis.risk.exposures.index if e != view.analysis.inputs.market_etf]]
    if published is None:
        return ["market"]
    return ["market", *published.universe.sector_etfs]


@router.get("/portfolio/sample.csv", dependencies=Data)
def sample_csv(request: Request) -> Response:
    """A sample book of this store's names, with a cash line and an unknown symbol."""
    published = _state(request).current()
    rows = published.universe.rows
    stocks = [t for t in rows.index[rows["asset_type"] == "stock"] if t in published.latest]
    text = published.memo(("web-sample",), lambda: D.sample_holdings(stocks, [published.market_etf]))
    return Response(text, media_type="text/csv", headers={"Content-Disposition": 'inline; filename="sample_holdings.csv"'})


# ----------------------------------------------------------------------------- sign in


@router.get("/login")
def login_form(request: Request, next: Annotated[str | None, Query(max_length=2000)] = None) -> Response:  # noqa: A002
    if pages_open(request):
        return RedirectResponse(safe_next(next), status_code=303)
    return page(request, "login.html", next=safe_next(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the key and keep it in an HttpOnly, SameSite=Strict cookie; back to the page asked for."""
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", errors="replace")).items()}
    target = safe_next(form.get("next"))
    key = form.get("key", "").strip()
    client = request.client.host if request.client else "?"
    wait = failed_auth_wait(request.app, client)
    if wait > 0:  # the API's limit on wrong guesses per address holds for the form too
        return page(request, "login.html", 429, next=target,
                    error=f"Too many wrong keys from this address: try again in {wait:.0f} s.")
    if not key or await key_name(request, key) is None:
        record_failed_auth(request.app, client)
        return page(request, "login.html", 401, next=target, error="That key is not valid on this server.")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, key, max_age=COOKIE_DAYS * 86400, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# ----------------------------------------------------------------------------- static assets


@lru_cache(maxsize=8)
def _asset(name: str) -> tuple[bytes, bytes, str]:
    """(bytes, gzip bytes, media type) of a static file: ours, or plotly.js from the plotly package."""
    if name == "plotly.min.js":
        import plotly

        data = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()
    else:
        data = files("riskstrata.web").joinpath("static", name).read_bytes()
    kind = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
            "svg": "image/svg+xml"}.get(name.rsplit(".", 1)[-1], "application/octet-stream")
    return data, gzip.compress(data, 6), kind


STATIC_FILES = ("app.js", "style.css", "plotly.min.js", "favicon.svg")


@router.get("/static/{name}")
def static(request: Request, name: str) -> Response:
    """Assets, cached by the browser for a day (their URLs carry the package version)."""
    if name not in STATIC_FILES:
        return Response("not found", status_code=404, media_type="text/plain")
    data, packed, kind = _asset(name)
    headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(packed, media_type=kind, headers={**headers, "Content-Encoding": "gzip"})
    return Response(data, media_type=kind, headers=headers)


@router.get("/favicon.ico")
def favicon(request: Request) -> Response:
    return static(request, "favicon.svg")
