"""The embedded store: a directory of Parquet files queried with DuckDB, no server.

Layout under ``root``::

    tables/<name>.parquet              one file per data table (prices, securities, ...)
    models/<model>/<version>/          a published model output: part-*.parquet + meta.json
    models/<model>/CURRENT             text file naming the published version readers use
    models/<model>/.tmp-<uuid>/        a build in progress (invisible to readers)
    models/<model>/.leases/<v>@<id>    a process holds version <v> (a server): prune keeps it
    models/<model>/.build-claim        an API build of this model is running (one at a time)

Nothing is ever half-written: a table is written to a temp file in the same directory, fsynced,
then ``os.replace``-d over the old one; a model version is built in a hidden directory that is
renamed into place only after every part and ``meta.json`` are on disk, and only then is
``CURRENT`` replaced (again temp file + ``os.replace``). A reader therefore sees either the old
or the new state, and a build killed at any point leaves the last good version current.

Retention: after each publish the store keeps the newest ``keep_versions`` versions of every
model (default 3, ``RISKSTRATA_KEEP_VERSIONS``) and deletes older ones, except a version that is
current, named by a kept version's meta.json (a companion: a factor model's factor returns, the
cascade's link betas), leased by a running process (:meth:`Store.lease`; a server holds one for
the version it serves), or superseded less than ``PRUNE_GRACE_SECONDS`` ago (a request that
started on it finishes). A pruned version is first renamed to a hidden directory, then deleted:
a crash in between leaves the store readable and the leftover is removed by the next build.

Where the store lives: ``Store(root)`` takes a local path (everything above, fsync and all), or
an fsspec URL — ``file:///srv/store``, ``memory://scratch`` (one process: tests), ``s3://bucket/
store`` with the driver the user installed — and then returns a
:class:`~riskstrata.data.store_fsspec.FsspecStore`: the same layout and the same API, with
publication reduced to what object storage offers (no rename, no exclusive create): parts are
written under the hidden build prefix, moved into the version directory, ``meta.json`` written
last, and ``CURRENT`` written after it is the one atomic step. Readers find versions only through
``CURRENT`` (and ``meta.json``), so they never see a half-written version. Build claims and leases
are best-effort there; that module's docstring says exactly what holds and what does not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from riskstrata.data import process_database
from riskstrata.data.row_sums import DIGEST_BY, DigestBy, RowSums, parquet_options, row_sums_of
from riskstrata.errors import ModelNotBuilt, StoreError

log = logging.getLogger("riskstrata.store")

__all__ = ["DEFAULT_KEEP_VERSIONS", "DEFAULT_STORE", "PRUNE_GRACE_SECONDS", "Lease", "Store", "VersionWriter",
           "default_store_root", "file_stamp", "is_url", "write_parquet_to", "write_part_file"]

# Per thread: id(store) → (the DuckDB connection :meth:`Store.one_connection` holds, the table
# views made on it). Not on the store itself: stores are pickled to cluster workers and shared by
# a server's threads, and a DuckDB connection is neither picklable nor for concurrent use.
_HELD = threading.local()

# Table and model names become SQL view names, so they must be plain identifiers.
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_PART_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_TMP_PREFIX = ".tmp-"
_OWNER_FILE = ".owner"
# A build directory whose owner process is gone is removed at once; one whose owner we cannot
# check (another host) only once it is this old, so a slow build elsewhere is never pulled away.
STALE_BUILD_SECONDS = 6 * 3600
DEFAULT_KEEP_VERSIONS = 3  # current + two to roll back to; ≈350 MB each for a real cascade build
# After a publish the superseded version stays this long: a request that started on it (and a
# server that has not yet seen the new pointer, which it checks on every request) finishes first.
PRUNE_GRACE_SECONDS = 600
_LEASES = ".leases"
_CLAIM_FILE = ".build-claim"
_VERSION_NAME = re.compile(r"^v(\d{8}T\d{6}\.\d{6})Z-[0-9a-f]{6}$")


def _version_time(version: str) -> float | None:
    """The UTC commit time (UNIX seconds) a version's name records, None for other names."""
    m = _VERSION_NAME.match(version)
    if not m:
        return None
    return datetime.strptime(m.group(1), "%Y%m%dT%H%M%S.%f").replace(tzinfo=timezone.utc).timestamp()


def _pinned_names(meta: Any) -> set[str]:
    """Every version name a meta.json mentions (companions, link_version …), recursively."""
    if isinstance(meta, str):
        return {meta} if _VERSION_NAME.match(meta) else set()
    if isinstance(meta, dict):
        return set().union(*(_pinned_names(v) for v in meta.values())) if meta else set()
    if isinstance(meta, (list, tuple)):
        return set().union(*(_pinned_names(v) for v in meta)) if meta else set()
    return set()


def _dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed meanwhile
                pass
    return total


def _owner_alive(owner: dict[str, Any]) -> bool:
    """Whether the process an owner record names still runs (another host: assumed so)."""
    if owner.get("host") != socket.gethostname():
        return True
    try:
        return _pid_alive(int(owner.get("pid", -1)))
    except (TypeError, ValueError):
        return False


_UNOWNED_GRACE_SECONDS = 60  # a build or claim without its owner record: the time it gets to write it


def _abandoned(owner: dict[str, Any], age: float | None) -> bool:
    """Whether a build directory or a build claim may be removed: its owner process (on this
    host) is gone, or it is older than ``STALE_BUILD_SECONDS``, or it still has no owner record
    a minute on. owner: its owner record ({} when none); age: seconds since it was written
    (None: unknown, so only a dead owner counts)."""
    if owner and not _owner_alive(owner):
        return True
    return age is not None and (age > STALE_BUILD_SECONDS or (not owner and age > _UNOWNED_GRACE_SECONDS))


def create_local_file(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data``, readable by its owner only, unless it exists already
    (never replaced: a second creator keeps the first one's bytes). The bytes go to a private
    temp file first and are hard-linked into place, so nobody ever reads a partial file and of
    two racing creators exactly one wins."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)  # never replaces a file another process made first
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


@contextlib.contextmanager
def local_lock(path: Path) -> Iterator[None]:
    """Hold a POSIX advisory lock on the file ``path`` (made if missing) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        try:
            import fcntl
        except ImportError:  # Windows: single-user machines; no lock
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def keep_versions_default() -> int:
    """``$RISKSTRATA_KEEP_VERSIONS`` if set (≥ 1), else :data:`DEFAULT_KEEP_VERSIONS`."""
    text = os.environ.get("RISKSTRATA_KEEP_VERSIONS", "").strip()
    if not text:
        return DEFAULT_KEEP_VERSIONS
    try:
        keep = int(text)
    except ValueError:
        raise StoreError(f"RISKSTRATA_KEEP_VERSIONS={text!r} is not a whole number") from None
    if keep < 1:
        raise StoreError("RISKSTRATA_KEEP_VERSIONS must be at least 1")
    return keep


def is_url(root: object) -> bool:
    """Whether a store root names an fsspec URL (``file://``, ``memory://``, ``s3://`` …) rather
    than a local path. A :class:`~pathlib.Path` never does (it would have collapsed the ``//``)."""
    return isinstance(root, str) and "://" in root


def default_store_root() -> Path | str:
    """The store used when none is named: ``$RISKSTRATA_STORE`` (a path or an fsspec URL), else
    ``~/.riskstrata/store``."""
    env = os.environ.get("RISKSTRATA_STORE")
    if env and is_url(env):
        return env
    return Path(env).expanduser() if env else Path.home() / ".riskstrata" / "store"


DEFAULT_STORE: Path | str = default_store_root()


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise StoreError(
            f"invalid {kind} name {name!r}: use letters, digits and underscores, starting with a letter"
        )
    return name


def _sql_str(path: Path | str) -> str:
    """A path as a SQL string literal (paths are interpolated into view definitions)."""
    return "'" + str(path).replace("'", "''") + "'"


def _fsync_dir(path: Path) -> None:
    """Make a rename or new entry in ``path`` durable (POSIX; a no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Rows per Parquet row group of a table or part: small enough for DuckDB to skip most of a sorted
# table on a filter (min/max statistics), large enough to compress well. (Prices, ordered by
# date: groups of 64k, 32k or 16k rows made no date-filtered read faster and a security's slower,
# docs/scale.md.)
ROW_GROUP_ROWS = 1 << 18


def _arrow_table(df: pd.DataFrame) -> pa.Table:
    """``df`` (index dropped) as an Arrow table, with the values ``pa.Table.from_pandas`` gives
    (NaN and NaT as nulls, strings inferred alike) but without its pandas schema metadata.

    Columns of plain numpy dtypes go through ``pa.array`` straight from one 2-D array per dtype:
    ``from_pandas`` costs ~0.1 ms per column in Python (a daily factor_cov part has 382
    columns: ~35 ms, more than its compression). Frames with extension dtypes (categorical,
    nullable integers, tz-aware dates …) or unusual labels keep ``from_pandas``, which knows them.
    """
    names, dtypes = list(df.columns), list(df.dtypes)
    by_dtype: dict[np.dtype, list[int]] = {}
    for i, t in enumerate(dtypes):
        by_dtype.setdefault(t, []).append(i)
    plain = (names and len(set(names)) == len(names) and all(type(c) is str for c in names)
             and all(isinstance(t, np.dtype) and t.kind in "fiubMO" for t in by_dtype))
    if not plain:
        return pa.Table.from_pandas(df, preserve_index=False)
    columns: list[pa.Array | None] = [None] * len(names)
    for at in by_dtype.values():
        # (rows, k) in column-major order: each column a contiguous slice, converted without a copy.
        block = np.asfortranarray(df.iloc[:, at].to_numpy())
        for j, i in enumerate(at):
            columns[i] = pa.array(block[:, j], from_pandas=True)
    return pa.Table.from_arrays(columns, names=names)


def write_parquet_to(df: pd.DataFrame, fh: Any, digest_by: DigestBy | None = None) -> None:
    """Write ``df`` (index dropped) as Parquet into the open binary file ``fh``: zstd, or
    uncompressed below 64 rows (:func:`~riskstrata.data.row_sums.parquet_options`).

    digest_by: the table's declaration in :data:`~riskstrata.data.row_sums.DIGEST_BY`; its
    per-date row sums go into the footer (key-value metadata) of the same file."""
    table = _arrow_table(df)
    sums = row_sums_of(table, digest_by) if digest_by is not None else None
    if sums is None:
        pq.write_table(table, fh, row_group_size=ROW_GROUP_ROWS, **parquet_options(table))
        return
    # The writer pq.write_table wraps, to add the sums to the footer's key-value metadata only
    # (as schema metadata they would be stored twice: also inside the serialised Arrow schema).
    with pq.ParquetWriter(fh, table.schema, **parquet_options(table)) as writer:
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        writer.add_key_value_metadata(sums.to_metadata())


def _write_parquet(df: pd.DataFrame, path: Path, digest_by: DigestBy | None = None) -> None:
    """Write ``df`` (index dropped) as zstd Parquet at ``path`` and fsync the file (with the
    per-date row sums of ``digest_by`` in its footer, :func:`write_parquet_to`)."""
    with open(path, "wb") as fh:
        write_parquet_to(df, fh, digest_by)
        fh.flush()
        os.fsync(fh.fileno())


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _replaced(path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _select(columns: Sequence[str] | None) -> str:
    if not columns:
        return "*"
    return ", ".join('"' + c.replace('"', '""') + '"' for c in columns)


# Replacements made by this process, per path: part of the stamp, so that two writes within one
# tick of the file system's clock that happen to reuse an inode and a size still differ here.
_REPLACED: dict[str, int] = {}


def _replaced(path: Path) -> None:
    key = str(path)
    _REPLACED[key] = _REPLACED.get(key, 0) + 1


def file_stamp(path: Path | str) -> tuple[Any, ...] | None:
    """(inode, mtime ns, size, replacements by this process) of a file, None if it does not exist.

    Every write here replaces a file (temp file + ``os.replace``), so the stamp changes whenever
    the content does: readers that cache what they parsed compare stamps instead of re-reading.
    An fsspec URL gets the stamp its file system offers (:func:`~riskstrata.data.store_fsspec.fs_stamp`);
    a store's own files are best stamped by :meth:`Store.table_stamp` and :meth:`Store.current_stamp`.
    """
    if is_url(path):
        from fsspec.core import url_to_fs

        from riskstrata.data.store_fsspec import fs_stamp

        fs, inner = url_to_fs(str(path))
        return fs_stamp(fs, inner, fs.unstrip_protocol(inner))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size, _REPLACED.get(str(path), 0))


def date_range_clause(start: Any = None, end: Any = None, column: str = "date") -> tuple[list[str], list[Any]]:
    """SQL conditions and parameters for an inclusive [start, end] date filter (either optional)."""
    where: list[str] = []
    params: list[Any] = []
    if start is not None:
        where.append(f"{column} >= ?")
        params.append(pd.Timestamp(start).to_pydatetime())
    if end is not None:
        where.append(f"{column} <= ?")
        params.append(pd.Timestamp(end).to_pydatetime())
    return where, params


class Store:
    """A riskstrata store rooted at a directory.

    Parameters
    ----------
    root:
        The store directory; ``None`` means :func:`default_store_root`. An fsspec URL (a
        string with ``://``) makes a :class:`~riskstrata.data.store_fsspec.FsspecStore`.
    create:
        Create the directory if missing; with ``create=False`` a missing store raises
        :class:`~riskstrata.errors.StoreError`.
    keep_versions:
        Published versions kept per model after each publish (see the module doc); default
        :func:`keep_versions_default`.
    """

    def __new__(cls, root: str | os.PathLike[str] | None = None, *args: Any, **kwargs: Any) -> Store:
        if cls is Store and is_url(default_store_root() if root is None else root):
            from riskstrata.data.store_fsspec import FsspecStore  # fsspec is imported only for a URL

            cls = FsspecStore
        return super().__new__(cls)

    def __getnewargs__(self) -> tuple[Any, ...]:
        return (self.root,)  # unpickled as the same kind of store, whatever RISKSTRATA_STORE says then

    def __init__(self, root: str | os.PathLike[str] | None = None, *, create: bool = True,
                 keep_versions: int | None = None) -> None:
        self.keep_versions: int = keep_versions_default() if keep_versions is None else int(keep_versions)
        if self.keep_versions < 1:
            raise StoreError("a store keeps at least one version per model")
        self.root: Path | str = Path(root).expanduser() if root is not None else Path(default_store_root())
        # Where the store's own paths start (a Path here; a PurePosixPath inside the file system
        # of an fsspec store, whose ``root`` is the URL the user gave).
        self._home = self.root
        if create:
            (self.root / "tables").mkdir(parents=True, exist_ok=True)
            (self.root / "models").mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise StoreError(f"no riskstrata store at {self.root}")

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    @property
    def is_local(self) -> bool:
        """True for a store on a local path (fsync, rename, hard links, O_EXCL claims)."""
        return True

    @property
    def in_process(self) -> bool:
        """True for a store only this process can see (``memory://``): other processes — the
        CLI afterwards, a server's workers, a cluster's workers — would find it empty."""
        return False

    def location(self, path: Path) -> str:
        """A path of this store as text another process can open: the local path here, a URL
        (``memory:///…``, ``s3://…``) on an fsspec store."""
        return str(path)

    def path(self, *parts: str) -> Path:
        """A path under the store's root (``store.path("secrets", "x")``), whether it exists or not."""
        return self._home.joinpath(*parts)

    # ------------------------------------------------------------------ data tables

    def table_path(self, name: str) -> Path:
        """Where table ``name`` lives (whether or not it exists yet)."""
        return self._home / "tables" / f"{_check_name('table', name)}.parquet"

    def _is_file(self, path: Path) -> bool:
        """The one place a store asks whether a file exists (an fsspec store overrides it)."""
        return path.is_file()

    def _read_bytes(self, path: Path) -> bytes:
        """The one place a store reads a small file whole (FileNotFoundError when absent)."""
        return path.read_bytes()

    def has_table(self, name: str) -> bool:
        return self._is_file(self.table_path(name))

    def tables(self) -> list[str]:
        """Names of the tables in the store, sorted."""
        folder = self.root / "tables"
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.parquet") if _NAME.match(p.stem))

    def write_table(self, name: str, df: pd.DataFrame) -> None:
        """Replace table ``name`` with ``df`` atomically (temp file, fsync, ``os.replace``); a
        table :data:`~riskstrata.data.row_sums.DIGEST_BY` declares gets its per-date row sums in
        the same file's footer (:meth:`table_row_sums`)."""
        path = self.table_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            _write_parquet(df, tmp, DIGEST_BY.get(name))
            os.replace(tmp, path)
            _replaced(path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    def read_table(
        self,
        name: str,
        columns: list[str] | None = None,
        where: str | None = None,
        params: list[Any] | None = None,
    ) -> pd.DataFrame:
        """Read table ``name``, optionally only ``columns`` and rows matching SQL ``where``.

        ``where`` is a DuckDB boolean expression over the table's columns (``?`` placeholders
        bound from ``params``); DuckDB pushes it into the Parquet scan, so row groups that
        cannot match are skipped.
        """
        if not self.has_table(name):
            raise StoreError(f"table {name!r} not found in store {self.root} (nothing ingested yet?)")
        return self._scan([self.table_path(name)], columns, where, params, what=f"table {name!r}")

    def table_columns(self, name: str) -> list[str]:
        """The column names of table ``name`` (from its Parquet footer: no rows are read)."""
        if not self.has_table(name):
            raise StoreError(f"table {name!r} not found in store {self.root} (nothing ingested yet?)")
        return list(self._parquet_footer(self.table_path(name)).schema.to_arrow_schema().names)

    def table_row_sums(self, name: str) -> RowSums | None:
        """The per-date (rows, Σ row hashes) of table ``name`` that :meth:`write_table` kept in its
        footer (no rows are read), or None: the table is absent, not declared in
        :data:`~riskstrata.data.row_sums.DIGEST_BY`, was written without them (before they
        existed), or its footer's sums do not match the declaration or the file's row count."""
        by = DIGEST_BY.get(name)
        if by is None or not self.has_table(name):
            return None
        return RowSums.from_footer(self._parquet_footer(self.table_path(name)), by)

    def _parquet_footer(self, path: Path) -> pq.FileMetaData:
        """The footer of a Parquet file of the store (an fsspec store overrides it)."""
        return pq.read_metadata(path)

    def table_stamp(self, name: str) -> tuple[Any, ...] | None:
        """A value that changes whenever table ``name`` is replaced (None: no such table), for
        readers that cache what they parsed (:func:`file_stamp`)."""
        return file_stamp(self.table_path(name))

    def current_stamp(self, model: str) -> tuple[Any, ...] | None:
        """A value that changes whenever ``CURRENT`` of ``model`` is rewritten (None: never built)."""
        return file_stamp(self.model_dir(model) / "CURRENT")

    @contextlib.contextmanager
    def one_connection(self) -> Iterator[Store]:
        """Every read of this store inside the block, on this thread, on one DuckDB connection.

        Each read otherwise opens a connection of its own and makes its table views again. A
        nested block shares the outer one's.
        """
        held = _HELD.__dict__.setdefault("by_store", {})
        if id(self) in held:
            yield self
            return
        con = self.connect()
        held[id(self)] = (con, set())
        try:
            yield self
        finally:
            del held[id(self)]
            con.close()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[tuple[duckdb.DuckDBPyConnection, set[str] | None]]:
        """The connection :meth:`one_connection` holds on this thread (with its table views), else
        a new one closed after use (no views)."""
        held = _HELD.__dict__.get("by_store", {}).get(id(self))
        if held is not None:
            yield held
            return
        con = self.connect()
        try:
            yield con, None
        finally:
            con.close()

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A new DuckDB connection that can read this store's files by :meth:`sql_path` (a
        cursor of the process's database: close it after use)."""
        return process_database.cursor()

    def sql_path(self, path: Path) -> str:
        """A store path as DuckDB reads it on a :meth:`connect` connection."""
        return str(path)

    # ------------------------------------------------------------------ small private files

    def read_file(self, *parts: str) -> bytes:
        """The bytes of the file at ``parts`` under the root (FileNotFoundError when absent)."""
        return self._read_bytes(self.path(*parts))

    def create_file(self, data: bytes, *parts: str) -> None:
        """Create the file at ``parts`` under the root with ``data``, readable by its owner only,
        unless it exists already (never replaced: a second creator keeps the first one's bytes).

        (:func:`create_local_file`.)
        """
        create_local_file(self.path(*parts), data)

    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Hold the store-wide lock ``name`` (a POSIX advisory lock on ``tables/.<name>.lock``,
        :func:`local_lock`) for the block: serialises read-modify-write of a table between processes."""
        return local_lock(self._home / "tables" / f".{name}.lock")

    def query(self, sql: str, params: list[Any] | None = None, *, models: bool = True) -> pd.DataFrame:
        """Run DuckDB ``sql`` with every table as a view of the same name and every model's
        current version as a view ``model_<name>`` (e.g. ``SELECT * FROM model_cascade``).
        models=False: the tables only (no model directories scanned: cheaper for many small queries)."""
        with self._connection() as (con, views):
            try:
                for name in self.tables():
                    if views is None or name not in views:
                        con.execute(f'CREATE TEMP VIEW "{name}" AS SELECT * FROM '
                                    f"read_parquet({_sql_str(self.sql_path(self.table_path(name)))})")
                        if views is not None:
                            views.add(name)
                for model in self.models() if models else ():
                    current = self.current_version(model)  # CURRENT read once
                    files = self.model_files(model, current) if current else []
                    if files:  # replaced: on a held connection the current version may have moved
                        file_list = "[" + ", ".join(_sql_str(self.sql_path(f)) for f in files) + "]"
                        con.execute(
                            f'CREATE OR REPLACE TEMP VIEW "model_{model}" AS '
                            f"SELECT * FROM read_parquet({file_list}, union_by_name = true)"
                        )
                return con.sql(sql, params=params or None).to_arrow_table().to_pandas()
            except duckdb.Error as exc:
                raise StoreError(f"query failed: {exc}") from exc

    def _scan(
        self,
        files: list[Path],
        columns: list[str] | None,
        where: str | None,
        params: list[Any] | None,
        what: str,
    ) -> pd.DataFrame:
        file_list = "[" + ", ".join(_sql_str(self.sql_path(f)) for f in files) + "]"
        sql = f"SELECT {_select(columns)} FROM read_parquet({file_list}, union_by_name = true)"
        if where:
            sql += f" WHERE {where}"
        with self._connection() as (con, _views):
            try:
                # Through Arrow: several times faster than DuckDB's own pandas conversion on
                # millions of rows. (Integer columns with nulls come back as float64.)
                return con.sql(sql, params=params or None).to_arrow_table().to_pandas()
            except duckdb.Error as exc:
                raise StoreError(f"reading {what} failed: {exc}") from exc

    # ------------------------------------------------------------------ versioned model outputs

    def model_dir(self, model: str) -> Path:
        return self._home / "models" / _check_name("model", model)

    def models(self) -> list[str]:
        """Names of the models with at least one folder in the store (built or not), sorted."""
        folder = self.root / "models"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and _NAME.match(p.name))

    def begin_version(self, model: str, meta: dict[str, Any] | None = None) -> VersionWriter:
        """Start building a new version of ``model``; use as a context manager, then ``commit``.

        First removes build directories left by killed builds of this model: those whose owner
        process (same host) is dead, and any older than ``STALE_BUILD_SECONDS``. Builds still
        running, here or on another host sharing the store, are left alone.
        """
        folder = self.model_dir(model)
        folder.mkdir(parents=True, exist_ok=True)
        self._clean_stale_builds(folder)
        return VersionWriter(self, model, meta)

    def _clean_stale_builds(self, folder: Path) -> None:
        if not folder.is_dir():  # never built
            return
        now = time.time()
        for tmp in folder.glob(f"{_TMP_PREFIX}*"):
            if not tmp.is_dir():
                continue
            if tmp.name.startswith(f"{_TMP_PREFIX}del-"):  # a prune's trash (left by a crash): nobody reads it
                shutil.rmtree(tmp, ignore_errors=True)
                continue
            try:
                owner = json.loads((tmp / _OWNER_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                owner = {}
            try:
                age = now - tmp.stat().st_mtime
            except OSError:
                continue
            # No owner file: a prune's trash, or a build that has not written it yet (given a minute).
            if _abandoned(owner, age):
                shutil.rmtree(tmp, ignore_errors=True)

    def current_version(self, model: str) -> str | None:
        """The published version readers use, or ``None`` if the model was never built."""
        pointer = self.model_dir(model) / "CURRENT"
        try:
            version = self._read_bytes(pointer).decode("utf-8").strip()
        except FileNotFoundError:
            return None
        return version or None

    def versions(self, model: str) -> list[str]:
        """Published versions of ``model``, oldest first (version names sort by build time)."""
        folder = self.model_dir(model)
        if not folder.is_dir():
            return []
        return sorted(
            p.name for p in folder.iterdir() if p.is_dir() and p.name.startswith("v") and (p / "meta.json").is_file()
        )

    def _resolve_version(self, model: str, version: str | None) -> str:
        if version is None:
            version = self.current_version(model)
            if version is None:
                raise ModelNotBuilt(f"model {model!r} has not been built yet in store {self.root}")
        if not self._is_file(self.model_dir(model) / version / "meta.json"):
            raise StoreError(f"model {model!r} has no published version {version!r}")
        return version

    def model_files(self, model: str, version: str | None = None) -> list[Path]:
        """The part files of a version (default: current), sorted by name."""
        return self._version_files(model, self._resolve_version(model, version))

    def _version_files(self, model: str, version: str) -> list[Path]:
        """The part files of a resolved version, sorted by name."""
        return sorted((self.model_dir(model) / version).glob("part-*.parquet"))

    def read_arrays(self, model: str, name: str, version: str | None = None) -> dict[str, np.ndarray] | None:
        """The arrays a version keeps beside its parts (:meth:`VersionWriter.write_arrays`), or
        None when it has none of that name (a version written before they existed)."""
        path = self.model_dir(model) / self._resolve_version(model, version) / f"{_check_name('arrays', name)}.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path} is unreadable: {exc}") from exc

    def model_meta(self, model: str, version: str | None = None) -> dict[str, Any]:
        """The ``meta.json`` of a version (default: current)."""
        version = self._resolve_version(model, version)
        return json.loads(self._read_bytes(self.model_dir(model) / version / "meta.json"))

    def read_model(
        self,
        model: str,
        columns: list[str] | None = None,
        where: str | None = None,
        params: list[Any] | None = None,
        version: str | None = None,
    ) -> pd.DataFrame:
        """Read a model output (default: the current version), with optional columns/SQL filter.

        Raises :class:`~riskstrata.errors.ModelNotBuilt` when no version was ever published.
        """
        version = self._resolve_version(model, version)
        files = self._version_files(model, version)
        if not files:  # a committed build that wrote no parts
            return pd.DataFrame(columns=columns or [])
        return self._scan(files, columns, where, params, what=f"model {model!r} version {version}")

    def read_parts(self, files: Sequence[Path]) -> pd.DataFrame:
        """The rows of some of a version's part files (paths from :meth:`model_files`), in order."""
        return self._scan(list(files), None, None, None, what=f"{len(files)} part file(s)")

    def set_current(self, model: str, version: str) -> None:
        """Point ``CURRENT`` of ``model`` at a published ``version`` (atomic replace)."""
        self._resolve_version(model, version)
        _atomic_write_text(self.model_dir(model) / "CURRENT", version + "\n")

    # ------------------------------------------------------------------ retention

    def lease(self, model: str, version: str) -> Lease:
        """Mark ``version`` of ``model`` as held by this process until :meth:`Lease.release`
        (or the process dies): :meth:`prune` keeps it. A server takes one for what it serves.

        On a store this process cannot write (a read-only mount, where nothing prunes either)
        the lease is a no-op rather than an error: serving must not depend on it.
        """
        folder = self.model_dir(model) / _LEASES
        path = folder / f"{version}@{uuid.uuid4().hex[:12]}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "version": version,
                                        "at": time.time()}), encoding="utf-8")
        except OSError as exc:
            log.warning("cannot lease %s %s in %s: %s", model, version, self.root, exc)
            return Lease(None)
        return Lease(path)

    def leased(self, model: str) -> dict[str, int]:
        """Versions of ``model`` held by live processes → number of leases; leases of dead
        processes on this host are removed on the way."""
        held: dict[str, int] = {}
        folder = self.model_dir(model) / _LEASES
        if not folder.is_dir():
            return held
        for path in folder.iterdir():
            version = path.name.rsplit("@", 1)[0]
            owner = _read_json(path)
            if owner and not _owner_alive(owner):
                path.unlink(missing_ok=True)
                continue
            try:
                fresh = time.time() - path.stat().st_mtime < 60
            except FileNotFoundError:  # released meanwhile
                continue
            if not owner and fresh:  # being written
                owner = {"version": version}
            if owner:
                held[version] = held.get(version, 0) + 1
        return held

    def pinned(self, models: Iterable[str] | None = None) -> set[str]:
        """Version names named by the meta.json of any published version of any model (the
        companions a version reads: they live as long as the versions naming them)."""
        names: set[str] = set()
        for model in self.models() if models is None else models:
            folder = self.model_dir(model)
            for version in self.versions(model):
                meta = self._json(folder / version / "meta.json")
                names |= _pinned_names({k: v for k, v in meta.items() if k != "version"})
        return names

    def _json(self, path: Path) -> dict[str, Any]:
        """A JSON object file of the store ({} when absent or unreadable)."""
        return _read_json(path)

    def _kept(self, model: str, keep: int, grace_seconds: float,
              pinned: set[str] | Callable[[], set[str]]) -> tuple[list[str], dict[str, str]]:
        """(published versions, {version: why it is kept}) under the retention rules.

        pinned: :meth:`pinned`, or a function giving it, called only when some version is not
        kept already as newest, current or leased (reading every version's meta.json is most
        of a prune's cost, and after a publish there is usually nothing to prune)."""
        published = self.versions(model)
        why: dict[str, str] = {}
        for v in published[-keep:]:
            why[v] = "newest"
        current = self.current_version(model)
        if current in published:
            why[current] = "current"
        for v in self.leased(model):
            if v in published:
                why.setdefault(v, "leased")
        if len(why) == len(published):
            return published, why
        pins = pinned() if callable(pinned) else pinned
        for v in published:
            if v in pins:
                why.setdefault(v, "pinned by a kept version's meta.json")
        now = time.time()
        for older, newer in zip(published, published[1:]):  # superseded when the next one was committed
            since = _version_time(newer)
            if since is None or now - since < grace_seconds:
                why.setdefault(older, "superseded recently")
        return published, why

    def prune(self, model: str, keep: int | None = None, grace_seconds: float = 0.0,
              pinned: set[str] | Callable[[], set[str]] | None = None) -> list[str]:
        """Delete the published versions of ``model`` that retention does not keep: all but the
        newest ``keep`` (default ``keep_versions``), never the current one, one leased by a live
        process, one a published version's meta.json names, or one superseded less than
        ``grace_seconds`` ago. Returns the removed version names, oldest first.

        Each version is renamed to a hidden directory (atomic: readers never see half of it)
        and then deleted; a crash in between leaves a hidden leftover that the next build of
        the model removes. pinned: :meth:`pinned` when the caller has it already (or a function
        giving it: read only if some version may be pruned).
        """
        keep = self.keep_versions if keep is None else keep
        if keep < 1:
            raise StoreError("prune keeps at least one version")
        folder = self.model_dir(model)
        self._clean_stale_builds(folder)
        published, why = self._kept(model, keep, grace_seconds, self.pinned if pinned is None else pinned)
        removed = []
        for version in published:
            if version not in why and self._remove_version(folder, version):
                removed.append(version)
        return removed

    def _remove_version(self, folder: Path, version: str) -> bool:
        """Remove one published version atomically for readers (renamed to a hidden directory,
        then deleted); False when another process pruned it first."""
        trash = folder / f"{_TMP_PREFIX}del-{uuid.uuid4().hex}"
        try:
            os.rename(folder / version, trash)
        except FileNotFoundError:
            return False
        _fsync_dir(folder)
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def prune_all(self, keep: int | None = None, grace_seconds: float = 0.0) -> dict[str, list[str]]:
        """:meth:`prune` every model; a second pass removes companions freed by the first."""
        removed: dict[str, list[str]] = {}
        for _ in range(2):
            read: list[set[str]] = []

            def pinned() -> set[str]:  # every meta.json once per pass, and only if a model has a candidate
                if not read:
                    read.append(self.pinned())
                return read[0]

            freed = False
            for model in self.models():
                gone = self.prune(model, keep, grace_seconds, pinned)
                if gone:
                    removed.setdefault(model, []).extend(gone)
                    freed = True
            if not freed:  # nothing removed: no companion was freed, a second pass would find the same
                break
        return removed

    def info(self) -> dict[str, Any]:
        """What the store holds and what it costs on disk: tables (bytes), and per model every
        published version (bytes, committed_at, current, why retention keeps it), live leases,
        the bytes of builds in progress and leftovers, and the retention setting."""
        tables = [{"table": t, "bytes": self._file_bytes(self.table_path(t))} for t in self.tables()]
        pinned = self.pinned()
        models = []
        for model in self.models():
            folder = self.model_dir(model)
            published, why = self._kept(model, self.keep_versions, PRUNE_GRACE_SECONDS, pinned)
            current = self.current_version(model)
            versions = [{"version": v, "bytes": self._dir_bytes(folder / v), "current": v == current,
                         "committed_at": self._json(folder / v / "meta.json").get("committed_at"),
                         "kept": why.get(v, "pruned by the next publish")} for v in published]
            hidden = self._hidden_bytes(folder)
            models.append({"model": model, "current": current, "versions": versions,
                           "bytes": sum(v["bytes"] for v in versions) + hidden, "building_or_leftover_bytes": hidden,
                           "leases": self.leased(model)})
        total = sum(t["bytes"] for t in tables) + sum(m["bytes"] for m in models)
        return {"root": str(self.root), "keep_versions": self.keep_versions,
                "grace_seconds": PRUNE_GRACE_SECONDS, "tables": tables, "models": models, "bytes": total}

    def _file_bytes(self, path: Path) -> int:
        return path.stat().st_size

    def _dir_bytes(self, path: Path) -> int:
        return _dir_bytes(path)

    def _hidden_bytes(self, folder: Path) -> int:
        """Bytes of the builds in progress and leftovers in a model's folder."""
        return sum(_dir_bytes(p) for p in folder.glob(f"{_TMP_PREFIX}*") if p.is_dir())

    # ------------------------------------------------------------------ one API build per model

    def claim_build(self, model: str, job_id: str) -> str | None:
        """Claim the right to build ``model`` for ``job_id``; None when claimed, else the job id
        of the live build that holds the claim (in this or another worker process).

        The claim is a file created exclusively; a claim whose process died (same host) or
        that is older than ``STALE_BUILD_SECONDS`` is taken over.
        """
        folder = self.model_dir(model)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / _CLAIM_FILE
        record = json.dumps({"job_id": job_id, "pid": os.getpid(), "host": socket.gethostname(), "at": time.time()})
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read_json(path)
                try:
                    age = time.time() - path.stat().st_mtime
                except FileNotFoundError:
                    continue  # released meanwhile: try again
                if _abandoned(holder, age):
                    path.unlink(missing_ok=True)
                    continue
                return str(holder.get("job_id") or "unknown")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(record)
            return None
        return "unknown"

    def release_build(self, model: str, job_id: str) -> None:
        """Drop the claim of ``job_id`` (a claim another job took over is left alone)."""
        path = self.model_dir(model) / _CLAIM_FILE
        if _read_json(path).get("job_id") == job_id:
            path.unlink(missing_ok=True)


class Lease:
    """A marker file saying a process holds a version; :meth:`release` removes it (idempotent).

    fs: the fsspec file system of the store (None: a local path)."""

    def __init__(self, path: Path | None, fs: Any = None) -> None:
        self.path = path  # None: no lease could be written (read-only store)
        self.fs = fs

    def release(self) -> None:
        if self.path is None:
            return
        try:
            if self.fs is None:
                self.path.unlink(missing_ok=True)
            else:
                self.fs.rm(str(self.path))
        except OSError:  # gone already, or a read-only store since: the lease dies with the process anyway
            pass

    def __repr__(self) -> str:
        return f"Lease({self.path.name if self.path else None!r})"


def write_part_file(directory: Path | str, name: str, df: pd.DataFrame) -> Path:
    """Write ``df`` as ``part-<name>.parquet`` into a build directory (a :class:`VersionWriter`'s
    ``tmp_location``: a local path, or an fsspec URL the process opens with its own driver)
    from any process that sees it, e.g. a Dask worker on a shared file system or with access
    to the bucket; the writer then registers it with :meth:`VersionWriter.adopt_part` and
    publishes as usual. Returns the part's path (only its ``name`` means the same everywhere)."""
    if not _PART_NAME.match(name):
        raise StoreError(f"invalid part name {name!r}")
    if is_url(directory):
        from riskstrata.data.store_fsspec import write_part_url

        return write_part_url(str(directory), f"part-{name}.parquet", df)
    path = Path(directory) / f"part-{name}.parquet"
    if path.exists():
        raise StoreError(f"part {path.name} already written in this build")
    _write_parquet(df, path)
    return path


class VersionWriter:
    """One build of a model version: write parts, then :meth:`commit` to publish atomically.

    Used as a context manager; leaving the block without ``commit`` (error or not) removes the
    build directory and publishes nothing.
    """

    def __init__(self, store: Store, model: str, meta: dict[str, Any] | None = None) -> None:
        self.store = store
        self.model = model
        self.meta: dict[str, Any] = dict(meta or {})
        self.started_at = datetime.now(timezone.utc)
        self.version: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.tmp_dir = store.model_dir(model) / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        self._start()

    @property
    def tmp_location(self) -> str:
        """The build directory as another process names it (:func:`write_part_file`)."""
        return self.store.location(self.tmp_dir)

    def _start(self) -> None:
        self.tmp_dir.mkdir(parents=True)
        # Who owns this build, so the next build can tell a killed one from a running one.
        (self.tmp_dir / _OWNER_FILE).write_text(
            json.dumps({"pid": os.getpid(), "host": socket.gethostname()}), encoding="utf-8"
        )

    def __enter__(self) -> VersionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.version is None:
            self.abort()

    def abort(self) -> None:
        """Discard the build (idempotent)."""
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def write_part(self, df: pd.DataFrame, name: str | None = None) -> Path:
        """Write one part (``part-<name>.parquet``; default a running number) and return its path."""
        if self.version is not None:
            raise StoreError(f"version {self.version} of {self.model!r} is already committed")
        if not self.tmp_dir.is_dir():
            raise StoreError(f"build of {self.model!r} was aborted")
        path = self.tmp_dir / self._part_file(name)
        if path.exists():
            raise StoreError(f"part {path.name} already written in this build")
        _write_parquet(df, path)
        self._parts.append({"file": path.name, "rows": int(len(df))})
        return path

    def _part_file(self, name: str | None) -> str:
        """The file name of a part: ``part-<name>.parquet`` (``name`` may already carry the prefix
        or the suffix; default: the next running number), the name checked."""
        name = f"{len(self._parts):05d}" if name is None else name.removesuffix(".parquet").removeprefix("part-")
        if not _PART_NAME.match(name):
            raise StoreError(f"invalid part name {name!r}")
        return f"part-{name}.parquet"

    def adopt_part(self, path: Path, rows: int | None = None) -> Path:
        """Add an existing Parquet part to the build and return its path in the build.

        A file already inside the build directory (written there by another process, e.g. a
        Dask worker) is only registered. Any other file (a part of a published version: an
        incremental update carries the old rows over) is hard-linked in under its own name,
        or copied where links are not possible; published parts are never modified, so the
        link shares bytes safely. rows: the part's row count (default: read from its footer).
        """
        if self.version is not None:
            raise StoreError(f"version {self.version} of {self.model!r} is already committed")
        path = Path(path)
        if not _PART_NAME.match(path.name) or not path.name.startswith("part-") or not path.is_file():
            raise StoreError(f"not a part file: {path}")
        target = self.tmp_dir / path.name
        if path.resolve().parent != self.tmp_dir.resolve():
            if target.exists():
                raise StoreError(f"part {path.name} already written in this build")
            try:
                os.link(path, target)
            except OSError:  # another file system, or one without hard links
                shutil.copyfile(path, target)
        if any(p["file"] == target.name for p in self._parts):
            raise StoreError(f"part {target.name} already registered in this build")
        n = int(pq.ParquetFile(target).metadata.num_rows) if rows is None else int(rows)
        self._parts.append({"file": target.name, "rows": n})
        return target

    def write_arrays(self, name: str, arrays: dict[str, np.ndarray]) -> Path:
        """Keep named numpy arrays beside the parts (``<name>.npz``, no pickles): state a later
        step continues from, such as a daily update's running sums. Read with :meth:`Store.read_arrays`."""
        if self.version is not None:
            raise StoreError(f"version {self.version} of {self.model!r} is already committed")
        path = self.tmp_dir / f"{_check_name('arrays', name)}.npz"
        arrays = {key: np.asarray(a) for key, a in arrays.items()}
        if any(a.dtype.hasobject for a in arrays.values()):
            raise StoreError("write_arrays keeps numeric and fixed-width string arrays only (no pickled objects)")
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        return path

    def _version_info(self, meta: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
        """(the new version's name, its meta.json) at commit time."""
        now = datetime.now(timezone.utc)
        version = f"v{now:%Y%m%dT%H%M%S.%f}Z-{uuid.uuid4().hex[:6]}"
        return version, {
            **self.meta,
            **(meta or {}),
            "model": self.model,
            "version": version,
            "started_at": self.started_at.isoformat(),
            "committed_at": now.isoformat(),
            "parts": self._parts,
            "rows": sum(p["rows"] for p in self._parts),
        }

    def _pruned_after(self, version: str, prune: bool) -> str:
        self.version = version
        if not prune:
            return version
        try:
            self.store.prune_all(grace_seconds=PRUNE_GRACE_SECONDS)
        except (OSError, StoreError) as exc:  # disk hygiene must not undo a good build
            log.warning("pruning after publishing %s %s failed: %s", self.model, version, exc)
        return version

    def commit(self, meta: dict[str, Any] | None = None, *, make_current: bool = True, prune: bool = True) -> str:
        """Publish the build: write ``meta.json``, rename the directory to the version name,
        then point ``CURRENT`` at it. Returns the version name, e.g. ``v20261121T123456.123456Z-ab12cd``.

        make_current: False publishes the version without pointing ``CURRENT`` at it (a
        companion that becomes current only with the model that names it,
        :meth:`Store.set_current`). Then the store is pruned (see the module doc; ``prune=False``:
        not now — a publish of several versions prunes once, after the last); a failing prune
        never fails the publish.

        Version names are the UTC commit time to the microsecond plus a short random suffix,
        so they sort in build order.
        """
        if self.version is not None:
            return self.version
        if not self.tmp_dir.is_dir():
            raise StoreError(f"build of {self.model!r} was aborted")
        version, info = self._version_info(meta)
        meta_path = self.tmp_dir / "meta.json"
        with open(meta_path, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(info, indent=2, default=str))  # one write (json.dump writes each token)
            fh.flush()
            os.fsync(fh.fileno())
        (self.tmp_dir / _OWNER_FILE).unlink(missing_ok=True)
        _fsync_dir(self.tmp_dir)
        folder = self.store.model_dir(self.model)
        os.rename(self.tmp_dir, folder / version)
        _fsync_dir(folder)
        if make_current:
            _atomic_write_text(folder / "CURRENT", version + "\n")
        return self._pruned_after(version, prune)
