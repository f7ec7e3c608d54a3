"""``/mcp`` on the REST app: the SDK's streamable-HTTP transport behind the API keys of ``/api``.

``/mcp`` is a protected path for :class:`riskstrata.api.deps.KeyGuard` (``is_protected``), so a
request to it meets exactly what an ``/api`` request meets, before its body is read: the key
from ``Authorization: Bearer`` or ``X-API-Key``, the failed-authentication limit per address,
the per-key rate limit and in-flight bound (401/429 with the same ``{"error", "message"}``
bodies), then the body-size limit, the access log without bodies and the catch-all; each call
then holds heavy-work slots of :class:`~riskstrata.api.limits.RequestGate` like a heavy ``/api``
request. :class:`McpEndpoint` checks the key again only when no guard ran (an app assembled without it).

The transport is stateless with JSON responses: each POST is answered on its own, with no
session held in the worker, so any worker of ``riskstrata serve --workers N`` (or behind a load
balancer) can answer any request — the REST API's rule. :func:`running` starts the SDK's
session manager in the app's lifespan (a new one per lifespan: the SDK's can start only once).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from riskstrata.api.deps import identify
from riskstrata.api.errors import ApiError, error_response
from riskstrata.mcp.server import build_server

PATH = "/mcp"


class McpEndpoint:
    """ASGI app of ``/mcp``: the SDK's session manager of this app, for an authenticated request."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope["app"]
        state = scope.setdefault("state", {})
        if not state.get("rs_authenticated"):
            try:
                state["key_name"], state["rs_identity"] = await identify(app, scope)
            except ApiError as exc:
                await error_response(exc.status, exc.error, exc.message, exc.headers, exc.extra)(scope, receive, send)
                return
        manager = getattr(app.state, "mcp_sessions", None)
        if manager is None:  # the app was not started through its lifespan
            await error_response(503, "Service Unavailable", "the MCP endpoint is not running")(scope, receive, send)
            return
        # A tool call can be as heavy as a portfolio route: it holds one of the key's and one of the
        # worker's heavy slots, like /api's heavy requests, but runs here, on the loop that owns the
        # SDK's session manager (its tools run on worker threads, so this loop stays free).
        await app.state.gate.heavy(state["rs_identity"], lambda: manager.handle_request(scope, receive, send))


def mount(app: FastAPI) -> None:
    """Serve the MCP server of ``app.state.riskstrata`` at ``/mcp`` (call before any catch-all mount)."""
    app.state.mcp_server = build_server(app.state.riskstrata)
    # POST only: with stateless JSON responses there is no session to stream to (GET) or end (DELETE),
    # and a GET would hold an idle event stream, and one of the key's in-flight slots, open: 405 (the spec's answer).
    app.router.routes.append(Route(PATH, McpEndpoint(), methods=["POST"], include_in_schema=False))


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[None]:
    """The SDK's session manager for ``/mcp``, for as long as the app runs (use in its lifespan)."""
    server = app.state.mcp_server
    # The transport's DNS-rebinding guard only admits loopback Host headers; a server bound to
    # another interface is reached by name, and every request here already needs an API key.
    server.streamable_http_app(stateless_http=True, json_response=True,
                               transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
    async with server.session_manager.run():
        app.state.mcp_sessions = server.session_manager
        try:
            yield
        finally:
            app.state.mcp_sessions = None
