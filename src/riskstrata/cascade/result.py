"""CascadeResult: the fitted Model A, field by field, with its diagnostics.

Every field is a (dates × tickers) frame under its wire name (``result["l3_mkt_hr"]``);
:meth:`CascadeResult.snapshot` gives one date as (tickers × fields), :meth:`to_long` the
long table the store keeps.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from riskstrata.cascade.attribution import Attribution, geometric_attribution
from riskstrata.cascade.kernel import Flag, describe_flags
from riskstrata.cascade.lstar import DEFAULT_SEGMENT, lstar, recommended_hedge_level
from riskstrata.errors import DateOutOfRange, UnknownTicker
from riskstrata.timeindex import row_on_or_before

# The wire fields of api-contract §6.1 this model produces, in display order.
WIRE_FIELDS = [
    "l1_mkt_hr", "l1_mkt_er", "l1_res_er", "l1_mkt_beta",
    "l2_mkt_hr", "l2_sec_hr", "l2_mkt_er", "l2_sec_er", "l2_res_er", "l2_sec_beta",
    "l3_mkt_hr", "l3_sec_hr", "l3_sub_hr", "l3_mkt_er", "l3_sec_er", "l3_sub_er", "l3_res_er", "l3_sub_beta",
    "l1_cfr", "l2_cfr", "l3_cfr", "l1_rr", "l2_rr", "l3_rr", "lstar_level", "lstar_rr",
    "vol_23d", "vol_252d_ann", "stock_var",
]
EXTRA_FIELDS = ["returns_gross", "lambda_sm", "lambda_um", "lambda_us", "n_obs", "flags"]


def etf_used(pairs: list[tuple[str | None, str | None]], codes: np.ndarray, flags: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Sector and subsector ETF actually used per (date, stock): None where the level fell back."""
    sec_names = np.array([p[0] for p in pairs], dtype=object)
    sub_names = np.array([p[1] for p in pairs], dtype=object)
    sec = sec_names[codes]
    sub = sub_names[codes]
    sec = np.where((flags & (Flag.SECTOR_FALLBACK | Flag.COLLINEAR_SECTOR)) != 0, None, sec)
    sub = np.where((flags & (Flag.SUBSECTOR_FALLBACK | Flag.COLLINEAR_SUBSECTOR)) != 0, None, sub)
    return sec, sub


def long_frame(dates: pd.DatetimeIndex, tickers: pd.Index, values: dict[str, np.ndarray], codes: np.ndarray,
               pairs: list[tuple[str | None, str | None]], key: str = "ticker") -> pd.DataFrame:
    """(T, n) field arrays → long rows (date, <key>, fields…, sector_etf, subsector_etf).

    Keeps the stock-days with a return or an estimate; a stock's days before listing are dropped.
    Labels are categoricals built from codes (no per-row strings), which is what makes writing
    millions of rows cheap.
    """
    get = getattr(values, "peek", values.__getitem__)  # a FieldMap's derived fields are not kept
    has_data = np.isfinite(get("returns_gross")) | np.isfinite(get("l1_mkt_hr"))
    t_idx, n_idx = np.nonzero(has_data)
    flags = get("flags")[t_idx, n_idx]
    pair_codes = codes[t_idx, n_idx]
    columns: dict[str, object] = {
        "date": dates[t_idx],
        key: pd.Categorical.from_codes(n_idx, categories=pd.Index(tickers).astype(str)),
    }
    for f in WIRE_FIELDS + EXTRA_FIELDS:
        if f in values:
            # A boolean mask reads the same cells in the same (date-major) order as
            # [t_idx, n_idx], about 4× faster than gathering by index pairs.
            columns[f] = get(f)[has_data]
    for name, pos, dropped in (("sector_etf", 0, Flag.SECTOR_FALLBACK | Flag.COLLINEAR_SECTOR),
                               ("subsector_etf", 1, Flag.SUBSECTOR_FALLBACK | Flag.COLLINEAR_SUBSECTOR)):
        labels = [p[pos] for p in pairs]
        categories = sorted({x for x in labels if x is not None})
        lookup = np.array([categories.index(x) if x is not None else -1 for x in labels], dtype=np.int32)
        etf_codes = lookup[pair_codes] if len(lookup) else np.full(len(pair_codes), -1, dtype=np.int32)
        etf_codes = np.where((flags & dropped) != 0, -1, etf_codes)  # the ETF was not used that day
        columns[name] = pd.Categorical.from_codes(etf_codes, categories=categories)
    return pd.DataFrame(columns)


class FieldMap(Mapping[str, np.ndarray]):
    """A result's fields: arrays held, plus fields derived from them on first read and kept.

    ``derive(name, held, rows=None)`` computes field ``name`` from the fields held so far
    (``held(f)``: the array, or None when ``f`` is not yet computed), on every date or on dates
    ``rows`` = (start, stop); ``derive.column(name, held, j)`` for one stock. It is only ever asked
    for a name in ``keys`` that is not held. Reading a field is ``values[name]`` as with a dict; :meth:`peek` computes
    a field without keeping it (the store write reads every field once). Thread-safe: a field is
    derived once even when requests race for it. Derived arrays are read-only like held ones.
    """

    def __init__(self, keys: list[str], held: dict[str, np.ndarray], derive: Any) -> None:
        self._keys = list(keys)
        self._known = frozenset(self._keys)
        self._held = dict(held)
        self._derive = derive
        self._lock = threading.RLock()

    def _held_or_none(self, name: str) -> np.ndarray | None:
        arr = self._held.get(name)
        if arr is None and name not in self._known:
            raise KeyError(name)
        return arr

    def __getitem__(self, name: str) -> np.ndarray:
        arr = self._held_or_none(name)
        if arr is not None:
            return arr
        with self._lock:
            if name not in self._held:
                arr = self._derive(name, self._held.get)
                arr.flags.writeable = False
                self._held[name] = arr
            return self._held[name]

    def peek(self, name: str) -> np.ndarray:
        """The field, computed if need be but not kept."""
        arr = self._held_or_none(name)
        return arr if arr is not None else self._derive(name, self._held.get)

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """The field on dates start ≤ t < stop, (stop − start, N): a derived field is computed on
        those dates only (the same bits) and not kept."""
        arr = self._held_or_none(name)
        return arr[start:stop] if arr is not None else self._derive(name, self._held.get, (start, stop))

    def column(self, name: str, j: int) -> np.ndarray:
        """The field for stock column ``j``, (T,): a derived field is computed for that stock only."""
        arr = self._held_or_none(name)
        return arr[:, j] if arr is not None else self._derive.column(name, self._held.get, j)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_lock"]  # a result pickles (to a cache, another process) with its recipes, not its lock
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def held(self) -> list[str]:
        """Names of the fields in memory now (held from the fit or derived since)."""
        return [k for k in self._keys if k in self._held]

    def __contains__(self, name: object) -> bool:
        return name in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


@dataclass
class CascadeResult:
    """Fitted cascade. values[field]: (T, N) arrays aligned to ``dates`` × ``tickers``.

    ``values`` is a dict or, from :func:`~riskstrata.cascade.fit.fit_cascade`, a :class:`FieldMap`
    whose cheap fields are derived on first read.
    """

    dates: pd.DatetimeIndex
    tickers: pd.Index
    values: Mapping[str, np.ndarray]
    codes: np.ndarray
    pairs: list[tuple[str | None, str | None]]
    link_betas: pd.DataFrame
    params: dict
    diagnostics: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ access
    @property
    def fields(self) -> list[str]:
        return [f for f in WIRE_FIELDS + EXTRA_FIELDS if f in self.values]

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name in ("sector_etf", "subsector_etf"):
            sec, sub = etf_used(self.pairs, self.codes, self.values["flags"])
            return pd.DataFrame(sec if name == "sector_etf" else sub, index=self.dates, columns=self.tickers)
        if name not in self.values:
            raise KeyError(f"no field {name!r}; fields are {self.fields}")
        return pd.DataFrame(self.values[name], index=self.dates, columns=self.tickers)

    def _col(self, ticker: str) -> int:
        try:
            return int(self.tickers.get_loc(ticker))
        except KeyError:
            raise UnknownTicker(ticker, "not in this model's universe") from None

    def _row(self, date: object | None) -> int:
        return row_on_or_before(self.dates, date)

    def _field_row(self, name: str, i: int) -> np.ndarray:
        """(N,) values of field ``name`` on date row ``i`` (a FieldMap derives that row only)."""
        if isinstance(self.values, FieldMap):
            return self.values.rows(name, i, i + 1)[0]
        return self.values[name][i]

    def snapshot(self, date: object | None = None) -> pd.DataFrame:
        """One date (default: the last) as a (tickers × fields) frame, with ETFs used and reasons."""
        i = self._row(date)
        frame = pd.DataFrame({f: self._field_row(f, i) for f in self.fields}, index=self.tickers)
        sec, sub = etf_used(self.pairs, self.codes[i:i + 1], self.values["flags"][i:i + 1])
        frame["sector_etf"], frame["subsector_etf"] = sec[0], sub[0]
        frame["notes"] = ["; ".join(describe_flags(f)) for f in frame["flags"]]
        frame.attrs["date"] = self.dates[i]
        return frame

    def history(self, ticker: str, fields: list[str] | None = None) -> pd.DataFrame:
        """One stock's fields over time (dates × fields)."""
        j = self._col(ticker)
        names = fields or self.fields
        values = self.values
        column = values.column if isinstance(values, FieldMap) else (lambda f, k: values[f][:, k])
        return pd.DataFrame({f: column(f, j) for f in names}, index=self.dates)

    def to_long(self) -> pd.DataFrame:
        """Long table (date, ticker, fields…, sector_etf, subsector_etf), one row per stock-day with data."""
        return long_frame(self.dates, self.tickers, self.values, self.codes, self.pairs)

    # ------------------------------------------------------------------ derived views
    def lstar(self, threshold: float) -> dict[str, pd.DataFrame]:
        """L* history for a custom θ: {'lstar_level', 'lstar_rr'} as (dates × tickers) frames."""
        out = lstar(self.values, threshold)
        return {k: pd.DataFrame(v, index=self.dates, columns=self.tickers) for k, v in out.items()}

    def recommended_hedge_level(self, segment: str = DEFAULT_SEGMENT) -> pd.DataFrame:
        """Economic hedge level (1/2/3) per date and stock for a user segment's leverage cap."""
        return pd.DataFrame(recommended_hedge_level(self.values, segment), index=self.dates, columns=self.tickers)

    def attribution(self, ticker: str, start: object | None = None, end: object | None = None) -> Attribution:
        """Geometric market/sector/subsector/residual bridge for one stock over [start, end]."""
        h = self.history(ticker, ["returns_gross", "l1_cfr", "l2_cfr", "l3_cfr"])
        h = h.loc[pd.Timestamp(start) if start else None: pd.Timestamp(end) if end else None]
        if h.empty:
            raise DateOutOfRange(f"no dates between {start} and {end}")
        return geometric_attribution(h["returns_gross"], h["l1_cfr"], h["l2_cfr"], h["l3_cfr"])
