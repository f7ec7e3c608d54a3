"""The FastAPI application: ``create_app(store)``; served by ``riskstrata serve``."""

from __future__ import annotations

from fastapi import FastAPI

from riskstrata import __version__
from riskstrata.api import errors
from riskstrata.api.state import AppState
from riskstrata.data.store import Store


def create_app(store: Store | str | None = None) -> FastAPI:
    """The app over one store. Routes live under /api; OpenAPI at /api/openapi.json."""
    store = store if isinstance(store, Store) else Store(store)
    app = FastAPI(title="riskstrata", version=__version__, openapi_url="/api/openapi.json", docs_url="/api/docs",
                  redoc_url=None)
    app.state.riskstrata = AppState(store)
    errors.install(app)
    from riskstrata.api import wire  # noqa: PLC0415 - routers import services lazily at app build

    app.include_router(wire.router, prefix="/api")
    return app
