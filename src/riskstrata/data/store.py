"""The embedded store: a directory of Parquet files queried with DuckDB, no server.

Layout under ``root``::

    tables/<name>.parquet              one file per data table (prices, securities, ...)
    models/<model>/<version>/          a published model output: part-*.parquet + meta.json
    models/<model>/CURRENT             text file naming the published version readers use
    models/<model>/.tmp-<uuid>/        a build in progress (invisible to readers)

Nothing is ever half-written: a table is written to a temp file in the same directory, fsynced,
then ``os.replace``-d over the old one; a model version is built in a hidden directory that is
renamed into place only after every part and ``meta.json`` are on disk, and only then is
``CURRENT`` replaced (again temp file + ``os.replace``). A reader therefore sees either the old
or the new state, and a build killed at any point leaves the last good version current.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from riskstrata.errors import ModelNotBuilt, StoreError

__all__ = ["DEFAULT_STORE", "Store", "VersionWriter", "default_store_root"]

# Table and model names become SQL view names, so they must be plain identifiers.
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_PART_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_TMP_PREFIX = ".tmp-"
_OWNER_FILE = ".owner"
# A build directory whose owner process is gone is removed at once; one whose owner we cannot
# check (another host) only once it is this old, so a slow build elsewhere is never pulled away.
STALE_BUILD_SECONDS = 6 * 3600


def default_store_root() -> Path:
    """The store used when none is named: ``$RISKSTRATA_STORE``, else ``~/.riskstrata/store``."""
    env = os.environ.get("RISKSTRATA_STORE")
    return Path(env).expanduser() if env else Path.home() / ".riskstrata" / "store"


DEFAULT_STORE: Path = default_store_root()


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


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` (index dropped) as zstd Parquet at ``path`` and fsync the file."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    # Dictionary-encode labels only: trying it on float columns (nearly all values distinct)
    # costs more than the compression itself and gains nothing.
    labels = [f.name for f in table.schema if not pa.types.is_floating(f.type)]
    with open(path, "wb") as fh:
        # Row groups of 256k rows: small enough for DuckDB to skip most of a sorted table on a
        # filter (min/max statistics), large enough to compress well.
        pq.write_table(table, fh, compression="zstd", row_group_size=1 << 18, use_dictionary=labels)
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


def file_stamp(path: Path | str) -> tuple[int, int, int, int] | None:
    """(inode, mtime ns, size, replacements by this process) of a file, None if it does not exist.

    Every write here replaces a file (temp file + ``os.replace``), so the stamp changes whenever
    the content does: readers that cache what they parsed compare stamps instead of re-reading.
    """
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
        The store directory; ``None`` means :func:`default_store_root`.
    create:
        Create the directory if missing; with ``create=False`` a missing store raises
        :class:`~riskstrata.errors.StoreError`.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, create: bool = True) -> None:
        self.root: Path = Path(root).expanduser() if root is not None else default_store_root()
        if create:
            (self.root / "tables").mkdir(parents=True, exist_ok=True)
            (self.root / "models").mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise StoreError(f"no riskstrata store at {self.root}")

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # ------------------------------------------------------------------ data tables

    def table_path(self, name: str) -> Path:
        """Where table ``name`` lives (whether or not it exists yet)."""
        return self.root / "tables" / f"{_check_name('table', name)}.parquet"

    def has_table(self, name: str) -> bool:
        return self.table_path(name).is_file()

    def tables(self) -> list[str]:
        """Names of the tables in the store, sorted."""
        folder = self.root / "tables"
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.parquet") if _NAME.match(p.stem))

    def write_table(self, name: str, df: pd.DataFrame) -> None:
        """Replace table ``name`` with ``df`` atomically (temp file, fsync, ``os.replace``)."""
        path = self.table_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            _write_parquet(df, tmp)
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
        path = self.table_path(name)
        if not path.is_file():
            raise StoreError(f"table {name!r} not found in store {self.root} (nothing ingested yet?)")
        return self._scan([path], columns, where, params, what=f"table {name!r}")

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run DuckDB ``sql`` with every table as a view of the same name and every model's
        current version as a view ``model_<name>`` (e.g. ``SELECT * FROM model_cascade``)."""
        con = duckdb.connect()
        try:
            for name in self.tables():
                con.execute(
                    f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet({_sql_str(self.table_path(name))})'
                )
            for model in self.models():
                files = self.model_files(model) if self.current_version(model) else []
                if files:
                    file_list = "[" + ", ".join(_sql_str(f) for f in files) + "]"
                    con.execute(
                        f'CREATE VIEW "model_{model}" AS '
                        f"SELECT * FROM read_parquet({file_list}, union_by_name = true)"
                    )
            return con.sql(sql, params=params or None).to_arrow_table().to_pandas()
        except duckdb.Error as exc:
            raise StoreError(f"query failed: {exc}") from exc
        finally:
            con.close()

    def _scan(
        self,
        files: list[Path],
        columns: list[str] | None,
        where: str | None,
        params: list[Any] | None,
        what: str,
    ) -> pd.DataFrame:
        file_list = "[" + ", ".join(_sql_str(f) for f in files) + "]"
        sql = f"SELECT {_select(columns)} FROM read_parquet({file_list}, union_by_name = true)"
        if where:
            sql += f" WHERE {where}"
        con = duckdb.connect()
        try:
            # Through Arrow: several times faster than DuckDB's own pandas conversion on
            # millions of rows. (Integer columns with nulls come back as float64.)
            return con.sql(sql, params=params or None).to_arrow_table().to_pandas()
        except duckdb.Error as exc:
            raise StoreError(f"reading {what} failed: {exc}") from exc
        finally:
            con.close()

    # ------------------------------------------------------------------ versioned model outputs

    def model_dir(self, model: str) -> Path:
        return self.root / "models" / _check_name("model", model)

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
        host, now = socket.gethostname(), time.time()
        for tmp in folder.glob(f"{_TMP_PREFIX}*"):
            if not tmp.is_dir():
                continue
            try:
                owner = json.loads((tmp / _OWNER_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                owner = {}
            dead = owner.get("host") == host and not _pid_alive(int(owner.get("pid", -1)))
            try:
                age = now - tmp.stat().st_mtime
            except OSError:
                continue
            # No owner file: a prune's trash, or a build that has not written it yet (give it a minute).
            if dead or age > STALE_BUILD_SECONDS or (not owner and age > 60):
                shutil.rmtree(tmp, ignore_errors=True)

    def current_version(self, model: str) -> str | None:
        """The published version readers use, or ``None`` if the model was never built."""
        pointer = self.model_dir(model) / "CURRENT"
        try:
            version = pointer.read_text(encoding="utf-8").strip()
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
        if not (self.model_dir(model) / version / "meta.json").is_file():
            raise StoreError(f"model {model!r} has no published version {version!r}")
        return version

    def model_files(self, model: str, version: str | None = None) -> list[Path]:
        """The part files of a version (default: current), sorted by name."""
        version = self._resolve_version(model, version)
        return sorted((self.model_dir(model) / version).glob("part-*.parquet"))

    def model_meta(self, model: str, version: str | None = None) -> dict[str, Any]:
        """The ``meta.json`` of a version (default: current)."""
        version = self._resolve_version(model, version)
        return json.loads((self.model_dir(model) / version / "meta.json").read_text(encoding="utf-8"))

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
        files = self.model_files(model, version)
        if not files:  # a committed build that wrote no parts
            return pd.DataFrame(columns=columns or [])
        return self._scan(files, columns, where, params, what=f"model {model!r} version {version}")

    def prune(self, model: str, keep: int = 3) -> list[str]:
        """Delete all but the newest ``keep`` published versions; never the current one.

        A version is first renamed to a hidden directory, so readers never see it half-deleted.
        Returns the removed version names.
        """
        if keep < 1:
            raise StoreError("prune keeps at least one version")
        current = self.current_version(model)
        published = self.versions(model)
        doomed = [v for v in published[:-keep] if v != current]
        folder = self.model_dir(model)
        for version in doomed:
            trash = folder / f"{_TMP_PREFIX}del-{uuid.uuid4().hex}"
            os.rename(folder / version, trash)
            shutil.rmtree(trash, ignore_errors=True)
        return doomed


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
        if name is None:
            name = f"{len(self._parts):05d}"
        if name.endswith(".parquet"):
            name = name[: -len(".parquet")]
        if name.startswith("part-"):
            name = name[len("part-") :]
        if not _PART_NAME.match(name):
            raise StoreError(f"invalid part name {name!r}")
        path = self.tmp_dir / f"part-{name}.parquet"
        if path.exists():
            raise StoreError(f"part {path.name} already written in this build")
        _write_parquet(df, path)
        self._parts.append({"file": path.name, "rows": int(len(df))})
        return path

    def commit(self, meta: dict[str, Any] | None = None) -> str:
        """Publish the build: write ``meta.json``, rename the directory to the version name,
        then point ``CURRENT`` at it. Returns the version name, e.g. ``v20261121T123456.123456Z-ab12cd``.

        Version names are the UTC commit time to the microsecond plus a short random suffix,
        so they sort in build order.
        """
        if self.version is not None:
            return self.version
        if not self.tmp_dir.is_dir():
            raise StoreError(f"build of {self.model!r} was aborted")
        now = datetime.now(timezone.utc)
        version = f"v{now:%Y%m%dT%H%M%S.%f}Z-{uuid.uuid4().hex[:6]}"
        info = {
            **self.meta,
            **(meta or {}),
            "model": self.model,
            "version": version,
            "started_at": self.started_at.isoformat(),
            "committed_at": now.isoformat(),
            "parts": self._parts,
            "rows": sum(p["rows"] for p in self._parts),
        }
        meta_path = self.tmp_dir / "meta.json"
        with open(meta_path, "w", encoding="utf-8") as fh:
            json.dump(info, fh, indent=2, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        (self.tmp_dir / _OWNER_FILE).unlink(missing_ok=True)
        _fsync_dir(self.tmp_dir)
        folder = self.store.model_dir(self.model)
        os.rename(self.tmp_dir, folder / version)
        _fsync_dir(folder)
        _atomic_write_text(folder / "CURRENT", version + "\n")
        self.version = version
        return version
