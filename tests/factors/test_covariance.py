"""Factor covariance: EWMA + Newey–West kernel, eigenfactor adjustment, VRA, PSD, performance."""

import itertools

import numpy as np
import pandas as pd
import pytest

from riskstrata.errors import DataValidationError, DateOutOfRange, InsufficientHistory
from riskstrata.factors.covariance import (
    CovarianceParams,
    WishartDraws,
    eigen_bias,
    ewma_newey_west,
    ewma_newey_west_variance,
    factor_covariance,
)

K = 21


def true_covariance(k: int = K, seed: int = 0) -> np.ndarray:
    """A factor-model-like truth: three common drivers, daily vols 0.2%–1.2%."""
    rng = np.random.default_rng(seed)
    loadings = rng.standard_normal((k, 3)) * 0.6
    c = loadings @ loadings.T + np.diag(rng.uniform(0.3, 1.0, k))
    sd = np.sqrt(np.diag(c))
    vol = rng.uniform(0.002, 0.012, k)
    return c / np.outer(sd, sd) * np.outer(vol, vol)


def simulated_returns(T: int, cov: np.ndarray, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.multivariate_normal(np.zeros(len(cov)), cov, size=T)
    return pd.DataFrame(x, index=pd.bdate_range("2010-01-04", periods=T), columns=[f"F{i}" for i in range(len(cov))])


def loop_ewma_newey_west(x: np.ndarray, t: int, halflife: float, lags: int) -> np.ndarray:
    """The documented estimator at one date, written out term by term (NaN = pair not observed)."""
    xs = x[: t + 1]
    w = 0.5 ** ((t - np.arange(t + 1)) / halflife)
    obs = np.isfinite(xs)
    W = (w[:, None] * obs).sum(axis=0)
    mu = np.nansum(w[:, None] * np.where(obs, xs, 0), axis=0) / W
    k = x.shape[1]
    out = np.zeros((k, k))
    for lag in range(lags + 1):
        g = np.zeros((k, k))
        for i in range(k):
            for j in range(k):
                for s in range(lag, t + 1):
                    if obs[s, i] and obs[s - lag, j]:
                        g[i, j] += w[s] * (xs[s, i] - mu[i]) * (xs[s - lag, j] - mu[j])
                g[i, j] /= np.sqrt(W[i] * W[j])
        out += g if lag == 0 else (1 - lag / (lags + 1)) * (g + g.T)
    return out


# --- the EWMA + Newey–West kernel -------------------------------------------------------------

def test_ewma_without_lags_is_numpys_weighted_covariance():
    x = np.random.default_rng(3).standard_normal((80, 4))
    cov = ewma_newey_west(x, halflife=12.0, lags=0)
    for t in (5, 40, 79):
        w = 0.5 ** ((t - np.arange(t + 1)) / 12.0)
        expected = np.cov(x[: t + 1].T, aweights=w, bias=True)
        assert np.max(np.abs(cov[t] - expected)) < 1e-12, f"date {t}"


def test_newey_west_adds_bartlett_weighted_autocovariances_as_in_a_direct_loop():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 3))
    x[1:] += 0.4 * x[:-1]  # serial correlation, so the lag terms matter
    x[:7, 2] = np.nan       # a factor that starts late …
    x[[12, 20], 1] = np.nan  # … and one not estimated on two days
    cov = ewma_newey_west(x, halflife=10.0, lags=3)
    for t in (9, 25, 39):
        assert np.max(np.abs(cov[t] - loop_ewma_newey_west(x, t, 10.0, 3))) < 1e-12, f"date {t}"
    assert not np.allclose(cov[39], ewma_newey_west(x, 10.0, 0)[39]), "lags changed nothing"


def test_missing_days_of_one_factor_leave_the_other_factors_untouched():
    x = np.random.default_rng(5).standard_normal((120, 4))
    holes = x.copy()
    holes[::7, 0] = np.nan
    full = ewma_newey_west(holes, 20.0, 2)
    assert np.max(np.abs(full[:, 1:, 1:] - ewma_newey_west(x[:, 1:], 20.0, 2))) < 1e-12
    assert np.isnan(ewma_newey_west(np.where(np.arange(120)[:, None] < 30, np.nan, x), 20.0, 2)[29]).all()


def test_variance_kernel_is_the_diagonal_of_the_covariance_kernel():
    x = np.random.default_rng(6).standard_normal((150, 5))
    x[:20, 3] = np.nan
    x[50:60, 1] = np.nan
    full = np.diagonal(ewma_newey_west(x, 30.0, 5), axis1=1, axis2=2)
    diag = ewma_newey_west_variance(x, 30.0, 5)
    assert np.allclose(full, diag, atol=1e-13, equal_nan=True)


# --- the estimator on data with a known covariance ----------------------------------------------

T_TRUTH = 1500


@pytest.fixture(scope="module")
def truth_case():
    cov = true_covariance()
    returns = simulated_returns(T_TRUTH, cov)
    # 200 draws: the truth tests are about the estimator; the draw count only sets MC noise
    params = CovarianceParams(eigen_sims=200)
    return cov, returns, params, factor_covariance(returns, params)


def test_adjusted_covariance_is_close_to_the_truth(truth_case):
    cov, _, _, res = truth_case
    rel = [np.linalg.norm(res.adjusted[t] - cov) / np.linalg.norm(cov) for t in range(300, T_TRUTH)]
    # an 84-day volatility half-life is worth ~240 observations: ~10% noise per variance
    assert np.mean(rel) < 0.25, f"mean relative Frobenius error {np.mean(rel):.3f}"
    sd_true = np.sqrt(np.diag(cov))
    sd = np.sqrt(np.diag(res.adjusted[-1]))
    corr_err = np.abs(res.adjusted[-1] / np.outer(sd, sd) - cov / np.outer(sd_true, sd_true))
    assert corr_err.max() < 0.12, f"worst correlation error {corr_err.max():.3f}"


def test_every_forecast_is_symmetric_psd_and_nan_only_before_min_obs(truth_case):
    _, _, params, res = truth_case
    assert res.adjusted.shape == res.raw.shape == (T_TRUTH, K, K)
    assert np.isnan(res.adjusted[: params.min_obs - 1]).all()
    later = res.adjusted[params.min_obs - 1:]
    assert np.isfinite(later).all()
    assert np.array_equal(later, later.transpose(0, 2, 1))
    assert np.linalg.eigvalsh(later).min() >= -1e-12


def test_standardised_factor_returns_have_unit_std_on_stationary_data(truth_case):
    """Bias statistic sanity: f_{t+1} / σ_t forecast has std ≈ 1 (band 1 ± √(2/T), ~3 bands here)."""
    _, returns, _, res = truth_case
    sigma = np.sqrt(np.diagonal(res.adjusted, axis1=1, axis2=2))
    z = returns.to_numpy()[1:] / sigma[:-1]
    z = z[100:]
    b = np.nanstd(z, axis=0)
    band = np.sqrt(2 / len(z))
    assert np.all(np.abs(b - 1) < 3 * band), f"bias statistics {np.round(b, 3)}"


def test_vra_lambda_is_about_one_on_stationary_data(truth_case):
    _, _, params, res = truth_case
    lam = res.vra_lambda[params.min_obs + 60:]
    assert abs(np.median(lam) - 1) < 0.05
    assert lam.min() > 0.85 and lam.max() < 1.15


def test_eigen_adjustment_runs_every_eigen_every_dates_and_is_reused_between(truth_case):
    _, _, params, res = truth_case
    first = params.min_obs - 1
    runs = np.flatnonzero(res.eigen_recomputed)
    assert runs[0] == first
    assert np.all(np.diff(runs) == params.eigen_every)
    assert res.eigen_applied[first:].all() and not res.eigen_applied[:first].any()
    for a, b in itertools.pairwise(runs):
        assert np.array_equal(res.eigen_bias[a:b], np.repeat(res.eigen_bias[a][None], b - a, axis=0))


def test_eigen_adjustment_raises_the_smallest_eigenvalues_most(truth_case):
    """MWO: sample covariances under-forecast their smallest eigenfactors, so v > 1 there."""
    _, _, _, res = truth_case
    v = res.eigen_bias[-1]
    assert v[0] > 1.0
    assert v[:5].mean() > v[-5:].mean()
    unscaled = res.adjusted[-1] / res.vra_lambda[-1] ** 2
    ratio = np.linalg.eigvalsh(unscaled) / np.linalg.eigvalsh(res.raw[-1])
    assert ratio[0] > ratio[-1]


def test_at_returns_the_labelled_matrix_on_or_before_a_date(truth_case):
    _, returns, _, res = truth_case
    frame = res.at(returns.index[-1] + pd.Timedelta(days=3))
    assert list(frame.index) == list(returns.columns) == list(frame.columns)
    assert np.array_equal(frame.to_numpy(), res.adjusted[-1])
    with pytest.raises(DateOutOfRange):
        res.at(returns.index[0] - pd.Timedelta(days=1))
    with pytest.raises(InsufficientHistory):
        res.at(returns.index[5])


def test_raw_takes_volatilities_from_the_short_and_correlations_from_the_long_half_life(truth_case):
    _, returns, params, res = truth_case
    x = returns.to_numpy()
    vol = ewma_newey_west(x, params.vol_halflife, params.vol_nw_lags)[-1]
    corr = ewma_newey_west(x, params.corr_halflife, params.corr_nw_lags)[-1]
    assert np.allclose(np.diag(res.raw[-1]), np.diag(vol), rtol=1e-12)
    sd, sd_c = np.sqrt(np.diag(res.raw[-1])), np.sqrt(np.diag(corr))
    assert np.allclose(res.raw[-1] / np.outer(sd, sd), corr / np.outer(sd_c, sd_c), rtol=1e-10)


def test_no_look_ahead_a_forecast_ignores_later_returns():
    returns = small_case(T=400)
    p = CovarianceParams(eigen_sims=200)
    full = factor_covariance(returns, p)
    cut = factor_covariance(returns.iloc[:250], p)
    assert np.allclose(cut.adjusted, full.adjusted[:250], rtol=1e-8, atol=0, equal_nan=True)
    assert np.array_equal(cut.eigen_recomputed, full.eigen_recomputed[:250])


# --- seeding, VRA after a jump, a late factor, bad input ---------------------------------------

def small_case(T: int = 300, k: int = 6, seed: int = 2) -> pd.DataFrame:
    return simulated_returns(T, true_covariance(k, seed), seed)


def test_eigen_adjustment_is_seeded_and_independent_of_threads():
    returns = small_case()
    p = CovarianceParams(eigen_sims=300, seed=11, workers=1)
    a = factor_covariance(returns, p)
    b = factor_covariance(returns, CovarianceParams(eigen_sims=300, seed=11, workers=4))
    c = factor_covariance(returns, CovarianceParams(eigen_sims=300, seed=12, workers=1))
    assert np.array_equal(a.adjusted, b.adjusted, equal_nan=True)
    assert not np.allclose(a.adjusted[-1], c.adjusted[-1], rtol=1e-9, atol=0)


def test_eigen_every_sets_the_recomputation_interval():
    returns = small_case()
    res = factor_covariance(returns, CovarianceParams(eigen_sims=100, eigen_every=21))
    assert np.all(np.diff(np.flatnonzero(res.eigen_recomputed)) == 21)
    none = factor_covariance(returns, CovarianceParams(eigen_sims=0))
    assert not none.eigen_applied.any()


def test_vra_lambda_rises_after_a_volatility_jump():
    returns = small_case(T=900, k=10)
    jumped = returns.copy()
    jumped.iloc[-120:] *= 2.0
    res = factor_covariance(jumped, CovarianceParams(eigen_sims=100))
    assert abs(res.vra_lambda[-121] - 1) < 0.15
    assert res.vra_lambda[-1] > 1.2, f"λ after the jump {res.vra_lambda[-1]:.3f}"


def test_a_factor_that_starts_late_gets_a_forecast_once_it_has_min_obs():
    returns = small_case(T=400)
    returns.iloc[:150, 2] = np.nan
    p = CovarianceParams(eigen_sims=100)
    res = factor_covariance(returns, p)
    ready = 150 + p.min_obs - 1
    assert np.isnan(res.adjusted[ready - 1][2]).all() and np.isfinite(res.adjusted[ready - 1][0, 0])
    assert np.isfinite(res.adjusted[ready:]).all()
    assert res.eigen_recomputed[ready], "the factor set changed: the simulation must rerun"


def test_a_factor_in_a_long_gap_has_no_forecast_and_restarts_from_its_peers_prior():
    c = true_covariance(6, seed=2)
    sd = np.sqrt(np.diag(c))
    vol = np.linspace(0.004, 0.006, 6)                 # peers of one kind: vols of one order
    returns = simulated_returns(700, c / np.outer(sd, sd) * np.outer(vol, vol), seed=2)
    gap = slice(300, 500)                              # factor 2 not estimated for 200 dates
    returns.iloc[gap, 2] = np.nan
    p = CovarianceParams(eigen_sims=0)
    res = factor_covariance(returns, p)
    t0 = 500
    # Through the gap: a forecast only while the last observation is < restart_gap rows old.
    assert np.isfinite(res.raw[299 + p.restart_gap - 1, 2, 2])
    assert np.isnan(res.raw[299 + p.restart_gap:t0, 2]).all() and np.isfinite(res.raw[299:t0, 0, 0]).all()
    # The first day back: the prior (median of the others' variance the day before,
    # restart_prior_obs pseudo-days, decayed one day) blended with that one day, by hand.
    prior = np.median(np.delete(np.diag(res.raw[t0 - 1]), 2))
    delta = 0.5 ** (1 / p.vol_halflife)
    P, y = p.restart_prior_obs * delta, returns.iloc[t0, 2]
    W = 1.0 + P
    mu = y / W
    want = ((y - mu) ** 2 + P * (prior + mu**2)) / W
    assert res.raw[t0, 2, 2] == pytest.approx(want, rel=1e-12)
    # The restarted forecast is neither stale nor collapsed: the returns after it are unit-scaled
    # (the true variance is within the peers' range), unlike a plain EWMA restarted from nothing.
    sd = np.sqrt(np.array([res.raw[t, 2, 2] for t in range(t0, 699)]))
    z = returns.iloc[t0 + 1:700, 2].to_numpy() / sd
    assert 0.6 < z[:21].std() < 1.6 and 0.8 < z.std() < 1.25
    for t in (t0, t0 + 5, 650):
        sub = res.adjusted[t]
        assert np.allclose(sub, sub.T) and np.linalg.eigvalsh(sub).min() > -1e-12


def test_a_short_gap_keeps_the_ewma_and_groups_pick_the_peers():
    returns = small_case(T=500, k=6)
    returns.iloc[300:310, 1] = np.nan                  # 10 dates < restart_gap: nothing restarts
    a = factor_covariance(returns, CovarianceParams(eigen_sims=0))
    full = ewma_newey_west(returns.to_numpy(), 84, 5)
    assert np.isfinite(a.raw[300:310, 1, 1]).all()
    assert a.raw[400, 1, 1] == pytest.approx(full[400, 1, 1], rel=1e-12)
    returns.iloc[200:400, 5] = np.nan
    g = factor_covariance(returns, CovarianceParams(eigen_sims=0), groups=["m", "s", "s", "i", "i", "i"])
    assert g.raw[400, 5, 5] != a.raw[400, 5, 5]
    with pytest.raises(DataValidationError, match="groups"):
        factor_covariance(returns, CovarianceParams(eigen_sims=0), groups=["m"])


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(DataValidationError):
        factor_covariance(pd.DataFrame(np.zeros((100, 2))))
    with pytest.raises(InsufficientHistory):
        factor_covariance(small_case(T=30))


# --- the eigen simulation itself ----------------------------------------------------------------

def test_wishart_draws_have_identity_mean():
    w = WishartDraws(4000, 5, seed=1).sample(5, 200.0)
    assert np.allclose(w.mean(axis=0), np.eye(5), atol=0.01)
    assert np.allclose(WishartDraws(4000, 5, seed=1).sample(5, 12.0).mean(axis=0), np.eye(5), atol=0.03)


def test_eigen_bias_vanishes_with_many_observations():
    d = np.array([1e-6, 4e-6, 2e-5, 1e-4])
    small = eigen_bias(d, 50.0, WishartDraws(2000, 4, 3))
    large = eigen_bias(d, 1e6, WishartDraws(2000, 4, 3))
    assert np.allclose(large, 1.0, atol=2e-3)
    assert small[0] > 1.01


# --- scale (run times: benchmarks/bench_unit_timings.py) ----------------------------------------

def test_k21_t2600_estimator_without_simulation_is_finite():
    returns = simulated_returns(2600, true_covariance())
    res = factor_covariance(returns, CovarianceParams(eigen_sims=0))
    assert np.isfinite(res.adjusted[-1]).all()


def test_eigen_simulation_runs_weekly():
    """The simulation is the only expensive part: (T / eigen_every) runs of M eigen-decompositions."""
    res = factor_covariance(simulated_returns(2600, true_covariance()), CovarianceParams(eigen_sims=10))
    assert res.eigen_recomputed.sum() == int(np.ceil((2600 - 62) / 5))
