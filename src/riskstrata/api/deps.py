"""Request dependencies shared by the routers: the app state, and the API-key check.

``create_app`` applies :func:`require_key` to every router it includes, so a route is
protected without saying so; the routes in ``PUBLIC_PATHS`` stay open (api-contract §1.2).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from riskstrata.api.auth import KeyRing
from riskstrata.api.errors import ApiError
from riskstrata.api.limits import RateLimiter, retry_after
from riskstrata.api.settings import ApiSettings
from riskstrata.api.state import AppState

# Route paths (as declared, with the /api prefix) that answer without a key, like the real service.
PUBLIC_PATHS = frozenset({"/api/health", "/api/tickers"})

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

# Declared as security schemes so the OpenAPI document and the docs page show how to authenticate.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>` (what riskmodels-py sends).",
                     scheme_name="BearerKey")
_x_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The key in an `X-API-Key` header.",
                          scheme_name="XApiKey")


async def get_state(request: Request) -> AppState:
    return request.app.state.riskstrata


def _app_path(request: Request) -> str:
    """The request's path as the app declares it: without a proxy's root_path or a trailing slash."""
    path, root = request.scope.get("path", ""), request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path.rstrip("/") or "/"


def _unauthorized(agent: dict) -> ApiError:
    return ApiError(401, UNAUTHORIZED, UNAUTHORIZED_MESSAGE, headers={"WWW-Authenticate": "Bearer"},
                    extra={"_agent": agent})


async def require_key(request: Request,
                bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                x_api_key: Annotated[str | None, Depends(_x_api_key)]) -> str | None:
    """The name of the request's API key; 401 without a valid one, 429 over its rate.

    The key is read from ``Authorization: Bearer`` first, then ``X-API-Key``. Public routes
    pass without a key (a key sent to them is ignored: riskmodels-py sends one everywhere).
    With ``auth_required`` off (``riskstrata serve --no-auth``) every request passes and is
    rate-limited by client address instead.
    """
    if _app_path(request) in PUBLIC_PATHS:
        return None
    settings: ApiSettings = request.app.state.settings
    if settings.auth_required:
        key = (bearer.credentials if bearer else None) or x_api_key
        key = key.strip() if key else ""
        if not key:
            raise _unauthorized(AGENT_AUTHENTICATE)
        keyring: KeyRing = request.app.state.keyring
        known, name = keyring.recall(key)
        if not known:  # first sight of this key since the table changed: scrypt, off the event loop
            name = await run_in_threadpool(keyring.verify, key)
        if name is None:
            raise _unauthorized(AGENT_CHECK_KEY)
        identity = f"key:{name}"
    else:
        name = None
        identity = f"client:{request.client.host if request.client else '?'}"
    limiter: RateLimiter = request.app.state.rate_limiter
    wait = limiter.acquire(identity)
    if wait > 0:
        raise ApiError(429, "Too Many Requests",
                       f"rate limit of {limiter.rate:g} requests/s (burst {limiter.burst}) exceeded; "
                       f"retry in {wait:.2f}s", headers={"Retry-After": retry_after(wait)},
                       extra={"_agent": {"action": "retry", "retry_after_seconds": int(retry_after(wait))}})
    request.state.key_name = name
    return name
