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

**Daily update.** :func:`specific_risk_with_state` also returns a :class:`SpecificState` (the
running sums, last L days, counts and last σ per name: O(N·L) numbers); :func:`advance_specific_risk`
continues it by new days in O(B·N·L) and gives the rows a full rebuild would, up to rounding.

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
from riskstrata.factors.covariance import (
    VARIANCE_COLUMNS,
    _bartlett,
    _ew_sum,
    ewma_newey_west_variance,
    vra_lambda_squared,
)

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


def _shrunk_sigma(var: np.ndarray, counts: np.ndarray, c: np.ndarray, p: SpecificParams) -> np.ndarray:
    """σ per (row, name) from the EWMA + Newey–West variance: history rule, shrinkage, floor.

    var: (R, N) variance, counts: (R, N) observed days through each row, c: (R, N) caps (NaN =
    unknown). Returns (R, N) daily vols, NaN where a name has fewer than ``min_obs`` days.
    The one code path of the full build and the daily update (rows are independent).
    """
    enough = counts >= p.min_obs
    sigma = np.where(enough, np.sqrt(np.maximum(np.nan_to_num(var), 0.0)), np.nan)
    if p.shrink_q > 0:
        sigma = shrink_to_size_deciles(sigma, c, p.shrink_q, p.deciles)
    return np.where(enough, np.maximum(sigma, MIN_SPECIFIC_VOL), np.nan)


def _regime_bias(u: np.ndarray, sigma: np.ndarray, c: np.ndarray,
                 sigma_before: np.ndarray, caps_before: np.ndarray) -> np.ndarray:
    """B_t², the cap-weighted mean of (u_t / σ_{t−1})² with weights the caps at t−1, per row.

    u, sigma, c: (R, N) returns, vols (after shrinkage and floor), caps. sigma_before,
    caps_before: (N,) the row before the first (all NaN when there is none). Returns (R,),
    NaN on a row with no standardised return that has a cap.
    """
    # everything known by the close of t, so the adjusted forecast for t+1 looks nowhere ahead
    z2 = np.empty_like(u)
    w = np.empty_like(u)
    with np.errstate(invalid="ignore"):
        z2[0] = (u[0] / sigma_before) ** 2
        z2[1:] = (u[1:] / sigma[:-1]) ** 2
    w[0] = caps_before
    w[1:] = c[:-1]
    use = np.isfinite(z2) & np.isfinite(w)
    wsum = np.where(use, w, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(wsum > 0, np.where(use, w * z2, 0.0).sum(axis=1) / wsum, np.nan)


def _specific_panel(u: np.ndarray, c: np.ndarray, p: SpecificParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The full build on arrays: (T, N) variance forecasts, (T, N) σ before VRA, (T,) B²."""
    var = ewma_newey_west_variance(u, p.halflife, p.nw_lags)
    sigma = _shrunk_sigma(var, np.cumsum(np.isfinite(u), axis=0), c, p)
    none = np.full(u.shape[1], np.nan)
    b2 = _regime_bias(u, sigma, c, none, none)
    lam2 = vra_lambda_squared(b2, p.vra_halflife)
    return sigma**2 * lam2[:, None], sigma, b2


def specific_risk(specific_returns: pd.DataFrame, caps: pd.DataFrame,
                  params: SpecificParams = SpecificParams()) -> pd.DataFrame:
    """Daily specific variance forecast per name: EWMA + Newey–West, size-decile shrinkage, VRA.

    specific_returns: (T × N) daily specific returns u, decimal, NaN = missing.
    caps: (T × N) market caps in USD (aligned by label), for the size deciles and the VRA weights.
    Returns (T × N) variance forecasts, decimal² per day, for day t+1 from data through t:
    finite and > 0 where the name has ≥ ``min_obs`` observations through t, NaN otherwise.
    """
    u, c = _panels(specific_returns, caps)
    out, _, _ = _specific_panel(u, c, params)
    return pd.DataFrame(out, index=specific_returns.index, columns=specific_returns.columns)


# ---------------------------------------------------------------------------------------------
# Daily update: the state after the last row, and advancing it by new rows
#
# Every quantity of the forecast for row t is a function of exponentially weighted running
# sums through t, of the last L rows (the Newey–West lag products), of the observed-day counts,
# and — for the VRA — of row t−1's σ and caps. Carrying exactly those makes a new day cost
# O(N·L) instead of O(T·N·L), and gives the same numbers as a rebuild up to rounding.


@dataclass(frozen=True, eq=False)
class SpecificState:
    """Everything :func:`advance_specific_risk` needs to continue :func:`specific_risk` past its
    last row; O(N·L) numbers, never O(T·N).

    With y_s = u_s − centre (0 where missing), m_s = 1 where u_s is observed (else 0) and weights
    δ^{t−s} (δ = 0.5^{1/halflife}), t the last row, per name (axis −1, in the order of ``names``):

    centre:   (N,) the constant each name's sums are taken about (see below).
    weight:   (N,) W = Σ δ^{t−s} m_s.            first: (N,) S = Σ δ^{t−s} y_s.
    sum_xx, sum_xm, sum_mx, sum_mm: (L+1, N), row l = Σ δ^{t−s} of y_s·y_{s−l}, y_s·m_{s−l},
        m_s·y_{s−l}, m_s·m_{s−l} (terms with s < l are 0): the four sums of the lag-l
        autocovariance (Γ_l = [Σyy − μΣym − μΣmy + μ²Σmm] / W, μ = S / W).
    recent_x, recent_mask: (L, N) y and m on rows t, t−1, …, t−L+1 (0 before the first row).
    counts:   (N,) int64 observed days through t (the ``min_obs`` rule).
    sigma:    (N,) row t's σ after shrinkage and floor, before VRA (NaN = no forecast);
    caps:     (N,) row t's caps (NaN = unknown) — the weights of the next day's VRA term.
    vra_num, vra_den: the VRA EWMAs Σ δ_v^{t−s} B_s² and Σ δ_v^{t−s} [B_s² exists]; λ² = num/den.
    names: the tickers, as strings. last_date: row t's date. params: those the state was built with.

    **The centre.** The full build centres each series on its full-sample mean, which moves when
    a day is added. The variance is a centred (second) moment, so it is invariant to the
    constant removed: with y = x − c, Σw(y − μ_y)(y' − μ_y) is the same for every c. Continuing
    with the stored centre therefore changes the numbers only by rounding, which stays at the
    level of machine epsilon × (centre − mean)²/variance — tiny, because the stored centre is
    the mean of the name's first built history (or of its first days, for a new name).
    """

    names: tuple[str, ...]
    last_date: pd.Timestamp
    params: SpecificParams
    centre: np.ndarray
    weight: np.ndarray
    first: np.ndarray
    sum_xx: np.ndarray
    sum_xm: np.ndarray
    sum_mx: np.ndarray
    sum_mm: np.ndarray
    recent_x: np.ndarray
    recent_mask: np.ndarray
    counts: np.ndarray
    sigma: np.ndarray
    caps: np.ndarray
    vra_num: float
    vra_den: float

    def __post_init__(self) -> None:
        n, lags = len(self.names), self.params.nw_lags
        shapes = {"centre": (n,), "weight": (n,), "first": (n,), "counts": (n,), "sigma": (n,), "caps": (n,),
                  "sum_xx": (lags + 1, n), "sum_xm": (lags + 1, n), "sum_mx": (lags + 1, n), "sum_mm": (lags + 1, n),
                  "recent_x": (lags, n), "recent_mask": (lags, n)}
        for field_name, shape in shapes.items():
            found = np.shape(getattr(self, field_name))
            if found != shape:
                raise DataValidationError(f"specific state: {field_name} has shape {found}, expected {shape}"
                                          f" ({n} names, {lags} Newey–West lags)")
        if len(set(self.names)) != n:
            raise DataValidationError("specific state: duplicate names")

    _ARRAYS = ("centre", "weight", "first", "sum_xx", "sum_xm", "sum_mx", "sum_mm", "recent_x", "recent_mask",
               "counts", "sigma", "caps")
    _PARAMS = ("halflife", "nw_lags", "shrink_q", "deciles", "vra_halflife", "min_obs")
    _INT_PARAMS = ("nw_lags", "deciles", "min_obs")

    # Fields of one shape kept as one entry (a kept file's entry costs ~0.1 ms to write and more to
    # read, whatever its size): entry → fields, stacked along a new first axis.
    _STACKED = {"per_name": ("centre", "weight", "first", "sigma", "caps"), "recent": ("recent_x", "recent_mask")}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain numeric arrays (names as fixed-width unicode): ``np.savez(..., **state.to_arrays())``
        and ``np.load(..., allow_pickle=False)`` round-trip it exactly. Fields of one shape share
        an entry (``_STACKED``)."""
        stacked = {name for names in self._STACKED.values() for name in names}
        out = {name: np.asarray(getattr(self, name)) for name in self._ARRAYS if name not in stacked}
        out.update({entry: np.stack([np.asarray(getattr(self, name), dtype=np.float64) for name in names])
                    for entry, names in self._STACKED.items()})
        out["names"] = np.array(self.names, dtype=np.str_) if self.names else np.zeros(0, dtype="<U1")
        out["last_date"] = np.array(self.last_date.to_datetime64(), dtype="datetime64[ns]")
        out["vra"] = np.array([self.vra_num, self.vra_den], dtype=np.float64)
        out["params"] = np.array([float(getattr(self.params, name)) for name in self._PARAMS])
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SpecificState:
        """The state :meth:`to_arrays` wrote (any mapping of its keys, e.g. an ``np.load`` file),
        also one kept with an entry per field (before ``_STACKED``)."""
        try:
            if "per_name" in arrays:
                arrays = {**arrays, **{name: np.array(np.asarray(arrays[entry])[i])
                                       for entry, names in cls._STACKED.items() for i, name in enumerate(names)}}
            values = [float(v) for v in np.asarray(arrays["params"], dtype=np.float64)]
            params = SpecificParams(**{f: int(v) if f in cls._INT_PARAMS else v for f, v in zip(cls._PARAMS, values)})
            vra = np.asarray(arrays["vra"], dtype=np.float64)
            return cls(names=tuple(str(n) for n in np.asarray(arrays["names"])),
                       last_date=pd.Timestamp(np.asarray(arrays["last_date"])[()]), params=params,
                       **{name: np.asarray(arrays[name], dtype=np.int64 if name == "counts" else np.float64)
                          for name in cls._ARRAYS},
                       vra_num=float(vra[0]), vra_den=float(vra[1]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise DataValidationError(f"not a specific-risk state: {exc}") from exc


def _check_dates(frame: pd.DataFrame) -> None:
    if not isinstance(frame, pd.DataFrame) or not isinstance(frame.index, pd.DatetimeIndex):
        raise DataValidationError("specific_returns must be a (dates × tickers) DataFrame indexed by dates")
    if len(frame.index) == 0:
        raise DataValidationError("specific_returns have no dates")
    if frame.columns.has_duplicates:
        raise DataValidationError("specific_returns name a ticker twice")


def _names(columns: pd.Index) -> list[str]:
    """The tickers as str, by ``tolist`` — walking a pandas string array element by element
    costs a few ms at N = 3,000, more than the whole daily update."""
    return pd.Index(columns).astype(str).to_numpy(dtype=object).tolist()


def _centred_with_centre(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, m, centre): y = u − centre (0 where missing), m the observed mask as float, centre the
    full-sample mean of each column (0 if never observed) — the centre :func:`_centred` uses."""
    mask = np.isfinite(u)
    counts = mask.sum(axis=0)
    centre = np.divide(np.where(mask, u, 0.0).sum(axis=0), counts, out=np.zeros(u.shape[1]), where=counts > 0)
    return np.where(mask, u - centre, 0.0), mask.astype(np.float64), centre


def _state_sums(u: np.ndarray, p: SpecificParams) -> dict[str, np.ndarray]:
    """The running sums of :class:`SpecificState` at the last row of u (T, N), in one weighted pass.

    Σ_s δ^{T−1−s} z_s is a dot product of the column z with the weight vector, so each sum
    costs one multiply-add per cell, with a few (T, columns) temporaries per column chunk.
    """
    T, N = u.shape
    lags = p.nw_lags
    g = decay_for(p.halflife) ** np.arange(T - 1, -1, -1, dtype=np.float64)  # δ^{T−1−s}
    out = {"centre": np.zeros(N), "weight": np.zeros(N), "first": np.zeros(N),
           **{k: np.zeros((lags + 1, N)) for k in ("sum_xx", "sum_xm", "sum_mx", "sum_mm")},
           "recent_x": np.zeros((lags, N)), "recent_mask": np.zeros((lags, N))}
    for a in range(0, N, VARIANCE_COLUMNS):
        cols = slice(a, a + VARIANCE_COLUMNS)
        y, m, out["centre"][cols] = _centred_with_centre(u[:, cols])
        gy, gm = g[:, None] * y, g[:, None] * m
        out["weight"][cols] = gm.sum(axis=0)
        out["first"][cols] = gy.sum(axis=0)
        for lag in range(min(lags, T - 1) + 1):
            # Σ_{s≥l} δ^{T−1−s} a_s b_{s−l}: the weighted side on rows l.., the lagged side on ..T−l
            out["sum_xx"][lag, cols] = np.einsum("ij,ij->j", gy[lag:], y[:T - lag])
            out["sum_xm"][lag, cols] = np.einsum("ij,ij->j", gy[lag:], m[:T - lag])
            out["sum_mx"][lag, cols] = np.einsum("ij,ij->j", gm[lag:], y[:T - lag])
            out["sum_mm"][lag, cols] = np.einsum("ij,ij->j", gm[lag:], m[:T - lag])
        back = min(lags, T)
        out["recent_x"][:back, cols] = y[::-1][:back]
        out["recent_mask"][:back, cols] = m[::-1][:back]
    return out


def specific_risk_with_state(specific_returns: pd.DataFrame, caps: pd.DataFrame,
                             params: SpecificParams = SpecificParams()) -> tuple[pd.DataFrame, SpecificState]:
    """:func:`specific_risk` (the same frame, bit for bit) and the :class:`SpecificState` at its
    last row, to continue with :func:`advance_specific_risk`.

    specific_returns: (T × N), T ≥ 1, indexed by ascending dates (a DatetimeIndex), unique
    tickers; caps as for :func:`specific_risk`. The state costs one more weighted pass over the
    panel (dot products, no second variance filter).
    """
    _check_dates(specific_returns)
    p = params
    u, c = _panels(specific_returns, caps)
    out, sigma, b2 = _specific_panel(u, c, p)
    # the VRA sums exactly as vra_lambda_squared forms them, taken at the last row (O(T))
    vra_decay = decay_for(p.vra_halflife)
    ok = np.isfinite(b2)
    vra_num = float(_ew_sum(np.where(ok, b2, 0.0), vra_decay)[-1])
    vra_den = float(_ew_sum(ok.astype(np.float64), vra_decay)[-1])
    state = SpecificState(names=tuple(_names(specific_returns.columns)),
                          last_date=pd.Timestamp(specific_returns.index[-1]), params=p,
                          counts=np.isfinite(u).sum(axis=0).astype(np.int64), sigma=sigma[-1].copy(),
                          caps=c[-1].copy(), vra_num=vra_num, vra_den=vra_den, **_state_sums(u, p))
    frame = pd.DataFrame(out, index=specific_returns.index, columns=specific_returns.columns)
    return frame, state


def advance_specific_risk(state: SpecificState, specific_returns_new: pd.DataFrame, caps_new: pd.DataFrame,
                          params: SpecificParams = SpecificParams()) -> tuple[pd.DataFrame, SpecificState]:
    """The forecasts of B new dates from the state after the old ones, and the state after them.

    state: from :func:`specific_risk_with_state` (or a previous advance) over the old dates.
    specific_returns_new: (B × N') the new dates' specific returns, B ≥ 1, dates ascending and
    after ``state.last_date``; columns every name of the extended model, in any order: all of
    the state's names (a name without new data is NaN there) plus new names, never observed
    before. caps_new: (B × N') their caps, aligned by label as in :func:`specific_risk`.
    Returns the (B × N') variance forecasts (decimal² per day) — equal, up to rounding, to the
    last B rows of :func:`specific_risk` over the old and new dates together, with the new
    columns — and the state at the last new date. Cost O(B·N·L).
    Raises DataValidationError for other params than the state's, a name of the state missing
    from the new columns, ±inf, or dates not after the state's.
    """
    p = params
    if p != state.params:
        raise DataValidationError(f"the state was built with {state.params}, not {p}: rebuild it")
    _check_dates(specific_returns_new)
    names = _names(specific_returns_new.columns)
    dates = specific_returns_new.index
    if dates[0] <= state.last_date:
        raise DataValidationError(f"new dates must come after the state's last date {state.last_date.date()};"
                                  f" got {dates[0].date()}")
    new_index = pd.Index(names, dtype=object)
    if new_index.has_duplicates:
        raise DataValidationError("specific_returns_new name a ticker twice")
    position = pd.Index(state.names, dtype=object).get_indexer(new_index)  # −1 = a new name (one hash lookup)
    known = position >= 0
    if known.sum() != len(state.names):
        missing = sorted(set(state.names) - set(names))
        raise DataValidationError(f"{len(missing)} name(s) of the state are missing from the new columns"
                                  f" (e.g. {', '.join(missing[:5])}); give them NaN returns instead")
    u, c = _panels(specific_returns_new, caps_new)
    B, N = u.shape
    lags = p.nw_lags
    same_order = N == len(state.names) and bool((position == np.arange(N)).all())

    def carried(values: np.ndarray, fill: float) -> np.ndarray:
        """A state array (…, N_old) reordered to the new columns, ``fill`` for new names.
        (Never written to in place below, so the usual case — same names, same order — shares it.)"""
        if same_order:
            return values
        out = np.full(values.shape[:-1] + (N,), fill, dtype=values.dtype)
        out[..., known] = values[..., position[known]]
        return out

    centre = carried(state.centre, 0.0)
    weight, first = carried(state.weight, 0.0), carried(state.first, 0.0)
    sums = {k: carried(getattr(state, k), 0.0) for k in ("sum_xx", "sum_xm", "sum_mx", "sum_mm")}
    recent_x, recent_mask = carried(state.recent_x, 0.0), carried(state.recent_mask, 0.0)
    counts_before = carried(state.counts, 0)

    observed = np.isfinite(u)
    # A name never observed before has all-zero sums, so its centre is still free: take the mean
    # of its new observations, near its level (see SpecificState on why any centre will do).
    fresh = counts_before == 0
    n_new = observed.sum(axis=0)
    batch_mean = np.divide(np.where(observed, u, 0.0).sum(axis=0), n_new, out=np.zeros(N), where=n_new > 0)
    centre = np.where(fresh, batch_mean, centre)
    y = np.where(observed, u - centre, 0.0)
    m = observed.astype(np.float64)

    decay = decay_for(p.halflife)
    nw_weight = [1.0] + [2.0 * _bartlett(lag, lags) for lag in range(1, lags + 1)]
    var = np.empty((B, N))
    for b in range(B):
        # today's value against itself (lag 0) and against the last L days
        y_lagged = np.vstack([y[b][None, :], recent_x])
        m_lagged = np.vstack([m[b][None, :], recent_mask])
        weight = decay * weight + m[b]
        first = decay * first + y[b]
        sums["sum_xx"] = decay * sums["sum_xx"] + y[b] * y_lagged
        sums["sum_xm"] = decay * sums["sum_xm"] + y[b] * m_lagged
        sums["sum_mx"] = decay * sums["sum_mx"] + m[b] * y_lagged
        sums["sum_mm"] = decay * sums["sum_mm"] + m[b] * m_lagged
        recent_x, recent_mask = y_lagged[:lags], m_lagged[:lags]
        with np.errstate(invalid="ignore", divide="ignore"):
            mu = np.where(weight > 0, first / weight, np.nan)
            gamma = (sums["sum_xx"] - mu * sums["sum_xm"] - mu * sums["sum_mx"] + mu * mu * sums["sum_mm"]) / weight
        row = gamma[0].copy()
        for lag in range(1, lags + 1):
            row += nw_weight[lag] * gamma[lag]
        var[b] = row

    counts = counts_before[None, :] + np.cumsum(observed, axis=0)
    sigma = _shrunk_sigma(var, counts, c, p)
    b2 = _regime_bias(u, sigma, c, carried(state.sigma, np.nan), carried(state.caps, np.nan))
    vra_decay = decay_for(p.vra_halflife)
    vra_num, vra_den = state.vra_num, state.vra_den
    lam2 = np.empty(B)
    for b in range(B):
        ok = bool(np.isfinite(b2[b]))
        vra_num = vra_decay * vra_num + (b2[b] if ok else 0.0)
        vra_den = vra_decay * vra_den + (1.0 if ok else 0.0)
        lam2[b] = vra_num / vra_den if vra_den > 0 else 1.0  # no B² yet: no adjustment
    out = sigma**2 * lam2[:, None]

    new_state = SpecificState(names=tuple(names), last_date=pd.Timestamp(dates[-1]), params=p, centre=centre,
                              weight=weight, first=first, **sums, recent_x=recent_x, recent_mask=recent_mask,
                              counts=counts[-1].astype(np.int64), sigma=sigma[-1].copy(), caps=c[-1].copy(),
                              vra_num=float(vra_num), vra_den=float(vra_den))
    return pd.DataFrame(out, index=dates, columns=specific_returns_new.columns), new_state
