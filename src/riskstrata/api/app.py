"""The FastAPI application: ``create_app(store)``; served by ``riskstrata serve``.

One app per worker process. What a worker holds is a cache (the latest model snapshot, the key
table, rate buckets); the store is the only shared state, so any number of workers, on one
machine or several, can serve one store.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from riskstrata import __version__
from riskstrata.api import errors
from riskstrata.api.auth import KeyRing
from riskstrata.api.deps import KeyGuard, document_security
from riskstrata.api.errors import CatchAll, CleanJSONResponse, ErrorBody
from riskstrata.api.limits import BodyGuard, HeavyGate, RateLimiter, RequestGate
from riskstrata.api.logs import AccessLog
from riskstrata.api.settings import ApiSettings
from riskstrata.api.state import AppState
from riskstrata.data.store import Store
from riskstrata.errors import RiskstrataError
from riskstrata.mcp import http as mcp_http

log = logging.getLogger("riskstrata.api")

# Modules whose ``router`` is served under /api, each route behind KeyGuard unless public.
ROUTERS = ("riskstrata.api.wire", "riskstrata.api.wire_reports", "riskstrata.api.wire_correlation",
           "riskstrata.api.wire_unserved", "riskstrata.api.ours")

DESCRIPTION = """\
Risk models over your own store: the ETF cascade (Model A, wire-compatible with the
`riskmodels-py` client: base URL `http://HOST:PORT/api`), the fundamental factor model
(Model B) and the portfolio layer.

**Authentication.** Every route except `/health` and `/tickers` needs an API key, sent as
`Authorization: Bearer <key>` or `X-API-Key: <key>`. Create one on the server with
`riskstrata keys create NAME` (printed once; stored hashed). Missing or invalid → 401.

**Errors** are always JSON `{"error", "message"}`. Over the rate limit → 429 with
`Retry-After`; a body over the size limit → 413.
"""

DOCS_STATIC = "/api/docs/static"  # Swagger UI's script, style sheet and icon, served by the app itself

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed request: not JSON, a bad date or value."},
    401: {"model": ErrorBody, "description": "Missing or invalid API key."},
    404: {"model": ErrorBody, "description": "Unknown ticker, model or resource."},
    413: {"model": ErrorBody, "description": "Request body over the server's size limit."},
    422: {"model": ErrorBody, "description": "A request field is missing or invalid (NaN/Infinity included)."},
    429: {"model": ErrorBody, "description": "Over this key's rate limit; retry after `Retry-After` seconds.",
          "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}},
    503: {"model": ErrorBody, "description": "The model is not built yet, or the store is unavailable."},
}


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the current model version (snapshot, universe, latest rows) before the first request,
    so that one is fast too."""
    settings: ApiSettings = app.state.settings
    if settings.auth_required and not app.state.keyring.has_keys():
        log.warning("no API keys in store %s: every request but /health and /tickers will get 401; "
                    "create one with `riskstrata keys create NAME`", app.state.riskstrata.store.root)
    try:
        await asyncio.to_thread(app.state.riskstrata.current)
    except RiskstrataError:  # nothing built yet: routes answer 503 until a build is published
        pass
    except Exception as exc:  # noqa: BLE001 - a broken model must not stop the server from starting
        errors.log_unexpected(exc)
    async with mcp_http.running(app):  # /mcp: the SDK's session manager, started by the first /mcp request
        yield
    app.state.gate.close()  # the heavy-work pool's threads (riskstrata.api.limits.RequestGate)


def create_app(store: Store | str | None = None, settings: ApiSettings | None = None) -> FastAPI:
    """The app over one store. Routes live under /api; OpenAPI at /api/openapi.json, docs at /api/docs.

    ``store`` defaults to ``$RISKSTRATA_STORE`` (else ``~/.riskstrata/store``) and ``settings``
    to :meth:`ApiSettings.from_env`, which is how ``riskstrata serve`` configures its workers.
    """
    store = store if isinstance(store, Store) else Store(store)
    settings = settings if settings is not None else ApiSettings.from_env()
    # FastAPIOffline: the interactive docs load Swagger UI from the package, not a CDN, so they
    # work on an air-gapped machine like everything else here.
    app = FastAPIOffline(title="riskstrata", version=__version__, description=DESCRIPTION,
                         openapi_url="/api/openapi.json", docs_url="/api/docs", redoc_url=None,
                         static_url=DOCS_STATIC, swagger_ui_oauth2_redirect_url="/api/docs/oauth2-redirect",
                         swagger_ui_parameters={"persistAuthorization": True},  # paste the key once per browser
                         default_response_class=CleanJSONResponse, lifespan=_lifespan,
                         redirect_slashes=False)  # no 307 whose Location comes from the Host header
    app.state.riskstrata = AppState(store)
    app.state.settings = settings
    app.state.keyring = KeyRing(store)
    app.state.rate_limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
    app.state.auth_failures = RateLimiter(settings.auth_fail_rate, settings.auth_fail_burst)
    app.state.gate = RequestGate(settings.max_inflight_per_key, settings.heavy_slots, settings.heavy_per_key)
    errors.install(app)
    # Added innermost first: a request meets AccessLog, CatchAll, KeyGuard (key from the headers,
    # before any body is read), BodyGuard, then HeavyGate (bounded heavy work per key and worker).
    app.add_middleware(HeavyGate, gate=app.state.gate)
    app.add_middleware(BodyGuard, max_bytes=settings.max_body_bytes, timeout=settings.body_timeout)
    app.add_middleware(KeyGuard)
    app.add_middleware(CatchAll)
    app.add_middleware(AccessLog)
    for module in ROUTERS:
        if importlib.util.find_spec(module) is None:  # a face not written yet
            continue
        router = importlib.import_module(module).router  # routers import services lazily at app build
        app.include_router(router, prefix="/api", responses=ERROR_RESPONSES)  # keys: KeyGuard, before the body
    _document_public_routes(app)
    mcp_http.mount(app)  # /mcp: the MCP server for AI agents, behind the same keys and limits (before the / mount);
    # the SDK is imported by the first /mcp request, not here: most workers never see one
    # The web dashboard at / (after /api, outside its key dependency: pages have their own access rule).
    from riskstrata.web import install as install_web

    install_web(app)
    return app


def _document_public_routes(app: FastAPI) -> None:
    """The OpenAPI document: protected routes take a key (KeyGuard checks it); public routes need
    no key and never answer 401 or 429."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_security(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
