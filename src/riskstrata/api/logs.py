"""What the server logs: one line per request, without anything the request carried.

Uvicorn's access log prints the full request target, query string included; riskstrata turns
it off and logs ``method path status latency key=<name>`` itself. Never logged: query strings,
headers (so never an API key), request or response bodies (so never holdings).
"""

from __future__ import annotations

import copy
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("riskstrata.access")


class AccessLog:
    """Pure ASGI middleware writing one INFO line per HTTP request to ``riskstrata.access``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            if log.isEnabledFor(logging.INFO):
                key = (scope.get("state") or {}).get("key_name")
                # The path only: a query string may carry anything a client chose to put there.
                log.info("%s %s %d %.1fms%s", scope.get("method", "?"), scope.get("path", "?"), status,
                         1000 * (time.perf_counter() - start), f" key={key}" if key else "")


def uvicorn_log_config(level: str = "info") -> dict:
    """Uvicorn's default logging, plus riskstrata's loggers on the same stderr handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["riskstrata"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config
