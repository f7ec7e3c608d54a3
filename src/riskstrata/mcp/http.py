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
balancer) can answer any request — the REST API's rule.

The SDK is loaded only when ``/mcp`` is used. Importing it costs ~0.6 s of CPU, paid by every
worker at start-up (and every test server) although most never see an MCP call, so this module
does not import it: :func:`mount` adds a plain route, :func:`running` opens a task group for the
app's lifespan, and the first authenticated ``/mcp`` request imports the SDK, builds the server
(off the event loop) and starts its session manager in that task group (:class:`LazySessions`;
one start per lifespan: the SDK's manager can start only once). Requests that arrive meanwhile
wait for the same start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup, TaskStatus
from fastapi import FastAPI
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from riskstrata.api.deps import identify
from riskstrata.api.errors import ApiError, error_response

if TYPE_CHECKING:  # the SDK's types, for annotations only: importing them loads the SDK
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    from riskstrata.api.state import AppState

PATH = "/mcp"


def _session_manager(state: AppState) -> StreamableHTTPSessionManager:
    """A new MCP server over ``state`` and its stateless JSON session manager (imports the SDK)."""
    from mcp.server.transport_security import TransportSecuritySettings

    from riskstrata.mcp.server import build_server

    server = build_server(state)
    # The transport's DNS-rebinding guard only admits loopback Host headers; a server bound to
    # another interface is reached by name, and every request here already needs an API key.
    server.streamable_http_app(stateless_http=True, json_response=True,
                               transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
    return server.session_manager


async def _run(manager: StreamableHTTPSessionManager, *, task_status: TaskStatus[None]) -> None:
    """Hold ``manager`` running until the task group that started this task is cancelled."""
    async with manager.run():
        task_status.started()
        await anyio.sleep_forever()


class LazySessions:
    """The SDK's session manager of one app lifespan, started by the first request that needs it.

    ``task_group`` is the lifespan's: the manager runs there (not in the request that started
    it), so it outlives that request and stops when the app does.
    """

    def __init__(self, state: AppState, task_group: TaskGroup) -> None:
        self._state, self._task_group = state, task_group
        self._start_lock = anyio.Lock()  # two first requests at once: one starts, the other waits for it
        self._manager: StreamableHTTPSessionManager | None = None

    async def manager(self) -> StreamableHTTPSessionManager:
        """The running session manager, started now if this is the first call (a failed start is
        retried by the next call)."""
        if self._manager is not None:
            return self._manager
        async with self._start_lock:
            # Shielded: a first client that disconnects does not waste the start the requests
            # waiting behind it need.
            with anyio.CancelScope(shield=True):
                if self._manager is None:
                    # The import and the build take ~0.7 s of CPU: on a worker thread, so the
                    # loop keeps serving /api meanwhile.
                    manager = await anyio.to_thread.run_sync(_session_manager, self._state)
                    await self._task_group.start(_run, manager)
                    self._manager = manager
        return self._manager


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
        sessions: LazySessions | None = getattr(app.state, "mcp_sessions", None)
        if sessions is None:  # the app was not started through its lifespan
            await error_response(503, "Service Unavailable", "the MCP endpoint is not running")(scope, receive, send)
            return
        manager = await sessions.manager()
        # A tool call can be as heavy as a portfolio route: it holds one of the key's and one of the
        # worker's heavy slots, like /api's heavy requests, but runs here, on the loop that owns the
        # SDK's session manager (its tools run on worker threads, so this loop stays free).
        await app.state.gate.heavy(state["rs_identity"], lambda: manager.handle_request(scope, receive, send))


def mount(app: FastAPI) -> None:
    """Serve the MCP server of ``app.state.riskstrata`` at ``/mcp`` (call before any catch-all mount).
    Nothing of the SDK is loaded here: see :func:`running`."""
    # POST only: with stateless JSON responses there is no session to stream to (GET) or end (DELETE),
    # and a GET would hold an idle event stream, and one of the key's in-flight slots, open: 405 (the spec's answer).
    app.router.routes.append(Route(PATH, McpEndpoint(), methods=["POST"], include_in_schema=False))


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[None]:
    """``/mcp`` served for as long as the app runs (use in its lifespan): the SDK's session
    manager starts with the first ``/mcp`` request and stops here."""
    async with anyio.create_task_group() as task_group:
        app.state.mcp_sessions = LazySessions(app.state.riskstrata, task_group)
        try:
            yield
        finally:
            app.state.mcp_sessions = None
            task_group.cancel_scope.cancel()  # the session manager, if started, and its requests' tasks
