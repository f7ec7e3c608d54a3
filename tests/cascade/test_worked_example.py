"""SPEC §2 worked example: β .50/.30/.20 with link betas .60/.40/.70 → L3 HRs −0.324/−0.16/−0.20."""

import numpy as np
import pandas as pd
import pytest

from riskstrata.cascade import fit_cascade
from riskstrata.cascade.kernel import WindowCovariances, solve_cascade


def _exactly_orthogonal(T: int, k: int, seed: int = 1) -> np.ndarray:
    """k demeaned series orthogonal in the sample (so the window regression is exact)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(T, k))
    x -= x.mean(axis=0)
    q, _ = np.linalg.qr(x)
    return q * 0.01 * np.sqrt(T)


def test_worked_example_hedge_ratios_from_the_formulas():
    # Covariances implied by orthogonal factors with unit variances and the given link betas.
    lam_sm, lam_um, lam_us = 0.60, 0.40, 0.70
    b_m, b_s, b_u = 0.50, 0.30, 0.20
    v_m = v_s = v_u = 1.0
    # s = λ_sm m + s*, u = λ_um m + λ_us s* + u*, r = b_m m + b_s s* + b_u u*
    c = WindowCovariances(
        c_mm=np.array([[v_m]]), c_ms=np.array([[lam_sm * v_m]]), c_mu=np.array([[lam_um * v_m]]),
        c_ss=np.array([[lam_sm**2 * v_m + v_s]]), c_su=np.array([[lam_sm * lam_um * v_m + lam_us * v_s]]),
        c_uu=np.array([[lam_um**2 * v_m + lam_us**2 * v_s + v_u]]),
        c_rm=np.array([[b_m * v_m]]), c_rs=np.array([[b_m * lam_sm * v_m + b_s * v_s]]),
        c_ru=np.array([[b_m * lam_um * v_m + b_s * lam_us * v_s + b_u * v_u]]),
        c_rr=np.array([[b_m**2 * v_m + b_s**2 * v_s + b_u**2 * v_u + 1.0]]))
    out = solve_cascade(c)
    assert out["l3_mkt_hr"][0, 0] == pytest.approx(-0.324, abs=1e-12)
    assert out["l3_sec_hr"][0, 0] == pytest.approx(-0.16, abs=1e-12)
    assert out["l3_sub_hr"][0, 0] == pytest.approx(-0.20, abs=1e-12)
    assert out["l2_mkt_hr"][0, 0] == pytest.approx(-0.5 + 0.3 * 0.6, abs=1e-12)
    assert out["l1_mkt_hr"][0, 0] == pytest.approx(-0.5, abs=1e-12)
    assert (out["l1_mkt_beta"][0, 0], out["l2_sec_beta"][0, 0], out["l3_sub_beta"][0, 0]) == pytest.approx((0.5, 0.3, 0.2))


def test_worked_example_end_to_end_through_fit_cascade():
    T = 252
    m, s_star, u_star = _exactly_orthogonal(T, 3).T
    dates = pd.bdate_range("2020-01-01", periods=T)
    etf = pd.DataFrame({"SPY": m, "XLK": 0.6 * m + s_star, "SOXX": 0.4 * m + 0.7 * s_star + u_star}, index=dates)
    r = pd.DataFrame({"NVDA": 0.5 * m + 0.3 * s_star + 0.2 * u_star + 0.0001}, index=dates)
    res = fit_cascade(r, etf, pd.DataFrame({"sector_etf": ["XLK"], "subsector_etf": ["SOXX"]}, index=["NVDA"]))
    snap = res.snapshot()
    assert snap.loc["NVDA", ["l3_mkt_hr", "l3_sec_hr", "l3_sub_hr"]].tolist() == pytest.approx([-0.324, -0.16, -0.20], abs=1e-10)
    # No noise: the L3 hedge explains everything.
    assert snap.loc["NVDA", "l3_res_er"] == pytest.approx(0.0, abs=1e-10)
    lb = res.link_betas.dropna().iloc[-1]
    assert (lb.lambda_sm, lb.lambda_um, lb.lambda_us) == pytest.approx((0.6, 0.4, 0.7), abs=1e-10)
