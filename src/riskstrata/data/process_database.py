"""This process's one in-memory DuckDB database, of which every read of the store (and every
hashing of rows for the footer sums) takes a cursor: see :class:`_ProcessDatabase`."""

from __future__ import annotations

import os
import threading

import duckdb


class _ProcessDatabase:
    """The one in-memory DuckDB database of this process, of which every store read takes a
    cursor: a connection of its own (its temp views its own, safe on its thread) for ~0.4 ms of
    CPU, where a new database costs ~20 ms (its catalog and thread pool) — more than most reads.

    After a fork the child makes its own: the inherited one's threads are the parent's, and
    destroying it in the child aborts the process, so the child keeps it, unused, forever.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._database: duckdb.DuckDBPyConnection | None = None
        os.register_at_fork(before=self._lock.acquire, after_in_parent=self._lock.release,
                            after_in_child=self._after_fork)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._database is None:
                self._database = duckdb.connect()
            return self._database.cursor()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        if self._database is not None:
            import ctypes

            # Never deallocated (its destructor would join threads that do not exist here).
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(self._database))
            self._database = None


_DATABASE = _ProcessDatabase()


def cursor() -> duckdb.DuckDBPyConnection:
    """A new connection (a cursor) to this process's DuckDB database: close it after use."""
    return _DATABASE.cursor()
