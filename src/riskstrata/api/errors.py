"""Errors on the wire: every failure is JSON ``{"error", "message"}``, never a traceback.

Domain exceptions (riskstrata.errors) map to HTTP statuses once, here.
"""

from __future__ import annotations

import logging
import os
import traceback
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from riskstrata import errors as E
from riskstrata.api.logs import safe_path
from riskstrata.jsonsafe import dumps_json

log = logging.getLogger("riskstrata.api")

STATUS = {
    E.UnknownTicker: (404, "Symbol not found"),
    E.ValueOverflow: (422, "Unprocessable Entity"),  # before its base class: the MRO is walked in order
    E.DataValidationError: (400, "Bad Request"),
    E.DateOutOfRange: (400, "Bad Request"),
    E.InsufficientHistory: (422, "Insufficient History"),
    E.ModelNotBuilt: (503, "Model Not Built"),
    E.StoreError: (503, "Store Unavailable"),
    E.IdentityViolation: (500, "Identity Violation"),
}


# Validation errors of a ``ticker`` field that mean "not a ticker" (the declared pattern or length).
_MALFORMED = {"string_pattern_mismatch", "string_too_short", "string_too_long"}


class ApiError(Exception):
    """An HTTP error with the contract's body."""

    def __init__(self, status: int, error: str, message: str | None = None, headers: dict | None = None,
                 extra: dict | None = None) -> None:
        super().__init__(message or error)
        self.status, self.error, self.message = status, error, message or error
        self.headers, self.extra = headers or {}, extra or {}


class ErrorBody(BaseModel):
    """Every error on the wire (api-contract §4): a short code or phrase and a human message.

    Some errors add fields: ``_agent`` hints on 401, ``errors`` per line, ``job_id``.
    """

    model_config = ConfigDict(extra="allow", json_schema_extra={
        "examples": [{"error": "Symbol not found", "message": "unknown ticker 'ZZZZ'"}]})

    error: str
    message: str


class CleanJSONResponse(JSONResponse):
    """The app's default response: NaN/inf become null, so the body is always valid JSON."""

    def render(self, content: Any) -> bytes:
        return dumps_json(content)


def error_response(status: int, error: str, message: str, headers: dict | None = None,
                   extra: dict | None = None) -> JSONResponse:
    return CleanJSONResponse({"error": error, "message": message, **(extra or {})}, status_code=status,
                             headers=headers)


def day_in_model(day: Any, meta: dict, what: str = "date") -> str | None:
    """``day`` as YYYY-MM-DD after checking it lies in the built model's dates (``meta`` has
    ``start`` and ``end``); None stays None (the model's last date). One rule for every route:
    a date outside the model is a 400 naming its range — never clamped, never "Symbol not found"."""
    if day is None:
        return None
    text = day.isoformat() if hasattr(day, "isoformat") else str(day)
    text = text[:10]
    start, end = str(meta.get("start", ""))[:10], str(meta.get("end", ""))[:10]
    if start and end and not (start <= text <= end):
        raise E.DateOutOfRange(f"{what} {text} is outside the built model ({start} … {end})")
    return text


def _where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame: enough to find a bug, with no data from the request."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else "?"


def log_unexpected(exc: BaseException, scope: Scope | None = None) -> None:
    """One line per unexpected exception: its type, where it was raised and the route.

    The exception's message and the traceback can quote the request (tickers, weights), so
    they are logged only with RISKSTRATA_DEBUG=1 on a developer's machine.
    """
    path = safe_path((scope or {}).get("path") or "?")  # the path only, as in the access log: no query string
    if os.environ.get("RISKSTRATA_DEBUG"):
        log.error("unexpected %s at %s on %s", type(exc).__name__, _where(exc), path, exc_info=exc)
    else:
        log.error("unexpected %s at %s on %s", type(exc).__name__, _where(exc), path)


class CatchAll:
    """Pure ASGI middleware: any exception a route lets escape becomes a 500 JSON body.

    Starlette's own last-resort handler answers too, but then re-raises so that the server
    logs the full traceback; this one stops the exception here and logs one line without the
    request's data (``log_unexpected``).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def _send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, _send)
        except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks on the wire
            log_unexpected(exc, scope)
            if not started:
                await error_response(500, "Internal Error", f"unexpected {type(exc).__name__}")(scope, receive, send)


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
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":  # the body is not JSON at all: the contract's 400
            reason = (first.get("ctx") or {}).get("error", "JSON decode error")
            loc = first.get("loc", ())
            at = f" at position {loc[1]}" if len(loc) > 1 else ""
            return error_response(400, "Invalid JSON body", f"request body is not valid JSON: {reason}{at}")
        loc = first.get("loc", ())
        if loc and loc[-1] == "ticker" and first.get("type") in _MALFORMED:  # as clean_ticker answers
            shown = str(first.get("input", ""))[:40]
            return error_response(400, "Malformed ticker", f"{shown!r} is not a ticker (1–12 letters, digits, '.', '-')")
        where = ".".join(str(p) for p in loc if p != "body")
        return error_response(422, "Validation Error", f"{where}: {first.get('msg', 'invalid request')}".strip(": "))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "Error")
        return error_response(exc.status_code, error, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log_unexpected(exc, request.scope)  # no body, no holdings, no key
        return error_response(500, "Internal Error", f"unexpected {type(exc).__name__}")
