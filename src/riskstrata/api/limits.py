"""Robustness limits: a token bucket per API key (and one for failed authentications per
client address), a guard on request bodies (size, non-finite numbers, slow uploads), and a
gate that bounds each key's concurrent requests and the heavy work running at once.

All are per worker (no shared state between processes): with N workers behind a balancer a
key's effective rate is up to N times the configured one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable

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

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.rate)

    def acquire(self, key: str) -> float:
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens = self._tokens(key, now)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > 10_000:
                    self._forget_full(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def peek(self, key: str) -> float:
        """Seconds until ``key`` has a token, without taking one (0.0: it has one now). A key
        without a bucket (the usual case: no failed authentication from this address) costs a
        dict lookup."""
        if self.rate <= 0 or key not in self._buckets:
            return 0.0
        with self._lock:
            tokens = self._tokens(key, self.clock())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled (they equal a fresh one), so memory stays bounded."""
        full = [k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]


class Busy(Exception):
    """A key already has as many requests in flight as it may."""


class _Slots:
    """A FIFO counting semaphore that is bound to no event loop (an app may outlive a loop: tests
    open one TestClient after another). A released slot passes to the oldest waiter."""

    def __init__(self, n: int) -> None:
        self.n, self.used = n, 0
        self.waiters: deque[asyncio.Future] = deque()

    async def acquire(self) -> None:
        if self.used < self.n and not self.waiters:
            self.used += 1
            return
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():  # handed a slot, then cancelled: pass it on
                self.release()
            else:
                self.waiters.remove(fut)
            raise

    def release(self) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot changes hands; ``used`` stays
                return
        self.used -= 1

    @property
    def idle(self) -> bool:
        return self.used == 0 and not self.waiters


# GET routes that read history or a factor model's panels; every other GET is answered from
# memory. Every POST carries a body and counts as heavy.
HEAVY_GET = ("/api/ticker-returns", "/api/l3-decomposition", "/api/lstar", "/api/returns-decomposition",
             "/api/factors/")
LIGHT_GET = ("/api/factors/models",)
# /metrics/{T} itself is served from memory; these two of its sub-routes read a ticker's history
# (and one renders a PDF), so they are heavy too.
HEAVY_GET_SUFFIX = ("/snapshot.pdf", "/correlation")


def is_heavy(method: str, path: str) -> bool:
    """Whether a request goes through the bounded heavy-work gate: REST routes only (/mcp keeps
    its own session machinery on the server's loop)."""
    if not path.startswith("/api/"):
        return False
    if method in ("GET", "HEAD", "OPTIONS"):
        if path.startswith("/api/metrics/") and path.endswith(HEAVY_GET_SUFFIX):
            return True
        return path.startswith(HEAVY_GET) and not path.startswith(LIGHT_GET)
    return True


SWITCH_INTERVAL = 0.001  # seconds: the GIL switch interval once heavy work runs on the pool
# The pool's threads (and the route threads they start) run at a lower CPU priority than the
# server's loop: when cores are short, the scheduler serves /health before a portfolio.
HEAVY_NICE = 10


class _LoopThread:
    """An event loop of its own on a daemon thread: where one heavy request runs, whole."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        if sys.platform == "linux":  # nice is per thread on Linux, and threads this one starts inherit it
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HEAVY_NICE)
        self.loop.run_forever()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


class RequestGate:
    """Bounds per worker: ``per_key`` requests in flight per key (more → 429 at once), and heavy
    work — ``heavy_slots`` requests running at once in the worker, at most ``heavy_per_key`` of
    them for one key; the rest wait in line (FIFO, without a thread). With one key flooding,
    ``heavy_slots − heavy_per_key`` slots stay free for everyone else.

    A heavy request runs whole — JSON parsing and validation of a 20,000-line body included,
    not just the route — on one of ``heavy_slots`` threads with their own event loops (the bounded
    pool), talking to the server's loop only to receive and send: the server's loop keeps
    answering /health and /metrics while heavy work runs. ``heavy_slots == 0`` turns the gate and
    the pool off (everything on the server's loop and its thread pool, as before); ``per_key == 0``
    the in-flight bound.
    """

    def __init__(self, per_key: int, heavy_slots: int, heavy_per_key: int) -> None:
        self.per_key, self.heavy_per_key = per_key, heavy_per_key
        self._inflight: dict[str, int] = {}
        self._heavy = _Slots(heavy_slots) if heavy_slots > 0 else None
        self._per_key: dict[str, _Slots] = {}
        self._loops: list[_LoopThread] = []  # idle loop threads, made on first use
        self._made = 0
        self._lock = threading.Lock()

    @property
    def gated(self) -> bool:
        return self._heavy is not None

    def _take_loop(self) -> _LoopThread:
        with self._lock:
            if self._loops:
                return self._loops.pop()
            self._made += 1
            # The pool's threads share the GIL with the server's loop, which waits up to one
            # switch interval (5 ms by default) each time it wants the GIL back: 1 ms keeps a
            # light request from paying tens of ms behind a heavy one, for ~1 % of the heavy
            # thread's throughput.
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
            # A full (generation 2) garbage collection is one C call over every tracked object,
            # holding the GIL throughout: ≈10-15 ms for this server's heap, ~1/s while a key floods
            # 20,000-line portfolios (each allocates ~10^5 containers), and many times that when a
            # busy machine preempts the low-priority thread running it. Freezing what exists now
            # (the app, its modules, whatever is loaded by now) leaves those collections only the objects
            # made since: none over 10 ms in the flood test. Refcounting still frees frozen
            # objects; only a cycle alive at this instant is never collected.
            gc.freeze()
            return _LoopThread(f"riskstrata-heavy-{self._made}")

    def _give_loop(self, loop: _LoopThread) -> None:
        with self._lock:
            self._loops.append(loop)

    def close(self) -> None:
        """Stop the pool's threads (the app's shutdown)."""
        with self._lock:
            loops, self._loops = self._loops, []
        for loop in loops:
            loop.close()

    async def elsewhere(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Run ``app`` for this request on a pool loop; receive and send stay on this loop."""
        here = asyncio.get_running_loop()
        worker = self._take_loop()

        async def far_receive() -> Message:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(receive(), here))

        async def far_send(message: Message) -> None:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(send(message), here))

        done = asyncio.run_coroutine_threadsafe(app(scope, far_receive, far_send), worker.loop)
        try:
            await asyncio.wrap_future(done)
        except asyncio.CancelledError:
            done.cancel()
            raise
        finally:
            self._give_loop(worker)

    def enter(self, identity: str) -> None:
        """Count a request in; :class:`Busy` when the key is at its bound."""
        n = self._inflight.get(identity, 0)
        if self.per_key and n >= self.per_key:
            raise Busy(identity)
        self._inflight[identity] = n + 1

    def leave(self, identity: str) -> None:
        n = self._inflight.get(identity, 1) - 1
        if n <= 0:
            self._inflight.pop(identity, None)
        else:
            self._inflight[identity] = n

    async def heavy(self, identity: str, call: Callable[[], Awaitable[None]]) -> None:
        """Run ``call`` holding one of the key's heavy slots and one of the worker's."""
        if self._heavy is None:
            await call()
            return
        mine = self._per_key.get(identity)
        if mine is None:
            mine = self._per_key[identity] = _Slots(max(1, min(self.heavy_per_key, self._heavy.n)))
        await mine.acquire()
        try:
            await self._heavy.acquire()
            try:
                await call()
            finally:
                self._heavy.release()
        finally:
            mine.release()
            if mine.idle:
                self._per_key.pop(identity, None)


class HeavyGate:
    """Pure ASGI middleware (innermost, after the body is read): heavy requests of an
    authenticated identity run through :meth:`RequestGate.heavy`.

    While a request waits in line it listens for its client: one that goes away leaves the line
    at once (AccessLog says 499) instead of being computed for nobody and holding its key's
    in-flight count — a client that drops 64 queued requests and reconnects is not refused.
    """

    def __init__(self, app: ASGIApp, gate: RequestGate) -> None:
        self.app, self.gate = app, gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        identity = (scope.get("state") or {}).get("rs_identity")
        if (scope["type"] != "http" or identity is None or not self.gate.gated
                or not is_heavy(scope.get("method", ""), scope.get("path", ""))):
            await self.app(scope, receive, send)
            return
        first = await receive()  # the whole body (BodyGuard buffered it), or nothing for a GET
        if first["type"] != "http.request":
            return
        gone = asyncio.ensure_future(receive())  # completes only when the client disconnects
        handed = False

        async def app_receive() -> Message:
            nonlocal handed
            if not handed:
                handed = True
                return first
            return await asyncio.shield(gone)

        running = False

        async def run() -> None:
            nonlocal running
            running = True
            await self.gate.elsewhere(self.app, scope, app_receive, send)

        work = asyncio.ensure_future(self.gate.heavy(identity, run))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done() and not running:  # the client left while waiting in line
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
                return
            await work
        finally:
            gone.cancel()


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

    A body must arrive within ``timeout`` seconds (408 and the connection closed otherwise), so
    a client trickling bytes cannot hold a buffer and a slot for ever. A request without a body
    (no Content-Length, no Transfer-Encoding: every GET) passes straight through. This runs after
    authentication (``riskstrata.api.deps.KeyGuard``): nobody without a key gets a byte read.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float = 30.0) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        has_body = False
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
                has_body = has_body or declared > 0
            elif name == b"transfer-encoding":
                has_body = True
        if not has_body:  # nothing to read, nothing to wait for (the hot GET path)
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":  # the client went away (AccessLog says 499)
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        await self._too_large(scope, send)
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await _refuse(scope, send, 408, "Request Timeout",
                          f"the request body did not arrive within {self.timeout:g} s", {"Connection": "close"})
            return
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
