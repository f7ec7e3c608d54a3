"""Matching holdings to the model universe on the analysis date.

Every input line ends in exactly one of two tables: ``matched`` (in the model universe on
``as_of`` and valued) or ``excluded`` (with its reason, one of :data:`REASONS`). The analysis uses
the matched holdings only, with weights relative to their gross value: ``weight = value / Σ|value|``
over matched. A long-only book's weights sum to 1; a long/short book has Σ|w| = 1 and net Σw
(net / gross), so a book whose longs and shorts nearly cancel is measured per dollar of gross,
not blown up by a net near 0. Values stay in dollars (``value``): hedges are sized on them.

Valuation, in USD: shares × the close on ``as_of``; a market value as given where a line has no
shares (or no close); weight-only portfolios use the weights, × ``portfolio_value`` where one is
given (else the values are the weights themselves and the result says so with ``unit='weight'``).
A portfolio mixing USD lines (shares, market values) with weight-only lines is refused: the two
cannot be put on one scale.

Nothing is written or logged; notes describe the input only in counts, line numbers and totals.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from riskstrata.errors import DataValidationError, ValueOverflow
from riskstrata.portfolio.holdings import MAX_QUANTITY, Holdings, normalize_ticker

__all__ = [
    "EXCLUDED_COLUMNS",
    "MATCHED_COLUMNS",
    "REASONS",
    "UNIVERSE_COLUMNS",
    "MatchResult",
    "match_holdings",
]

REASONS = ("cash", "currency", "unknown symbol", "no history yet", "delisted", "no price", "no quantity",
           "zero position")
UNIVERSE_COLUMNS = ("ticker", "security_id", "first_date", "last_date", "close")
MATCHED_COLUMNS = ["line", "ticker", "security_id", "shares", "price", "value", "weight", "side", "basis"]
EXCLUDED_COLUMNS = ["line", "ticker", "cusip", "value", "weight_in", "reason", "note"]
# Share classes of one company that trade within a fraction of a percent of each other: where the
# universe has only one, the other is read as it (noted). Not BRK-A/BRK-B: 1 A = 1,500 B.
SHARE_CLASS_TWINS = {"GOOG": "GOOGL", "GOOGL": "GOOG"}
_EARLIEST = np.datetime64("1678-01-01", "ns")
_Line = Any  # one row of Holdings.lines, from itertuples(): attributes named as HOLDING_COLUMNS
# The excluded table of a book where every line matched (made once: a frame-wide astype costs ~1 ms).
_NO_EXCLUDED = pd.DataFrame([], columns=EXCLUDED_COLUMNS).astype({"value": "float64", "weight_in": "float64"})


@dataclass
class MatchResult:
    """Holdings split into matched and excluded lines on ``as_of``.

    matched: one row per security (lines of one security are combined, noted), columns
      :data:`MATCHED_COLUMNS`: line (first input line), ticker, security_id, shares (NaN where not
      given), price (close on as_of, USD), value (USD, negative = short; the weight itself when
      ``unit == 'weight'``), weight (value / gross Σ|value|: Σ = 1 for a long-only book, Σ|w| = 1
      for a long/short one), side ('long' | 'short'),
      basis ('shares' | 'market_value' | 'weight').
    excluded: one row per excluded input line, columns :data:`EXCLUDED_COLUMNS`: value (USD, or
      the weight when ``unit == 'weight'``; NaN where it cannot be known, e.g. an unknown symbol
      given in shares), weight_in (input weight, decimal), reason, note (the input line's note).
    total_lines: input lines (after the reader's merges); unit: 'USD' or 'weight'.
    notes: the reader's notes (columns read, merges, conversions) followed by matching's own.
    """

    matched: pd.DataFrame
    excluded: pd.DataFrame
    total_lines: int
    as_of: pd.Timestamp
    notes: list[str] = field(default_factory=list)
    unit: str = "USD"

    @property
    def analyzed(self) -> int:
        """Input lines analysed: every line not excluded (several may form one matched row)."""
        return self.total_lines - len(self.excluded)

    @property
    def long_value(self) -> float:
        """Σ value of the matched long positions (USD, or weight when unit == 'weight')."""
        v = self.matched["value"]
        return float(v[v > 0].sum())

    @property
    def short_value(self) -> float:
        """Σ value of the matched short positions (≤ 0)."""
        v = self.matched["value"]
        return float(v[v < 0].sum())

    @property
    def gross_value(self) -> float:
        """Σ|value| over the matched positions: what the weights are relative to."""
        return self.long_value - self.short_value

    @property
    def net_value(self) -> float:
        """Σ value over the matched positions (long − |short|)."""
        return self.long_value + self.short_value

    @property
    def excluded_value(self) -> float:
        """Σ|value| of the excluded lines that have one (USD, or weight when unit == 'weight')."""
        return float(self.excluded["value"].abs().sum())

    def summary(self) -> str:
        """E.g. "47/50 holdings analyzed (3 excluded: 1 cash, 1 currency, 1 unknown symbol; excluded value $12,345)"."""
        head = f"{self.analyzed}/{self.total_lines} holdings analyzed"
        if self.excluded.empty:
            return head
        counts = self.excluded["reason"].value_counts()
        reasons = ", ".join(f"{counts[r]} {r}" for r in REASONS if r in counts)
        amount = (f"excluded value {_usd(self.excluded_value)}" if self.unit == "USD"
                  else f"excluded weight {self.excluded_value:.1%}")
        missing = int(self.excluded["value"].isna().sum())
        if missing:
            amount += f" + {missing} without a value"
        return f"{head} ({len(self.excluded)} excluded: {reasons}; {amount})"


def match_holdings(
    holdings: Holdings,
    universe: pd.DataFrame | MatchUniverse,
    as_of: object,
    *,
    portfolio_value: float | None = None,
) -> MatchResult:
    """Split ``holdings`` into matched and excluded lines on ``as_of`` and value them.

    universe: one row per security the model knows, columns :data:`UNIVERSE_COLUMNS` (close = USD
    price on as_of, NaN if none; first_date/last_date NaT = open-ended; an optional ``cusip``
    column matches lines given by CUSIP), or a :class:`MatchUniverse` of it built once (a server
    holds one per model version). portfolio_value: USD, scales weight-only portfolios.
    Raises :class:`DataValidationError` for a universe without those columns or mixed quantities.
    """
    day = pd.Timestamp(as_of).normalize()
    uni = universe if isinstance(universe, _Universe) else _Universe(universe)
    lines = holdings.lines
    basis = _basis(lines, holdings.source)
    scale = float(portfolio_value) if basis == "weight" and portfolio_value else 1.0
    notes: list[str] = list(holdings.notes)
    if portfolio_value and basis == "usd":
        notes.append(f"holdings are valued in USD from shares or market values; the portfolio value "
                     f"{_usd(portfolio_value)} does not rescale them")
    matched, excluded = [], []
    for row in lines.itertuples(index=False):
        reason, hit = _match_line(row, basis, uni, day, notes)
        if reason is None:
            matched.append(_value_matched(row, uni, hit, basis, scale, notes))
        else:
            close = uni.close[hit] if hit is not None else math.nan
            excluded.append({"line": row.line, "ticker": row.ticker, "cusip": row.cusip,
                             "value": _value_excluded(row, basis, close, scale), "weight_in": row.weight,
                             "reason": reason, "note": row.note})
    ids = [row["security_id"] for row in matched]
    matched_frame = _weights(matched if len(set(ids)) == len(ids) else
                             _combine(pd.DataFrame(matched, columns=[*MATCHED_COLUMNS[:6], "basis"]), notes), notes)
    excluded_frame = (_as_types(pd.DataFrame(excluded, columns=EXCLUDED_COLUMNS),
                                {"value": "float64", "weight_in": "float64"}) if excluded
                      else _NO_EXCLUDED.copy(deep=False))
    unit = "USD" if basis == "usd" or portfolio_value else "weight"
    _note_excluded_share(matched_frame, excluded_frame, unit, notes)
    return MatchResult(matched_frame, excluded_frame, len(lines), day, notes, unit)


# ----------------------------------------------------------------------------- universe


class _Universe:
    """The model universe indexed by normalised ticker (and CUSIP where given)."""

    def __init__(self, universe: pd.DataFrame) -> None:
        missing = [c for c in UNIVERSE_COLUMNS if c not in universe.columns]
        if missing:
            raise DataValidationError(f"the model universe lacks columns {missing}; it needs {list(UNIVERSE_COLUMNS)}")
        self.ticker = [normalize_ticker(t) for t in universe["ticker"]]
        self.security_id = universe["security_id"].to_numpy(dtype=object)
        self.first = pd.to_datetime(universe["first_date"]).to_numpy()
        self.last = pd.to_datetime(universe["last_date"]).to_numpy()
        self.close = universe["close"].to_numpy(dtype=float)
        self.by_ticker: dict[str, list[int]] = {}
        for i, t in enumerate(self.ticker):
            if t is not None:
                self.by_ticker.setdefault(t, []).append(i)
        # CUSIP maps and some brokers drop the class separator (BRKB for BRK-B): keyed without it,
        # for one-letter classes only, so warrants and units (-WT, -U) are never matched this way.
        squeezed: dict[str, set[str]] = {}
        for t in self.by_ticker:
            if re.fullmatch(r"[A-Z]+-[A-C]", t):
                squeezed.setdefault(t.replace("-", ""), set()).add(t)
        self.by_squeezed = {k: v.pop() for k, v in squeezed.items() if len(v) == 1}
        self.by_cusip: dict[str, list[int]] = {}
        if "cusip" in universe.columns:
            for i, c in enumerate(universe["cusip"]):
                if isinstance(c, str) and c.strip():
                    self.by_cusip.setdefault(c.strip().upper(), []).append(i)

    def lookup(self, ticker: str | None, cusip: str | None) -> tuple[list[int], str | None]:
        """Rows for a line and how they were found (None = by its own ticker)."""
        if ticker is not None and ticker in self.by_ticker:
            return self.by_ticker[ticker], None
        twin = SHARE_CLASS_TWINS.get(ticker or "")
        if twin is not None and twin in self.by_ticker:
            how = f"{ticker} is not in the model universe: read as {twin} (another share class of the same company)"
            return self.by_ticker[twin], how
        if cusip is not None and cusip in self.by_cusip:
            return self.by_cusip[cusip], f"matched by CUSIP {cusip}"
        classed = self.by_squeezed.get(ticker or "")
        if classed is not None:
            return self.by_ticker[classed], f"{ticker} read as {classed} (share class without its separator)"
        return [], None

    def on(self, rows: list[int], day: pd.Timestamp) -> tuple[int | None, str | None]:
        """The row trading on ``day`` (the latest-listed if several), else the reason none does."""
        d = np.datetime64(day)
        alive = [i for i in rows
                 if (np.isnat(self.first[i]) or self.first[i] <= d) and (np.isnat(self.last[i]) or d <= self.last[i])]
        if alive:
            return max(alive, key=lambda i: self.first[i] if not np.isnat(self.first[i]) else _EARLIEST), None
        # A ticker that ended before `day` is delisted even if a later listing reuses it.
        ended = [i for i in rows if not np.isnat(self.last[i]) and self.last[i] < d]
        return (max(ended, key=lambda i: self.last[i]), "delisted") if ended else (rows[0], "no history yet")


MatchUniverse = _Universe  # the universe indexed for matching; build once, match many holdings against it


# ----------------------------------------------------------------------------- one line


def _basis(lines: pd.DataFrame, source: str) -> str:
    """'usd' when securities are given in shares or market values, 'weight' when by weights only."""
    sec = lines["kind"].to_numpy(dtype=object) == "security"
    given = {q: ~np.isnan(lines[q].to_numpy(dtype=np.float64)) for q in ("shares", "market_value", "weight")}
    usd = sec & (given["shares"] | given["market_value"])
    weight_only = sec & ~usd & given["weight"]
    if usd.any() and weight_only.any():
        numbers = lines["line"].to_numpy()
        raise DataValidationError(
            f"{source}: mixed quantities: shares or a market value on {_lines(numbers[usd])}, only a weight "
            f"on {_lines(numbers[weight_only])}. Weights cannot be put on the same "
            "scale as dollars: give every line shares or a market value, or give weights for all")
    return "weight" if weight_only.any() else "usd"


def _match_line(row: _Line, basis: str, uni: _Universe, day: pd.Timestamp,
                notes: list[str]) -> tuple[str | None, int | None]:
    """(reason excluded or None, universe row)."""
    if row.kind in ("cash", "currency"):
        return row.kind, None
    quantity = row.weight if basis == "weight" else row.shares if not math.isnan(row.shares) else row.market_value
    if math.isnan(quantity):
        return "no quantity", None
    if quantity == 0:
        return "zero position", None
    rows, how = uni.lookup(normalize_ticker(row.ticker), row.cusip)
    if not rows:
        return "unknown symbol", None
    hit, reason = uni.on(rows, day)
    if reason is not None:
        return reason, hit
    if how is not None:
        notes.append(f"line {row.line}: {how}")
    if basis == "usd" and not np.isfinite(uni.close[hit]) and math.isnan(row.market_value):
        return "no price", hit
    return None, hit


def _value_matched(row: _Line, uni: _Universe, hit: int, basis: str, scale: float,
                   notes: list[str]) -> dict[str, object]:
    close = float(uni.close[hit])
    if basis == "weight":
        value, how = row.weight * scale, "weight"
    elif not math.isnan(row.shares) and np.isfinite(close):
        value, how = row.shares * close, "shares"
    else:
        value, how = row.market_value, "market_value"
        if not math.isnan(row.shares):
            notes.append(f"line {row.line}: no close on the analysis date; valued at its given market value")
        if row.currency not in (None, "USD"):
            notes.append(f"line {row.line}: market value in {row.currency} taken as USD")
    return {"line": row.line, "ticker": uni.ticker[hit], "security_id": uni.security_id[hit], "shares": row.shares,
            "price": close, "value": float(value), "basis": how}


def _value_excluded(row: _Line, basis: str, close: float, scale: float) -> float:
    """USD value of an excluded line where it can be known (a weight × scale on a weight basis)."""
    if basis == "weight":
        return row.weight * scale
    if row.kind == "cash":
        # Cash balances and money-market funds ($1 NAV) give their quantity in dollars.
        return row.market_value if not math.isnan(row.market_value) else row.shares
    if row.kind == "security" and not math.isnan(row.shares) and np.isfinite(close):
        return row.shares * close
    return row.market_value  # a foreign-currency amount is not converted: NaN unless a USD value is given


# ----------------------------------------------------------------------------- frames


def _combine(matched: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """One row per security: lines of one security (a 13F's several entries, GOOG read as GOOGL) summed."""
    ids = list(matched["security_id"])
    if len(set(ids)) == len(ids):  # the usual case: one line per security
        return matched
    dup = matched["security_id"].duplicated(keep=False)
    for sid, group in matched[dup].groupby("security_id", sort=False):
        notes.append(f"{_lines(group['line'])} are the same security ({group['ticker'].iloc[0]}): "
                     "combined into one position")
    return matched.groupby("security_id", sort=False, as_index=False).agg(
        line=("line", "first"), ticker=("ticker", "first"), shares=("shares", lambda s: s.sum(min_count=1)),
        price=("price", "first"), value=("value", "sum"),
        basis=("basis", lambda s: s.iloc[0] if s.nunique() == 1 else "mixed"),
    )[[*MATCHED_COLUMNS[:6], "basis"]]


def _weights(matched: pd.DataFrame | list[dict[str, object]], notes: list[str]) -> pd.DataFrame:
    """weight = value / gross Σ|value| (see the module docstring); refuses values too large to sum.

    matched: one row per security, as a frame or (the usual case, no line combined) as the rows'
    dicts, turned into the table by one constructor (a frame's column inserts and selection cost
    ~1 ms): line int64, shares / price / value / weight float64, text columns inferred as pandas does.
    """
    if isinstance(matched, pd.DataFrame):
        cols = {c: matched[c].tolist() for c in MATCHED_COLUMNS if c in matched.columns}
    else:
        cols = {c: [row[c] for row in matched] for c in MATCHED_COLUMNS if c not in ("weight", "side")}
    n = len(cols["line"])
    values = np.array(cols["value"], dtype=np.float64)
    with np.errstate(over="ignore"):
        gross = float(np.abs(values).sum())
    if n and (not np.isfinite(values).all() or np.abs(values).max() > MAX_QUANTITY or not np.isfinite(gross)):
        at = int(np.argmax(~np.isfinite(values) | (np.abs(values) > MAX_QUANTITY)))
        raise ValueOverflow(f"line {int(cols['line'][at])} ({cols['ticker'][at]}): value "
                            f"{values[at]:.4g} is beyond {MAX_QUANTITY:.0e}: too large to be a position")
    if (values < 0).any():
        net = float(values.sum())
        notes.append(f"long/short book: weights are value / gross (Σ|value| = {gross:,.6g}), so Σ|weight| = 1 "
                     f"and the net is {net / gross:+.4%} of gross")
    def text(c: str) -> object:  # strings as pandas infers them; no rows: object, as an empty frame has
        return cols[c] if n else pd.Series([], dtype=object)

    table = {"line": np.array(cols["line"], dtype=np.int64), "ticker": text("ticker"), "security_id": text("security_id"),
             **{c: np.array(cols[c], dtype=np.float64) for c in ("shares", "price")}, "value": values,
             "weight": values / gross if n and gross > 0 else np.full(n, np.nan),
             "side": np.where(values < 0, "short", "long"), "basis": text("basis")}
    return pd.DataFrame(table)


def _as_types(frame: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """``frame.astype(types)`` casting only the columns not of their type yet (a frame-wide astype
    costs ~1 ms however few columns change). Returns a new frame either way."""
    todo = {c: t for c, t in types.items() if frame[c].dtype != np.dtype(t)}
    return frame.astype(todo) if todo else frame.copy(deep=False)


def _note_excluded_share(matched: pd.DataFrame, excluded: pd.DataFrame, unit: str, notes: list[str]) -> None:
    if len(matched) and not (matched["value"] < 0).any():
        notes.append(f"weights are over the {len(matched)} matched holdings and sum to 1")
    if excluded.empty:
        return
    out, kept = excluded["value"].abs().sum(), matched["value"].abs().sum()
    share = out / (out + kept) if out + kept > 0 else math.nan
    if unit == "USD":
        notes.append(f"excluded value {_usd(out)}: {share:.1%} of the gross value of the lines with a value")
    else:
        notes.append(f"excluded weight {out:.1%}: {share:.1%} of the input's gross weight")
    missing = excluded.loc[excluded["value"].isna(), "line"]
    if len(missing):
        notes.append(f"{len(missing)} excluded lines have no known value ({_lines(missing)})")


def _usd(amount: float) -> str:
    return f"-${abs(amount):,.0f}" if amount < 0 else f"${amount:,.0f}"


def _lines(numbers: pd.Series, limit: int = 12) -> str:
    """"line 4" or "lines 3, 7": line numbers for a note, the first ``limit`` of them."""
    values = [str(int(n)) for n in numbers]
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return f"line{'s' if len(values) > 1 else ''} {', '.join(values[:limit])}{more}"
