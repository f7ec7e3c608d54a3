"""Robustness limits: a token bucket per API key, and a guard on request bodies.

Both are per worker (no shared state between processes): with N workers behind a balancer a
key's effective rate is up to N times the configured one.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from riskstrata.api.errors import error_response


class RateLimiter:
    """Token buckets: each key refills at ``rate`` tokens/s up to ``burst``; a request takes one.

    ``acquire(key)`` answers 0.0 when the request may go ahead, else the seconds until a token
    is available (the ``Retry-After``). ``rate == 0`` turns limiting off.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = float(rate), int(burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, at)
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > 10_000:
                    self._forget_full(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled (they equal a fresh one), so memory stays bounded."""
        full = [k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]


def retry_after(seconds: float) -> str:
    """The ``Retry-After`` header: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> float:
    raise _NonFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf
        raise _NonFinite(text)
    return value


# An exponent of three digits or more (1e309 is already inf), NaN or Infinity: only then is the
# body parsed here a second time, so an ordinary request pays a substring scan, not a parse.
_SUSPECT = re.compile(rb"NaN|Infinity|[0-9][eE][+-]?[0-9]{3}")


def _may_be_non_finite(body: bytes) -> bool:
    return _SUSPECT.search(body) is not None


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


class BodyGuard:
    """Pure ASGI middleware: bodies over ``max_bytes`` get 413; JSON with NaN/Infinity gets 422.

    The size is checked twice: the declared ``Content-Length`` before anything is read, and the
    bytes actually streamed (a chunked upload has no Content-Length). The body is buffered (it is
    at most ``max_bytes``) and replayed to the app. Python's ``json`` accepts ``NaN``,
    ``Infinity`` and ``1e999`` although they are not JSON; they would reach the models as
    non-finite floats, so they are refused here, once, for every route.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _refuse(scope, send, 400, "Bad Request", "invalid Content-Length header")
                    return
                if declared > self.max_bytes:
                    await self._too_large(scope, send)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and _is_json(scope) and _may_be_non_finite(body):
            try:
                json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
            except _NonFinite as exc:
                # 422 like any other invalid value (a pydantic model with allow_inf_nan=False answers the same).
                await _refuse(scope, send, 422, "Validation Error",
                              f"{exc} is not a JSON number: send finite numbers, or null for a missing value")
                return
            except (ValueError, RecursionError):  # malformed: the route's own parser answers it
                pass

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        await _refuse(scope, send, 413, "Payload Too Large", f"request body larger than {self.max_bytes} bytes",
                      {"Connection": "close"})


async def _refuse(scope: Scope, send: Send, status: int, error: str, message: str,
                  headers: dict | None = None) -> None:
    await error_response(status, error, message, headers)(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
