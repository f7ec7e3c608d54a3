"""Every estimate equals an independent statsmodels regression on the same window, to 1e-8."""

import numpy as np
import pytest
import statsmodels.api as sm

from riskstrata.cascade import fit_cascade
from tests.cascade.helpers import toy_market


def assert_matches_statsmodels(res, returns, etf, assignments, picks, window, weights=None, tol=1e-8):
    """For each (ticker, row) pick: raw-ETF OLS/WLS → −HR at every level; orthogonal OLS → betas, R²."""
    for ticker, t in picks:
        sec, sub = assignments.loc[ticker, ["sector_etf", "subsector_etf"]]
        lo = max(0, t - window + 1)
        y = returns[ticker].iloc[lo:t + 1]
        X = etf[["SPY", sec, sub]].iloc[lo:t + 1]
        ok = y.notna() & X.notna().all(axis=1)
        w = None if weights is None else weights[-len(y):][ok.to_numpy()]
        y, X = y[ok], X[ok]

        def fit(cols):
            design = sm.add_constant(X[cols].to_numpy())
            model = sm.OLS(y.to_numpy(), design) if w is None else sm.WLS(y.to_numpy(), design, weights=w)
            return model.fit()

        snap = res.snapshot(returns.index[t]).loc[ticker]
        l1, l2, l3 = fit(["SPY"]), fit(["SPY", sec]), fit(["SPY", sec, sub])
        assert -snap.l1_mkt_hr == pytest.approx(l1.params[1], abs=tol)
        assert [-snap.l2_mkt_hr, -snap.l2_sec_hr] == pytest.approx(list(l2.params[1:]), abs=tol)
        assert [-snap.l3_mkt_hr, -snap.l3_sec_hr, -snap.l3_sub_hr] == pytest.approx(list(l3.params[1:]), abs=tol)
        assert 1 - snap.l1_res_er == pytest.approx(l1.rsquared, abs=tol)
        assert 1 - snap.l2_res_er == pytest.approx(l2.rsquared, abs=tol)
        assert 1 - snap.l3_res_er == pytest.approx(l3.rsquared, abs=tol)
        # The orthogonalised regression: s* = s − λ_sm m, u* = u − λ_um m − λ_us s* in the window.
        m_, s_, u_ = (X[c].to_numpy() for c in ("SPY", sec, sub))
        sw = np.ones_like(m_) if w is None else w
        lam_sm = sm.WLS(s_, sm.add_constant(m_), weights=sw).fit().params[1]
        s_star = s_ - lam_sm * m_
        lam = sm.WLS(u_, sm.add_constant(np.column_stack([m_, s_star])), weights=sw).fit().params
        u_star = u_ - lam[1] * m_ - lam[2] * s_star
        orth = sm.WLS(y.to_numpy(), sm.add_constant(np.column_stack([m_, s_star, u_star])), weights=sw).fit()
        assert [snap.l1_mkt_beta, snap.l2_sec_beta, snap.l3_sub_beta] == pytest.approx(list(orth.params[1:]), abs=tol)
        assert [snap.lambda_sm, snap.lambda_um, snap.lambda_us] == pytest.approx([lam_sm, lam[1], lam[2]], abs=tol)


def test_uniform_window_equals_statsmodels_ols_on_raw_and_orthogonal_etfs():
    returns, etf, asg, _ = toy_market(T=500, N=8)
    returns.iloc[:150, 2] = np.nan          # listed late
    returns.iloc[[300, 301, 420], 3] = np.nan  # missing days
    res = fit_cascade(returns, etf, asg, window=120)
    rng = np.random.default_rng(3)
    picks = [(returns.columns[j], int(t)) for j, t in zip(rng.integers(0, 8, 25), rng.integers(200, 500, 25))]
    picks += [("T02", 260), ("T03", 430)]
    assert_matches_statsmodels(res, returns, etf, asg, picks, window=120)


def test_exponential_weights_equal_statsmodels_wls():
    returns, etf, asg, _ = toy_market(T=400, N=4, seed=5)
    halflife, window = 30.0, 150
    res = fit_cascade(returns, etf, asg, window=window, halflife=halflife)
    weights = 0.5 ** (np.arange(window)[::-1] / halflife)  # oldest first, newest weight 1
    picks = [("T00", 399), ("T01", 250), ("T03", 320)]
    assert_matches_statsmodels(res, returns, etf, asg, picks, window=window, weights=weights)
