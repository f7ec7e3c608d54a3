"""Ground truth: on the synthetic market the cascade recovers the betas and hedges it was built from."""

import numpy as np
import pytest

from riskstrata.cascade import fit_cascade
from riskstrata.data.synthetic import synthetic_market


@pytest.fixture(scope="module")
def market_and_fit():
    market = synthetic_market(n_stocks=200, n_days=252 * 4, seed=3)
    res = fit_cascade(market.returns, market.etf_returns, market.assignments, window=504)
    return market, res


def test_betas_on_orthogonal_factors_are_recovered(market_and_fit):
    market, res = market_and_fit
    snap = res.snapshot()
    alive = snap["l1_mkt_beta"].notna()
    truth = market.truth.loc[alive[alive].index]
    est = snap.loc[truth.index]
    assert alive.sum() > 150
    # Sampling error alone (residual vols up to 45%, two years of data) puts this near 0.93.
    assert np.corrcoef(est["l1_mkt_beta"], truth["beta_mkt"])[0, 1] > 0.9
    assert np.median(np.abs(est["l1_mkt_beta"] - truth["beta_mkt"])) < 0.1  # ≈ 0.67 × se
    has_sub = truth["beta_sub"] != 0
    assert np.corrcoef(est.loc[has_sub, "l3_sub_beta"], truth.loc[has_sub, "beta_sub"])[0, 1] > 0.9
    assert np.corrcoef(est["l2_sec_beta"], truth["beta_sec"])[0, 1] > 0.9


def test_hedge_ratios_on_raw_etfs_are_recovered(market_and_fit):
    market, res = market_and_fit
    snap = res.snapshot().dropna(subset=["l3_mkt_hr"])
    true_hr = market.true_hedge_ratios().loc[snap.index]
    for field in ("l1_mkt_hr", "l2_mkt_hr", "l2_sec_hr", "l3_mkt_hr", "l3_sec_hr", "l3_sub_hr"):
        err = np.median(np.abs(snap[field] - true_hr[field]))
        assert err < 0.1, f"{field}: median abs error {err:.3f}"


def test_link_betas_match_the_generator(market_and_fit):
    market, res = market_and_fit
    last = res.link_betas.dropna(subset=["lambda_sm"]).groupby("sector_etf").last()
    truth = market.link_betas
    common = last.index.intersection(truth.index)
    assert len(common) >= 5
    assert np.max(np.abs(last.loc[common, "lambda_sm"] - truth.loc[common, "lambda_sm"])) < 0.15


def test_market_beta_errors_are_the_size_sampling_theory_predicts(market_and_fit):
    """(β̂ − β)/se is ~N(0, 1): nearly all within 3.5, spread near 1 — unbiased, honest precision."""
    market, res = market_and_fit
    snap = res.snapshot().dropna(subset=["l1_mkt_beta"])
    var_m = float(np.var(market.etf_returns["SPY"].iloc[-504:]))
    resid_var = snap["l3_res_er"] * snap["stock_var"]
    se = np.sqrt(resid_var / (snap["n_obs"] * var_m))
    z = (snap["l1_mkt_beta"] - market.truth.loc[snap.index, "beta_mkt"]) / se
    assert np.mean(np.abs(z) < 3.5) > 0.98
    assert 0.7 < np.std(z) < 1.3
    assert abs(np.mean(z)) < 0.3
