"""Model B pipeline: spec + point-in-time panels → exposures → daily regression → risk.

``fit_factor_model`` is the one entry point on in-memory data; the store build in
:mod:`riskstrata.services.factors` gathers the panels and calls it. Every step is a pure
function of the modules next to this one (see docs/model_b.md).
"""

from __future__ import annotations

import contextlib
import functools
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from riskstrata.errors import DataValidationError, InsufficientHistory, UnknownTicker
from riskstrata.factors import descriptors as D
from riskstrata.factors.blocks import BlockArray
from riskstrata.factors.covariance import CovarianceParams, FactorCovariance, factor_covariance
from riskstrata.factors.exposures import industry_dummies, lag_one_day, style_exposure
from riskstrata.factors.regression import RegressionResult, cross_sectional_regression
from riskstrata.factors.spec import ModelSpec
from riskstrata.factors.specific import SpecificParams, SpecificState, specific_risk_with_state
from riskstrata.timeindex import row_on_or_before

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController

Progress = Callable[[str], None]          # called with a stage's name when it starts
Tick = Callable[[str, int, int], None]     # (stage, done, total) within a stage, for counts and an ETA
# (ModelFrame, [(a, b), …]) → each block's FactorBlock in date order, computed elsewhere (e.g.
# on a dask cluster, :mod:`riskstrata.services.factors_cluster`); the build consumes them as its own.
BlockSource = Callable[["ModelFrame", list[tuple[int, int]]], Iterator["FactorBlock"]]

# Why a descriptor has no value at all: the reason a style that needs it is not estimated.
DESCRIPTOR_INPUTS = {
    "log_size": "no market caps", "momentum": "too little return history", "beta": "too little return history",
    "residual_vol": "too little return history", "total_vol": "too little return history",
    "book_to_price": "the fundamentals have no book value field (book_value_per_share or price_to_book)",
    "earnings_yield": "the fundamentals have no earnings field (eps or pe)",
    "dividend_yield": "the fundamentals have no dividend_yield field",
    "ebitda_to_ev": "the fundamentals have no ebitda field",
    "growth": "the fundamentals have no sales field a year apart",
    "eps_growth": "the fundamentals have no eps field a year apart",
    "quality": "the fundamentals have no ebitda field",
    "leverage": "the fundamentals have no debt field (total_debt)",
    "liquidity": "the prices have no volume (or there are no shares outstanding)",
}


@dataclass
class FactorInputs:
    """Point-in-time panels, all (T dates × N tickers) on one index unless noted.

    returns: simple daily returns; market_cap: USD; sector: GICS sector per ticker (Series
    indexed by ticker, or a T × N frame for reclassifications); fundamentals: panels such as
    price_to_book, eps, pe, dividend_yield, ebitda, sales, total_debt, book_value_per_share;
    volume: shares traded; shares_outstanding and price: for turnover and value ratios.
    market_cap is the issuer's whole cap on each of its share classes and price the *raw* price
    (never an adjusted close; see docs/model_b.md, "Prices, caps and share classes");
    issuer: name → issuer id (optional): an issuer's classes count once in the estimation
    universe (:func:`riskstrata.factors.descriptors.secondary_share_classes`).
    """

    returns: pd.DataFrame
    market_cap: pd.DataFrame
    sector: pd.Series | pd.DataFrame
    fundamentals: dict[str, pd.DataFrame] = field(default_factory=dict)
    volume: pd.DataFrame | None = None
    shares_outstanding: pd.DataFrame | None = None
    price: pd.DataFrame | None = None
    issuer: pd.Series | None = None


def _align(inp: FactorInputs) -> FactorInputs:
    dates, tickers = inp.returns.index, inp.returns.columns
    if not isinstance(dates, pd.DatetimeIndex) or dates.has_duplicates or not dates.is_monotonic_increasing:
        raise DataValidationError("returns need a sorted DatetimeIndex without duplicates")
    if len(dates) < 63 or len(tickers) < 10:
        raise InsufficientHistory(f"a factor model needs ≥ 63 dates and ≥ 10 names; got {len(dates)} × {len(tickers)}")

    def re(frame: pd.DataFrame | None) -> pd.DataFrame | None:
        if frame is None:
            return None
        out = frame.reindex(index=dates, columns=tickers).astype("float64")
        # ±inf → NaN; a panel without any (the usual case) is used as it is, not copied: at
        # 3,000 names × 10 years each copy of the ~14 panels costs ~0.9 GB.
        return out.where(np.isfinite(out)) if np.isinf(out.to_numpy()).any() else out

    return FactorInputs(re(inp.returns), re(inp.market_cap), inp.sector,
                        {k: re(v) for k, v in inp.fundamentals.items()}, re(inp.volume),
                        re(inp.shares_outstanding), re(inp.price), inp.issuer)


@dataclass
class HistoryCounts:
    """Per name (N,), what the rows before a panel's first row hold: the only history the masks
    that look across dates (:func:`estimation_universe`, :func:`market_return`, ``in_model``)
    read. A daily update prepares a trailing panel with the counts before it, so its masks equal
    a full build's (:func:`history_counts` gives the counts through a frame's last row).

    returns: days with a return; eligible: days eligible for the estimation universe before the
    share-class rule (positive cap, history, price floor); positive_cap: days with a positive cap.
    """

    names: pd.Index
    returns: np.ndarray
    eligible: np.ndarray
    positive_cap: np.ndarray

    def on(self, names: pd.Index) -> HistoryCounts:
        """The counts for ``names`` (0 for a name not held: it had no history)."""
        at = self.names.get_indexer(names)
        pick = (lambda a: np.where(at >= 0, np.asarray(a, dtype=np.int64)[np.maximum(at, 0)], 0))
        return HistoryCounts(pd.Index(names), pick(self.returns), pick(self.eligible), pick(self.positive_cap))


def _positive_cap(cap: pd.DataFrame) -> np.ndarray:
    return (cap > 0).to_numpy()


def market_return(inp: FactorInputs, before: HistoryCounts | None = None) -> pd.Series:
    """(T,) the cap-weighted market return (yesterday's caps) that BETA and residual vol regress on.

    An issuer counts once: its other share classes weigh 0. before: the history before the
    panel's first row (:class:`HistoryCounts`); the first row then has no market return (its
    caps of the day before are not in the panel): a trailing panel starts a row early.
    """
    cap = inp.market_cap
    prior = None if before is None else before.on(cap.columns).positive_cap
    once = cap.where(~D.secondary_share_classes(cap, _positive_cap(cap), inp.issuer, prior)).shift(1)
    return (inp.returns * once).sum(axis=1, min_count=1) / once.where(inp.returns.notna()).sum(axis=1)


def compute_descriptors(inp: FactorInputs, needed: set[str], market: pd.Series | None = None,
                        first: int = 0) -> dict[str, pd.DataFrame]:
    """Raw descriptors (T × N) the spec asks for; missing inputs give all-NaN panels.

    market: (T,) the market return on ``inp``'s dates (default :func:`market_return` of ``inp``);
    a date block passes the whole history's, so that its first rows match a full build.
    first: the panels' rows first … T − 1 only ((T − first) × N), the same numbers bit for bit as
    those rows of the whole panels (the earlier rows are the trailing data they read).
    """
    out: dict[str, pd.DataFrame] = {}
    cap = inp.market_cap
    if needed & {"beta", "residual_vol"}:
        market = market_return(inp) if market is None else market
        out["beta"], out["residual_vol"] = D.beta_and_residual_vol(inp.returns, market, first=first)
    if "momentum" in needed:
        out["momentum"] = D.momentum(inp.returns, first=first)
    if "total_vol" in needed:
        out["total_vol"] = D.total_volatility(inp.returns, first=first)
    if "log_size" in needed:
        out["log_size"] = D.log_size(cap, first=first)
    if "liquidity" in needed and inp.volume is not None and inp.shares_outstanding is not None:
        out["liquidity"] = D.liquidity(inp.volume, inp.shares_outstanding, first=first)
    value_like = {"book_to_price", "earnings_yield", "dividend_yield", "ebitda_to_ev", "growth", "eps_growth", "quality",
                  "leverage"}
    if needed & value_like:
        price = inp.price if inp.price is not None else cap * np.nan
        out.update(D.value_descriptors(inp.fundamentals, cap, price, first=first))
    empty = pd.DataFrame(np.nan, index=inp.returns.index[first:], columns=inp.returns.columns)
    return {name: out.get(name, empty) for name in needed}


def _eligible(inp: FactorInputs, spec: ModelSpec, before: HistoryCounts | None) -> np.ndarray:
    """(T, N) bool: positive cap, enough history (days with a return) and the price floor."""
    u = spec.universe
    history = inp.returns.notna().cumsum().to_numpy()
    if before is not None:
        history = history + before.on(inp.returns.columns).returns[None, :]
    cap = inp.market_cap.to_numpy()
    ok = np.isfinite(cap) & (cap > 0) & (history >= u.get("min_history_days", 126))
    if inp.price is not None:
        ok &= ~(inp.price.to_numpy() < u.get("min_price", 1.0))
    return ok


def estimation_universe(inp: FactorInputs, spec: ModelSpec, before: HistoryCounts | None = None) -> np.ndarray:
    """(T, N) bool: positive cap, enough history, price floor, and among the largest names.

    before: the history before the panel's first row (:class:`HistoryCounts`; None: none)."""
    u = spec.universe
    ok = _eligible(inp, spec, before)
    prior = None if before is None else before.on(inp.returns.columns).eligible
    ok &= ~D.secondary_share_classes(inp.market_cap, ok, inp.issuer, prior)  # an issuer counts once
    size = u.get("estimation_size", 3000)
    # A date with at most ``size`` eligible names keeps them all (a rank among n values is ≤ n):
    # only the dates with more are ranked.
    crowded = np.flatnonzero(ok.sum(axis=1) > size)
    if len(crowded):
        cap = inp.market_cap.to_numpy()[crowded]
        ranked = pd.DataFrame(np.where(ok[crowded], cap, np.nan)).rank(axis=1, ascending=False).to_numpy()
        ok[crowded] &= ranked <= size
    return ok


def _industry_codes(inp: FactorInputs, spec: ModelSpec) -> tuple[np.ndarray, list[str], list[str]]:
    """(T, N) int industry index (−1 = unmapped), industry names, and notes."""
    names = spec.industry_factors
    lookup = {sector: names.index(ind) for sector, ind in spec.industries.items()}
    T, N = inp.returns.shape
    if isinstance(inp.sector, pd.Series):
        sectors = inp.sector.reindex(inp.returns.columns)
        codes = np.tile(sectors.map(lookup).fillna(-1).to_numpy(dtype=int), (T, 1))
        unmapped = sorted(set(sectors.dropna()) - set(lookup))
        missing = int(sectors.isna().sum())
    else:
        frame = inp.sector.reindex(index=inp.returns.index, columns=inp.returns.columns)
        codes = frame.apply(lambda col: col.map(lookup)).fillna(-1).to_numpy(dtype=int)
        unmapped = sorted(set(pd.unique(frame.to_numpy().ravel())) - set(lookup) - {None, np.nan})
        missing = int(frame.iloc[-1].isna().sum())
    notes = []
    if unmapped:
        notes.append(f"sectors with no industry factor in the spec: {unmapped[:8]}")
    if missing:
        notes.append(f"{missing} names have no sector: no industry exposure")
    return codes, names, notes


@dataclass
class FactorModelResult:
    """A fitted factor model. Exposures are as of each date's close (they explain the next day)."""

    spec: ModelSpec
    dates: pd.DatetimeIndex
    tickers: pd.Index
    factors: list[str]
    # (T, N, K) z-scores / dummies / ones, NaN outside the universe; a streamed build's (spill_dir)
    # is a BlockArray read back date block by date block (x[t], x[rows], np.asarray(x)).
    exposures: np.ndarray | BlockArray
    imputed: np.ndarray | BlockArray  # (T, N, K) bool
    universe: np.ndarray             # (T, N) bool, the estimation universe
    regression: RegressionResult
    covariance: FactorCovariance
    specific_var: pd.DataFrame       # (T × N) daily specific variance forecast
    market_cap: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    coverage: pd.DataFrame | None = None   # (T × spec factors) see :func:`factor_coverage`
    status: list[dict] = field(default_factory=list)  # one entry per spec factor, see :func:`factor_status`
    has_data: dict[str, bool] = field(default_factory=dict)  # descriptor → any value on any date (status reasons)
    # What a daily update goes on from (services.factors_state): the names' history through the
    # last date and the specific-risk recursions there.
    history: HistoryCounts | None = None
    specific_state: SpecificState | None = None

    @property
    def factor_returns(self) -> pd.DataFrame:
        return self.regression.factor_returns

    @property
    def groups(self) -> dict[str, str]:
        """Factor → its group: market, style or industry (the design's factors)."""
        return factor_groups(self.spec, self.factors)

    def _row(self, date: object | None) -> int:
        return row_on_or_before(self.dates, date)

    def exposures_on(self, date: object | None = None) -> pd.DataFrame:
        """(N × K) exposures at the close of a date (default: the last)."""
        return pd.DataFrame(self.exposures[self._row(date)], index=self.tickers, columns=self.factors)

    def stock_exposures(self, ticker: str, date: object | None = None) -> pd.Series:
        """One stock's z-score exposure to every factor on a date."""
        if ticker not in self.tickers:
            raise UnknownTicker(ticker, "not in the factor model's universe")
        row = self.exposures_on(date).loc[ticker]
        if row.isna().all():
            raise InsufficientHistory(f"{ticker} has no exposures on {self.dates[self._row(date)].date()}")
        return row

    def portfolio_risk(self, weights: pd.Series, date: object | None = None) -> dict:
        """X'FX + specific for a portfolio (decimal weights by ticker), with Euler shares by group."""
        i = self._row(date)
        w = weights.reindex(self.tickers).fillna(0.0).to_numpy()
        unknown = sorted(set(weights.index) - set(self.tickers))
        X = np.nan_to_num(self.exposures[i])
        F = np.nan_to_num(self.covariance.adjusted[i])  # a factor with no forecast yet adds no risk
        s2 = np.nan_to_num(self.specific_var.iloc[i].to_numpy())
        x = X.T @ w
        Fx = F @ x
        factor_contrib = x * Fx
        specific = float((w**2 * s2).sum())
        total = float(factor_contrib.sum() + specific)
        kind = self.groups
        groups = {label: [k for k, f in enumerate(self.factors) if kind[f] == g]
                  for label, g in (("market", "market"), ("styles", "style"), ("industries", "industry"))}
        shares = {g: float(factor_contrib[idx].sum() / total) for g, idx in groups.items()}
        shares["specific"] = specific / total
        return {"date": str(self.dates[i].date()), "variance": total, "vol_ann": float(np.sqrt(total * 252)),
                "exposures": pd.Series(x, index=self.factors), "shares": shares, "unknown": unknown,
                "by_factor": pd.Series(factor_contrib / total, index=self.factors)}

    def qlib_triplet(self, date: object | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
        """Qlib's per-date risk-model triplet: factor exposures (N × K), factor covariance (K × K),
        specific risk (N,) — all daily, as qlib.model.riskmodel expects."""
        i = self._row(date)
        exp = self.exposures_on(date).dropna(how="all")
        cov = pd.DataFrame(self.covariance.adjusted[i], index=self.factors, columns=self.factors)
        spec_risk = np.sqrt(self.specific_var.iloc[i]).reindex(exp.index)
        return exp, cov, spec_risk

    def pyfolio_inputs(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """pyfolio ``perf_attrib`` inputs: factor returns (T × K) and factor loadings with a
        (date, ticker) MultiIndex (the exposures that explained each date's returns)."""
        exposures = np.asarray(self.exposures)
        T, N, K = exposures.shape
        lagged = lag_one_day(exposures.reshape(T, N * K)).reshape(T, N, K)
        idx = pd.MultiIndex.from_product([self.dates, self.tickers], names=["dt", "ticker"])
        loadings = pd.DataFrame(lagged.reshape(T * N, K), index=idx, columns=self.factors).dropna(how="all")
        return self.factor_returns, loadings


def _weights(kind: str, cap_lag: np.ndarray, spec_var_lag: np.ndarray | None) -> np.ndarray:
    if kind == "equal":
        return np.where(np.isfinite(cap_lag), 1.0, np.nan)
    if kind == "cap":
        return cap_lag
    if kind == "inv_specific_var" and spec_var_lag is not None:
        return 1.0 / spec_var_lag
    return np.sqrt(cap_lag)  # √cap: the usual compromise between OLS and cap weighting


def factor_groups(spec: ModelSpec, factors: list[str] | None = None) -> dict[str, str]:
    """Factor name → "market", "style" or "industry", for ``factors`` (default: the spec's).

    Groups are looked up by name, never by position: a style that is not estimated leaves
    the design, and positions would then shift industries into the styles.
    """
    kind = {spec.market_factor: "market", **{s: "style" for s in spec.style_factors},
            **{i: "industry" for i in spec.industry_factors}}
    return {f: kind.get(f, "style") for f in (spec.factors if factors is None else factors)}


def _cap_share(has: np.ndarray, universe: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """(T,) share of the universe's cap held by names where ``has`` (T, N); NaN without a universe."""
    w = np.where(universe & np.isfinite(cap) & (cap > 0), cap, 0.0)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w * has).sum(axis=1) / total, np.nan)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) rows of each run of True in a (T,) bool array."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


MAX_GAPS_LISTED = 6  # per factor in notes; every gap is in the status


def _missing_inputs(descriptors: dict[str, float], desc: dict[str, pd.DataFrame | bool]) -> list[str]:
    """The inputs of a style's descriptors that have no value at all (the whole panel is NaN).

    desc: descriptor → its (T × N) panel, or whether it has any value (a streamed build's record).
    """
    def seen(d: str) -> bool:
        v = desc.get(d, False)
        return bool(v) if isinstance(v, (bool, np.bool_)) else bool(v.notna().to_numpy().any())

    return [DESCRIPTOR_INPUTS.get(d, d) for d in descriptors if not seen(d)]


def factor_status(spec: ModelSpec, factors: list[str], coverage: pd.DataFrame, estimated: pd.DataFrame,
                  desc: dict[str, pd.DataFrame | bool], regression_dates: np.ndarray,
                  regression_notes: dict | None = None) -> list[dict]:
    """One entry per spec factor: estimated or not, on how many dates, its gaps and why.

    coverage, estimated: (T × spec factors), row t = the exposures that explain t's returns;
    regression_dates: (T,) bool, the dates the regression ran at all; regression_notes: its
    per-date notes (why it left a covered factor out, e.g. no non-zero exposure). An entry is
    {factor, group, estimated (bool: on any date), dates_estimated, dates, coverage_mean,
    coverage_last, reason (None when estimated on every date), gaps: [{first, last, dates, why}]}.
    """
    groups = factor_groups(spec)
    styles = {s.name: s for s in spec.styles}
    thr = spec.min_coverage
    dates = coverage.index
    out = []
    for f in spec.factors:
        est = estimated[f].to_numpy() & regression_dates
        cov = coverage[f].to_numpy()
        entry = {"factor": f, "group": groups[f], "estimated": bool(est.any()), "dates_estimated": int(est.sum()),
                 "dates": int(regression_dates.sum()),
                 "coverage_mean": float(np.nanmean(cov)) if np.isfinite(cov).any() else None,
                 "coverage_last": float(cov[-1]) if np.isfinite(cov[-1]) else None, "reason": None, "gaps": []}
        why = "not estimated"
        if f in styles:
            missing = _missing_inputs(styles[f].descriptors, desc)
            if missing and len(missing) == len(styles[f].descriptors):
                why = "; ".join(dict.fromkeys(missing))
            else:
                why = f"names with fresh, non-imputed data hold < {thr:.0%} of the estimation universe's cap"
        elif f in factors:
            why = "fewer names in the industry than min_industry_names"
        else:
            why = "no name in the industry"
        if f not in factors:
            entry["reason"] = why
        gaps = _runs(regression_dates & ~est)
        for a, b in gaps:
            run = cov[a:b + 1]
            detail = why
            if f in styles and f in factors and np.isfinite(run).any():
                low = ~(run >= thr)
                detail = f"{why} on {int(low.sum())} of its dates (coverage {np.nanmin(run):.0%}–{np.nanmax(run):.0%})"
                if not low.all():
                    said = [n for d in dates[a:b + 1][~low] for n in (regression_notes or {}).get(d, [])
                            if n.startswith(f"{f}:")]
                    example = f": {said[0].split(': ', 1)[1]}" if said else ""
                    detail += f"; on {int((~low).sum())} covered dates the regression left it out{example}"
            entry["gaps"].append({"first": str(dates[a].date()), "last": str(dates[b].date()),
                                  "dates": int(b - a + 1), "why": detail})
        if f in factors and gaps:
            entry["reason"] = (f"not estimated on {int((regression_dates & ~est).sum())} of {entry['dates']} dates"
                               if est.any() else why)
        out.append(entry)
    return out


def kept_columns(spec: ModelSpec, coverage: np.ndarray) -> np.ndarray:
    """The design columns a build keeps: the market, every style whose coverage reaches the
    spec's threshold on some date (the others leave the design and are listed in the status),
    every industry. coverage: (T, K) over the design (row t: the exposures of t)."""
    n_styles = len(spec.styles)
    kept = [1 + i for i in range(n_styles) if (coverage[:, 1 + i] >= spec.min_coverage).any()]
    return np.array([0, *kept, *range(1 + n_styles, coverage.shape[1])])


def model_status(spec: ModelSpec, factor_returns: pd.DataFrame, coverage_lag: pd.DataFrame,
                 has_data: dict[str, bool], regression_notes: dict) -> list[dict]:
    """:func:`factor_status` of a fitted model from its factor returns (T × kept factors; NaN =
    not estimated) and its lagged coverage (T × spec factors)."""
    factors = list(factor_returns.columns)
    estimated = pd.DataFrame(False, index=factor_returns.index, columns=spec.factors)
    estimated[factors] = factor_returns.notna().to_numpy()
    ran = factor_returns.notna().any(axis=1).to_numpy()
    return factor_status(spec, factors, coverage_lag, estimated, has_data, ran, regression_notes)


def status_notes(status: list[dict]) -> list[str]:
    """Human-readable notes: each factor not estimated at all, and each gap of the others."""
    notes = []
    for s in status:
        if not s["estimated"]:
            notes.append(f"{s['factor']}: not estimated — {s['gaps'][0]['why'] if s['gaps'] else s['reason']}")
            continue
        for g in s["gaps"][:MAX_GAPS_LISTED]:
            notes.append(f"{s['factor']}: not estimated {g['first']} … {g['last']} ({g['dates']} dates): {g['why']}")
        if len(s["gaps"]) > MAX_GAPS_LISTED:
            more = s["gaps"][MAX_GAPS_LISTED:]
            notes.append(f"{s['factor']}: {len(more)} more gaps ({sum(g['dates'] for g in more)} dates), "
                         "listed in the build's factor status")
    return notes


DEFAULT_BLOCK_DATES = 252      # dates per block of the streamed build
DESCRIPTOR_LOOKBACK_ROWS = 252  # the longest trailing window of a descriptor (BETA, momentum, vols, STOA)
DESCRIPTOR_LOOKBACK_DAYS = 365  # GROWTH's year-ago value (calendar days)


def lookback_start(dates: pd.DatetimeIndex, a: int) -> int:
    """First row of the trailing data whose descriptors reproduce row ``a``'s of a full build.

    Every descriptor of row t reads rows t − 251 … t (252-row windows) and GROWTH / EPS growth
    the last date on or before t − 365 calendar days; a block starting at ``a`` computes its
    descriptors on rows ``lookback_start(dates, a)`` … and keeps its own rows.
    """
    by_rows = a - DESCRIPTOR_LOOKBACK_ROWS
    by_days = int(dates.searchsorted(dates[a] - pd.Timedelta(days=DESCRIPTOR_LOOKBACK_DAYS), side="right")) - 1
    return max(0, min(by_rows, by_days))


def _rows(inp: FactorInputs, lo: int, hi: int) -> FactorInputs:
    """The panels' rows lo … hi − 1 (views, not copies); a (T × N) sector frame too."""
    def cut(frame: pd.DataFrame | None) -> pd.DataFrame | None:
        return None if frame is None else frame.iloc[lo:hi]

    sector = inp.sector.iloc[lo:hi] if isinstance(inp.sector, pd.DataFrame) else inp.sector
    return FactorInputs(cut(inp.returns), cut(inp.market_cap), sector, {k: cut(v) for k, v in inp.fundamentals.items()},
                        cut(inp.volume), cut(inp.shares_outstanding), cut(inp.price), inp.issuer)


@dataclass
class ModelFrame:
    """What every date block of a build shares: the aligned panels and the (T, N) masks that
    look across dates (history counts, share classes), computed once.

    design: the block design's factors, always every spec factor (market, all styles,
    industries); a style never estimated is dropped from the result at the end.
    """

    inp: FactorInputs
    spec: ModelSpec
    universe: np.ndarray    # (T, N) bool, the estimation universe
    codes: np.ndarray       # (T, N) int industry index, −1 = none
    in_model: np.ndarray    # (T, N) bool: a positive cap and a return seen by t
    market: pd.Series       # (T,) the market return BETA regresses on
    needed: set[str]        # descriptor names the spec uses
    notes: list[str]

    @property
    def dates(self) -> pd.DatetimeIndex:
        return self.inp.returns.index

    @property
    def tickers(self) -> pd.Index:
        return self.inp.returns.columns

    @property
    def design(self) -> list[str]:
        return self.spec.factors

    @property
    def industry_cols(self) -> list[int]:
        return list(range(1 + len(self.spec.styles), len(self.design)))


def prepare_model(inputs: FactorInputs, spec: ModelSpec, before: HistoryCounts | None = None) -> ModelFrame:
    """Align the panels and compute the masks every date block needs (O(T·N), no descriptors).

    before: the history before the panels' first row, for a trailing panel (:class:`HistoryCounts`)."""
    inp = _align(inputs)
    needed = {d for s in spec.styles for d in s.descriptors}
    universe = estimation_universe(inp, spec, before)
    codes, _, notes = _industry_codes(inp, spec)
    cap = inp.market_cap.to_numpy()
    seen = inp.returns.notna().cumsum().to_numpy()
    if before is not None:
        seen = seen + before.on(inp.returns.columns).returns[None, :]
    in_model = np.isfinite(cap) & (cap > 0) & (seen > 0)
    market = (market_return(inp, before) if needed & {"beta", "residual_vol"}
              else pd.Series(np.nan, index=inp.returns.index))
    return ModelFrame(inp, spec, universe, codes, in_model, market, needed, list(notes))


def history_counts(mf: ModelFrame, before: HistoryCounts | None = None, through: int | None = None) -> HistoryCounts:
    """The :class:`HistoryCounts` through row ``through`` of the frame (default its last), given
    the counts before its first row: what a daily update starting after that row needs."""
    inp, names = mf.inp, mf.tickers
    rows = slice(0, (len(mf.dates) if through is None else through + 1))
    prior = before.on(names) if before is not None else HistoryCounts(names, *(np.zeros(len(names), np.int64),) * 3)
    return HistoryCounts(names, prior.returns + inp.returns.iloc[rows].notna().to_numpy().sum(axis=0),
                         prior.eligible + _eligible(_rows(inp, rows.start, rows.stop), mf.spec, prior).sum(axis=0),
                         prior.positive_cap + _positive_cap(inp.market_cap.iloc[rows]).sum(axis=0))


def history_before(inputs: FactorInputs, spec: ModelSpec, through: HistoryCounts, last_row: int) -> HistoryCounts:
    """The :class:`HistoryCounts` before the panels' first row, given those through row
    ``last_row`` (what :func:`history_counts` gave there): a trailing panel's ``before``.

    Raises DataValidationError when rows 0 … last_row hold more history than the counts: the
    panels are not the data the counts were taken from.
    """
    # The counts read the returns, caps and prices only: the other panels are not aligned.
    counted = FactorInputs(inputs.returns, inputs.market_cap, inputs.sector, price=inputs.price, issuer=inputs.issuer)
    inp = _align(_rows(counted, 0, last_row + 1))
    names = inp.returns.columns
    at = through.on(names)
    returns = at.returns - inp.returns.notna().to_numpy().sum(axis=0)
    positive = at.positive_cap - _positive_cap(inp.market_cap).sum(axis=0)
    partial = HistoryCounts(names, returns, np.zeros(len(names), np.int64), positive)
    out = HistoryCounts(names, returns, at.eligible - _eligible(inp, spec, partial).sum(axis=0), positive)
    if min(out.returns.min(), out.eligible.min(), out.positive_cap.min()) < 0:
        raise DataValidationError("the panels hold more history than the model counted: the data changed")
    return out


@dataclass
class BlockCarry:
    """What a block hands to the next: the exposures (N, K) and coverage (K,) of its last date,
    which explain the next block's first date (K = the design's factors)."""

    exposures: np.ndarray
    coverage: np.ndarray


@dataclass
class FactorBlock:
    """Dates a … b − 1 of a build (K = the design's factors, every spec factor).

    exposures: (B, N, K) at each date's close; imputed: (B, N, K) bool; coverage: (B, K) share
    of the universe's cap with fresh descriptors (market and industries: with a cap / an
    industry); has_data: descriptor → whether it has any value in the block; regression:
    the dates' factor returns etc. (exposures of t − 1 explain t); specific: (B, N) r − X·f for
    every name with exposures.
    """

    a: int
    b: int
    exposures: np.ndarray
    imputed: np.ndarray
    coverage: np.ndarray
    has_data: dict[str, bool]
    regression: RegressionResult
    specific: np.ndarray

    @property
    def carry(self) -> BlockCarry:
        return BlockCarry(self.exposures[-1].copy(), self.coverage[-1].copy())


def block_exposures(mf: ModelFrame, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, bool]]:
    """Exposures of dates a … b − 1 from their descriptors (computed on the trailing data they need).

    Returns (exposures (B + 1, N, K), imputed (B, N, K) bool, coverage (B, K), has_data) over
    the design's K factors: row 0 of the exposures is left NaN for the caller's date a − 1, so
    that rows 1 … B (the block) and rows 0 … B − 1 (what explains it) are both views. A style not
    estimated on a date (coverage below the spec's threshold) has NaN exposures that date.
    """
    spec, inp = mf.spec, mf.inp
    lo = lookback_start(mf.dates, a)
    # The block's own rows of the descriptors of its trailing panel (the rows before are read only).
    desc = compute_descriptors(_rows(inp, lo, b), mf.needed, mf.market.iloc[lo:b], first=a - lo)
    B, N, K = b - a, len(mf.tickers), len(mf.design)
    universe, codes, in_model = mf.universe[a:b], mf.codes[a:b], mf.in_model[a:b]
    cap = inp.market_cap.to_numpy()[a:b]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_cap = np.log(np.where(cap > 0, cap, np.nan))
    thr = spec.min_coverage
    x_ext = np.full((B + 1, N, K), np.nan)
    x = x_ext[1:]
    imputed = np.zeros((B, N, K), dtype=bool)
    coverage = np.full((B, K), np.nan)
    coverage[:, 0] = _cap_share(np.ones((B, N), bool), universe, cap)
    has_data = {}
    for i, s in enumerate(spec.styles):
        arrays = {d: desc[d].to_numpy() for d in s.descriptors}
        has = np.zeros((B, N), dtype=bool)
        for d, arr in arrays.items():
            finite = np.isfinite(arr)
            has |= finite
            has_data[d] = has_data.get(d, False) or bool(finite.any())
        coverage[:, 1 + i] = _cap_share(has, universe, cap)
        covered = coverage[:, 1 + i] >= thr   # NaN (no universe) compares False
        if not covered.any():
            continue  # not estimated on any of these dates: NaN exposures
        style, imp = style_exposure(arrays, s.descriptors, cap, universe, codes, log_cap)
        x[:, :, 1 + i] = np.where(covered[:, None] & in_model, style, np.nan)
        imputed[:, :, 1 + i] = imp & covered[:, None]
    first_ind = 1 + len(spec.styles)
    coverage[:, first_ind:] = _cap_share(codes >= 0, universe, cap)[:, None]
    x[:, :, 0] = np.where(in_model, 1.0, np.nan)
    n_ind = K - first_ind
    x[:, :, first_ind:] = np.where(in_model[..., None], industry_dummies(codes, n_ind), np.nan)
    return x_ext, imputed, coverage, has_data


def block_regression(mf: ModelFrame, a: int, b: int, lagged: np.ndarray, coverage_lag: np.ndarray,
                     spec_var_lag: np.ndarray | None = None) -> tuple[RegressionResult, np.ndarray]:
    """Factor returns of dates a … b − 1 and every name's specific return.

    lagged: (B, N, K) the exposures of dates a − 1 … b − 2 (NaN before the first date);
    coverage_lag: (B, K) their coverage; spec_var_lag: (B, N) specific variances of the same
    dates, for ``inv_specific_var`` weights. Returns (the regression, specific (B, N)).
    """
    spec, inp = mf.spec, mf.inp
    cap = inp.market_cap.to_numpy()
    cap_lag = np.full((b - a, cap.shape[1]), np.nan)
    if a > 0:
        cap_lag[:] = np.where(mf.universe[a - 1:b - 1], cap[a - 1:b - 1], np.nan)
    else:
        cap_lag[1:] = np.where(mf.universe[:b - 1], cap[:b - 1], np.nan)
    thr = spec.min_coverage
    not_estimated = np.zeros(coverage_lag.shape, dtype=bool)
    styles = slice(1, 1 + len(spec.styles))
    not_estimated[:, styles] = ~(coverage_lag[:, styles] >= thr)
    kind = spec.regression.get("weights", "sqrt_cap")
    r = inp.returns.to_numpy()[a:b]
    reg = cross_sectional_regression(r, lagged, _weights(kind, cap_lag, spec_var_lag), factors=mf.design,
                                     industry_cols=mf.industry_cols, industry_caps=cap_lag,
                                     dates=mf.dates[a:b], tickers=mf.tickers,
                                     min_names=spec.regression.get("min_names", 30),
                                     min_industry_names=spec.regression.get("min_industry_names", 3),
                                     not_estimated=not_estimated)
    return reg, _specific_returns(r, lagged, reg.factor_returns.to_numpy())


def factor_block(mf: ModelFrame, a: int, b: int, carry: BlockCarry | None = None,
                 spec_var_lag: np.ndarray | None = None) -> FactorBlock:
    """Exposures, factor returns and specific returns of dates a … b − 1 given the trailing data.

    The one step of a build: a full build runs it on consecutive blocks, handing each block's
    :attr:`FactorBlock.carry` to the next (``carry`` None: date a − 1 has no exposures, as
    before the first date). The descriptors read the panels' rows from
    :func:`lookback_start` on, so a block equals the same dates of a one-block build.
    """
    return finish_block(mf, a, b, block_exposures(mf, a, b), carry, spec_var_lag)


def finish_block(mf: ModelFrame, a: int, b: int, made: tuple, carry: BlockCarry | None = None,
                 spec_var_lag: np.ndarray | None = None) -> FactorBlock:
    """:func:`factor_block` given the block's :func:`block_exposures` (``made``): the regression
    and specific returns, which need the previous block's last exposures (``carry``)."""
    x_ext, imputed, coverage, has_data = made
    K = x_ext.shape[2]
    if carry is not None:
        x_ext[0] = carry.exposures
    prev_c = carry.coverage if carry is not None else np.full(K, np.nan)
    coverage_lag = np.concatenate([prev_c[None], coverage[:-1]])
    reg, specific = block_regression(mf, a, b, x_ext[:-1], coverage_lag, spec_var_lag)
    return FactorBlock(a, b, x_ext[1:], imputed, coverage, has_data, reg, specific)


def block_bounds(T: int, block_dates: int | None) -> list[tuple[int, int]]:
    """Consecutive (a, b) row ranges of at most ``block_dates`` dates (None: one block)."""
    size = T if not block_dates else max(1, int(block_dates))
    return [(a, min(a + size, T)) for a in range(0, T, size)]


class _Exposures:
    """Where the blocks' exposures go: dense (T, N, K) arrays, or one .npy file per block."""

    def __init__(self, shape: tuple[int, int, int], spill_dir: str | Path | None) -> None:
        self.shape, self.spill = shape, None if spill_dir is None else Path(spill_dir)
        self.paths: dict[str, list[Path]] = {"x": [], "imputed": []}
        self.bounds: list[tuple[int, int]] = []
        if self.spill is None:
            self.x = np.empty(shape)
            self.imputed = np.empty(shape, dtype=bool)
        else:
            self.spill.mkdir(parents=True, exist_ok=True)

    def put(self, a: int, b: int, x: np.ndarray, imputed: np.ndarray) -> None:
        self.bounds.append((a, b))
        if self.spill is None:
            self.x[a:b], self.imputed[a:b] = x, imputed
            return
        for name, arr in (("x", x), ("imputed", imputed)):
            path = self.spill / f"{name}_{a:06d}_{b:06d}.npy"
            np.save(path, arr)
            self.paths[name].append(path)

    def lagged(self, a: int, b: int) -> np.ndarray:
        """(b − a, N, K) exposures of dates a − 1 … b − 2 (the first NaN when a = 0)."""
        if self.spill is None:
            lo = max(a - 1, 0)
            part = self.x[lo:b - 1]
            return part if a > 0 else np.concatenate([np.full((1, *self.shape[1:]), np.nan), part])
        out = np.full((b - a, *self.shape[1:]), np.nan)
        view = self.result("x")
        for i, (c, d) in enumerate(view.bounds):
            lo, hi = max(c, a - 1), min(d, b - 1)
            if lo < hi:
                out[lo - (a - 1):hi - (a - 1)] = view.block(i)[lo - c:hi - c]
        return out

    def result(self, name: str, columns: np.ndarray | None = None) -> np.ndarray | BlockArray:
        if self.spill is None:
            arr = self.x if name == "x" else self.imputed
            return arr if columns is None or len(columns) == arr.shape[2] else arr[:, :, columns]
        dtype = np.float64 if name == "x" else np.bool_
        if columns is not None and np.array_equal(columns, np.arange(self.shape[2])):
            columns = None  # every stored column, in order: blocks are read as they are, not copied
        return BlockArray(self.bounds, self.paths[name], self.shape[1:], dtype, columns)


def one_blas_thread() -> contextlib.AbstractContextManager:
    """BLAS (OpenBLAS/MKL) held to one thread inside the block: the build's own threads use the
    cores, and a BLAS that spins up threads of its own for each mid-sized product (21 × 3,000
    by 3,000 × 100) oversubscribes them — measured 3–4× slower on 2 shared cores."""
    controller = _blas_controller()
    return contextlib.nullcontext() if controller is None else controller.limit(limits=1, user_api="blas")


@functools.cache
def _blas_controller() -> ThreadpoolController | None:
    """One ``ThreadpoolController`` per process: ``threadpool_limits`` scans every loaded library
    on each call (30–40 ms of a one-day update); numpy's BLAS is loaded before this module."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a declared dependency; without it, BLAS as it is
        return None
    return ThreadpoolController()


def fit_factor_model(inputs: FactorInputs, spec: ModelSpec, progress: Progress | None = None,
                     tick: Tick | None = None, *, block_dates: int | None = DEFAULT_BLOCK_DATES,
                     spill_dir: str | Path | None = None, workers: int = 2,
                     block_source: BlockSource | None = None,
                     eigen_biases: tuple[list[str], dict[pd.Timestamp, np.ndarray]] | None = None) -> FactorModelResult:
    """Fit the spec on point-in-time panels: exposures, factor returns, covariance, specific risk.

    A style is estimated on a date only when its coverage (the share of the estimation
    universe's cap whose names have a fresh, non-imputed descriptor) reaches the spec's
    ``[coverage] min_cap_share``; elsewhere its exposures are NaN and its factor return is
    missing. ``progress(stage)`` is called as each stage starts, ``tick(stage, done, total)``
    within the long ones.

    The dates are processed in blocks of ``block_dates`` (None: one block), each by
    :func:`factor_block` — descriptors on the trailing data they need, exposures, the
    regression and specific returns — so the working memory is one block's. ``spill_dir``: a
    directory where each block's exposures are written as they are produced; the result then
    holds them as a :class:`~riskstrata.factors.blocks.BlockArray` read back block by block
    (peak memory independent of T × N × K). Without it they are held as (T, N, K) arrays.
    ``workers``: blocks whose exposures are made at once (threads; 1 = strictly one at a time).
    Results do not depend on the block size beyond floating-point rounding (≲ 1e-13).
    ``block_source``: where the blocks are made instead of this process's threads (a cluster);
    everything after the blocks (specific risk, covariance, status) runs here as usual.
    ``eigen_biases``: (factors, date → bias) the eigen simulations of a previous fit of the same
    data (a daily update), reused when the factors are this fit's (:func:`factor_covariance`).
    """
    with one_blas_thread():
        return _fit(inputs, spec, progress, tick, block_dates, spill_dir, workers, block_source, eigen_biases)


def specific_params(spec: ModelSpec) -> SpecificParams:
    """The spec's ``[risk]`` settings of the specific-risk forecast (USE4 defaults)."""
    risk = spec.risk
    return SpecificParams(halflife=risk.get("specific_halflife", 84), nw_lags=risk.get("specific_nw_lags", 5),
                          shrink_q=risk.get("shrink_q", 0.1), vra_halflife=risk.get("vra_halflife", 42))


def covariance_params(spec: ModelSpec) -> CovarianceParams:
    """The spec's ``[risk]`` settings of the factor covariance forecast (USE4 defaults)."""
    risk = spec.risk
    return CovarianceParams(vol_halflife=risk.get("vol_halflife", 84), corr_halflife=risk.get("corr_halflife", 504),
                            vol_nw_lags=risk.get("vol_nw_lags", 5), corr_nw_lags=risk.get("corr_nw_lags", 2),
                            eigen_sims=risk.get("eigen_sims", 300), eigen_scale=risk.get("eigen_scale", 1.4),
                            eigen_every=risk.get("eigen_every", 5), vra_halflife=risk.get("vra_halflife", 42),
                            restart_gap=risk.get("restart_gap_days", 63),
                            restart_prior_obs=risk.get("restart_prior_days", 21))


def _fit(inputs: FactorInputs, spec: ModelSpec, progress: Progress | None, tick: Tick | None,
         block_dates: int | None, spill_dir: str | Path | None, workers: int,
         block_source: BlockSource | None = None,
         eigen_biases: tuple[list[str], dict[pd.Timestamp, np.ndarray]] | None = None) -> FactorModelResult:
    say = progress or (lambda _msg: None)
    count = tick or (lambda _stage, _done, _total: None)
    say("descriptors")
    count("descriptors", 0, 1)
    mf = prepare_model(inputs, spec)
    notes = list(mf.notes)
    dates, tickers = mf.dates, mf.tickers
    T, N, K = len(dates), len(tickers), len(mf.design)
    count("descriptors", 1, 1)
    say("exposures")
    store = _Exposures((T, N, K), spill_dir)
    f, tst = np.full((T, K), np.nan), np.full((T, K), np.nan)
    r2, n_names, cond, resid = (np.full(T, np.nan) for _ in range(4))
    reg_specific, specific = np.full((T, N), np.nan), np.full((T, N), np.nan)
    thin = np.zeros((T, K), dtype=bool)
    coverage = np.full((T, K), np.nan)
    has_data: dict[str, bool] = {}
    reg_notes: dict[pd.Timestamp, list[str]] = {}

    def keep(blk_a: int, blk_b: int, reg: RegressionResult, u: np.ndarray) -> None:
        rows = slice(blk_a, blk_b)
        f[rows], tst[rows] = reg.factor_returns.to_numpy(), reg.t_stats.to_numpy()
        r2[rows], n_names[rows] = reg.r2.to_numpy(), reg.n_names.to_numpy()
        cond[rows], resid[rows] = reg.condition_number.to_numpy(), reg.constraint_residual.to_numpy()
        reg_specific[rows], thin[rows], specific[rows] = reg.specific_returns.to_numpy(), reg.thin_industries.to_numpy(), u
        reg_notes.update(reg.notes)

    bounds = block_bounds(T, block_dates)
    carry = None

    def take(i: int, a: int, b: int, blk: FactorBlock) -> None:
        count("exposures", i, len(bounds))
        store.put(a, b, blk.exposures, blk.imputed)
        coverage[a:b] = blk.coverage
        for d, seen in blk.has_data.items():
            has_data[d] = has_data.get(d, False) or seen
        keep(a, b, blk.regression, blk.specific)

    if block_source is not None:  # every block from elsewhere, in order (strict: none missing)
        for i, ((a, b), blk) in enumerate(zip(bounds, block_source(mf, bounds), strict=True)):
            take(i, a, b, blk)
            del blk
    # Blocks' exposures need nothing from each other (each reads its own trailing panels): up
    # to ``workers`` are made at once in threads (numpy releases the GIL), while this thread
    # runs the regression of the block before, which needs its predecessor's last row.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: deque = deque()
        ahead = iter(bounds if block_source is None else ())

        def submit() -> None:
            nxt = next(ahead, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(block_exposures, mf, *nxt)))

        for _ in range(max(1, workers)):
            submit()
        i = 0
        while pending:
            (a, b), made = pending.popleft()
            blk = finish_block(mf, a, b, made.result(), carry)
            carry = blk.carry
            take(i, a, b, blk)
            del blk, made
            submit()  # only now: at most ``workers`` blocks are held at any time
            i += 1
    count("exposures", len(bounds), len(bounds))
    say("regression")
    sp = specific_params(spec)
    say("specific risk")
    count("specific risk", 0, 1)
    spec_var, spec_state = specific_risk_with_state(pd.DataFrame(specific, index=dates, columns=tickers),
                                                    mf.inp.market_cap, sp)
    if spec.regression.get("weights", "sqrt_cap") == "inv_specific_var":
        say("regression")
        s2_lag = lag_one_day(spec_var.to_numpy())
        coverage_lag = lag_one_day(coverage)
        reg_notes.clear()
        for a, b in bounds:
            reg, u = block_regression(mf, a, b, store.lagged(a, b), coverage_lag[a:b], s2_lag[a:b])
            keep(a, b, reg, u)
        spec_var, spec_state = specific_risk_with_state(pd.DataFrame(specific, index=dates, columns=tickers),
                                                        mf.inp.market_cap, sp)
    count("specific risk", 1, 1)

    cols = kept_columns(spec, coverage)
    factors = [mf.design[k] for k in cols]
    def frame(values: np.ndarray) -> pd.DataFrame:  # the kept factors' columns
        return pd.DataFrame(values[:, cols], index=dates, columns=factors)

    reg = RegressionResult(factors=factors, factor_returns=frame(f), t_stats=frame(tst),
                           r2=pd.Series(r2, index=dates, name="r2"),
                           n_names=pd.Series(n_names.astype(int), index=dates, name="n_names"),
                           condition_number=pd.Series(cond, index=dates, name="condition_number"),
                           constraint_residual=pd.Series(resid, index=dates, name="constraint_residual"),
                           specific_returns=pd.DataFrame(reg_specific, index=dates, columns=tickers),
                           thin_industries=frame(thin), notes=reg_notes)
    say("factor covariance")
    cp = covariance_params(spec)
    groups = factor_groups(spec, factors)
    known = None
    if eigen_biases is not None and list(eigen_biases[0]) == factors:
        known = {int(i): v for d, v in eigen_biases[1].items() if (i := dates.get_indexer([d])[0]) >= 0}
    cov = factor_covariance(reg.factor_returns, cp, groups=[groups[g] for g in factors],
                            tick=lambda done, total: count("factor covariance", done, total), known_biases=known)
    # Row t of the regression uses the exposures of t − 1: so does its coverage.
    cov_lag = pd.DataFrame(lag_one_day(coverage), index=dates, columns=spec.factors)
    status = model_status(spec, reg.factor_returns, cov_lag, has_data, reg.notes)
    notes += status_notes(status)
    return FactorModelResult(spec, dates, tickers, factors, store.result("x", cols), store.result("imputed", cols),
                             mf.universe, reg, cov, spec_var, mf.inp.market_cap, notes, cov_lag, status, has_data,
                             history_counts(mf), spec_state)


def _specific_returns(r: np.ndarray, lagged: np.ndarray, f: np.ndarray) -> np.ndarray:
    """u = r − X_{t−1}·f_t for every name with exposures (not only the regression's universe).

    r: (B, N); lagged: (B, N, K); f: (B, K). A factor not estimated on t (f NaN) is out of that
    date's model: its exposures are not needed and its effect stays in u, exactly as in the
    regression's own residuals. Works one factor at a time: no (B, N, K) temporary.
    """
    B, N, K = lagged.shape
    fitted = np.zeros((B, N))
    ok = np.isfinite(r) & np.isfinite(lagged[..., 0]) & np.isfinite(f).any(axis=1)[:, None]
    for k in range(K):
        fk = f[:, k]
        est = np.isfinite(fk)
        if not est.any():
            continue
        xk = lagged[..., k]
        finite = np.isfinite(xk)
        ok &= finite | ~est[:, None]
        fitted += np.where(finite & est[:, None], xk, 0.0) * np.where(est, fk, 0.0)[:, None]
    return np.where(ok, r - fitted, np.nan)
