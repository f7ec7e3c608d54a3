"""Factor covariance forecast, USE4-style: EWMA + Newey–West → eigenfactor adjustment → VRA.

The matrix stored for date t uses factor returns through the close of t and forecasts the
covariance of day t+1's factor returns (decimal², daily). The steps, each fixing a known bias:

1. **EWMA + Newey–West** (:func:`ewma_newey_west`): volatilities with a short half-life (they
   move fast), correlations with a long one (they need many observations to be estimated at
   all); Newey–West terms because daily factor returns are serially correlated (asynchronous
   closes, stale prices), so the daily variance understates the variance of a longer horizon.
2. **Eigenfactor risk adjustment** (Menchero, Wang, Orr 2011, "Improving risk forecasts for
   optimized portfolios"): the smallest eigenvalues of a sample covariance are biased low, so
   optimised portfolios, which load on them, are under-forecast. A Monte Carlo simulation from
   the estimated matrix measures that bias per eigenfactor; the eigenvalues are scaled up by it.
3. **Volatility regime adjustment** (USE4): EWMA forecasts lag a change of regime. λ_t², an
   EWMA of the cross-sectional mean squared standardised return, rescales the whole matrix.

**Gaps.** A factor that is not estimated on a date (NaN: a thin industry, a style whose data
cover too little of the market) adds nothing to any sum that day. A factor unobserved for
``restart_gap`` dates or more has *no* forecast (NaN rows) until it is estimated again: an
EWMA carried through a long gap would be stale, and restarting it from its few new days
would collapse it (one day's squared return, normalised by a weight decayed to almost
nothing). On its first day back its volatility restarts from a prior (:func:`_restart_prior`):
``restart_prior_obs`` pseudo-days at the median current variance of its peer factors (the
same group: styles, industries), decaying with the volatility half-life like real days, so
the new data take over at the pace of the EWMA; its correlations continue from the long
correlation EWMA, which a gap only thins.

Default constants are USE4's (Menchero, Orr, Wang 2011, "The Barra US Equity Model (USE4)",
Methodology Notes): half-lives 84 (volatility) / 504 (correlation) days, Newey–West 5 / 2 lags,
eigen-adjustment scale a = 1.2–1.5 (1.4 here), VRA half-life 42 days.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.signal import lfilter
from scipy.special import chdtri, ndtr

from riskstrata.cascade.moments import decay_for
from riskstrata.errors import DataValidationError, DateOutOfRange, IdentityViolation, InsufficientHistory

# Eigenvalues below this fraction of the largest are numerical noise of an (almost) singular
# matrix; the simulation floors them there so the simulated bias ratio stays finite.
EIGEN_FLOOR = 1e-12
# An adjusted matrix must be PSD to rounding: min eigenvalue ≥ −PSD_TOL × its largest |entry|.
PSD_TOL = 1e-12


@dataclass(frozen=True)
class CovarianceParams:
    """Parameters of :func:`factor_covariance`. Half-lives and windows in trading days."""

    vol_halflife: float = 84        # USE4 factor volatility half-life
    corr_halflife: float = 504      # USE4 factor correlation half-life
    vol_nw_lags: int = 5            # USE4 Newey–West lags for volatilities
    corr_nw_lags: int = 2           # USE4 Newey–West lags for correlations
    eigen_sims: int = 1000          # Monte Carlo draws per eigen adjustment (0 = no adjustment)
    eigen_scale: float = 1.4        # MWO/USE4 scale a, empirically 1.2–1.5
    eigen_every: int = 5            # recompute the eigen adjustment every N dates (weekly), reuse in between
    vra_halflife: float = 42        # USE4 volatility regime adjustment half-life
    min_obs: int = 63               # a factor needs this many observed days before it gets a forecast
    restart_gap: int = 63           # a factor unobserved this many dates has no forecast, and restarts on return
    restart_prior_obs: float = 21   # weight of the restart prior, in days of data (decays like one)
    seed: int = 7                   # seeds the eigen simulation: same inputs + seed → same output
    workers: int = 0                # threads for the eigen simulation (0 = all cores); result independent of it

    def __post_init__(self) -> None:
        for name in ("vol_halflife", "corr_halflife", "vra_halflife"):
            decay_for(getattr(self, name))  # raises on a non-positive half-life
        if self.vol_nw_lags < 0 or self.corr_nw_lags < 0:
            raise ValueError("Newey–West lags must be ≥ 0")
        if self.eigen_sims < 0 or self.eigen_every < 1:
            raise ValueError("eigen_sims must be ≥ 0 and eigen_every ≥ 1")
        if self.min_obs < 2:
            raise ValueError("min_obs must be ≥ 2")
        if self.restart_gap < 1 or self.restart_prior_obs < 0:
            raise ValueError("restart_gap must be ≥ 1 and restart_prior_obs ≥ 0")


@dataclass
class FactorCovariance:
    """Daily factor covariance forecasts; row t uses data through t and forecasts day t+1.

    raw:       (T, K, K) EWMA + Newey–West (volatilities × correlations), decimal² per day.
    adjusted:  (T, K, K) after the eigenfactor adjustment and VRA — the forecast to use.
    eigen_applied:   (T,) bool, the eigen adjustment is in ``adjusted`` on that date.
    eigen_recomputed: (T,) bool, the simulation ran on that date (reused until the next one).
    eigen_bias: (T, K) simulated volatility bias v(k) in use, eigenfactors by ascending
        eigenvalue (NaN-padded when fewer than K factors have a forecast).
    vra_lambda: (T,) λ_t, the volatility-regime multiplier of the volatilities (matrix × λ_t²).
    Rows/columns of factors with fewer than ``min_obs`` observations are NaN.
    """

    dates: pd.DatetimeIndex
    factors: list[str]
    raw: np.ndarray
    adjusted: np.ndarray
    eigen_applied: np.ndarray
    vra_lambda: np.ndarray
    eigen_recomputed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    eigen_bias: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    params: CovarianceParams = field(default_factory=CovarianceParams)

    def at(self, date: object) -> pd.DataFrame:
        """K × K frame of ``adjusted`` on the last date on or before ``date``."""
        ts = pd.Timestamp(date)
        i = int(self.dates.searchsorted(ts, side="right")) - 1
        if i < 0:
            raise DateOutOfRange(f"{ts.date()} is before the first factor return ({self.dates[0].date()})")
        m = self.adjusted[i]
        if np.isnan(m).all():
            raise InsufficientHistory(f"no factor has {self.params.min_obs} observations by {self.dates[i].date()}")
        return pd.DataFrame(m, index=self.factors, columns=self.factors)


# ---------------------------------------------------------------------------------------------
# EWMA + Newey–West kernels


def _ew_sum(z: np.ndarray, decay: float) -> np.ndarray:
    """S_t = Σ_{s≤t} δ^{t−s}·z_s along axis 0 (a first-order recursive filter, O(T))."""
    return lfilter([1.0], [1.0, -decay], z, axis=0)


def _shift_down(a: np.ndarray, lag: int) -> np.ndarray:
    """a_{t−lag} at row t, zeros for t < lag (a zero contributes nothing to a weighted sum)."""
    if lag == 0:
        return a
    out = np.zeros_like(a)
    out[lag:] = a[:-lag]
    return out


def _centred(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x − full-sample column mean with 0 where missing, observed mask as float).

    Demeaned covariances are shift invariant, so removing a constant changes no estimate (and
    looks nowhere ahead); it keeps the running sums of raw moments small, hence exact.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a (T, K) array, got shape {x.shape}")
    mask = np.isfinite(x)
    counts = mask.sum(axis=0)
    means = np.divide(np.where(mask, x, 0.0).sum(axis=0), counts, out=np.zeros(x.shape[1]), where=counts > 0)
    return np.where(mask, x - means, 0.0), mask.astype(np.float64)


def _bartlett(lag: int, lags: int) -> float:
    """Newey–West (1987) Bartlett weight 1 − l/(L+1): keeps the long-run covariance PSD."""
    return 1.0 - lag / (lags + 1.0)


def ewma_newey_west(factor_returns: np.ndarray, halflife: float, lags: int) -> np.ndarray:
    """EWMA covariance with Newey–West autocovariance terms, for every date at once.

    factor_returns: (T, K) float64 daily returns, NaN = factor not estimated that day.
    Returns (T, K, K): row t uses rows 0..t (weights δ^{t−s}, δ = 0.5^{1/halflife}) and is the
    forecast of the covariance of day t+1, decimal² per day:

        μ_i = Σ_s w_s x_is / W_i                  (W_i = Σ w_s over the days i is observed)
        Γ_l[i, j] = Σ_s w_s (x_i,s − μ_i)(x_j,s−l − μ_j) / √(W_i W_j)   (pairs observed only)
        C = Γ_0 + Σ_{l=1}^{L} (1 − l/(L+1)) (Γ_l + Γ_lᵀ)

    With no missing data Γ_0 is ``np.cov(x[:t+1].T, aweights=w, bias=True)``. A day on which a
    factor is missing adds nothing to any of its terms; normalising by √(W_i W_j) (not by the
    pair's common weight) keeps Γ_0 PSD. Entries of a factor with no observation yet are NaN.
    """
    decay = decay_for(halflife)
    if lags < 0:
        raise ValueError(f"lags must be ≥ 0, got {lags}")
    x0, m = _centred(factor_returns)
    w = _ew_sum(m, decay)                                        # (T, K)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.where(w > 0, _ew_sum(x0, decay) / w, np.nan)     # (T, K)
        norm = np.sqrt(w[:, :, None] * w[:, None, :])
    mu_i, mu_j = mu[:, :, None], mu[:, None, :]
    cov = np.zeros((x0.shape[0], x0.shape[1], x0.shape[1]))
    for lag in range(lags + 1):
        xl, ml = _shift_down(x0, lag), _shift_down(m, lag)
        # Σ w (x_i − μ_i)(x_jl − μ_j) expanded into running sums, all observed-pair masked:
        cross = _ew_sum(x0[:, :, None] * xl[:, None, :], decay)
        x_i = _ew_sum(x0[:, :, None] * ml[:, None, :], decay)
        x_j = _ew_sum(m[:, :, None] * xl[:, None, :], decay)
        both = _ew_sum(m[:, :, None] * ml[:, None, :], decay)
        with np.errstate(invalid="ignore", divide="ignore"):
            gamma = (cross - mu_j * x_i - mu_i * x_j + mu_i * mu_j * both) / norm
        if lag == 0:
            cov += gamma
        else:
            cov += _bartlett(lag, lags) * (gamma + gamma.transpose(0, 2, 1))
    return cov


VARIANCE_COLUMNS = 512  # series per pass of ewma_newey_west_variance


def ewma_newey_west_variance(returns: np.ndarray, halflife: float, lags: int) -> np.ndarray:
    """The diagonal of :func:`ewma_newey_west`, for many series at once in O(T·N·L).

    returns: (T, N) float64, NaN = missing. Returns (T, N) daily variance forecasts, decimal²
    (NaN before a series' first observation). Used for specific risk, where N is thousands.
    """
    decay = decay_for(halflife)
    if lags < 0:
        raise ValueError(f"lags must be ≥ 0, got {lags}")
    returns = np.asarray(returns, dtype=np.float64)
    if returns.ndim == 2 and returns.shape[1] > VARIANCE_COLUMNS:
        # Every series is filtered on its own: a few hundred at a time give the same numbers
        # with a dozen (T, columns) temporaries instead of a dozen (T, N) ones.
        out = np.empty(returns.shape)
        for j in range(0, returns.shape[1], VARIANCE_COLUMNS):
            out[:, j:j + VARIANCE_COLUMNS] = ewma_newey_west_variance(returns[:, j:j + VARIANCE_COLUMNS], halflife, lags)
        return out
    x0, m = _centred(returns)
    w = _ew_sum(m, decay)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.where(w > 0, _ew_sum(x0, decay) / w, np.nan)
    var = np.zeros_like(x0)
    for lag in range(lags + 1):
        xl, ml = _shift_down(x0, lag), _shift_down(m, lag)
        with np.errstate(invalid="ignore", divide="ignore"):
            gamma = (_ew_sum(x0 * xl, decay) - mu * _ew_sum(x0 * ml, decay) - mu * _ew_sum(m * xl, decay)
                     + mu * mu * _ew_sum(m * ml, decay)) / w
        var += gamma if lag == 0 else 2.0 * _bartlett(lag, lags) * gamma
    return var


def vra_lambda_squared(b2: np.ndarray, halflife: float) -> np.ndarray:
    """λ_t² = EWMA (through t) of the bias statistic B_s², the mean squared standardised return.

    b2: (T,) float64, NaN on days without a standardised return. Returns (T,) λ²; 1.0 (no
    adjustment) until the first B² exists. λ² > 1 means recent returns were larger than the
    forecasts said: the regime got more volatile than the EWMA has caught up with (USE4).
    """
    decay = decay_for(halflife)
    ok = np.isfinite(b2)
    num = _ew_sum(np.where(ok, b2, 0.0), decay)
    den = _ew_sum(ok.astype(np.float64), decay)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, 1.0)


# ---------------------------------------------------------------------------------------------
# Eigenfactor risk adjustment


class WishartDraws:
    """Common random numbers for the eigen simulation: one seeded set reused at every date.

    Holds, per draw m, the strictly-lower normals and the diagonal normals of a Bartlett
    factor A (Wishart(I, n) = A Aᵀ with A_ij ~ N(0, 1) below the diagonal and A_ii² ~ χ²(n − i)).
    Reusing them makes the adjustment move with the data, not with Monte Carlo noise, and
    makes every date's simulation independent of the others (so they can run in parallel).
    """

    def __init__(self, sims: int, k: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.sims, self.k = sims, k
        self.lower = np.tril(rng.standard_normal((sims, k, k)), -1)
        self.z = rng.standard_normal((sims, k))

    def sample(self, k: int, n_obs: float) -> np.ndarray:
        """(sims, k, k) Wishart(I, n_obs)/n_obs: the sample covariance of n_obs N(0, I) draws."""
        if k > self.k:
            raise ValueError(f"draws were made for {self.k} factors, not {k}")
        nu = n_obs - np.arange(k)
        z = self.z[:, :k]
        if nu.min() >= 30:
            # Wilson–Hilferty (1931): χ²_ν ≈ ν(1 − 2/(9ν) + z√(2/(9ν)))³, quantile error < 0.1%
            # for ν ≥ 30 — and 20× cheaper than the exact inverse CDF.
            h = 2.0 / (9.0 * nu)
            chi2 = nu * np.maximum(1.0 - h + z * np.sqrt(h), 0.0) ** 3
        else:
            chi2 = chdtri(nu, ndtr(-z))  # exact: the upper-tail inverse of χ²_ν at P(Z > z)
        a = self.lower[:, :k, :k].copy()
        idx = np.arange(k)
        a[:, idx, idx] = np.sqrt(chi2)
        return a @ a.transpose(0, 2, 1) / n_obs


def eigen_bias(eigenvalues: np.ndarray, n_obs: float, draws: WishartDraws) -> np.ndarray:
    """Simulated volatility bias v(k) of each eigenfactor (Menchero, Wang, Orr 2011).

    eigenvalues: (k,) ascending, the variances of the eigenfactors of the estimated matrix.
    n_obs: effective number of observations behind the estimate. Returns (k,) v > 0, ascending
    eigenvalue order.

    Draw m: n_obs returns of the eigenfactors (independent, variances D) → their sample
    covariance Ṽ_m = Ũ D̃ Ũᵀ → the "true" variance of each simulated eigenfactor ũ_kᵀ D ũ_k
    against its estimate d̃_k. v(k)² = mean_m (ũ_kᵀ D ũ_k / d̃_k), matched by eigenvalue rank.
    The sample covariance of n standard normal draws is Wishart(I, n)/n, drawn directly by the
    Bartlett decomposition (:class:`WishartDraws`): O(k²) per draw instead of O(n·k).
    """
    d = np.asarray(eigenvalues, dtype=np.float64)
    d_sim = np.maximum(d, EIGEN_FLOOR * d.max())
    s = np.sqrt(d_sim)
    est, vec = np.linalg.eigh(draws.sample(d.size, n_obs) * s[:, None] * s[None, :])
    true = np.einsum("mik,i,mik->mk", vec, d_sim, vec)
    return np.sqrt(np.mean(true / est, axis=0))


def _apply_eigen(matrix: np.ndarray, gamma: np.ndarray | None) -> np.ndarray:
    """U diag(γ²·max(D, 0)) Uᵀ, symmetric; γ None = only clip negative eigenvalues."""
    d, u = np.linalg.eigh(matrix)
    d = np.maximum(d, 0.0)  # Newey–West terms can leave tiny negative eigenvalues: clip them
    if gamma is not None:
        d = d * gamma**2
    out = (u * d) @ u.T
    return 0.5 * (out + out.T)


def _effective_obs(observed_rows: np.ndarray, halflife: float) -> np.ndarray:
    """(Σw)² / Σw² through each date: how many equally weighted days the EWMA is worth."""
    decay = decay_for(halflife)
    z = observed_rows.astype(np.float64)
    s1 = lfilter([1.0], [1.0, -decay], z)
    s2 = lfilter([1.0], [1.0, -decay**2], z)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s2 > 0, s1**2 / s2, 0.0)


# ---------------------------------------------------------------------------------------------
# The frame-level estimator


def _check_frame(factor_returns: pd.DataFrame) -> np.ndarray:
    if not isinstance(factor_returns, pd.DataFrame):
        raise DataValidationError("factor_returns must be a (dates × factors) DataFrame")
    if not isinstance(factor_returns.index, pd.DatetimeIndex):
        raise DataValidationError("factor_returns must be indexed by dates (a DatetimeIndex)")
    if not factor_returns.index.is_monotonic_increasing or factor_returns.index.has_duplicates:
        raise DataValidationError("factor_returns dates must be unique and ascending")
    try:
        x = factor_returns.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"factor_returns must be numeric: {exc}") from exc
    if np.isinf(x).any():
        raise DataValidationError("factor_returns contain ±inf")
    return x


def _days_since_observed(observed: np.ndarray) -> np.ndarray:
    """(T, K) rows since each factor's last observation on or before t (inf before its first)."""
    T = observed.shape[0]
    rows = np.where(observed, np.arange(T)[:, None], -1)
    last = np.maximum.accumulate(rows, axis=0)
    return np.where(last >= 0, np.arange(T)[:, None] - last, np.inf)


def _restarts(observed: np.ndarray, gap: int) -> list[tuple[int, int]]:
    """(row, factor) of every first observation after ≥ ``gap`` unobserved rows, in row order."""
    since = _days_since_observed(observed)
    before = np.full_like(since, np.inf)
    before[1:] = since[:-1]
    hits = observed & np.isfinite(before) & (before >= gap)
    return sorted(zip(*map(list, np.nonzero(hits))), key=lambda rk: rk)


def _restart_prior(t0: int, k: int, var: np.ndarray, ok: np.ndarray, x: np.ndarray,
                   groups: np.ndarray) -> float:
    """The prior daily variance of factor k restarting on row t0 (NaN if none can be formed).

    The median variance forecast, on row t0 − 1 (known before t0), of the other factors of
    its group that have one: the best current guess for a factor whose own recent history is
    missing. Without such peers, its own variance over all its days before t0.
    """
    peers = (groups == groups[k]) & ok[t0 - 1] & np.isfinite(var[t0 - 1])
    peers[k] = False
    if peers.any():
        return float(np.median(var[t0 - 1, peers]))
    own = x[:t0, k][np.isfinite(x[:t0, k])]
    return float(own.var(ddof=1)) if own.size >= 2 else float("nan")


def _restarted_variance(y: np.ndarray, t0: int, prior: float, p: CovarianceParams) -> np.ndarray:
    """(T,) EWMA + Newey–West variance of one factor from row t0 on, blended with its prior.

    y: (T,) the factor's returns (rows < t0 ignored). The prior is ``restart_prior_obs``
    pseudo-days on row t0 − 1 with mean 0 and variance ``prior`` and no autocorrelation; its
    weight decays by δ a day like a real day's:

        W_t = Σ_{t0≤s≤t} δ^{t−s} m_s + P δ^{t−t0+1},   μ_t = Σ δ^{t−s} m_s y_s / W_t
        Γ0  = [Σ δ^{t−s} m_s (y_s − μ)² + P δ^{t−t0+1} (prior + μ²)] / W_t
        Γl  = Σ δ^{t−s} m_s m_{s−l} (y_s − μ)(y_{s−l} − μ) / W_t,   v = Γ0 + Σ_l 2(1 − l/(L+1)) Γl

    Rows before t0 are NaN.
    """
    decay = decay_for(p.vol_halflife)
    T = y.size
    m = np.isfinite(y) & (np.arange(T) >= t0)
    y0 = np.where(m, y, 0.0)
    mf = m.astype(np.float64)
    P = np.where(np.arange(T) >= t0, p.restart_prior_obs * decay ** (np.arange(T) - t0 + 1.0), 0.0)
    W = _ew_sum(mf, decay) + P
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = _ew_sum(y0, decay) / W
        v = (_ew_sum(y0 * y0, decay) - 2 * mu * _ew_sum(y0, decay) + mu * mu * _ew_sum(mf, decay)
             + P * (prior + mu * mu)) / W
        for lag in range(1, p.vol_nw_lags + 1):
            yl, ml = _shift_down(y0, lag), _shift_down(mf, lag)
            both = mf * ml
            g = (_ew_sum(y0 * yl, decay) - mu * _ew_sum(mf * yl, decay)
                 - mu * _ew_sum(y0 * ml, decay) + mu * mu * _ew_sum(both, decay)) / W
            v = v + 2.0 * _bartlett(lag, p.vol_nw_lags) * g
    return np.where(np.arange(T) >= t0, v, np.nan)


def _raw_covariance(x: np.ndarray, p: CovarianceParams,
                    groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(T, K, K) volatility(vol half-life) × correlation(corr half-life); (T, K) forecastable.

    A factor unobserved for ``restart_gap`` rows has no forecast; when it is observed again
    its volatility restarts from a prior (module docstring), its correlations carry on.
    """
    T, K = x.shape
    groups = np.zeros(K, dtype=int) if groups is None else np.asarray(groups)
    vol_cov = ewma_newey_west(x, p.vol_halflife, p.vol_nw_lags)
    corr_cov = ewma_newey_west(x, p.corr_halflife, p.corr_nw_lags)
    var = np.maximum(np.diagonal(vol_cov, axis1=1, axis2=2), 0.0).copy()
    csd = np.sqrt(np.maximum(np.diagonal(corr_cov, axis1=1, axis2=2), 0.0))
    observed = np.isfinite(x)
    counts = np.cumsum(observed, axis=0)
    recent = _days_since_observed(observed) < p.restart_gap  # after a long gap: no forecast, not a stale one
    ok = (counts >= p.min_obs) & (var > 0) & (csd > 0) & recent
    restarts = _restarts(observed, p.restart_gap)
    for t0, k in restarts:
        end = min([r for r, j in restarts if j == k and r > t0], default=T)
        prior = _restart_prior(t0, k, var, ok, x, groups) if p.restart_prior_obs > 0 else float("nan")
        if np.isfinite(prior) and prior > 0:
            seg = _restarted_variance(x[:, k], t0, prior, p)[t0:end]
            enough = np.ones(end - t0, dtype=bool)
        else:  # nothing to start from: the factor waits for min_obs new days, like a new one
            fresh = np.where(np.arange(T) >= t0, x[:, k], np.nan)[:, None]
            seg = ewma_newey_west_variance(fresh, p.vol_halflife, p.vol_nw_lags)[t0:end, 0]
            enough = np.cumsum(observed[t0:end, k]) >= p.min_obs
        var[t0:end, k] = seg
        with np.errstate(invalid="ignore"):
            ok[t0:end, k] = enough & (seg > 0) & (csd[t0:end, k] > 0) & recent[t0:end, k]
    vol = np.sqrt(var)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(ok, vol / csd, np.nan)
    raw = corr_cov * scale[:, :, None] * scale[:, None, :]  # D_vol · R · D_vol, R from corr_cov
    raw[~(ok[:, :, None] & ok[:, None, :])] = np.nan
    return raw, ok


def _eigen_schedule(ok: np.ndarray, n_eff: np.ndarray, every: int) -> list[int]:
    """Dates that run the simulation: every ``every`` dates, and whenever the factor set changes."""
    runs: list[int] = []
    last, last_set = -every, None
    for t in range(ok.shape[0]):
        k = int(ok[t].sum())
        if k == 0 or n_eff[t] < k + 2:  # a Wishart draw needs more observations than factors
            last_set = None
            continue
        key = ok[t].tobytes()
        if key != last_set or t - last >= every:
            runs.append(t)
            last, last_set = t, key
    return runs


def factor_covariance(factor_returns: pd.DataFrame, params: CovarianceParams = CovarianceParams(),
                      groups: list[str] | None = None,
                      tick: Callable[[int, int], None] | None = None,
                      known_biases: dict[int, np.ndarray] | None = None) -> FactorCovariance:
    """Daily factor covariance forecasts with eigenfactor and volatility-regime adjustments.

    factor_returns: (T × K) daily factor returns, decimal, indexed by ascending dates; NaN =
    factor not estimated that day. groups: (K,) a group label per factor (market, style,
    industry): a factor restarting after a gap takes its prior from its group (default: one
    group). tick(done, total) is called as the eigen simulations finish (progress). See the module docstring for the method and
    :class:`FactorCovariance` for the result. Raises :class:`InsufficientHistory` if no factor
    ever reaches ``min_obs`` observations.

    The simulation runs every ``eigen_every`` dates (and when the set of forecastable factors
    changes); in between, its bias v(k) — by eigenvalue rank — is applied to each date's own
    eigendecomposition. known_biases: row → the bias a previous run simulated on that row (a
    daily update: the same returns up to it give the same bias, common random numbers), reused
    instead of simulated when the row is on the schedule and the bias fits its factor set. Cost: ~(T / eigen_every)·eigen_sims eigendecompositions of K × K
    (≈ 35 µs each at K = 21), spread over ``workers`` threads; everything else is O(T·K²·L).
    """
    p = params
    x = _check_frame(factor_returns)
    T, K = x.shape
    if groups is not None and len(groups) != K:
        raise DataValidationError(f"groups must name one group per factor ({K}); got {len(groups)}")
    codes = None if groups is None else pd.factorize(pd.Index(groups))[0]
    raw, ok = _raw_covariance(x, p, codes)
    if not ok.any():
        raise InsufficientHistory(f"no factor has {p.min_obs} observed days (T = {T})")
    # The simulated window: the effective sample of the correlation EWMA, because the
    # eigenvectors (what sampling error scrambles) come from the correlations.
    n_eff = _effective_obs(np.isfinite(x).any(axis=1), p.corr_halflife)

    # Eigen simulation on the schedule's dates; they are independent, so run them in parallel
    # (numpy's eigh releases the GIL). Common random numbers make the order irrelevant.
    runs = _eigen_schedule(ok, n_eff, p.eigen_every) if p.eigen_sims > 0 else []
    draws = WishartDraws(p.eigen_sims, K, p.seed) if runs else None

    def simulate(t: int) -> np.ndarray:
        sub = raw[t][np.ix_(ok[t], ok[t])]
        d = np.linalg.eigvalsh(sub)
        if d.max() <= 0:
            return np.ones_like(d)
        return eigen_bias(d, float(n_eff[t]), draws)

    workers = p.workers or _cores()
    count = tick or (lambda _done, _total: None)
    every = max(1, len(runs) // 50)
    known = known_biases or {}
    biases = {t: np.asarray(known[t], dtype=np.float64) for t in runs
              if t in known and np.size(known[t]) == int(ok[t].sum())}
    runs = [t for t in runs if t not in biases]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, (t, bias) in enumerate(zip(runs, pool.map(simulate, runs) if workers > 1 else map(simulate, runs))):
            biases[t] = bias
            if i % every == 0 or i == len(runs) - 1:
                count(i + 1, len(runs))

    eig_adj = np.full((T, K, K), np.nan)
    eigen_applied = np.zeros(T, bool)
    eigen_recomputed = np.zeros(T, bool)
    eigen_bias_t = np.full((T, K), np.nan)
    current: np.ndarray | None = None
    current_set: bytes | None = None
    for t in range(T):
        if not ok[t].any():
            continue
        key = ok[t].tobytes()
        if t in biases:
            current, current_set = biases[t], key
            eigen_recomputed[t] = True
        elif key != current_set:
            current = None  # the factor set changed and no simulation fits it yet
        idx = np.ix_(ok[t], ok[t])
        gamma = None
        if current is not None:
            gamma = p.eigen_scale * (current - 1.0) + 1.0  # MWO: v scaled by the empirical a
            eigen_applied[t] = True
            eigen_bias_t[t, : current.size] = current
        eig_adj[t][idx] = _apply_eigen(raw[t][idx], gamma)

    # VRA: B_t² = mean over factors of (f_k,t / σ_k,t−1)², σ the eigen-adjusted forecast made
    # the day before (known at the close of t−1), so λ_t uses nothing after t.
    sigma_prev = np.full((T, K), np.nan)
    sigma_prev[1:] = np.sqrt(np.diagonal(eig_adj, axis1=1, axis2=2)[:-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        z2 = (x / sigma_prev) ** 2
    z2[~np.isfinite(z2)] = np.nan
    n_z = np.isfinite(z2).sum(axis=1)
    b2 = np.where(n_z > 0, np.nansum(z2, axis=1) / np.maximum(n_z, 1), np.nan)
    lam2 = vra_lambda_squared(b2, p.vra_halflife)
    adjusted = eig_adj * lam2[:, None, None]

    _check_psd(adjusted, ok, factor_returns.index)
    return FactorCovariance(dates=factor_returns.index, factors=[str(c) for c in factor_returns.columns],
                            raw=raw, adjusted=adjusted, eigen_applied=eigen_applied, vra_lambda=np.sqrt(lam2),
                            eigen_recomputed=eigen_recomputed, eigen_bias=eigen_bias_t, params=p)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _check_psd(adjusted: np.ndarray, ok: np.ndarray, dates: pd.DatetimeIndex) -> None:
    """Refuse a forecast that is not symmetric PSD (it would give negative portfolio variances)."""
    for t in np.flatnonzero(ok.any(axis=1)):
        sub = adjusted[t][np.ix_(ok[t], ok[t])]
        scale = max(float(np.abs(sub).max()), np.finfo(float).tiny)
        if not np.all(np.isfinite(sub)) or not np.array_equal(sub, sub.T):
            raise IdentityViolation(f"factor covariance on {dates[t].date()} is not finite and symmetric")
        if np.linalg.eigvalsh(sub).min() < -PSD_TOL * scale:
            raise IdentityViolation(f"factor covariance on {dates[t].date()} is not positive semi-definite")
