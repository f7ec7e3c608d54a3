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

**Daily update** (:func:`extend_factor_covariance`). Every sum above on row t is a weighted
sum δ^{t−s} over rows s ≤ t, so the rows a new day adds can be evaluated without filtering the
history again: the sums on the last stored row are weighted Gram matrices of the whole
history (BLAS products), then the recursion runs over the new rows. The eigen schedule, the
simulated bias in use and λ² go on from what the store keeps of the old rows; only a new
scheduled date runs a simulation (the same seeded draws as a rebuild: common random numbers).
The result equals a rebuild of the extended history up to rounding.

Default constants are USE4's (Menchero, Orr, Wang 2011, "The Barra US Equity Model (USE4)",
Methodology Notes): half-lives 84 (volatility) / 504 (correlation) days, Newey–West 5 / 2 lags,
eigen-adjustment scale a = 1.2–1.5 (1.4 here), VRA half-life 42 days.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from riskstrata.cascade.moments import decay_for, ew_filter
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
    Rows/columns of factors with fewer than ``min_obs`` observations are NaN. A stored result
    handed to :func:`extend_factor_covariance` as ``previous`` may leave ``raw`` and
    ``eigen_applied`` empty (or None): the update does not read them.
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


_FEW_ROWS = 64  # up to this many rows, the recursion in Python (no scipy.signal import)


def _ew_filter(z: np.ndarray, decay: float, before: np.ndarray | None = None) -> np.ndarray:
    """S_t = δ·S_{t−1} + z_t along axis 0 from S_{−1} = ``before`` (None: 0), a first-order
    recursive filter, O(T): the one place the recursion of every EWMA sum here is computed.

    A few rows (a daily update's) go through :func:`~riskstrata.cascade.moments.ew_filter`,
    lfilter's arithmetic bit for bit in a Python loop over rows, and so does one series (a loop
    on floats, ~1 ms per 3,000 rows): importing ``scipy.signal`` costs a fresh process ~1 s of
    CPU, far more than those rows; a history of many series takes lfilter's C loop."""
    if len(z) <= _FEW_ROWS or np.ndim(z) == 1:
        return ew_filter(z, decay, None if before is None else decay * np.asarray(before, dtype=np.float64)[None])
    from scipy.signal import lfilter  # here, not at import: scipy.signal alone costs ~1 s, paid by every CLI call

    if before is None:
        return lfilter([1.0], [1.0, -decay], z, axis=0)
    sums, _ = lfilter([1.0], [1.0, -decay], z, axis=0, zi=decay * np.asarray(before, dtype=np.float64)[None])
    return sums


def _ew_sum(z: np.ndarray, decay: float, rows: np.ndarray | None = None) -> np.ndarray:
    """S_t = Σ_{s≤t} δ^{t−s}·z_s along axis 0: at every row (:func:`_ew_filter`, O(T)), or only
    at ``rows`` (sorted, unique), shape (len(rows), …) — see :func:`_ew_at`."""
    if rows is None:
        return _ew_filter(z, decay)
    return _ew_at(rows, decay, lambda w, lo, a: np.tensordot(w, z[lo:a], axes=1), lambda a, b: z[a:b])


def _ew_outer(u: np.ndarray, v: np.ndarray, decay: float, rows: np.ndarray | None = None) -> np.ndarray:
    """S_t[i, j] = Σ_{s≤t} δ^{t−s}·u_si·v_sj for u, v (T, K): (T, K, K), or (len(rows), K, K).

    At given rows the products are formed on those rows only; the history between them is one
    weighted Gram matrix per gap (a BLAS product) instead of T outer products.
    """
    if rows is None:
        return _ew_sum(u[:, :, None] * v[:, None, :], decay)
    return _ew_at(rows, decay, lambda w, lo, a: (u[lo:a] * w[:, None]).T @ v[lo:a],
                  lambda a, b: u[a:b, :, None] * v[a:b, None, :])


def _ew_at(rows: np.ndarray, decay: float, weighted_history: Callable[[np.ndarray, int, int], np.ndarray],
           terms: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """The EWMA sums S_t = Σ_{s≤t} δ^{t−s} z_s at the sorted rows only.

    Each contiguous run a..b−1 of rows starts from S_{a−1}: the sum the previous run ended
    with (at row e − 1), decayed by δ^{a−e}, plus the weighted sum of the rows e..a−1 between
    them (``weighted_history(weights, e, a)``, weights δ^{a−1−s}); then it follows the recursion
    S_t = δ·S_{t−1} + z_t over its own terms (``terms(a, b)``, the z rows a..b−1) — the filter's
    own arithmetic. However many runs (a restart's prior row each), the history is read once:
    O(T) multiply-adds in all, agreeing with the filter over all rows to rounding (~1e-15 relative).
    """
    rows = np.asarray(rows, dtype=np.int64)
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    out = []
    carried, end = None, 0  # S_{end−1} (None: nothing summed yet)
    for run in np.split(rows, breaks):
        a, b = int(run[0]), int(run[-1]) + 1
        history = None if a == end else weighted_history(_history_weights(decay, a - end), end, a)
        if carried is not None:
            decayed = carried * decay ** (a - end)
            history = decayed if history is None else decayed + history
        sums = _ew_filter(terms(a, b), decay, history)
        out.append(sums)
        carried, end = sums[-1], b
    return np.concatenate(out)


@lru_cache(maxsize=32)
def _history_weights(decay: float, n: int) -> np.ndarray:
    """(n,) δ^{n−1−i} for i = 0..n−1 (the rows before a run, oldest first), read-only: shared
    by every sum of an update."""
    weights = decay ** (n - 1.0 - np.arange(n))
    weights.flags.writeable = False
    return weights


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


def ewma_newey_west(factor_returns: np.ndarray, halflife: float, lags: int,
                    rows: np.ndarray | None = None) -> np.ndarray:
    """EWMA covariance with Newey–West autocovariance terms, for every date at once.

    factor_returns: (T, K) float64 daily returns, NaN = factor not estimated that day.
    rows: sorted unique row numbers to evaluate (None: all T); e.g. the last few rows of a
    daily update, O(T·K²·L) in BLAS products instead of filtering (T, K, K) arrays.
    Returns (T, K, K), or (len(rows), K, K): row t uses rows 0..t (weights δ^{t−s},
    δ = 0.5^{1/halflife}) and is the forecast of the covariance of day t+1, decimal² per day:

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
    K = x0.shape[1]
    if rows is not None:
        # Every lag's four sums of products at once: u = [x0, m] against v = [x0_l, m_l for each
        # lag], one (2K × T)·(T × 2K(L+1)) Gram product per run instead of 4(L+1) small ones.
        u = np.concatenate([x0, m], axis=1)
        v = np.concatenate([a for lag in range(lags + 1) for a in (_shift_down(x0, lag), _shift_down(m, lag))], axis=1)
        sums = _ew_outer(u, v, decay, rows)                      # (R, 2K, 2K(L+1))
        w = np.diagonal(sums[:, K:, K:2 * K], axis1=1, axis2=2)  # Σ m·m = Σ m (a mask)
        x_sum = np.diagonal(sums[:, :K, K:2 * K], axis1=1, axis2=2)
    else:
        w = _ew_sum(m, decay, rows)                              # (T, K)
        x_sum = _ew_sum(x0, decay, rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.where(w > 0, x_sum / w, np.nan)                 # (T, K)
        norm = np.sqrt(w[:, :, None] * w[:, None, :])
    mu_i, mu_j = mu[:, :, None], mu[:, None, :]
    cov = np.zeros((w.shape[0], K, K))
    for lag in range(lags + 1):
        # Σ w (x_i − μ_i)(x_jl − μ_j) expanded into running sums, all observed-pair masked:
        if rows is not None:
            at = 2 * K * lag
            cross, x_i = sums[:, :K, at:at + K], sums[:, :K, at + K:at + 2 * K]
            x_j, both = sums[:, K:, at:at + K], sums[:, K:, at + K:at + 2 * K]
        else:
            xl, ml = _shift_down(x0, lag), _shift_down(m, lag)
            cross = _ew_outer(x0, xl, decay, rows)
            x_i = _ew_outer(x0, ml, decay, rows)
            x_j = _ew_outer(m, xl, decay, rows)
            both = _ew_outer(m, ml, decay, rows)
        with np.errstate(invalid="ignore", divide="ignore"):
            gamma = (cross - mu_j * x_i - mu_i * x_j + mu_i * mu_j * both) / norm
        if lag == 0:
            cov += gamma
        else:
            cov += _bartlett(lag, lags) * (gamma + gamma.transpose(0, 2, 1))
    return cov


VARIANCE_COLUMNS = 512  # series per pass of a chunked (T, N) sum (specific risk's state sums)

# Columns of the stacked sums per pass of ewma_newey_west_variance (series × its 2 + 4(L + 1)
# sums): the peak is two (T, columns) arrays, as much memory as the dozen (T, 512) temporaries
# of one sum at a time took, so that N = thousands of specific returns stay within it.
STACKED_COLUMNS = 3072


def _padded(a: np.ndarray, lags: int) -> np.ndarray:
    """(lags + T, N): ``lags`` rows of zeros, then a; rows lo − l … hi − l − 1 of a shifted down by
    l ≤ lags (zeros before row 0, as :func:`_shift_down`) are its rows lags + lo − l … lags + hi − l − 1."""
    out = np.zeros((lags + a.shape[0], a.shape[1]))
    out[lags:] = a
    return out


def _lagged_products(xp: np.ndarray, mp: np.ndarray, lags: int, lo: int, hi: int) -> np.ndarray:
    """(hi − lo, 2 + 4(L + 1), N) the terms :func:`_lagged_sums` sums, on rows lo … hi − 1;
    xp, mp: :func:`_padded` x and m."""
    z = np.empty((hi - lo, 2 + 4 * (lags + 1), xp.shape[1]))
    x, m = xp[lags + lo:lags + hi], mp[lags + lo:lags + hi]
    z[:, 0], z[:, 1] = m, x
    for lag in range(lags + 1):
        xl, ml = xp[lags + lo - lag:lags + hi - lag], mp[lags + lo - lag:lags + hi - lag]
        at = 2 + 4 * lag
        np.multiply(x, xl, out=z[:, at])
        np.multiply(x, ml, out=z[:, at + 1])
        np.multiply(m, xl, out=z[:, at + 2])
        np.multiply(m, ml, out=z[:, at + 3])
    return z


def _lagged_sums(x: np.ndarray, m: np.ndarray, lags: int, decay: float, rows: np.ndarray | None) -> np.ndarray:
    """(R, 2 + 4(L + 1), N) the running sums Σ_{s≤t} δ^{t−s} z_s of each column of x (T, N)
    (0 where missing) and its mask m (T, N) that a Newey–West variance expands into: z = m, x,
    then per lag l = 0 … L: x·x_l, x·m_l, m·x_l, m·m_l (_l: l rows earlier, 0 before row 0);
    on every row (rows None, R = T) or on the sorted ``rows``.

    Every row: the terms are filtered as the columns of one array (one call). At rows: the
    history before each run of rows is summed as weighted dot products of the series with
    their lagged copies (no (T, N) product is formed), the runs' own rows follow the
    recursion (:func:`_ew_at`).
    """
    T, N = x.shape
    n_sums = 2 + 4 * (lags + 1)
    xp, mp = _padded(x, lags), _padded(m, lags)
    if rows is None:
        return _ew_filter(_lagged_products(xp, mp, lags, 0, T).reshape(T, -1), decay).reshape(T, n_sums, N)
    # Series along the last axis, so that each dot product runs over contiguous memory; the
    # lagged copies of rows lo … hi − 1 are the windows of lags + hi − lo rows starting at lo
    # (window j: lag L − j), one strided view, so that each pair of series takes one call for
    # every lag.
    xt, mt = np.ascontiguousarray(xp.T), np.ascontiguousarray(mp.T)

    def weighted_history(w: np.ndarray, lo: int, hi: int) -> np.ndarray:
        gx, gm = xt[:, lags + lo:lags + hi] * w, mt[:, lags + lo:lags + hi] * w
        xl = np.lib.stride_tricks.sliding_window_view(xt[:, lo:lags + hi], hi - lo, axis=1)[:, ::-1]  # (N, L+1, n)
        ml = np.lib.stride_tricks.sliding_window_view(mt[:, lo:lags + hi], hi - lo, axis=1)[:, ::-1]
        out = np.empty((n_sums, N))
        out[0], out[1] = gm.sum(axis=1), gx.sum(axis=1)
        lagged = out[2:].reshape(lags + 1, 4, N)
        lagged[:, 0] = np.einsum("in,iln->li", gx, xl)
        lagged[:, 1] = np.einsum("in,iln->li", gx, ml)
        lagged[:, 2] = np.einsum("in,iln->li", gm, xl)
        lagged[:, 3] = np.einsum("in,iln->li", gm, ml)
        return out.reshape(-1)

    return _ew_at(rows, decay, weighted_history,
                  lambda a, b: _lagged_products(xp, mp, lags, a, b).reshape(b - a, -1)).reshape(-1, n_sums, N)


def ewma_newey_west_variance(returns: np.ndarray, halflife: float, lags: int,
                             rows: np.ndarray | None = None) -> np.ndarray:
    """The diagonal of :func:`ewma_newey_west` (the same numbers, bit for bit, at every row;
    at ``rows``, to rounding), for many series at once in O(T·N·L).

    returns: (T, N) float64, NaN = missing. rows: sorted unique rows to evaluate (None: all).
    Returns (T, N) — or (len(rows), N) — daily variance forecasts, decimal² (NaN before a
    series' first observation). Used for specific risk, where N is thousands, and for the
    factor volatilities (only the diagonal of the volatility EWMA is ever used).

    The 2 + 4(L + 1) running sums of each series (:func:`_lagged_sums`) are filtered as the
    columns of one array: one filter call instead of one per sum, and at a daily update's few
    rows no (T, N) product at all — the arithmetic, not 26 calls' overhead.
    """
    decay = decay_for(halflife)
    if lags < 0:
        raise ValueError(f"lags must be ≥ 0, got {lags}")
    returns = np.asarray(returns, dtype=np.float64)
    n_sums = 2 + 4 * (lags + 1)
    per_pass = max(1, STACKED_COLUMNS // n_sums)
    if returns.ndim == 2 and returns.shape[1] > per_pass:
        # Every series is filtered on its own: a few hundred at a time give the same numbers.
        out = np.empty((returns.shape[0] if rows is None else len(rows), returns.shape[1]))
        for j in range(0, returns.shape[1], per_pass):
            out[:, j:j + per_pass] = ewma_newey_west_variance(returns[:, j:j + per_pass], halflife, lags, rows)
        return out
    x0, m = _centred(returns)
    sums = _lagged_sums(x0, m, lags, decay, rows)
    w = sums[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.where(w > 0, sums[:, 1] / w, np.nan)
    var = np.zeros_like(w)
    for lag in range(lags + 1):
        cross, x_i, x_j, both = (sums[:, 2 + 4 * lag + i] for i in range(4))
        with np.errstate(invalid="ignore", divide="ignore"):
            gamma = (cross - mu * x_i - mu * x_j + mu * mu * both) / w
        var += gamma if lag == 0 else 2.0 * _bartlett(lag, lags) * gamma
    return var


def vra_lambda_squared(b2: np.ndarray, halflife: float, before: tuple[float, float] | None = None) -> np.ndarray:
    """λ_t² = EWMA (through t) of the bias statistic B_s², the mean squared standardised return.

    b2: (T,) float64, NaN on days without a standardised return. Returns (T,) λ²; 1.0 (no
    adjustment) until the first B² exists. λ² > 1 means recent returns were larger than the
    forecasts said: the regime got more volatile than the EWMA has caught up with (USE4).
    before: (numerator, denominator) of λ² on the row before b2's first, Σ δ^{t−s} B_s² and
    Σ δ^{t−s} over days with a B² (a daily update continuing a stored λ²); None = no history.
    """
    decay = decay_for(halflife)
    ok = np.isfinite(b2)
    terms = np.stack([np.where(ok, b2, 0.0), ok.astype(np.float64)], axis=1)  # (T, 2): numerator, denominator
    num, den = _ew_filter(terms, decay, None if before is None else np.asarray(before)).T
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
            from scipy.special import chdtri, ndtr  # here: rarely reached, and scipy.special costs ~0.2 s to import

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
    s1 = _ew_filter(z, decay)
    s2 = _ew_filter(z, decay**2)
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


def _restarts(observed: np.ndarray, gap: int) -> list[tuple[int, int, int]]:
    """(row t0, factor k, end) of every first observation after ≥ ``gap`` unobserved rows, in
    row order; rows t0..end−1 are the restarted segment (end: k's next restart, or T)."""
    since = _days_since_observed(observed)
    before = np.full_like(since, np.inf)
    before[1:] = since[:-1]
    hits = observed & np.isfinite(before) & (before >= gap)
    starts = sorted(zip(*map(list, np.nonzero(hits))), key=lambda rk: rk)
    return [(int(t0), int(k), min([r for r, j in starts if j == k and r > t0], default=observed.shape[0]))
            for t0, k in starts]


def _restart_prior(t0: int, k: int, var_before: np.ndarray, ok_before: np.ndarray, x: np.ndarray,
                   groups: np.ndarray) -> float:
    """The prior daily variance of factor k restarting on row t0 (NaN if none can be formed).

    var_before, ok_before: (K,) every factor's variance forecast and forecastability on row
    t0 − 1. The median variance forecast, on row t0 − 1 (known before t0), of the other factors
    of its group that have one: the best current guess for a factor whose own recent history
    is missing. Without such peers, its own variance over all its days before t0.
    """
    peers = (groups == groups[k]) & ok_before & np.isfinite(var_before)
    peers[k] = False
    if peers.any():
        return float(np.median(var_before[peers]))
    own = x[:t0, k][np.isfinite(x[:t0, k])]
    return float(own.var(ddof=1)) if own.size >= 2 else float("nan")


def _restart_sums(x: np.ndarray, restarts: list[tuple[int, int, int]], vol_nw_lags: int, halflife: float,
                  rows: np.ndarray | None) -> np.ndarray:
    """(R, len(restarts), 2 + 4(L + 1)) the running sums :func:`_restarted_variance` needs, for
    every restart at once, on ``rows`` (None: all T, R = T): the :func:`_lagged_sums` of its
    factor's returns from row t0 on (m_s: observed and s ≥ t0; y0 = y·m). None of them involves
    the prior, so all restarts' sums are the columns of one array, summed in one call.
    """
    T = x.shape[0]
    after = np.arange(T)[:, None] >= np.array([t0 for t0, _k, _end in restarts])[None, :]
    y = x[:, [k for _t0, k, _end in restarts]]
    m = np.isfinite(y) & after
    sums = _lagged_sums(np.where(m, y, 0.0), m.astype(np.float64), vol_nw_lags, decay_for(halflife), rows)
    return sums.transpose(0, 2, 1)


def _restarted_variance(sums: np.ndarray, at: np.ndarray, t0: int, prior: float, p: CovarianceParams) -> np.ndarray:
    """(R,) EWMA + Newey–West variance of one factor on rows ``at`` (R,) ≥ t0, blended with its prior.

    sums: (R, 2 + 4(L + 1)) its :func:`_restart_sums` on those rows (returns before t0 ignored). The
    prior is ``restart_prior_obs`` pseudo-days on row t0 − 1 with mean 0 and variance ``prior``
    and no autocorrelation; its weight decays by δ a day like a real day's:

        W_t = Σ_{t0≤s≤t} δ^{t−s} m_s + P δ^{t−t0+1},   μ_t = Σ δ^{t−s} m_s y_s / W_t
        Γ0  = [Σ δ^{t−s} m_s (y_s − μ)² + P δ^{t−t0+1} (prior + μ²)] / W_t
        Γl  = Σ δ^{t−s} m_s m_{s−l} (y_s − μ)(y_{s−l} − μ) / W_t,   v = Γ0 + Σ_l 2(1 − l/(L+1)) Γl
    """
    decay = decay_for(p.vol_halflife)
    P = p.restart_prior_obs * decay ** (at - t0 + 1.0)
    s_m, s_y, s_yy = sums[:, 0], sums[:, 1], sums[:, 2]  # Σ m, Σ y, Σ y² (the lag-0 y·y_0)
    W = s_m + P
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = s_y / W
        v = (s_yy - 2 * mu * s_y + mu * mu * s_m + P * (prior + mu * mu)) / W
        for lag in range(1, p.vol_nw_lags + 1):
            cross, y_ml, m_yl, both = (sums[:, 2 + 4 * lag + i] for i in range(4))
            g = (cross - mu * m_yl - mu * y_ml + mu * mu * both) / W
            v = v + 2.0 * _bartlett(lag, p.vol_nw_lags) * g
    return v


def _rows_with_priors(rows: np.ndarray, restarts: list[tuple[int, int, int]], p: CovarianceParams) -> np.ndarray:
    """``rows`` plus the row t0 − 1 of every restart whose segment covers one of them (its prior
    is read there), and so on back: the rows :func:`_forecastable` must evaluate."""
    if p.restart_prior_obs <= 0:
        return rows
    need = set(rows.tolist())
    for t0, _k, end in reversed(restarts):  # later restarts first: their t0 − 1 may lie in an earlier segment
        if any(t0 <= r < end for r in need):
            need.add(t0 - 1)
    return np.array(sorted(need), dtype=np.int64)


def _forecastable(x: np.ndarray, p: CovarianceParams, groups: np.ndarray, rows: np.ndarray | None,
                  restarts: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(R, K) each factor's variance (vol half-life), correlation-EWMA volatility, and whether it
    has a forecast, on ``rows`` (None: all T rows).

    A factor unobserved for ``restart_gap`` rows has no forecast; when it is observed again
    its volatility restarts from a prior (module docstring), its correlations carry on. rows
    must hold t0 − 1 of every restart whose segment they touch (:func:`_rows_with_priors`).
    """
    T, _ = x.shape
    at = np.arange(T) if rows is None else rows
    var = np.maximum(ewma_newey_west_variance(x, p.vol_halflife, p.vol_nw_lags, rows), 0.0)
    csd = np.sqrt(np.maximum(ewma_newey_west_variance(x, p.corr_halflife, p.corr_nw_lags, rows), 0.0))
    observed = np.isfinite(x)
    counts = np.cumsum(observed, axis=0)[at]
    recent = (_days_since_observed(observed) < p.restart_gap)[at]  # after a long gap: no forecast, not a stale one
    ok = (counts >= p.min_obs) & (var > 0) & (csd > 0) & recent
    touching = [r for r in restarts if ((at >= r[0]) & (at < r[2])).any()]
    sums = _restart_sums(x, touching, p.vol_nw_lags, p.vol_halflife, rows) if touching and p.restart_prior_obs > 0 \
        else None
    for j, (t0, k, end) in enumerate(touching):  # in row order: a prior may read a peer's restarted variance
        sel = (at >= t0) & (at < end)
        prior = float("nan")
        if p.restart_prior_obs > 0:
            i = int(np.searchsorted(at, t0 - 1))
            prior = _restart_prior(t0, k, var[i], ok[i], x, groups)
        seg_rows = at[sel]
        if np.isfinite(prior) and prior > 0:
            seg = _restarted_variance(sums[sel, j], seg_rows, t0, prior, p)
            enough = np.ones(seg_rows.size, dtype=bool)
        else:  # nothing to start from: the factor waits for min_obs new days, like a new one
            fresh = np.where(np.arange(T) >= t0, x[:, k], np.nan)[:, None]
            seg = ewma_newey_west_variance(fresh, p.vol_halflife, p.vol_nw_lags)[seg_rows, 0]
            enough = (np.cumsum(observed[t0:end, k]) >= p.min_obs)[seg_rows - t0]
        var[sel, k] = seg
        with np.errstate(invalid="ignore"):
            ok[sel, k] = enough & (seg > 0) & (csd[sel, k] > 0) & recent[sel, k]
    return var, csd, ok


def _raw_covariance(x: np.ndarray, p: CovarianceParams, groups: np.ndarray | None = None,
                    rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(R, K, K) volatility(vol half-life) × correlation(corr half-life); (R, K) forecastable.

    On every row (rows None, R = T) or only on the sorted ``rows`` (a daily update's last few).
    Only the diagonal of the volatility EWMA is used, so it is filtered as T × K variances.
    """
    T, K = x.shape
    groups = np.zeros(K, dtype=int) if groups is None else np.asarray(groups)
    restarts = _restarts(np.isfinite(x), p.restart_gap)
    if rows is None:
        var, csd, ok = _forecastable(x, p, groups, None, restarts)
    else:
        rows = np.asarray(rows, dtype=np.int64)
        need = _rows_with_priors(rows, restarts, p)
        pick = np.searchsorted(need, rows)
        var, csd, ok = (a[pick] for a in _forecastable(x, p, groups, need, restarts))
    corr_cov = ewma_newey_west(x, p.corr_halflife, p.corr_nw_lags, rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(ok, np.sqrt(var) / csd, np.nan)
    raw = corr_cov * scale[:, :, None] * scale[:, None, :]  # D_vol · R · D_vol, R from corr_cov
    raw[~(ok[:, :, None] & ok[:, None, :])] = np.nan
    return raw, ok


def _eigen_schedule(ok: np.ndarray, n_eff: np.ndarray, every: int, after: int | None = None) -> list[int]:
    """Dates that run the simulation: every ``every`` dates, and whenever the factor set changes.

    after: a row known to have run it (a stored run's last): the schedule from there on is
    decided by that row and the rows after it alone, so only those are scanned.
    """
    runs: list[int] = []
    last, last_set, first = (-every, None, 0) if after is None else (after, ok[after].tobytes(), after + 1)
    for t in range(first, ok.shape[0]):
        k = int(ok[t].sum())
        if k == 0 or n_eff[t] < k + 2:  # a Wishart draw needs more observations than factors
            last_set = None
            continue
        key = ok[t].tobytes()
        if key != last_set or t - last >= every:
            runs.append(t)
            last, last_set = t, key
    return runs


def _bias_source(ok: np.ndarray, runs: list[int], first: int, stop: int) -> np.ndarray:
    """(stop − first,) the scheduled row whose simulated bias applies on rows first..stop−1; −1 = none.

    A run's bias is applied from its row on, until the next run or until the factor set
    changes (it was simulated for that set; by eigenvalue rank it means nothing for another).
    A run resets the state, so the scan starts at the last run on or before ``first``.
    """
    scheduled = set(runs)
    start = max([r for r in runs if r <= first], default=first)
    source = np.full(stop - first, -1, dtype=np.int64)
    current, current_set = -1, None
    for t in range(start, stop):
        if not ok[t].any():
            continue
        key = ok[t].tobytes()
        if t in scheduled:
            current, current_set = t, key
        elif key != current_set:
            current = -1  # the factor set changed and no simulation fits it yet
        if t >= first:
            source[t - first] = current
    return source


def _simulated_bias(raw_t: np.ndarray, ok_t: np.ndarray, n_eff_t: float, draws: WishartDraws) -> np.ndarray:
    """(k,) the eigen simulation's bias v for one row's forecastable block (k = ok_t.sum())."""
    d = np.linalg.eigvalsh(raw_t[np.ix_(ok_t, ok_t)])
    if d.max() <= 0:
        return np.ones_like(d)
    return eigen_bias(d, float(n_eff_t), draws)


def _simulate(runs: list[int], raw_of: Callable[[int], np.ndarray], ok: np.ndarray, n_eff: np.ndarray,
              p: CovarianceParams, tick: Callable[[int, int], None] | None) -> dict[int, np.ndarray]:
    """row → simulated bias for each row of ``runs``, over ``workers`` threads.

    The rows are independent (numpy's eigh releases the GIL) and common random numbers make
    the order irrelevant: one seeded :class:`WishartDraws` for all, the same in every run.
    """
    if not runs:
        return {}
    draws = WishartDraws(p.eigen_sims, ok.shape[1], p.seed)
    workers = p.workers or _cores()
    count = tick or (lambda _done, _total: None)
    every = max(1, len(runs) // 50)
    biases: dict[int, np.ndarray] = {}

    def simulate(t: int) -> np.ndarray:
        return _simulated_bias(raw_of(t), ok[t], n_eff[t], draws)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, (t, bias) in enumerate(zip(runs, pool.map(simulate, runs) if workers > 1 else map(simulate, runs))):
            biases[t] = bias
            if i % every == 0 or i == len(runs) - 1:
                count(i + 1, len(runs))
    return biases


def _eigen_adjust(raw: np.ndarray, ok: np.ndarray, source: np.ndarray, biases: dict[int, np.ndarray],
                  scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's own eigendecomposition with the bias of its source run (:func:`_bias_source`).

    raw: (R, K, K); ok: (R, K); source: (R,) run row or −1. Returns (R, K, K) the eigen-adjusted
    matrices (NaN off the forecastable block), (R,) bool applied, (R, K) the bias in use.
    """
    R, K = ok.shape
    eig_adj = np.full((R, K, K), np.nan)
    applied = np.zeros(R, bool)
    bias_in_use = np.full((R, K), np.nan)
    for i in range(R):
        if not ok[i].any():
            continue
        idx = np.ix_(ok[i], ok[i])
        gamma = None
        if source[i] >= 0:
            current = biases[int(source[i])]
            gamma = scale * (current - 1.0) + 1.0  # MWO: v scaled by the empirical a
            applied[i] = True
            bias_in_use[i, : current.size] = current
        eig_adj[i][idx] = _apply_eigen(raw[i][idx], gamma)
    return eig_adj, applied, bias_in_use


def _bias_statistic(x: np.ndarray, sigma_prev: np.ndarray) -> np.ndarray:
    """(R,) VRA's B_t² = mean over factors of (f_k,t / σ_k,t−1)², NaN on days with none.

    x: (R, K) the factor returns of the rows; sigma_prev: (R, K) the eigen-adjusted volatility
    forecast made the day before (known at the close of t−1), so λ_t uses nothing after t.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        z2 = (x / sigma_prev) ** 2
    z2[~np.isfinite(z2)] = np.nan
    n_z = np.isfinite(z2).sum(axis=1)
    return np.where(n_z > 0, np.nansum(z2, axis=1) / np.maximum(n_z, 1), np.nan)


def _group_codes(groups: list[str] | None, K: int) -> np.ndarray | None:
    if groups is not None and len(groups) != K:
        raise DataValidationError(f"groups must name one group per factor ({K}); got {len(groups)}")
    if groups is None:
        return None
    code = {g: i for i, g in enumerate(dict.fromkeys(groups))}  # in order of appearance, as pd.factorize
    return np.array([code[g] for g in groups], dtype=np.int64)


def factor_covariance(factor_returns: pd.DataFrame, params: CovarianceParams = CovarianceParams(),
                      groups: list[str] | None = None,
                      tick: Callable[[int, int], None] | None = None,
                      known_biases: dict[int, np.ndarray] | None = None) -> FactorCovariance:
    """Daily factor covariance forecasts with eigenfactor and volatility-regime adjustments.

    factor_returns: (T × K) daily factor returns, decimal, indexed by ascending dates; NaN =
    factor not estimated that day. groups: (K,) a group label per factor (market, style,
    industry): a factor restarting after a gap takes its prior from its group (default: one
    group). tick(done, total) is called as the eigen simulations finish (progress). See the
    module docstring for the method and :class:`FactorCovariance` for the result. Raises
    :class:`InsufficientHistory` if no factor ever reaches ``min_obs`` observations.

    The simulation runs every ``eigen_every`` dates (and when the set of forecastable factors
    changes); in between, its bias v(k) — by eigenvalue rank — is applied to each date's own
    eigendecomposition. known_biases: row → the bias a previous run simulated on that row (a
    daily update: the same returns up to it give the same bias, common random numbers), reused
    instead of simulated when the row is on the schedule and the bias fits its factor set.
    Cost: ~(T / eigen_every)·eigen_sims eigendecompositions of K × K (≈ 35 µs each at K = 21),
    spread over ``workers`` threads; everything else is O(T·K²·L). To add days to a stored
    result, :func:`extend_factor_covariance` computes only the new rows.
    """
    p = params
    x = _check_frame(factor_returns)
    T, K = x.shape
    codes = _group_codes(groups, K)
    raw, ok = _raw_covariance(x, p, codes)
    if not ok.any():
        raise InsufficientHistory(f"no factor has {p.min_obs} observed days (T = {T})")
    # The simulated window: the effective sample of the correlation EWMA, because the
    # eigenvectors (what sampling error scrambles) come from the correlations.
    n_eff = _effective_obs(np.isfinite(x).any(axis=1), p.corr_halflife)
    runs = _eigen_schedule(ok, n_eff, p.eigen_every) if p.eigen_sims > 0 else []
    known = known_biases or {}
    biases = {t: np.asarray(known[t], dtype=np.float64) for t in runs
              if t in known and np.size(known[t]) == int(ok[t].sum())}
    biases |= _simulate([t for t in runs if t not in biases], lambda t: raw[t], ok, n_eff, p, tick)
    eig_adj, eigen_applied, eigen_bias_t = _eigen_adjust(raw, ok, _bias_source(ok, runs, 0, T), biases,
                                                         p.eigen_scale)
    eigen_recomputed = np.zeros(T, bool)
    eigen_recomputed[runs] = True

    sigma_prev = np.full((T, K), np.nan)
    sigma_prev[1:] = np.sqrt(np.diagonal(eig_adj, axis1=1, axis2=2)[:-1])
    lam2 = vra_lambda_squared(_bias_statistic(x, sigma_prev), p.vra_halflife)
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


# ---------------------------------------------------------------------------------------------
# The daily update: only the new rows

# The recomputed last stored row must match the stored one to this, relative to its largest
# |entry|: rounding (a rebuild's centring moves with the new days) stays below 1e-12; a changed
# factor return, another spec or another data set shows far above it.
UPDATE_TOL = 1e-9


def extend_factor_covariance(factor_returns: pd.DataFrame, previous: FactorCovariance,
                             params: CovarianceParams = CovarianceParams(), groups: list[str] | None = None,
                             tick: Callable[[int, int], None] | None = None) -> FactorCovariance:
    """The rows a :func:`factor_covariance` of the longer history adds, without recomputing the rest.

    factor_returns: (T × K) the whole extended history (old and new dates), as for
    :func:`factor_covariance`. previous: the result over its first T_old rows (1 ≤ T_old < T)
    as the store keeps it — ``adjusted`` (T_old, K, K), ``vra_lambda`` (T_old,), ``eigen_bias``
    (T_old, K) read on the rows where the simulation ran, ``eigen_recomputed`` (T_old,) bool
    (empty or None: taken as the rows with a finite ``eigen_bias``); ``raw`` and
    ``eigen_applied`` are not read (empty arrays or None will do). params and groups must be
    the ones that made previous.

    Returns a :class:`FactorCovariance` over rows T_old − 1 … T − 1 (the last stored date again,
    then the B = T − T_old new ones) equal to those rows of ``factor_covariance(factor_returns,
    params, groups)`` up to rounding (≲ 1e-12 relative to each matrix's largest entry). Raises
    :class:`IdentityViolation` when the recomputed last stored row is not previous's (the factor
    returns, params or groups changed under it: rebuild), as well as :func:`factor_covariance`'s
    errors.

    How, in O(T·K²·L) products plus O(B) recursion steps (no filter over the history):
    the EWMA sums on row T_old − 1 are weighted Gram matrices of the whole (re-centred) history,
    continued day by day over the new rows (:func:`_ew_at`); a restart's prior is read on its
    row t0 − 1, evaluated the same way; the eigen schedule goes on from the last stored run, the
    bias in use comes from the store and only new scheduled rows are simulated (with the same
    seeded draws: common random numbers); λ² goes on from its stored numerator and denominator.
    tick(done, total) as for :func:`factor_covariance`, for the new simulations.
    """
    p = params
    x = _check_frame(factor_returns)
    T, K = x.shape
    codes = _group_codes(groups, K)
    T_old = _check_previous(previous, factor_returns)
    first = T_old - 1
    rows = np.arange(first, T)
    raw, ok_rows = _raw_covariance(x, p, codes, rows)
    old_diag = np.diagonal(previous.adjusted, axis1=1, axis2=2)  # (T_old, K), eigen-adjusted × λ²
    ok = np.zeros((T, K), dtype=bool)
    ok[:T_old] = np.isfinite(old_diag)  # a stored forecast exists exactly where the factor had one
    if not np.array_equal(ok[first], ok_rows[0]):
        raise IdentityViolation(f"factor covariance on {factor_returns.index[first].date()}: the factors with a "
                                f"forecast differ from the stored ones — the factor returns changed; rebuild")
    ok[first:] = ok_rows
    if not ok.any():
        raise InsufficientHistory(f"no factor has {p.min_obs} observed days (T = {T})")
    n_eff = _effective_obs(np.isfinite(x).any(axis=1), p.corr_halflife)

    # The eigen schedule from the last stored run on; the biases in use: stored, or simulated on new rows.
    recomputed = np.isfinite(previous.eigen_bias).any(axis=1) if previous.eigen_recomputed is None \
        or len(previous.eigen_recomputed) == 0 else np.asarray(previous.eigen_recomputed, dtype=bool)
    stored_runs = [int(r) for r in np.flatnonzero(recomputed)]
    runs: list[int] = []
    if p.eigen_sims > 0:
        later = _eigen_schedule(ok, n_eff, p.eigen_every, after=stored_runs[-1] if stored_runs else None)
        if any(r < T_old for r in later):
            missed = factor_returns.index[later[0]].date()
            raise IdentityViolation(f"the stored eigen simulation did not run on {missed}, which the schedule of "
                                    f"these params has: rebuild")
        runs = stored_runs + later
    elif stored_runs:
        raise IdentityViolation("the stored covariance has eigen simulations but eigen_sims = 0: rebuild")
    source = _bias_source(ok, runs, first, T)
    biases = {}
    for r in {int(s) for s in source if 0 <= s < T_old}:
        bias = np.asarray(previous.eigen_bias[r, : int(ok[r].sum())], dtype=np.float64)
        if not np.isfinite(bias).all():
            raise IdentityViolation(f"the stored eigen bias of {factor_returns.index[r].date()} is missing")
        biases[r] = bias
    biases |= _simulate([r for r in runs if r >= T_old], lambda t: raw[t - first], ok, n_eff, p, tick)
    eig_adj, eigen_applied, eigen_bias_t = _eigen_adjust(raw, ok_rows, source, biases, p.eigen_scale)

    # VRA: λ² goes on from the stored rows; row T_old − 1's B² reads the stored row before it.
    sigma_old = _stored_eigen_volatility(old_diag, previous.vra_lambda)
    sigma_prev = np.full((T - first, K), np.nan)
    if first >= 1:
        sigma_prev[0] = sigma_old[first - 1]
    sigma_prev[1:] = np.sqrt(np.diagonal(eig_adj, axis1=1, axis2=2)[:-1])
    lam2 = vra_lambda_squared(_bias_statistic(x[first:], sigma_prev), p.vra_halflife,
                              _stored_vra_sums(x[:first], sigma_old[:first], previous.vra_lambda[:first], p))
    adjusted = eig_adj * lam2[:, None, None]

    _check_same_row(adjusted[0], previous.adjusted[first], factor_returns.index[first])
    dates = factor_returns.index[first:]
    _check_psd(adjusted, ok_rows, dates)
    return FactorCovariance(dates=dates, factors=[str(c) for c in factor_returns.columns], raw=raw,
                            adjusted=adjusted, eigen_applied=eigen_applied, vra_lambda=np.sqrt(lam2),
                            eigen_recomputed=np.isin(rows, runs), eigen_bias=eigen_bias_t, params=p)


def _stored_eigen_volatility(stored_diag: np.ndarray, vra_lambda: np.ndarray) -> np.ndarray:
    """(T_old, K) the eigen-adjusted volatility forecasts of stored rows: the stored matrices are
    them × λ², so √(diagonal / λ²) (NaN where a factor had none)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(stored_diag / np.asarray(vra_lambda, dtype=np.float64)[:, None] ** 2)


def _stored_vra_sums(x: np.ndarray, sigma: np.ndarray, vra_lambda: np.ndarray,
                     p: CovarianceParams) -> tuple[float, float] | None:
    """(numerator, denominator) of λ² on the last of n stored rows (None if n = 0).

    x: (n, K) their factor returns; sigma: (n, K) their eigen-adjusted volatility forecasts;
    vra_lambda: (n,) their λ. The denominator Σ δ^{t−s} over the days with a B² (a factor
    return and a forecast the day before) is recomputed exactly as a rebuild filters it; the
    numerator is λ² times it.
    """
    n = x.shape[0]
    if n == 0:
        return None
    sigma_prev = np.full_like(sigma, np.nan)
    sigma_prev[1:] = sigma[:-1]
    had_b2 = np.isfinite(_bias_statistic(x, sigma_prev)).astype(np.float64)
    den = float(_ew_sum(had_b2, decay_for(p.vra_halflife))[-1])
    return float(vra_lambda[-1]) ** 2 * den, den


def _check_previous(previous: FactorCovariance, factor_returns: pd.DataFrame) -> int:
    """T_old, after checking previous's shapes and labels against the extended frame."""
    T, K = factor_returns.shape
    adjusted = np.asarray(previous.adjusted)
    T_old = adjusted.shape[0] if adjusted.ndim == 3 else -1
    if adjusted.shape != (T_old, K, K) or not 1 <= T_old < T:
        raise DataValidationError(f"previous.adjusted must be (T_old, {K}, {K}) with 1 ≤ T_old < {T}; "
                                  f"got {adjusted.shape}")
    if list(previous.factors) != [str(c) for c in factor_returns.columns]:
        raise DataValidationError("previous covers other factors (or another order) than factor_returns")
    if not pd.DatetimeIndex(previous.dates).equals(factor_returns.index[:T_old]):
        raise DataValidationError(f"previous's dates are not the first {T_old} dates of factor_returns")
    if np.shape(previous.vra_lambda) != (T_old,) or np.shape(previous.eigen_bias) != (T_old, K):
        raise DataValidationError(f"previous must keep vra_lambda ({T_old},) and eigen_bias ({T_old}, {K})")
    if previous.eigen_recomputed is not None and len(previous.eigen_recomputed) not in (0, T_old):
        raise DataValidationError(f"previous.eigen_recomputed must be ({T_old},) or empty")
    return T_old


def _check_same_row(recomputed: np.ndarray, stored: np.ndarray, date: pd.Timestamp) -> None:
    """Refuse an update whose recomputed last stored row is not the stored one (NaNs included)."""
    scale = max(float(np.nanmax(np.abs(stored), initial=0.0)), np.finfo(float).tiny)
    with np.errstate(invalid="ignore"):
        far = np.abs(recomputed - stored) > UPDATE_TOL * scale
    if np.any(far) or not np.array_equal(np.isnan(recomputed), np.isnan(stored)):
        worst = float(np.nanmax(np.abs(recomputed - stored), initial=0.0)) / scale
        raise IdentityViolation(f"factor covariance on {date.date()} recomputed from the factor returns differs "
                                f"from the stored one (largest difference {worst:.2e} of its largest entry): "
                                f"the factor returns, params or groups changed since it was stored; rebuild")
