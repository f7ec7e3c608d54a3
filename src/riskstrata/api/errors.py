"""Errors on the wire: every failure is JSON ``{"error", "message"}``, never a traceback.

Domain exceptions (riskstrata.errors) map to HTTP statuses once, here.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from riskstrata import errors as E

log = logging.getLogger("riskstrata.api")

STATUS = {
    E.UnknownTicker: (404, "Symbol not found"),
    E.DataValidationError: (400, "Bad Request"),
    E.DateOutOfRange: (400, "Bad Request"),
    E.InsufficientHistory: (422, "Insufficient History"),
    E.ModelNotBuilt: (503, "Model Not Built"),
    E.StoreError: (503, "Store Unavailable"),
    E.IdentityViolation: (500, "Identity Violation"),
}


class ApiError(Exception):
    """An HTTP error with the contract's body."""

    def __init__(self, status: int, error: str, message: str | None = None, headers: dict | None = None,
                 extra: dict | None = None) -> None:
        super().__init__(message or error)
        self.status, self.error, self.message = status, error, message or error
        self.headers, self.extra = headers or {}, extra or {}


def clean_json(value: Any) -> Any:
    """NaN/inf → None, recursively (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def error_response(status: int, error: str, message: str, headers: dict | None = None,
                   extra: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **(extra or {})}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into the contract's error body."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.message, exc.headers, exc.extra)

    @app.exception_handler(E.RiskstrataError)
    async def _domain(_: Request, exc: E.RiskstrataError) -> JSONResponse:
        for kind in type(exc).__mro__:
            if kind in STATUS:
                status, error = STATUS[kind]
                if kind is E.UnknownTicker:  # the contract's exact body: {"error": "Symbol not found", ...}
                    return error_response(status, error, str(exc))
                return error_response(status, error, str(exc))
        return error_response(400, "Bad Request", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error_response(422, "Validation Error", f"{where}: {first.get('msg', 'invalid request')}".strip(": "))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "Error"),
                              str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected %s on a request", type(exc).__name__)  # no body, no holdings, no key
        return error_response(500, "Internal Error", f"unexpected {type(exc).__name__}")
