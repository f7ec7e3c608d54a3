"""Who is asking: the API-key check, before anything else of a request is read.

:class:`KeyGuard` (pure ASGI middleware, outside the body guard) authenticates every request to
a protected ``/api`` path from its headers alone, applies the failed-authentication limit per
client address, the per-key rate limit and the per-key in-flight bound, and only then lets the
body be read: an unauthenticated client never gets a byte buffered. :func:`document_security`
states the same in the OpenAPI document. ``PUBLIC_PATHS`` (and the docs) stay open
(api-contract §1.2). A route finds its key's name in ``request.state.key_name``.

Other faces (the web pages' cookie, the MCP mount) check a raw key with :func:`authenticate_key`.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from riskstrata.api.auth import LEGACY, KeyRing
from riskstrata.api.errors import ApiError, error_response
from riskstrata.api.limits import Busy, RateLimiter, RequestGate, retry_after
from riskstrata.api.settings import ApiSettings
from riskstrata.api.state import AppState

# Route paths (as declared, with the /api prefix) that answer without a key, like the real service.
PUBLIC_PATHS = frozenset({"/api/health", "/api/tickers"})
# The interactive docs and the OpenAPI document: open, they carry no data.
DOC_PATHS = ("/api/docs", "/api/openapi.json")

# The contract's 401 bodies (api-contract §1.2): the client shows ``message`` and inspects
# nothing else; ``_agent`` says what to do. Its actions are the contract's, but its links point
# at this server (whose docs explain keys), not at the commercial service's sign-up page, which
# cannot issue a key for a self-hosted store.
UNAUTHORIZED = "Unauthorized"
UNAUTHORIZED_MESSAGE = "Valid API key or authentication required"
KEY_HINT = "keys are issued on the server: `riskstrata keys create NAME` prints one"
AGENT_CHECK_KEY = {"action": "check_key", "help_url": "/api/docs", "hint": KEY_HINT}
AGENT_AUTHENTICATE = {"action": "authenticate", "authenticate_url": "/api/docs",
                      "hint": "send `Authorization: Bearer <key>` or `X-API-Key: <key>`; " + KEY_HINT}

# The same schemes as the OpenAPI document states them (see :func:`document_security`).
SECURITY_SCHEMES = {
    "BearerKey": {"type": "http", "scheme": "bearer",
                  "description": "`Authorization: Bearer <key>` (what riskmodels-py sends)."},
    "XApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "The key in an `X-API-Key` header."},
}


def document_security(schema: dict) -> dict:
    """Declare in an OpenAPI document what :class:`KeyGuard` enforces: every protected operation
    takes either key scheme; public ones need none and never answer 401 or 429.

    Declared here rather than by a dependency on each route: the guard has already checked the
    key, and a per-route dependency would cost every request (the hot GET /metrics included)
    two header parsers for nothing.
    """
    schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if is_protected(path):
                operation["security"] = [{"BearerKey": []}, {"XApiKey": []}]
            else:
                operation.pop("security", None)
                for status in ("401", "429"):
                    operation.get("responses", {}).pop(status, None)
    return schema


async def get_state(request: Request) -> AppState:
    return request.app.state.riskstrata


def _app_path(scope: Scope) -> str:
    """The request's path as the app declares it: without a proxy's root_path or a trailing slash."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path.rstrip("/") or "/"


def is_protected(path: str) -> bool:
    """Whether a request to ``path`` (the app's path) needs a key (``/mcp``: the MCP mount, riskstrata.mcp.http)."""
    return (path.startswith("/api/") and path not in PUBLIC_PATHS and not path.startswith(DOC_PATHS)) or path == "/mcp"


def key_from_headers(headers: Any) -> str:
    """The key a request carries: ``Authorization: Bearer`` first, then ``X-API-Key`` ("" if none).

    ``headers`` is the ASGI list of (name, value) byte pairs. A non-Bearer Authorization counts
    as none; a bad Bearer is not rescued by a good X-API-Key (the contract reads Bearer first).
    """
    bearer = x_key = None
    for name, value in headers:
        if name == b"authorization" and bearer is None:
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                bearer = credentials
        elif name == b"x-api-key" and x_key is None:
            x_key = value.decode("latin-1")
    return (bearer or x_key or "").strip()


async def authenticate_key(app: Any, key: str) -> str | None:
    """The name of the active API key ``key`` in ``app``'s store, or None: for any face of the
    server (the web pages' cookie, the MCP mount) that holds a raw key string.

    One HMAC and a constant-time compare (a key made before HMAC keys costs scrypt once, on a
    thread). No rate limit here: callers facing clients should also use :func:`failed_auth_wait`
    and :func:`record_failed_auth` with the client's address.
    """
    keyring: KeyRing = app.state.keyring
    name = keyring.check(key)
    if name is LEGACY:
        name = await run_in_threadpool(keyring.verify_legacy, key)
    return name  # type: ignore[return-value]


def failed_auth_wait(app: Any, client: str) -> float:
    """Seconds ``client`` (an address) must wait before another authentication is tried (0: go)."""
    return app.state.auth_failures.peek(client)


def record_failed_auth(app: Any, client: str) -> None:
    app.state.auth_failures.acquire(client)


def _unauthorized(agent: dict) -> ApiError:
    return ApiError(401, UNAUTHORIZED, UNAUTHORIZED_MESSAGE, headers={"WWW-Authenticate": "Bearer"},
                    extra={"_agent": agent})


def _too_many(message: str, wait: float) -> ApiError:
    return ApiError(429, "Too Many Requests", message, headers={"Retry-After": retry_after(wait)},
                    extra={"_agent": {"action": "retry", "retry_after_seconds": int(retry_after(wait))}})


async def identify(app: Any, scope: Scope) -> tuple[str | None, str]:
    """(key name, rate-limit identity) of a request to a protected path, from its headers alone;
    ApiError 401 / 429 otherwise. With ``auth_required`` off (``riskstrata serve --no-auth``)
    every request passes and is limited by client address instead."""
    settings: ApiSettings = app.state.settings
    client = scope["client"][0] if scope.get("client") else "?"
    if not settings.auth_required:
        name, identity = None, f"client:{client}"
    else:
        key = key_from_headers(scope.get("headers", ()))
        if not key:
            raise _unauthorized(AGENT_AUTHENTICATE)
        wait = failed_auth_wait(app, client)
        if wait > 0:  # this address has spent its wrong guesses: not even an HMAC for it
            raise _too_many(f"too many failed authentications from this address; retry in {wait:.0f}s", wait)
        name = await authenticate_key(app, key)
        if name is None:
            record_failed_auth(app, client)
            raise _unauthorized(AGENT_CHECK_KEY)
        identity = f"key:{name}"
    limiter: RateLimiter = app.state.rate_limiter
    wait = limiter.acquire(identity)
    if wait > 0:
        raise _too_many(f"rate limit of {limiter.rate:g} requests/s (burst {limiter.burst}) exceeded; "
                        f"retry in {wait:.2f}s", wait)
    return name, identity


class KeyGuard:
    """Pure ASGI middleware: authenticate, rate-limit and count in every request to a protected
    path before its body is read (see the module docstring); the answer goes in the scope's
    state (``key_name``, ``rs_identity``) for routes, the access log and the heavy-work gate."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_protected(_app_path(scope)):
            await self.app(scope, receive, send)
            return
        app = scope["app"]
        try:
            name, identity = await identify(app, scope)
        except ApiError as exc:
            await error_response(exc.status, exc.error, exc.message, exc.headers, exc.extra)(scope, receive, send)
            return
        gate: RequestGate = app.state.gate
        try:
            gate.enter(identity)
        except Busy:
            exc = _too_many(f"this key already has {gate.per_key} requests in flight; retry when one is done", 1.0)
            await error_response(exc.status, exc.error, exc.message, exc.headers, exc.extra)(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state.update(key_name=name, rs_identity=identity, rs_authenticated=True)
        counted = True

        async def answered(message: Message) -> None:
            # Out of flight as the last byte leaves, before the client can send its next request.
            nonlocal counted
            if counted and message["type"] == "http.response.body" and not message.get("more_body", False):
                counted = False
                gate.leave(identity)
            await send(message)

        try:
            await self.app(scope, receive, answered)
        finally:
            if counted:
                gate.leave(identity)
