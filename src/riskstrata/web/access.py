"""Who may see the pages: everyone on a loopback server, key holders elsewhere.

A server bound to a loopback interface (127.0.0.1, ::1, localhost) is reachable only from its
own machine, so its pages are open. Bound to any other interface, the pages ask once for an API
key (the same keys as the REST API: ``riskstrata keys create NAME``) and keep it in an
HttpOnly, SameSite=Strict cookie, so scripts cannot read it and other sites cannot send it;
a request without a valid one is sent to the key form (a page) or refused (401, JSON helpers).
``riskstrata serve`` tells the workers which interface it binds through ``RISKSTRATA_WEB_HOST``;
an app built without it (a test client, a bare ``uvicorn``) judges by the address the request
arrived on. ``--no-auth`` opens the pages like the API.
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse

from riskstrata.api.deps import authenticate_key

COOKIE = "riskstrata_key"
HOST_ENV = "RISKSTRATA_WEB_HOST"
COOKIE_DAYS = 30


class LoginRequired(Exception):
    """The request needs a key it did not bring (handled: key form for pages, 401 otherwise)."""

    def __init__(self, page: bool) -> None:
        super().__init__("an API key is required")
        self.page = page


def is_loopback(host: str | None) -> bool:
    """True for localhost names and loopback addresses (127.0.0.0/8, ::1)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def pages_open(request: Request) -> bool:
    """True when this server's pages need no key."""
    if not request.app.state.settings.auth_required:
        return True
    bound = os.environ.get(HOST_ENV)
    if bound is None:
        server = request.scope.get("server") or ("",)
        bound = str(server[0] or "")
    return is_loopback(bound)


async def key_name(request: Request, key: str | None = None) -> str | None:
    """The name of ``key`` (default: the one in the request's cookie) if it is an active key of
    this server, else None: the API's own check (:func:`riskstrata.api.deps.authenticate_key`)."""
    key = ((request.cookies.get(COOKIE) if key is None else key) or "").strip()
    if not key:
        return None
    return await authenticate_key(request.app, key)


def _guard(page: bool):
    async def dependency(request: Request) -> None:
        if pages_open(request):
            return
        name = await key_name(request)
        if name is None:
            raise LoginRequired(page)
        request.state.key_name = name
    return dependency


page_access = _guard(page=True)   # pages: no key → the key form
data_access = _guard(page=False)  # the pages' JSON helpers: no key → 401


def install(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired):
        if exc.page and request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return JSONResponse({"error": "Unauthorized", "message": "sign in on /login with an API key first"},
                            status_code=401)


def safe_next(target: str | None) -> str:
    """A local path to go back to after signing in (never another site: no scheme, no //host)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
