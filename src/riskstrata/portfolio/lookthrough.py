"""Look-through: expand ETF positions into their holdings to show hidden concentration; active share.

Weights throughout are **decimals of the portfolio** (0.05 = 5% of its net value; negative =
short) unless a column says it is within a fund. A fund's holding weight ``w_holding`` is a
decimal of the fund (see :mod:`riskstrata.data.etf_holdings`), so a position of weight
``w_etf`` holds ``w_etf × w_holding`` of the portfolio in that name.

Labels on both sides go through :func:`~riskstrata.data.etf_holdings.normalise_tickers` (case,
class shares ``BRK.B`` → ``BRK-B``) and :data:`~riskstrata.data.etf_holdings.RENAMES` (2021
symbols → today's, e.g. FB → META), each rename reported in ``notes``.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from riskstrata.data.etf_holdings import RENAMES, apply_renames, normalise_tickers
from riskstrata.errors import DataValidationError, UnknownTicker

__all__ = ["RENAMES", "LookThrough", "active_share", "benchmark_weights", "look_through"]

_NO_HOLDINGS = "no holdings data for this ETF"


@dataclass
class LookThrough:
    """The result of :func:`look_through`; weights are decimals of the portfolio.

    Identity: ``exposures["combined_weight"].sum() + residual_weight == weights.sum()`` (up to
    rounding): every unit of weight is a name, an ETF that could not be expanded (a line of
    its own in ``exposures`` and listed in ``unexpanded``), or residual.
    """

    exposures: pd.DataFrame
    """Index ``ticker``: ``direct_weight`` (held directly), ``via_etfs_weight`` (Σ over ETFs of
    w_etf × w_holding), ``combined_weight`` (their sum), ``sources`` (text, e.g.
    ``"direct 5.0%; SPY 3.1%; XLK 1.2%"``). Sorted by |combined_weight| descending."""
    overlap: pd.DataFrame
    """Index ``etf`` (each expanded ETF): ``fund_weight`` (its weight in the portfolio),
    ``coverage`` (Σ of its listed holding weights, a decimal of the fund), ``residual_weight``
    (fund_weight × (1 − coverage): portfolio weight in names the list does not show),
    ``overlap_with_direct`` (Σ_i min(w_fund_i, w_direct_i), both ≥ 0, w_direct_i the direct
    pick's weight divided by the direct picks' gross weight Σ|w|: 0 = nothing in common, 1 =
    the same weights) and ``names_in_common`` (names both hold, any sign)."""
    unexpanded: pd.DataFrame
    """ETF positions without holdings data: ``ticker, weight, reason``."""
    residual_weight: float
    """Σ over expanded ETFs of fund_weight × (1 − coverage): weight held via ETFs in names
    their (top-N) lists do not show. Negative when a fund lists more than 100% (leverage)."""
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines: the largest combined exposures, residual, unexpanded ETFs and notes."""
        top = self.exposures.head(10)
        lines = [f"{t:<8} {r.combined_weight:8.2%}  {r.sources}" for t, r in top.iterrows()]
        lines.append(f"residual via ETFs (names not listed): {self.residual_weight:.2%}")
        if len(self.unexpanded):
            lines.append("not expanded: " + ", ".join(self.unexpanded["ticker"]))
        return "\n".join(lines + self.notes)


# ---------------------------------------------------------------------- inputs


def _weight_series(weights: pd.Series, what: str, notes: list[str]) -> pd.Series:
    """Validated weights by normalised ticker (duplicates after normalisation summed)."""
    if not isinstance(weights, pd.Series):
        raise DataValidationError(
            f"{what} must be a pandas Series of weights indexed by ticker, not {type(weights).__name__}"
        )
    if weights.empty:
        raise DataValidationError(f"{what} is empty")
    values = pd.to_numeric(weights, errors="coerce").astype("float64")
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        names = ", ".join(map(str, weights.index[bad][:10]))
        raise DataValidationError(f"{what} has {int(bad.sum())} missing or non-finite weight(s): {names}")
    labels = normalise_tickers(pd.Series(weights.index, dtype="object"))
    if labels.isna().any():
        raise DataValidationError(f"{what} has {int(labels.isna().sum())} blank ticker(s)")
    labels, used = apply_renames(labels)
    if used:
        notes.append(f"{what}: renamed to today's symbols: " + ", ".join(f"{o}→{n}" for o, n in used.items()))
    out = pd.Series(values.to_numpy(), index=pd.Index(labels.to_numpy(), name="ticker"), name="weight")
    if out.index.has_duplicates:
        dups = sorted(set(out.index[out.index.duplicated()]))
        notes.append(f"{what}: {', '.join(dups[:10])} given more than once (after normalising); weights summed")
        out = out.groupby(level=0, sort=False).sum()
    return out


def _holdings(etf_holdings: pd.DataFrame | None, notes: list[str]) -> pd.DataFrame:
    """One snapshot per ETF as ``etf, holding, weight``: labels normalised and renamed, the
    latest date where the frame has several, repeated labels summed."""
    if etf_holdings is None or (len(etf_holdings) == 0 and not {"etf", "holding", "weight"} <= set(etf_holdings)):
        return pd.DataFrame({"etf": pd.Series(dtype="object"), "holding": pd.Series(dtype="object"),
                             "weight": pd.Series(dtype="float64")})  # fmt: skip
    lacking = {"etf", "holding", "weight"} - set(etf_holdings.columns)
    if lacking:
        raise DataValidationError(
            f"ETF holdings lack column(s) {sorted(lacking)} (has {list(etf_holdings.columns)}); "
            "expected a holdings frame, e.g. from etf_holdings_as_of"
        )
    h = etf_holdings.copy()
    h["weight"] = pd.to_numeric(h["weight"], errors="coerce").astype("float64")
    if not np.isfinite(h["weight"].to_numpy()).all():
        raise DataValidationError("ETF holdings have missing or non-finite weights (ingest them to see which)")
    if "date" in h.columns and len(h):
        h["date"] = pd.to_datetime(h["date"])
        latest = h.groupby("etf")["date"].transform("max")
        if (h["date"] != latest).any():
            notes.append("ETF holdings cover several dates: each ETF's latest snapshot was used")
            h = h[h["date"] == latest]
    h["etf"] = normalise_tickers(h["etf"])
    h["holding"] = normalise_tickers(h["holding"])
    h = h.dropna(subset=["etf", "holding"])
    zero = h["weight"].to_numpy() == 0
    if zero.any():
        # The scraped lists keep a label at 0.00 after it left or was renamed (FB beside META).
        notes.append(f"{int(zero.sum())} listed holding(s) with weight exactly 0 ignored (stale labels)")
        h = h[~zero]
    h["holding"], used = apply_renames(h["holding"])
    if used:
        notes.append("holdings: 2021 symbols renamed to today's: " + ", ".join(f"{o}→{n}" for o, n in used.items()))
    dup = h.duplicated(["etf", "holding"], keep=False)
    if dup.any():
        pairs = h.loc[dup, ["etf", "holding"]].drop_duplicates()
        text = ", ".join(f"{e}:{t}" for e, t in pairs.head(10).itertuples(index=False))
        notes.append(f"holdings listed more than once (after renames) were summed: {text}")
    return h.groupby(["etf", "holding"], as_index=False, sort=False)["weight"].sum()


def _pct(x: float) -> str:
    """A portfolio weight for the ``sources`` text: one decimal, two significant digits below 0.05%."""
    return f"{x:.1%}" if x == 0 or abs(x) >= 0.0005 else f"{x * 100:.2g}%"


# ---------------------------------------------------------------------- look-through


def look_through(weights: pd.Series, etf_holdings: pd.DataFrame | None, etfs: Collection[str]) -> LookThrough:
    """Expand each ETF position into its holdings and add them to the direct positions.

    weights: portfolio weights by ticker (decimals; shorts negative; need not sum to 1).
    etf_holdings: one holdings snapshot per ETF, columns ``etf, holding, weight`` (weight a
    decimal of the fund; a ``date`` column with several dates → each ETF's latest is used).
    etfs: which tickers are ETFs. An ETF position with holdings is expanded; one without goes
    to ``unexpanded`` and stays a line of its own in ``exposures``. Expansion is one level
    deep: an ETF inside an ETF's holdings stays a name (noted).

    combined_weight(name) = direct_weight + Σ_etf w_etf × w_name_in_etf — the hidden
    concentration when a name is held both directly and through funds.
    """
    notes: list[str] = []
    w = _weight_series(weights, "weights", notes)
    etf_set = set(normalise_tickers(pd.Series(sorted(etfs), dtype="object")).dropna())
    h = _holdings(etf_holdings, notes)

    is_etf = w.index.isin(list(etf_set))
    has_data = w.index.isin(h["etf"].unique())
    expand = w[is_etf & has_data]
    unexp = w[is_etf & ~has_data]
    direct = w[~is_etf]
    h = h[h["etf"].isin(expand.index)]

    # One row per (name, source): the direct positions, then each fund's holdings scaled by the
    # fund's portfolio weight.
    via = h.assign(contribution=h["weight"].to_numpy() * expand.reindex(h["etf"]).to_numpy())
    parts = pd.concat(
        [
            pd.DataFrame({"ticker": direct.index, "source": "direct", "contribution": direct.to_numpy()}),
            pd.DataFrame({"ticker": unexp.index, "source": "direct", "contribution": unexp.to_numpy()}),
            via.rename(columns={"holding": "ticker", "etf": "source"})[["ticker", "source", "contribution"]],
        ],
        ignore_index=True,
    )
    is_direct = parts["source"].eq("direct").to_numpy()
    direct_w = parts["contribution"].where(is_direct, 0.0).groupby(parts["ticker"], sort=False).sum()
    via_w = parts["contribution"].where(~is_direct, 0.0).groupby(parts["ticker"], sort=False).sum()
    exposures = pd.DataFrame({"direct_weight": direct_w, "via_etfs_weight": via_w})
    exposures["combined_weight"] = exposures["direct_weight"] + exposures["via_etfs_weight"]

    # Sources text: direct first, then funds by size of contribution.
    parts["label"] = parts["source"] + " " + parts["contribution"].map(_pct)
    unexp_rows = is_direct & parts["ticker"].isin(unexp.index).to_numpy()
    parts.loc[unexp_rows, "label"] += " (ETF, not expanded: no holdings data)"
    parts["_order"] = np.where(is_direct, -np.inf, -parts["contribution"].abs())
    parts = parts.sort_values(["ticker", "_order"], kind="stable")
    exposures["sources"] = parts.groupby("ticker", sort=False)["label"].agg("; ".join)
    exposures.index.name = "ticker"
    order = np.lexsort((exposures.index.to_numpy(dtype=str), -exposures["combined_weight"].abs().to_numpy()))
    exposures = exposures.iloc[order]

    overlap = _overlap(expand, h, direct, notes)
    residual = float(overlap["residual_weight"].sum())
    unexpanded = pd.DataFrame(
        {"ticker": unexp.index.to_numpy(dtype=object), "weight": unexp.to_numpy(), "reason": _NO_HOLDINGS}
    )

    inner = h[h["holding"].isin(list(etf_set | set(h["etf"])))]
    if len(inner):
        pairs = ", ".join(f"{e} holds {t}" for e, t in inner[["etf", "holding"]].itertuples(index=False))
        notes.append(f"ETFs inside ETFs kept as names (look-through is one level deep): {pairs}")
    if len(unexp):
        notes.append(f"{len(unexp)} ETF position(s) not expanded (no holdings data): {', '.join(unexp.index)}")
    if len(expand):
        notes.append(
            f"residual {residual:.2%} of the portfolio is held via ETFs in names their listed holdings do not show"
        )
        over = overlap.index[overlap["coverage"] > 1.01]  # beyond rounding of the listed weights
        if len(over):
            notes.append(f"listed holdings sum to more than 100% for {', '.join(over)}: their residual is negative")
    return LookThrough(exposures, overlap, unexpanded, residual, notes)


def _overlap(expand: pd.Series, h: pd.DataFrame, direct: pd.Series, notes: list[str]) -> pd.DataFrame:
    """Per expanded ETF: coverage, residual and overlap with the direct picks (see LookThrough)."""
    gross = float(direct.abs().sum())
    d_norm = direct / gross if gross > 0 else direct * 0.0
    if gross > 0 and (direct < 0).any():
        notes.append("overlap_with_direct: direct picks normalised by their gross weight; short picks add no overlap")
    rows = []
    for etf, fund_w in expand.items():
        fund = h.loc[h["etf"] == etf].set_index("holding")["weight"]
        common = fund.index.intersection(d_norm.index)
        both = pd.concat([fund.reindex(common), d_norm.reindex(common)], axis=1).clip(lower=0.0)
        coverage = float(fund.sum())
        rows.append(
            {
                "etf": etf,
                "fund_weight": float(fund_w),
                "coverage": coverage,
                "residual_weight": float(fund_w) * (1.0 - coverage),
                "overlap_with_direct": float(both.min(axis=1).sum()) if len(common) else 0.0,
                "names_in_common": int(((fund.reindex(common) != 0) & (d_norm.reindex(common) != 0)).sum()),
            }
        )
    cols = ["fund_weight", "coverage", "residual_weight", "overlap_with_direct", "names_in_common"]
    out = pd.DataFrame(rows, columns=["etf", *cols]).set_index("etf")
    out = out.astype({c: "float64" for c in cols[:-1]} | {"names_in_common": "int64"})
    return out.iloc[np.argsort(-out["fund_weight"].abs().to_numpy(), kind="stable")]


# ---------------------------------------------------------------------- active share


def _normalised(w: pd.Series, what: str) -> pd.Series:
    total = float(w.sum())
    if not total > 1e-12:
        raise DataValidationError(f"{what} sum to {total:.6g}: cannot normalise them to sum 1 (net long required)")
    return w / total


def active_share(weights: pd.Series, benchmark: pd.Series) -> float:
    """Active share ½ Σ_i |w_p,i − w_b,i| over the union of both sides' names (absent = 0).

    Both series (decimals by ticker) are first **normalised to sum 1** (divided by their net
    sum), so cash and scale do not count as active; tickers are normalised and renamed as in
    :func:`look_through`, duplicates summed. 0 = the benchmark's weights, 1 = no name in common
    (long-only). With shorts the value can exceed 1 (e.g. a 130/30 portfolio).

    Raises DataValidationError for a non-Series, an empty series, a missing or non-finite
    weight, a blank ticker, or a side whose net sum is not positive.
    """
    notes: list[str] = []
    p = _normalised(_weight_series(weights, "portfolio weights", notes), "portfolio weights")
    b = _normalised(_weight_series(benchmark, "benchmark weights", notes), "benchmark weights")
    names = p.index.union(b.index)
    diff = p.reindex(names, fill_value=0.0).to_numpy() - b.reindex(names, fill_value=0.0).to_numpy()
    return float(0.5 * np.abs(diff).sum())


def benchmark_weights(
    source: str | os.PathLike[str] | pd.Series | None = None,
    *,
    etf: str | None = None,
    etf_holdings: pd.DataFrame | None = None,
) -> pd.Series:
    """Benchmark weights by ticker, normalised to sum 1 (``attrs["notes"]`` says how).

    Either ``source``: a Series (ticker → weight) or a CSV/Parquet file with a ticker column
    (``ticker``/``symbol``/``holding``) and a weight column (``weight``, or ``weight_pct`` in
    percent — the unit does not matter after normalising); or ``etf`` with ``etf_holdings``
    (a holdings frame): the ETF's latest listed holdings, normalised over the listed names
    (a top-N list covering 83% becomes weights summing to 1; noted).

    Raises DataValidationError for bad input, UnknownTicker for an ETF without holdings.
    """
    if (source is None) == (etf is None):
        raise DataValidationError("give either a benchmark source (file or Series) or etf= with etf_holdings=")
    notes: list[str] = []
    if etf is not None:
        if etf_holdings is None:
            raise DataValidationError(
                f"etf={etf!r} needs etf_holdings= (a holdings frame, e.g. from etf_holdings_as_of)"
            )
        name = str(normalise_tickers(pd.Series([etf], dtype="object")).iloc[0])
        h = _holdings(etf_holdings, notes)
        fund = h[h["etf"] == name]
        if fund.empty:
            raise UnknownTicker(name, "no holdings data for this ETF")
        raw = pd.Series(fund["weight"].to_numpy(), index=fund["holding"].to_numpy())
        notes.append(f"{name}: {len(fund)} listed holdings covering {raw.sum():.1%} of the fund, normalised to sum 1")
    elif isinstance(source, pd.Series):
        raw = source
    else:
        raw = _read_weights_file(Path(source), notes)
    w = _weight_series(raw, "benchmark weights", notes)
    out = _normalised(w, "benchmark weights").rename("weight")
    out.attrs["notes"] = notes
    return out


def _read_weights_file(path: Path, notes: list[str]) -> pd.Series:
    if not path.is_file() or path.stat().st_size == 0:
        raise DataValidationError(f"benchmark file {path} is missing or empty")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            raw = pd.read_parquet(path)
        else:
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as exc:  # any reader failure means the file is not what it claims to be
        raise DataValidationError(f"cannot read benchmark file {path}: {type(exc).__name__}: {exc}") from exc
    cols = {str(c).strip().lower().replace(" ", "_"): c for c in raw.columns}
    tick = next((cols[c] for c in ("ticker", "symbol", "holding", "holding_ticker") if c in cols), None)
    wcol = next((cols[c] for c in ("weight", "weight_pct", "weight_percent") if c in cols), None)
    if tick is None or wcol is None:
        raise DataValidationError(
            f"benchmark file {path} needs ticker and weight columns (columns: {list(raw.columns)})"
        )
    notes.append(f"benchmark read from {path.name} (columns {tick!r}, {wcol!r}), normalised to sum 1")
    return pd.Series(pd.to_numeric(raw[wcol], errors="coerce").to_numpy(), index=raw[tick].to_numpy())
