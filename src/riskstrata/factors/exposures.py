"""Factor exposures from raw descriptors: winsorise → standardise → blend → impute (SPEC §3).

A style exposure is a z-score: cap-weighted mean 0 and equal-weighted standard deviation 1
over the estimation universe on every date. The cap-weighted centre makes the cap-weighted
market portfolio style-neutral, so the market factor in the regression is the market; the
equal-weighted scale stops a few mega-caps from setting the unit of every exposure (USE4).

Every function works on (T, N) arrays (dates × tickers, NaN = missing), one cross-section per
row; none looks across dates except :func:`lag_one_day`, which implements the timing rule:
exposures at the close of t−1 explain returns on t.
"""

from __future__ import annotations

import numpy as np

from riskstrata.errors import DataValidationError

# Scale factor making the median absolute deviation a consistent estimator of σ for a normal
# distribution (1 / Φ⁻¹(3/4)).
MAD_TO_SIGMA = 1.4826


def _check_panel(name: str, x: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or (shape is not None and x.shape != shape):
        want = f"{shape}" if shape is not None else "(T, N)"
        raise DataValidationError(f"{name} must be a {want} array; got shape {x.shape}")
    return x


def winsorise(x: np.ndarray, *, n_mad: float = 5.0) -> np.ndarray:
    """Clip each date's cross-section at median ± n_mad·1.4826·MAD (NaN-aware).

    x: (T, N) float64, NaN = missing (kept NaN). Returns a new (T, N) array in x's units.
    A date whose MAD is zero (more than half the names share one value) is left unclipped:
    a zero-width band would flatten every other name onto the median.
    """
    x = _check_panel("x", x).astype(float)
    med = row_nanmedian(x)
    mad = row_nanmedian(np.abs(x - med))
    half_width = n_mad * MAD_TO_SIGMA * mad
    clipped = np.minimum(np.maximum(x, med - half_width), med + half_width)
    return np.where(mad > 0, clipped, x)


def row_nanmedian(x: np.ndarray) -> np.ndarray:
    """(T, 1) median of each row's finite values (NaN for a row without any), all rows at once.

    The same numbers as ``np.nanmedian(x, axis=1, keepdims=True)`` (the middle value, or the
    mean of the two middle values), without its per-row Python loop: one sort of the whole
    panel (NaNs sort last) and two gathers.
    """
    ordered = np.sort(x, axis=1)
    n = np.isfinite(x).sum(axis=1)
    lo = np.maximum((n - 1) // 2, 0)[:, None]
    hi = np.maximum(n // 2, 0)[:, None]
    a = np.take_along_axis(ordered, lo, axis=1)
    b = np.take_along_axis(ordered, hi, axis=1)
    # n odd: a is b; n even: their mean, computed as np.median does ((a + b) / 2).
    med = np.where(lo == hi, a, (a + b) / 2.0)
    return np.where(n[:, None] > 0, med, np.nan)


def standardise(x: np.ndarray, caps: np.ndarray, universe: np.ndarray) -> np.ndarray:
    """Per date, (x − cap-weighted mean) / equal-weighted std, both over the universe.

    x: (T, N) float64 raw values; caps: (T, N) market caps (USD), NaN or ≤ 0 = no weight in the
    mean; universe: (T, N) bool estimation universe. The std is the population std (ddof 0)
    of x over the universe names that have a value. Names outside the universe are
    transformed with the same mean and std, so they are on the universe's scale.
    Returns (T, N) z-scores; a date with no capped universe value is NaN, a date with no
    dispersion (every universe value equal) is 0 wherever x has a value.
    """
    x = _check_panel("x", x).astype(float)
    caps = _check_panel("caps", caps, x.shape).astype(float)
    universe = _check_panel("universe", universe, x.shape).astype(bool)
    have = universe & np.isfinite(x)
    x0 = np.where(have, x, 0.0)
    cw = np.where(have & np.isfinite(caps) & (caps > 0), caps, 0.0)
    cnt = have.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_cap = (cw * x0).sum(axis=1, keepdims=True) / cw.sum(axis=1, keepdims=True)
        mean_eq = x0.sum(axis=1, keepdims=True) / cnt
        # Two-pass variance: deviations from the equal-weighted mean, not E[x²] − E[x]².
        std = np.sqrt((np.where(have, x - mean_eq, 0.0) ** 2).sum(axis=1, keepdims=True) / cnt)
        z = (x - mean_cap) / std
    flat = (std == 0) & np.isfinite(mean_cap)
    return np.where(flat & np.isfinite(x), 0.0, z)


def impute(x: np.ndarray, industry: np.ndarray, log_cap: np.ndarray,
           universe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill missing universe values from a per-date regression on industry dummies + log size.

    x: (T, N) float64 exposures (z-scores), NaN = missing; industry: (T, N) int industry index,
    −1 = none (a group of its own); log_cap: (T, N) log market cap (log USD); universe: (T, N)
    bool. Per date the model x ≈ a_industry + b·log_cap is fitted on the universe names that
    have x and a log cap; a missing universe name gets its prediction. Fallbacks, in order,
    when that is not possible (too few names to fit, no log cap, an industry nobody in it
    has x): the industry mean of x, then 0 (the cross-sectional centre of a z-score).
    Names outside the universe are left as they are.

    Returns (filled (T, N), imputed_mask (T, N) bool — True exactly on the cells filled).
    """
    x = _check_panel("x", x).astype(float)
    industry = _check_panel("industry", industry, x.shape).astype(int)
    log_cap = _check_panel("log_cap", log_cap, x.shape).astype(float)
    universe = _check_panel("universe", universe, x.shape).astype(bool)
    if industry.size and industry.min() < -1:
        raise DataValidationError("industry codes must be ≥ −1 (−1 = no industry)")
    have = universe & np.isfinite(x)
    missing = universe & ~np.isfinite(x)
    filled = x.copy()
    n_groups = int(industry.max()) + 2 if industry.size else 1   # code −1 → group 0
    rows = np.flatnonzero(missing.any(axis=1))
    if rows.size == 0:
        return filled, missing
    pred, solved = _impute_closed_form(x[rows], industry[rows] + 1, log_cap[rows], have[rows], n_groups)
    for j, t in enumerate(rows):
        if solved[j]:
            filled[t, missing[t]] = pred[j, missing[t]]
        else:  # a degenerate date (log size constant within every industry): least squares
            filled[t, missing[t]] = _impute_one_day(x[t], industry[t] + 1, log_cap[t], have[t], missing[t], n_groups)
    return filled, missing


def _impute_closed_form(x: np.ndarray, group: np.ndarray, log_cap: np.ndarray, have: np.ndarray,
                        n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_impute_one_day`'s predictions for many dates at once, by the closed form of its
    least squares: with one dummy per industry and log size, the slope is the within-industry
    one, b = Σ(l − l̄_g)(x − x̄_g) / Σ(l − l̄_g)², and each industry's intercept a_g = x̄_g − b·l̄_g.

    x, log_cap: (R, N); group: (R, N) industry codes + 1; have: (R, N) bool names with x.
    Returns (predictions (R, N) for every name, solved (R,) bool). A date is not solved when its
    design is rank deficient (no within-industry spread of log size): the caller uses least
    squares there, whose minimum-norm answer the closed form does not give.
    """
    R, N = x.shape
    cell = (np.arange(R)[:, None] * n_groups + group)          # (date, industry) cells
    size = R * n_groups

    def per_cell(mask: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(cell[mask], None if values is None else values[mask], minlength=size)

    # Industry means of x over the names with x: the fallback for names the fit cannot reach.
    counts, sums = per_cell(have), per_cell(have, x)
    group_mean = np.divide(sums, counts, out=np.zeros(size), where=counts > 0)
    pred = group_mean[cell]                                    # 0 where the industry is empty
    train = have & np.isfinite(log_cap)
    n_train = per_cell(train)
    l_mean = np.divide(per_cell(train, log_cap), n_train, out=np.zeros(size), where=n_train > 0)
    x_mean = np.divide(per_cell(train, x), n_train, out=np.zeros(size), where=n_train > 0)
    dl = np.where(train, log_cap - l_mean[cell], 0.0)
    dx = np.where(train, x - x_mean[cell], 0.0)
    sxx, sxy = (dl * dl).sum(axis=1), (dl * dx).sum(axis=1)
    groups_seen = (n_train.reshape(R, n_groups) > 0).sum(axis=1)
    fits = train.sum(axis=1) > groups_seen + 1               # a residual degree of freedom
    # Rank deficient when the within-industry spread of log size is (numerically) nil.
    scale = np.where(train, log_cap, 0.0)
    solved = ~fits | (sxx > 1e-10 * np.maximum((scale * scale).sum(axis=1), 1e-300))
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.where(fits & solved, sxy / sxx, 0.0)
    fitted = x_mean[cell] + b[:, None] * (log_cap - l_mean[cell])
    reach = fits[:, None] & np.isfinite(log_cap) & (n_train[cell] > 0)
    return np.where(reach, fitted, pred), solved


def _impute_one_day(x: np.ndarray, group: np.ndarray, log_cap: np.ndarray, have: np.ndarray,
                    missing: np.ndarray, n_groups: int) -> np.ndarray:
    """Predictions (m,) for the m missing names of one date; groups are industry codes + 1."""
    counts = np.bincount(group[have], minlength=n_groups)
    sums = np.bincount(group[have], weights=x[have], minlength=n_groups)
    group_mean = np.divide(sums, counts, out=np.zeros(n_groups), where=counts > 0)
    pred = group_mean[group[missing]]            # industry mean, 0 where the industry is empty

    train = have & np.isfinite(log_cap)
    groups = np.flatnonzero(np.bincount(group[train], minlength=n_groups))
    if train.sum() <= groups.size + 1:           # need a residual degree of freedom
        return pred
    # Design: one dummy per industry seen in training (they span the intercept) + log size.
    col = np.full(n_groups, -1)
    col[groups] = np.arange(groups.size)

    def design(mask: np.ndarray) -> np.ndarray:
        D = np.zeros((mask.sum(), groups.size + 1))
        D[np.arange(mask.sum()), col[group[mask]]] = 1.0
        D[:, -1] = log_cap[mask]
        return D

    coef, *_ = np.linalg.lstsq(design(train), x[train], rcond=None)
    m_idx = np.flatnonzero(missing)
    fit = np.isfinite(log_cap[m_idx]) & (col[group[m_idx]] >= 0)
    if fit.any():
        sel = np.zeros_like(missing)
        sel[m_idx[fit]] = True
        pred[fit] = design(sel) @ coef
    return pred


def style_exposure(descriptors: dict[str, np.ndarray], weights: dict[str, float], caps: np.ndarray,
                   universe: np.ndarray, industry: np.ndarray,
                   log_cap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One style factor's exposure from its descriptors.

    descriptors: name → (T, N) raw values; weights: name → blend weight (≥ 0, not all 0; every
    weighted name must be in ``descriptors``); caps, universe, industry, log_cap as in
    :func:`standardise` and :func:`impute`. Each descriptor is winsorised and standardised; the
    z-scores are blended with the weights renormalised over the descriptors a name has that
    day (so a missing descriptor does not pull the name towards 0); names with none are
    imputed from industry + size; the blend is re-standardised, since a weighted sum of
    correlated z-scores is no longer unit-scaled.

    Returns (exposure (T, N) z-scores, imputed (T, N) bool). Names outside the universe keep
    a value where they have descriptors (on the universe's scale) and are never imputed.
    """
    absent = sorted(set(weights) - set(descriptors))
    if absent:
        raise DataValidationError(f"style_exposure: weights name descriptors not given: {absent}")
    if any(not np.isfinite(w) or w < 0 for w in weights.values()) or not sum(weights.values()) > 0:
        raise DataValidationError(f"style_exposure: weights must be ≥ 0 and not all 0; got {weights}")
    caps = _check_panel("caps", caps)
    num = np.zeros(caps.shape)
    den = np.zeros(caps.shape)
    for name, w in weights.items():
        z = standardise(winsorise(_check_panel(name, descriptors[name], caps.shape)), caps, universe)
        ok = np.isfinite(z)
        num += np.where(ok, w * z, 0.0)
        den += np.where(ok, w, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        blend = np.where(den > 0, num / den, np.nan)
    filled, imputed = impute(blend, industry, log_cap, universe)
    return standardise(filled, caps, universe), imputed


def industry_dummies(industry: np.ndarray, n_industries: int) -> np.ndarray:
    """0/1 industry exposures: industry (T, N) int in [−1, n_industries), −1 = none (all 0).

    Returns (T, N, n_industries) float64.
    """
    industry = _check_panel("industry", industry)
    if not np.issubdtype(industry.dtype, np.integer):
        raise DataValidationError(f"industry codes must be integers; got dtype {industry.dtype}")
    if industry.size and (industry.min() < -1 or industry.max() >= n_industries):
        raise DataValidationError(f"industry codes must be in [−1, {n_industries}); got "
                                  f"[{industry.min()}, {industry.max()}]")
    return (industry[..., None] == np.arange(n_industries)).astype(float)


def lag_one_day(x: np.ndarray) -> np.ndarray:
    """Shift by one date along axis 0: row t gets row t−1, row 0 is NaN.

    x: (T, ...) any numeric array; returns float64 of the same shape. Exposures at the close
    of t−1 are what is known when the return on t is earned, so they explain it.
    """
    x = np.asarray(x)
    out = np.empty(x.shape, dtype=float)
    out[:1] = np.nan
    out[1:] = x[:-1]
    return out
