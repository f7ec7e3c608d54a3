"""Risk-model quality: was the risk that was forecast the risk that was realised? (SPEC §3)

A forecast volatility σ_t is judged by the standardised outcome b_t = r_t / σ_t. If σ_t is
right, b_t has unit standard deviation, so the *bias statistic* B = std(b_t) has target 1. For
T normal outcomes the sampling error of B is about √(1/(2T)), so 1 ± √(2/T) is its ≈ 95 %
confidence band (USE4: Menchero, Orr, Wang 2011). B > 1 means risk was under-forecast.

The kernels here take forecasts that are *already aligned* with the outcomes: ``forecast_vol[t]``
is the forecast for the return on row t (made at the close of t − 1). :func:`validation_report`
works on the model's own arrays, whose forecast-side rows are as of each date's close, and does
that one-day lag itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from riskstrata.errors import DataValidationError
from riskstrata.factors.blocks import BlockArray

# r² is floored before its log is taken in QLIKE: a return of exactly 0 would give −log 0 = ∞.
# 1e-12 is a daily move of 1e-6, far below any real one, so the floor only guards that case.
QLIKE_FLOOR = 1e-12


# ---------------------------------------------------------------------------------------------
# Kernels on aligned (returns, forecast) pairs
# ---------------------------------------------------------------------------------------------

def _pair(returns: np.ndarray, forecast: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(returns, dtype=np.float64)
    s = np.asarray(forecast, dtype=np.float64)
    if r.shape != s.shape:
        raise DataValidationError(f"returns {r.shape} and {name} {s.shape} must have the same shape")
    if r.ndim not in (1, 2):
        raise DataValidationError(f"returns must be (T,) or (T, P), got shape {r.shape}")
    return r, s


def _standardised(returns: np.ndarray, forecast_vol: np.ndarray) -> np.ndarray:
    """b = r / σ, NaN where either is missing or σ ≤ 0. Same shape as the inputs."""
    r, s = _pair(returns, forecast_vol, "forecast_vol")
    ok = np.isfinite(r) & np.isfinite(s) & (s > 0)
    return np.divide(r, s, out=np.full(r.shape, np.nan), where=ok)


def _nanstd_cols(b: np.ndarray) -> np.ndarray:
    """Per-column std (ddof=1) over finite values; NaN where fewer than 2."""
    n = np.sum(np.isfinite(b), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN / single-value columns
        sd = np.nanstd(b, axis=0, ddof=1)
    return np.asarray(np.where(n >= 2, sd, np.nan), dtype=np.float64)


def bias_statistic(returns: np.ndarray, forecast_vol: np.ndarray) -> np.ndarray:
    """Bias statistic B = std(r_t / σ_t) over the sample (ddof = 1), NaN-aware.

    returns: (T,) or (T, P) float64 decimal returns, NaN = missing.
    forecast_vol: same shape, the forecast σ for each return (same units), NaN = no forecast.
    Returns B with the time axis removed: shape () for (T,) input, (P,) for (T, P); NaN where
    a column has fewer than 2 usable pairs. Target 1; > 1 means risk was under-forecast.
    """
    return _nanstd_cols(_standardised(returns, forecast_vol))


def bias_band(T: int) -> tuple[float, float]:
    """The ≈ 95 % band of the bias statistic for T observations: 1 ± √(2/T)."""
    if T < 1:
        raise ValueError(f"the band needs T ≥ 1 observations, got {T}")
    half = float(np.sqrt(2.0 / T))
    return 1.0 - half, 1.0 + half


def rolling_bias(
    returns: np.ndarray,
    forecast_vol: np.ndarray,
    window: int = 252,
    *,
    min_periods: int | None = None,
) -> np.ndarray:
    """Bias statistic over a trailing window of ``window`` rows, for every row.

    returns, forecast_vol: (T,) or (T, P), aligned as for :func:`bias_statistic`.
    Row t uses rows t − window + 1 … t. A row is NaN until the window holds ``min_periods``
    usable pairs (default max(2, window // 2)). Returns an array of the inputs' shape.
    """
    if window < 2:
        raise ValueError(f"window must be ≥ 2, got {window}")
    m = max(2, window // 2) if min_periods is None else int(min_periods)
    b = _standardised(returns, forecast_vol)
    frame = pd.DataFrame(b.reshape(b.shape[0], -1))
    out = frame.rolling(window, min_periods=m).std(ddof=1).to_numpy()
    return out.reshape(b.shape)


def _mrad_cols(returns: np.ndarray, forecast_vol: np.ndarray, window: int) -> np.ndarray:
    """Per-column MRAD, shape () or (P,)."""
    dev = np.abs(rolling_bias(returns, forecast_vol, window) - 1.0)
    n = np.sum(np.isfinite(dev), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(dev, axis=0)
    return np.asarray(np.where(n > 0, mean, np.nan), dtype=np.float64)


def mrad(returns: np.ndarray, forecast_vol: np.ndarray, window: int = 252) -> float:
    """Mean rolling absolute deviation: the mean over time of |B_t − 1| (Barra).

    B_t is :func:`rolling_bias` over ``window`` rows. Unlike the full-sample bias statistic,
    MRAD penalises forecasts that are too high in some periods and too low in others.
    returns, forecast_vol: (T,) or (T, P); for (T, P) the mean pools every column.
    NaN when no window has enough data.
    """
    dev = np.abs(rolling_bias(returns, forecast_vol, window) - 1.0)
    return float(np.mean(dev[np.isfinite(dev)])) if np.isfinite(dev).any() else float("nan")


def _qlike_terms(returns: np.ndarray, forecast_var: np.ndarray, floor: float) -> np.ndarray:
    r, h = _pair(returns, forecast_var, "forecast_var")
    ok = np.isfinite(r) & np.isfinite(h) & (h > 0)
    ratio = np.divide(np.maximum(r * r, floor), h, out=np.full(r.shape, np.nan), where=ok)
    return ratio - np.log(ratio) - 1.0


def qlike(returns: np.ndarray, forecast_var: np.ndarray, *, floor: float = QLIKE_FLOOR) -> float:
    """QLIKE loss: mean of r²/h − log(r²/h) − 1 (Patton 2011), NaN-aware.

    returns: (T,) or (T, P) decimal returns; forecast_var: same shape, the forecast variance h
    (decimal², not volatility). r² is floored at ``floor`` so a zero return stays finite.
    Lower is better; in expectation it is minimised by the true variance, and unlike squared
    error it is robust to the noise in r² as a proxy. Pairs with h ≤ 0 or NaN are skipped.
    """
    terms = _qlike_terms(returns, forecast_var, floor)
    return float(np.mean(terms[np.isfinite(terms)])) if np.isfinite(terms).any() else float("nan")


def _qlike_cols(returns: np.ndarray, forecast_var: np.ndarray) -> np.ndarray:
    terms = _qlike_terms(returns, forecast_var, QLIKE_FLOOR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nanmean(terms, axis=0), dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Kernels on exposures
# ---------------------------------------------------------------------------------------------

def stability_coefficient(exposures_t: np.ndarray, exposures_t_next: np.ndarray, caps: np.ndarray) -> float:
    """Cap-weighted cross-sectional correlation of one factor's exposures between two dates.

    exposures_t, exposures_t_next: (N,) exposures of the same names on two dates (USE4 uses
    month ends); caps: (N,) market caps in USD on the first date (the weights).
    Names missing on either date or without a positive cap are skipped. USE4 wants it above
    ≈ 0.9 for a style: exposures that churn make factor returns hard to hold. NaN when fewer
    than 2 names remain or one side has no cross-sectional variance.
    """
    x = np.asarray(exposures_t, dtype=np.float64)
    y = np.asarray(exposures_t_next, dtype=np.float64)
    v = np.asarray(caps, dtype=np.float64)
    if not (x.shape == y.shape == v.shape) or x.ndim != 1:
        raise DataValidationError(f"exposures and caps must be (N,) of one length, got {x.shape}, {y.shape}, {v.shape}")
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(v) & (v > 0)
    if ok.sum() < 2:
        return float("nan")
    w = v[ok] / v[ok].sum()
    # Weighted Pearson correlation; for exposures already cap-weighted to mean 0 (the USE4
    # standardisation) this is USE4's Σv·x·y / √(Σv·x² · Σv·y²).
    dx = x[ok] - w @ x[ok]
    dy = y[ok] - w @ y[ok]
    vx, vy = w @ (dx * dx), w @ (dy * dy)
    if vx <= 0 or vy <= 0:
        return float("nan")
    return float(np.clip((w @ (dx * dy)) / np.sqrt(vx * vy), -1.0, 1.0))


def vif(exposures: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Variance inflation factor of each factor: 1 / (1 − R²_k) of a weighted regression of
    column k on the other columns and an intercept.

    exposures: (N, K) one date's exposures; weights: (N,) regression weights (e.g. √cap).
    Rows with a missing exposure or a non-positive weight are dropped. Returns (K,) float64:
    1 for a column orthogonal to the others, large (∞ when exactly collinear) for one they
    nearly span; NaN for a constant column (spanned by the intercept: pass the market factor
    and a full set of industry dummies only with that in mind — they sum to it) and when
    there are not more names than factors.
    """
    X = np.asarray(exposures, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if X.ndim != 2 or w.shape != (X.shape[0],):
        raise DataValidationError(f"exposures must be (N, K) and weights (N,), got {X.shape} and {w.shape}")
    K = X.shape[1]
    out = np.full(K, np.nan)
    ok = np.isfinite(X).all(axis=1) & np.isfinite(w) & (w > 0)
    if ok.sum() <= K:
        return out
    X, w = X[ok], w[ok] / w[ok].sum()
    # Weighted centring is the intercept; scaling rows by √w turns WLS into OLS.
    Z = (X - w @ X) * np.sqrt(w)[:, None]
    varying = np.ptp(X, axis=0) > 0
    sst = np.sum(Z * Z, axis=0)
    for k in np.flatnonzero(varying):
        others = Z[:, varying & (np.arange(K) != k)]
        if others.shape[1] == 0:
            out[k] = 1.0
            continue
        beta, *_ = np.linalg.lstsq(others, Z[:, k], rcond=None)
        resid = Z[:, k] - others @ beta
        ssr = float(resid @ resid)
        out[k] = np.inf if ssr <= 1e-12 * sst[k] else sst[k] / ssr
    return out


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------

TABLE_COLUMNS = ["group", "name", "n_obs", "bias", "band_lo", "band_hi", "inside_band", "share_inside",
                 "mrad", "qlike", "stability", "vif"]


@dataclass(frozen=True)
class ValidationReport:
    """Bias statistics and diagnostics of a fitted risk model.

    table: one row per pure factor portfolio (group "factor", name = factor), then one
      summary row each for the random active portfolios (group "random_active") and the
      specific portfolios (group "specific"). Columns: n_obs (days; the median for summary
      rows), bias, band_lo / band_hi (1 ± √(2/n_obs)), inside_band (bool), share_inside
      (summary rows: the share of portfolios inside their own band; factor rows: 1.0 / 0.0),
      mrad, qlike (summary rows: medians over portfolios), stability (mean month-to-month
      cap-weighted exposure correlation), vif (mean over month ends, style factors only).
    random_active: per random portfolio — n_obs, bias, inside_band, mrad, qlike.
    specific: per name with enough history — the same columns.
    mean_r2: mean of the regression's daily R², when it was given.
    """

    table: pd.DataFrame
    random_active: pd.DataFrame | None = None
    specific: pd.DataFrame | None = None
    mean_r2: float | None = None

    def to_text(self) -> str:
        """A plain-text summary with an inside / OUTSIDE flag per row."""
        t = self.table
        bands = zip(t["band_lo"], t["band_hi"], strict=True)
        shown = t.assign(
            band=[f"[{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else "-" for lo, hi in bands],
            flag=np.where(t["bias"].isna(), "-", np.where(t["inside_band"], "inside", "OUTSIDE")),
        )[["group", "name", "n_obs", "bias", "band", "flag", "share_inside", "mrad", "qlike", "stability", "vif"]]
        lines = ["Risk-model validation: bias statistic target 1, band 1 ± √(2/T) (USE4)", ""]
        lines.append(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))
        lines.append("")
        factors = t[t["group"] == "factor"]
        judged = factors["bias"].notna()
        lines.append(f"pure factor portfolios inside the band: {int(factors.loc[judged, 'inside_band'].sum())} "
                     f"of {int(judged.sum())}")
        for group, label in (("random_active", "random active portfolios"), ("specific", "specific portfolios")):
            row = t[t["group"] == group]
            if len(row) and np.isfinite(row["bias"].iloc[0]):
                details = self.random_active if group == "random_active" else self.specific
                n = 0 if details is None else int(details["bias"].notna().sum())
                lines.append(f"{label}: median bias {row['bias'].iloc[0]:.3f}, "
                             f"{100 * row['share_inside'].iloc[0]:.0f}% of {n} inside their band")
        if self.mean_r2 is not None:
            lines.append(f"mean R²: {self.mean_r2:.3f}")
        return "\n".join(lines)


def _covariance_stack(factor_cov: Callable[[pd.Timestamp], np.ndarray | None] | np.ndarray,
                      dates: pd.Index, K: int) -> np.ndarray:
    """(T, K, K) forecasts as of each date; a callable is asked date by date (None = none yet)."""
    if callable(factor_cov):
        out = np.full((len(dates), K, K), np.nan)
        for i, d in enumerate(dates):
            c = factor_cov(d)
            if c is not None:
                out[i] = np.asarray(c, dtype=np.float64)
        return out
    out = np.asarray(factor_cov, dtype=np.float64)
    if out.shape != (len(dates), K, K):
        raise DataValidationError(f"factor_cov must be (T, K, K) = {(len(dates), K, K)}, got {out.shape}")
    return out


def _panel(x: pd.DataFrame | np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.shape != shape:
        raise DataValidationError(f"{name} must have shape {shape}, got {a.shape}")
    return a


def _per_portfolio(returns: np.ndarray, var: np.ndarray, window: int, index: pd.Index) -> pd.DataFrame:
    """Bias, band flag, MRAD and QLIKE for each column of aligned (T', P) returns / variances."""
    vol = np.sqrt(np.where(var >= 0, var, np.nan))  # a negative variance is no forecast
    b = _standardised(returns, vol)
    n = np.sum(np.isfinite(b), axis=0)
    bias = _nanstd_cols(b)
    half = np.sqrt(2.0 / np.maximum(n, 1))
    return pd.DataFrame({
        "n_obs": n, "bias": bias, "inside_band": np.abs(bias - 1.0) <= half,
        "mrad": _mrad_cols(returns, vol, window), "qlike": _qlike_cols(returns, var),
    }, index=index)


def _summary_row(group: str, per: pd.DataFrame) -> dict:
    judged = per[per["bias"].notna()]
    if judged.empty:
        return {"group": group, "name": group, "n_obs": 0}
    n = int(judged["n_obs"].median())
    lo, hi = bias_band(n)
    bias = float(judged["bias"].median())
    return {"group": group, "name": group, "n_obs": n, "bias": bias, "band_lo": lo, "band_hi": hi,
            "inside_band": lo <= bias <= hi, "share_inside": float(judged["inside_band"].mean()),
            "mrad": float(judged["mrad"].median()), "qlike": float(judged["qlike"].median())}


def _random_active(f: np.ndarray, cov: np.ndarray, u: np.ndarray, s2: np.ndarray, X: np.ndarray,
                   n_portfolios: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns and forecast variances, (T − 1, P), of random dollar-neutral portfolios.

    Each portfolio draws one N(0, 1) score per name (seeded); each day the scores of the names
    that can be priced are demeaned and scaled to 100 % long / 100 % short. Return on t:
    x'f_t + w'u_t with x = X_{t−1}'w; forecast variance x'Σ_{t−1}x + Σ w² s²_{t−1}, both over
    the factors estimated on t (a day with an estimated factor that has no forecast is skipped).
    """
    return _random_active_risk(_random_portfolios(f, u, s2, X, n_portfolios, seed), f, cov)


@dataclass
class _RandomPortfolios:
    """What the random portfolios' risk needs beyond the covariance (it is the same for any)."""

    days: list[int]             # t with portfolios (row t − 1 of the outputs)
    use: list[np.ndarray]       # (K,) bool, the factors estimated on t
    x: list[np.ndarray]         # (K_use, P) factor exposures X_{t−1}'w
    specific_ret: list[np.ndarray]  # (P,) w'u_t
    specific_var: list[np.ndarray]  # (P,) Σ w² s²_{t−1}
    shape: tuple[int, int]      # (T − 1, P)


def _random_portfolios(f: np.ndarray, u: np.ndarray, s2: np.ndarray, X: np.ndarray, n_portfolios: int,
                       seed: int) -> _RandomPortfolios:
    T, N, _ = X.shape
    scores = np.random.default_rng(seed).standard_normal((N, n_portfolios))
    out = _RandomPortfolios([], [], [], [], [], (T - 1, n_portfolios))
    for t in range(1, T):
        # The factors estimated on t; one not estimated (NaN) is out of that day's model and
        # its effect is in the specific returns, as in the regression.
        use = np.isfinite(f[t])
        if not use.any():
            continue
        Xp, sp = X[t - 1][:, use], s2[t - 1]
        avail = np.isfinite(Xp).all(axis=1) & np.isfinite(sp) & (sp > 0) & np.isfinite(u[t])
        n = int(avail.sum())
        if n < 2:
            continue
        idx = np.flatnonzero(avail)
        w = scores[idx]
        w = w - w.mean(axis=0)
        w /= np.abs(w).sum(axis=0) / 2.0
        out.days.append(t)
        out.use.append(use)
        out.x.append(Xp[idx].T @ w)                            # (K, P) factor exposures
        out.specific_ret.append(u[t, idx] @ w)
        out.specific_var.append(sp[idx] @ (w * w))
    return out


def _random_active_risk(rp: _RandomPortfolios, f: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ret = np.full(rp.shape, np.nan)
    var = np.full(rp.shape, np.nan)
    for t, use, x, sr, sv in zip(rp.days, rp.use, rp.x, rp.specific_ret, rp.specific_var):
        sigma = cov[t - 1][np.ix_(use, use)]
        if not np.isfinite(sigma).all():
            continue  # an estimated factor without a forecast: nothing to judge the day by
        ret[t - 1] = f[t, use] @ x + sr
        var[t - 1] = np.sum(x * (sigma @ x), axis=0) + sv
    return ret, var


def _month_end_rows(dates: pd.Index) -> np.ndarray:
    if not isinstance(dates, pd.DatetimeIndex) or len(dates) == 0:
        return np.array([], dtype=int)
    months = dates.to_period("M")
    last = np.r_[months[1:] != months[:-1], True]
    return np.flatnonzero(last)


def _exposure_diagnostics(X: np.ndarray, caps: np.ndarray, dates: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """(K,) mean month-to-month stability coefficient and mean month-end VIF (NaN without dates).

    VIF is computed among the style columns only — those neither constant (the market) nor
    0/1 dummies (industries): with an intercept, the market column and a full set of
    industries are collinear by construction, which says nothing about the styles.
    """
    K = X.shape[2]
    rows = _month_end_rows(dates)
    stability = np.full(K, np.nan)
    vifs = np.full(K, np.nan)
    if len(rows) == 0:
        return stability, vifs
    month_ends = X[rows]                                      # (M, N, K)
    style = np.zeros(K, dtype=bool)
    for k in range(K):
        vals = month_ends[..., k][np.isfinite(month_ends[..., k])]
        if vals.size == 0 or np.ptp(vals) == 0:
            continue  # no data, or a constant such as the market: no correlation to speak of
        style[k] = not np.isin(vals, (0.0, 1.0)).all()
        coefs = [stability_coefficient(month_ends[i, :, k], month_ends[i + 1, :, k], caps[a])
                 for i, (a, _) in enumerate(pairwise(rows))]
        coefs = [c for c in coefs if np.isfinite(c)]
        stability[k] = float(np.mean(coefs)) if coefs else np.nan
    if style.any():
        # √cap: the regression's default weights.
        per_month = np.array([vif(month_ends[i][:, style], np.sqrt(np.where(caps[m] > 0, caps[m], np.nan)))
                              for i, m in enumerate(rows)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            vifs[style] = np.nanmean(per_month, axis=0)
    return stability, vifs


def validation_report(
    factor_returns: pd.DataFrame,
    factor_cov: Callable[[pd.Timestamp], np.ndarray | None] | np.ndarray,
    specific_returns: pd.DataFrame | np.ndarray,
    specific_var: pd.DataFrame | np.ndarray,
    exposures: np.ndarray,
    caps: pd.DataFrame | np.ndarray,
    *,
    n_random_portfolios: int = 100,
    seed: int = 7,
    r2: pd.Series | None = None,
    window: int = 252,
    min_obs: int = 20,
) -> ValidationReport:
    """Bias statistics, MRAD, QLIKE, stability and VIF of a fitted factor model.

    Outcomes, row t = realised on date t:
      factor_returns: (T × K) daily factor returns f_t, decimal, columns = factor names, index =
        dates (a DatetimeIndex enables the month-end stability and VIF).
      specific_returns: (T × N) specific returns u_t, decimal.
    Forecasts, row t = as of the close of t (they forecast t + 1):
      factor_cov: (T, K, K) daily factor covariance (decimal²), or a callable date → (K, K)
        (None before the first forecast).
      specific_var: (T × N) daily specific variance s² (decimal²).
      exposures: (T, N, K) exposures (NaN outside the universe), in factor_returns' column order.
      caps: (T × N) market caps in USD (stability weights; √cap are the VIF weights).
    Every outcome on t is judged against the forecasts of t − 1, never of t.

    n_random_portfolios / seed: the random dollar-neutral active portfolios (see
    :func:`_random_active`). r2: the regression's daily R², reported as its mean. window: the
    rolling window of MRAD in days. min_obs: a name's minimum days to count among the
    specific portfolios.
    """
    return validation_reports(factor_returns, {"": factor_cov}, specific_returns, specific_var, exposures, caps,
                              n_random_portfolios=n_random_portfolios, seed=seed, r2=r2, window=window,
                              min_obs=min_obs)[""]


def validation_reports(factor_returns: pd.DataFrame, factor_covs: dict[str, object],
                       specific_returns: pd.DataFrame | np.ndarray, specific_var: pd.DataFrame | np.ndarray,
                       exposures: np.ndarray, caps: pd.DataFrame | np.ndarray, *, n_random_portfolios: int = 100,
                       seed: int = 7, r2: pd.Series | None = None, window: int = 252,
                       min_obs: int = 20) -> dict[str, ValidationReport]:
    """:func:`validation_report` for several covariance forecasts of one model, label → report
    (e.g. the eigenfactor adjustment on and off). The work on the exposures — stability, VIF,
    the random portfolios' exposures, by far the largest part at thousands of names — is done
    once, not once per forecast; the numbers are those of one :func:`validation_report` each.
    """
    if not isinstance(factor_returns, pd.DataFrame):
        raise DataValidationError("factor_returns must be a DataFrame (T × K) with factor names as columns")
    dates, factors = factor_returns.index, list(factor_returns.columns)
    T, K = factor_returns.shape
    if T < 2:
        raise DataValidationError(f"validation needs at least 2 dates, got {T}")
    # A streamed build's exposures (BlockArray) are read a date block at a time, never whole.
    X = exposures if isinstance(exposures, BlockArray) else np.asarray(exposures, dtype=np.float64)
    if X.ndim != 3 or X.shape[0] != T or X.shape[2] != K:
        raise DataValidationError(f"exposures must be (T, N, K) with T={T}, K={K}, got {X.shape}")
    N = X.shape[1]
    f = factor_returns.to_numpy(dtype=np.float64)
    covs = {label: _covariance_stack(cov, dates, K) for label, cov in factor_covs.items()}
    u = _panel(specific_returns, (T, N), "specific_returns")
    s2 = _panel(specific_var, (T, N), "specific_var")
    v = _panel(caps, (T, N), "caps")
    names = specific_returns.columns if isinstance(specific_returns, pd.DataFrame) else pd.RangeIndex(N)
    stability, vifs = _exposure_diagnostics(X, v, dates)
    portfolios = _random_portfolios(f, u, s2, X, n_random_portfolios, seed)
    # Specific portfolios: one name each, u_t against s_{t−1} (the same for every forecast).
    specific = _per_portfolio(u[1:], s2[:-1], window, pd.Index(names, name="name"))
    specific = specific[specific["n_obs"] >= min_obs]
    return {label: _report(f, factors, cov, specific, stability, vifs, portfolios, r2=r2, window=window)
            for label, cov in covs.items()}


def _report(f: np.ndarray, factors: list[str], cov: np.ndarray, specific: pd.DataFrame, stability: np.ndarray,
            vifs: np.ndarray, portfolios: _RandomPortfolios, *, r2: pd.Series | None, window: int) -> ValidationReport:
    """One covariance forecast's report, given the exposure-dependent parts."""
    # Pure factor portfolios: f_k,t against √Σ_kk forecast at t − 1.
    factor_var = np.diagonal(cov[:-1], axis1=1, axis2=2)
    per_factor = _per_portfolio(f[1:], factor_var, window, pd.Index(factors))
    rows = []
    for k, name in enumerate(factors):
        p = per_factor.iloc[k]
        n = int(p["n_obs"])
        lo, hi = bias_band(n) if n >= 1 else (np.nan, np.nan)
        judged = bool(np.isfinite(p["bias"]))
        rows.append({"group": "factor", "name": name, "n_obs": n, "bias": p["bias"], "band_lo": lo, "band_hi": hi,
                     "inside_band": judged and bool(p["inside_band"]),
                     "share_inside": float(p["inside_band"]) if judged else np.nan,
                     "mrad": p["mrad"], "qlike": p["qlike"], "stability": stability[k], "vif": vifs[k]})

    ra_ret, ra_var = _random_active_risk(portfolios, f, cov)
    random_active = _per_portfolio(ra_ret, ra_var, window, pd.RangeIndex(ra_ret.shape[1], name="portfolio"))
    rows.append(_summary_row("random_active", random_active))

    rows.append(_summary_row("specific", specific))

    table = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS)
    table["n_obs"] = table["n_obs"].fillna(0).astype(int)
    table["inside_band"] = table["inside_band"].fillna(False).astype(bool)
    mean_r2 = float(pd.Series(r2, dtype=float).mean()) if r2 is not None else None
    return ValidationReport(table=table, random_active=random_active, specific=specific, mean_r2=mean_r2)
