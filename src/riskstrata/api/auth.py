"""API keys: created once, stored only as keyed hashes, revocable, checked in constant time.

A key looks like ``rs_<id>_<secret>``: ``id`` (8 hex digits) finds the key's row without
trying every hash; ``secret`` (32 random bytes, URL-safe base64: 256 bits) is what makes it a
secret. The store keeps the table ``api_keys`` with one row per key ever created::

    name, key_id, salt, hash, kdf, created_at, revoked_at

``hash`` is HMAC-SHA-256(store secret, key) (``kdf`` = ``hmac-sha256``), where the store secret
is 32 random bytes in ``<store>/secrets/api_keys.hmac`` (mode 0600), made by the first
``keys create``. A key is high-entropy, so a slow password hash buys nothing against offline
guessing and costs the *server* ~100 ms per attempt, which an attacker can spend for free
(issue 12): checking a key is now one HMAC and one constant-time compare, about a microsecond,
the same whether its id exists or not.

Keys made by older versions are scrypt hashes (``kdf`` = ``scrypt:n=16384,r=8,p=1``). They keep
working: the first time one verifies, its row is rewritten as an HMAC row (the key is in hand
only then), so each old key costs scrypt once. Until then, scrypt runs one at a time per worker,
off the event loop, behind the failed-authentication limit.

No FastAPI here: the CLI manages keys with these functions and the server checks them through
:class:`KeyRing` (see ``riskstrata.api.deps``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from riskstrata.data.store import Store
from riskstrata.errors import DataValidationError, StoreError

log = logging.getLogger("riskstrata.api")

TABLE = "api_keys"
COLUMNS = ["name", "key_id", "salt", "hash", "kdf", "created_at", "revoked_at"]
PREFIX = "rs"
KDF = "hmac-sha256"
# Older stores: scrypt at n=2^14, r=8 (~16 MiB, tens of ms). Verified once per key, then upgraded.
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
LEGACY_KDF = "scrypt:n=16384,r=8,p=1"
SECRET_FILE = Path("secrets") / "api_keys.hmac"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_KEY = re.compile(r"^rs_([0-9a-f]{8})_([A-Za-z0-9_-]{20,})$")
_GOOD_CACHE = 4096  # verified keys remembered per worker (by digest, never the key)
_UNREAD = object()
LEGACY = object()  # KeyRing.check's answer when only scrypt can decide


def _scrypt(key: str, salt: bytes) -> bytes:
    return hashlib.scrypt(key.encode("utf-8"), salt=salt, dklen=32, **SCRYPT)


def _mac(secret: bytes, key: str) -> bytes:
    return hmac.new(secret, key.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise DataValidationError(
            f"invalid key name {name!r}: 1-64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit")
    return name


def store_secret(store: Store, create: bool = False) -> bytes | None:
    """The store's HMAC secret (32 bytes); made (mode 0600, atomically) when ``create`` and absent."""
    parts = SECRET_FILE.parts
    path = store.location(store.path(*parts))
    try:
        secret = store.read_file(*parts)
    except FileNotFoundError:
        if not create:
            return None
        store.create_file(secrets.token_bytes(32), *parts)  # never replaces a secret another process made first
        secret = store.read_file(*parts)
    except OSError as exc:
        raise StoreError(f"cannot read the API key secret {path}: {exc.strerror} "
                         "(the server must run as a user who can read it)") from None
    if len(secret) != 32:
        raise StoreError(f"the API key secret {path} is damaged ({len(secret)} bytes, expected 32)")
    return secret


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
    with store.lock(TABLE):  # tables/.api_keys.lock on a local store (see Store.lock)
        yield


def _write(store: Store, df: pd.DataFrame) -> None:
    # Readable like the rest of the store: the server may run as another user, and an HMAC of
    # 256 random bits under a secret kept elsewhere gives nobody a key.
    store.write_table(TABLE, df[COLUMNS].astype({c: "string" for c in COLUMNS}))


def create_key(store: Store, name: str, replace: bool = False) -> str:
    """Create a key called ``name`` and return it: the only time it exists in clear.

    An active key of the same name is an error, unless ``replace`` (then it is revoked first).
    """
    _check_name(name)
    secret = store_secret(store, create=True)
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
        row = {"name": name, "key_id": key_id, "salt": "", "hash": _mac(secret, key).hex(), "kdf": KDF,
               "created_at": _now(), "revoked_at": None}
        _write(store, pd.concat([df, pd.DataFrame([row], columns=COLUMNS)], ignore_index=True))
    return key


def _upgrade(store: Store, key_id: str, key: str) -> None:
    """Rewrite the scrypt row of a key that just verified as an HMAC row (same id, name, dates)."""
    secret = store_secret(store, create=True)
    with _locked(store):
        df = _read(store)
        row = (df["key_id"] == key_id) & (df["kdf"] == LEGACY_KDF) & df["revoked_at"].isna()
        if row.any():
            df.loc[row, ["salt", "hash", "kdf"]] = ["", _mac(secret, key).hex(), KDF]
            _write(store, df)


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
    with the CLI stops working at once in every worker. :meth:`check` costs one HMAC and one
    constant-time compare whatever the key (unknown id, wrong secret, junk: the same work
    against a dummy digest); a key that verified is remembered by its digest until the table
    changes. Only an old scrypt row needs more (:meth:`verify_legacy`).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._scrypt_lock = threading.Lock()  # one scrypt at a time per worker: 16 MiB and ~100 ms each
        self._stamp: object = _UNREAD
        self._secret: bytes = b""
        self._rows: dict[str, tuple[str, bytes]] = {}  # key_id → (name, HMAC digest)
        self._legacy: dict[str, list[tuple[str, bytes, bytes]]] = {}  # key_id → [(name, salt, scrypt hash)]
        self._good: dict[bytes, str] = {}
        self._dummy = secrets.token_bytes(32)

    def _refresh(self) -> None:
        stamp = self.store.table_stamp(TABLE)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            rows: dict[str, tuple[str, bytes]] = {}
            legacy: dict[str, list[tuple[str, bytes, bytes]]] = {}
            secret = self._secret
            if stamp is not None:
                table = _read(self.store)
                for r in table.itertuples(index=False):
                    if r.revoked_at is not None:
                        continue
                    if r.kdf == KDF:
                        rows[r.key_id] = (r.name, bytes.fromhex(r.hash))
                    elif r.kdf == LEGACY_KDF:
                        legacy.setdefault(r.key_id, []).append((r.name, bytes.fromhex(r.salt), bytes.fromhex(r.hash)))
                secret = store_secret(self.store, create=False) or b"" if rows else secret
            self._secret = secret or secrets.token_bytes(32)  # no HMAC rows: any secret verifies nothing
            self._rows, self._legacy, self._good, self._stamp = rows, legacy, {}, stamp

    def has_keys(self) -> bool:
        """Whether any active key exists (the server warns at start when none does)."""
        self._refresh()
        return bool(self._rows or self._legacy)

    def check(self, key: str) -> str | None | object:
        """The name of the active key ``key``, ``None`` when it is not one, or :data:`LEGACY`
        when the key's id has an old scrypt row (then call :meth:`verify_legacy`, off the event
        loop). Constant work for every key that is not LEGACY."""
        self._refresh()
        key = key or ""
        digest = _mac(self._secret, key)
        name = self._good.get(digest)
        if name is not None:
            return name
        match = _KEY.match(key)
        key_id = match.group(1) if match else ""
        row = self._rows.get(key_id)
        # Always one compare, against the row's digest or a dummy: an unknown id costs the same.
        if hmac.compare_digest(digest, row[1] if row is not None else self._dummy) and row is not None:
            if len(self._good) >= _GOOD_CACHE:
                self._good.clear()
            self._good[digest] = row[0]
            return row[0]
        return LEGACY if key_id in self._legacy else None

    def verify_legacy(self, key: str) -> str | None:
        """Check ``key`` against an old scrypt row (blocking, serialised); on success the row is
        rewritten as an HMAC row so the key never costs scrypt again."""
        match = _KEY.match(key or "")
        if not match:
            return None
        with self._scrypt_lock:
            self._refresh()
            settled = self.check(key)  # a request that waited here: another one may have verified it
            if settled is not LEGACY:
                return settled  # type: ignore[return-value]
            candidates = self._legacy.get(match.group(1), ())
            name = None
            for candidate, salt, stored in candidates:
                if hmac.compare_digest(_scrypt(key, salt), stored):
                    name = candidate
            if name is not None:
                try:
                    _upgrade(self.store, match.group(1), key)
                except (OSError, StoreError) as exc:  # a read-only store: keep serving, upgrade later
                    log.warning("could not upgrade API key %s to HMAC: %s", match.group(1), type(exc).__name__)
                    self._legacy.pop(match.group(1), None)
                    self._rows[match.group(1)] = (name, _mac(self._secret, key))
                self._refresh()
        return name

    def verify(self, key: str) -> str | None:
        """The name of the active key ``key``, or ``None`` (blocking: may run scrypt once for an
        old key). For code off the event loop; async callers use :func:`riskstrata.api.deps.authenticate_key`."""
        name = self.check(key)
        return self.verify_legacy(key) if name is LEGACY else name  # type: ignore[return-value]
