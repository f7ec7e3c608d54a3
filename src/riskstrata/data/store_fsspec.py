"""The store on an fsspec file system: ``Store("file:///srv/store")``, ``Store("memory://scratch")``,
``Store("s3://bucket/store")`` (with the driver the user installed, e.g. ``s3fs``).

The layout and the API are those of a local store (:mod:`riskstrata.data.store`); what changes is
how each step is made safe, because object storage has no rename, no exclusive create, no fsync
and no hard links. What holds, and what is only best-effort:

Atomic
    - **Publishing a version.** A build writes its parts under the hidden prefix
      ``models/<model>/.tmp-<uuid>/``. :meth:`FsspecVersionWriter.commit` moves each registered file
      into ``models/<model>/<version>/`` (a rename on ``file://``, a copy then a delete on object
      storage), writes ``meta.json`` there **after** the parts, and then writes ``CURRENT`` — the
      single step that publishes. Readers resolve versions only through ``CURRENT`` (and list only
      directories that have a ``meta.json``), so a half-moved version is never seen, and a build
      that fails or is killed at any point leaves the last version current.
    - **Replacing a table or a pointer** (``CURRENT``, a lease, ``meta.json``): written whole — one
      PUT on object storage (an object appears complete or not at all), one entry on ``memory://``,
      a temp file renamed over the old one on ``file://``.

Best-effort
    - **Durability**: nothing is fsynced; it is the file system's (use a plain local path for the
      fsynced store).
    - **Pruning** removes a version's ``meta.json`` first (it leaves every listing at once), then
      its files; a crash in between leaves a directory without ``meta.json`` that a later build
      removes once its name is ``STALE_BUILD_SECONDS`` old. A killed build's hidden prefix is
      removed by the next build of the model when its owner process (same host) is gone, or once
      it is that old.
    - **Build claims** (one API build per model) use an exclusive create where the file system
      has one (``file://``, ``memory://``, drivers that accept mode ``"xb"``); elsewhere a claim is
      check, write, read back, and two API workers racing within one round trip can both build —
      each publish is still atomic and the later one is current.
    - **Leases** are files as on a local path; the owner of a lease is checked only on its own
      host, so a lease of a process that died on another machine stays until it is removed by
      hand (``riskstrata store info`` lists them).
    - **The key table's lock** is ``fcntl`` on ``file://`` and only a lock inside this process
      elsewhere: two ``riskstrata keys create`` at the same moment on two machines can drop one
      row (create the API key secret once, before starting servers on several machines).
    - **Stamps** (a server noticing a new ``CURRENT`` or key table) come from the file system's
      metadata (size and modification time or ETag), one metadata request per check.

``memory://`` lives inside one process: Dask workers in other processes, ``riskstrata serve``
workers and a second CLI call do not see it — use it in tests; share a store through ``file://``
or object storage. DuckDB reads ``file://`` parts by their local path (as a local store does) and
any other file system through the fsspec file system registered on its connection
(``register_filesystem``), which reads by ranges, so filters still skip row groups.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from riskstrata.data.row_sums import DIGEST_BY
from riskstrata.data.store import (_CLAIM_FILE, _LEASES, _NAME, _OWNER_FILE, _PART_NAME, _REPLACED, _TMP_PREFIX,
                                   _VERSION_NAME, STALE_BUILD_SECONDS, Lease, Store, VersionWriter, _check_name,
                                   _abandoned, _owner_alive, _replaced, _version_time, create_local_file,
                                   default_store_root, keep_versions_default, local_lock, write_parquet_to)
from riskstrata.errors import StoreError

log = logging.getLogger("riskstrata.store")

__all__ = ["FsspecStore", "FsspecVersionWriter", "fs_stamp", "write_part_url"]

# Locks of stores whose file system offers none (not file://): they serialise this process only.
_PROCESS_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def _modified(info: dict[str, Any]) -> float | None:
    """The modification time (UNIX seconds) an fsspec ``info`` reports, None if it reports none."""
    for key in ("mtime", "LastModified", "last_modified", "modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def fs_stamp(fs: Any, path: str, key: str | None = None) -> tuple[Any, ...] | None:
    """The :func:`~riskstrata.data.store.file_stamp` of a file on an fsspec file system: (inode
    where there is one, modification time, ETag where there is one, size, replacements by this
    process), None if the file does not exist. key: the name this process's writes count under."""
    fs.invalidate_cache(path)  # a listings cache (s3fs) would hide another process's write
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return None
    if info.get("type") not in (None, "file"):
        return None
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    changed = next((str(info[k]) for k in ("mtime", "LastModified", "last_modified", "modified", "updated", "created")
                    if info.get(k) is not None), None)
    return (info.get("ino"), changed, etag, info.get("size"), _REPLACED.get(key or path, 0))


def write_part_url(directory: str, file: str, df: pd.DataFrame) -> PurePosixPath:
    """:func:`~riskstrata.data.store.write_part_file` for a build directory given as an fsspec URL
    (a worker opens the file system with its own driver and credentials)."""
    fs, inner = url_to_fs(directory)
    return _write_part(fs, PurePosixPath(inner) / file, df)


def _write_part(fs: Any, path: PurePosixPath, df: pd.DataFrame) -> PurePosixPath:
    if fs.exists(str(path)):
        raise StoreError(f"part {path.name} already written in this build")
    with fs.open(str(path), "wb") as fh:
        write_parquet_to(df, fh)
    return path


class FsspecStore(Store):
    """A :class:`~riskstrata.data.store.Store` on an fsspec file system (see the module doc).

    ``root`` stays the URL as given (printable, and what ``--store`` takes back); paths inside
    the store (:meth:`table_path`, :meth:`model_dir`, :meth:`model_files`) are
    :class:`~pathlib.PurePosixPath` in the file system's own terms, and :meth:`location` turns
    one into a URL another process can open.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, create: bool = True,
                 keep_versions: int | None = None) -> None:
        self.keep_versions = keep_versions_default() if keep_versions is None else int(keep_versions)
        if self.keep_versions < 1:
            raise StoreError("a store keeps at least one version per model")
        self.root = str(default_store_root() if root is None else root)
        try:
            self.fs, inner = url_to_fs(self.root)
        except (ImportError, ValueError) as exc:  # an unknown protocol, or its driver is not installed
            raise StoreError(f"cannot open store {self.root}: {exc}") from None
        self._home = PurePosixPath(inner)
        # file:// is a local disk: DuckDB reads its files by path, tables replace by rename, links work.
        self._on_disk = isinstance(self.fs, LocalFileSystem)
        if create:
            for folder in ("tables", "models"):
                self.fs.makedirs(str(self._home / folder), exist_ok=True)
        elif not self.fs.isdir(str(self._home)):
            raise StoreError(f"no riskstrata store at {self.root}")

    @property
    def is_local(self) -> bool:
        return False

    @property
    def in_process(self) -> bool:
        from fsspec.implementations.memory import MemoryFileSystem

        return isinstance(self.fs, MemoryFileSystem)

    def location(self, path: PurePosixPath) -> str:
        return self.fs.unstrip_protocol(str(path))

    def connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        if not self._on_disk:
            con.register_filesystem(self.fs)
        return con

    def sql_path(self, path: PurePosixPath) -> str:
        return str(path) if self._on_disk else self.location(path)

    # ------------------------------------------------------------------ file primitives

    def _put(self, path: PurePosixPath, fill: Callable[[Any], None]) -> None:
        """Write the file at ``path`` whole (``fill`` writes into a binary file): readers see the
        old bytes or the new ones, never a part (see the module doc)."""
        target = str(path)
        if self._on_disk:
            tmp = str(path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp"))
            try:
                with self.fs.open(tmp, "wb") as fh:
                    fill(fh)
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            buffer = io.BytesIO()
            fill(buffer)
            self.fs.pipe_file(target, buffer.getvalue())  # one PUT: the object appears whole
        _replaced(self.location(path))

    def _put_bytes(self, path: PurePosixPath, data: bytes) -> None:
        self._put(path, lambda fh: fh.write(data))

    def _create_exclusive(self, path: PurePosixPath, data: bytes) -> bool:
        """Create ``path`` with ``data`` unless it exists; True when this call created it."""
        try:
            with self.fs.open(str(path), "xb") as fh:
                fh.write(data)
            return True
        except FileExistsError:
            return False
        except (ValueError, NotImplementedError, TypeError):  # no exclusive create: check, write, read back
            if self.fs.exists(str(path)):
                return False
            self._put_bytes(path, data)
            return self.fs.cat_file(str(path)) == data

    def _ls(self, folder: PurePosixPath) -> list[tuple[str, str]]:
        """(name, "file" | "directory") of the entries of ``folder``, read fresh; [] if absent."""
        self.fs.invalidate_cache(str(folder))
        try:
            entries = self.fs.ls(str(folder), detail=True)
        except FileNotFoundError:
            return []
        return [(PurePosixPath(e["name"]).name, e.get("type", "file")) for e in entries
                if PurePosixPath(e["name"]) != folder]

    def _json(self, path: PurePosixPath) -> dict[str, Any]:
        try:
            data = json.loads(self.fs.cat_file(str(path)))
        except (OSError, ValueError):  # FileNotFoundError included
            return {}
        return data if isinstance(data, dict) else {}

    def _age(self, path: PurePosixPath, record: dict[str, Any]) -> float | None:
        """Seconds since the owner ``record`` was written (its ``at``), else since the newest file
        under ``path`` changed; None when the file system cannot tell."""
        if isinstance(record.get("at"), (int, float)):
            return time.time() - float(record["at"])
        try:
            infos = self.fs.find(str(path), detail=True).values()
        except FileNotFoundError:
            return None
        times = [t for t in map(_modified, infos) if t is not None]
        return time.time() - max(times) if times else None

    # ------------------------------------------------------------------ tables

    def _is_file(self, path: PurePosixPath) -> bool:  # type: ignore[override]
        return self.fs.isfile(str(path))

    def _read_bytes(self, path: PurePosixPath) -> bytes:  # type: ignore[override]
        return self.fs.cat_file(str(path))

    def tables(self) -> list[str]:
        return sorted(name[: -len(".parquet")] for name, kind in self._ls(self._home / "tables")
                      if kind == "file" and name.endswith(".parquet") and _NAME.match(name[: -len(".parquet")]))

    def write_table(self, name: str, df: pd.DataFrame) -> None:
        """Replace table ``name`` with ``df`` whole (see the module doc), with the per-date row
        sums :data:`~riskstrata.data.row_sums.DIGEST_BY` declares in the same file's footer."""
        self._put(self.table_path(name), lambda fh: write_parquet_to(df, fh, DIGEST_BY.get(name)))

    def _parquet_footer(self, path: PurePosixPath) -> pq.FileMetaData:  # type: ignore[override]
        with self.fs.open(str(path), "rb") as fh:
            return pq.read_metadata(fh)

    def table_stamp(self, name: str) -> tuple[Any, ...] | None:
        path = self.table_path(name)
        return fs_stamp(self.fs, str(path), self.location(path))

    def current_stamp(self, model: str) -> tuple[Any, ...] | None:
        path = self.model_dir(model) / "CURRENT"
        return fs_stamp(self.fs, str(path), self.location(path))

    # ------------------------------------------------------------------ small private files

    def create_file(self, data: bytes, *parts: str) -> None:
        """Create the file at ``parts`` unless it exists (never replaced). Exclusive where the file
        system offers it; a ``file://`` store makes it as a local store does (mode 0600)."""
        path = self.path(*parts)
        if self._on_disk:
            create_local_file(Path(str(path)), data)
            return
        self.fs.makedirs(str(path.parent), exist_ok=True)
        self._create_exclusive(path, data)

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """The store-wide lock ``name``: ``fcntl`` on ``file://`` (shared with local-path users of
        the same directory), a lock of this process only elsewhere (see the module doc)."""
        if self._on_disk:
            with local_lock(Path(str(self._home)) / "tables" / f".{name}.lock"):
                yield
            return
        with _PROCESS_LOCKS_GUARD:
            held = _PROCESS_LOCKS.setdefault((self.location(self._home), name), threading.Lock())
        with held:
            yield

    # ------------------------------------------------------------------ versions

    def models(self) -> list[str]:
        return sorted(name for name, kind in self._ls(self._home / "models") if kind == "directory" and _NAME.match(name))

    def begin_version(self, model: str, meta: dict[str, Any] | None = None) -> FsspecVersionWriter:
        folder = self.model_dir(model)
        self.fs.makedirs(str(folder), exist_ok=True)
        self._clean_stale_builds(folder)
        return FsspecVersionWriter(self, model, meta)

    def _clean_stale_builds(self, folder: PurePosixPath) -> None:
        """Remove killed builds (owner gone on this host, or older than ``STALE_BUILD_SECONDS``)
        and version directories a commit or a prune left without ``meta.json``."""
        now = time.time()
        for name, kind in self._ls(folder):
            path = folder / name
            if kind != "directory":
                continue
            if name.startswith(_TMP_PREFIX):
                owner = self._json(path / _OWNER_FILE)
                if _abandoned(owner, self._age(path, owner)):
                    self._rm_tree(path)
            elif _VERSION_NAME.match(name) and not self.fs.isfile(str(path / "meta.json")):
                committed = _version_time(name)
                if committed is not None and now - committed > STALE_BUILD_SECONDS:
                    self._rm_tree(path)

    def _rm_tree(self, path: PurePosixPath) -> None:
        try:
            self.fs.rm(str(path), recursive=True)
        except FileNotFoundError:  # removed by another process meanwhile
            pass

    def versions(self, model: str) -> list[str]:
        folder = self.model_dir(model)
        self.fs.invalidate_cache(str(folder))
        found = self.fs.glob(str(folder / "v*" / "meta.json"))
        return sorted(PurePosixPath(p).parent.name for p in found if PurePosixPath(p).parent.name.startswith("v"))

    def _version_files(self, model: str, version: str) -> list[PurePosixPath]:  # type: ignore[override]
        return sorted(PurePosixPath(p) for p in self.fs.glob(str(self.model_dir(model) / version / "part-*.parquet")))

    def read_arrays(self, model: str, name: str, version: str | None = None) -> dict[str, np.ndarray] | None:
        path = self.model_dir(model) / self._resolve_version(model, version) / f"{_check_name('arrays', name)}.npz"
        try:
            data = self.fs.cat_file(str(path))
        except FileNotFoundError:
            return None
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.location(path)} is unreadable: {exc}") from exc

    def set_current(self, model: str, version: str) -> None:
        self._resolve_version(model, version)
        self._put_bytes(self.model_dir(model) / "CURRENT", (version + "\n").encode("utf-8"))

    # ------------------------------------------------------------------ retention

    def lease(self, model: str, version: str) -> Lease:
        path = self.model_dir(model) / _LEASES / f"{version}@{uuid.uuid4().hex[:12]}"
        record = {"pid": os.getpid(), "host": socket.gethostname(), "version": version, "at": time.time()}
        try:
            self.fs.makedirs(str(path.parent), exist_ok=True)
            self._put_bytes(path, json.dumps(record).encode("utf-8"))
        except OSError as exc:
            log.warning("cannot lease %s %s in %s: %s", model, version, self.root, exc)
            return Lease(None)
        return Lease(path, self.fs)

    def leased(self, model: str) -> dict[str, int]:
        """Versions held by live processes → leases; leases of dead processes on this host are
        removed on the way (a lease is written whole, so an unreadable one is ignored)."""
        held: dict[str, int] = {}
        folder = self.model_dir(model) / _LEASES
        for name, kind in self._ls(folder):
            if kind != "file":
                continue
            owner = self._json(folder / name)
            if not owner:
                continue
            if not _owner_alive(owner):
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm(str(folder / name))
                continue
            version = name.rsplit("@", 1)[0]
            held[version] = held.get(version, 0) + 1
        return held

    def _remove_version(self, folder: PurePosixPath, version: str) -> bool:  # type: ignore[override]
        """:meth:`Store.prune`'s removal here: the version loses its ``meta.json`` first (it leaves
        every listing in one step), then its files; False when another process pruned it first."""
        try:
            self.fs.rm(str(folder / version / "meta.json"))
        except FileNotFoundError:
            return False
        self._rm_tree(folder / version)
        return True

    def _file_bytes(self, path: PurePosixPath) -> int:
        return int(self.fs.size(str(path)) or 0)

    def _dir_bytes(self, path: PurePosixPath) -> int:
        try:
            return int(self.fs.du(str(path)))
        except FileNotFoundError:
            return 0

    def _hidden_bytes(self, folder: PurePosixPath) -> int:
        return sum(self._dir_bytes(folder / name) for name, kind in self._ls(folder)
                   if kind == "directory" and name.startswith(_TMP_PREFIX))

    # ------------------------------------------------------------------ one API build per model

    def claim_build(self, model: str, job_id: str) -> str | None:
        """:meth:`Store.claim_build`, exclusive only where the file system can create exclusively
        (see the module doc)."""
        folder = self.model_dir(model)
        self.fs.makedirs(str(folder), exist_ok=True)
        path = folder / _CLAIM_FILE
        record = json.dumps({"job_id": job_id, "pid": os.getpid(), "host": socket.gethostname(),
                             "at": time.time()}).encode("utf-8")
        for _ in range(2):
            if self._create_exclusive(path, record):
                return None
            holder = self._json(path)
            if not self.fs.exists(str(path)):
                continue  # released meanwhile: try again
            age = self._age(path, holder)
            if _abandoned(holder, age):
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm(str(path))
                continue
            return str(holder.get("job_id") or "unknown")
        return "unknown"

    def release_build(self, model: str, job_id: str) -> None:
        path = self.model_dir(model) / _CLAIM_FILE
        if self._json(path).get("job_id") == job_id:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(str(path))


class FsspecVersionWriter(VersionWriter):
    """One build of a version on an fsspec store; :meth:`commit` publishes (see the module doc)."""

    store: FsspecStore

    def _start(self) -> None:
        self._aborted = False
        self._arrays: list[str] = []
        fs = self.store.fs
        fs.makedirs(str(self.tmp_dir), exist_ok=True)
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "at": time.time()}
        self.store._put_bytes(self.tmp_dir / _OWNER_FILE, json.dumps(owner).encode("utf-8"))

    def abort(self) -> None:
        self._aborted = True
        self.store._rm_tree(self.tmp_dir)

    def _check_open(self) -> None:
        if self.version is not None:
            raise StoreError(f"version {self.version} of {self.model!r} is already committed")
        if self._aborted:
            raise StoreError(f"build of {self.model!r} was aborted")

    def write_part(self, df: pd.DataFrame, name: str | None = None) -> PurePosixPath:
        self._check_open()
        path = _write_part(self.store.fs, self.tmp_dir / self._part_file(name), df)
        self._parts.append({"file": path.name, "rows": int(len(df))})
        return path

    def adopt_part(self, path: Path | PurePosixPath | str, rows: int | None = None) -> PurePosixPath:
        """:meth:`VersionWriter.adopt_part` here: a file outside the build is copied in (hard-linked
        on ``file://``, as on a local path; a server-side copy on object storage)."""
        self._check_open()
        fs = self.store.fs
        path = PurePosixPath(str(path))
        if not _PART_NAME.match(path.name) or not path.name.startswith("part-"):
            raise StoreError(f"not a part file: {path}")
        target = self.tmp_dir / path.name
        if path.parent != self.tmp_dir:
            if fs.exists(str(target)):
                raise StoreError(f"part {path.name} already written in this build")
            if not fs.isfile(str(path)):
                raise StoreError(f"not a part file: {path}")
            try:
                if not self.store._on_disk:
                    raise OSError("no hard links here")
                os.link(str(path), str(target))
            except OSError:
                fs.cp_file(str(path), str(target))
        elif not fs.isfile(str(target)):
            raise StoreError(f"not a part file: {path}")
        if any(p["file"] == target.name for p in self._parts):
            raise StoreError(f"part {target.name} already registered in this build")
        if rows is None:
            with fs.open(str(target), "rb") as fh:
                rows = pq.ParquetFile(fh).metadata.num_rows
        self._parts.append({"file": target.name, "rows": int(rows)})
        return target

    def write_arrays(self, name: str, arrays: dict[str, np.ndarray]) -> PurePosixPath:
        self._check_open()
        path = self.tmp_dir / f"{_check_name('arrays', name)}.npz"
        arrays = {key: np.asarray(a) for key, a in arrays.items()}
        if any(a.dtype.hasobject for a in arrays.values()):
            raise StoreError("write_arrays keeps numeric and fixed-width string arrays only (no pickled objects)")
        buffer = io.BytesIO()  # zip needs to seek; an object store's upload stream cannot
        np.savez(buffer, **arrays)
        with self.store.fs.open(str(path), "wb") as fh:
            fh.write(buffer.getvalue())
        if path.name not in self._arrays:
            self._arrays.append(path.name)
        return path

    def commit(self, meta: dict[str, Any] | None = None, *, make_current: bool = True, prune: bool = True) -> str:
        """Publish: move the build's files into the version directory, write ``meta.json`` there,
        then ``CURRENT`` (the atomic step; see the module doc). Same arguments as
        :meth:`VersionWriter.commit`."""
        if self.version is not None:
            return self.version
        self._check_open()
        version, info = self._version_info(meta)
        fs, folder = self.store.fs, self.store.model_dir(self.model)
        target = folder / version
        fs.makedirs(str(target), exist_ok=True)
        for file in [p["file"] for p in self._parts] + self._arrays:
            fs.mv(str(self.tmp_dir / file), str(target / file))
        self.store._put_bytes(target / "meta.json", json.dumps(info, indent=2, default=str).encode("utf-8"))
        if make_current:
            self.store._put_bytes(folder / "CURRENT", (version + "\n").encode("utf-8"))
        self.store._rm_tree(self.tmp_dir)  # the owner file (a crash before this: cleaned as a dead build)
        return self._pruned_after(version, prune)

