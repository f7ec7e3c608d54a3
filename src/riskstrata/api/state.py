"""What a worker holds in memory: the store and the latest snapshot of each built model.

Workers are stateless beyond this cache: several processes can serve one store; each reloads
its snapshot when the model's published version changes.
"""

from __future__ import annotations

import threading

import pandas as pd

from riskstrata.data.store import Store
from riskstrata.services.cascade import MODEL, stored_snapshot


class AppState:
    """The store plus a cached latest Model A snapshot (tickers × fields), refreshed by version."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._version: str | None = None
        self._snapshot: pd.DataFrame | None = None
        self._meta: dict = {}

    def snapshot(self) -> pd.DataFrame:
        """Latest date's rows of the cascade model, indexed by upper-case ticker."""
        version = self.store.current_version(MODEL)
        if version != self._version or self._snapshot is None:
            with self._lock:
                if version != self._version or self._snapshot is None:
                    snap = stored_snapshot(self.store)
                    snap.index = snap.index.astype(str).str.upper()
                    self._snapshot, self._meta, self._version = snap, self.store.model_meta(MODEL), version
        return self._snapshot

    def meta(self) -> dict:
        self.snapshot()
        return self._meta

    @property
    def version(self) -> str | None:
        self.snapshot()
        return self._version
