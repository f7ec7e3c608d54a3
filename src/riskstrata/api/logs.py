"""What the server logs: one line per request, without anything the request carried.

Uvicorn's access log prints the full request target, query string included; riskstrata turns
it off and logs ``method path status latency key=<name>`` itself. Never logged: query strings,
headers (so never an API key), request or response bodies (so never holdings). The path is the
percent-decoded one, so its control characters (CR, LF, NUL, ESC …) and backslashes are written
escaped (``\\r``, ``\\x00``): a request cannot forge a log line. A client that goes away before
an answer is logged as 499 (nginx's "client closed request"), not as a server error.
"""

from __future__ import annotations

import copy
import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("riskstrata.access")
CLIENT_CLOSED = 499
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\\\u2028\u2029]")
_NAMED = {"\\": "\\\\", "\r": "\\r", "\n": "\\n", "\t": "\\t"}


def _escape(char: re.Match) -> str:
    c = char.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")


def safe_path(path: str) -> str:
    """``path`` with control characters and backslashes escaped: one request, one log line."""
    return _UNSAFE.sub(_escape, path) if _UNSAFE.search(path) else path


class AccessLog:
    """Pure ASGI middleware writing one INFO line per HTTP request to ``riskstrata.access``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0  # no answer sent (yet)
        gone = False

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        async def _receive() -> Message:
            nonlocal gone
            message = await receive()
            gone = gone or message["type"] == "http.disconnect"
            return message

        try:
            await self.app(scope, _receive, _send)
        finally:
            if not status:
                status = CLIENT_CLOSED if gone else 500
            if log.isEnabledFor(logging.INFO):
                key = (scope.get("state") or {}).get("key_name")
                # The path only: a query string may carry anything a client chose to put there.
                log.info("%s %s %d %.1fms%s", safe_path(str(scope.get("method", "?"))), safe_path(scope.get("path", "?")),
                         status, 1000 * (time.perf_counter() - start), f" key={key}" if key else "")


def uvicorn_log_config(level: str = "info") -> dict:
    """Uvicorn's default logging, plus riskstrata's loggers on the same stderr handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["riskstrata"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config
