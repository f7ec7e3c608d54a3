"""What a published Model B version keeps for its daily update, and the fingerprint of its inputs.

A build (and every update) writes ``update_state.npz`` beside the exposures version's parts: the
running state each step needs to go on from the model's last date without the history —

- the names' :class:`~riskstrata.factors.model.HistoryCounts` through the last date (the
  estimation universe's history rule and the primary share class look back to each name's first
  day; a trailing panel gets them from here),
- the specific-risk recursions (:class:`~riskstrata.factors.specific.SpecificState`),
- the validation's accumulators (:class:`~riskstrata.factors.validation.ValidationState`),
- the regression's notes per date (the factor status quotes them for gaps),
- what the update would otherwise read back from the published parts
  (:class:`PublishedTail`: the covariance's history as its extension reads it, the last date's
  exposures).

Beside it, ``update_panels.npz`` keeps the fundamentals panels of the trailing rows and the
snapshots in force on the last date (:class:`TrailingPanels`): an update computes only the new
days' rows of them. Beside the factor_returns version's parts, ``update_returns.npz`` keeps the
published factors' returns and coverage (:func:`returns_arrays`), so an update reads no part.

The version's meta.json also records :func:`input_digest`: a fingerprint of every input row the
model has seen. An update recomputes it over the same rows; any difference — a corrected price,
a fundamentals backfill, a reclassification, a new issuer mapping — means the published numbers
no longer follow from the store, and only a rebuild is right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from riskstrata.data.fundamentals import SnapshotsInForce
from riskstrata.data.row_sums import DIGEST_BY
from riskstrata.data.store import Store
from riskstrata.factors.covariance import FactorCovariance
from riskstrata.factors.model import HistoryCounts
from riskstrata.factors.specific import SpecificState
from riskstrata.factors.validation import ValidationState

STATE_ARRAYS = "update_state"
PANELS_ARRAYS = "update_panels"
RETURNS_ARRAYS = "update_returns"  # beside a factor_returns version's parts: what an update reads of them


# The dated input tables: per table, the date column that says which rows a model ending on
# ``end`` has read, and the columns that matter (the data layer's declaration: the store keeps
# their per-date sums in each table's footer).
_DATED = {table: (by.date, list(by.columns) if by.columns is not None else None) for table, by in DIGEST_BY.items()}
_WHOLE = ("classifications",)   # a name's sector is its latest classification, on every date


def _sums(store: Store, after: object | None, ends: list[object], names: pd.Index | None = None, *,
          dated: bool = True) -> dict[tuple[str, int], tuple[int, int]]:
    """{(table, span): (rows, Σ row hashes)}, in one query that reads each table once: the dated
    tables (unless not ``dated``) over the rows dated in (after, ends[0]] (span 0), (ends[0],
    ends[1]] (span 1), … (``ends`` ascending); with ``names``, also the undated inputs
    (:func:`input_digest`, span 0). A table the store lacks is absent; a span without rows (0, 0).

    A dated table whose footer keeps its per-date sums (:meth:`~riskstrata.data.store.Store.table_row_sums`)
    is not read: its spans are added up from them (the same integers the query gives)."""
    parts, params, spans = [], [], []
    found: dict[tuple[str, int], tuple[int, int]] = {}

    def add(table: str, columns: list[str] | None, span: str, where: str, args: list, n_spans: int = 1) -> None:
        listed = ", ".join(f'"{c}"' for c in columns or store.table_columns(table))
        parts.append(f"SELECT '{table}' AS t, {span} AS span, count(*) AS n, "
                     f'coalesce(sum(hash({listed})::HUGEINT), 0) AS h FROM "{table}" WHERE {where} GROUP BY span')
        params.extend(args)
        spans.extend((table, i) for i in range(n_spans))

    stamps = [pd.Timestamp(e).to_pydatetime() for e in ends]
    for table, (column, columns) in _DATED.items() if dated else ():
        kept = store.table_row_sums(table)
        if kept is not None:
            # Span i: the rows dated after both ``after`` and the previous end, through its end.
            lows = [after, *(e if after is None else max(pd.Timestamp(e), pd.Timestamp(after)) for e in ends[:-1])]
            found.update({(table, i): kept.span(lows[i], ends[i]) for i in range(len(ends))})
            spans.extend((table, i) for i in range(len(ends)))
        elif store.has_table(table):
            # The span of a row: the first end on or after its date (CASE binds its ? before the WHERE's).
            span = ("CASE " + " ".join(f'WHEN "{column}" <= ? THEN {i}' for i in range(len(ends) - 1))
                    + f" ELSE {len(ends) - 1} END") if len(ends) > 1 else "0"
            lower = [] if after is None else [pd.Timestamp(after).to_pydatetime()]
            add(table, columns, span, f'"{column}" <= ?' + (f' AND "{column}" > ?' if after is not None else ""),
                [*stamps[:-1], stamps[-1], *lower], len(ends))
    if names is not None:
        for table in _WHOLE:
            if store.has_table(table):
                add(table, None, "0", "true", [])
        if store.has_table("securities"):
            add("securities", None, "0", "list_contains(?, security_id)", [[str(n) for n in names]])
    if parts:
        rows = store.query(" UNION ALL ".join(parts), params, models=False)
        found.update({(r.t, int(r.span)): (int(r.n), int(r.h)) for r in rows.itertuples()})
    return {key: found.get(key, (0, 0)) for key in spans}


def _digest_of(sums: dict[tuple[str, int], tuple[int, int]]) -> dict[str, str]:
    return {t: f"{sums[t, 0][0]}:{sums[t, 0][1]}" if (t, 0) in sums else "absent"
            for t in (*_DATED, *_WHOLE, "securities")}


def input_digest(store: Store, end: object, names: pd.Index) -> dict[str, str]:
    """{table: "<rows>:<sum of row hashes>"} over the rows a model through ``end`` read: prices
    and fundamentals dated on or before ``end``, the whole classifications table, the securities
    rows of the model's ``names`` (a security listed later does not change what was published).
    Row order is irrelevant (a sum); duplicates count."""
    return _digest_of(_sums(store, None, [end], names))


NewRows = dict[str, tuple[int, int]]  # dated table → (rows, Σ row hashes) of the rows after a model's end


def input_digest_and_new_rows(store: Store, end: object, new_end: object,
                              names: pd.Index) -> tuple[dict[str, str], NewRows]:
    """:func:`input_digest` through ``end`` and, from the same read of each dated table, the sums
    of its rows dated in (end, new_end] (what :func:`extended_digest` adds to it)."""
    sums = _sums(store, None, [end, new_end], names)
    return _digest_of(sums), {t: sums[t, 1] for t in _DATED if (t, 1) in sums}


def extended_digest(store: Store, digest: dict[str, str], end: object, new_end: object,
                    names: pd.Index, new_rows: NewRows | None = None, checked_names: pd.Index | None = None
                    ) -> dict[str, str]:
    """:func:`input_digest` through ``new_end`` from the one through ``end`` (checked to be the
    store's): sums are additive, so of the dated tables only the rows after ``end`` are hashed —
    or none, given their sums (``new_rows``, from :func:`input_digest_and_new_rows`). The
    undated tables are hashed again, unless the check just hashed them for these very names
    (``checked_names``): their sums are then the digest's."""
    if new_rows is not None and checked_names is not None and set(map(str, names)) == set(map(str, checked_names)):
        sums = {(t, 0): tuple(map(int, v.split(":"))) for t, v in digest.items() if t not in _DATED and v != "absent"}
    else:
        sums = _sums(store, end, [new_end], names, dated=new_rows is None)
    sums.update({(t, 0): v for t, v in (new_rows or {}).items()})
    out = {}
    for table in (*_DATED, *_WHOLE, "securities"):
        n, h = sums.get((table, 0), (None, None))
        if n is None:
            out[table] = digest.get(table, "absent") if table in _DATED else "absent"
        elif table in _DATED and digest.get(table, "absent") != "absent":
            n0, h0 = map(int, digest[table].split(":"))
            out[table] = f"{n0 + n}:{h0 + h}"
        else:
            out[table] = f"{n}:{h}"
    return out


@dataclass
class UpdateState:
    """The state a version keeps for its next daily update (module docstring)."""

    history: HistoryCounts
    specific: SpecificState
    validation: ValidationState
    regression_notes: dict[pd.Timestamp, list[str]]
    published: PublishedTail | None = None

    def to_arrays(self) -> dict[str, np.ndarray]:
        h = self.history
        notes = sorted(self.regression_notes.items())
        out = {"history/names": np.asarray(h.names.astype(str), dtype=str),
               "history/returns": h.returns, "history/eligible": h.eligible, "history/positive_cap": h.positive_cap,
               "notes/dates": np.array([pd.Timestamp(d).value for d, _ in notes], dtype=np.int64),
               "notes/text": np.array(["\n".join(n) for _, n in notes], dtype=str)}
        out.update({f"specific/{k}": v for k, v in self.specific.to_arrays().items()})
        out.update({f"validation/{k}": v for k, v in self.validation.to_arrays().items()})
        if self.published is not None:
            out.update({f"published/{k}": v for k, v in self.published.to_arrays().items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> UpdateState:
        def part(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix) + 1:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}

        h = part("history")
        history = HistoryCounts(pd.Index(h["names"].astype(object)), h["returns"], h["eligible"], h["positive_cap"])
        notes = {pd.Timestamp(int(d)): str(t).split("\n") for d, t in zip(arrays["notes/dates"], arrays["notes/text"])}
        published = part("published")
        return cls(history, SpecificState.from_arrays(part("specific")), ValidationState.from_arrays(part("validation")),
                   notes, PublishedTail.from_arrays(published) if published else None)


@dataclass
class PublishedTail:
    """What an update reads again of the parts a version published, kept beside them so that it
    reads no part: the factor covariance as
    :func:`~riskstrata.factors.covariance.extend_factor_covariance` reads it, and the last
    date's exposures (the update's check of its recomputed ones). The same float64 numbers as
    the parts (written from the same arrays).

    factors: (K,) the published factors; cov_diagonal: (T, K) every date's variances;
    eigen_bias: (T, K) the eigen simulation's bias on the dates it ran (NaN elsewhere);
    vra_lambda: (T,); cov_last: (K, K) the last date's matrix; names: (N,) security ids;
    last_exposures: (N, K) the last date's exposures (NaN: no published row).
    """

    factors: list[str]
    cov_diagonal: np.ndarray
    eigen_bias: np.ndarray
    vra_lambda: np.ndarray
    cov_last: np.ndarray
    names: pd.Index
    last_exposures: np.ndarray

    @classmethod
    def of(cls, fc: FactorCovariance, names: pd.Index, last_exposures: np.ndarray) -> PublishedTail | None:
        """From a covariance as published (:func:`~riskstrata.services.factors.covariance_rows`:
        None when it publishes no eigen biases) and the last date's (N, K) exposures."""
        T = len(fc.dates)
        if len(fc.eigen_recomputed) != T:
            return None
        bias = np.where(np.asarray(fc.eigen_recomputed)[:, None], fc.eigen_bias, np.nan)
        return cls(list(fc.factors), np.array(np.diagonal(fc.adjusted, axis1=1, axis2=2)), bias,
                   np.array(fc.vra_lambda, dtype=np.float64), np.array(fc.adjusted[-1]), pd.Index(names),
                   np.array(last_exposures, dtype=np.float64))

    def extended(self, new: PublishedTail) -> PublishedTail:
        """This tail followed by the rows of ``new`` (the new dates'), whose last date it takes."""
        return PublishedTail(new.factors, np.vstack([self.cov_diagonal, new.cov_diagonal]),
                             np.vstack([self.eigen_bias, new.eigen_bias]), np.r_[self.vra_lambda, new.vra_lambda],
                             new.cov_last, new.names, new.last_exposures)

    def covariance(self, dates: pd.DatetimeIndex) -> FactorCovariance:
        """The published covariance over ``dates`` (T,) as much as the extension reads of it: the
        diagonals, the last whole matrix (other entries NaN), eigen biases and λ."""
        T, K = self.cov_diagonal.shape
        adjusted = np.full((T, K, K), np.nan)
        adjusted[:, np.arange(K), np.arange(K)] = self.cov_diagonal
        adjusted[-1] = self.cov_last
        return FactorCovariance(dates=pd.DatetimeIndex(dates), factors=list(self.factors), raw=np.empty((0, K, K)),
                                adjusted=adjusted, eigen_applied=np.empty(0, bool), vra_lambda=self.vra_lambda,
                                eigen_recomputed=np.isfinite(self.eigen_bias).any(axis=1), eigen_bias=self.eigen_bias)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"factors": np.asarray(self.factors, dtype=str), "cov_diagonal": self.cov_diagonal,
                "eigen_bias": self.eigen_bias, "vra_lambda": self.vra_lambda, "cov_last": self.cov_last,
                "names": np.asarray(self.names, dtype=str), "last_exposures": self.last_exposures}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> PublishedTail:
        return cls([str(f) for f in a["factors"]], a["cov_diagonal"], a["eigen_bias"], a["vra_lambda"], a["cov_last"],
                   pd.Index(a["names"].astype(object)), a["last_exposures"])


@dataclass
class TrailingPanels:
    """A model's fundamentals panels on its last rows, kept with a version for the next daily
    update (``update_panels`` beside the exposures): computing them is most of an update's
    reading (a dozen as-of panels over a year of rows), and only the new days' rows change.

    dates: (W,) the rows the next update's descriptors read (from
    :func:`~riskstrata.factors.model.lookback_start` of the last date, one row early); names:
    (N,) the panels' columns (security ids); panels: field → (W, N) values of
    :data:`~riskstrata.services.factors.PANEL_FIELDS` and ``shares_outstanding``, as
    :func:`~riskstrata.services.factors.point_in_time_panels` made them; close_dates (R,) and
    closes (R, N): the adjusted closes they were rolled from (the window's days and the days
    near the snapshots' price days), against which an update checks today's closes name by
    name; in_force: field → the snapshots in force on the last date
    (:class:`~riskstrata.data.fundamentals.SnapshotsInForce`), from which the new days' rows follow.
    """

    dates: pd.DatetimeIndex
    names: pd.Index
    panels: dict[str, np.ndarray]
    close_dates: pd.DatetimeIndex
    closes: np.ndarray
    in_force: dict[str, SnapshotsInForce]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The panels stacked as one (F, W, N) array and the snapshots in force as one (F, 3, N)
        array (value, available, price_day), their fields listed beside them: eight arrays, not
        four dozen (each array of a version's ``.npz`` costs its reader and writer ~0.15 ms)."""
        W, N = len(self.dates), len(self.names)
        fields, forced = list(self.panels), list(self.in_force)
        in_force = [np.stack([s.value, s.available, s.price_day]) for s in self.in_force.values()]
        return {"dates": _days(self.dates), "names": np.asarray(self.names, dtype=str),
                "close_dates": _days(self.close_dates), "closes": self.closes,
                "panel_fields": np.asarray(fields, dtype=str),
                "panels": np.stack([self.panels[f] for f in fields]) if fields else np.empty((0, W, N)),
                "in_force_fields": np.asarray(forced, dtype=str),
                "in_force": np.stack(in_force) if in_force else np.empty((0, 3, N))}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TrailingPanels:
        """What :meth:`to_arrays` wrote (or a version written before it stacked them: one array
        per panel, ``panel/<field>``, and per snapshot array, ``in_force/<field>/<what>``)."""
        dates = pd.DatetimeIndex(arrays["dates"].astype("datetime64[ns]"))
        names = pd.Index(arrays["names"].astype(object), name="security_id")
        if "panels" in arrays:
            panels = {str(f): arrays["panels"][i] for i, f in enumerate(arrays["panel_fields"])}
            forced = {str(f): arrays["in_force"][i] for i, f in enumerate(arrays["in_force_fields"])}
        else:
            panels = {k[len("panel/"):]: v for k, v in arrays.items() if k.startswith("panel/")}
            forced = {f: [arrays[f"in_force/{f}/{what}"] for what in ("value", "available", "price_day")]
                      for f in sorted({k.split("/")[1] for k in arrays if k.startswith("in_force/")})}
        in_force = {f: SnapshotsInForce(dates[-1], names, v[0], v[1], v[2]) for f, v in forced.items()}
        return cls(dates, names, panels, pd.DatetimeIndex(arrays["close_dates"].astype("datetime64[ns]")),
                   arrays["closes"], in_force)


def _days(index: pd.DatetimeIndex) -> np.ndarray:
    return index.to_numpy("datetime64[ns]").astype(np.int64)


def read_update_state(store: Store, model: str, version: str) -> UpdateState | None:
    """The version's :class:`UpdateState`, or None when it keeps none (built before they existed)."""
    arrays = store.read_arrays(model, STATE_ARRAYS, version)
    return None if arrays is None else UpdateState.from_arrays(arrays)


def read_trailing_panels(store: Store, model: str, version: str) -> TrailingPanels | None:
    """The version's :class:`TrailingPanels`, or None when it keeps none (an update then computes them)."""
    arrays = store.read_arrays(model, PANELS_ARRAYS, version)
    return None if arrays is None else TrailingPanels.from_arrays(arrays)


def returns_arrays(rows: pd.DataFrame, factors: list[str], spec_factors: list[str],
                   columns: list[str] | None = None) -> dict[str, np.ndarray]:
    """What a factor_returns version keeps beside its parts (``RETURNS_ARRAYS``) so that the next
    update reads no part: the whole history of the columns an update reads — the published
    factors' returns and every spec factor's (lagged) coverage — and the table's columns.

    rows: the version's rows in date order (``date`` and at least those columns, as
    :func:`~riskstrata.services.factors.factor_return_rows` makes them); columns: the table's
    columns in order (default: rows'). Returns dates (T,) datetime64 (the parts' unit), values
    (T, C) float64 of the columns ``kept`` (C,), and ``columns``: the same numbers as the parts.
    """
    kept = [*factors, *(f"coverage_{f}" for f in spec_factors)]
    return {"columns": np.asarray(list(rows.columns) if columns is None else columns, dtype=str),
            "kept": np.asarray(kept, dtype=str),
            "dates": pd.DatetimeIndex(rows["date"]).to_numpy(),
            "values": rows[kept].to_numpy(dtype=np.float64)}
