"""Risk-model quality: was the risk that was forecast the risk that was realised? (SPEC §3)

A forecast volatility σ_t is judged by the standardised outcome b_t = r_t / σ_t. If σ_t is
right, b_t has unit standard deviation, so the *bias statistic* B = std(b_t) has target 1. For
T normal outcomes the sampling error of B is about √(1/(2T)), so 1 ± √(2/T) is its ≈ 95 %
confidence band (USE4: Menchero, Orr, Wang 2011). B > 1 means risk was under-forecast.

The kernels here take forecasts that are *already aligned* with the outcomes: ``forecast_vol[t]``
is the forecast for the return on row t (made at the close of t − 1). :func:`validation_report`
works on the model's own arrays, whose forecast-side rows are as of each date's close, and does
that one-day lag itself.

Resuming (the daily update): every statistic of the report is a sum over dates — counts, means
and squared deviations of b_t, QLIKE terms, |rolling bias − 1|, month-to-month stability
coefficients, month-end VIFs, R². :func:`validation_reports_with_state` returns, beside the
reports, a :class:`ValidationState` holding those sums and the little a new date's terms need
(the last date's forecasts and exposures, the last window − 1 standardised values for the
rolling bias, the last complete month end). :func:`advance_validation` adds new dates to it and
gives the reports of the whole history, equal to a rebuild to rounding, at a cost that does not
grow with the history. The random active portfolios' scores are keyed by name
(:func:`random_scores`), so a newly listed name leaves the other names' portfolios as they were.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

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
    cols = np.flatnonzero(varying)
    if cols.size >= 2:
        # With the columns' correlation matrix C (of the centred, weighted Z), the regression of
        # column k on the others leaves SSR_k = SST_k / (C⁻¹)_kk: every VIF is a diagonal entry
        # of one small inverse, instead of one least-squares fit per column. Only while C is
        # far from singular (VIF < 1e3 for all: the inverse then is exact to ~1e-13); nearly
        # collinear columns take the fits below, which tell an infinite VIF from a large one.
        G = Z[:, cols].T @ Z[:, cols]
        scale = 1.0 / np.sqrt(np.diagonal(G))
        C = G * scale[:, None] * scale[None, :]
        if np.linalg.eigvalsh(C)[0] > 1e-3:
            out[cols] = np.diagonal(np.linalg.inv(C))
            return out
    for k in cols:
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
# (column, dtype, value of a summary row that lacks it), in TABLE_COLUMNS' order.
_TABLE_TYPES = [(col, object if col in ("group", "name") else np.int64 if col == "n_obs"
                 else bool if col == "inside_band" else np.float64, False if col == "inside_band" else np.nan)
                for col in TABLE_COLUMNS]


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
    """x as a C-ordered float64 array of ``shape``. A frame's values come out column-major;
    the validation walks them date by date, and a row spread over N cache lines is slow.
    (A frame's own ``to_numpy``: numpy's conversion of a frame costs 25× more.)"""
    a = np.ascontiguousarray(x.to_numpy(dtype=np.float64) if isinstance(x, pd.DataFrame) else x, dtype=np.float64)
    if a.shape != shape:
        raise DataValidationError(f"{name} must have shape {shape}, got {a.shape}")
    return a


def _summary_row(group: str, per: dict[str, np.ndarray]) -> dict:
    """The table row of a group of portfolios (per: :meth:`_Moments.columns`): medians over
    the portfolios with a bias statistic, and the share of them inside their own band."""
    judged = ~np.isnan(per["bias"])
    if not judged.any():
        return {"group": group, "name": group, "n_obs": 0}
    n = int(np.median(per["n_obs"][judged]))
    lo, hi = bias_band(n)
    bias = float(np.median(per["bias"][judged]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # every MRAD or QLIKE missing: NaN
        mrad_, qlike_ = float(np.nanmedian(per["mrad"][judged])), float(np.nanmedian(per["qlike"][judged]))
    return {"group": group, "name": group, "n_obs": n, "bias": bias, "band_lo": lo, "band_hi": hi,
            "inside_band": lo <= bias <= hi, "share_inside": float(np.mean(per["inside_band"][judged])),
            "mrad": mrad_, "qlike": qlike_}


# ---------------------------------------------------------------------------------------------
# Per-portfolio statistics as running sums
# ---------------------------------------------------------------------------------------------

# Up to this many new rows, their rolling windows are summed directly (a few ms for 3,000
# columns a row); beyond it, pandas' rolling std, whose per-column cost (≈ 0.1 ms a column,
# whatever the rows) wins for a long history. Both are :func:`rolling_bias`'s numbers to ≈ 1e-14.
DIRECT_ROLLING_ROWS = 32


def _rolling_std_of_last_rows(stacked: np.ndarray, B: int, window: int) -> np.ndarray:
    """(B, P) rolling std (ddof = 1) of the last B rows of ``stacked`` ((window − 1 + B, P),
    NaN = missing) over ``window`` rows, NaN below max(2, window // 2) values: the last B rows
    of :func:`rolling_bias` on the same standardised values."""
    min_periods = max(2, window // 2)
    if B > DIRECT_ROLLING_ROWS:
        rolled = pd.DataFrame(stacked).rolling(window, min_periods=min_periods).std(ddof=1).to_numpy()
        return rolled[len(stacked) - B:]
    out = np.full((B, stacked.shape[1]), np.nan)
    for j in range(B):
        win = stacked[j:j + window]
        ok = ~np.isnan(win)
        n = ok.sum(axis=0)
        mean = np.where(ok, win, 0.0).sum(axis=0) / np.maximum(n, 1)
        dev = np.where(ok, win - mean, 0.0)
        var = (dev * dev).sum(axis=0) / np.maximum(n - 1, 1)
        out[j] = np.where(n >= min_periods, np.sqrt(var), np.nan)
    return out


@dataclass
class _Moments:
    """Everything the bias, band flag, MRAD and QLIKE of P portfolios need, as running sums.

    Fed aligned (B, P) rows of returns and forecast variances a batch at a time; after any
    sequence of batches the statistics equal those of all rows at once (to rounding). The
    bias statistic's mean and sum of squared deviations are merged batch by batch (Chan et
    al. 1979), which keeps the two-pass accuracy of ``np.nanstd`` rather than the
    cancellation of Σb² − (Σb)²/n.
    """

    n: np.ndarray          # (P,) int64, usable pairs (finite b)
    mean: np.ndarray       # (P,) mean of b = r / σ
    m2: np.ndarray         # (P,) Σ (b − mean)²
    qlike_sum: np.ndarray  # (P,) Σ QLIKE terms
    qlike_n: np.ndarray    # (P,) int64, their count
    dev_sum: np.ndarray    # (P,) Σ |B_t − 1| over rows whose rolling window is full enough
    dev_n: np.ndarray      # (P,) int64, their count
    tail: np.ndarray       # (window − 1, P) the last standardised values, NaN = none / no row yet

    FIELDS = ("n", "mean", "m2", "qlike_sum", "qlike_n", "dev_sum", "dev_n", "tail")

    @classmethod
    def empty(cls, P: int, window: int) -> _Moments:
        zi, zf = np.zeros(P, dtype=np.int64), np.zeros(P)
        return cls(zi, zf, zf.copy(), zf.copy(), zi.copy(), zf.copy(), zi.copy(), np.full((window - 1, P), np.nan))

    def add(self, returns: np.ndarray, var: np.ndarray) -> None:
        """Append aligned rows: returns (B, P) decimal, var (B, P) their forecast variances."""
        vol = np.sqrt(np.where(var >= 0, var, np.nan))  # a negative variance is no forecast
        b = _standardised(returns, vol)
        n_new = np.sum(np.isfinite(b), axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # columns without a usable pair
            mean_new = np.where(n_new > 0, np.nanmean(b, axis=0), 0.0)
        m2_new = np.nansum((b - mean_new) ** 2, axis=0)
        n = self.n + n_new
        share = n_new / np.maximum(n, 1)
        delta = mean_new - self.mean
        self.mean = self.mean + delta * share
        self.m2 = self.m2 + m2_new + delta * delta * (self.n * share)
        self.n = n

        terms = _qlike_terms(returns, var, QLIKE_FLOOR)
        self.qlike_sum = self.qlike_sum + np.nansum(terms, axis=0)
        self.qlike_n = self.qlike_n + np.sum(~np.isnan(terms), axis=0)

        # The rolling bias of a new row needs only the window − 1 rows before it.
        window = self.tail.shape[0] + 1
        stacked = np.concatenate([self.tail, b])
        dev = np.abs(_rolling_std_of_last_rows(stacked, len(b), window) - 1.0)
        self.dev_sum = self.dev_sum + np.nansum(dev, axis=0)
        self.dev_n = self.dev_n + np.sum(~np.isnan(dev), axis=0)
        self.tail = np.ascontiguousarray(stacked[len(stacked) - self.tail.shape[0]:])

    def columns(self) -> dict[str, np.ndarray]:
        """n_obs, bias (NaN below 2 pairs), inside_band (|bias − 1| ≤ √(2/n)), mrad, qlike: (P,) each."""
        n = self.n
        bias = np.where(n >= 2, np.sqrt(self.m2 / np.maximum(n - 1, 1)), np.nan)
        half = np.sqrt(2.0 / np.maximum(n, 1))
        return {"n_obs": n, "bias": bias, "inside_band": np.abs(bias - 1.0) <= half,
                "mrad": np.where(self.dev_n > 0, self.dev_sum / np.maximum(self.dev_n, 1), np.nan),
                "qlike": np.where(self.qlike_n > 0, self.qlike_sum / np.maximum(self.qlike_n, 1), np.nan)}

    def take(self, pos: np.ndarray) -> _Moments:
        """The portfolios at positions ``pos`` (−1 = a new, empty one), as a copy."""
        window = self.tail.shape[0] + 1
        fresh = _Moments.empty(len(pos), window)
        old = pos >= 0
        for name in self.FIELDS:
            mine, out = getattr(self, name), getattr(fresh, name)
            if name == "tail":
                out[:, old] = mine[:, pos[old]]
            else:
                out[old] = mine[pos[old]]
        return fresh

    COUNTS, SUMS = ("n", "qlike_n", "dev_n"), ("mean", "m2", "qlike_sum", "dev_sum")

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Three arrays: the (3, P) int64 counts, the (4, P) float64 sums, the tail (each a kept
        file's entry costs more to write and read than its numbers, at a few hundred of them)."""
        return {f"{prefix}counts": np.stack([getattr(self, name) for name in self.COUNTS]).astype(np.int64),
                f"{prefix}sums": np.stack([getattr(self, name) for name in self.SUMS]).astype(np.float64),
                f"{prefix}tail": np.array(self.tail)}

    @classmethod
    def from_arrays(cls, d: Mapping[str, np.ndarray], prefix: str) -> _Moments:
        """The inverse of :meth:`to_arrays`; also a state kept one array per field (format 1)."""
        if f"{prefix}counts" not in d:
            return cls(**{name: np.array(d[f"{prefix}{name}"]) for name in cls.FIELDS})
        counts, sums = np.asarray(d[f"{prefix}counts"]), np.asarray(d[f"{prefix}sums"])
        return cls(**{name: np.array(counts[i]) for i, name in enumerate(cls.COUNTS)},
                   **{name: np.array(sums[i]) for i, name in enumerate(cls.SUMS)}, tail=np.array(d[f"{prefix}tail"]))


# ---------------------------------------------------------------------------------------------
# Random active portfolios
# ---------------------------------------------------------------------------------------------

def _name_key(name: object) -> int:
    """A stable 64-bit key of a name (blake2b; crc32 would give two of 10,000 tickers the
    same scores about once in a hundred universes)."""
    return int.from_bytes(hashlib.blake2b(str(name).encode(), digest_size=8).digest(), "little")


def random_scores(names: Sequence[object] | pd.Index, n_portfolios: int, seed: int) -> np.ndarray:
    """(N, P) N(0, 1) scores of the random active portfolios, one row per name.

    Row i is drawn from (seed, a hash of str(names[i])) alone, so the scores of a name do not
    depend on which other names exist or in what order: a newly listed name leaves every other
    name's scores, and so a resumed validation's portfolios, unchanged.
    """
    out = np.empty((len(names), n_portfolios))
    for i, name in enumerate(names):
        out[i] = np.random.default_rng([int(seed), _name_key(name)]).standard_normal(n_portfolios)
    return out


class _Workspace:
    """Reused buffers for :func:`_random_day`'s (N, P) and (N, K) temporaries.

    A fresh multi-megabyte array per day is, with glibc's malloc, a fresh ``mmap`` whose pages
    fault in one by one and go back to the system at ``free``: at 3,000 names that tripled
    the day's cost. The buffers are faulted in once.
    """

    def __init__(self, N: int, P: int, K: int) -> None:
        self.w = np.empty((N, P))
        self.tmp = np.empty((N, P))
        self.x = np.empty((N, K))


def _random_day(f_t: np.ndarray, u_t: np.ndarray, X_prev: np.ndarray, s2_prev: np.ndarray,
                covs_prev: Sequence[np.ndarray], scores: np.ndarray,
                work: _Workspace | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One day's returns and forecast variances, (L, P) each, of the random active portfolios.

    f_t: (K,) factor returns on t; u_t: (N,) specific returns on t; X_prev: (N, K) exposures,
    s2_prev: (N,) specific variances and covs_prev: L (K, K) covariances, all as of t − 1;
    scores: (N, P) from :func:`random_scores`; work: buffers to reuse across days. Each day
    the scores of the names that can be priced are demeaned and scaled to 100 % long / 100 %
    short. Return x'f_t + w'u_t with x = X_{t−1}'w; forecast variance x'Σ_{t−1}x + Σ w² s²_{t−1},
    both over the factors estimated on t. NaN rows: no factor estimated, fewer than 2 names,
    or (per covariance) an estimated factor without a forecast.
    """
    L, (N, P), K = len(covs_prev), scores.shape, len(f_t)
    ret, var = np.full((L, P), np.nan), np.full((L, P), np.nan)
    # The factors estimated on t; one not estimated (NaN) is out of that day's model and its
    # effect is in the specific returns, as in the regression.
    use = np.isfinite(f_t)
    if not use.any():
        return ret, var
    Xp = X_prev if use.all() else X_prev[:, use]
    avail = np.isfinite(Xp).all(axis=1) & np.isfinite(s2_prev) & (s2_prev > 0) & np.isfinite(u_t)
    idx = np.flatnonzero(avail)
    n = len(idx)
    if n < 2:
        return ret, var
    work = work if work is not None else _Workspace(N, P, K)
    w = np.take(scores, idx, axis=0, out=work.w[:n])
    w -= w.mean(axis=0)
    w /= np.abs(w, out=work.tmp[:n]).sum(axis=0) / 2.0
    x = np.take(Xp, idx, axis=0, out=work.x[:n, :Xp.shape[1]]).T @ w    # (K_use, P) factor exposures
    specific_ret = u_t[idx] @ w
    specific_var = s2_prev[idx] @ np.multiply(w, w, out=work.tmp[:n])
    for i, cov in enumerate(covs_prev):
        sigma = cov[np.ix_(use, use)]
        if not np.isfinite(sigma).all():
            continue  # an estimated factor without a forecast: nothing to judge the day by
        ret[i] = f_t[use] @ x + specific_ret
        var[i] = np.sum(x * (sigma @ x), axis=0) + specific_var
    return ret, var


# ---------------------------------------------------------------------------------------------
# Month-end exposure diagnostics (stability, VIF)
# ---------------------------------------------------------------------------------------------

def _month_end_rows(dates: pd.Index) -> np.ndarray:
    if not isinstance(dates, pd.DatetimeIndex) or len(dates) == 0:
        return np.array([], dtype=int)
    months = dates.to_period("M")
    last = np.r_[months[1:] != months[:-1], True]
    return np.flatnonzero(last)


def _vif_weights(caps: np.ndarray) -> np.ndarray:
    return np.sqrt(np.where(caps > 0, caps, np.nan))  # √cap: the regression's default weights


def _stability_row(X_a: np.ndarray, X_b: np.ndarray, caps_a: np.ndarray) -> np.ndarray:
    """(K,) :func:`stability_coefficient` of each column between two month ends (N, K), all
    columns at once: each column's names are its own (finite on both dates, positive cap), so
    the weights are masked per column; a name left out weighs 0 (the same sums, to rounding)."""
    x, y = np.asarray(X_a, dtype=np.float64), np.asarray(X_b, dtype=np.float64)
    v = np.asarray(caps_a, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (np.isfinite(v) & (v > 0))[:, None]
    n = ok.sum(axis=0)
    total = np.where(ok, v[:, None], 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(ok, v[:, None], 0.0) / total  # (N, K), each column sums to 1
        x, y = np.where(ok, x, 0.0), np.where(ok, y, 0.0)
        dx = x - np.einsum("ik,ik->k", w, x)
        dy = y - np.einsum("ik,ik->k", w, y)
        vx, vy = np.einsum("ik,ik,ik->k", w, dx, dx), np.einsum("ik,ik,ik->k", w, dy, dy)
        c = np.clip(np.einsum("ik,ik,ik->k", w, dx, dy) / np.sqrt(vx * vy), -1.0, 1.0)
    return np.where((n >= 2) & (vx > 0) & (vy > 0), c, np.nan)


def _column_summary(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per column k of X (..., K): count of finite values, their min (+∞ if none), max (−∞ if
    none), and whether all of them are 0 or 1."""
    Z = X.reshape(-1, X.shape[-1])
    fin = np.isfinite(Z)
    return (fin.sum(axis=0), np.where(fin, Z, np.inf).min(axis=0), np.where(fin, Z, -np.inf).max(axis=0),
            np.all(~fin | (Z == 0.0) | (Z == 1.0), axis=0))


def _style_mask(n: np.ndarray, lo: np.ndarray, hi: np.ndarray, all01: np.ndarray) -> np.ndarray:
    """(K,) bool: the VIF's style columns — varying over the month ends (not empty, not a
    constant such as the market) and not 0/1 dummies (industries)."""
    return (n > 0) & (hi > lo) & ~all01


class StaleValidationState(DataValidationError):
    """The new dates changed which columns count as styles for the VIF (a column that was
    constant, 0/1 or empty at every month end now varies, or the reverse): the VIF of every
    past month end changes, which the compact state cannot redo. Rebuild the state with
    :func:`validation_reports_with_state` on the whole history."""


# ---------------------------------------------------------------------------------------------
# The resumable state
# ---------------------------------------------------------------------------------------------

# The state's fields kept together, one entry each (ValidationState.to_arrays, format 2): entry →
# (fields, dtype), all of a shape: per name (N,), per name and factor (N, K), per factor (K,).
_GROUPED = {"per_name": (("last_s2", "last_caps", "pme_caps"), np.float64),
            "exposures": (("last_X", "pme_X"), np.float64),
            "month_counts": (("me_n", "stab_n", "vif_n"), np.int64),
            "month_sums": (("me_min", "me_max", "stab_sum", "vif_sum"), np.float64),
            "month_flags": (("me_all01", "vif_mask"), np.bool_)}


@dataclass
class ValidationState:
    """What :func:`advance_validation` needs to extend a validation by new dates, and no more.

    Sizes: N names, K factors, L covariance labels, P random portfolios, W = window. Nothing
    grows with the number of dates: the largest parts are the specific portfolios' rolling
    tails, (W − 1, N), and the random scores, (N, P).

    Month ends: the last row is always treated as a month end (as :func:`_month_end_rows`
    does). It is *provisional*: a new date in the same month replaces it. ``me_*``, ``stab_*``
    and ``vif_*`` cover the month ends before the last row only ("complete" ones); ``pme_*``
    is the last complete month end, the partner of the last row in the stability pair.
    """

    names: pd.Index             # (N,) names, the specific portfolios' and the scores' row order
    factors: list[str]          # (K,) factor names
    labels: list[str]           # (L,) covariance labels, in the reports' order
    seed: int
    n_portfolios: int
    window: int
    min_obs: int
    scores: np.ndarray          # (N, P) random_scores(names, P, seed)
    factor: list[_Moments]      # L × (K portfolios): pure factor portfolios per label
    random: list[_Moments]      # L × (P portfolios): random active portfolios per label
    specific: _Moments          # N portfolios: one name each
    last_date: pd.Timestamp | None  # None: the dates are not a DatetimeIndex (no month ends)
    last_cov: np.ndarray        # (L, K, K) covariances as of the last date (decimal²)
    last_s2: np.ndarray         # (N,) specific variances as of the last date (decimal²)
    last_X: np.ndarray          # (N, K) exposures on the last date
    last_caps: np.ndarray       # (N,) caps on the last date (USD)
    has_pme: bool               # a complete month end exists
    pme_X: np.ndarray           # (N, K) exposures of the last complete month end
    pme_caps: np.ndarray        # (N,) its caps
    me_n: np.ndarray            # (K,) int64 finite exposures over the complete month ends
    me_min: np.ndarray          # (K,) their minimum (+∞ when none)
    me_max: np.ndarray          # (K,) their maximum (−∞ when none)
    me_all01: np.ndarray        # (K,) bool, all of them 0 or 1 (an industry dummy)
    stab_sum: np.ndarray        # (K,) Σ finite stability coefficients of consecutive complete month ends
    stab_n: np.ndarray          # (K,) int64, their count
    vif_mask: np.ndarray        # (K,) bool, the style columns the VIF sums were computed over
    vif_sum: np.ndarray         # (K,) Σ non-NaN VIF over complete month ends (0 off the mask)
    vif_n: np.ndarray           # (K,) int64, their count
    has_r2: bool                # R² was given: the reports carry mean_r2
    r2_sum: float
    r2_n: int

    # -- the reports ---------------------------------------------------------------------------

    def _masks(self) -> tuple[np.ndarray, np.ndarray]:
        """(K,) bool: columns that vary over the month ends (stability is defined) and, of
        those, the styles (not 0/1 dummies; the VIF's columns). The last row counts."""
        n, lo, hi, all01 = _column_summary(self.last_X)
        n, lo, hi = self.me_n + n, np.minimum(self.me_min, lo), np.maximum(self.me_max, hi)
        all01 = self.me_all01 & all01
        return (n > 0) & (hi > lo), _style_mask(n, lo, hi, all01)

    def _diagnostics(self) -> tuple[np.ndarray, np.ndarray]:
        """(K,) mean month-to-month stability coefficient and mean month-end VIF.

        VIF is computed among the style columns only — those neither constant (the market) nor
        0/1 dummies (industries): with an intercept, the market column and a full set of
        industries are collinear by construction, which says nothing about the styles.
        """
        K = len(self.factors)
        stability, vifs = np.full(K, np.nan), np.full(K, np.nan)
        if self.last_date is None:
            return stability, vifs
        varying, style = self._masks()
        if not np.array_equal(style, self.vif_mask):
            raise StaleValidationState(
                f"the VIF's style columns changed from {list(np.array(self.factors)[self.vif_mask])} to "
                f"{list(np.array(self.factors)[style])}: rebuild the validation state on the whole history")
        s_sum, s_n = self.stab_sum.copy(), self.stab_n.copy()
        if self.has_pme:
            c = _stability_row(self.pme_X, self.last_X, self.pme_caps)
            s_sum += np.where(np.isfinite(c), c, 0.0)
            s_n += np.isfinite(c)
        stability[varying] = np.where(s_n > 0, s_sum / np.maximum(s_n, 1), np.nan)[varying]
        if style.any():
            v = vif(self.last_X[:, style], _vif_weights(self.last_caps))
            total = self.vif_sum[style] + np.where(np.isnan(v), 0.0, v)
            n = self.vif_n[style] + ~np.isnan(v)
            vifs[style] = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        return stability, vifs

    def reports(self) -> dict[str, ValidationReport]:
        """label → :class:`ValidationReport` of all the dates the state has seen."""
        stability, vifs = self._diagnostics()
        specific_cols = self.specific.columns()
        keep = specific_cols["n_obs"] >= self.min_obs
        specific_cols = {name: col[keep] for name, col in specific_cols.items()}
        specific = pd.DataFrame(specific_cols, index=pd.Index(self.names, name="name")[keep])
        specific_row = _summary_row("specific", specific_cols)
        mean_r2 = (self.r2_sum / self.r2_n if self.r2_n else float("nan")) if self.has_r2 else None
        out = {}
        for i, label in enumerate(self.labels):
            # Pure factor portfolios: one row each, judged against its own band.
            per = self.factor[i].columns()
            n = per["n_obs"]
            half = np.sqrt(2.0 / np.maximum(n, 1))
            judged = ~np.isnan(per["bias"])
            factor_rows = {"group": ["factor"] * len(self.factors), "name": list(self.factors), "n_obs": n,
                           "bias": per["bias"], "band_lo": np.where(n >= 1, 1.0 - half, np.nan),
                           "band_hi": np.where(n >= 1, 1.0 + half, np.nan),
                           "inside_band": judged & per["inside_band"],
                           "share_inside": np.where(judged, per["inside_band"].astype(float), np.nan),
                           "mrad": per["mrad"], "qlike": per["qlike"], "stability": stability, "vif": vifs}
            random_cols = self.random[i].columns()
            summaries = [_summary_row("random_active", random_cols), specific_row]
            # Each column as one typed array (half the cost of pandas inferring a list's type);
            # a summary row lacks what it does not judge (NaN, inside_band False).
            table = pd.DataFrame({
                col: np.concatenate([np.asarray(factor_rows[col], dtype=dtype),
                                     np.array([row.get(col, missing) for row in summaries], dtype=dtype)])
                for col, dtype, missing in _TABLE_TYPES})
            random_active = pd.DataFrame(random_cols, index=pd.RangeIndex(self.n_portfolios, name="portfolio"))
            out[label] = ValidationReport(table=table, random_active=random_active, specific=specific,
                                          mean_r2=mean_r2)
        return out

    # -- month ends, one new date at a time ------------------------------------------------------

    def _complete_last_row(self) -> None:
        """The last row has become a month end for good: fold it into the complete ones."""
        X, caps = self.last_X, self.last_caps
        n, lo, hi, all01 = _column_summary(X)
        self.me_n, self.me_all01 = self.me_n + n, self.me_all01 & all01
        self.me_min, self.me_max = np.minimum(self.me_min, lo), np.maximum(self.me_max, hi)
        if self.has_pme:
            c = _stability_row(self.pme_X, X, self.pme_caps)
            self.stab_sum = self.stab_sum + np.where(np.isfinite(c), c, 0.0)
            self.stab_n = self.stab_n + np.isfinite(c)
        if self.vif_mask.any():
            v = vif(X[:, self.vif_mask], _vif_weights(caps))
            self.vif_sum = self.vif_sum.copy()
            self.vif_n = self.vif_n.copy()
            self.vif_sum[self.vif_mask] += np.where(np.isnan(v), 0.0, v)
            self.vif_n[self.vif_mask] += ~np.isnan(v)
        self.has_pme, self.pme_X, self.pme_caps = True, X, caps

    def _step_date(self, date: pd.Timestamp | None, X: np.ndarray, caps: np.ndarray) -> None:
        """Make (date, X, caps) the last row; the previous last row stays a month end only if
        the month changed."""
        if self.last_date is not None and date.to_period("M") != self.last_date.to_period("M"):
            self._complete_last_row()
        self.last_date, self.last_X, self.last_caps = date, X, caps

    # -- names -----------------------------------------------------------------------------------

    def _for_names(self, names: pd.Index) -> ValidationState:
        """A copy whose per-name arrays follow ``names`` (a superset of the state's names, any
        order); a new name has no history (NaN exposures, caps and variance, empty moments).
        The copy's updates never write into the arrays of ``self``."""
        if not names.is_unique:
            raise DataValidationError("specific_returns_new has duplicate names")
        if names.equals(self.names):
            # The usual day: the same names. Nothing here is changed in place (every update
            # assigns new arrays), so the copy may share the arrays.
            return replace(self, names=names, factor=[replace(m) for m in self.factor],
                           random=[replace(m) for m in self.random], specific=replace(self.specific))
        pos = self.names.get_indexer(names)
        if np.isin(np.arange(len(self.names)), pos, invert=True).any():
            gone = list(self.names[np.isin(np.arange(len(self.names)), pos, invert=True)][:5])
            raise DataValidationError(f"names never drop out of a validation state; missing now: {gone} …")

        def take(a: np.ndarray) -> np.ndarray:
            out = np.full((len(pos), *a.shape[1:]), np.nan)
            out[pos >= 0] = a[pos[pos >= 0]]
            return out

        scores = take(self.scores)
        new = pos < 0
        if new.any():
            scores[new] = random_scores(names[new], self.n_portfolios, self.seed)
        return replace(self, names=names, scores=scores, specific=self.specific.take(pos), last_s2=take(self.last_s2),
                       last_X=take(self.last_X), last_caps=take(self.last_caps), pme_X=take(self.pme_X),
                       pme_caps=take(self.pme_caps), factor=[m.take(np.arange(len(self.factors))) for m in self.factor],
                       random=[m.take(np.arange(self.n_portfolios)) for m in self.random],
                       last_cov=self.last_cov.copy(), me_n=self.me_n.copy(), me_min=self.me_min.copy(),
                       me_max=self.me_max.copy(), me_all01=self.me_all01.copy(), stab_sum=self.stab_sum.copy(),
                       stab_n=self.stab_n.copy(), vif_mask=self.vif_mask.copy(), vif_sum=self.vif_sum.copy(),
                       vif_n=self.vif_n.copy())

    # -- storage ---------------------------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The state as named arrays for ``np.savez(path, **arrays)`` (``allow_pickle=False``):
        numbers, booleans, and fixed-width unicode for names, factors and labels only. Format 2:
        fields of one shape and type stacked into one entry (30 entries, not 63: a kept file's
        entry costs ~0.1 ms to write and more to read, whatever its size)."""
        out = {
            "format": np.array(2), "names": np.array([str(n) for n in self.names], dtype=str),
            "factors": np.array(self.factors, dtype=str), "labels": np.array(self.labels, dtype=str),
            "params": np.array([self.seed, self.n_portfolios, self.window, self.min_obs], dtype=np.int64),
            "last_date_ns": np.array(-1 if self.last_date is None else self.last_date.value, dtype=np.int64),
            "flags": np.array([self.last_date is not None, self.has_pme, self.has_r2]),
            "r2": np.array([self.r2_sum, self.r2_n], dtype=np.float64),
            "scores": np.array(self.scores), "last_cov": np.array(self.last_cov),
        }
        # Fields of one shape and type share an entry (format 2): _GROUPED's order.
        for entry, (names, dtype) in _GROUPED.items():
            out[entry] = np.stack([np.asarray(getattr(self, name), dtype=dtype) for name in names])
        for i, m in enumerate(self.factor):
            out.update(m.to_arrays(f"factor{i}_"))
        for i, m in enumerate(self.random):
            out.update(m.to_arrays(f"random{i}_"))
        out.update(self.specific.to_arrays("specific_"))
        return out

    @classmethod
    def from_arrays(cls, d: Mapping[str, np.ndarray]) -> ValidationState:
        """The inverse of :meth:`to_arrays` (accepts the ``np.load`` of a saved ``.npz``). Names
        come back as strings."""
        version = int(d["format"])
        if version not in (1, 2):
            raise DataValidationError(f"unknown validation state format {version}")
        seed, n_portfolios, window, min_obs = (int(v) for v in d["params"])
        has_dates, has_pme, has_r2 = (bool(v) for v in d["flags"])
        labels = [str(x) for x in d["labels"]]
        if version == 1:  # one entry per field
            fields = {name: np.array(d[name]) for names, _dtype in _GROUPED.values() for name in names}
        else:
            fields = {name: np.array(np.asarray(d[entry])[i]) for entry, (names, _dtype) in _GROUPED.items()
                      for i, name in enumerate(names)}
        return cls(
            names=pd.Index([str(x) for x in d["names"]]), factors=[str(x) for x in d["factors"]], labels=labels,
            seed=seed, n_portfolios=n_portfolios, window=window, min_obs=min_obs, scores=np.array(d["scores"]),
            factor=[_Moments.from_arrays(d, f"factor{i}_") for i in range(len(labels))],
            random=[_Moments.from_arrays(d, f"random{i}_") for i in range(len(labels))],
            specific=_Moments.from_arrays(d, "specific_"),
            last_date=pd.Timestamp(int(d["last_date_ns"])) if has_dates else None,
            last_cov=np.array(d["last_cov"]), has_pme=has_pme, has_r2=has_r2, r2_sum=float(d["r2"][0]),
            r2_n=int(d["r2"][1]), **fields)


# ---------------------------------------------------------------------------------------------
# The entry points
# ---------------------------------------------------------------------------------------------

def validation_report(
    factor_returns: pd.DataFrame,
    factor_cov: Callable[[pd.Timestamp], np.ndarray | None] | np.ndarray,
    specific_returns: pd.DataFrame | np.ndarray,
    specific_var: pd.DataFrame | np.ndarray,
    exposures: np.ndarray | BlockArray,
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
      specific_returns: (T × N) specific returns u_t, decimal. Its columns name the names: the
        random portfolios' scores are keyed by them (see :func:`random_scores`); a bare array's
        names are 0 … N − 1.
    Forecasts, row t = as of the close of t (they forecast t + 1):
      factor_cov: (T, K, K) daily factor covariance (decimal²), or a callable date → (K, K)
        (None before the first forecast).
      specific_var: (T × N) daily specific variance s² (decimal²).
      exposures: (T, N, K) exposures (NaN outside the universe), in factor_returns' column order;
        a streamed build's BlockArray is read a date block at a time.
      caps: (T × N) market caps in USD (stability weights; √cap are the VIF weights).
    Every outcome on t is judged against the forecasts of t − 1, never of t.

    n_random_portfolios / seed: the random dollar-neutral active portfolios (see
    :func:`_random_day`). r2: the regression's daily R², reported as its mean. window: the
    rolling window of MRAD in days. min_obs: a name's minimum days to count among the
    specific portfolios.
    """
    return validation_reports(factor_returns, {"": factor_cov}, specific_returns, specific_var, exposures, caps,
                              n_random_portfolios=n_random_portfolios, seed=seed, r2=r2, window=window,
                              min_obs=min_obs)[""]


def validation_reports(factor_returns: pd.DataFrame, factor_covs: dict[str, object],
                       specific_returns: pd.DataFrame | np.ndarray, specific_var: pd.DataFrame | np.ndarray,
                       exposures: np.ndarray | BlockArray, caps: pd.DataFrame | np.ndarray, *,
                       n_random_portfolios: int = 100, seed: int = 7, r2: pd.Series | None = None,
                       window: int = 252, min_obs: int = 20) -> dict[str, ValidationReport]:
    """:func:`validation_report` for several covariance forecasts of one model, label → report
    (e.g. the eigenfactor adjustment on and off). The work on the exposures — stability, VIF,
    the random portfolios' exposures, by far the largest part at thousands of names — is done
    once, not once per forecast; the numbers are those of one :func:`validation_report` each.
    """
    return validation_reports_with_state(factor_returns, factor_covs, specific_returns, specific_var, exposures, caps,
                                         n_random_portfolios=n_random_portfolios, seed=seed, r2=r2, window=window,
                                         min_obs=min_obs)[0]


def _date_rows(X: np.ndarray | BlockArray) -> Iterator[tuple[int, np.ndarray]]:
    """(t, X[t] as float64 (N, K)) in date order; a BlockArray is read one block at a time."""
    if isinstance(X, BlockArray):
        for a, b, block in X.blocks():
            for i in range(b - a):
                yield a + i, np.asarray(block[i], dtype=np.float64)
    else:
        for t in range(X.shape[0]):
            yield t, np.asarray(X[t], dtype=np.float64)


def validation_reports_with_state(
    factor_returns: pd.DataFrame,
    factor_covs: dict[str, object],
    specific_returns: pd.DataFrame | np.ndarray,
    specific_var: pd.DataFrame | np.ndarray,
    exposures: np.ndarray | BlockArray,
    caps: pd.DataFrame | np.ndarray,
    *,
    n_random_portfolios: int = 100,
    seed: int = 7,
    r2: pd.Series | None = None,
    window: int = 252,
    min_obs: int = 20,
) -> tuple[dict[str, ValidationReport], ValidationState]:
    """:func:`validation_reports` (same inputs, same reports) and the :class:`ValidationState`
    that :func:`advance_validation` extends by new dates, in one pass over the exposures."""
    if not isinstance(factor_returns, pd.DataFrame):
        raise DataValidationError("factor_returns must be a DataFrame (T × K) with factor names as columns")
    if window < 2:
        raise ValueError(f"window must be ≥ 2, got {window}")
    dates, factors = factor_returns.index, [str(c) for c in factor_returns.columns]
    T, K = factor_returns.shape
    if T < 2:
        raise DataValidationError(f"validation needs at least 2 dates, got {T}")
    X = exposures if isinstance(exposures, BlockArray) else np.asarray(exposures, dtype=np.float64)
    if X.ndim != 3 or X.shape[0] != T or X.shape[2] != K:
        raise DataValidationError(f"exposures must be (T, N, K) with T={T}, K={K}, got {X.shape}")
    N = X.shape[1]
    f = factor_returns.to_numpy(dtype=np.float64)
    labels = [str(label) for label in factor_covs]
    covs = [_covariance_stack(cov, dates, K) for cov in factor_covs.values()]
    u = _panel(specific_returns, (T, N), "specific_returns")
    s2 = _panel(specific_var, (T, N), "specific_var")
    v = _panel(caps, (T, N), "caps")
    names = specific_returns.columns if isinstance(specific_returns, pd.DataFrame) else pd.RangeIndex(N)
    if not names.is_unique:
        raise DataValidationError("specific_returns has duplicate names")
    scores = random_scores(names, n_random_portfolios, seed)

    # One walk over the dates: each day's random portfolios need the exposures of the day
    # before; the month ends are kept (M × N × K, as the VIF needs every one of them).
    L = len(labels)
    ra_ret = np.full((L, T - 1, n_random_portfolios), np.nan)
    ra_var = np.full((L, T - 1, n_random_portfolios), np.nan)
    month_end_rows = _month_end_rows(dates)
    is_month_end = np.zeros(T, dtype=bool)
    is_month_end[month_end_rows] = True
    month_ends: list[np.ndarray] = []
    X_prev = None
    work = _Workspace(N, n_random_portfolios, K)
    for t, X_t in _date_rows(X):
        if t >= 1:
            ra_ret[:, t - 1], ra_var[:, t - 1] = _random_day(f[t], u[t], X_prev, s2[t - 1],
                                                             [c[t - 1] for c in covs], scores, work)
        if is_month_end[t]:
            month_ends.append(X_t.copy())
        X_prev = X_t

    factor_moments, random_moments = [], []
    for i, cov in enumerate(covs):
        # Pure factor portfolios: f_k,t against √Σ_kk forecast at t − 1.
        m = _Moments.empty(K, window)
        m.add(f[1:], np.diagonal(cov[:-1], axis1=1, axis2=2))
        factor_moments.append(m)
        m = _Moments.empty(n_random_portfolios, window)
        m.add(ra_ret[i], ra_var[i])
        random_moments.append(m)
    # Specific portfolios: one name each, u_t against s_{t−1} (the same for every forecast).
    specific = _Moments.empty(N, window)
    specific.add(u[1:], s2[:-1])

    r2_values = None if r2 is None else pd.Series(r2, dtype=float).to_numpy()
    nan_nk = np.full((N, K), np.nan)
    state = ValidationState(
        names=names, factors=factors, labels=labels, seed=int(seed), n_portfolios=int(n_random_portfolios),
        window=int(window), min_obs=int(min_obs), scores=scores, factor=factor_moments, random=random_moments,
        specific=specific, last_date=dates[-1] if isinstance(dates, pd.DatetimeIndex) else None,
        last_cov=np.stack([c[-1] for c in covs]), last_s2=s2[-1].copy(), last_X=X_prev.copy(), last_caps=v[-1].copy(),
        has_pme=False, pme_X=nan_nk, pme_caps=np.full(N, np.nan), me_n=np.zeros(K, dtype=np.int64),
        me_min=np.full(K, np.inf), me_max=np.full(K, -np.inf), me_all01=np.ones(K, dtype=bool),
        stab_sum=np.zeros(K), stab_n=np.zeros(K, dtype=np.int64), vif_mask=np.zeros(K, dtype=bool),
        vif_sum=np.zeros(K), vif_n=np.zeros(K, dtype=np.int64), has_r2=r2 is not None,
        r2_sum=0.0 if r2_values is None else float(np.nansum(r2_values)),
        r2_n=0 if r2_values is None else int(np.sum(~np.isnan(r2_values))))
    if state.last_date is not None:
        # The style columns are known only once every month end (the last row included) is
        # seen; the last row is the provisional month end and stays out of the complete ones.
        state.vif_mask = _style_mask(*_column_summary(np.stack(month_ends)))
        for X_me, row in zip(month_ends[:-1], month_end_rows[:-1], strict=True):
            state.last_X, state.last_caps = X_me, v[row].copy()
            state._complete_last_row()
        state.last_X, state.last_caps = X_prev.copy(), v[-1].copy()
    return state.reports(), state


def advance_validation(
    state: ValidationState,
    factor_returns_new: pd.DataFrame,
    factor_covs_new: dict[str, object],
    specific_returns_new: pd.DataFrame,
    specific_var_new: pd.DataFrame | np.ndarray,
    exposures_new: np.ndarray | BlockArray,
    caps_new: pd.DataFrame | np.ndarray,
    *,
    r2_new: pd.Series | np.ndarray | None = None,
) -> tuple[dict[str, ValidationReport], ValidationState]:
    """Extend a validation by B new dates: the reports of the whole history and the new state.

    The inputs are those of :func:`validation_reports` for the new dates only (rows = the new
    dates, after the state's last date): factor_returns_new (B × K, the state's factors);
    factor_covs_new {label: (B, K, K) or a callable}, the state's labels; specific_returns_new
    (B × N') whose columns are the names — every name of the state plus any new ones, in any
    order; specific_var_new and caps_new (B × N') and exposures_new (B, N', K) in that column
    order; r2_new (B,) the regression's R² (counted only if the state was built with R²; None
    = none on these dates). The first new date's outcomes are judged against the state's last
    forecasts. The state passed in is not changed.

    The reports equal :func:`validation_reports` over the whole extended history (a new name
    has NaN on the dates before it) to rounding — 1e-12 relative in the tests — with the
    specific portfolios in specific_returns_new's column order. Raises
    :class:`StaleValidationState` in the rare case the new dates change the VIF's style columns.
    """
    if not isinstance(factor_returns_new, pd.DataFrame):
        raise DataValidationError("factor_returns_new must be a DataFrame (B × K) with factor names as columns")
    if not isinstance(specific_returns_new, pd.DataFrame):
        raise DataValidationError("specific_returns_new must be a DataFrame (B × N) whose columns are the names")
    if [str(c) for c in factor_returns_new.columns] != state.factors:
        raise DataValidationError(f"factor_returns_new's columns must be the state's factors {state.factors}")
    if sorted(str(label) for label in factor_covs_new) != sorted(state.labels):
        raise DataValidationError(f"factor_covs_new must have the state's labels {state.labels}")
    dates = factor_returns_new.index
    B, K = factor_returns_new.shape
    if B == 0:
        return state.reports(), state
    if state.last_date is not None:
        if not isinstance(dates, pd.DatetimeIndex) or not dates.is_monotonic_increasing or dates[0] <= state.last_date:
            raise DataValidationError(f"the new dates must be a rising DatetimeIndex after {state.last_date.date()}")
    X = exposures_new if isinstance(exposures_new, BlockArray) else np.asarray(exposures_new, dtype=np.float64)
    N = specific_returns_new.shape[1]
    if X.ndim != 3 or X.shape != (B, N, K):
        raise DataValidationError(f"exposures_new must be (B, N, K) = {(B, N, K)}, got {X.shape}")
    by_label = {str(label): cov for label, cov in factor_covs_new.items()}
    covs = [_covariance_stack(by_label[label], dates, K) for label in state.labels]
    f = factor_returns_new.to_numpy(dtype=np.float64)
    u = _panel(specific_returns_new, (B, N), "specific_returns_new")
    s2 = _panel(specific_var_new, (B, N), "specific_var_new")
    v = _panel(caps_new, (B, N), "caps_new")

    st = state._for_names(specific_returns_new.columns)
    L, P = len(covs), st.n_portfolios
    ra_ret, ra_var = np.full((L, B, P), np.nan), np.full((L, B, P), np.nan)
    work = _Workspace(N, P, K) if B > 1 else None
    for j, X_j in _date_rows(X):
        # Row j is judged against the forecasts of the row before: the state's last for j = 0.
        covs_prev = list(st.last_cov) if j == 0 else [c[j - 1] for c in covs]
        s2_prev = st.last_s2 if j == 0 else s2[j - 1]
        ra_ret[:, j], ra_var[:, j] = _random_day(f[j], u[j], st.last_X, s2_prev, covs_prev, st.scores, work)
        st._step_date(dates[j] if st.last_date is not None else None, X_j.copy(), v[j].copy())

    for i, cov in enumerate(covs):
        prev = np.concatenate([st.last_cov[i][None], cov[:-1]])
        st.factor[i].add(f, np.diagonal(prev, axis1=1, axis2=2))
        st.random[i].add(ra_ret[i], ra_var[i])
    st.specific.add(u, np.concatenate([st.last_s2[None], s2[:-1]]))
    st.last_cov = np.stack([c[-1] for c in covs])
    st.last_s2 = s2[-1].copy()
    if st.has_r2 and r2_new is not None:
        r2_values = np.asarray(r2_new, dtype=np.float64).reshape(-1)
        st.r2_sum += float(np.nansum(r2_values))
        st.r2_n += int(np.sum(~np.isnan(r2_values)))
    return st.reports(), st
