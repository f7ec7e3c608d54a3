"""Model B over the store: gather panels, build a spec, and answer questions from the build.

A build writes one versioned model per spec, ``factors_<SPEC>``, whose parts are the long
table of exposures (one row per date and security, one column per factor); its meta.json
names the companion versions of ``factor_returns_<SPEC>`` (factor returns, t-stats and daily
diagnostics), ``factor_cov_<SPEC>`` (the adjusted covariance on each date, long) and
``specific_risk_<SPEC>`` and ``factor_validation_<SPEC>`` (bias statistics etc., eigen
adjustment on and off, computed at build time). The factor-returns part also carries each spec
factor's per-date coverage (``coverage_<F>``); meta.json lists every spec factor's status
(estimated or not, with the reason and its gaps). Readers pin those versions, so a half-finished rebuild is never mixed
with a finished one. Asking for an unbuilt spec builds it first (auto-build).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from riskstrata.data.fundamentals import (PRICE_DATE_TOLERANCE_DAYS, CloseHistory, SnapshotsInForce, StoredFundamentals,
                                         fundamentals_input_columns, fundamentals_panel, fundamentals_panel_after,
                                         snapshots_in_force)
from riskstrata.data.master import SecurityMaster
from riskstrata.data.store import Store
from riskstrata.errors import DataValidationError, ModelNotBuilt, StoreError, UnknownTicker
from riskstrata.factors import summary as S
from riskstrata.factors.blocks import BlockArray
from riskstrata.factors.covariance import FactorCovariance
from riskstrata.factors.regression import RegressionResult
from riskstrata.factors.model import (DEFAULT_BLOCK_DATES, BlockSource, FactorInputs, FactorModelResult, Tick,
                                      block_bounds, factor_groups, fit_factor_model, one_blas_thread)
from riskstrata.factors.spec import ModelSpec, load_spec, packaged_specs
from riskstrata.factors.validation import ValidationReport, ValidationState, validation_reports_with_state
from riskstrata.services.factors_state import (PANELS_ARRAYS, RETURNS_ARRAYS, STATE_ARRAYS, PublishedTail,
                                               TrailingPanels, UpdateState, input_digest, returns_arrays)

Progress = Callable[[str], None]
SHARES_MAX_AGE_DAYS = 3000  # ~8 years; other fundamentals go stale after the panel default (400 days)


def model_names(spec: str) -> dict[str, str]:
    return {part: f"{part}_{spec}" for part in ("factors", "factor_returns", "factor_cov", "specific_risk",
                                                  "factor_validation")}


def list_models(store: Store) -> pd.DataFrame:
    """Packaged specs and whether each is built in the store (version, date range).

    ``factors`` is the spec's count; for a built model ``estimated`` is how many of them the
    build estimated on at least one date, ``not_estimated`` lists the others with the reason
    ("LEVERAGE: the fundamentals have no debt field (total_debt)") and ``coverage`` gives
    every spec factor's share of the build's dates on which it was estimated.
    """
    rows = []
    for name in sorted(packaged_specs()):
        spec = load_spec(name)
        version = store.current_version(model_names(name)["factors"])
        meta = store.model_meta(model_names(name)["factors"]) if version else {}
        status = meta.get("status") or []
        rows.append({"model": name, "factors": len(spec.factors),
                     "estimated": (sum(s["estimated"] for s in status) if status else len(meta["factors"]))
                     if version else None,
                     "not_estimated": [f"{s['factor']}: {s['reason']}" for s in status if not s["estimated"]],
                     "coverage": {s["factor"]: round(s["dates_estimated"] / s["dates"], 4) if s["dates"] else 0.0
                                  for s in status},
                     "description": spec.description,
                     "built": version is not None, "version": version, "start": meta.get("start"), "end": meta.get("end")})
    return pd.DataFrame(rows)


# Fields read for Model B: rolled by the adjusted-close relative (levels with the long age limit:
# the real snapshots skip 2018-02 … 2024-10 and a name without a cap leaves the model), rolled
# ratios, and fields used as they are (growth, margins, leverage).
ROLLED_LEVEL_FIELDS = ("market_cap", "price")
ROLLED_RATIO_FIELDS = ("book_to_price", "earnings_yield", "dividend_yield")
PLAIN_FIELDS = ("eps", "ebitda", "sales", "total_debt")  # B/P and E/P come rolled: no per-share fallbacks


@dataclass
class PointInTimePanels:
    """Model B's point-in-time panels (T × N) from fundamentals snapshots and adjusted closes.

    market_cap: USD, the issuer's whole cap on each class; price: raw USD/share (price floors);
    shares: share counts (turnover); fundamentals: the descriptors' inputs, ratios rolled.
    """

    market_cap: pd.DataFrame
    price: pd.DataFrame
    shares: pd.DataFrame
    fundamentals: dict[str, pd.DataFrame]


def point_in_time_panels(source: object, adj_close: pd.DataFrame, dates: pd.DatetimeIndex, names: list,
                         raw_close: pd.DataFrame | None = None) -> PointInTimePanels:
    """Caps, raw prices and value ratios without look-ahead (docs/model_b.md, "Prices, caps and
    share classes").

    source: a store or a fundamentals frame (:func:`~riskstrata.data.fundamentals.fundamentals_panel`);
    adj_close: (T', N) adjusted closes, columns ``names``, reaching back before ``dates`` to the
    snapshots in force (used only as price relatives); raw_close: optional (T, N) raw closes.

    Between snapshots: ``cap_t = cap_snap × adj_t / adj_snap``, ``price_t = price_snap × adj_t /
    adj_snap``, and B/P, E/P, dividend yield ``= ratio_snap × adj_snap / adj_t`` (each snapshot's
    own ratio). A snapshot counts from its availability date; before a name's first snapshot its
    cap and price are NaN (the name is out of the model, never given an invented cap). Which input
    wins: a user's raw close is the price for floors, and raw close × an explicitly given share
    count is the cap where both exist (:func:`~riskstrata.factors.descriptors.market_cap_panel`);
    elsewhere the rolled snapshot cap; within a snapshot its market_cap wins over
    price × shares_outstanding.
    """
    from riskstrata.factors.descriptors import market_cap_panel

    if isinstance(source, Store):  # read once for the dozen panels below
        source = StoredFundamentals.read(source)
    dates = pd.DatetimeIndex(dates)
    made = _fundamentals_panels(source, adj_close, dates, names)
    fund = {f: made[f] for f in PANEL_FIELDS}
    raw = raw_close.reindex(index=dates, columns=names) if raw_close is not None else None
    # Raw close × shares only with share counts the data state (never cap / price of an older
    # snapshot: across a split that count is on the old basis while the raw close is not).
    explicit = _panel(source, "shares_outstanding", dates, names, derive=False, max_age_days=SHARES_MAX_AGE_DAYS) \
        if raw is not None else None
    cap = market_cap_panel(raw, explicit, fund["market_cap"])
    price = fund["price"] if raw is None else raw.where(raw > 0, fund["price"])
    return PointInTimePanels(cap, price, made["shares_outstanding"], fund)


PANEL_FIELDS = (*ROLLED_LEVEL_FIELDS, *ROLLED_RATIO_FIELDS, *PLAIN_FIELDS)  # the descriptors' fundamentals panels


def _panel(source: object, field: str, dates: pd.DatetimeIndex, names: list, **kw: object) -> pd.DataFrame:
    derive = bool(kw.get("derive", True))
    if isinstance(source, pd.DataFrame) and not fundamentals_input_columns(field, derive) & set(source.columns):
        return pd.DataFrame(np.nan, index=dates, columns=names)  # the frame has no such data
    return fundamentals_panel(source, field, dates, names, **kw)


def _asks() -> dict[str, dict]:
    """Field → the :func:`fundamentals_panel` options of Model B's panel of it (without the closes)."""
    long_age = {"max_age_days": SHARES_MAX_AGE_DAYS}
    asks = {f: dict(long_age) for f in ROLLED_LEVEL_FIELDS}
    asks.update({f: {} for f in (*ROLLED_RATIO_FIELDS, *PLAIN_FIELDS)})
    # Share counts move slowly: carried as long as caps are (turnover, and caps from raw closes).
    asks["shares_outstanding"] = dict(long_age)
    return asks


ROLLED = (*ROLLED_LEVEL_FIELDS, *ROLLED_RATIO_FIELDS)  # the panels rolled by the adjusted-close relative


def _fundamentals_panels(source: object, adj_close: pd.DataFrame, dates: pd.DatetimeIndex,
                         names: list) -> dict[str, pd.DataFrame]:
    """The (T × N) panels of :data:`PANEL_FIELDS` and ``shares_outstanding`` (:func:`point_in_time_panels`).

    Each date's row, and each name's column, depends only on that date and name (the snapshots
    in force, the adjusted closes of the name): a panel over some of the names is those columns
    of the panel over all of them, bit for bit (:func:`extend_point_in_time_panels`)."""
    closes = CloseHistory.of(adj_close.reindex(columns=names))  # the forward-filled closes, once for the rolled panels
    asks = {f: {**kw, **({"adj_close": closes} if f in ROLLED else {})} for f, kw in _asks().items()}
    # The panels are independent: two at a time (their forward fills and pivots release the GIL).
    with ThreadPoolExecutor(max_workers=2) as pool:
        made = {f: pool.submit(_panel, source, f, dates, names, **kw) for f, kw in asks.items()}
        return {f: made[f].result() for f in asks}


def trailing_panels(pit: PointInTimePanels, adj_close: pd.DataFrame, first: int, source: StoredFundamentals,
                    in_force: dict[str, SnapshotsInForce] | None = None) -> TrailingPanels | None:
    """The :class:`TrailingPanels` of loaded panels from row ``first`` on: the rows, closes and
    snapshots in force a daily update after their last date reads (``in_force``: those of the
    last date when known, else found in ``source``). None when a column is not a security id
    (the snapshots in force are kept by id)."""
    dates = pit.price.index[first:]
    names = pit.price.columns
    try:
        if in_force is None:
            in_force = {f: snapshots_in_force(source, f, dates[-1], names, **kw) for f, kw in _asks().items()}
    except DataValidationError:
        return None
    made = {**{f: pit.fundamentals[f] for f in PANEL_FIELDS}, "shares_outstanding": pit.shares}
    day = pd.DatetimeIndex(adj_close.index)
    near = _near_days(snapshot_price_days(source.table, dates[0]))
    keep = ((day >= dates[0]) & (day <= dates[-1])) | day.isin(near)
    return TrailingPanels(dates, names, {f: np.array(v.to_numpy(dtype="float64")[first:]) for f, v in made.items()},
                          day[keep], adj_close.reindex(columns=names).to_numpy(dtype="float64")[keep], in_force)


def extend_point_in_time_panels(known: TrailingPanels, source: StoredFundamentals, adj_close: pd.DataFrame,
                                dates: pd.DatetimeIndex, names: list
                                ) -> tuple[PointInTimePanels, dict[str, SnapshotsInForce]]:
    """:func:`point_in_time_panels` (no raw closes) from the panels a version kept, and the
    snapshots in force on the last date. Computed: the rows of ``dates`` after ``known``'s, from
    the snapshots in force on its last date and the rows available since
    (:func:`~riskstrata.data.fundamentals.fundamentals_panel_after`); on ``known``'s rows, the
    names it lacks or whose adjusted closes (on the days both read) are not the kept ones — a
    vendor's re-based or corrected series. The same panels bit for bit when ``known`` was made
    from the same fundamentals rows through its last date (the update's input fingerprint
    checks that). ``dates`` must begin with ``known.dates`` and go on after them; ``names``
    must be security ids (DataValidationError otherwise: compute them whole).
    """
    from riskstrata.factors.descriptors import market_cap_panel

    dates, names = pd.DatetimeIndex(dates), pd.Index(names)
    W = len(known.dates)
    if not dates[:W].equals(known.dates) or len(dates) == W:
        raise DataValidationError("the kept panels are not the first rows of the update's")
    if not set(_asks()) <= set(known.panels) & set(known.in_force):
        raise DataValidationError("the kept panels lack fields the update computes")
    at = known.names.get_indexer(names)
    as_kept = bool((at == np.arange(len(at))).all()) and len(at) == len(known.names)  # the kept columns, in order
    # Today's closes against the kept ones, on the days both read: a name whose closes moved is recomputed.
    day = pd.DatetimeIndex(adj_close.index)
    both = day.intersection(known.close_dates)
    fresh = adj_close.reindex(index=both, columns=names).to_numpy(dtype="float64")
    kept = np.full_like(fresh, np.nan)
    kept[:, at >= 0] = known.closes[known.close_dates.get_indexer(both)][:, at[at >= 0]]
    same = ((fresh == kept) | (np.isnan(fresh) & np.isnan(kept))).all(axis=0)
    # A name without a close on any of the kept rows (no longer traded) has no rolled value there
    # either way (each is today's close over the snapshot's): its other closes do not matter.
    rows = (both >= known.dates[0]) & (both <= known.dates[-1])
    same |= np.isnan(fresh[rows]).all(axis=0) & np.isnan(kept[rows]).all(axis=0)
    same &= at >= 0
    redo = list(names[~same])
    old = _fundamentals_panels(source, adj_close, dates[:W], redo) if redo else None
    closes = CloseHistory.of(adj_close.reindex(columns=names))
    lacking = names[at < 0]
    made, in_force = {}, {}
    for f, kw in _asks().items():
        held = known.in_force[f].on(names)
        if len(lacking):  # a name the kept snapshots lack (listed since): its own, found in the table
            found = snapshots_in_force(source, f, known.dates[-1], lacking, **kw).on(names)
            fill = at < 0
            held = SnapshotsInForce(held.day, names, np.where(fill, found.value, held.value),
                                    np.where(fill, found.available, held.available),
                                    np.where(fill, found.price_day, held.price_day))
        new, in_force[f] = fundamentals_panel_after(held, source, f, dates[W:], **kw,
                                                    adj_close=closes if f in ROLLED else None)
        values = np.full((len(dates), len(names)), np.nan)
        if as_kept and same.all():
            values[:W] = known.panels[f]
        else:
            values[:W, same] = known.panels[f][:, at[same]]
        if old is not None:
            values[:W, ~same] = old[f].to_numpy(dtype="float64")
        values[W:] = new.to_numpy(dtype="float64")
        made[f] = pd.DataFrame(values, index=dates, columns=names)
    fund = {f: made[f] for f in PANEL_FIELDS}
    cap = market_cap_panel(None, None, fund["market_cap"])
    return PointInTimePanels(cap, fund["price"], made["shares_outstanding"], fund), in_force


def snapshot_price_days(fundamentals: pd.DataFrame, start: object) -> pd.DatetimeIndex:
    """The price days (``price_date``, else the availability date) of the snapshots that can be
    in force on or after ``start``: those available at most the longest carry before it."""
    available = pd.DatetimeIndex(fundamentals["available_date"])
    price_day = (pd.DatetimeIndex(fundamentals["price_date"]) if "price_date" in fundamentals.columns
                 else pd.DatetimeIndex([pd.NaT] * len(fundamentals)))
    day = price_day.where(~price_day.isna(), available)
    horizon = pd.Timestamp(start) - pd.Timedelta(days=max(SHARES_MAX_AGE_DAYS, 400))
    return pd.DatetimeIndex(day[available >= horizon].dropna().unique())


def _near_days(snapshot_days: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The days whose adjusted closes a snapshot's price relative can read: each price day and
    the :data:`~riskstrata.data.fundamentals.PRICE_DATE_TOLERANCE_DAYS` before it."""
    back = np.arange(PRICE_DATE_TOLERANCE_DAYS + 1) * np.timedelta64(1, "D")
    days = snapshot_days.normalize().to_numpy("datetime64[ns]")[:, None] - back[None, :]
    return pd.DatetimeIndex(np.unique(days.ravel()))


def _price_panels(store: Store, stocks: set, start: object | None, end: object | None,
                  snapshot_days: pd.DatetimeIndex | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(returns, adjusted closes, volume) of the stocks, wide, from one read of the prices table.

    returns: (T × N) exactly :func:`~riskstrata.data.ingest.load_returns` restricted to the
    stocks (dates: every priced date in [start, end]; columns: the stocks priced there, sorted);
    adjusted closes: the whole history of those stocks (a snapshot in force may predate
    ``start``) — or, given the ``snapshot_days`` (the price days of the snapshots that can be in
    force on or after ``start``), the days from ``start`` on and the
    :data:`~riskstrata.data.fundamentals.PRICE_DATE_TOLERANCE_DAYS` before each snapshot day,
    which give every price relative the same closes (a daily update's trailing panels read a
    fraction of the table); volume: (T × N) on the returns' dates. Pivoted by integer codes: a
    pandas pivot of ~7 M rows by string id costs seconds each, three times over.
    """
    columns = ["date", "security_id", "ret", "adj_close", "volume"]
    if start is not None and snapshot_days is not None:
        near = _near_days(snapshot_days)
        # The days as a literal list: DuckDB turns it into a filter on the scan, which skips the
        # row groups (date ranges) of the date-ordered table; a sub-select would be a join, read whole.
        long = store.read_table("prices", columns=columns,
                                where="date >= ?" + (f" OR date IN ({', '.join('?' * len(near))})" if len(near) else ""),
                                params=[pd.Timestamp(start).to_pydatetime(), *(d.to_pydatetime() for d in near)])
    else:
        long = store.read_table("prices", columns=columns)
    # Rows by integer codes of their date and security (one hash each, no sort of the rows): a
    # date's code is its rank among the distinct dates read.
    day_code, days = pd.factorize(pd.DatetimeIndex(long["date"]), sort=True, use_na_sentinel=False)
    in_day = np.ones(len(days), dtype=bool)                     # (distinct dates,) inside [start, end]
    if start is not None:
        in_day &= days >= pd.Timestamp(start)
    if end is not None:
        in_day &= days <= pd.Timestamp(end)
    in_range = in_day[day_code]
    sid_code, sids = pd.factorize(long["security_id"])
    sids = sids.to_numpy(dtype=object)                          # plain strings: set and hash lookups, not Arrow's
    ids = sorted(set(sids[np.unique(sid_code[in_range])]) & stocks) if in_range.any() else []
    col = np.full(len(sids), -1)
    col[pd.Index(sids, dtype=object).get_indexer(ids)] = np.arange(len(ids))
    col = col[sid_code]                                         # (rows,) stock column, −1 = not a stock
    stock_rows = col >= 0
    ids_index = pd.Index(ids, name="security_id")

    def wide(rows: np.ndarray, on: np.ndarray, fields: list[str]) -> list[pd.DataFrame]:
        """(the dates ``on`` marks, ids) of each field at ``rows`` (whose dates are among them)."""
        at = np.cumsum(on) - 1                                  # a date code's row in the frame
        where = (at[day_code[rows]], col[rows])
        index = pd.DatetimeIndex(days[on], name="date")
        out = []
        for field in fields:
            values = np.full((int(on.sum()), len(ids)), np.nan)
            values[where] = long[field].to_numpy(dtype="float64", na_value=np.nan)[rows]
            out.append(pd.DataFrame(values, index=index, columns=ids_index))
        return out

    # Returns and volume on every priced date in range (any security's), closes on the stocks' dates.
    stock_days = np.zeros(len(days), dtype=bool)
    stock_days[day_code[stock_rows]] = True
    returns, volume = wide(in_range & stock_rows, in_day, ["ret", "volume"])
    (adj,) = wide(stock_rows, stock_days, ["adj_close"])
    return returns, adj, volume


def _fundamentals_horizon(start: object) -> pd.Timestamp:
    """The earliest availability date a panel from ``start`` on reads: every panel of
    :func:`_asks` looks back at most its age limit (``fundamentals_panel`` reads the rows
    available in [first date − max_age_days, last date]), and no limit exceeds this one."""
    return pd.Timestamp(start) - pd.Timedelta(days=max(SHARES_MAX_AGE_DAYS, 400))


def _stored_fundamentals(store: Store, master: SecurityMaster, start: object | None) -> StoredFundamentals | None:
    """The store's fundamentals for panels from ``start`` on (None: none stored): the rows
    available since :func:`_fundamentals_horizon`, in the table's order — every window the panels,
    the snapshots in force and :func:`snapshot_price_days` cut from it is the whole table's, row
    for row (a daily update reads ~1/3 of a 13-year table: ~40 → ~15 ms). Every column but the
    ticker: the panels are by security id, and decoding a column of strings is a third of the read."""
    if not store.has_table("fundamentals"):
        return None
    columns = [c for c in store.table_columns("fundamentals") if c != "ticker"]
    if start is None:
        return StoredFundamentals(master, store.read_table("fundamentals", columns=columns))
    table = store.read_table("fundamentals", columns=columns, where="available_date >= ?",
                             params=[_fundamentals_horizon(start).to_pydatetime()])
    return StoredFundamentals(master, table)


def load_factor_inputs(store: Store, start: object | None = None, end: object | None = None,
                       also: list | None = None) -> FactorInputs:
    """Panels for the stocks in the store, keyed by security_id (T × N): the stocks priced in
    [start, end] and those in ``also`` (a daily update's: the model's names), sorted.

    Caps, raw prices and value ratios come from the fundamentals snapshots rolled by the
    adjusted-close relative (:func:`point_in_time_panels`; the prices table holds adjusted
    closes only, so the rolled snapshot price is the raw price); the issuer of each security
    (security master ``issuer_id``, e.g. from ``riskstrata ingest issuers``) makes share classes
    count once.
    """
    return load_factor_inputs_kept(store, start, end, also, keep=False)[0]


def load_factor_inputs_kept(store: Store, start: object | None = None, end: object | None = None,
                            also: list | None = None, known: TrailingPanels | None = None, *, keep: bool = True
                            ) -> tuple[FactorInputs, TrailingPanels | None]:
    """:func:`load_factor_inputs`, and the fundamentals panels a daily update after the last date
    reads (:class:`TrailingPanels`, kept with the version; None without ``keep``). known: the
    panels the version being updated kept, whose rows begin the panels asked for: only the rest
    is computed (:func:`extend_point_in_time_panels`; the same panels)."""
    from riskstrata.factors.model import lookback_start

    master = SecurityMaster.from_store(store)
    records = master.records
    stocks = set(records["security_id"].to_numpy(dtype=object)[(records["asset_type"] == "stock").to_numpy()])
    fundamentals = _stored_fundamentals(store, master, start)
    returns, adj, volume = _price_panels(store, stocks, start, end,
                                         None if start is None or fundamentals is None
                                         else snapshot_price_days(fundamentals.table, start))
    if also is not None:
        names = pd.Index(sorted(set(returns.columns) | set(also)), name=returns.columns.name)
        returns, adj, volume = (frame.reindex(columns=names) for frame in (returns, adj, volume))
    if returns.shape[1] < 10:
        raise StoreError("fewer than 10 stocks with prices in the store; ingest prices first")
    ids = list(returns.columns)
    if not volume.notna().any().any():
        volume = None
    if fundamentals is None:
        raise StoreError("no fundamentals in the store: run `riskstrata ingest fundamentals FILE` first")
    dates = returns.index
    pit, in_force = None, None
    if known is not None:
        try:
            pit, in_force = extend_point_in_time_panels(known, fundamentals, adj, dates, ids)
        except DataValidationError:  # not the kept rows, or names not kept by id: the whole panels
            pit = None
    if pit is None:
        pit = point_in_time_panels(fundamentals, adj, dates, ids)
    sector = pd.Series(dtype=object)
    if store.has_table("classifications"):
        cls = store.read_table("classifications", columns=["security_id", "valid_from", "gics_sector"])
        cls = cls.dropna(subset=["gics_sector"]).sort_values("valid_from")
        sector = cls.groupby("security_id")["gics_sector"].last()
    inputs = FactorInputs(returns, pit.market_cap, sector.reindex(ids), pit.fundamentals, volume, pit.shares,
                          pit.price, master.issuers(ids))
    # The rows the descriptors of an update's first old date read: from its lookback, a row early
    # (the market return's lagged caps), as factors_update reads them.
    first = max(0, lookback_start(dates, len(dates) - 1) - 1)
    return inputs, trailing_panels(pit, adj, first, fundamentals, in_force) if keep else None


SPILL_PREFIX = "riskstrata-factors-"   # scratch directories of streamed builds: <prefix><pid>-<random>


def _remove_stale_spills() -> None:
    """Delete the scratch directories of builds whose process is gone (killed before it could
    clean up: a 3,000-name build leaves ~1.3 GB), so a crash never fills the disk build by build."""
    for path in Path(tempfile.gettempdir()).glob(f"{SPILL_PREFIX}*-*"):
        pid = path.name[len(SPILL_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:  # alive under another user (EPERM): not ours to delete
            continue


def build_factor_model(store: Store, spec: str | ModelSpec = "US21", start: object | None = None,
                       end: object | None = None, progress: Progress | None = None,
                       tick: Tick | None = None, *, block_dates: int | None = DEFAULT_BLOCK_DATES,
                       block_source: BlockSource | None = None) -> dict:
    """Fit a spec on the store's data, validate it and publish it (the module docstring has the
    layout). progress(stage) as each stage starts; tick(stage, done, total) within stages —
    by default ``progress.tick`` when the progress object has one (so auto-builds show counts).

    block_dates: dates per block of the streamed build (:func:`fit_factor_model`); the
    exposures of a block wait in a scratch directory (``TMPDIR``) until published.
    block_source: where the date blocks are made (a dask cluster: :mod:`.factors_cluster`).
    """
    spec = spec if isinstance(spec, ModelSpec) else load_spec(spec)
    say = progress or (lambda _m: None)
    tick = tick or getattr(progress, "tick", None)
    count = tick or (lambda _s, _d, _t: None)
    say("loading panels")
    inputs, kept = load_factor_inputs_kept(store, start, end)
    # Streamed: each date block's exposures go to a scratch directory as they are made and are
    # read back a block at a time by validation and publishing, so peak memory is the panels'
    # (T × N) plus one block's (B × N × K), never the whole (T × N × K).
    _remove_stale_spills()
    with tempfile.TemporaryDirectory(prefix=f"{SPILL_PREFIX}{os.getpid()}-") as spill:
        result = fit_factor_model(inputs, spec, progress=say, tick=tick, block_dates=block_dates, spill_dir=spill,
                                  block_source=block_source)
        del inputs
        say("validation")
        validation = validate_result(result, tick=lambda d, t: count("validation", d, t))
        say("writing")
        return publish(store, result, validation, panels=kept)


def validate_result(result: FactorModelResult,
                    tick: Callable[[int, int], None] | None = None) -> tuple[pd.DataFrame, ValidationState]:
    """Bias statistics, MRAD, QLIKE, stability, VIF of a fitted model, with the eigenfactor
    adjustment on (the published forecast) and off (raw EWMA + Newey–West), stacked; column
    ``covariance`` says which. Also the validation's state, from which a daily update goes on."""
    if tick is not None:
        tick(0, 1)
    # One pass over the exposures for both forecasts (they differ only in the covariance).
    with one_blas_thread():
        reports, state = validation_reports_with_state(
            result.factor_returns, {"eigen on": result.covariance.adjusted, "eigen off": result.covariance.raw},
            result.regression.specific_returns, result.specific_var, result.exposures, result.market_cap,
            r2=result.regression.r2)
    if tick is not None:
        tick(1, 1)
    return validation_table(reports), state


def validation_table(reports: dict[str, ValidationReport]) -> pd.DataFrame:
    """The stored validation part: each covariance label's table, stacked, labelled."""
    return pd.concat([r.table.assign(covariance=label) for label, r in reports.items()], ignore_index=True)


def publish(store: Store, result: FactorModelResult, validation: tuple[pd.DataFrame, ValidationState] | None = None,
            extra_meta: dict | None = None, panels: TrailingPanels | None = None) -> dict:
    """Write a fitted model to the store: companions first, the exposures model last.

    validation: :func:`validate_result`'s table and state. extra_meta: added to the exposures
    version's meta.json (an update records what it updated from). Beside the exposures go the
    state a daily update goes on from, the fundamentals panels of its trailing rows (``panels``,
    from :func:`load_factor_inputs_kept`) and the fingerprint of the inputs (:mod:`.factors_state`)."""
    names = model_names(result.spec.name)
    label = security_labels(store, result.tickers)
    reg = result.regression
    meta = version_meta(result.spec, result.factors, result.dates, result.notes, result.status, result.has_data)
    table, state = validation if validation is not None else (None, None)
    versions = {}
    with store.begin_version(names["factor_returns"]) as w:
        rows = factor_return_rows(reg, result.coverage)
        w.write_part(rows)
        w.write_arrays(RETURNS_ARRAYS, returns_arrays(rows, result.factors, result.spec.factors))
        versions["factor_returns"] = w.commit(meta, prune=False)  # pruned once, with the exposures
    if table is not None:
        with store.begin_version(names["factor_validation"]) as w:
            w.write_part(table)
            versions["factor_validation"] = w.commit(meta, prune=False)  # pruned once, with the exposures
    T, K = len(result.dates), len(result.factors)
    with store.begin_version(names["factor_cov"]) as w:
        w.write_part(covariance_rows(result.covariance))
        versions["factor_cov"] = w.commit(meta, prune=False)  # pruned once, with the exposures
    with store.begin_version(names["specific_risk"]) as w:
        w.write_part(specific_risk_rows(result.specific_var, label))
        versions["specific_risk"] = w.commit(meta, prune=False)  # pruned once, with the exposures
    N = len(result.tickers)
    X, imputed = result.exposures, result.imputed
    if isinstance(X, BlockArray):
        pieces = ((a, x, imp) for (a, b, x), (_, _, imp) in zip(X.blocks(), imputed.blocks()))
    else:
        pieces = ((a, X[a:b], imputed[a:b]) for a, b in block_bounds(T, DEFAULT_BLOCK_DATES))
    with store.begin_version(names["factors"]) as w:
        last = None
        for a, x, imp in pieces:   # one part per date block, in date order
            w.write_part(exposure_rows(result.dates[a:a + len(x)], result.tickers, label, result.factors, x, imp))
            last = np.array(x[-1])
        if state is not None and result.history is not None and result.specific_state is not None:
            tail = PublishedTail.of(result.covariance, result.tickers, last) if last is not None else None
            w.write_arrays(STATE_ARRAYS, UpdateState(result.history, result.specific_state, state,
                                                     reg.notes, tail).to_arrays())
        if panels is not None and panels.dates[-1] == result.dates[-1]:
            w.write_arrays(PANELS_ARRAYS, panels.to_arrays())
        version = w.commit({**meta, "companions": versions,
                            "input_digest": input_digest(store, result.dates[-1], result.tickers),
                            **(extra_meta or {})})
    return publish_summary(result.spec, version, result.factors, T, N, result.notes, result.status)


def publish_summary(spec: ModelSpec, version: str, factors: list[str], dates: int, names: int, notes: list[str],
                    status: list[dict]) -> dict:
    """What a build or an update returns of the version it published."""
    return {"model": spec.name, "version": version, "factors": len(factors), "spec_factors": len(spec.factors),
            "estimated": sum(s["estimated"] for s in status) if status else len(factors),
            "dates": dates, "names": names, "notes": notes,
            "not_estimated": [f"{s['factor']}: {s['reason']}" for s in status if not s["estimated"]],
            "status": status}


def specific_risk_rows(spec_var: pd.DataFrame, label: pd.Index) -> pd.DataFrame:
    """(date, ticker, specific_var) rows, name by name (the column order of a melt), NaN dropped."""
    T, N = spec_var.shape
    values = spec_var.to_numpy().T.ravel()    # name-major, like DataFrame.melt
    keep = ~np.isnan(values)
    names = np.asarray(label, dtype=object)
    return pd.DataFrame({"date": np.tile(spec_var.index.to_numpy(), N)[keep],
                         "ticker": np.repeat(names, T)[keep], "specific_var": values[keep]})


def security_labels(store: Store, tickers: pd.Index) -> pd.Index:
    """Each security id's latest ticker (the id itself where the master has none): the labels
    the published rows carry beside the ids."""
    latest = SecurityMaster.from_store(store).latest("ticker")
    return pd.Index(latest.reindex(tickers).fillna(pd.Series(tickers, index=tickers)))


def version_meta(spec: ModelSpec, factors: list[str], dates: pd.DatetimeIndex, notes: list[str], status: list[dict],
                 has_data: dict[str, bool]) -> dict:
    """The meta.json every part of a published version shares (the exposures' adds its companions)."""
    return {"spec": spec.name, "factors": factors, "start": str(dates[0].date()), "end": str(dates[-1].date()),
            "notes": notes, "source": spec.source, "spec_factors": spec.factors, "groups": factor_groups(spec),
            "min_coverage": spec.min_coverage, "status": status,
            # what a daily update needs to carry (services.factors_update): which descriptors had data
            "has_data": {d: bool(v) for d, v in sorted(has_data.items())}}


def factor_return_rows(reg: RegressionResult, coverage: pd.DataFrame | None) -> pd.DataFrame:
    """The stored factor-return rows: date, factor returns, t_<factor>, the daily diagnostics
    and coverage_<spec factor> (row t: the coverage of the exposures that explain t)."""
    fr = reg.factor_returns.rename_axis("date").reset_index()
    ts = reg.t_stats.add_prefix("t_").rename_axis("date").reset_index(drop=True)
    diag = pd.DataFrame({"r2": reg.r2, "n_names": reg.n_names, "condition_number": reg.condition_number,
                         "constraint_residual": reg.constraint_residual}).reset_index(drop=True)
    cov_cols = coverage if coverage is not None else pd.DataFrame(index=reg.factor_returns.index)
    return pd.concat([fr, ts, diag, cov_cols.add_prefix("coverage_").reset_index(drop=True)], axis=1)


def exposure_rows(dates: pd.DatetimeIndex, tickers: pd.Index, label: pd.Index, factors: list[str], x: np.ndarray,
                  imputed: np.ndarray) -> pd.DataFrame:
    """The long exposures rows (date, security_id, ticker, factors…, imputed) of (B, N, K)
    exposures: rows date-major, names in column order, names with no exposure left out."""
    B, N, K = x.shape
    flat = x.reshape(B * N, K)
    keep = ~np.isnan(flat).all(axis=1)
    part = pd.DataFrame(flat[keep], columns=factors)
    part.insert(0, "date", np.repeat(dates.to_numpy(), N)[keep])
    part.insert(1, "security_id", np.tile(np.asarray(tickers, dtype=object), B)[keep])
    part.insert(2, "ticker", np.tile(np.asarray(label, dtype=object), B)[keep])
    part["imputed"] = imputed.reshape(B * N, K)[keep].any(axis=1)
    return part


def covariance_rows(fc: FactorCovariance) -> pd.DataFrame:
    """The stored covariance rows (date, "A|B" for every factor pair, eigen_bias_<rank>, vra_lambda).

    The eigen simulation's bias v(k) shows on each date it ran (ascending eigenvalue rank; NaN
    elsewhere) and λ on every date: a daily update goes on from them instead of re-simulating
    the whole history."""
    T, K = len(fc.dates), len(fc.factors)
    out = pd.DataFrame(fc.adjusted.reshape(T, K * K), index=fc.dates,
                       columns=[f"{a}|{b}" for a in fc.factors for b in fc.factors])
    if len(fc.eigen_recomputed) == T:
        bias = np.where(fc.eigen_recomputed[:, None], fc.eigen_bias, np.nan)
        out = pd.concat([out, pd.DataFrame(bias, index=fc.dates, columns=[f"eigen_bias_{i}" for i in range(K)])],
                        axis=1)
    out["vra_lambda"] = fc.vra_lambda
    return out.rename_axis("date").reset_index()


@dataclass
class BuiltModel:
    """A built spec pinned to one version: its exposures version and the companions it names."""

    spec: str
    meta: dict
    version: str | None = None  # the exposures version (None: whichever is current when read)

    def read(self, store: Store, part: str, **kw) -> pd.DataFrame:
        names = model_names(self.spec)
        version = self.version if part == "factors" else self.meta["companions"][part]
        return store.read_model(names[part], version=version, **kw)


def ensure_built(store: Store, spec: str = "US21", progress: Progress | None = None) -> BuiltModel:
    """The built model, building it first when it is not (auto-build, with progress)."""
    name = model_names(spec)["factors"]
    if store.current_version(name) is None:
        if spec not in packaged_specs():
            raise ModelNotBuilt(f"model {spec!r} is not built and is not a packaged spec")
        build_factor_model(store, spec, progress=progress)
    version = store.current_version(name)
    return BuiltModel(spec, store.model_meta(name, version), version)


def factor_returns(store: Store, spec: str = "US21", progress: Progress | None = None) -> pd.DataFrame:
    return _factor_returns(store, ensure_built(store, spec, progress))


def _factor_returns(store: Store, m: BuiltModel) -> pd.DataFrame:
    """(dates × factors) daily factor returns of a built model."""
    return m.read(store, "factor_returns", columns=["date", *m.meta["factors"]]).set_index("date").sort_index()


def summary(store: Store, spec: str = "US21", progress: Progress | None = None) -> pd.DataFrame:
    """Per spec factor: CAGR, cumulative return, annualised vol, Sharpe, latest return, max
    drawdown, and its coverage (:func:`summary_table`)."""
    m = ensure_built(store, spec, progress)
    return summary_table(_factor_returns(store, m), m.meta)


STATUS_COLUMNS = ["status", "dates_estimated", "dates", "coverage_last", "reason"]


def summary_table(returns: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """The factor summary of a built model, one row per *spec* factor, with its coverage.

    Columns: those of :func:`riskstrata.factors.summary.factor_summary`, then ``status``
    ("estimated" | "not estimated"), ``dates_estimated`` of ``dates``, ``coverage_last`` (the
    share of the estimation universe's cap with fresh data behind the last date's return) and
    ``reason`` (why not, or on which dates not; null when estimated on every date). A spec
    factor the build did not estimate has n_days 0 and nulls for the performance figures.
    """
    table = S.factor_summary(returns)
    status = {s["factor"]: s for s in meta.get("status") or []}
    index = meta.get("spec_factors") or list(table.index)
    table = table.reindex(index)
    table["n_days"] = table["n_days"].fillna(0).astype(int)
    for col in STATUS_COLUMNS:
        table[col] = [(("estimated" if status[f]["estimated"] else "not estimated") if col == "status"
                       else status[f].get(col)) if f in status else ("estimated" if col == "status" else None)
                      for f in index]
    return table


def correlation(store: Store, spec: str = "US21", pair: tuple[str, str] | None = None,
                window: int | None = None) -> pd.DataFrame | dict:
    fr = factor_returns(store, spec)
    if pair:
        return S.pair_correlation(fr, pair[0], pair[1], window)
    return S.correlation_matrix(fr, window)


@dataclass(frozen=True)
class FactorRiskInputs:
    """What a portfolio's factor risk needs on one date.

    exposures:    (names × [factors…, security_id, ticker, …]) on the model date nearest before
                  the asked date, indexed by upper-case ticker.
    covariance:   (K, K) factor covariance of ``cov_date`` (daily, decimal²).
    specific_var: ticker → specific variance on ``cov_date`` (daily, decimal²).
    """

    exposures: pd.DataFrame
    covariance: np.ndarray
    cov_date: pd.Timestamp
    specific_var: pd.Series


@dataclass(frozen=True)
class LatestFactorModel:
    """A built model's latest snapshot, as a server holds it per published version: the whole
    factor-return history (T × K, small) and the risk inputs of the last date."""

    model: BuiltModel
    version: str
    factor_returns: pd.DataFrame  # dates × factors
    risk: FactorRiskInputs

    @property
    def end(self) -> pd.Timestamp:
        return pd.Timestamp(self.model.meta["end"])


def load_latest(store: Store, spec: str = "US21", version: str | None = None) -> LatestFactorModel:
    """A built spec's ``version`` (default: the current one) in memory; ModelNotBuilt if it is not built."""
    name = model_names(spec)["factors"]
    version = version or store.current_version(name)
    if version is None:
        raise ModelNotBuilt(f"model {spec!r} is not built")
    m = BuiltModel(spec, store.model_meta(name, version), version)
    return LatestFactorModel(m, version, _factor_returns(store, m), factor_risk_inputs(store, m, pd.Timestamp(m.meta["end"])))


def stock_exposures(store: Store, ticker: str, date: object | None = None, spec: str = "US21",
                    latest: LatestFactorModel | None = None) -> pd.Series:
    """A stock's exposure to every factor on a date (default: the model's last).

    ``latest``: the model's snapshot in memory; a name on its last date is answered from it.
    """
    m = ensure_built(store, spec) if latest is None else latest.model
    day = pd.Timestamp(date) if date is not None else pd.Timestamp(m.meta["end"])
    factors = m.meta["factors"]
    if latest is not None and day >= latest.end and ticker.strip().upper() in latest.risk.exposures.index:
        row = latest.risk.exposures.loc[ticker.strip().upper()]
    else:
        sid = SecurityMaster.from_store(store).resolve(ticker, day)
        rows = m.read(store, "factors", where="security_id = ? AND date <= ?", params=[sid, day.to_pydatetime()])
        if rows.empty:
            raise UnknownTicker(ticker, f"no factor exposures on or before {day.date()}")
        row = rows.sort_values("date").iloc[-1]
    return pd.Series({f: float(row[f]) for f in factors}, name=f"{ticker} {pd.Timestamp(row['date']).date()}")


def portfolio_factor_risk(store: Store, weights: pd.Series, date: object | None = None, spec: str = "US21",
                          latest: LatestFactorModel | None = None) -> dict:
    """X'FX + specific for ticker weights, with Euler shares by group (market/styles/industries/specific).

    ``latest``: the model's snapshot in memory, used when the date is its last (or later).
    """
    m = ensure_built(store, spec) if latest is None else latest.model
    day = pd.Timestamp(date) if date is not None else pd.Timestamp(m.meta["end"])
    inputs = latest.risk if latest is not None and day >= latest.end else factor_risk_inputs(store, m, day)
    return factor_risk(inputs, weights, m.meta["factors"], spec, m.meta.get("groups"))


def holdings_factor_risk(store: Store, holdings: object, date: object | None = None, spec: str = "US21",
                         portfolio_value: float | None = None) -> dict:
    """Factor risk of a holdings file or table (ticker or CUSIP; shares, market value or weight).

    Lines are matched to the names the model holds on the date exactly as ``portfolio analyze``
    matches them (:func:`riskstrata.portfolio.matching.match_holdings`): shares are valued at the
    close, weights and values taken as given, a portfolio mixing dollar lines with weight-only
    lines is refused, and every line left out is listed with its reason — none is dropped
    silently. The result is :func:`factor_risk`'s plus ``analyzed`` ("X/Y holdings analyzed")
    and ``excluded`` (line, ticker, reason).
    """
    from riskstrata.portfolio.holdings import Holdings, read_holdings
    from riskstrata.portfolio.matching import match_holdings

    holdings = holdings if isinstance(holdings, Holdings) else read_holdings(holdings)
    m = ensure_built(store, spec)
    day = pd.Timestamp(date) if date is not None else pd.Timestamp(m.meta["end"])
    inputs = factor_risk_inputs(store, m, day)
    exp = inputs.exposures
    closes = store.query("SELECT security_id, arg_max(adj_close, date) AS close FROM prices "
                         "WHERE date <= ? AND adj_close IS NOT NULL GROUP BY security_id",
                         [inputs.cov_date.to_pydatetime()]).set_index("security_id")["close"]
    universe = pd.DataFrame({"ticker": exp.index, "security_id": exp["security_id"].to_numpy(),
                             "first_date": pd.NaT, "last_date": pd.NaT,
                             "close": exp["security_id"].map(closes).to_numpy(dtype=float)})
    match = match_holdings(holdings, universe, inputs.cov_date, portfolio_value=portfolio_value)
    if match.matched.empty:
        raise DataValidationError(f"none of the holdings is in the factor model on {inputs.cov_date.date()}: "
                                  f"{match.summary()}")
    by_sid = pd.Series(exp.index, index=exp["security_id"].to_numpy())
    weights = pd.Series(match.matched["weight"].to_numpy(dtype=float),
                        index=by_sid.reindex(match.matched["security_id"]).to_numpy())
    out = factor_risk(inputs, weights, m.meta["factors"], spec, m.meta.get("groups"))
    out["analyzed"] = match.summary()
    out["excluded"] = match.excluded[["line", "ticker", "reason"]].astype(object).where(
        match.excluded[["line", "ticker", "reason"]].notna(), None).to_dict(orient="records")
    out["notes"] = list(match.notes)
    return out


def factor_risk_inputs(store: Store, m: BuiltModel, day: pd.Timestamp) -> FactorRiskInputs:
    """Exposures, covariance and specific variances in force on ``day``, read from the store."""
    exp = _exposures_on(store, m, day)
    cov_row = m.read(store, "factor_cov", where="date <= ?", params=[day.to_pydatetime()]).sort_values("date").iloc[-1]
    factors = m.meta["factors"]
    K = len(factors)
    F = np.array([cov_row[f"{a}|{b}"] for a in factors for b in factors], dtype=float).reshape(K, K)
    cov_date = pd.Timestamp(cov_row["date"])
    spec_var = m.read(store, "specific_risk", where="date = ?", params=[cov_date.to_pydatetime()])
    return FactorRiskInputs(exp, F, cov_date, spec_var.set_index("ticker")["specific_var"])


def factor_risk(inputs: FactorRiskInputs, weights: pd.Series, factors: list[str], spec: str,
                groups: dict[str, str] | None = None) -> dict:
    """The portfolio's factor risk from one date's inputs (pure: no store).

    weights: by ticker, any scale; they are taken relative to the gross of the names in the
    model (w / Σ|w|), so a long/short book whose net is 0 has a defined risk per dollar of
    gross. groups: factor → market | style | industry (the build's meta; by name, never by
    position). Shares are Euler contributions to variance: market, styles, industries, specific.
    """
    exp = inputs.exposures
    w = pd.Series(weights, dtype=float)
    bad = w.index[~np.isfinite(w.to_numpy())]
    if len(bad):
        raise DataValidationError(f"weights must be finite numbers; not for {', '.join(map(str, bad[:5]))}")
    w = w.groupby(w.index.str.upper()).sum()
    unknown = sorted(set(w.index) - set(exp.index))
    w = w.reindex(exp.index).fillna(0.0)
    gross = float(w.abs().sum())
    if not gross > 0:
        raise DataValidationError(f"no holdings with a non-zero weight are in the factor model on "
                                  f"{inputs.cov_date.date()}" + (f" (not in it: {', '.join(unknown)})" if unknown else ""))
    net = float(w.sum()) / gross
    w = w / gross
    F = inputs.covariance
    s2 = inputs.specific_var.reindex(exp.index).fillna(0.0).to_numpy()
    no_forecast = [f for f, v in zip(factors, np.diag(F)) if not np.isfinite(v)]
    F = np.nan_to_num(F)  # a factor never estimated (a thin industry) carries no forecast risk
    X = exp[factors].fillna(0.0).to_numpy()
    x = X.T @ w.to_numpy()
    contrib = x * (F @ x)
    specific = float((w.to_numpy() ** 2 * s2).sum())
    total = float(contrib.sum() + specific)
    if groups is None:
        groups = factor_groups(load_spec(spec), factors) if spec in packaged_specs() else {}
    kind = np.array([groups.get(f, "style") for f in factors])
    if not total > 0:
        raise DataValidationError(f"the holdings have no forecast risk on {inputs.cov_date.date()} "
                                  "(no exposures, covariance or specific variance for them)")
    shares = {"market": contrib[kind == "market"].sum() / total, "styles": contrib[kind == "style"].sum() / total,
              "industries": contrib[kind == "industry"].sum() / total, "specific": specific / total}
    return {"date": str(inputs.cov_date.date()), "vol_ann": float(np.sqrt(total * 252)),
            "shares": {k: float(v) for k, v in shares.items()}, "exposures": dict(zip(factors, map(float, x))),
            "by_factor": dict(zip(factors, map(float, contrib / total))), "net": net, "weights": "relative to gross",
            "unknown": unknown, "factors_without_forecast": no_forecast}


def _exposures_on(store: Store, m: BuiltModel, day: pd.Timestamp) -> pd.DataFrame:
    rows = m.read(store, "factors", where="date <= ? AND date >= ?",
                  params=[day.to_pydatetime(), (day - pd.Timedelta(days=10)).to_pydatetime()])
    if rows.empty:
        raise DataValidationError(f"no factor exposures near {day.date()}")
    last = rows[rows["date"] == rows["date"].max()]
    return last.set_index(last["ticker"].str.upper())


def validate_model(store: Store, spec: str = "US21", progress: Progress | None = None) -> pd.DataFrame:
    """Forecast quality of the stored build, with the eigenfactor adjustment on (the published
    forecast) and off (raw EWMA + Newey–West), side by side — read from the build (computed
    when it was built), not refitted. An unbuilt packaged spec is built first."""
    m = ensure_built(store, spec, progress)
    if "factor_validation" not in m.meta.get("companions", {}):
        raise ModelNotBuilt(f"the stored build of {spec} predates stored validation: rebuild it "
                            f"(`riskstrata factors build --model {spec}`)")
    return m.read(store, "factor_validation")


# The daily update (issue 13 §2) lives in its own module; offered here, where `riskstrata update` looks.
from riskstrata.services.factors_update import update_factor_model  # noqa: E402,F401
