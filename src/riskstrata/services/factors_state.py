"""What a published Model B version keeps for its daily update, and the fingerprint of its inputs.

A build (and every update) writes ``update_state.npz`` beside the exposures version's parts: the
running state each step needs to go on from the model's last date without the history —

- the names' :class:`~riskstrata.factors.model.HistoryCounts` through the last date (the
  estimation universe's history rule and the primary share class look back to each name's first
  day; a trailing panel gets them from here),
- the specific-risk recursions (:class:`~riskstrata.factors.specific.SpecificState`),
- the validation's accumulators (:class:`~riskstrata.factors.validation.ValidationState`),
- the regression's notes per date (the factor status quotes them for gaps).

The version's meta.json also records :func:`input_digest`: a fingerprint of every input row the
model has seen. An update recomputes it over the same rows; any difference — a corrected price,
a fundamentals backfill, a reclassification, a new issuer mapping — means the published numbers
no longer follow from the store, and only a rebuild is right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from riskstrata.data.store import Store
from riskstrata.factors.model import HistoryCounts
from riskstrata.factors.specific import SpecificState
from riskstrata.factors.validation import ValidationState

STATE_ARRAYS = "update_state"

# Per input table: the date column that says which rows a model ending on ``end`` has read (None:
# every row counts, on every date), and the columns that matter (None: all). Prices: not the
# adjusted close (a vendor re-bases the whole series on each dividend; the model uses it only as a
# price relative, which re-basing leaves as it is) but the return and the volume.
_DATED = {"prices": ("date", ["security_id", "date", "ret", "volume"]),
          "fundamentals": ("available_date", None)}
_WHOLE = ("classifications",)   # a name's sector is its latest classification, on every date


def _sums(store: Store, after: object | None, end: object, names: pd.Index | None = None) -> dict[str, tuple[int, int]]:
    """{table: (rows, Σ row hashes)}, in one query: the dated tables over the rows dated in
    (after, end]; with ``names``, also the undated inputs (:func:`input_digest`)."""
    parts, params = [], []

    def add(table: str, columns: list[str] | None, where: str, args: list) -> None:
        listed = ", ".join(f'"{c}"' for c in columns or pq.read_schema(store.table_path(table)).names)
        parts.append(f"SELECT '{table}' AS t, count(*) AS n, coalesce(sum(hash({listed})::HUGEINT), 0) AS h "
                     f'FROM "{table}" WHERE {where}')
        params.extend(args)

    for table, (column, columns) in _DATED.items():
        if store.has_table(table):
            add(table, columns, f'"{column}" <= ?' + (f' AND "{column}" > ?' if after is not None else ""),
                [pd.Timestamp(end).to_pydatetime(), *([pd.Timestamp(after).to_pydatetime()] if after is not None else [])])
    if names is not None:
        for table in _WHOLE:
            if store.has_table(table):
                add(table, None, "true", [])
        if store.has_table("securities"):
            add("securities", None, "list_contains(?, security_id)", [[str(n) for n in names]])
    if not parts:
        return {}
    rows = store.query(" UNION ALL ".join(parts), params, models=False)
    return {r.t: (int(r.n), int(r.h)) for r in rows.itertuples()}


def input_digest(store: Store, end: object, names: pd.Index) -> dict[str, str]:
    """{table: "<rows>:<sum of row hashes>"} over the rows a model through ``end`` read: prices
    and fundamentals dated on or before ``end``, the whole classifications table, the securities
    rows of the model's ``names`` (a security listed later does not change what was published).
    Row order is irrelevant (a sum); duplicates count."""
    sums = _sums(store, None, end, names)
    return {t: f"{sums[t][0]}:{sums[t][1]}" if t in sums else "absent" for t in (*_DATED, *_WHOLE, "securities")}


def extended_digest(store: Store, digest: dict[str, str], end: object, new_end: object,
                    names: pd.Index) -> dict[str, str]:
    """:func:`input_digest` through ``new_end`` from the one through ``end`` (checked to be the
    store's): sums are additive, so of the dated tables only the rows after ``end`` are hashed."""
    sums = _sums(store, end, new_end, names)
    out = {}
    for table in (*_DATED, *_WHOLE, "securities"):
        n, h = sums.get(table, (None, None))
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

    def to_arrays(self) -> dict[str, np.ndarray]:
        h = self.history
        notes = sorted(self.regression_notes.items())
        out = {"history/names": np.asarray(h.names.astype(str), dtype=str),
               "history/returns": h.returns, "history/eligible": h.eligible, "history/positive_cap": h.positive_cap,
               "notes/dates": np.array([pd.Timestamp(d).value for d, _ in notes], dtype=np.int64),
               "notes/text": np.array(["\n".join(n) for _, n in notes], dtype=str)}
        out.update({f"specific/{k}": v for k, v in self.specific.to_arrays().items()})
        out.update({f"validation/{k}": v for k, v in self.validation.to_arrays().items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> UpdateState:
        def part(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix) + 1:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}

        h = part("history")
        history = HistoryCounts(pd.Index(h["names"].astype(object)), h["returns"], h["eligible"], h["positive_cap"])
        notes = {pd.Timestamp(int(d)): str(t).split("\n") for d, t in zip(arrays["notes/dates"], arrays["notes/text"])}
        return cls(history, SpecificState.from_arrays(part("specific")), ValidationState.from_arrays(part("validation")),
                   notes)


def read_update_state(store: Store, model: str, version: str) -> UpdateState | None:
    """The version's :class:`UpdateState`, or None when it keeps none (built before they existed)."""
    arrays = store.read_arrays(model, STATE_ARRAYS, version)
    return None if arrays is None else UpdateState.from_arrays(arrays)
