"""What a worker holds in memory: the store, the current published cascade version, and the
latest snapshot of each built factor model.

Workers are stateless beyond this cache: several processes can serve one store. Each model is
held with the stamp of its ``CURRENT`` pointer (a publish replaces that file); a request costs
one ``stat`` of it, and the model is reloaded only when the pointer moved — off the event loop
for async callers.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

from riskstrata.api.published import Published, load_published
from riskstrata.data.store import Lease, Store
from riskstrata.errors import ModelNotBuilt
from riskstrata.services import factors
from riskstrata.services.cascade import MODEL
from riskstrata.services.factors import LatestFactorModel
from riskstrata.services.portfolio import FACTOR_SPEC, PortfolioContext

T = TypeVar("T")
_UNREAD = object()
# Per thread: whether a HeldModel load is running (the cascade's loads Model B's inside it).
_LOADING = threading.local()


class HeldModel(Generic[T]):
    """One model's current version as ``load(version)`` built it, reloaded when its pointer moves.

    ``version`` is the published version name; an unchanged version under a moved pointer (a
    rewrite of ``CURRENT`` with the same name) is not reloaded.
    """

    def __init__(self, store: Store, model: str, load: Callable[[str], T]) -> None:
        self.store, self.model, self._load = store, model, load
        self._lock = threading.Lock()
        self._stamp: object = _UNREAD
        self._held: tuple[str, T] | None = None  # (version, value)
        self._lease: Lease | None = None  # the held version's lease: the store's prune keeps it
        self._unbuilt: object = _UNREAD  # the pointer's stamp when it named no version (not built)

    def _pointer(self) -> object:
        return self.store.current_stamp(self.model)

    def cached(self) -> T | None:
        """The value held, if the pointer has not moved since it was loaded."""
        held = self._held
        return held[1] if held is not None and self._pointer() == self._stamp else None

    def get(self) -> T:
        """The current version's value (blocking when a load is due); ModelNotBuilt if none."""
        value = self.cached()
        if value is not None:
            return value
        if self._held is None and self._unbuilt is not _UNREAD and self._pointer() == self._unbuilt:
            self._not_built()  # still not built: known from one stat, no read of the store
        with self._lock:
            stamp = self._pointer()
            if self._held is not None and stamp == self._stamp:
                return self._held[1]
            version = self.store.current_version(self.model)
            if version is None:
                self._unbuilt = stamp
                self._not_built()
            if self._held is None or self._held[0] != version:
                lease = self.store.lease(self.model, version)  # before loading: from now on no prune removes it
                outermost = not getattr(_LOADING, "active", False)
                _LOADING.active = True
                try:
                    # Every read of the load on one DuckDB connection (a connection costs ~20 ms of
                    # CPU; a cascade load with Model B's snapshot reads a dozen times).
                    with self.store.one_connection():
                        self._held = (version, self._load(version))
                except BaseException:
                    lease.release()
                    raise
                finally:
                    if outermost:
                        _LOADING.active = False
                if self._lease is not None:
                    self._lease.release()
                self._lease = lease
                # The version's objects live until the next publish: move them out of the
                # collector's generations, so a full collection does not walk them again and
                # again (tens of ms of stalled requests each time). Unfreezing first lets the
                # previous version's reference cycles be collected. A load inside another (Model B's
                # inside the cascade's) leaves this to the outer one, whose pass covers both (~45 ms).
                if outermost:
                    gc.unfreeze()
                    gc.collect()
                    gc.freeze()
            self._stamp = stamp
            return self._held[1]

    def _not_built(self) -> None:
        raise ModelNotBuilt(f"model {self.model!r} has not been built yet in store {self.store.root}")

    async def get_async(self) -> T:
        """:meth:`get` without blocking the event loop when a (re)load is due."""
        value = self.cached()
        return value if value is not None else await run_in_threadpool(self.get)


class AppState:
    """The store plus the :class:`Published` bundle of its current cascade version and the
    latest snapshot of each factor model asked for."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cascade = HeldModel(store, MODEL, lambda version: load_published(store, version,
                                                                               self._portfolio_factor_model))
        self._factor_models: dict[str, HeldModel[LatestFactorModel]] = {}
        self._lock = threading.Lock()

    def _portfolio_factor_model(self) -> LatestFactorModel | None:
        """Model B as the portfolio analysis uses it (held, reloaded on publish); None when not built."""
        try:
            return self.factor_model(FACTOR_SPEC)
        except ModelNotBuilt:
            return None

    def current(self) -> Published:
        """The current cascade version (blocking when a load is due). Async code: :meth:`current_async`."""
        return self._cascade.get()

    async def current_async(self) -> Published:
        return await self._cascade.get_async()

    def portfolio(self) -> PortfolioContext | None:
        """The current version's :class:`PortfolioContext` (what the portfolio services take as
        ``held``); None when the cascade is not built (the services then say so themselves)."""
        try:
            return self.current().portfolio
        except ModelNotBuilt:
            return None

    def factor_model(self, spec: str) -> LatestFactorModel:
        """The current version of a built factor model (Model B), in memory; ModelNotBuilt if none.
        Blocking when a (re)load is due; the factor routes run on worker threads."""
        with self._lock:
            held = self._factor_models.get(spec)
            if held is None:
                held = self._factor_models[spec] = HeldModel(
                    self.store, factors.model_names(spec)["factors"], lambda version: factors.load_latest(self.store, spec, version))
        return held.get()
