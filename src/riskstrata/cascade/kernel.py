"""The cascade on window moments: orthogonalisation, betas, hedge ratios, explained risk.

Given, per stock and date, the window covariances of the stock return r with the market (m),
sector (s) and subsector (u) ETF returns, everything of SPEC §2 is closed-form arithmetic:

    s* = s − λ_sm·m                 λ_sm = Cov(s,m)/Var(m)
    u* = u − λ_um·m − λ_us·s*       λ_um = Cov(u,m)/Var(m),  λ_us = Cov(u,s*)/Var(s*)

m, s*, u* are orthogonal in the window, so the L3 regression of r on [1, m, s*, u*] has the
one-factor betas β_k = Cov(r, f_k*)/Var(f_k*) (Frisch–Waugh–Lovell), L1 and L2 share β_m and
β_s with L3, and the explained-risk shares β_k²·Var(f_k*)/Var(r) add up to R². Mapping the
orthogonal betas back to raw ETFs gives the executable hedge ratios (negative = short).

All arrays broadcast against each other: shape (T, 1) for moments shared by a group of stocks
with the same ETFs, (T, n) for per-stock ones. Nothing here loops over stocks or dates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from riskstrata.errors import IdentityViolation

# Relative variance below which an orthogonalised factor carries no information of its own
# (the ETF is a linear combination of the levels above it, e.g. subsector ETF == sector ETF).
COLLINEAR_TOL = 1e-10
# Daily return variance below which a series is treated as constant (std < 1e-9 per day).
ZERO_VARIANCE = 1e-18


class Flag:
    """Bit flags carried per stock and date in the ``flags`` field; see :func:`describe_flags`."""

    INSUFFICIENT_HISTORY = 1
    SECTOR_FALLBACK = 2
    SUBSECTOR_FALLBACK = 4
    NO_SECTOR_ETF = 8
    NO_SUBSECTOR_ETF = 16
    COLLINEAR_SECTOR = 32
    COLLINEAR_SUBSECTOR = 64
    ZERO_VARIANCE = 128
    NO_MARKET = 256


FLAG_TEXT: dict[int, str] = {
    Flag.INSUFFICIENT_HISTORY: "insufficient history: fewer valid days in the window than min_obs",
    Flag.SECTOR_FALLBACK: "sector ETF not listed for the whole window: L2 falls back to L1",
    Flag.SUBSECTOR_FALLBACK: "subsector ETF not listed for the whole window: L3 falls back to L2",
    Flag.NO_SECTOR_ETF: "no sector ETF assigned: L2 equals L1",
    Flag.NO_SUBSECTOR_ETF: "no distinct subsector ETF: L3 equals L2",
    Flag.COLLINEAR_SECTOR: "sector ETF collinear with the market in the window: sector beta set to 0",
    Flag.COLLINEAR_SUBSECTOR: "subsector ETF collinear with the levels above: subsector beta set to 0",
    Flag.ZERO_VARIANCE: "constant returns in the window: no risk to explain",
    Flag.NO_MARKET: "market ETF has no variance or data in the window",
}

# Flags that make the whole row null (as opposed to a level falling back).
NULLING_FLAGS = Flag.INSUFFICIENT_HISTORY | Flag.ZERO_VARIANCE | Flag.NO_MARKET


def describe_flags(flags: int) -> list[str]:
    """Human-readable reasons for a flags value (empty list for 0)."""
    return [text for bit, text in FLAG_TEXT.items() if int(flags) & bit]


@dataclass
class WindowCovariances:
    """Window (co)variances of r, m, s, u; each (T, 1) or (T, n) float64, population-normalised."""

    c_mm: np.ndarray
    c_ms: np.ndarray
    c_mu: np.ndarray
    c_ss: np.ndarray
    c_su: np.ndarray
    c_uu: np.ndarray
    c_rm: np.ndarray
    c_rs: np.ndarray
    c_ru: np.ndarray
    c_rr: np.ndarray


def _safe_div(num: np.ndarray, den: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """num/den where ok, else 0 (never inf/NaN from the division itself)."""
    num, den, ok = np.broadcast_arrays(num, den, ok)
    return np.divide(num, den, out=np.zeros(num.shape), where=ok)


def solve_cascade(cov: WindowCovariances) -> dict[str, np.ndarray]:
    """All three levels from window covariances.

    Returns a dict of (T, n) float64 arrays: betas on orthogonal factors (``l1_mkt_beta``,
    ``l2_sec_beta``, ``l3_sub_beta``), link betas (``lambda_sm``, ``lambda_um``, ``lambda_us``),
    hedge ratios on raw ETFs (``l{k}_*_hr``), explained-risk shares (``l{k}_*_er``, residual
    shares ``l{k}_res_er``) and ``flags`` bits for collinearity / zero variance / no market.
    Rows are not yet nulled for insufficient history; the caller does that.
    """
    c = cov
    ok_m = c.c_mm > ZERO_VARIANCE
    lam_sm = _safe_div(c.c_ms, c.c_mm, ok_m)
    var_s_star = c.c_ss - lam_sm * c.c_ms
    ok_s = ok_m & (c.c_ss > ZERO_VARIANCE) & (var_s_star > COLLINEAR_TOL * c.c_ss)

    lam_um = _safe_div(c.c_mu, c.c_mm, ok_m)
    cov_us_star = c.c_su - lam_sm * c.c_mu
    lam_us = _safe_div(cov_us_star, var_s_star, ok_s)
    var_u_star = c.c_uu - lam_um * c.c_mu - lam_us * cov_us_star
    ok_u = ok_m & (c.c_uu > ZERO_VARIANCE) & (var_u_star > COLLINEAR_TOL * c.c_uu)

    cov_rs_star = c.c_rs - lam_sm * c.c_rm
    cov_ru_star = c.c_ru - lam_um * c.c_rm - lam_us * cov_rs_star
    b_m = _safe_div(c.c_rm, c.c_mm, ok_m)
    b_s = _safe_div(cov_rs_star, var_s_star, ok_s)
    b_u = _safe_div(cov_ru_star, var_u_star, ok_u)

    ok_r = c.c_rr > ZERO_VARIANCE
    er_m = _safe_div(b_m * b_m * c.c_mm, c.c_rr, ok_r)
    er_s = _safe_div(b_s * b_s * var_s_star, c.c_rr, ok_r)
    er_u = _safe_div(b_u * b_u * var_u_star, c.c_rr, ok_r)

    shape = np.broadcast_shapes(b_m.shape, b_u.shape, er_u.shape)
    flags = np.zeros(shape, dtype=np.int32)
    flags |= np.where(~ok_m, Flag.NO_MARKET, 0).astype(np.int32)
    flags |= np.where(ok_m & ~ok_r, Flag.ZERO_VARIANCE, 0).astype(np.int32)
    # A factor with no variance at all is "absent" (reported by the caller as a fallback or a
    # missing ETF); one with variance but none of its own is collinear.
    flags |= np.where(ok_m & (c.c_ss > ZERO_VARIANCE) & ~ok_s, Flag.COLLINEAR_SECTOR, 0).astype(np.int32)
    flags |= np.where(ok_m & (c.c_uu > ZERO_VARIANCE) & ~ok_u, Flag.COLLINEAR_SUBSECTOR, 0).astype(np.int32)

    def full(a: np.ndarray) -> np.ndarray:
        return np.broadcast_to(a, shape).astype(np.float64, copy=True)

    betas = {"l1_mkt_beta": b_m, "l2_sec_beta": b_s, "l3_sub_beta": b_u,
             "lambda_sm": lam_sm, "lambda_um": lam_um, "lambda_us": lam_us}
    out = {name: full(a) for name, a in betas.items()}
    out.update((name, full(hedge_ratio(name, betas.__getitem__))) for name in HR_NAMES)
    for name, er in (("l1_mkt_er", er_m), ("l2_mkt_er", er_m), ("l2_sec_er", er_s),
                     ("l3_mkt_er", er_m), ("l3_sec_er", er_s), ("l3_sub_er", er_u)):
        out[name] = full(er)
    out["flags"] = flags
    out.update((name, residual_share(name, out.__getitem__)) for name in RES_ER_NAMES)
    return out


# The hedge ratios and residual shares are arithmetic on the betas, link betas and explained
# shares; solve_cascade and a fitted result's fields derived on first read (cascade.fit) both
# use these two functions, so the two give the same bits.
HR_NAMES = ("l1_mkt_hr", "l2_mkt_hr", "l2_sec_hr", "l3_mkt_hr", "l3_sec_hr", "l3_sub_hr")
RES_ER_NAMES = ("l1_res_er", "l2_res_er", "l3_res_er")


def hedge_ratio(name: str, get: Callable[[str], np.ndarray]) -> np.ndarray:
    """One hedge ratio on raw ETFs from the orthogonal betas and link betas.

    ``get(field)`` returns ``l1_mkt_beta``, ``l2_sec_beta``, ``l3_sub_beta``, ``lambda_sm``,
    ``lambda_um`` or ``lambda_us`` (arrays that broadcast). Written as 0.0 − β so that an absent
    leg is +0.0, never a "−0.000" hedge; NaN in, NaN out.
    """
    if name == "l1_mkt_hr":
        return 0.0 - get("l1_mkt_beta")
    if name == "l2_mkt_hr":
        return 0.0 - get("l1_mkt_beta") + get("l2_sec_beta") * get("lambda_sm")
    if name == "l2_sec_hr":
        return 0.0 - get("l2_sec_beta")
    if name == "l3_mkt_hr":
        # The cross term −β_u·λ_us·λ_sm: the subsector leg's sector hedge carries market beta.
        b_u, lam_sm = get("l3_sub_beta"), get("lambda_sm")
        return 0.0 - get("l1_mkt_beta") + get("l2_sec_beta") * lam_sm + b_u * get("lambda_um") - b_u * get("lambda_us") * lam_sm
    if name == "l3_sec_hr":
        return 0.0 - get("l2_sec_beta") + get("l3_sub_beta") * get("lambda_us")
    if name == "l3_sub_hr":
        return 0.0 - get("l3_sub_beta")
    raise KeyError(name)


def residual_share(name: str, get: Callable[[str], np.ndarray]) -> np.ndarray:
    """``l{k}_res_er`` from ``get('l1_mkt_er' | 'l2_sec_er' | 'l3_sub_er')``: 1 − R² of the level.

    R² ≤ 1 exactly, so anything below 0 is rounding (e.g. SPY on itself) and is clipped.
    """
    if name == "l1_res_er":
        return np.maximum(1.0 - get("l1_mkt_er"), 0.0)
    if name == "l2_res_er":
        return np.maximum(1.0 - get("l1_mkt_er") - get("l2_sec_er"), 0.0)
    if name == "l3_res_er":
        return np.maximum(1.0 - get("l1_mkt_er") - get("l2_sec_er") - get("l3_sub_er"), 0.0)
    raise KeyError(name)
    return out


def check_normal_equations(cov: WindowCovariances, out: dict[str, np.ndarray], valid: np.ndarray,
                           tol: float = 1e-7) -> None:
    """Build-time identity: the negated L3 hedge ratios solve the RAW-ETF normal equations.

    For every usable factor k: Σ_j Cov(f_k, f_j)·(−HR_j) = Cov(f_k, r), i.e. the hedged return
    r + Σ HR_j·f_j is uncorrelated with every raw ETF in the window, and its variance share
    equals l3_res_er. Residuals are scaled to correlation units; raises IdentityViolation.
    """
    c = cov
    b = (-out["l3_mkt_hr"], -out["l3_sec_hr"], -out["l3_sub_hr"])
    rows = (
        ("market", (c.c_mm, c.c_ms, c.c_mu), c.c_rm, c.c_mm, np.ones_like(valid)),
        ("sector", (c.c_ms, c.c_ss, c.c_su), c.c_rs, c.c_ss, (out["l2_sec_beta"] != 0)),
        ("subsector", (c.c_mu, c.c_su, c.c_uu), c.c_ru, c.c_uu, (out["l3_sub_beta"] != 0)),
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        scale_r = np.sqrt(np.maximum(c.c_rr, ZERO_VARIANCE))
        for name, coefs, target, var_k, active in rows:
            lhs = coefs[0] * b[0] + coefs[1] * b[1] + coefs[2] * b[2]
            resid = np.abs(lhs - target) / (np.sqrt(np.maximum(var_k, ZERO_VARIANCE)) * scale_r)
            bad = valid & active & (resid > tol)
            if np.any(bad):
                worst = float(np.nanmax(np.where(bad, resid, 0.0)))
                raise IdentityViolation(
                    f"replication identity failed for the {name} ETF leg on {int(bad.sum())} "
                    f"stock-days (worst scaled residual {worst:.2e} > {tol:.0e}); refusing to publish")
        # Shares: explained variance of the raw-ETF hedge equals the sum of orthogonal shares.
        explained = sum(b[i] * (rows[i][1][0] * b[0] + rows[i][1][1] * b[1] + rows[i][1][2] * b[2])
                        for i in range(3))
        er_raw = explained / np.maximum(c.c_rr, ZERO_VARIANCE)
        er_sum = out["l3_mkt_er"] + out["l3_sec_er"] + out["l3_sub_er"]
        bad = valid & (np.abs(er_raw - er_sum) > 1e-9)
        if np.any(bad):
            raise IdentityViolation(
                f"explained-risk shares disagree with the raw-ETF hedge on {int(bad.sum())} stock-days; "
                "refusing to publish")
