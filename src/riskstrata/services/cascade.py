"""Model A over the store: build a version, and answer per-ticker questions from it.

The CLI and (later) the REST API call these functions; they never do math themselves.
Stocks are keyed by ``security_id`` inside the build (a recycled ticker stays two securities);
the stored rows also carry the ticker each security traded under on that date.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from riskstrata.cascade.fit import (VOL_LONG_WINDOW, CascadeBlock, CascadeEngine, CascadeParams, PreparedInputs,
                                    prepare_inputs)
from riskstrata.cascade.kernel import describe_flags
from riskstrata.cascade.lstar import DEFAULT_SEGMENT, LSTAR_THRESHOLD, lstar_level, recommended_hedge_level
from riskstrata.cascade.attribution import Attribution, geometric_attribution
from riskstrata.cascade.result import WIRE_FIELDS, long_frame
from riskstrata.data.master import SecurityMaster
from riskstrata.data.registry import EtfRegistry, infer_assignments
from riskstrata.data.ingest import load_returns
from riskstrata.data.store import Store, VersionWriter, date_range_clause
from riskstrata.errors import DataValidationError, DateOutOfRange, InsufficientHistory, StoreError

MODEL = "cascade"
LINK_MODEL = "cascade_link_betas"
# The arrays a version keeps beside its parts: its last trading days' returns, what the next
# daily update re-reads and must find unchanged (services.update), without scanning the rows.
WINDOW_ARRAYS = "window_returns"
ASSIGNMENT_COLUMNS = ["security_id", "ticker", "valid_from", "sector_etf", "subsector_etf", "assignment_source", "note"]


@dataclass
class MarketInputs:
    """What the engine needs, read from the store.

    returns: (T dates × N security_id) daily returns; etf_returns: (T × E) by ETF ticker;
    assignments: dated rows (security_id as ``ticker``, valid_from, sector_etf, subsector_etf).
    """

    returns: pd.DataFrame
    etf_returns: pd.DataFrame
    assignments: pd.DataFrame
    tickers: pd.DataFrame  # security_id, ticker, valid_from, valid_to (who traded under what)
    notes: list[str] = field(default_factory=list)


def load_market_inputs(store: Store, registry: EtfRegistry | None = None, start: object | None = None,
                       end: object | None = None, keep_inferred: pd.DataFrame | None = None) -> MarketInputs:
    """Returns, ETF returns and dated ETF assignments from the store's prices and classifications.

    keep_inferred: assignment rows (ASSIGNMENT_COLUMNS) already inferred from returns for securities
    without a classification; those securities keep them instead of being inferred again from
    [start, end] (an incremental update reads only its trailing window, too short to re-infer).
    """
    registry = registry or EtfRegistry.default()
    if not store.has_table("prices"):
        raise StoreError(f"no prices in store {store.root}: run `riskstrata ingest prices FILE` first")
    returns = load_returns(store, start, end)
    if returns.empty:
        raise DateOutOfRange("no prices in the requested date range")
    master = SecurityMaster.from_store(store)
    records = master.records
    notes: list[str] = []

    # ETF returns by ticker, from the security each ETF ticker names at the end of the range.
    last_day = returns.index[-1]
    etf_ids = master.resolve_many(registry.etfs(), last_day).dropna()
    etf_ids = etf_ids[etf_ids.isin(returns.columns)]
    if registry.market_etf not in etf_ids.index:
        raise StoreError(f"the market ETF {registry.market_etf} has no prices in the store; ingest it first")
    etf_returns = returns[etf_ids.to_numpy()].set_axis(etf_ids.index.to_list(), axis=1)
    available = set(etf_returns.columns)

    assignments = _assignments(store, registry, records, returns, etf_returns, etf_ids, notes, keep_inferred)
    # An ETF the registry names but the store lacks: fall back one level rather than fail.
    for col in ("subsector_etf", "sector_etf"):
        missing = assignments[col].notna() & ~assignments[col].isin(available)
        if missing.any():
            notes.append(f"{int(missing.sum())} assignments name {col.replace('_', ' ')}s with no prices "
                         f"({sorted(assignments.loc[missing, col].unique())[:8]}); that level falls back")
            if col == "subsector_etf":
                assignments.loc[missing, col] = assignments.loc[missing, "sector_etf"]
            else:
                assignments.loc[missing, col] = None
    bad_sub = assignments["subsector_etf"].notna() & ~assignments["subsector_etf"].isin(available)
    assignments.loc[bad_sub, "subsector_etf"] = None
    tickers = records[["security_id", "ticker", "valid_from", "valid_to"]]
    return MarketInputs(returns, etf_returns, assignments, tickers, notes)


def _assignments(store: Store, registry: EtfRegistry, records: pd.DataFrame, returns: pd.DataFrame,
                 etf_returns: pd.DataFrame, etf_ids: pd.Series, notes: list[str],
                 keep_inferred: pd.DataFrame | None = None) -> pd.DataFrame:
    """Dated assignments per security: classifications via the registry, ETFs via their parents,
    and the data-driven fallback (flagged ``inferred``) for stocks with neither."""
    frames = []
    if store.has_table("classifications"):
        cls = store.read_table("classifications")
        cls = cls[cls["security_id"].isin(returns.columns)]
        assigned = registry.assign(cls)
        frames.append(assigned.assign(valid_from=pd.to_datetime(assigned["valid_from"])))
    etf_rows = pd.DataFrame({"security_id": etf_ids.to_numpy(), "ticker": etf_ids.index})
    if len(etf_rows):
        parents = [registry.parent_of(t) for t in etf_rows["ticker"]]
        frames.append(etf_rows.assign(valid_from=pd.NaT, sector_etf=[p["sector_etf"] for p in parents],
                                      subsector_etf=[p["subsector_etf"] for p in parents],
                                      assignment_source="registry_etf", note="ETF decomposed as an asset"))
    known = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ASSIGNMENT_COLUMNS)
    unclassified = returns.columns.difference(pd.Index(known["security_id"].dropna().unique()))
    if keep_inferred is not None and len(unclassified):
        kept = keep_inferred[keep_inferred["security_id"].isin(unclassified)]
        if len(kept):
            frames.append(kept)
            notes.append(f"{kept['security_id'].nunique()} securities without a classification keep the ETFs "
                         "inferred from returns at the last build (a rebuild re-infers them from the longer "
                         "history; `update --check-inferred` refuses if any would move)")
            known = pd.concat(frames, ignore_index=True)
            unclassified = unclassified.difference(pd.Index(kept["security_id"].unique()))
    if len(unclassified) and any(e in etf_returns.columns for e in registry.sector_etfs()):
        inferred = infer_assignments(returns[unclassified], etf_returns, registry)
        inferred = inferred.rename_axis("security_id").reset_index()
        frames.append(inferred.assign(valid_from=pd.NaT, ticker=inferred["security_id"]))
        notes.append(f"{len(unclassified)} securities without a classification: ETFs inferred from returns")
        known = pd.concat(frames, ignore_index=True)
    elif len(unclassified):
        notes.append(f"{len(unclassified)} securities without a classification and no sector ETF prices: "
                     "market (L1) hedge only")
    known = known.drop_duplicates(["security_id", "valid_from"], keep="last")
    for col in ASSIGNMENT_COLUMNS:
        if col not in known.columns:
            known[col] = None
    return known[ASSIGNMENT_COLUMNS].reset_index(drop=True)


def _ticker_labels(tickers: pd.DataFrame, security_ids: pd.Categorical, dates: np.ndarray) -> pd.Categorical:
    """The ticker each (security_id, date) row traded under, from the master's dated records.

    Most securities have one ticker for life and map directly; only renamed or recycled ones
    need the point-in-time join.
    """
    records = tickers.assign(valid_from=pd.to_datetime(tickers["valid_from"])).sort_values("valid_from")
    first = records.groupby("security_id")["ticker"].first()
    label = pd.Series(first.reindex(security_ids.categories).to_numpy(dtype=object))[security_ids.codes].to_numpy()
    several = records["security_id"].duplicated(keep=False)
    if several.any():
        moved = np.flatnonzero(np.isin(np.asarray(security_ids), records.loc[several, "security_id"].unique()))
        left = pd.DataFrame({"security_id": np.asarray(security_ids)[moved], "date": dates[moved], "pos": moved})
        right = records.loc[several, ["security_id", "valid_from", "ticker"]]
        hit = pd.merge_asof(left.sort_values("date"), right, left_on="date", right_on="valid_from", by="security_id",
                            direction="backward")
        ok = hit["ticker"].notna()  # days before a security's first record keep its first ticker
        label[hit.loc[ok, "pos"].to_numpy()] = hit.loc[ok, "ticker"].to_numpy(dtype=object)
    return pd.Categorical(label)


@dataclass
class BuildSummary:
    version: str
    rows: int
    securities: int
    dates: tuple[str, str]
    seconds: float
    notes: list[str]


def registry_fingerprint(registry: EtfRegistry | None) -> str:
    """A short hash of the ETF registry a build used: an update must use the same one."""
    registry = registry or EtfRegistry.default()
    text = registry.market_etf + "\n" + registry.table.to_csv(index=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def model_meta(params: CascadeParams, dates: pd.DatetimeIndex, notes: list[str], registry: EtfRegistry | None,
               fingerprint: str | None = None) -> dict:
    """The meta.json fields of a cascade version covering ``dates`` (first … last stored date);
    fingerprint: the registry's :func:`registry_fingerprint` when the caller has it already."""
    return {"model": MODEL, "params": {"window": params.window, "halflife": params.halflife,
                                       "min_obs": params.min_obs_effective, "market_etf": params.market_etf,
                                       "lstar_threshold": LSTAR_THRESHOLD},
            "start": str(dates[0].date()), "end": str(dates[-1].date()), "notes": notes,
            "identities_checked": True, "registry": fingerprint or registry_fingerprint(registry)}


def window_arrays(prepared: PreparedInputs, days: int, securities: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """What a version keeps of its inputs for the next update's check: the returns of its last
    ``days`` trading days (``dates`` (D,) datetime64[ns]; ``returns`` (D, M) float64, NaN = none)
    for the M securities that traded on one of them (``traded``: (M,) positions in
    ``securities``), and ``securities`` (N,): every security the version covers (default: the
    inputs' columns)."""
    rows = slice(max(0, len(prepared.dates) - days), None)
    returns = prepared.returns[rows]
    ids = np.asarray(prepared.tickers.astype(str) if securities is None else securities, dtype=str)
    traded_here = np.flatnonzero(np.isfinite(returns).any(axis=0))
    position = pd.Index(ids).get_indexer(prepared.tickers.astype(str)[traded_here])
    if (position < 0).any():
        raise ValueError("securities must include every security that traded in the window")
    return {"dates": prepared.dates[rows].to_numpy(dtype="datetime64[ns]"), "securities": ids,
            "traded": position.astype(np.int64), "returns": np.ascontiguousarray(returns[:, traded_here])}


def block_frame(block: CascadeBlock, dates: pd.DatetimeIndex, pairs: list, keep: np.ndarray, tickers: pd.DataFrame
                ) -> pd.DataFrame:
    """One engine block's stored rows: the dates where ``keep`` (a (T,) bool over ``dates``) is
    true, as the long table (date, security_id, ticker, fields…, sector_etf, subsector_etf) that a
    version holds. pairs: the assignment's ETF pairs (``block.codes`` index them).

    tickers: the master's dated ticker records of (at least) the block's securities.
    """
    values = {k: v[keep] for k, v in block.values.items()}
    frame = long_frame(dates[keep], pd.Index(block.tickers), values, block.codes[keep], pairs, key="security_id")
    frame.insert(2, "ticker", _ticker_labels(tickers, frame["security_id"].array, frame["date"].to_numpy()))
    return frame


def build_cascade(store: Store, *, window: int = 252, halflife: float | None = None, min_obs: int | None = None,
                  start: object | None = None, end: object | None = None, registry: EtfRegistry | None = None,
                  progress: Callable[[int, int], None] | None = None, cluster: str | None = None) -> BuildSummary:
    """Fit the cascade on the store's data and publish it as a new version, atomically.

    Reads from ``window`` trading days (×1.5 in calendar days) before ``start`` so the first
    stored date has a full window. Identities are checked per block; a violation raises
    IdentityViolation and nothing is published. progress(done, total) is called per block.
    cluster: a dask.distributed scheduler address or ``local:N`` (a LocalCluster of N workers):
    the blocks run there, partitioned by ETF pair, and the workers write the parts
    (:mod:`riskstrata.services.distributed`); the same engine, the same rows.
    """
    began = time.perf_counter()
    params = CascadeParams(window=window, halflife=halflife, min_obs=min_obs)
    params.validate()
    if cluster is not None:
        from riskstrata.services.distributed import parse_cluster

        parse_cluster(cluster)  # a malformed --cluster fails before the data is read
    load_from = None if start is None else pd.Timestamp(start) - pd.Timedelta(days=int(window * 1.5) + 10)
    inputs = load_market_inputs(store, registry, load_from, end)
    by_security = inputs.assignments[["security_id", "valid_from", "sector_etf", "subsector_etf"]]
    prepared = prepare_inputs(inputs.returns, inputs.etf_returns, by_security.rename(columns={"security_id": "ticker"}),
                              params)
    engine = CascadeEngine(prepared, params)
    keep = prepared.dates >= pd.Timestamp(start) if start is not None else np.ones(len(prepared.dates), bool)
    if not keep.any():
        raise DateOutOfRange(f"no trading days on or after {start}")
    total = len(prepared.tickers)
    meta = model_meta(params, prepared.dates[keep], inputs.notes + prepared.diagnostics, registry)
    meta["loaded_from"] = str(prepared.dates[0].date())  # the range inferred ETFs were fitted on
    with store.begin_version(LINK_MODEL) as links:
        links.write_part(engine.link_betas(keep))
        # Current only once the cascade naming it is: a build killed before then leaves no orphan current.
        link_version = links.commit({"model": LINK_MODEL, "params": meta["params"]}, make_current=False)
    with store.begin_version(MODEL) as writer:
        if cluster is None:
            rows = _write_blocks(engine, prepared, keep, inputs.tickers, writer, progress)
        else:
            from riskstrata.services.distributed import write_blocks_on_cluster

            rows, cluster_info = write_blocks_on_cluster(cluster, prepared, params, keep, inputs.tickers, writer,
                                                         progress)
            meta["cluster"] = cluster_info
        writer.write_arrays(WINDOW_ARRAYS, window_arrays(prepared, max(params.window, VOL_LONG_WINDOW)))
        version = writer.commit({**meta, "rows": rows, "securities": total, "link_version": link_version})
    store.set_current(LINK_MODEL, link_version)
    store.write_table("cascade_assignments", inputs.assignments.astype({"valid_from": "datetime64[ns]"}))
    return BuildSummary(version, rows, total, (meta["start"], meta["end"]), time.perf_counter() - began, meta["notes"])


def _write_blocks(engine: CascadeEngine, prepared: PreparedInputs, keep: np.ndarray, tickers: pd.DataFrame,
                  writer: VersionWriter, progress: Callable[[int, int], None] | None) -> int:
    """Fit every block in this process and write one part per block; returns the rows written."""
    total, done, rows = len(prepared.tickers), 0, 0
    # Parquet encoding releases the GIL: write each part on a second thread while the next
    # block is computed, keeping at most one part in flight.
    with ThreadPoolExecutor(max_workers=1) as io:
        pending = None
        for block in engine.blocks(check=True):
            frame = block_frame(block, prepared.dates, prepared.assignment.pairs, keep, tickers)
            if pending is not None:
                pending.result()
            pending = io.submit(writer.write_part, frame)
            rows += len(frame)
            done += len(block.tickers)
            if progress:
                progress(done, total)
        if pending is not None:
            pending.result()
    return rows


# ---------------------------------------------------------------------------------------------
# Reading a built model.

def _resolve(store: Store, ticker: str, as_of: object | None) -> tuple[str, pd.Timestamp]:
    """ticker → (security_id, date) from the store's master; as_of defaults to the model's end."""
    meta = store.model_meta(MODEL)
    day = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp(meta["end"])
    if day < pd.Timestamp(meta["start"]) or day > pd.Timestamp(meta["end"]):
        raise DateOutOfRange(f"{day.date()} is outside the built model ({meta['start']} … {meta['end']})")
    return SecurityMaster.from_store(store).resolve(ticker, day), day


def metrics(store: Store, ticker: str, date: object | None = None) -> dict:
    """The latest row on or before ``date`` for one ticker: every wire field plus ETFs used and notes."""
    sid, day = _resolve(store, ticker, date)
    rows = store.read_model(MODEL, where="security_id = ? AND date <= ?", params=[sid, day.to_pydatetime()])
    if rows.empty:
        raise InsufficientHistory(f"{ticker} has no model rows on or before {day.date()}")
    row = rows.sort_values("date").iloc[-1]
    return metrics_from_row(row, sid, store.model_meta(MODEL)["params"]["market_etf"],
                            _assignment_source(store, sid, day))


def latest_metrics(store: Store, snapshot: pd.DataFrame | None = None) -> dict[str, dict]:
    """:func:`metrics` for every security on the model's last date, keyed by upper-case ticker,
    from one scan of the model and one of the assignments (what a server holds in memory).
    ``snapshot``: the last date's rows (:func:`stored_snapshot`) when the caller already has them."""
    snap = stored_snapshot(store) if snapshot is None else snapshot
    market = store.model_meta(MODEL)["params"]["market_etf"]
    sources: dict[str, str | None] = {}
    if store.has_table("cascade_assignments"):
        a = store.read_table("cascade_assignments", columns=["security_id", "valid_from", "assignment_source"])
        a = a.sort_values("valid_from", na_position="first").groupby("security_id")["assignment_source"].last()
        sources = {k: _text(v) for k, v in a.items()}
    return {str(t).upper(): metrics_from_row(row, str(row["security_id"]), market, sources.get(str(row["security_id"])))
            for t, row in snap.iterrows()}


def metrics_from_row(row: pd.Series, sid: str, market_etf: str, assignment_source: str | None) -> dict:
    """One stored model row as the metrics dict (wire names; NaN → None)."""
    ticker = row["ticker"] if "ticker" in row.index else row.name  # a snapshot row is indexed by ticker
    out = {"ticker": str(ticker), "security_id": sid, "date": str(pd.Timestamp(row["date"]).date())}
    for f in WIRE_FIELDS:
        out[f] = _clean(row[f])
    out["lstar_level"] = int(row["lstar_level"]) or None
    out.update({"sector_etf": _text(row["sector_etf"]), "subsector_etf": _text(row["subsector_etf"]),
                "market_etf": market_etf, "l1_mkt_beta": _clean(row["l1_mkt_beta"]), "n_obs": int(row["n_obs"]),
                "flags": int(row["flags"]), "notes": describe_flags(int(row["flags"]))})
    out["assignment_source"] = assignment_source
    out["recommended_hedge_level"] = "L%d" % int(recommended_hedge_level(  # "L1"/"L2"/"L3", as on the wire
        {k: np.array([out[k] if out[k] is not None else np.nan]) for k in
         ("l2_sec_er", "l3_sub_er", "l1_mkt_hr", "l2_mkt_hr", "l2_sec_hr", "l3_mkt_hr", "l3_sec_hr", "l3_sub_hr")},
        DEFAULT_SEGMENT)[0])
    return out


def _assignment_source(store: Store, security_id: str, day: pd.Timestamp) -> str | None:
    """How the security's ETFs were chosen on ``day``: gics, direct, registry_etf or inferred."""
    if not store.has_table("cascade_assignments"):
        return None
    rows = store.read_table("cascade_assignments", columns=["valid_from", "assignment_source"],
                            where="security_id = ?", params=[security_id])
    rows = rows[rows["valid_from"].isna() | (rows["valid_from"] <= day)]
    return None if rows.empty else _text(rows.sort_values("valid_from", na_position="first")["assignment_source"].iloc[-1])


def _text(value: object) -> str | None:
    """A stored string or None (nulls come back from Parquet as None or NaN)."""
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _clean(value: object) -> float | None:
    """JSON-safe float: NaN/inf → None."""
    if value is None:
        return None
    v = float(value)
    return v if np.isfinite(v) else None


def history(store: Store, ticker: str, start: object | None = None, end: object | None = None,
            fields: list[str] | None = None) -> pd.DataFrame:
    """One security's stored rows (dates × fields), resolved by ticker as of ``end``."""
    meta = store.model_meta(MODEL)
    first, last = pd.Timestamp(meta["start"]), pd.Timestamp(meta["end"])
    if (start is not None and pd.Timestamp(start) > last) or (end is not None and pd.Timestamp(end) < first):
        raise DateOutOfRange(f"{start or '…'} – {end or '…'} does not overlap the built model ({meta['start']} … {meta['end']})")
    # A range reaching past the model is clipped to it; the ticker is resolved on the range's last day.
    sid, _ = _resolve(store, ticker, min(pd.Timestamp(end), last) if end is not None else None)
    where, params = date_range_clause(start, end)
    where, params = ["security_id = ?", *where], [sid, *params]
    cols = None if fields is None else ["date", *fields]
    rows = store.read_model(MODEL, columns=cols, where=" AND ".join(where), params=params)
    return rows.sort_values("date").set_index("date")


def decompose(store: Store, ticker: str, date: object | None = None) -> dict:
    """Four-bet view on one date: market / sector / subsector / residual ER, HR and hedge ETF (L3)."""
    return four_bets(metrics(store, ticker, date))


def four_bets(m: dict) -> dict:
    """The four-bet view of one :func:`metrics` row (pure)."""
    bets = {
        "market": {"er": m["l3_mkt_er"], "hr": m["l3_mkt_hr"], "hedge_etf": m["market_etf"]},
        "sector": {"er": m["l3_sec_er"], "hr": m["l3_sec_hr"], "hedge_etf": m["sector_etf"]},
        "subsector": {"er": m["l3_sub_er"], "hr": m["l3_sub_hr"], "hedge_etf": m["subsector_etf"]},
        "residual": {"er": m["l3_res_er"], "hr": None, "hedge_etf": None},
    }
    return {"ticker": m["ticker"], "date": m["date"], "bets": bets, "notes": m["notes"]}


# The stored columns L* is read or recomputed from.
LSTAR_FIELDS = ("l2_sec_er", "l3_sub_er", "l1_rr", "l2_rr", "l3_rr", "lstar_level", "lstar_rr")


def lstar_history(store: Store, ticker: str, threshold: float | None = None, start: object | None = None,
                  end: object | None = None) -> pd.DataFrame:
    """Per-date L*: the stored level (θ = 0.01) when threshold is None, else recomputed with θ.

    Columns: lstar_level, lstar_rr (time-safe: residual of the level chosen the day before),
    l2_sec_er, l3_sub_er, threshold.
    """
    return lstar_from_rows(history(store, ticker, start, end, list(LSTAR_FIELDS)), threshold)


def lstar_from_rows(h: pd.DataFrame, threshold: float | None = None) -> pd.DataFrame:
    """:func:`lstar_history` from one security's stored rows (dates × at least ``LSTAR_FIELDS``,
    ascending), for callers that read them with other fields in the same scan (pure)."""
    if threshold is not None and len(h):
        level = lstar_level(h["l2_sec_er"].to_numpy(), h["l3_sub_er"].to_numpy(), threshold)
        held = np.concatenate([[0], level[:-1]])
        rr = np.full(len(h), np.nan)
        for k in (1, 2, 3):
            rr = np.where(held == k, h[f"l{k}_rr"].to_numpy(), rr)
        h = h.assign(lstar_level=level, lstar_rr=rr)
    return h[["lstar_level", "lstar_rr", "l2_sec_er", "l3_sub_er"]].assign(
        threshold=LSTAR_THRESHOLD if threshold is None else threshold)


def attribution(store: Store, ticker: str, start: object | None = None, end: object | None = None) -> Attribution:
    """Geometric market/sector/subsector/residual bridge for one ticker over [start, end]."""
    h = history(store, ticker, start, end, ["returns_gross", "l1_cfr", "l2_cfr", "l3_cfr"])
    if h.empty:
        raise DateOutOfRange(f"no model rows for {ticker} between {start} and {end}")
    return geometric_attribution(h["returns_gross"], h["l1_cfr"], h["l2_cfr"], h["l3_cfr"])


def stored_frame(store: Store, field: str, start: object | None = None, end: object | None = None,
                 tickers: list[str] | None = None) -> pd.DataFrame:
    """One field of the built model as a (dates × tickers) frame, like ``CascadeResult[field]``.

    Columns are the tickers as traded on each row's date; pass ``tickers`` to restrict (a
    predicate pushed down to the Parquet scan).
    """
    if field not in WIRE_FIELDS and field not in ("returns_gross", "lambda_sm", "lambda_um", "lambda_us", "n_obs", "flags"):
        raise DataValidationError(f"no field {field!r} in the cascade model; fields are {WIRE_FIELDS}")
    where, params = date_range_clause(start, end)
    if tickers:
        where.append(f"ticker IN ({', '.join('?' for _ in tickers)})")
        params.extend(t.upper() for t in tickers)
    rows = store.read_model(MODEL, columns=["date", "ticker", field], where=" AND ".join(where) or None,
                            params=params or None)
    return rows.pivot_table(index="date", columns="ticker", values=field, aggfunc="last", observed=True).sort_index()


def stored_snapshot(store: Store, date: object | None = None) -> pd.DataFrame:
    """Every security on one date (default: the model's last) as (tickers × fields)."""
    day = pd.Timestamp(date) if date is not None else pd.Timestamp(store.model_meta(MODEL)["end"])
    last = store.query(f"SELECT max(date) AS d FROM model_{MODEL} WHERE date <= ?", [day.to_pydatetime()])["d"].iloc[0]
    if pd.isna(last):
        raise DateOutOfRange(f"no model rows on or before {day.date()}")
    rows = store.read_model(MODEL, where="date = ?", params=[pd.Timestamp(last).to_pydatetime()])
    return rows.set_index("ticker").sort_index()
