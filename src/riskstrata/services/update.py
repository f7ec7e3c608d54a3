"""Daily update: append the store's newest trading days to the built models without a rebuild.

Model A (SPEC §6). Every number of day t depends only on the trailing window ending at t —
the rolling moments are window sums, not a running state — and the time-safe returns of t on
the hedge ratios of t−1. So the rows of k new days are the rows that the same
:class:`~riskstrata.cascade.fit.CascadeEngine` computes on the last ``max(window, 252) + k``
trading days of the store (252: the long volatility window); nothing else is recomputed. The
rows already published are carried over unchanged (their part files are hard-linked into the
new version) and the whole is published as a new version, atomically, like a build.

The update equals a full rebuild of the same data only while the data it does not re-read
has not changed. It checks what it can see, and refuses with a clear error rather than
publish a row a rebuild would not give:

- the trailing window it re-reads must match the published version: the same trading days,
  the same returns, bit for bit (a corrected or backfilled price inside it, or a new security
  whose history starts before the new days, needs a rebuild, because older rows change too).
  A version keeps its window's returns beside its parts (``window_returns``) for this check;
  one built before them is read back from its rows;
- the ETF assignments must be the published ones, except rows taking effect on a new day
  (a reclassification from tomorrow changes only new rows);
- securities with no classification keep the ETFs the last build inferred from their returns.
  A rebuild re-infers them from the longer history and, for a few marginal names, may choose
  other ETFs (and then changes all their rows): on the real broad universe, 4 of 2,923 inferred
  names for one new day. ``check_inferred`` re-runs the build's inference (it reads the whole
  history, as a build does) and refuses when any would move; the default says how many kept;
- the parameters and the ETF registry are the version's own;
- more than ``MAX_GAP_WEEKDAYS`` weekdays without any price between the model's last day and
  the first new one is refused unless ``allow_gap`` (a gap is usually a missed ingest).

Corrections older than the trailing window are not seen: run ``riskstrata build cascade``
after a backfill. Each update adds one part file; a build starts a version afresh.

Model B (the factor model, each built spec) is updated by
:func:`riskstrata.services.factors_update.update_factor_model` (new dates' exposures only; the
rest recomputed from the whole history, equal to a rebuild), offered by :mod:`riskstrata.services.factors`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from riskstrata.cascade.fit import VOL_LONG_WINDOW, CascadeEngine, CascadeParams, PreparedInputs, prepare_inputs
from riskstrata.cascade.lstar import LSTAR_THRESHOLD
from riskstrata.data.registry import EtfRegistry
from riskstrata.data.store import Store
from riskstrata.errors import DataValidationError, ModelNotBuilt, StoreError
from riskstrata.services.cascade import (ASSIGNMENT_COLUMNS, LINK_MODEL, MODEL, WINDOW_ARRAYS, block_frame,
                                         load_market_inputs, model_meta, registry_fingerprint, window_arrays)

# Weekdays with no price at all that an update bridges without being asked (a long weekend
# plus a holiday is 2; a week is a missed ingest, not a market holiday).
MAX_GAP_WEEKDAYS = 5
KEY = ["security_id", "valid_from", "sector_etf", "subsector_etf"]


@dataclass
class UpdateSummary:
    """What an update of one model did. status: 'updated' | 'up to date' | 'not built' |
    'not incremental' (a Model B version only a rebuild brings up to date; the message says why);
    version is the new version (None when nothing was published)."""

    model: str
    status: str
    message: str
    version: str | None = None
    previous: str | None = None
    new_dates: list[str] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def update(store: Store, *, registry: EtfRegistry | None = None, allow_gap: bool = False,
           check_inferred: bool = False, progress: Callable[[int, int], None] | None = None
           ) -> list[UpdateSummary]:
    """Update every built model of the store: Model A incrementally, then each Model B spec.

    Raises ModelNotBuilt when no model is built at all (there is nothing to update).
    """
    factor_specs = built_factor_specs(store)
    if store.current_version(MODEL) is None and not factor_specs:
        raise ModelNotBuilt("no model is built in this store: run `riskstrata build cascade` "
                            "(and `riskstrata factors build`) first")
    if store.current_version(MODEL) is None:
        out = [UpdateSummary(MODEL, "not built", "Model A is not built: run `riskstrata build cascade`")]
    else:
        out = [update_cascade(store, registry=registry, allow_gap=allow_gap, check_inferred=check_inferred,
                              progress=progress)]
    return out + [update_factors(store, spec) for spec in factor_specs]


def built_factor_specs(store: Store) -> list[str]:
    """The Model B specs with a published version in the store (``factors_<spec>``)."""
    return [m[len("factors_"):] for m in store.models() if m.startswith("factors_") and store.current_version(m)]


def update_factors(store: Store, spec: str) -> UpdateSummary:
    """Model B: incremental when the factor service offers it, otherwise say what to run."""
    from riskstrata.services import factors as fsvc

    incremental = getattr(fsvc, "update_factor_model", None)
    if incremental is None:
        return UpdateSummary(f"factors_{spec}", "not incremental",
                             f"Model B ({spec}) is not updated incrementally yet: run "
                             f"`riskstrata factors build --model {spec}` to bring it up to date")
    began = time.perf_counter()
    try:
        info = incremental(store, spec)
    except DataValidationError as exc:  # this version cannot be updated exactly: say why and what to run
        return UpdateSummary(f"factors_{spec}", "not incremental",
                             f"Model B ({spec}) is not updated incrementally: {exc}",
                             seconds=time.perf_counter() - began)
    info = info if isinstance(info, dict) else {}
    version = info.get("version")
    message = info.get("message") or f"Model B ({spec}): " + (f"published {version}" if version else "nothing to update")
    return UpdateSummary(f"factors_{spec}", "updated" if version else "up to date", message, version=version,
                         previous=info.get("previous"), new_dates=list(info.get("new_dates", [])),
                         seconds=time.perf_counter() - began)


# ---------------------------------------------------------------------------------------------
# Model A


def update_cascade(store: Store, *, registry: EtfRegistry | None = None, allow_gap: bool = False,
                   check_inferred: bool = False, progress: Callable[[int, int], None] | None = None
                   ) -> UpdateSummary:
    """Append the store's trading days after the current cascade version's last date.

    Publishes a new version of the cascade and of its link betas (the old rows carried over, the
    new rows from the trailing window) and returns what it did; no new day is a no-op.
    Raises DataValidationError (or StoreError) naming the reason when only a rebuild is right.
    """
    began = time.perf_counter()
    previous = store.current_version(MODEL)
    if previous is None:
        raise ModelNotBuilt("Model A is not built: run `riskstrata build cascade` first")
    registry = registry or EtfRegistry.default()
    meta = store.model_meta(MODEL, previous)
    params = _params(meta)
    fingerprint = registry_fingerprint(registry)
    _check_registry(meta, fingerprint)
    end = pd.Timestamp(meta["end"])
    with store.one_connection():  # the update's reads (prices, master, assignments, model) on one connection
        if not store.has_table("prices"):
            raise StoreError(f"no prices in store {store.root}")
        new = pd.DatetimeIndex(store.read_table("prices", columns=["date"], where="date > ?",
                                                params=[end.to_pydatetime()])["date"].unique()).sort_values()
        if not len(new):
            return UpdateSummary(MODEL, "up to date", f"Model A is up to date: the store has no trading day after "
                                                      f"{end.date()} (version {previous}); nothing published",
                                 previous=previous, seconds=time.perf_counter() - began)
        _check_gap(end, new[0], allow_gap)

        stored_assignments = store.read_table("cascade_assignments") if store.has_table("cascade_assignments") \
            else pd.DataFrame(columns=ASSIGNMENT_COLUMNS)
        inferred = stored_assignments[stored_assignments["assignment_source"].isin(["inferred", "unassigned"])]
        if check_inferred and len(inferred):
            _check_inferred(store, registry, meta, inferred)
        inputs, tail_start = _load_tail(store, registry, end, max(params.window, VOL_LONG_WINDOW), inferred)
        merged, assignment_notes = _check_assignments(stored_assignments, inputs.assignments, end)
        _repair_leading_etf_holes(store, inputs.etf_returns, tail_start, params.market_etf)
        by_security = inputs.assignments[["security_id", "valid_from", "sector_etf", "subsector_etf"]]
        prepared = prepare_inputs(inputs.returns, inputs.etf_returns,
                                  by_security.rename(columns={"security_id": "ticker"}), params)
        known = _check_overlap(store, previous, prepared, max(tail_start, pd.Timestamp(meta["start"])), end)
        keep = np.asarray(prepared.dates > end)

        engine = CascadeEngine(prepared, params)
        rows = _new_rows(engine, keep, inputs.tickers, progress)
        links = engine.link_betas(keep)
        new_securities = set() if rows is None else set(rows["security_id"].astype(str).unique()) - set(known)
        notes = inputs.notes + prepared.diagnostics + assignment_notes
        if new_securities:
            notes.append(f"{len(new_securities)} securities new since the last version "
                         f"({', '.join(sorted(new_securities)[:5])}{' …' if len(new_securities) > 5 else ''})")

    covered = np.concatenate([known, np.array(sorted(new_securities), dtype=str)])  # every security the new version covers
    window = window_arrays(prepared, max(params.window, VOL_LONG_WINDOW), covered)
    version = _publish(store, previous, meta, params, fingerprint, prepared.dates[keep], rows, links, notes,
                       len(new_securities), window)
    if merged is not None:
        store.write_table("cascade_assignments", merged)
    n_rows = 0 if rows is None else len(rows)
    days = [str(d.date()) for d in prepared.dates[keep]]
    return UpdateSummary(MODEL, "updated", f"Model A: appended {len(days)} trading day(s) "
                                           f"{days[0]} … {days[-1]} ({n_rows:,} rows) as version {version}",
                         version=version, previous=previous, new_dates=days, rows=n_rows,
                         seconds=time.perf_counter() - began, notes=notes)


def _load_tail(store: Store, registry: EtfRegistry, end: pd.Timestamp, need: int, inferred: pd.DataFrame):
    """The store's inputs from the ``need``-th trading day up to ``end`` through the newest day:
    enough old rows for every new day's window, the day before's (the time-safe returns use its
    hedge ratios) and the 252-day volatility. Returns (inputs, the tail's first day).

    One read from a calendar guess (trading days ≈ 5/7 of calendar days; 1.6× covers long
    holidays and halts), trimmed to the tail; a store too sparse for the guess is read whole.
    """
    guess = end - pd.Timedelta(days=int(need * 1.6) + 30)
    inputs = load_market_inputs(store, registry, guess, None, keep_inferred=inferred)
    before = inputs.returns.index[inputs.returns.index <= end]
    if len(before) < need:
        inputs = load_market_inputs(store, registry, None, None, keep_inferred=inferred)
        before = inputs.returns.index[inputs.returns.index <= end]
    tail_start = before[max(0, len(before) - need)] if len(before) else inputs.returns.index[0]
    inputs.returns = inputs.returns.loc[tail_start:]
    inputs.etf_returns = inputs.etf_returns.loc[tail_start:].copy()  # repaired in place below
    return inputs, tail_start


def _new_rows(engine: CascadeEngine, keep: np.ndarray, tickers: pd.DataFrame,
              progress: Callable[[int, int], None] | None) -> pd.DataFrame | None:
    """The engine's rows on the ``keep`` dates (the last k of the window) as one long table
    (one part). The engine computes those k dates only, for every stock in one block: each
    field is a single (k, N) array, so nothing is gathered and labels are resolved once."""
    prepared = engine.inputs
    k, n = int(keep.sum()), len(prepared.tickers)
    first_row = len(keep) - k
    if not keep[first_row:].all():
        raise ValueError("the dates to keep must be the last ones")
    block = engine.block(np.arange(n), check=True, first_row=first_row)
    if progress:
        progress(n, n)
    frame = block_frame(block, prepared.dates[keep], prepared.assignment.pairs, np.ones(k, dtype=bool), tickers)
    return frame if len(frame) else None


def _params(meta: dict) -> CascadeParams:
    p = meta.get("params") or {}
    if p.get("lstar_threshold", LSTAR_THRESHOLD) != LSTAR_THRESHOLD:
        raise DataValidationError(f"the cascade was built with L* threshold {p['lstar_threshold']}, this version of "
                                  f"riskstrata uses {LSTAR_THRESHOLD}: run `riskstrata build cascade`")
    params = CascadeParams(market_etf=p.get("market_etf", "SPY"), window=int(p["window"]),
                           halflife=p.get("halflife"), min_obs=int(p["min_obs"]))
    params.validate()
    return params


def _check_inferred(store: Store, registry: EtfRegistry, meta: dict, inferred: pd.DataFrame) -> None:
    """Re-run the build's inference on the range it read (meta ``loaded_from``) up to the newest
    day; refuse if any inferred security would get other ETFs (a rebuild would rewrite its rows)."""
    fresh = load_market_inputs(store, registry, meta.get("loaded_from"), None).assignments
    old, new = _norm_assignments(inferred), _norm_assignments(fresh[fresh["security_id"].isin(inferred["security_id"])])
    both = old.merge(new, on="security_id", suffixes=("", "_new"))
    moved = both[(both["sector_etf"].fillna("") != both["sector_etf_new"].fillna(""))
                 | (both["subsector_etf"].fillna("") != both["subsector_etf_new"].fillna(""))]
    if len(moved):
        names = [f"{r.security_id} ({r.sector_etf}/{r.subsector_etf} → {r.sector_etf_new}/{r.subsector_etf_new})"
                 for r in moved.head(5).itertuples()]
        raise DataValidationError(
            f"with the new data, the ETFs inferred from returns change for {len(moved)} securities "
            f"({'; '.join(names)}{' …' if len(moved) > 5 else ''}): a rebuild rewrites all their rows; "
            "run `riskstrata build cascade`")


def _check_registry(meta: dict, fingerprint: str) -> None:
    built_with = meta.get("registry")
    if built_with is None:
        raise StoreError("the current cascade version does not record its ETF registry (built by an older "
                         "riskstrata): run `riskstrata build cascade` once, then updates work")
    if built_with != fingerprint:
        raise DataValidationError("the cascade was built with a different ETF registry than this update's: pass "
                                  "the build's --registry, or run `riskstrata build cascade` with the new one")


def _check_gap(end: pd.Timestamp, first: pd.Timestamp, allow_gap: bool) -> None:
    missing = int(np.busday_count((end + pd.Timedelta(days=1)).date(), first.date()))
    if missing > MAX_GAP_WEEKDAYS and not allow_gap:
        raise DataValidationError(
            f"the store has no prices on the {missing} weekdays between {end.date()} (the model's last day) and "
            f"{first.date()} (the first new one): ingest the missing days, or pass --allow-gap to treat "
            f"{first.date()} as the next trading day (as a rebuild would)")


def _norm_assignments(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[KEY].copy()
    out["security_id"] = out["security_id"].astype(str)
    out["valid_from"] = pd.to_datetime(out["valid_from"]).astype("datetime64[ns]")
    for col in ("sector_etf", "subsector_etf"):
        out[col] = out[col].astype("str")  # text, NaN when missing (None, NaN or NA alike)
    return out


def _assignment_keys(frame: pd.DataFrame) -> set[tuple]:
    """The rows of an assignment table as (security_id, valid_from in ns (NaT: the smallest),
    sector_etf, subsector_etf) tuples, a missing ETF as None: equal rows give equal tuples."""
    norm = _norm_assignments(frame)
    since = norm["valid_from"].to_numpy(dtype="datetime64[ns]").view(np.int64)  # NaT is the smallest int64
    etfs = [[None if pd.isna(v) else v for v in norm[col].tolist()] for col in ("sector_etf", "subsector_etf")]
    return set(zip(norm["security_id"].tolist(), since.tolist(), *etfs))


def _check_assignments(stored: pd.DataFrame, current: pd.DataFrame, end: pd.Timestamp
                       ) -> tuple[pd.DataFrame | None, list[str]]:
    """Compare the window's assignments with the published ones.

    Returns (the table to store, or None when unchanged; notes). Raises DataValidationError when a
    security's ETFs changed on a date the published rows cover.
    """
    old, now = _assignment_keys(stored), _assignment_keys(current)
    old_ids, now_ids = {k[0] for k in old}, {k[0] for k in now}
    # Securities outside the window (no price in it) keep their rows; new ones bring their own.
    changed = [k for k in old ^ now if k[0] in old_ids and k[0] in now_ids]
    end_ns = end.as_unit("ns").value
    bad = sorted({k[0] for k in changed if k[1] <= end_ns})
    if bad:
        raise DataValidationError(
            f"the ETF assignments of {len(bad)} securities changed since the cascade was built "
            f"({', '.join(bad[:5])}{' …' if len(bad) > 5 else ''}) on dates it already covers: "
            "run `riskstrata build cascade` (an update only appends rows)")
    added = now - old
    if not added:
        return None, []
    notes = []
    moved = {k[0] for k in added if k[0] in old_ids}
    if moved:
        notes.append(f"{len(moved)} securities change ETFs from a new day on")
    # The stored table: rows of securities outside the window unchanged, the window's as loaded.
    merged = pd.concat([stored[~stored["security_id"].astype(str).isin(now_ids)], current[ASSIGNMENT_COLUMNS]],
                       ignore_index=True)
    return merged.astype({"valid_from": "datetime64[ns]"}), notes


def _repair_leading_etf_holes(store: Store, etf_returns: pd.DataFrame, tail_start: pd.Timestamp,
                              market_etf: str) -> None:
    """An ETF whose missing days begin the window but which traded before it: a rebuild sees those
    days inside its history and sets them to a zero return (prepare_inputs); do the same here."""
    starts_missing = etf_returns.iloc[0].isna() & etf_returns.notna().any()
    leading = [c for c in etf_returns.columns[starts_missing.to_numpy()] if c != market_etf]
    if not leading:
        return
    listed = store.query(
        f"SELECT DISTINCT ticker FROM prices WHERE date < ? AND isfinite(ret) AND ticker IN "
        f"({', '.join('?' for _ in leading)})", [tail_start.to_pydatetime(), *leading])["ticker"]
    for etf in set(listed) & set(leading):
        col = etf_returns[etf]
        first = col.notna().to_numpy().argmax()
        etf_returns.iloc[:first, etf_returns.columns.get_loc(etf)] = 0.0


def _published_window(store: Store, previous: str, check_from: pd.Timestamp, end: pd.Timestamp
                      ) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """The returns the published version used on its trading days in [check_from, end]:
    (days, securities (N,), returns (days × N) float64, NaN = none), and ``securities`` every
    security the version covers.

    From the arrays the version keeps beside its parts (a few hundred kB: the window's returns
    as the build or the last update read them, the very values of its ``returns_gross``); a
    version written before them is read back from its rows (every part is scanned: the parts
    span all dates), and then covers the securities with rows in the window.
    """
    kept = store.read_arrays(MODEL, WINDOW_ARRAYS, previous)
    if kept is not None:
        rows = kept["dates"] >= check_from.to_datetime64()
        days = pd.DatetimeIndex(kept["dates"][rows])
        published = np.full((len(days), len(kept["securities"])), np.nan)
        published[:, kept["traded"]] = kept["returns"][rows]
        return days, kept["securities"].astype(str), published
    stored = store.read_model(MODEL, version=previous, columns=["date", "security_id", "returns_gross"],
                              where="date >= ? AND date <= ?",
                              params=[check_from.to_pydatetime(), end.to_pydatetime()])
    days = pd.DatetimeIndex(stored["date"].unique()).sort_values()
    # (days × securities) of the published returns, scattered from the long rows (a pivot sorts).
    sid = pd.Categorical(stored["security_id"].astype(str))
    published = np.full((len(days), len(sid.categories)), np.nan)
    published[days.get_indexer(stored["date"]), sid.codes] = stored["returns_gross"].to_numpy(np.float64)
    return days, np.asarray(sid.categories, dtype=str), published


def _check_overlap(store: Store, previous: str, prepared: PreparedInputs, check_from: pd.Timestamp,
                   end: pd.Timestamp) -> np.ndarray:
    """The published rows of [check_from, end] must be what the window re-reads: the same trading
    days and the same returns per security, bit for bit. Returns the securities the published
    version covers (:func:`_published_window`)."""
    days, securities, published = _published_window(store, previous, check_from, end)
    in_window = (prepared.dates >= check_from) & (prepared.dates <= end)
    loaded_days = prepared.dates[in_window]
    if not loaded_days.equals(days):
        extra = loaded_days.difference(days)
        gone = days.difference(loaded_days)
        raise DataValidationError(
            "the trading days the cascade covers changed since it was built "
            f"({len(extra)} new: {[str(d.date()) for d in extra[:3]]}, {len(gone)} gone: "
            f"{[str(d.date()) for d in gone[:3]]}): run `riskstrata build cascade`")
    loaded = prepared.returns[in_window]
    ids = prepared.tickers.astype(str)
    traded = np.isfinite(loaded).any(axis=0)
    position = pd.Index(securities).get_indexer(ids)
    unseen = sorted(ids[traded & (position < 0)])
    if unseen:
        raise DataValidationError(
            f"{len(unseen)} securities have returns on days the cascade covers but no rows in it "
            f"({', '.join(unseen[:5])}{' …' if len(unseen) > 5 else ''}: history ingested since the build): "
            "run `riskstrata build cascade`")
    # The loaded returns laid out as the published ones (a security not re-read: NaN).
    again = np.full_like(published, np.nan)
    again[:, position[position >= 0]] = loaded[:, position >= 0]
    differ = ~((published == again) | (np.isnan(published) & np.isnan(again)))
    if differ.any():
        order = np.argsort(securities, kind="stable")  # the first difference: by day, then security
        t, j = np.nonzero(differ[:, order])
        raise DataValidationError(
            f"{int(differ.sum())} returns inside the trailing window differ from the published model "
            f"(first: {securities[order[j[0]]]} on {days[t[0]].date()}; prices corrected or re-ingested since the "
            "build): run `riskstrata build cascade`")
    return securities


def _publish(store: Store, previous: str, meta: dict, params: CascadeParams, fingerprint: str,
             new_days: pd.DatetimeIndex, rows: pd.DataFrame | None, links: pd.DataFrame, notes: list[str],
             n_new_securities: int, window: dict[str, np.ndarray]) -> str:
    """A new version = the previous version's parts (hard links) + one part of new rows, for the
    cascade and for its link betas, and the window's returns for the next update to check
    (:func:`~riskstrata.services.cascade.window_arrays`); the cascade becomes current only if
    no build published meanwhile, and its link betas with it."""
    tag = f"u{new_days[-1]:%Y%m%d}-{uuid.uuid4().hex[:6]}"
    link_prev = meta["link_version"]
    with store.begin_version(LINK_MODEL) as writer:
        for part in store.model_meta(LINK_MODEL, link_prev)["parts"]:
            writer.adopt_part(store.model_dir(LINK_MODEL) / link_prev / part["file"], part["rows"])
        if len(links):
            writer.write_part(links, name=tag)
        link_version = writer.commit({"model": LINK_MODEL, "params": meta["params"], "updated_from": link_prev},
                                     make_current=False)
    full = pd.DatetimeIndex([pd.Timestamp(meta["start"]), new_days[-1]])
    new_meta = model_meta(params, full, meta.get("notes", []), None, fingerprint)
    if "loaded_from" in meta:
        new_meta["loaded_from"] = meta["loaded_from"]
    n_rows = 0 if rows is None else len(rows)
    with store.begin_version(MODEL) as writer:
        for part in meta["parts"]:
            writer.adopt_part(store.model_dir(MODEL) / previous / part["file"], part["rows"])
        if n_rows:
            writer.write_part(rows, name=tag)
        writer.write_arrays(WINDOW_ARRAYS, window)
        if store.current_version(MODEL) != previous:
            raise StoreError("the cascade was republished while this update ran: run `riskstrata update` again")
        version = writer.commit({**new_meta, "securities": int(meta.get("securities", 0)) + n_new_securities,
                                 "link_version": link_version,
                                 "updated_from": previous,
                                 "update": {"new_dates": [str(d.date()) for d in new_days], "rows": n_rows,
                                            "notes": notes}})
    store.set_current(LINK_MODEL, link_version)
    return version
