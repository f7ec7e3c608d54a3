"""Specific (idiosyncratic) risk forecast, USE4-style: EWMA + Newey–West → Bayesian shrinkage → VRA.

The value stored for (t, name) uses specific returns through the close of t and forecasts the
variance of the name's specific return on day t+1 (decimal², daily). The steps:

1. **EWMA + Newey–West** on each name's specific returns (the diagonal kernel of
   :mod:`riskstrata.factors.covariance`): a time-series estimate per name.
2. **Bayesian shrinkage** toward the cap-weighted mean volatility of the name's size decile:
   time-series vols of extreme names are partly noise (high ones too high, low ones too low,
   out of sample), so each is pulled toward its peers in proportion to how far out it is:

       v = q·|σ − σ̄_s| / (Δσ_s + q·|σ − σ̄_s|),    σ_shrunk = v·σ̄_s + (1 − v)·σ

   σ̄_s: cap-weighted mean σ of the decile, Δσ_s: the equal-weighted std of σ in the decile.
3. **Volatility regime adjustment**: λ_t², an EWMA of the cap-weighted cross-sectional mean of
   (u_t / σ_{t−1})², rescales every name's variance; it corrects the lag of the EWMA after a
   change of regime.

Constants are USE4's (Menchero, Orr, Wang 2011, "The Barra US Equity Model (USE4)",
Methodology Notes): half-life 84 days, Newey–West 5 lags, shrinkage q = 0.1 by size decile,
VRA half-life 42 days.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from riskstrata.cascade.moments import decay_for
from riskstrata.errors import DataValidationError
from riskstrata.factors.covariance import ewma_newey_west_variance, vra_lambda_squared

# Floor on a forecast specific vol, 1 bp per day: real specific vols are ≥ ~50 bp/day, so it
# binds only on degenerate series (e.g. identically zero specific returns, no cap to shrink
# with) and keeps the forecast strictly positive — inverse-variance weights stay finite.
MIN_SPECIFIC_VOL = 1e-4


@dataclass(frozen=True)
class SpecificParams:
    """Parameters of :func:`specific_risk`. Half-lives and counts in trading days."""

    halflife: float = 84        # USE4 specific volatility half-life
    nw_lags: int = 5            # USE4 Newey–West lags
    shrink_q: float = 0.1       # USE4 shrinkage intensity q (0 = no shrinkage)
    deciles: int = 10           # size buckets for the shrinkage target
    vra_halflife: float = 42    # USE4 volatility regime adjustment half-life
    min_obs: int = 42           # a name needs this many observed days before it gets a forecast

    def __post_init__(self) -> None:
        decay_for(self.halflife)
        decay_for(self.vra_halflife)
        if self.nw_lags < 0 or self.shrink_q < 0 or self.deciles < 1 or self.min_obs < 2:
            raise ValueError("need nw_lags ≥ 0, shrink_q ≥ 0, deciles ≥ 1, min_obs ≥ 2")


SHRINK_ROWS = 256  # dates per pass of shrink_to_size_deciles


def shrink_to_size_deciles(sigma: np.ndarray, caps: np.ndarray, q: float, deciles: int) -> np.ndarray:
    """Bayesian shrinkage of vols toward their size decile's cap-weighted mean (USE4).

    sigma: (T, N) daily vol forecasts, NaN = none. caps: (T, N) market caps (USD), NaN or ≤ 0
    = unknown. Returns (T, N): σ_shrunk where σ and the cap are known, σ unchanged elsewhere.
    Deciles are equal-count buckets of the names with both, ranked by cap on each date.
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    caps = np.asarray(caps, dtype=np.float64)
    if sigma.ndim == 2 and sigma.shape[0] > SHRINK_ROWS:
        # Dates are independent: a few hundred at a time give the same numbers with a dozen
        # (rows, N) temporaries instead of a dozen (T, N) ones.
        return np.concatenate([shrink_to_size_deciles(sigma[a:a + SHRINK_ROWS], caps[a:a + SHRINK_ROWS], q, deciles)
                               for a in range(0, sigma.shape[0], SHRINK_ROWS)])
    ok = np.isfinite(sigma) & np.isfinite(caps) & (caps > 0)
    n_ok = ok.sum(axis=1, keepdims=True)
    # rank by cap within each date among eligible names (others sorted last, never used)
    order = np.argsort(np.where(ok, caps, np.inf), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(sigma.shape[1])[None, :].repeat(sigma.shape[0], 0), axis=1)
    bucket = np.where(ok, (rank * deciles) // np.maximum(n_ok, 1), -1)
    # one (date, decile) cell per name, cell 0 of each date collecting the ineligible ones;
    # per-cell sums by bincount: O(T·N) in one pass, no loop over dates or deciles
    T = sigma.shape[0]
    cell = (np.arange(T)[:, None] * (deciles + 1) + bucket + 1).ravel()
    n_cells = T * (deciles + 1)
    s = np.where(ok, sigma, 0.0).ravel()
    w = np.where(ok, caps, 0.0).ravel()
    count = np.bincount(cell, minlength=n_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(cell, w * s, n_cells) / np.bincount(cell, w, n_cells)
        spread = np.sqrt(np.bincount(cell, (s - mean[cell]) ** 2, n_cells) / count)
    target = mean[cell].reshape(sigma.shape)
    delta = spread[cell].reshape(sigma.shape)
    dist = q * np.abs(sigma - target)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.where(delta + dist > 0, dist / (delta + dist), 0.0)  # all-equal decile: nothing to shrink
    return np.where(ok, v * target + (1.0 - v) * sigma, sigma)


def _panels(specific_returns: pd.DataFrame, caps: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    for name, frame in (("specific_returns", specific_returns), ("caps", caps)):
        if not isinstance(frame, pd.DataFrame):
            raise DataValidationError(f"{name} must be a (dates × tickers) DataFrame")
    idx = specific_returns.index
    if not idx.is_monotonic_increasing or idx.has_duplicates:
        raise DataValidationError("specific_returns dates must be unique and ascending")
    try:
        u = specific_returns.to_numpy(dtype=np.float64)
        # caps on other labels are aligned (a broader panel is fine); missing ones are unknown
        c = caps.reindex(index=idx, columns=specific_returns.columns).to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"specific_returns and caps must be numeric: {exc}") from exc
    if np.isinf(u).any():
        raise DataValidationError("specific_returns contain ±inf")
    return u, np.where(np.isfinite(c) & (c > 0), c, np.nan)


def specific_risk(specific_returns: pd.DataFrame, caps: pd.DataFrame,
                  params: SpecificParams = SpecificParams()) -> pd.DataFrame:
    """Daily specific variance forecast per name: EWMA + Newey–West, size-decile shrinkage, VRA.

    specific_returns: (T × N) daily specific returns u, decimal, NaN = missing.
    caps: (T × N) market caps in USD (aligned by label), for the size deciles and the VRA weights.
    Returns (T × N) variance forecasts, decimal² per day, for day t+1 from data through t:
    finite and > 0 where the name has ≥ ``min_obs`` observations through t, NaN otherwise.
    """
    p = params
    u, c = _panels(specific_returns, caps)
    var = ewma_newey_west_variance(u, p.halflife, p.nw_lags)
    enough = np.cumsum(np.isfinite(u), axis=0) >= p.min_obs
    sigma = np.where(enough, np.sqrt(np.maximum(np.nan_to_num(var), 0.0)), np.nan)
    if p.shrink_q > 0:
        sigma = shrink_to_size_deciles(sigma, c, p.shrink_q, p.deciles)
    sigma = np.where(enough, np.maximum(sigma, MIN_SPECIFIC_VOL), np.nan)

    # VRA: B_t² = cap-weighted mean of (u_t / σ_{t−1})², weights the caps at t−1 — everything
    # known by the close of t, so the adjusted forecast for t+1 looks nowhere ahead.
    z2 = np.full_like(u, np.nan)
    w = np.full_like(u, np.nan)
    with np.errstate(invalid="ignore"):
        z2[1:] = (u[1:] / sigma[:-1]) ** 2
    w[1:] = c[:-1]
    use = np.isfinite(z2) & np.isfinite(w)
    wsum = np.where(use, w, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        b2 = np.where(wsum > 0, np.where(use, w * z2, 0.0).sum(axis=1) / wsum, np.nan)
    lam2 = vra_lambda_squared(b2, p.vra_halflife)
    out = sigma**2 * lam2[:, None]
    return pd.DataFrame(out, index=specific_returns.index, columns=specific_returns.columns)
