"""What a worker holds in memory: the store, the current published cascade version, and the
latest snapshot of each built factor model.

Workers are stateless beyond this cache: several processes can serve one store. Each request
costs one ``stat`` of the model's ``CURRENT`` pointer (a publish replaces that file, so its
inode changes); the version is reloaded, off the event loop, only when the pointer changed.
"""

from __future__ import annotations

import gc
import threading

from starlette.concurrency import run_in_threadpool

from riskstrata.api.published import Published, load_published
from riskstrata.data.store import Store, file_stamp
from riskstrata.errors import ModelNotBuilt
from riskstrata.services import factors
from riskstrata.services.cascade import MODEL
from riskstrata.services.factors import LatestFactorModel

_UNREAD = object()


class AppState:
    """The store plus the :class:`Published` bundle of its current cascade version."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._stamp: object = _UNREAD
        self._published: Published | None = None
        self._factor_models: dict[str, tuple[object, LatestFactorModel]] = {}  # spec → (pointer stamp, model)

    def _pointer_stamp(self, model: str = MODEL) -> object:
        return file_stamp(self.store.model_dir(model) / "CURRENT")

    def _cached(self) -> Published | None:
        """The bundle held, if the pointer has not moved since it was loaded."""
        published = self._published
        return published if published is not None and self._pointer_stamp() == self._stamp else None

    def factor_model(self, spec: str) -> LatestFactorModel:
        """The current version of a built factor model (Model B), in memory; ModelNotBuilt if none.

        Blocking when a (re)load is due; the factor routes run on worker threads.
        """
        pointer = factors.model_names(spec)["factors"]
        stamp = self._pointer_stamp(pointer)
        held = self._factor_models.get(spec)
        if held is not None and held[0] == stamp:
            return held[1]
        with self._lock:
            held = self._factor_models.get(spec)
            if held is not None and held[0] == stamp:
                return held[1]
            latest = factors.load_latest(self.store, spec)
            self._factor_models[spec] = (stamp, latest)
            return latest

    def current(self) -> Published:
        """The current version (loaded on first use and after each publish); ModelNotBuilt if none.

        Blocking: loading reads the store. Async code calls :meth:`current_async`.
        """
        published = self._cached()
        if published is not None:
            return published
        with self._lock:
            stamp = self._pointer_stamp()
            version = self.store.current_version(MODEL)
            if version is None:
                raise ModelNotBuilt(f"model {MODEL!r} has not been built yet in store {self.store.root}")
            if self._published is None or self._published.version != version:
                self._published = load_published(self.store, version)
                # The version's objects live until the next publish: move them out of the
                # collector's generations, so a full collection does not walk them again and
                # again (tens of ms of stalled requests each time). Unfreezing first lets the
                # previous version's reference cycles be collected.
                gc.unfreeze()
                gc.collect()
                gc.freeze()
            self._stamp = stamp
            return self._published

    async def current_async(self) -> Published:
        """:meth:`current` without blocking the event loop when a (re)load is due."""
        published = self._cached()
        return published if published is not None else await run_in_threadpool(self.current)
