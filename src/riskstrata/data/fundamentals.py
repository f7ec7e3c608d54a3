"""Fundamentals snapshots: ingest with unit checks, and point-in-time panels for Model B.

A *fundamentals file* (CSV or Parquet) holds dated snapshots, one row per (availability date,
ticker), with any of the fields of :data:`FUNDAMENTAL_FIELDS` in the units stated there. The
availability date is the first day a value may be used: a snapshot dated ``d`` is invisible on
``d − 1`` and visible from ``d`` on (no look-ahead).

Table ``fundamentals`` (replaced atomically, see :class:`~riskstrata.data.store.Store`):
``security_id, ticker, available_date`` and every field of :data:`FUNDAMENTAL_FIELDS` (float64,
NaN = not known), one row per (security_id, available_date), sorted by security_id, date. Rows
are routed to the security holding the ticker on the snapshot date (a recycled ticker's
snapshots land on two securities).

Rules on ingest, each with a reason code in the report (:data:`FUNDAMENTAL_REASONS`):

- rejected rows: ``missing_ticker``, ``bad_date``; ``negative_market_cap``;
  ``dividend_yield_percent`` (a yield above 1 = 100 % is a percentage, not a decimal: the row is
  rejected, not converted, because a source that writes yields in percent usually scales its
  other fields too — the B/C eras of the reference data had caps in USD billions alongside);
  ``no_values`` (nothing usable left); ``duplicate_conflict`` (same date and ticker with
  different values: all copies).
- repaired cells (row kept): ``non_finite`` (±inf or text that is no number → NaN);
  ``impossible_value`` (a zero or negative price, share count or P/S, a zero market cap, P/E or
  P/B, a negative debt, sales or yield — vendors' placeholders for "not available" → NaN);
  ``duplicate_identical`` (an identical copy, merged).
- flagged rows (kept): ``suspect_units`` (a market cap under USD 10 million: thousands or
  millions mistaken for USD?).

Consistency checks against plausible bounds and the ticker's neighbouring snapshots (the source
errors of real vendor data: the reference data's BRK-B carries class-A per-share numbers and caps
1,000× too small in 2013–17, a 0.97 dividend yield, P/Es of 0.01), each cell repaired or set to
NaN with its reason, the row kept:

- ``implausible_value`` (cell → NaN): a dividend yield above :data:`MAX_DIVIDEND_YIELD`; a P/E
  with |P/E| outside [1, 1000]; a P/B with |P/B| outside [0.01, 1000]; a P/S above 1000; a book
  value per share whose ratio to the row's own price breaks the P/B bounds, or a positive EPS
  above the row's own price (per-share numbers of another share class, or of another unit).
- ``market_cap_units`` (cell scaled by 1000^k): a market cap that is implausible — below
  :data:`MIN_CAP_TO_EBITDA` × the row's positive EBITDA, or off by two orders of magnitude from
  both neighbouring snapshots of the ticker — and within a factor √10 ≈ 3.2 of the nearest plausible cap
  of the ticker once scaled by a power of 1000 (thousands or millions mistaken for units).
- ``market_cap_inconsistent`` (cell → NaN): such a cap that no power of 1000 reconciles.
- ``field_jump`` (flagged): a field (market cap, price, sales) that moves
  by two orders of magnitude or more from the ticker's previous snapshot and is not repaired
  above: splits move per-share values by 2–20×, a company's cap rarely by 100× in a year.

``price_date`` (optional column): the day the snapshot's price and market cap were observed,
when it is not the availability date (a quarterly report's price at the quarter end, published
45 days later). Model B rolls caps and ratios forward from the adjusted close of that day
(:func:`fundamentals_panel` with ``adj_close``); without the column it is the availability date.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from riskstrata.data.ingest import ensure_and_resolve
from riskstrata.data.master import SecurityMaster
from riskstrata.data.readers import parse_date_column, parse_dates
from riskstrata.data.report import IngestReport, append_issues, concat_issues, issue_rows, new_run_id
from riskstrata.data.store import Store
from riskstrata.errors import DataValidationError

__all__ = [
    "FUNDAMENTALS_COLUMNS",
    "FUNDAMENTAL_FIELDS",
    "FUNDAMENTAL_REASONS",
    "MAX_DIVIDEND_YIELD",
    "check_fundamentals_file",
    "fundamentals_input_columns",
    "MIN_CAP_TO_EBITDA",
    "ROLLED_LEVELS",
    "ROLLED_RATIOS",
    "SNAPSHOT_RATIOS",
    "fundamentals_panel",
    "fundamentals_panel_after",
    "SnapshotsInForce",
    "snapshots_in_force",
    "ingest_fundamentals",
    "price_relative",
    "read_fundamentals_file",
]

# Field → unit. Per-share values and prices in USD; yields are decimals (0.02 = 2 %).
FUNDAMENTAL_FIELDS: dict[str, str] = {
    "market_cap": "USD",
    "book_value_per_share": "USD/share",
    "price_to_book": "ratio",
    "eps": "USD/share",
    "pe": "ratio",
    "dividend_yield": "decimal",
    "ebitda": "USD",
    "total_debt": "USD",
    "shares_outstanding": "shares",
    "price": "USD/share",
    "sales": "USD",
    "price_to_sales": "ratio",
}
FIELDS = list(FUNDAMENTAL_FIELDS)
FUNDAMENTALS_COLUMNS = ["security_id", "ticker", "available_date", *FIELDS, "price_date"]

FUNDAMENTAL_REASONS: dict[str, str] = {
    "missing_ticker": "row has no ticker",
    "bad_date": "availability date missing or not a date",
    "date_out_of_range": "availability date before 1900 or after tomorrow; row rejected",
    "negative_market_cap": "market cap below zero; row rejected",
    "dividend_yield_percent": "dividend yield above 1: percent, not a decimal; row rejected",
    "no_values": "no field with a usable value; row rejected",
    "duplicate_conflict": "same date and ticker given with different values; all copies rejected",
    "duplicate_identical": "same date and ticker given more than once with identical values; one kept",
    "non_finite": "value infinite or not a number; set to NaN, row kept",
    "impossible_value": "value outside its possible range (a vendor's placeholder); set to NaN, row kept",
    "suspect_units": "market cap under USD 10 million: check the units; kept",
    "implausible_value": "ratio or per-share value outside its plausible bounds; set to NaN, row kept",
    "market_cap_units": "market cap off by a power of 1000 against the ticker's other snapshots; scaled, row kept",
    "market_cap_inconsistent": "market cap inconsistent with EBITDA and the neighbouring snapshots; set to NaN, row kept",
    "field_jump": "value moved by two orders of magnitude or more since the previous snapshot; kept, please check",
}
# Plausible bounds (``implausible_value``). A 25 % dividend yield is a special dividend or an
# error; |P/E| < 1 means earnings above the price, |P/E| > 1000 earnings under 0.1 % of it (the
# ratio is then rounding noise); |P/B| outside [0.01, 1000] means a book value of another unit or
# share class (P/B is negative for negative book equity: the bound is on its size).
MAX_DIVIDEND_YIELD = 0.25
PE_BOUNDS = (1.0, 1000.0)
PB_BOUNDS = (0.01, 1000.0)
MAX_PRICE_TO_SALES = 1000.0
# EBITDA above 20× the market cap (EV/EBITDA-type 0.05) is a cap in the wrong unit, not a bargain.
MIN_CAP_TO_EBITDA = 0.05
JUMP_ORDERS = 2.0  # log10 move between consecutive snapshots that marks a jump (×100)
_JUMP_FIELDS = ("market_cap", "price", "sales")  # not EPS, EBITDA or book: near zero they swing by orders legitimately

# Column aliases, best first: an exact canonical name wins over an alias.
_ALIASES: dict[str, tuple[str, ...]] = {
    "available_date": ("available_date", "availability_date", "snapshot_date", "date", "as_of", "asof"),
    "ticker": ("ticker", "symbol"),
    "market_cap": ("market_cap", "market_cap_usd", "market_capitalization"),
    "book_value_per_share": ("book_value_per_share", "book_value", "bvps"),
    "price_to_book": ("price_to_book", "pb"),
    "eps": ("eps", "earnings_per_share"),
    "pe": ("pe", "price_to_earnings", "pe_ratio"),
    "dividend_yield": ("dividend_yield",),
    "ebitda": ("ebitda", "ebitda_usd"),
    "total_debt": ("total_debt", "total_debt_usd", "debt"),
    "shares_outstanding": ("shares_outstanding", "shares"),
    "price": ("price",),
    "sales": ("sales", "sales_usd", "revenue", "revenue_usd", "total_revenue"),
    "price_to_sales": ("price_to_sales", "ps"),
    "price_date": ("price_date",),
}

# Cells that cannot be what they claim (vendors write 0 for "not available").
_RANGE_RULES: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    **dict.fromkeys(("price", "shares_outstanding", "price_to_sales"), (lambda v: v <= 0, "must be > 0")),
    **dict.fromkeys(("market_cap", "pe", "price_to_book"), (lambda v: v == 0, "must not be 0")),
    **dict.fromkeys(("total_debt", "sales", "dividend_yield"), (lambda v: v < 0, "must not be negative")),
}
SUSPECT_MARKET_CAP_USD = 1e7

# Snapshot-level identities (the snapshot's own price with its own ratio) that fill a field the
# snapshot does not carry: field → (numerator, denominator, operation).
_DERIVED: dict[str, tuple[str, str, str]] = {
    "shares_outstanding": ("market_cap", "price", "div"),
    "book_value_per_share": ("price", "price_to_book", "div"),
    "eps": ("price", "pe", "div"),
    "sales": ("market_cap", "price_to_sales", "div"),
    "market_cap": ("price", "shares_outstanding", "mul"),
}

# Ratios to the price, formed within one snapshot (its own price and its own per-share numbers):
# name → [(numerator, denominator)…], the first computable wins; ``None`` stands for 1.
# ``dividend_yield`` is a stored field already of this kind.
SNAPSHOT_RATIOS: dict[str, tuple[tuple[str | None, str], ...]] = {
    "book_to_price": ((None, "price_to_book"), ("book_value_per_share", "price")),
    "earnings_yield": (("eps", "price"), (None, "pe")),
    "sales_to_price": ((None, "price_to_sales"), ("sales", "market_cap")),
}
# Rolled between snapshots by the adjusted-close relative rel = adj_close_t / adj_close_snapshot
# (:func:`fundamentals_panel` with ``adj_close``): levels × rel, ratios to the price ÷ rel.
ROLLED_LEVELS = ("market_cap", "price")
ROLLED_RATIOS = ("book_to_price", "earnings_yield", "dividend_yield", "sales_to_price")
PRICE_DATE_TOLERANCE_DAYS = 10  # the adjusted close used for a snapshot is at most this stale

PathLike = str | os.PathLike[str]
@dataclass(frozen=True)
class StoredFundamentals:
    """A store's fundamentals table and security master, read once: the source for many panels
    (Model B asks for a dozen fields; as a :class:`Store` each would read both again). Panels
    from it equal those from the store it was read from. The table may leave out ``ticker``:
    panels by security id (Model B's) do not read it."""

    master: SecurityMaster
    table: pd.DataFrame
    _windows: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def read(cls, store: Store) -> StoredFundamentals:
        return cls(SecurityMaster.from_store(store), store.read_table("fundamentals"))

    def window(self, lo: pd.Timestamp, hi: pd.Timestamp) -> tuple[pd.DataFrame, dict[str, np.ndarray], np.ndarray]:
        """(rows available in [lo, hi], their keys as object strings, their price days as float
        days since the epoch), prepared once per window for every field asked of it."""
        if (lo, hi) not in self._windows:
            day = pd.DatetimeIndex(self.table["available_date"])
            rows = self.table.loc[(day >= lo) & (day <= hi)].reset_index(drop=True)
            keys = {k: rows[k].astype("str").to_numpy(dtype=object) for k in ("security_id", "ticker") if k in rows}
            self._windows[(lo, hi)] = (rows, keys, _price_days(rows))
        return self._windows[(lo, hi)]

    def window_columns(self, lo: pd.Timestamp, hi: pd.Timestamp, names: pd.Index) -> np.ndarray:
        """(rows,) each row of :meth:`window` (lo, hi)'s column among the security ids ``names``
        (−1: none), found once for every field asked of the same window and names."""
        key = ("columns", lo, hi)
        held = self._windows.get(key)
        if held is None or not held[0].equals(names):  # other names: found again
            _, keys, _ = self.window(lo, hi)
            held = (names, names.get_indexer(pd.Index(keys["security_id"], dtype=object)))
            self._windows[key] = held
        return held[1]


Source = Store | StoredFundamentals | pd.DataFrame


# ---------------------------------------------------------------------- reading


def _read(path: PathLike) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The frame of :func:`read_fundamentals_file` and, per field, which cells held text that
    is no number (they are NaN in the frame; ingest reports them)."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise DataValidationError(f"fundamentals file {path} is missing or empty")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            raw = pd.read_parquet(path)
        else:
            raw = pd.read_csv(path, dtype=str, keep_default_na=True)
    except Exception as exc:  # any reader failure means the file is not what it claims to be
        raise DataValidationError(f"cannot read fundamentals file {path}: {type(exc).__name__}: {exc}") from exc
    norm = {str(c).strip().lower().replace(" ", "_").replace("-", "_"): c for c in reversed(raw.columns)}
    names: dict[str, Any] = {}
    for canon, aliases in _ALIASES.items():
        hit = next((a for a in aliases if a in norm and norm[a] not in names.values()), None)
        if hit is not None:
            names[canon] = norm[hit]
    if "ticker" not in names or "available_date" not in names:
        raise DataValidationError(
            f"fundamentals file {path} needs a ticker and an availability date column "
            f"(available_date / availability_date / snapshot_date / date); columns: {list(raw.columns)}"
        )
    fields = [f for f in FIELDS if f in names]
    if not fields:
        raise DataValidationError(
            f"fundamentals file {path} has none of the fields {FIELDS} (columns: {list(raw.columns)})"
        )
    if raw.empty:
        raise DataValidationError(f"fundamentals file {path} has no data rows")
    available = parse_date_column(raw[names["available_date"]], what=f"availability date column of {path}")
    out = pd.DataFrame(
        {
            "available_date": available.dates.to_numpy(),
            "ticker": raw[names["ticker"]].astype("str").str.strip().str.upper().replace("", np.nan).to_numpy(),
        }
    )
    # Keyed by column: a field's text that is no number, and (under available_date) the text of
    # each availability date outside the plausible range (1900 … tomorrow); _screen reports both.
    far = (available.reason == "date_out_of_range").to_numpy()
    unparsable: dict[str, np.ndarray] = {"available_date": np.where(far, available.detail.to_numpy(), None)}
    for f in fields:
        col = raw[names[f]]
        values = pd.to_numeric(col, errors="coerce").astype("float64")
        if not pd.api.types.is_numeric_dtype(col.dtype):
            text = col.astype("str").str.strip()
            unparsable[f] = (values.isna() & text.notna() & (text != "") & (text.str.lower() != "nan")).to_numpy()
        out[f] = values.to_numpy()
    if "price_date" in names:
        out["price_date"] = parse_dates(raw[names["price_date"]]).to_numpy()
    out["source_row"] = np.arange(1, len(out) + 1)
    return out, unparsable


def read_fundamentals_file(path: PathLike) -> pd.DataFrame:
    """Read a fundamentals snapshot file (CSV or Parquet) into a long frame.

    Columns (case-insensitive): ``ticker`` (or ``symbol``); the availability date as
    ``available_date``, ``availability_date``, ``snapshot_date`` or ``date``; any fields of
    :data:`FUNDAMENTAL_FIELDS`, also under the aliases ``market_cap_usd`` → market_cap,
    ``ebitda_usd`` → ebitda, ``book_value`` → book_value_per_share (per share, USD). Other columns
    (names, provenance) are ignored, so the reference ``snapshots.parquet`` reads as it is.

    Returns ``available_date`` (datetime64[ns], NaT = unparsable), ``ticker`` (upper case),
    the fields found (float64 in the units of :data:`FUNDAMENTAL_FIELDS`; text that is no number
    → NaN, judged by :func:`ingest_fundamentals`), ``source_row`` (1-based data row).
    Raises DataValidationError for an unreadable file or one without ticker, date or any field.
    """
    return _read(path)[0]


# ---------------------------------------------------------------------- ingest


def _screen(df: pd.DataFrame, unparsable: dict[str, np.ndarray]) -> tuple[pd.DataFrame, np.ndarray, list[pd.DataFrame]]:
    """Apply the rules of the module doc. Returns (cleaned values, accepted rows, issue frames)."""
    n = len(df)
    fields = [f for f in FIELDS if f in df.columns]
    clean = df.copy()
    rows = df.rename(columns={"available_date": "date"})
    alive = np.ones(n, dtype=bool)
    issues: list[pd.DataFrame] = []

    def note(mask: np.ndarray, action: str, reason: str, detail: Any) -> np.ndarray:
        mask = mask & alive
        if mask.any():
            issues.append(issue_rows(rows, mask, action, reason, detail))
        return mask

    def show(field: str, unit_text: str = "") -> Any:
        values = df[field].to_numpy() if field in df else np.full(n, np.nan)
        return lambda sel, pos: [f"{field} = {v:g}{unit_text}" for v in values[pos]]

    def value(field: str) -> np.ndarray:
        return df[field].to_numpy() if field in df else np.full(n, np.nan)

    # The availability dates outside the plausible range, with their text (None elsewhere).
    far_dates = unparsable.get("available_date", np.full(n, None, dtype=object))
    with np.errstate(invalid="ignore"):
        for reason, bad, detail in [
            ("missing_ticker", df["ticker"].isna().to_numpy(), "no ticker"),
            ("date_out_of_range", far_dates != None,  # noqa: E711 - elementwise on an object array
             lambda sel, pos: list(far_dates[pos])),
            ("bad_date", df["available_date"].isna().to_numpy(), "availability date missing or not parseable"),
            ("negative_market_cap", value("market_cap") < 0,
             show("market_cap", " USD: a market cap cannot be negative")),
            ("dividend_yield_percent", value("dividend_yield") > 1,
             show("dividend_yield", ": above 1 is a percentage, yields must be decimals (0.02 = 2%)")),
        ]:  # fmt: skip
            alive &= ~note(bad, "rejected", reason, detail)

        for f in fields:
            v = clean[f].to_numpy()
            inf = np.isinf(v)
            note(inf, "repaired", "non_finite", show(f, ": infinite, set to NaN"))
            if f in unparsable:
                note(unparsable[f], "repaired", "non_finite", f"{f}: not a number, set to NaN")
            bad = inf.copy()
            if f in _RANGE_RULES:
                test, text = _RANGE_RULES[f]
                detail = show(f, f": {text} (a placeholder?), set to NaN")
                bad |= note(test(v) & ~inf, "repaired", "impossible_value", detail)
            clean.loc[bad, f] = np.nan

    issues += _consistency(clean, rows, alive)
    empty = clean[fields].isna().all(axis=1).to_numpy()
    alive &= ~note(empty, "rejected", "no_values", "no field with a usable value")

    # Duplicated (date, ticker): compared on the cleaned values, NaN equal to NaN.
    key = ["available_date", "ticker"]
    live = clean[alive]
    dup = live.duplicated(key, keep=False).to_numpy()
    if dup.any():
        d = live[dup]
        variants = d.drop_duplicates([*key, *fields]).groupby(key).size()
        clash = np.zeros(n, dtype=bool)
        clash[np.flatnonzero(alive)[dup][pd.MultiIndex.from_frame(d[key]).isin(variants[variants > 1].index)]] = True
        text = "same date and ticker with different values; all copies rejected"
        alive &= ~note(clash, "rejected", "duplicate_conflict", text)
        twins = np.zeros(n, dtype=bool)
        twins[np.flatnonzero(alive)[clean[alive].duplicated(key).to_numpy()]] = True
        note(twins, "repaired", "duplicate_identical", "identical copy of an earlier row; merged")
        alive &= ~twins  # accepted, but merged into its twin

    with np.errstate(invalid="ignore"):
        note(value("market_cap") < SUSPECT_MARKET_CAP_USD, "flagged", "suspect_units",
             show("market_cap", " USD is under USD 10 million: thousands or millions mistaken for USD?"))  # fmt: skip
    return clean, alive, issues


def _outside(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        size = np.abs(values)
        return (size < lo) | (size > hi)


def _consistency(clean: pd.DataFrame, rows: pd.DataFrame, alive: np.ndarray) -> list[pd.DataFrame]:
    """Plausible bounds and neighbour checks of the module doc, on the live rows; edits
    ``clean`` in place (cells set to NaN or scaled) and returns the issue frames."""
    n = len(clean)
    issues: list[pd.DataFrame] = []
    col = lambda f: clean[f].to_numpy(dtype="float64", copy=True) if f in clean else np.full(n, np.nan)  # noqa: E731

    def fix(field: str, mask: np.ndarray, action: str, reason: str, text: str, new: np.ndarray | None = None) -> None:
        mask = mask & alive
        if not mask.any():
            return
        old = col(field)
        detail = lambda sel, pos: [f"{field} = {v:g}: {text}" for v in old[pos]]  # noqa: E731
        issues.append(issue_rows(rows, mask, action, reason, detail))
        if action != "flagged":
            clean.loc[mask, field] = np.nan if new is None else new[mask]

    price = col("price")
    with np.errstate(invalid="ignore", divide="ignore"):
        fix("dividend_yield", col("dividend_yield") > MAX_DIVIDEND_YIELD, "repaired", "implausible_value",
            f"a dividend yield above {MAX_DIVIDEND_YIELD:g} is a special dividend or a source error; set to NaN")
        pe, pb = col("pe"), col("price_to_book")
        fix("pe", np.isfinite(pe) & _outside(pe, *PE_BOUNDS), "repaired", "implausible_value",
            f"|P/E| outside [{PE_BOUNDS[0]:g}, {PE_BOUNDS[1]:g}]; set to NaN")
        fix("price_to_book", np.isfinite(pb) & _outside(pb, *PB_BOUNDS), "repaired", "implausible_value",
            f"|P/B| outside [{PB_BOUNDS[0]:g}, {PB_BOUNDS[1]:g}]; set to NaN")
        fix("price_to_sales", col("price_to_sales") > MAX_PRICE_TO_SALES, "repaired", "implausible_value",
            f"P/S above {MAX_PRICE_TO_SALES:g}; set to NaN")
        implied_pb = price / col("book_value_per_share")
        fix("book_value_per_share", np.isfinite(implied_pb) & _outside(implied_pb, *PB_BOUNDS), "repaired",
            "implausible_value", "price / book value per share breaks the P/B bounds (another share class or unit?); "
            "set to NaN")
        implied_pe = price / col("eps")
        # Only profits: a loss larger than the price is a write-down year, not an error.
        fix("eps", np.isfinite(implied_pe) & (implied_pe > 0) & (implied_pe < PE_BOUNDS[0]), "repaired",
            "implausible_value", "EPS above the row's own price (another share class or unit?); set to NaN")

    # Neighbours: the ticker's live snapshots in date order.
    order = np.flatnonzero(alive)
    order = order[np.lexsort((clean["available_date"].to_numpy("datetime64[ns]")[order],
                              pd.factorize(clean["ticker"].to_numpy()[order])[0]))]
    tick = clean["ticker"].to_numpy()[order]
    same_prev = np.r_[False, tick[1:] == tick[:-1]]
    same_next = np.r_[tick[1:] == tick[:-1], False]

    def log_moves(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log10 move from the previous and to the next finite value of the same ticker."""
        v = pd.Series(np.where(values > 0, values, np.nan))
        g = pd.Series(tick)
        prev = v.groupby(g).ffill().groupby(g).shift(1).to_numpy()
        nxt = v.groupby(g).bfill().groupby(g).shift(-1).to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log10(v.to_numpy() / prev), np.log10(nxt / v.to_numpy())

    if "market_cap" in clean and len(order):
        cap = col("market_cap")[order]
        with np.errstate(invalid="ignore", divide="ignore"):
            ebitda = col("ebitda")[order]
            small = (ebitda > 0) & (cap < MIN_CAP_TO_EBITDA * ebitda)
            # A spike against both neighbours, judged among the caps the EBITDA test lets pass (a
            # right cap between two wrong ones is no spike).
            up, down = log_moves(np.where(small, np.nan, cap))
            spike = (np.abs(up) >= JUMP_ORDERS) & (np.abs(down) >= JUMP_ORDERS) & (np.sign(up) == -np.sign(down))
        bad = np.isfinite(cap) & (cap > 0) & (small | spike)
        if bad.any():
            # Reference: the nearest (in time) plausible cap of the same ticker.
            good = pd.Series(np.where(bad, np.nan, cap))
            g = pd.Series(tick)
            days = clean["available_date"].to_numpy("datetime64[D]").astype("float64")[order]
            when = pd.Series(np.where(np.isfinite(good), days, np.nan))
            before, b_day = good.groupby(g).ffill().to_numpy(), when.groupby(g).ffill().to_numpy()
            after, a_day = good.groupby(g).bfill().to_numpy(), when.groupby(g).bfill().to_numpy()
            use_after = np.isnan(before) | (np.abs(a_day - days) < np.abs(days - b_day))
            ref = np.where(use_after & np.isfinite(after), after, before)
            with np.errstate(invalid="ignore", divide="ignore"):
                k = np.round(np.log10(ref / cap) / 3.0)
                scaled = cap * 1000.0**k
                ok = bad & np.isfinite(k) & (k != 0) & (np.abs(np.log10(scaled / ref)) < 0.5)
            full_new = np.full(n, np.nan)
            full_new[order] = scaled
            m_units = np.zeros(n, dtype=bool)
            m_units[order[ok]] = True
            m_bad = np.zeros(n, dtype=bool)
            m_bad[order[bad & ~ok]] = True
            fix("market_cap", m_units, "repaired", "market_cap_units",
                "implausible against the row's EBITDA or both neighbouring snapshots; scaled by a power of 1000 "
                "to agree with the ticker's nearest plausible cap", full_new)
            fix("market_cap", m_bad, "repaired", "market_cap_inconsistent",
                "implausible against the row's EBITDA or both neighbouring snapshots, and no power of 1000 "
                "reconciles it with the ticker's other caps; set to NaN")

    for f in _JUMP_FIELDS:
        if f not in clean or not len(order):
            continue
        up, _ = log_moves(col(f)[order])
        jump = np.zeros(n, dtype=bool)
        jump[order[np.abs(up) >= JUMP_ORDERS]] = True
        fix(f, jump, "flagged", "field_jump", "moved by ≥ 100× since the ticker's previous snapshot; kept, please check")
    return issues


def check_fundamentals_file(path: PathLike) -> tuple[pd.DataFrame, IngestReport]:
    """Read a fundamentals file and apply every rule of the module doc, without a store.

    Returns the accepted rows (the columns of :func:`read_fundamentals_file`, repaired cells
    already repaired, identical duplicates merged: a frame :func:`fundamentals_panel` takes) and
    the report of every rejected, repaired or flagged value with its reason.
    """
    df, unparsable = _read(path)
    df["file"] = str(path)
    clean, accepted, issues = _screen(df, unparsable)
    report = IngestReport.from_issues(len(df), concat_issues(issues), [str(path)])
    return clean[accepted].drop(columns=["file"]).reset_index(drop=True), report


def ingest_fundamentals(store: Store, path: PathLike) -> IngestReport:
    """Read, check and upsert a fundamentals file (see :func:`read_fundamentals_file`) into
    table ``fundamentals``.

    Each row goes to the security holding its ticker on its availability date (tickers not in
    the security master are created as stocks, as for prices). Units are checked and every
    rejected, repaired or flagged row is in the report with its reason (module doc): a dividend
    yield above 1 is *rejected*, not converted. A row replaces the stored row of the same
    (security_id, available_date) in the fields the file carries; fields the file lacks keep
    their stored values (a debt file does not erase caps). Ingesting the same file again leaves
    the table unchanged. Issues are appended to ``ingest_issues`` (kind ``fundamentals``).
    """
    new, report = check_fundamentals_file(path)
    given = [f for f in [*FIELDS, "price_date"] if f in new.columns]

    master = SecurityMaster.from_store(store)
    # Unknown tickers are typed by the master's default (a known fund is an ETF, not a stock).
    master, sid = ensure_and_resolve(master, new["ticker"], new["available_date"], None)
    new["security_id"] = sid.to_numpy(dtype=object)
    new = new.reindex(columns=FUNDAMENTALS_COLUMNS)

    if store.has_table("fundamentals"):
        old = store.read_table("fundamentals").reindex(columns=FUNDAMENTALS_COLUMNS)
        key = ["security_id", "available_date"]
        old_idx = pd.MultiIndex.from_frame(old[key].astype({"security_id": "str", "available_date": "datetime64[ns]"}))
        new_idx = pd.MultiIndex.from_frame(new[key].astype({"security_id": "str", "available_date": "datetime64[ns]"}))
        hit = old_idx.isin(new_idx)
        # Rows already stored keep the fields this file does not carry.
        kept = [f for f in [*FIELDS, "price_date"] if f not in given]
        if kept and hit.any():
            carry = old.loc[hit].set_axis(old_idx[hit])[kept]
            new[kept] = carry.reindex(new_idx).to_numpy()
        new = pd.concat([old[~hit], new], ignore_index=True)
    types = {"security_id": "str", "ticker": "str", "available_date": "datetime64[ns]", "price_date": "datetime64[ns]"}
    table = new.astype({**types, **dict.fromkeys(FIELDS, "float64")})
    sid_order = pd.factorize(table["security_id"], sort=True)[0]
    order = np.lexsort((table["available_date"].to_numpy("datetime64[ns]"), sid_order))
    table = table.take(order).reset_index(drop=True)

    report.run_id = new_run_id()
    master.to_store(store)  # first, so the table never names a security the store does not know
    store.write_table("fundamentals", table)
    append_issues(store, report, "fundamentals")
    return report


# ---------------------------------------------------------------------- point-in-time panels


def _column(long: pd.DataFrame, field: str) -> np.ndarray:
    """(rows,) float64 values of a column of ``long`` (NaN where missing, or for a column it lacks)."""
    if field not in long:
        return np.full(len(long), np.nan)
    return long[field].to_numpy(dtype="float64", na_value=np.nan)


def _with_derived(long: pd.DataFrame, field: str, derive: bool) -> np.ndarray:
    """(rows,) the field's values, filled (when ``derive``) from the snapshot identity of :data:`_DERIVED`.

    In numpy, not pandas: an update derives the few rows of a day a dozen times (a Series
    operation costs more than the arithmetic); the same IEEE operations on the same numbers."""
    values = _column(long, field)
    if derive and field in _DERIVED:
        num, den, op = _DERIVED[field]
        if num in long and den in long:
            a, b = _column(long, num), _column(long, den)
            with np.errstate(divide="ignore", invalid="ignore"):
                implied = a * b if op == "mul" else a / np.where(b != 0, b, np.nan)
            values = np.where(np.isnan(values) & np.isfinite(implied), implied, values)
    return values


def _snapshot_ratio(long: pd.DataFrame, name: str, derive: bool) -> np.ndarray:
    """(rows,) a ratio of :data:`SNAPSHOT_RATIOS` within each snapshot row (NaN where not computable)."""
    out = np.full(len(long), np.nan)
    for num, den in SNAPSHOT_RATIOS[name]:
        if den not in long and not (derive and den in _DERIVED):
            continue
        b = _with_derived(long, den, derive)
        a = np.ones(len(long)) if num is None else _with_derived(long, num, derive)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = a / np.where(b != 0, b, np.nan)
        out = np.where(np.isnan(out) & np.isfinite(r), r, out)
    return out


def _inputs_of(field: str, derive: bool) -> list[str]:
    """The stored columns a field (or snapshot ratio) is computed from."""
    if field in SNAPSHOT_RATIOS:
        cols = {c for pair in SNAPSHOT_RATIOS[field] for c in pair if c is not None}
        return sorted({d for c in cols for d in _inputs_of(c, derive)})
    return [field, *(_DERIVED[field][:2] if derive and field in _DERIVED else ())]


def fundamentals_input_columns(field: str, derive: bool = True) -> set[str]:
    """The stored columns a field or snapshot ratio can be computed from (any one may do)."""
    return set(_inputs_of(field, derive))


def _load_long(source: Source, field: str, lo: pd.Timestamp, hi: pd.Timestamp, derive: bool) -> pd.DataFrame:
    """``security_id`` (if known), ``ticker``, ``available_date``, ``value``, ``price_day`` (the
    snapshot's price date as float days since the epoch): the rows with a value available in [lo, hi]."""
    inputs = _inputs_of(field, derive)
    if isinstance(source, (Store, StoredFundamentals)):
        # Tables written before ``price_date`` existed lack it: the availability date stands in.
        stored = (set(source.table.columns) if isinstance(source, StoredFundamentals)
                  else set(source.table_columns("fundamentals")))
        columns = ["security_id", *(["ticker"] if "ticker" in stored else []), "available_date",
                   *dict.fromkeys(c for c in inputs if c in stored),
                   *(["price_date"] if "price_date" in stored else [])]
        if isinstance(source, StoredFundamentals):
            long, keys, price_days = source.window(lo, hi)
            return _long_values(long[columns], field, derive, keys, price_days)
        else:
            long = source.read_table("fundamentals", columns=columns, where="available_date >= ? AND available_date <= ?",
                                     params=[lo.to_pydatetime(), hi.to_pydatetime()])
    else:
        if "available_date" not in source.columns or not {"ticker", "security_id"} & set(source.columns):
            raise DataValidationError(
                f"fundamentals frame needs available_date and ticker or security_id (has {list(source.columns)})"
            )
        if not any(c in source.columns for c in inputs):
            raise DataValidationError(f"fundamentals frame has no column {field!r} (has {list(source.columns)})")
        dates = parse_dates(source["available_date"])
        long = source[((dates >= lo) & (dates <= hi)).to_numpy()].assign(available_date=dates)
    keys = {k: long[k].astype("str").to_numpy(dtype=object) for k in ("security_id", "ticker") if k in long.columns}
    return _long_values(long, field, derive, keys, _price_days(long))


def _price_days(long: pd.DataFrame) -> np.ndarray:
    """(rows,) each snapshot's price day (``price_date``, else its availability date) as float
    days since the epoch."""
    available = long["available_date"].to_numpy("datetime64[ns]")
    price_day = parse_dates(long["price_date"]) if "price_date" in long.columns else pd.Series(pd.NaT, index=long.index)
    price_day = price_day.fillna(pd.Series(available, index=long.index))
    return price_day.to_numpy("datetime64[D]").astype("float64")


def _long_values(long: pd.DataFrame, field: str, derive: bool, keys: dict[str, np.ndarray],
                 price_days: np.ndarray) -> pd.DataFrame:
    """:func:`_load_long`'s frame from the rows read: the field's value per row, rows without one dropped."""
    values = _snapshot_ratio(long, field, derive) if field in SNAPSHOT_RATIOS else _with_derived(long, field, derive)
    keep = np.isfinite(values)
    out = pd.DataFrame({"available_date": long["available_date"].to_numpy("datetime64[ns]")[keep]})
    for key, strings in keys.items():
        # Plain object strings: matching them (isin, pivot) by hash, not element by element
        # as pandas' Arrow-backed strings do — a dozen panels per load pay for it each time.
        out[key] = pd.Series(strings[keep], dtype=object)
    out["value"] = values[keep]
    out["price_day"] = price_days[keep]
    return out


def _asof_panel(
    long: pd.DataFrame, key: str, dates: pd.DatetimeIndex, names: pd.Index, max_age_days: int,
    column: str = "value",
) -> np.ndarray:
    """(T, N) values of ``column``: for each date the latest row with available_date <= date
    (among rows with a finite ``value``), NaN once it is older than ``max_age_days`` calendar
    days. Vectorised in numpy: the snapshots placed on a (snapshot day × name) grid, the row
    of each name's last value forward-filled down the grid, then read at each date."""
    names = pd.Index(names)
    if names.has_duplicates:  # a ticker asked twice: every copy gets the same column
        unique = names.unique()
        return _asof_panel(long, key, dates, unique, max_age_days, column)[:, unique.get_indexer(names)]
    col = names.get_indexer(pd.Index(long[key].to_numpy(dtype=object), dtype=object))
    keep = col >= 0
    T, N = len(dates), len(names)
    if not keep.any():
        return np.full((T, N), np.nan)
    col = col[keep]
    day = long["available_date"].to_numpy("datetime64[ns]")[keep]
    snaps, row = np.unique(day, return_inverse=True)
    if len(np.unique(row.astype(np.int64) * N + col)) < len(col):
        raise DataValidationError(
            f"fundamentals frame has the same ({key}, available_date) twice; ingest it to resolve duplicates"
        )
    grid = np.full((len(snaps), N), np.nan)
    grid[row, col] = long[column].to_numpy(dtype="float64", na_value=np.nan)[keep]
    # The grid row of each name's last non-missing value on or before each snapshot day.
    last = np.maximum.accumulate(np.where(np.isnan(grid), -1, np.arange(len(snaps))[:, None]), axis=0)
    at = np.searchsorted(snaps, dates.to_numpy("datetime64[ns]"), side="right") - 1   # (T,) −1: before any
    src = np.where(at[:, None] >= 0, last[np.maximum(at, 0)], -1)                       # (T, N)
    found = src >= 0
    values = np.full((T, N), np.nan)
    values[found] = grid[src[found], np.nonzero(found)[1]]
    seen = np.full((T, N), np.nan)
    seen[found] = snaps.astype("datetime64[D]").astype("float64")[src[found]]
    age = dates.to_numpy("datetime64[D]").astype("float64")[:, None] - seen
    values[~(age <= max_age_days)] = np.nan  # also NaN where nothing was seen yet
    return values


def fundamentals_panel(
    source: Source,
    field: str,
    dates: pd.DatetimeIndex,
    names: Any = None,
    *,
    by: Literal["auto", "ticker", "security_id"] = "auto",
    max_age_days: int = 400,
    derive: bool = True,
    adj_close: pd.DataFrame | CloseHistory | None = None,
) -> pd.DataFrame:
    """A point-in-time (T × N) panel of one fundamental field.

    source: a store (table ``fundamentals``) or a frame shaped like it or like
    :func:`read_fundamentals_file`'s output.
    field: a key of :data:`FUNDAMENTAL_FIELDS` (values in its unit) or of
    :data:`SNAPSHOT_RATIOS` (``book_to_price``, ``earnings_yield``, ``sales_to_price``: decimals,
    each formed within one snapshot from its own price and numbers).
    dates: (T,) the days of the panel.
    names: (N,) the columns: tickers or security ids (``None``: every ticker in the data).
    by: what ``names`` are; ``"auto"`` takes a name that is a security id of the store's master
    (of the frame's ``security_id`` column) as one, any other name as a ticker.
    adj_close: optional (T', N) adjusted closes (split- and dividend-adjusted, a total-return
    level), columns ``names``, on any daily index that covers the snapshots' price dates. Given,
    the fields of :data:`ROLLED_LEVELS` and :data:`ROLLED_RATIOS` are rolled from the snapshot
    to day t by the price relative ``rel = adj_close_t / adj_close_snapshot`` (the close of the
    last day on or before the snapshot's price date — ``price_date``, else its availability date —
    at most 10 days stale): market_cap and price × rel; book_to_price, earnings_yield,
    dividend_yield and sales_to_price ÷ rel. An adjusted close is only ever used as such a
    relative, never as a price: it is re-based by every later split and dividend. NaN on a day
    without an adjusted close, or where the snapshot's own close is unknown.

    The value on day t is the latest snapshot with ``available_date <= t`` that has the field
    (no look-ahead), carried forward at most ``max_age_days`` calendar days, then NaN; before a
    name's first snapshot it is NaN (missing, never invented). With a store, a ticker is resolved
    to the security holding it on each day t through the security master, so a recycled ticker
    never shows the previous company's numbers; with a frame, rows match on their own ``ticker``
    column. With ``derive``, a snapshot without the field gets the value implied by its own
    identity: shares_outstanding = market_cap / price, book_value_per_share = price /
    price_to_book, eps = price / pe, sales = market_cap / price_to_sales, market_cap = price ×
    shares_outstanding (the snapshot's own price, so the ratio and the price match in time).

    Returns a float64 DataFrame indexed by ``dates``, columns ``names``.
    """
    if field not in FUNDAMENTAL_FIELDS and field not in SNAPSHOT_RATIOS:
        raise DataValidationError(
            f"unknown fundamental field {field!r}; fields: {FIELDS}, snapshot ratios: {list(SNAPSHOT_RATIOS)}"
        )
    if by not in ("auto", "ticker", "security_id"):
        raise DataValidationError(f"by must be 'auto', 'ticker' or 'security_id', got {by!r}")
    dates = pd.DatetimeIndex(dates)
    dates = (dates.tz_localize(None) if dates.tz is not None else dates).normalize()
    is_store = isinstance(source, (Store, StoredFundamentals))
    if names is None:
        frame = (source.read_table("fundamentals", columns=["ticker"]) if isinstance(source, Store)
                 else source.table if is_store else source)
        if "ticker" not in frame.columns:
            raise DataValidationError("fundamentals without tickers: name the panel's columns")
        names, by = pd.Index(sorted(frame["ticker"].dropna().astype("str").unique())), "ticker"
    names = pd.Index([str(x).strip() for x in names])
    t, n = len(dates), len(names)
    if t == 0 or n == 0:
        return pd.DataFrame(np.full((t, n), np.nan), index=dates, columns=names, dtype="float64")
    roll = adj_close is not None and (field in ROLLED_LEVELS or field in ROLLED_RATIOS)
    master = (source.master if isinstance(source, StoredFundamentals) else SecurityMaster.from_store(source)
              ) if is_store else None
    known_ids = master.records["security_id"] if master is not None else (
        source["security_id"] if "security_id" in source.columns else pd.Series([], dtype="str"))
    is_sid = (np.full(n, by == "security_id") if by != "auto"  # object strings: a hash lookup
              else pd.Index(names.to_numpy(dtype=object), dtype=object).isin(known_ids.astype("str").to_numpy(dtype=object)))
    long = _load_long(source, field, dates.min() - pd.Timedelta(days=max_age_days), dates.max(), derive)
    columns = ("value", "price_day") if roll else ("value",)
    out = {c: np.full((t, n), np.nan) for c in columns}
    if master is not None and is_sid.all() and not names.has_duplicates:
        # Every column is a security id (Model B's panels): no per-day resolution to do.
        for c in columns:
            out[c] = _asof_panel(long, "security_id", dates, names, max_age_days, c)
    elif master is not None:
        # One security per (day, column): the column's own id, or the ticker's holder that day.
        sid = np.repeat(names.to_numpy(dtype=object)[None, :], t, axis=0)
        if (~is_sid).any():
            tick = names[~is_sid].str.upper().to_numpy(dtype=object)
            held = master.resolve_rows(pd.Series(np.tile(tick, t)), pd.Series(np.repeat(dates, len(tick))))
            sid[:, ~is_sid] = held.to_numpy(dtype=object, na_value=None).reshape(t, len(tick))
        codes, uniq = pd.factorize(sid.ravel())
        codes = codes.reshape(t, n)
        ok = codes >= 0
        for c in columns:
            per_sid = _asof_panel(long, "security_id", dates, pd.Index(uniq), max_age_days, c)
            out[c][ok] = per_sid[np.broadcast_to(np.arange(t)[:, None], (t, n))[ok], codes[ok]]
    else:
        if (~is_sid).any() and "ticker" not in long.columns:
            raise DataValidationError("fundamentals frame has no ticker column to match tickers on")
        for c in columns:
            if is_sid.any():
                out[c][:, is_sid] = _asof_panel(long, "security_id", dates, names[is_sid], max_age_days, c)
            if (~is_sid).any():
                out[c][:, ~is_sid] = _asof_panel(long, "ticker", dates, names[~is_sid].str.upper(), max_age_days, c)
    values = out["value"]
    if roll:
        if isinstance(adj_close, CloseHistory):
            if not adj_close.frame.columns.equals(names):
                raise DataValidationError("a CloseHistory's columns must be the panel's names, in order")
            closes = adj_close
        else:
            closes = adj_close.reindex(columns=names)
        rel = price_relative(closes, dates, out["price_day"])
        values = values * rel if field in ROLLED_LEVELS else values / rel
    return pd.DataFrame(values, index=dates, columns=names, dtype="float64")


@dataclass(frozen=True)
class CloseHistory:
    """Adjusted closes made ready for :func:`price_relative`: each day's last close so far and
    the day it is from (forward fills of the whole history), computed once for many panels."""

    frame: pd.DataFrame      # (T', N) sorted, non-positive closes as NaN
    days: np.ndarray         # (T',) float days since the epoch
    filled: np.ndarray       # (T', N) the last close on or before each day
    filled_day: np.ndarray   # (T', N) the day it is from

    @classmethod
    def of(cls, adj_close: pd.DataFrame) -> CloseHistory:
        adj = adj_close.sort_index()
        a = adj.to_numpy(dtype="float64", na_value=np.nan, copy=True)
        a[~(a > 0)] = np.nan
        days = pd.DatetimeIndex(adj.index).to_numpy("datetime64[D]").astype("float64")
        frame = pd.DataFrame(a, index=adj.index, columns=adj.columns)
        # Forward fills by position, in numpy (the values copied, never computed), name by name
        # (each name's days contiguous): a close fills the days after it until the next; its
        # day, until the next finite close.
        by_name = np.ascontiguousarray(a.T)                     # (N, T')
        N, T = by_name.shape
        last = _last_position(~np.isnan(by_name))
        filled = np.take(by_name.ravel(), np.maximum(last, 0) + (np.arange(N) * T)[:, None])
        filled[last < 0] = np.nan
        last = _last_position(np.isfinite(by_name))
        filled_day = days[np.maximum(last, 0)]
        filled_day[last < 0] = np.nan
        # (T', N) C-ordered: :func:`price_relative` reads them flat, once per rolled panel.
        return cls(frame, days, np.ascontiguousarray(filled.T), np.ascontiguousarray(filled_day.T))


def _last_position(mask: np.ndarray) -> np.ndarray:
    """(N, T) int: per row, the last position on or before each position where ``mask`` holds (−1: none)."""
    last = np.where(mask, np.arange(mask.shape[1]), -1)
    np.maximum.accumulate(last, axis=1, out=last)
    return last


def price_relative(adj_close: pd.DataFrame | CloseHistory, dates: pd.DatetimeIndex, price_day: np.ndarray) -> np.ndarray:
    """(T, N) ``adj_close_t / adj_close_s``: the adjusted close on each of ``dates`` over the
    adjusted close of the last day on or before ``price_day[t, n]`` (float days since the epoch,
    NaN = none) that has one, if it is at most :data:`PRICE_DATE_TOLERANCE_DAYS` older.

    adj_close: (T', N) on a sorted daily index that must reach back to the earliest price day
    (or its :class:`CloseHistory`); non-positive closes count as missing. NaN where either close
    is unknown.
    """
    history = adj_close if isinstance(adj_close, CloseHistory) else CloseHistory.of(adj_close)
    adj, days, filled, filled_day = history.frame, history.days, history.filled, history.filled_day
    t, n = price_day.shape
    # Few distinct price days (one per snapshot): search each once, then map by code.
    codes, uniq = pd.factorize(price_day.ravel())
    pos = np.append(np.searchsorted(days, np.asarray(uniq, dtype="float64"), side="right") - 1, -1)[codes]
    found = pos >= 0
    flat = pos[found] * n + np.tile(np.arange(n), t)[found]
    ref = np.full(t * n, np.nan)
    ref_day = np.full(t * n, np.nan)
    ref[found] = filled.ravel()[flat]
    ref_day[found] = filled_day.ravel()[flat]
    ref, ref_day = ref.reshape(t, n), ref_day.reshape(t, n)
    ref[~(price_day - ref_day <= PRICE_DATE_TOLERANCE_DAYS)] = np.nan
    now = adj.reindex(pd.DatetimeIndex(dates)).to_numpy(dtype="float64", na_value=np.nan)
    now = np.where(now > 0, now, np.nan)
    return now / ref


# ---------------------------------------------------------------------- a panel's new rows only


@dataclass(frozen=True)
class SnapshotsInForce:
    """Per security id, the snapshot a point-in-time panel of one field shows on ``day`` (what
    :func:`fundamentals_panel` reads there): all a daily update needs of the older snapshots.

    names: (N,) security ids; value: (N,) the field's value in the snapshot (not rolled; NaN =
    none in force, or older than the panel's age limit on ``day``); available, price_day: (N,)
    its availability and price days, float days since the epoch.
    """

    day: pd.Timestamp
    names: pd.Index
    value: np.ndarray
    available: np.ndarray
    price_day: np.ndarray

    def on(self, names: pd.Index) -> SnapshotsInForce:
        """The same on ``names`` (NaN for a name not held)."""
        names = pd.Index(names)
        if names.equals(self.names):
            return self  # immutable: the same snapshots
        at = self.names.get_indexer(names)
        pick = lambda a: np.where(at >= 0, a[np.maximum(at, 0)], np.nan)  # noqa: E731
        return SnapshotsInForce(self.day, pd.Index(names), pick(self.value), pick(self.available), pick(self.price_day))


def _latest_in_force(col: np.ndarray, visible_from: np.ndarray, seen: np.ndarray, dates: pd.DatetimeIndex,
                     n_names: int, max_age_days: int) -> np.ndarray:
    """(T, N) the candidate each name shows on each date (−1: none), as :func:`_asof_panel` picks
    it: its latest candidate visible by the date (``visible_from``: ns since the epoch), if no
    older than ``max_age_days`` (``seen``: its availability day, float days since the epoch).

    col: (R,) each candidate's name column. Raises DataValidationError for a name with two
    candidates visible from the same moment (the same snapshot twice)."""
    order = np.lexsort((visible_from, col))   # by name, then availability
    if np.any((col[order][1:] == col[order][:-1]) & (visible_from[order][1:] == visible_from[order][:-1])):
        raise DataValidationError("fundamentals frame has the same (security_id, available_date) twice; "
                                  "ingest it to resolve duplicates")
    pick = np.full((len(dates), n_names), -1)
    day_ns = dates.to_numpy("datetime64[ns]").astype(np.int64)
    day_d = dates.to_numpy("datetime64[D]").astype("float64")
    for t in range(len(dates)):
        sel = order[visible_from[order] <= day_ns[t]]
        last = sel[np.r_[col[sel][1:] != col[sel][:-1], True]] if len(sel) else sel
        young = day_d[t] - seen[last] <= max_age_days
        pick[t, col[last[young]]] = last[young]
    return pick


def _take(values: np.ndarray, pick: np.ndarray) -> np.ndarray:
    """``values`` of the picked candidates (NaN where none)."""
    out = np.full(pick.shape, np.nan)
    found = pick >= 0
    out[found] = values[pick[found]]
    return out


def _security_ids(source: StoredFundamentals, names: object) -> pd.Index:
    names = pd.Index([str(x).strip() for x in names])
    known = source.master.records["security_id"].astype("str").to_numpy(dtype=object)
    if names.has_duplicates or not pd.Index(names.to_numpy(dtype=object), dtype=object).isin(known).all():
        raise DataValidationError("snapshots in force are kept by security id: every name must be one, once")
    return names


def snapshots_in_force(source: StoredFundamentals, field: str, day: object, names: object, *,
                       max_age_days: int = 400, derive: bool = True) -> SnapshotsInForce:
    """The snapshots :func:`fundamentals_panel` (same field, age limit and ``derive``) shows on
    ``day`` for ``names`` (security ids of the source's master)."""
    day = pd.Timestamp(day).normalize()
    names = _security_ids(source, names)
    long = _load_long(source, field, day - pd.Timedelta(days=max_age_days), day, derive)
    col = names.get_indexer(pd.Index(long["security_id"].to_numpy(dtype=object), dtype=object))
    keep = col >= 0
    available = long["available_date"].to_numpy("datetime64[ns]")[keep]
    seen = available.astype("datetime64[D]").astype("float64")
    pick = _latest_in_force(col[keep], available.astype(np.int64), seen, pd.DatetimeIndex([day]), len(names),
                            max_age_days)
    value, price_day = long["value"].to_numpy(dtype="float64")[keep], long["price_day"].to_numpy(dtype="float64")[keep]
    return SnapshotsInForce(day, names, _take(value, pick)[0], _take(seen, pick)[0], _take(price_day, pick)[0])


def fundamentals_panel_after(in_force: SnapshotsInForce, source: StoredFundamentals, field: str,
                             dates: pd.DatetimeIndex, *, max_age_days: int = 400, derive: bool = True,
                             adj_close: CloseHistory | None = None) -> tuple[pd.DataFrame, SnapshotsInForce]:
    """:func:`fundamentals_panel` on ``dates`` after ``in_force.day`` (its names: security ids),
    from the snapshots in force then and the rows available after it — the same values bit for
    bit, when ``in_force`` came from the same rows (:func:`snapshots_in_force`, or this function
    on an earlier day): a snapshot shown on a later day is either one of those or newer, and
    the age limit, the derived fields and the roll by the price relative are the same steps on
    the same numbers. Returns the (T × N) panel and the snapshots in force on the last date.

    adj_close: as for :func:`fundamentals_panel`, a :class:`CloseHistory` over ``in_force.names``
    reaching back to the snapshots' price days (read fresh: a vendor may have re-based it).
    """
    dates = pd.DatetimeIndex(dates).normalize()
    names = in_force.names
    if not len(dates) or dates.min() <= in_force.day:
        raise DataValidationError("fundamentals_panel_after: the dates must come after the snapshots' day")
    # The rows available since, as :func:`_load_long` reads them (the same values: the same
    # window of the table, the same derivation), without building its frame.
    lo, hi = in_force.day + pd.Timedelta(1, "ns"), dates.max()
    rows, keys, row_price_days = source.window(lo, hi)
    new_value = (_snapshot_ratio(rows, field, derive) if field in SNAPSHOT_RATIOS
                 else _with_derived(rows, field, derive))
    new_col = source.window_columns(lo, hi, names)
    new_keep = (new_col >= 0) & np.isfinite(new_value)
    available = rows["available_date"].to_numpy("datetime64[ns]")[new_keep]
    # The candidates: the snapshots in force (visible on every later date), then the newer rows.
    held = np.flatnonzero(np.isfinite(in_force.value))
    col = np.r_[held, new_col[new_keep]]
    visible_from = np.r_[np.full(len(held), np.iinfo(np.int64).min), available.astype(np.int64)]
    seen = np.r_[in_force.available[held], available.astype("datetime64[D]").astype("float64")]
    value = np.r_[in_force.value[held], new_value[new_keep].astype("float64")]
    price_day = np.r_[in_force.price_day[held], row_price_days[new_keep]]
    # Each date's row per name: the latest visible candidate (as :func:`_asof_panel` picks it), if young enough.
    pick = _latest_in_force(col, visible_from, seen, dates, len(names), max_age_days)
    values = _take(value, pick)
    if adj_close is not None and (field in ROLLED_LEVELS or field in ROLLED_RATIOS):
        if not adj_close.frame.columns.equals(names):
            raise DataValidationError("a CloseHistory's columns must be the panel's names, in order")
        rel = price_relative(adj_close, dates, _take(price_day, pick))
        values = values * rel if field in ROLLED_LEVELS else values / rel
    panel = pd.DataFrame(values, index=dates, columns=names, dtype="float64")
    last = pick[-1:]
    return panel, SnapshotsInForce(dates[-1], names, _take(value, last)[0], _take(seen, last)[0],
                                   _take(price_day, last)[0])
