"""One published version of the cascade as a worker holds it: loaded once, read by every request.

A request takes the current :class:`Published` once (``AppState.current``) and reads everything
from it — the last date's snapshot, the universe, the lineage and every ticker's latest metrics
row with its close and market cap — so all it sees belongs to one model version, even while a
build publishes the next. Loading costs one scan of the model's last date, one of the
assignments, one of the last closes and one of the security master; after that a request for
the latest numbers touches no file. The same load builds the version's
:class:`~riskstrata.services.portfolio.PortfolioContext` (the last date's model rows, the
matching universe, the ETF returns of the covariance window, the registry's sector ETFs), so the
portfolio routes for the latest date read nothing from the store either.

``rendered`` memoises response bodies of this version (e.g. a /metrics JSON body per ticker and
segment): a body depends only on the version and the request, so it is rendered once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from riskstrata.data.master import SecurityMaster
from riskstrata.data.store import Store
from riskstrata.errors import UnknownTicker
from riskstrata.services.cascade import MODEL, latest_metrics, stored_snapshot
from riskstrata.services.factors import LatestFactorModel
from riskstrata.services.portfolio import PortfolioContext, portfolio_context

# A ticker's latest metrics row (services.cascade.metrics shape), its adjusted close and market cap.
LatestRow = tuple[dict, float | None, float | None]


@dataclass(frozen=True)
class Universe:
    """The securities modelled on the latest date.

    rows: index ticker (sorted) → security_id, asset_type, name, sector (GICS), sector_etf,
    subsector_etf, shares_outstanding.
    """

    rows: pd.DataFrame
    market_etf: str

    @cached_property
    def stock_count(self) -> int:
        return int((self.rows["asset_type"] == "stock").sum())

    @cached_property
    def sector_etfs(self) -> list[str]:
        return sorted(set(self.rows["sector_etf"].dropna()))

    @cached_property
    def shares_by_id(self) -> dict[str, float]:
        """security_id → shares outstanding (NaN where not recorded)."""
        return dict(zip(self.rows["security_id"], self.rows["shares_outstanding"].astype(float)))

    def asset_type(self, ticker: str) -> str:
        return str(self.rows.at[ticker, "asset_type"]) if ticker in self.rows.index else "stock"


@dataclass(frozen=True)
class Published:
    """Everything a worker serves from one published cascade version.

    latest:   upper-case ticker → (metrics row, close, market cap) for every security on the
              model's last date.
    modelled: every ticker with a row on any date of the model (so an unknown one is refused
              without a trip to the store).
    portfolio: what the portfolio services read on the last date (pass it as their ``held``).
    """

    version: str
    meta: dict
    universe: Universe
    latest: dict[str, LatestRow]
    modelled: frozenset[str]
    rendered: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    portfolio: PortfolioContext | None = field(default=None, compare=False, repr=False)

    @property
    def end(self) -> str:
        """The model's last date, YYYY-MM-DD."""
        return str(self.meta["end"])

    @property
    def market_etf(self) -> str:
        return str(self.meta["params"]["market_etf"])

    @property
    def lstar_threshold(self) -> float:
        """The θ the build published ``lstar_level`` with."""
        return float(self.meta["params"]["lstar_threshold"])

    @cached_property
    def factor_set_id(self) -> str:
        params = self.meta["params"]
        factor_set = f"{params['market_etf']}_cascade_w{params['window']}"
        if params.get("halflife"):
            factor_set += f"_hl{params['halflife']:g}"
        return factor_set

    def check_modelled(self, ticker: str) -> None:
        """UnknownTicker unless ``ticker`` has a row somewhere in this model version."""
        if ticker not in self.modelled:
            raise UnknownTicker(f"unknown ticker {ticker!r}: no security trading as {ticker} is in this store's "
                                f"model (version {self.version})")

    def memo(self, key: Any, make: Callable[[], Any]) -> Any:
        """``make()`` once per key for this version (two racing threads may both make it: harmless)."""
        try:
            return self.rendered[key]
        except KeyError:
            value = self.rendered[key] = make()
            return value


def load_published(store: Store, version: str,
                   factor_model: Callable[[], LatestFactorModel | None] | None = None) -> Published:
    """Load ``version`` (the store's current one) into memory. ``factor_model``: returns Model B's
    snapshot as the worker holds it (None when not built), for the portfolio context.

    Its dozen reads share one DuckDB connection (each would otherwise open its own: ~20 ms of CPU)."""
    with store.one_connection():
        return _read_published(store, version, factor_model)


def _read_published(store: Store, version: str,
                    factor_model: Callable[[], LatestFactorModel | None] | None) -> Published:
    meta = store.model_meta(MODEL, version)
    snap = stored_snapshot(store)
    held = portfolio_context(store, version, snap.copy(), factor_model)  # before the tickers are upper-cased
    if factor_model is not None:
        factor_model()  # Model B's snapshot is loaded with the version, not by the first portfolio request
    snap.index = snap.index.astype(str).str.upper()
    universe = load_universe(store, snap, meta)
    rows = latest_metrics(store, snap)
    closes = last_closes(store, sorted({r["security_id"] for r in rows.values()}), meta["end"])
    latest = {t: (row, *price_and_cap(row["security_id"], closes, universe.shares_by_id)) for t, row in rows.items()}
    modelled = store.query(f"SELECT DISTINCT upper(ticker) AS ticker FROM model_{MODEL}")["ticker"]
    return Published(version=version, meta=meta, universe=universe, latest=latest,
                     modelled=frozenset(modelled.astype(str)), portfolio=held)


def load_universe(store: Store, snap: pd.DataFrame, meta: dict) -> Universe:
    """The snapshot's securities with the names, asset types and GICS sectors of the master."""
    day = pd.Timestamp(meta["end"])
    records = SecurityMaster.from_store(store).snapshot(day).set_index("security_id")
    ids = snap["security_id"].astype(str)
    rows = pd.DataFrame({
        "security_id": ids.to_numpy(),
        "asset_type": ids.map(records["asset_type"]).fillna("stock").to_numpy(),
        "name": ids.map(records["name"].where(records["name"].astype(str).str.lower() != "nan")).to_numpy(),
        "sector": ids.map(_gics_sectors(store, day)).to_numpy(),
        "sector_etf": snap["sector_etf"].astype(object).where(snap["sector_etf"].notna(), None).to_numpy(),
        "subsector_etf": snap["subsector_etf"].astype(object).where(snap["subsector_etf"].notna(), None).to_numpy(),
        "shares_outstanding": ids.map(records["shares_outstanding"]).to_numpy(dtype=float),
    }, index=pd.Index(snap.index.astype(str), name="ticker")).sort_index()
    return Universe(rows, str(meta["params"]["market_etf"]))


def _gics_sectors(store: Store, day: pd.Timestamp) -> pd.Series:
    """security_id → GICS sector valid on ``day`` (empty where no classifications were ingested)."""
    if not store.has_table("classifications"):
        return pd.Series(dtype=object)
    cls = store.read_table("classifications", columns=["security_id", "valid_from", "valid_to", "gics_sector"])
    live = (cls["valid_from"].isna() | (cls["valid_from"] <= day)) & (cls["valid_to"].isna() | (cls["valid_to"] >= day))
    cls = cls[live & cls["gics_sector"].notna() & (cls["gics_sector"].astype(str).str.lower() != "nan")]
    return cls.sort_values("valid_from").groupby("security_id")["gics_sector"].last()


def last_closes(store: Store, security_ids: list[str], day: object) -> dict[str, float]:
    """security_id → the adjusted close on or before ``day`` (absent where there is none)."""
    if not security_ids:
        return {}
    marks = ", ".join("?" for _ in security_ids)
    rows = store.query(f"SELECT security_id, arg_max(adj_close, date) AS close FROM prices WHERE date <= ? "
                       f"AND adj_close IS NOT NULL AND security_id IN ({marks}) GROUP BY security_id",
                       [pd.Timestamp(day).to_pydatetime(), *security_ids])
    return dict(zip(rows["security_id"].astype(str), rows["close"].astype(float)))


def price_and_cap(security_id: str, closes: dict[str, float], shares: dict[str, float]
                  ) -> tuple[float | None, float | None]:
    """(close, market cap = shares × close); the cap is None where shares are not recorded
    (the synthetic market, price-only stores)."""
    c = closes.get(security_id)
    s = shares.get(security_id)
    cap = c * float(s) if c is not None and s is not None and np.isfinite(s) and s > 0 else None
    return c, cap
