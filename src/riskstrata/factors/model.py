"""Model B pipeline: spec + point-in-time panels → exposures → daily regression → risk.

``fit_factor_model`` is the one entry point on in-memory data; the store build in
:mod:`riskstrata.services.factors` gathers the panels and calls it. Every step is a pure
function of the modules next to this one (see docs/model_b.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from riskstrata.errors import DataValidationError, InsufficientHistory, UnknownTicker
from riskstrata.factors import descriptors as D
from riskstrata.factors.covariance import CovarianceParams, FactorCovariance, factor_covariance
from riskstrata.factors.exposures import industry_dummies, lag_one_day, style_exposure
from riskstrata.factors.regression import RegressionResult, cross_sectional_regression
from riskstrata.factors.spec import ModelSpec
from riskstrata.factors.specific import SpecificParams, specific_risk
from riskstrata.timeindex import row_on_or_before

Progress = Callable[[str], None]          # called with a stage's name when it starts
Tick = Callable[[str, int, int], None]     # (stage, done, total) within a stage, for counts and an ETA

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
        return out.where(np.isfinite(out))

    return FactorInputs(re(inp.returns), re(inp.market_cap), inp.sector,
                        {k: re(v) for k, v in inp.fundamentals.items()}, re(inp.volume),
                        re(inp.shares_outstanding), re(inp.price), inp.issuer)


def compute_descriptors(inp: FactorInputs, needed: set[str]) -> dict[str, pd.DataFrame]:
    """Raw descriptors (T × N) the spec asks for; missing inputs give all-NaN panels."""
    out: dict[str, pd.DataFrame] = {}
    cap = inp.market_cap
    # The cap-weighted market return counts an issuer once (its other share classes weigh 0).
    once = cap.where(~D.secondary_share_classes(cap, (cap > 0).to_numpy(), inp.issuer)).shift(1)
    market = (inp.returns * once).sum(axis=1, min_count=1) / once.where(inp.returns.notna()).sum(axis=1)
    if needed & {"beta", "residual_vol"}:
        out["beta"], out["residual_vol"] = D.beta_and_residual_vol(inp.returns, market)
    if "momentum" in needed:
        out["momentum"] = D.momentum(inp.returns)
    if "total_vol" in needed:
        out["total_vol"] = D.total_volatility(inp.returns)
    if "log_size" in needed:
        out["log_size"] = D.log_size(cap)
    if "liquidity" in needed and inp.volume is not None and inp.shares_outstanding is not None:
        out["liquidity"] = D.liquidity(inp.volume, inp.shares_outstanding)
    value_like = {"book_to_price", "earnings_yield", "dividend_yield", "ebitda_to_ev", "growth", "eps_growth", "quality",
                  "leverage"}
    if needed & value_like:
        price = inp.price if inp.price is not None else cap * np.nan
        out.update(D.value_descriptors(inp.fundamentals, cap, price))
    empty = pd.DataFrame(np.nan, index=inp.returns.index, columns=inp.returns.columns)
    return {name: out.get(name, empty) for name in needed}


def estimation_universe(inp: FactorInputs, spec: ModelSpec) -> np.ndarray:
    """(T, N) bool: positive cap, enough history, price floor, and among the largest names."""
    u = spec.universe
    history = inp.returns.notna().cumsum().to_numpy()
    cap = inp.market_cap.to_numpy()
    ok = np.isfinite(cap) & (cap > 0) & (history >= u.get("min_history_days", 126))
    if inp.price is not None:
        ok &= ~(inp.price.to_numpy() < u.get("min_price", 1.0))
    ok &= ~D.secondary_share_classes(inp.market_cap, ok, inp.issuer)  # an issuer counts once
    ranked = pd.DataFrame(np.where(ok, cap, np.nan)).rank(axis=1, ascending=False).to_numpy()
    return ok & (ranked <= u.get("estimation_size", 3000))


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
    exposures: np.ndarray            # (T, N, K) z-scores / dummies / ones; NaN outside the universe
    imputed: np.ndarray              # (T, N, K) bool
    universe: np.ndarray             # (T, N) bool, the estimation universe
    regression: RegressionResult
    covariance: FactorCovariance
    specific_var: pd.DataFrame       # (T × N) daily specific variance forecast
    market_cap: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    coverage: pd.DataFrame | None = None   # (T × spec factors) see :func:`factor_coverage`
    status: list[dict] = field(default_factory=list)  # one entry per spec factor, see :func:`factor_status`

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
        T, N, K = self.exposures.shape
        lagged = lag_one_day(self.exposures.reshape(T, N * K)).reshape(T, N, K)
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


def _missing_inputs(descriptors: dict[str, float], desc: dict[str, pd.DataFrame]) -> list[str]:
    """The inputs of a style's descriptors that have no value at all (the whole panel is NaN)."""
    return [DESCRIPTOR_INPUTS.get(d, d) for d in descriptors if not desc[d].notna().to_numpy().any()]


def factor_status(spec: ModelSpec, factors: list[str], coverage: pd.DataFrame, estimated: pd.DataFrame,
                  desc: dict[str, pd.DataFrame], regression_dates: np.ndarray,
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


def _status_notes(status: list[dict]) -> list[str]:
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


def fit_factor_model(inputs: FactorInputs, spec: ModelSpec, progress: Progress | None = None,
                     tick: Tick | None = None) -> FactorModelResult:
    """Fit the spec on point-in-time panels: exposures, factor returns, covariance, specific risk.

    A style is estimated on a date only when its coverage (the share of the estimation
    universe's cap whose names have a fresh, non-imputed descriptor) reaches the spec's
    ``[coverage] min_cap_share``; elsewhere its exposures are NaN and its factor return is
    missing. ``progress(stage)`` is called as each stage starts, ``tick(stage, done, total)``
    within the long ones.
    """
    say = progress or (lambda _msg: None)
    count = tick or (lambda _stage, _done, _total: None)
    inp = _align(inputs)
    notes: list[str] = []
    T, N = inp.returns.shape
    say("descriptors")
    count("descriptors", 0, 1)
    needed = {d for s in spec.styles for d in s.descriptors}
    desc = compute_descriptors(inp, needed)
    universe = estimation_universe(inp, spec)
    codes, industries, ind_notes = _industry_codes(inp, spec)
    notes += ind_notes
    cap = inp.market_cap.to_numpy()
    log_cap = np.log(np.where(cap > 0, cap, np.nan))
    count("descriptors", 1, 1)
    say("exposures")
    thr = spec.min_coverage
    coverage = {spec.market_factor: _cap_share(np.ones((T, N), bool), universe, cap)}
    styles, style_imputed, kept = [], [], []
    for i, s in enumerate(spec.styles):
        count("exposures", i, len(spec.styles))
        arrays = {d: desc[d].to_numpy() for d in s.descriptors}
        has = np.zeros((T, N), dtype=bool)
        for a in arrays.values():
            has |= np.isfinite(a)
        coverage[s.name] = _cap_share(has, universe, cap)
        covered = coverage[s.name] >= thr   # NaN (no universe) compares False
        if not covered.any():
            continue  # never estimated: out of the design, listed in the status with the reason
        x, imp = style_exposure(arrays, s.descriptors, cap, universe, codes, log_cap)
        styles.append(np.where(covered[:, None], x, np.nan))  # no exposure on a date it is not estimated
        style_imputed.append(imp & covered[:, None])
        kept.append(s.name)
    count("exposures", len(spec.styles), len(spec.styles))
    mapped = codes >= 0
    for name in industries:
        coverage[name] = _cap_share(mapped, universe, cap)
    in_model = np.isfinite(cap) & (cap > 0) & inp.returns.notna().cumsum().to_numpy().astype(bool)
    ones = np.where(in_model, 1.0, np.nan)[..., None]
    dummies = industry_dummies(codes, len(industries)).astype(float)
    dummies = np.where(in_model[..., None], dummies, np.nan)
    style_block = np.stack(styles, axis=-1) if styles else np.zeros((T, N, 0))
    style_block = np.where(in_model[..., None], style_block, np.nan)
    exposures = np.concatenate([ones, style_block, dummies], axis=-1)
    imputed = np.concatenate([np.zeros((T, N, 1), bool), np.stack(style_imputed, -1) if styles else
                              np.zeros((T, N, 0), bool), np.zeros((T, N, len(industries)), bool)], axis=-1)
    factors = [spec.market_factor, *kept, *industries]
    say("regression")
    lagged = lag_one_day(exposures.reshape(T, -1)).reshape(exposures.shape)
    cap_lag = lag_one_day(np.where(universe, cap, np.nan))
    # Row t of the regression uses the exposures of t − 1: so does its coverage.
    cov_lag = pd.DataFrame({f: lag_one_day(np.asarray(v, dtype=float)) for f, v in coverage.items()},
                           index=inp.returns.index).reindex(columns=spec.factors)
    not_estimated = np.zeros((T, len(factors)), dtype=bool)
    for k, f in enumerate(factors):
        if f in kept:
            not_estimated[:, k] = ~(cov_lag[f].to_numpy() >= thr)
    reg_kw = dict(factors=factors, industry_cols=list(range(1 + len(kept), len(factors))), industry_caps=cap_lag,
                  dates=inp.returns.index, tickers=inp.returns.columns,
                  min_names=spec.regression.get("min_names", 30),
                  min_industry_names=spec.regression.get("min_industry_names", 3), not_estimated=not_estimated,
                  tick=lambda done, total: count("regression", done, total))
    kind = spec.regression.get("weights", "sqrt_cap")
    r = inp.returns.to_numpy()
    reg = cross_sectional_regression(r, lagged, _weights(kind, cap_lag, None), **reg_kw)
    risk = spec.risk
    sp = SpecificParams(halflife=risk.get("specific_halflife", 84), nw_lags=risk.get("specific_nw_lags", 5),
                        shrink_q=risk.get("shrink_q", 0.1), vra_halflife=risk.get("vra_halflife", 42))
    say("specific risk")
    count("specific risk", 0, 1)
    specific = _all_specific_returns(r, lagged, reg.factor_returns.to_numpy(), inp.returns)
    spec_var = specific_risk(specific, inp.market_cap, sp)
    if kind == "inv_specific_var":
        say("regression")
        reg = cross_sectional_regression(r, lagged, _weights(kind, cap_lag, lag_one_day(spec_var.to_numpy())), **reg_kw)
        specific = _all_specific_returns(r, lagged, reg.factor_returns.to_numpy(), inp.returns)
        spec_var = specific_risk(specific, inp.market_cap, sp)
    count("specific risk", 1, 1)
    say("factor covariance")
    cp = CovarianceParams(vol_halflife=risk.get("vol_halflife", 84), corr_halflife=risk.get("corr_halflife", 504),
                          vol_nw_lags=risk.get("vol_nw_lags", 5), corr_nw_lags=risk.get("corr_nw_lags", 2),
                          eigen_sims=risk.get("eigen_sims", 300), eigen_scale=risk.get("eigen_scale", 1.4),
                          eigen_every=risk.get("eigen_every", 5), vra_halflife=risk.get("vra_halflife", 42),
                          restart_gap=risk.get("restart_gap_days", 63),
                          restart_prior_obs=risk.get("restart_prior_days", 21))
    groups = factor_groups(spec, factors)
    cov = factor_covariance(reg.factor_returns, cp, groups=[groups[f] for f in factors],
                            tick=lambda done, total: count("factor covariance", done, total))
    fr = reg.factor_returns
    estimated = pd.DataFrame(False, index=inp.returns.index, columns=spec.factors)
    estimated[factors] = fr.notna().to_numpy()
    ran = fr.notna().any(axis=1).to_numpy()
    status = factor_status(spec, factors, cov_lag, estimated, desc, ran, reg.notes)
    notes += _status_notes(status)
    return FactorModelResult(spec, inp.returns.index, inp.returns.columns, factors, exposures, imputed, universe,
                             reg, cov, spec_var, inp.market_cap, notes, cov_lag, status)


def _all_specific_returns(r: np.ndarray, lagged: np.ndarray, f: np.ndarray, like: pd.DataFrame) -> pd.DataFrame:
    """u = r − X_{t−1}·f_t for every name with exposures (not only the regression's universe).

    A factor not estimated on t (f NaN) is out of that date's model: its exposures are not
    needed and its effect stays in u, exactly as in the regression's own residuals.
    """
    fitted = np.einsum("tnk,tk->tn", np.nan_to_num(lagged), np.nan_to_num(f))
    needed = np.isfinite(f)[:, None, :]
    ok = (np.isfinite(r) & (np.isfinite(lagged) | ~needed).all(axis=2)
          & np.isfinite(lagged[..., 0]) & np.isfinite(f).any(axis=1)[:, None])
    return pd.DataFrame(np.where(ok, r - fitted, np.nan), index=like.index, columns=like.columns)
