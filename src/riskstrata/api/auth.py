"""API keys: created once, stored only as salted hashes, revocable, checked in constant time.

A key looks like ``rs_<id>_<secret>``: ``id`` (8 hex digits) finds the key's row without
trying every hash; ``secret`` (32 random bytes, URL-safe base64) is what makes it a secret. The
store keeps the table ``api_keys`` with one row per key ever created::

    name, key_id, salt, hash, kdf, created_at, revoked_at

``hash`` is scrypt(key, salt); the key itself is printed once by ``riskstrata keys create`` and
is never written anywhere. No FastAPI here: the CLI manages keys with these functions and the
server checks them through :class:`KeyRing` (see ``riskstrata.api.deps.require_key``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd

from riskstrata.data.store import Store, file_stamp
from riskstrata.errors import DataValidationError

TABLE = "api_keys"
COLUMNS = ["name", "key_id", "salt", "hash", "kdf", "created_at", "revoked_at"]
PREFIX = "rs"
# scrypt at n=2^14, r=8 costs ~16 MiB and tens of milliseconds: trivial once per key per worker
# (verified keys are cached), ruinous for anyone trying hashes offline.
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
KDF = "scrypt:n=16384,r=8,p=1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_KEY = re.compile(r"^rs_([0-9a-f]{8})_([A-Za-z0-9_-]{20,})$")
_BAD_CACHE = 4096  # wrong keys remembered per worker
_UNREAD = object()


def _hash(key: str, salt: bytes) -> bytes:
    return hashlib.scrypt(key.encode("utf-8"), salt=salt, dklen=32, **SCRYPT)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise DataValidationError(
            f"invalid key name {name!r}: 1-64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit")
    return name


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: never the key, never its hash."""

    name: str
    key_id: str
    created_at: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _read(store: Store) -> pd.DataFrame:
    if not store.has_table(TABLE):
        return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    df = store.read_table(TABLE)
    for c in COLUMNS:  # a table from an older version may lack a column
        if c not in df:
            df[c] = None
    df = df[COLUMNS].astype(object)
    return df.where(df.notna(), None)


@contextlib.contextmanager
def _locked(store: Store) -> Iterator[None]:
    """Serialise read-modify-write of the key table between processes (POSIX advisory lock).

    The table itself is replaced atomically by the store; the lock only stops two concurrent
    ``keys create`` from each dropping the other's row.
    """
    path = store.root / "tables" / f".{TABLE}.lock"
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


def _write(store: Store, df: pd.DataFrame) -> None:
    # Readable like the rest of the store: the server may run as another user, and a salted
    # scrypt hash of 256 random bits gives nobody a key.
    store.write_table(TABLE, df[COLUMNS].astype({c: "string" for c in COLUMNS}))


def create_key(store: Store, name: str, replace: bool = False) -> str:
    """Create a key called ``name`` and return it: the only time it exists in clear.

    An active key of the same name is an error, unless ``replace`` (then it is revoked first).
    """
    _check_name(name)
    with _locked(store):
        df = _read(store)
        active = (df["name"] == name) & df["revoked_at"].isna()
        if active.any():
            if not replace:
                raise DataValidationError(f"an active key named {name!r} exists: revoke it first "
                                          f"(riskstrata keys revoke {name}) or use --replace")
            df.loc[active, "revoked_at"] = _now()
        used = set(df["key_id"])
        key_id = secrets.token_hex(4)
        while key_id in used:
            key_id = secrets.token_hex(4)
        key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        salt = secrets.token_bytes(16)
        row = {"name": name, "key_id": key_id, "salt": salt.hex(), "hash": _hash(key, salt).hex(), "kdf": KDF,
               "created_at": _now(), "revoked_at": None}
        _write(store, pd.concat([df, pd.DataFrame([row], columns=COLUMNS)], ignore_index=True))
    return key


def revoke_key(store: Store, name: str) -> int:
    """Revoke every active key called ``name``; returns how many. Unknown name → error."""
    _check_name(name)
    with _locked(store):
        df = _read(store)
        mine = df["name"] == name
        if not mine.any():
            raise DataValidationError(f"no key named {name!r}")
        active = mine & df["revoked_at"].isna()
        if active.any():
            df.loc[active, "revoked_at"] = _now()
            _write(store, df)
        return int(active.sum())


def list_keys(store: Store) -> list[KeyInfo]:
    """Every key ever created (active and revoked), oldest first."""
    df = _read(store)
    return [KeyInfo(r.name, r.key_id, r.created_at, r.revoked_at) for r in df.itertuples(index=False)]


class KeyRing:
    """The store's key table as one worker sees it.

    The table is re-read whenever its file changes (one ``stat`` per request), so a key revoked
    with the CLI stops working at once in every worker. A key that verified is remembered by its
    SHA-256 (not the key) until the table changes, so scrypt runs once per key per worker; the
    last few thousand wrong keys are remembered too, so repeating one costs nothing.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._stamp: object = _UNREAD
        self._rows: dict[str, list[tuple[str, bytes, bytes]]] = {}
        self._good: dict[bytes, str] = {}
        self._bad: OrderedDict[bytes, None] = OrderedDict()

    def _refresh(self) -> None:
        stamp = file_stamp(self.store.table_path(TABLE))
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            rows: dict[str, list[tuple[str, bytes, bytes]]] = {}
            if stamp is not None:
                for r in _read(self.store).itertuples(index=False):
                    if r.revoked_at is None and r.kdf == KDF:
                        rows.setdefault(r.key_id, []).append((r.name, bytes.fromhex(r.salt), bytes.fromhex(r.hash)))
            self._rows, self._good, self._bad, self._stamp = rows, {}, OrderedDict(), stamp

    def has_keys(self) -> bool:
        """Whether any active key exists (the server warns at start when none does)."""
        self._refresh()
        return bool(self._rows)

    def recall(self, key: str) -> tuple[bool, str | None]:
        """(True, name or None) when ``key`` is decided without scrypt — a malformed key, an
        unknown key id, or a key seen since the table last changed — else (False, None): call
        :meth:`verify`. Lets the server keep scrypt off its event loop."""
        self._refresh()
        match = _KEY.match(key or "")
        if not match or match.group(1) not in self._rows:
            return True, None
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        if digest in self._good:
            return True, self._good[digest]
        return (True, None) if digest in self._bad else (False, None)

    def verify(self, key: str) -> str | None:
        """The name of the active key ``key``, or ``None`` for anything else."""
        self._refresh()
        match = _KEY.match(key or "")
        if not match or match.group(1) not in self._rows:
            return None
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        good, bad = self._good, self._bad
        if digest in good:
            return good[digest]
        if digest in bad:
            return None
        name = None
        for candidate, salt, stored in self._rows.get(match.group(1), ()):
            if hmac.compare_digest(_hash(key, salt), stored):
                name = candidate
        if name is None:
            bad[digest] = None
            while len(bad) > _BAD_CACHE:
                bad.popitem(last=False)
        else:
            good[digest] = name
        return name
