"""Running a coroutine from a synchronous test, whatever else the session has running.

pytest-playwright's sync API keeps an asyncio loop running in the main thread for the rest of the
session once a browser test has run, and ``asyncio.run``/``anyio.run`` refuse to start inside a
running loop. Running them on a fresh thread, which never has a loop, makes a test's outcome
independent of which tests ran before it in the same process (pytest-xdist, ``-k``, reordering).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` on a fresh thread; returns its result or raises its exception."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-loop") as pool:
        return pool.submit(asyncio.run, coro).result()


def run_async(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``anyio.run(fn, *args)`` on a fresh thread; returns its result or raises its exception."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-loop") as pool:
        return pool.submit(anyio.run, fn, *args).result()
