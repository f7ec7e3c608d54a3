"""Daily cross-sectional regression of stock returns on factor exposures (SPEC §3).

On each date t, with exposures X_t built from data through the close of t−1 (the caller lags
them), returns r_t and regression weights w_t (√cap by default):

    minimise  Σ_i w_i (r_i − X_i·f)²   subject to   Σ_j c_j f_j = 0   (j over industries)

with c_j the total market cap of industry j that day. The market column is all ones and the
industry dummies of a name sum to one, so without the constraint the design is singular; the
cap-weighted constraint picks the solution in which the market factor is the cap-weighted
market and the industry factors are returns relative to it (the market return is spanned by
the industries).

The constraint is solved by substitution: the industry with the largest cap, L, is eliminated,
f_L = −Σ_{j≠L} (c_j/c_L) f_j, i.e. f = R·g with g the free factors, and the reduced design
X·R is solved by ordinary least squares on √w-scaled rows. Nothing is N × N: each date costs
one N × K least-squares problem. Covariances map back through the same linear map R, which is
how the eliminated factor gets its standard error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from riskstrata.errors import DataValidationError


@dataclass
class RegressionResult:
    """Per-date outputs of :func:`cross_sectional_regression` (T dates, K factors, N tickers).

    Factor and specific returns are simple daily decimals. Dates that were not estimated (too
    few names) are NaN in every per-date output; a factor that was not estimated on a date
    (thin industry, no exposure) is NaN on that date only.
    """

    factors: list[str]
    factor_returns: pd.DataFrame    # (T × K) decimal daily factor returns
    t_stats: pd.DataFrame           # (T × K) f / se(f), se from the WLS residual variance
    r2: pd.Series                   # (T,) weighted R², centred on the weighted mean return
    n_names: pd.Series              # (T,) usable names (finite r, X, w > 0); used when estimated
    condition_number: pd.Series     # (T,) 2-norm condition number of the √w-scaled reduced design
    constraint_residual: pd.Series  # (T,) |Σ_j s_j f_j|, s_j = industry cap share (return units)
    specific_returns: pd.DataFrame  # (T × N) r − X·f over the names used; NaN elsewhere
    thin_industries: pd.DataFrame   # (T × K) bool: industry factor not estimated (too few names)
    notes: dict[pd.Timestamp, list[str]] = field(default_factory=dict)  # why a date/factor is NaN

    def diagnostics(self) -> pd.DataFrame:
        """One row per date: r2, n_names, condition_number, constraint_residual."""
        return pd.DataFrame({"r2": self.r2, "n_names": self.n_names,
                             "condition_number": self.condition_number,
                             "constraint_residual": self.constraint_residual})


@dataclass
class _DayFit:
    """One date's estimates; arrays are indexed by the full factor list (K) or the used names."""

    f: np.ndarray          # (K,) NaN for factors not estimated
    t: np.ndarray          # (K,)
    r2: float
    cond: float
    constraint_residual: float
    specific: np.ndarray   # (n,) over the used names
    thin: np.ndarray       # (K,) bool
    notes: list[str]

    @classmethod
    def not_estimated(cls, K: int, n: int, thin: np.ndarray, notes: list[str]) -> _DayFit:
        return cls(np.full(K, np.nan), np.full(K, np.nan), np.nan, np.nan, np.nan, np.full(n, np.nan),
                   thin, notes)


def _regress_one_day(r: np.ndarray, X: np.ndarray, w: np.ndarray, c: np.ndarray,
                     is_industry: np.ndarray, factors: list[str],
                     min_industry_names: int, skip: np.ndarray | None = None) -> _DayFit:
    """Constrained WLS on one date's usable names.

    r: (n,) returns; X: (n, K) exposures; w: (n,) positive weights; c: (n,) caps for the
    constraint (0 where unknown); is_industry: (K,) bool. All finite, except columns in
    ``skip`` — (K,) bool, factors the caller does not estimate today (e.g. a style whose
    descriptor coverage is too low): they are left out of the design and get NaN.
    """
    K = X.shape[1]
    notes: list[str] = []
    thin = np.zeros(K, dtype=bool)
    skip = np.zeros(K, dtype=bool) if skip is None else skip
    if skip.any():
        X = np.where(skip, 0.0, X)  # a skipped column is out of the design, whatever it holds

    # A factor nobody is exposed to today cannot be estimated (its column is zero). For an
    # industry the threshold is higher: a 1–2 name industry factor would just absorb those
    # names' specific returns, so it is left out and its names keep market + styles only.
    members = np.count_nonzero(X, axis=0)
    thin[is_industry] = (members[is_industry] < min_industry_names) & ~skip[is_industry]
    for j in np.flatnonzero(thin):
        notes.append(f"{factors[j]}: {members[j]} name(s) < {min_industry_names}, not estimated")
    empty = ~is_industry & (members == 0) & ~skip
    for j in np.flatnonzero(empty):
        notes.append(f"{factors[j]}: no name has a non-zero exposure, not estimated")
    used = ~thin & ~empty & ~skip
    active_ind = np.flatnonzero(used & is_industry)
    cols = np.flatnonzero(used)
    Xe = X[:, cols]

    # Linear map f_cols = R @ g from the free factors g to all estimated factors.
    cap_total = c @ X[:, active_ind] if active_ind.size else np.zeros(0)
    if active_ind.size:
        L = active_ind[np.argmax(cap_total)]
        cL = cap_total.max()
        if not cL > 0:
            notes.append("industry caps are all zero or missing: the constraint is undefined")
            return _DayFit.not_estimated(K, len(r), thin, notes)
        pos = {k: i for i, k in enumerate(cols)}
        free = [i for i, k in enumerate(cols) if k != L]
        R = np.zeros((cols.size, cols.size - 1))
        R[free, np.arange(len(free))] = 1.0
        for j, cj in zip(active_ind, cap_total):
            if j != L:
                R[pos[L], free.index(pos[j])] = -cj / cL
        shares = cap_total / cap_total.sum()
    else:
        R = np.eye(cols.size)
        shares = np.zeros(0)

    if R.shape[1] == 0:
        notes.append("no free factor left to estimate")
        return _DayFit.not_estimated(K, len(r), thin, notes)

    sw = np.sqrt(w)
    A = (Xe @ R) * sw[:, None]
    g, _, rank, sv = np.linalg.lstsq(A, r * sw, rcond=None)
    f_cols = R @ g
    e = r - Xe @ f_cols

    # Weighted residual variance with n − rank degrees of freedom (as statsmodels WLS).
    dof = len(r) - rank
    wss = float(w @ e**2)
    sigma2 = wss / dof if dof > 0 else np.nan
    cov_g = sigma2 * np.linalg.pinv(A.T @ A, hermitian=True)
    var_f = np.einsum("ij,jk,ik->i", R, cov_g, R)   # diag(R cov_g Rᵀ)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_cols = np.where(var_f > 0, f_cols / np.sqrt(var_f), np.nan)
        rbar = (w @ r) / w.sum()
        tss = float(w @ (r - rbar) ** 2)
        r2 = 1.0 - wss / tss if tss > 0 else np.nan
        # lstsq's singular values give the 2-norm condition number without a second SVD.
        cond = float(sv[0] / sv[-1]) if sv.size and sv[-1] > 0 else np.inf

    f = np.full(K, np.nan)
    t = np.full(K, np.nan)
    f[cols], t[cols] = f_cols, t_cols
    residual = float(abs(shares @ f[active_ind])) if active_ind.size else 0.0
    return _DayFit(f, t, r2, cond, residual, e, thin, notes)


# Dates solved together: as many as keep the (dates, N, K + 3) design near 4 MB (8 dates at 3,000
# names): it stays in cache; larger chunks stream through memory and are slower, not faster.
CHUNK_ELEMENTS = 1 << 19
# Above this condition number a date is solved by the SVD least squares (its rank decision and
# minimum-norm answer); below it the normal equations agree with it to ~1e-13 (error ≈ ε·cond²).
NORMAL_EQUATIONS_MAX_COND = 1e5


class _Outputs:
    """Per-date outputs of a regression, filled chunk by chunk."""

    def __init__(self, T: int, N: int, K: int) -> None:
        self.f, self.t = np.full((T, K), np.nan), np.full((T, K), np.nan)
        self.r2, self.cond, self.resid = np.full(T, np.nan), np.full(T, np.nan), np.full(T, np.nan)
        self.specific = np.full((T, N), np.nan)
        self.thin = np.zeros((T, K), dtype=bool)

    def put_day(self, t: int, day: _DayFit, ok: np.ndarray) -> None:
        self.f[t], self.t[t], self.r2[t], self.cond[t] = day.f, day.t, day.r2, day.cond
        self.resid[t] = day.constraint_residual
        self.specific[t, ok] = day.specific
        self.thin[t] = day.thin


def _count_nonzero_names(x: np.ndarray) -> np.ndarray:
    """(B, K) int: how many of the N names have a non-zero value, for x (B, N, K).

    ``np.count_nonzero(x, axis=1)`` on a strided slice of the design is a slow reduce; summing a
    0/1 float copy is ~30 % faster and exact (counts ≪ 2⁵³)."""
    return np.einsum("bnk->bk", (x != 0).astype(np.float64)).astype(np.int64)


def _pattern_codes(used: np.ndarray, lead: np.ndarray) -> np.ndarray:
    """One key per date for grouping dates that share the estimated columns and the eliminated
    industry: (n,) int64 packing the (n, K) bools and the lead index when K ≤ 48 (a 1-D unique
    is ~20× faster than a unique over rows), else the (n, K + 1) rows themselves."""
    K = used.shape[1]
    if K > 48:
        return np.column_stack([used, lead])
    bits = (used.astype(np.int64) << np.arange(K, dtype=np.int64)).sum(axis=1)
    return bits + ((lead.astype(np.int64) + 1) << K)


def _regress_chunk(a: int, b: int, returns: np.ndarray, exposures: np.ndarray, weights: np.ndarray,
                   caps: np.ndarray, usable: np.ndarray, skip: np.ndarray, is_industry: np.ndarray,
                   factors: list[str], min_industry_names: int, dates: pd.DatetimeIndex, out: _Outputs,
                   notes: dict, buffer: np.ndarray) -> None:
    """Dates a … b − 1 by the normal equations of the substituted design, all dates at once.

    The same estimator as :func:`_regress_one_day` (which stays the reference and handles the
    degenerate dates): f = R·g with g solving (R'X'WXR) g = R'X'Wr, the Gram matrix formed by
    one batched product per chunk instead of an SVD per date. Columns are scaled to unit
    diagonal before solving (Jacobi), so the error is ε·cond² of the scaled design.
    """
    B = b - a
    ok = usable                                                # (B, N); dates with < min_names: none
    days = np.flatnonzero(ok.any(axis=1))
    if days.size == 0:
        return
    sk = skip[a:b]
    K = len(factors)
    w = np.where(ok, weights[a:b], 0.0)
    r = np.where(ok, returns[a:b], 0.0)
    sw = np.sqrt(w)
    # The √w-scaled design (the caller has copied the exposures in) with three more columns —
    # r, c / w and 1, each × √w — so that one batched product A'A gives X'WX, X'Wr, the
    # industry caps X'c, Σw·r and Σw at once.
    A = buffer[:B]
    A[~ok] = 0.0                                               # names not used that day: out
    A[..., K] = r * sw
    with np.errstate(divide="ignore", invalid="ignore"):
        A[..., K + 1] = np.where(ok, caps[a:b] / np.where(ok, sw, 1.0), 0.0)
    A[..., K + 2] = sw
    aug = np.matmul(A.transpose(0, 2, 1), A)                  # (B, K + 3, K + 3)
    gram, xwr, cap_total = aug[:, :K, :K], aug[:, :K, K], aug[:, :K, K + 1]
    # Names exposed: counted on the industries (fractions allowed); a style is unexposed when
    # Σw·x² = 0, i.e. every x = 0.
    members = np.zeros((B, K), dtype=np.int64)
    ind = np.flatnonzero(is_industry)
    if ind.size and ind[-1] - ind[0] + 1 == ind.size:         # contiguous (Model B's layout): a view
        members[:, is_industry] = _count_nonzero_names(A[..., ind[0]:ind[-1] + 1])
    elif ind.size:
        members[:, is_industry] = _count_nonzero_names(A[..., ind])
    members[:, ~is_industry] = np.where(np.einsum("bii->bi", gram)[:, ~is_industry] > 0, 1, 0)
    thin = is_industry & (members < min_industry_names) & ~sk
    empty = ~is_industry & (members == 0) & ~sk
    used = ~thin & ~empty & ~sk
    active = used & is_industry
    f_all = np.full((B, K), np.nan)
    t_all = np.full((B, K), np.nan)
    cond_all = np.full(B, np.nan)
    solved = np.zeros(B, dtype=bool)
    n_free = np.zeros(B)
    fallback = []
    # Dates sharing the estimated columns and the eliminated industry are solved together.
    masked = np.where(active, cap_total, -np.inf)
    lead = np.where(active.any(axis=1), np.argmax(masked, axis=1), -1)
    out.thin[a + days] = thin[days]
    for i in days[(thin[days] | empty[days]).any(axis=1)]:
        t = a + i
        for j in np.flatnonzero(thin[i]):
            notes.setdefault(dates[t], []).append(f"{factors[j]}: {members[i, j]} name(s) < {min_industry_names}, "
                                                  "not estimated")
        for j in np.flatnonzero(empty[i]):
            notes.setdefault(dates[t], []).append(f"{factors[j]}: no name has a non-zero exposure, not estimated")
    undefined = (lead[days] >= 0) & ~(cap_total[days, np.maximum(lead[days], 0)] > 0)
    fallback.extend(days[undefined])   # undefined constraint: the reference path says why
    solvable = days[~undefined]
    keys: dict[tuple, list[int]] = {}
    if solvable.size:
        codes = _pattern_codes(used[solvable], lead[solvable])
        _, first, inverse = np.unique(codes, axis=0 if codes.ndim == 2 else None, return_index=True,
                                      return_inverse=True)
        for g, i0 in enumerate(first):
            keys[(g, int(lead[solvable[i0]]))] = list(solvable[inverse.ravel() == g])
    var_all = np.full((B, K), np.nan)
    for (_, L), rows in keys.items():
        rows = np.array(rows)
        cols = np.flatnonzero(used[rows[0]])
        free = cols[cols != L] if L >= 0 else cols
        if free.size == 0:
            fallback.extend(rows)
            continue
        G = gram[np.ix_(rows, free, free)]
        q = xwr[np.ix_(rows, free)]
        if L >= 0:
            # f_L = −ρ·g, ρ_j = c_j / c_L for the other active industries: G = R'MR, q = R'X'Wr.
            rho = np.where(active[np.ix_(rows, free)], cap_total[np.ix_(rows, free)], 0.0) / cap_total[rows, L][:, None]
            m_fl = gram[rows][:, free, L]
            m_ll = gram[rows, L, L]
            G = (G - m_fl[:, :, None] * rho[:, None, :] - rho[:, :, None] * m_fl[:, None, :]
                 + m_ll[:, None, None] * rho[:, :, None] * rho[:, None, :])
            q = q - rho * xwr[rows, L][:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.sqrt(np.einsum("bii->bi", G))
            Gs = G / (d[:, :, None] * d[:, None, :])
            eig = np.linalg.eigvalsh(G)
            cond = np.sqrt(eig[:, -1] / eig[:, 0])
        good = (np.isfinite(cond) & (eig[:, 0] > 0) & (cond < NORMAL_EQUATIONS_MAX_COND)
                & np.isfinite(Gs).all(axis=(1, 2)))
        fallback.extend(rows[~good])
        if not good.any():
            continue
        rows, Gs, q, d = rows[good], Gs[good], q[good], d[good]
        inv_s = np.linalg.inv(Gs)
        g = np.einsum("bij,bj->bi", inv_s, q / d) / d
        cov_unit = inv_s / (d[:, :, None] * d[:, None, :])    # (R'X'WXR)⁻¹
        f_all[np.ix_(rows, free)] = g
        var_all[np.ix_(rows, free)] = np.einsum("bii->bi", cov_unit)
        if L >= 0:
            rho = rho[good]
            f_all[rows, L] = -np.einsum("bi,bi->b", rho, g)
            var_all[rows, L] = np.einsum("bi,bij,bj->b", rho, cov_unit, rho)
        cond_all[rows], solved[rows], n_free[rows] = cond[good], True, free.size
    if solved.any():
        rows = np.flatnonzero(solved)
        f0 = np.zeros((B, K + 3))
        f0[:, :K] = np.nan_to_num(f_all)
        with np.errstate(divide="ignore", invalid="ignore"):   # r − X·f over the used names
            e = r - np.matmul(A, f0[..., None])[..., 0] / np.where(ok, sw, 1.0)
        okr = ok[rows]
        e, wr, rr = e[rows], w[rows], r[rows]
        wss = np.einsum("bn,bn->b", wr, e * e)
        dof = okr.sum(axis=1) - n_free[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            sigma2 = np.where(dof > 0, wss / np.where(dof > 0, dof, 1), np.nan)
            var_f = sigma2[:, None] * var_all[rows]
            t_all[rows] = np.where(var_f > 0, f_all[rows] / np.sqrt(var_f), np.nan)
            rbar = np.einsum("bn,bn->b", wr, rr) / wr.sum(axis=1)
            tss = np.einsum("bn,bn->b", wr, np.where(okr, rr - rbar[:, None], 0.0) ** 2)
            r2 = np.where(tss > 0, 1.0 - wss / tss, np.nan)
            act = active[rows]
            share = np.where(act, cap_total[rows], 0.0)
            share = share / share.sum(axis=1, keepdims=True)
        resid = np.where(act.any(axis=1), np.abs(np.einsum("bk,bk->b", share, np.where(act, f_all[rows], 0.0))), 0.0)
        ts = a + rows
        out.f[ts], out.t[ts], out.r2[ts], out.cond[ts], out.resid[ts] = f_all[rows], t_all[rows], r2, cond_all[rows], resid
        out.specific[ts] = np.where(okr, e, np.nan)
    for i in sorted(fallback):
        t, m = a + i, ok[i]
        day = _regress_one_day(returns[t, m], exposures[t, m], weights[t, m], caps[t, m], is_industry, factors,
                               min_industry_names, skip[t])
        out.put_day(t, day, m)
        notes.pop(dates[t], None)
        if day.notes:
            notes[dates[t]] = day.notes



def _validate(returns: np.ndarray, exposures: np.ndarray, weights: np.ndarray,
              factors: list[str], industry_cols: list[int], industry_caps: np.ndarray | None,
              dates: pd.DatetimeIndex, tickers: pd.Index) -> None:
    T, N = returns.shape if returns.ndim == 2 else (None, None)
    problems = []
    if returns.ndim != 2:
        problems.append(f"returns must be (T, N); got shape {returns.shape}")
    elif exposures.ndim != 3 or exposures.shape[:2] != (T, N):
        problems.append(f"exposures must be (T, N, K) = ({T}, {N}, K); got {exposures.shape}")
    elif weights.shape != (T, N):
        problems.append(f"weights must be (T, N) = ({T}, {N}); got {weights.shape}")
    elif industry_caps is not None and industry_caps.shape != (T, N):
        problems.append(f"industry_caps must be (T, N) = ({T}, {N}); got {industry_caps.shape}")
    elif len(factors) != exposures.shape[2] or len(set(factors)) != len(factors):
        problems.append(f"factors must be {exposures.shape[2]} unique names; got {len(factors)}")
    elif len(dates) != T or len(tickers) != N:
        problems.append(f"dates/tickers must have lengths {T}/{N}; got {len(dates)}/{len(tickers)}")
    elif len(set(industry_cols)) != len(industry_cols) or any(
            not 0 <= j < len(factors) for j in industry_cols):
        problems.append(f"industry_cols must be distinct column indices < {len(factors)}")
    if problems:
        raise DataValidationError("cross_sectional_regression: " + "; ".join(problems))


def cross_sectional_regression(returns: np.ndarray, exposures: np.ndarray, weights: np.ndarray,
                               factors: list[str], industry_cols: list[int],
                               industry_caps: np.ndarray | None, *, dates: pd.DatetimeIndex,
                               tickers: pd.Index, min_names: int = 30,
                               min_industry_names: int = 3, not_estimated: np.ndarray | None = None,
                               tick: Callable[[int, int], None] | None = None) -> RegressionResult:
    """Daily constrained WLS factor returns, t-stats and specific returns for T dates.

    returns: (T, N) float64 simple daily returns, NaN = missing.
    exposures: (T, N, K) float64, row t already lagged (built from data through t−1); NaN =
        not in the model. Industry columns are 0/1 dummies (fractions allowed).
    weights: (T, N) regression weights (e.g. √cap); NaN or ≤ 0 drops the name that day.
    factors: K names; industry_cols: the positions of the industry columns in them.
    industry_caps: (T, N) caps (USD) whose industry totals c_j weight the constraint
        Σ_j c_j f_j = 0; NaN counts as 0. ``None`` uses the regression weights instead.
    dates: (T,) and tickers: (N,) labels. min_names: fewer usable names → the date is NaN.
    min_industry_names: an industry with fewer names that day is not estimated (NaN, flagged
        in ``thin_industries`` and ``notes``); its names keep market + style exposures.
    not_estimated: (T, K) bool, factors the caller decided not to estimate on a date (a style
        whose descriptors cover too little of the universe): the column is dropped from that
        date's regression — its factor return is NaN, never a number regressed on imputed
        zeros — and its exposures need not be finite. The reason is the caller's to report.
    tick: called as tick(done, total) after each chunk of dates (progress).
    """
    returns = np.asarray(returns, dtype=float)
    exposures = np.asarray(exposures, dtype=float)
    weights = np.asarray(weights, dtype=float)
    caps = None if industry_caps is None else np.asarray(industry_caps, dtype=float)
    dates, tickers = pd.DatetimeIndex(dates), pd.Index(tickers)
    _validate(returns, exposures, weights, factors, industry_cols, caps, dates, tickers)
    T, N, K = exposures.shape
    is_industry = np.zeros(K, dtype=bool)
    is_industry[list(industry_cols)] = True
    skip = np.zeros((T, K), dtype=bool) if not_estimated is None else np.asarray(not_estimated, dtype=bool)
    if skip.shape != (T, K):
        raise DataValidationError(f"cross_sectional_regression: not_estimated must be (T, K) = ({T}, {K}); "
                                  f"got {skip.shape}")

    c_all = weights if caps is None else caps
    c_all = np.where(np.isfinite(c_all) & (c_all > 0), c_all, 0.0)
    finite_rw = np.isfinite(returns) & np.isfinite(weights) & (weights > 0)

    out = _Outputs(T, N, K)
    n_names = np.zeros(T, dtype=np.int64)
    notes: dict[pd.Timestamp, list[str]] = {}
    chunk = int(np.clip(CHUNK_ELEMENTS // max(N * (K + 3), 1), 4, 512))
    buffer = np.empty((chunk, N, K + 3))   # reused: no fresh pages per chunk
    for a in range(0, T, chunk):
        b = min(a + chunk, T)
        if tick is not None:
            tick(b, T)
        # The √w-scaled exposures, copied in once; a factor not estimated that day is out.
        A = buffer[:b - a]
        with np.errstate(invalid="ignore", over="ignore"):
            np.multiply(exposures[a:b], np.sqrt(np.where(finite_rw[a:b], weights[a:b], 0.0))[..., None],
                        out=A[..., :K])
            for i, k in np.argwhere(skip[a:b]):
                A[i, :, k] = 0.0
            # Usable names: a finite return, a positive weight and a full row of the estimated
            # exposures (a NaN anywhere in the row makes its sum NaN).
            usable = finite_rw[a:b] & np.isfinite(A[..., :K] @ np.ones(K))  # a BLAS row sum: 2.5× a reduce
        n_names[a:b] = usable.sum(axis=1)
        for t in a + np.flatnonzero((n_names[a:b] < min_names) & (n_names[a:b] > 0)):
            # An empty date (e.g. the first, with no lagged exposures) is expected: no note.
            notes[dates[t]] = [f"{n_names[t]} usable names < min_names={min_names}: not estimated"]
        _regress_chunk(a, b, returns, exposures, weights, c_all, usable & (n_names[a:b] >= min_names)[:, None], skip,
                       is_industry, factors, min_industry_names, dates, out, notes, buffer)
    f, tst, r2, cond, resid, specific, thin = out.f, out.t, out.r2, out.cond, out.resid, out.specific, out.thin
    notes = dict(sorted(notes.items()))

    def frame(a: np.ndarray, cols: list[str] | pd.Index) -> pd.DataFrame:
        return pd.DataFrame(a, index=dates, columns=cols)

    return RegressionResult(
        factors=list(factors), factor_returns=frame(f, factors), t_stats=frame(tst, factors),
        r2=pd.Series(r2, index=dates, name="r2"),
        n_names=pd.Series(n_names, index=dates, name="n_names"),
        condition_number=pd.Series(cond, index=dates, name="condition_number"),
        constraint_residual=pd.Series(resid, index=dates, name="constraint_residual"),
        specific_returns=frame(specific, tickers), thin_industries=frame(thin, factors),
        notes=notes)
