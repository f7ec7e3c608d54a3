"""Risk-model validation: bias statistics, MRAD, QLIKE, stability, VIF, and the report."""

import numpy as np
import pandas as pd
import pytest

from riskstrata.errors import DataValidationError
from riskstrata.factors.validation import (
    ValidationReport,
    bias_band,
    bias_statistic,
    mrad,
    qlike,
    rolling_bias,
    stability_coefficient,
    validation_report,
    vif,
)


def _forecast_and_returns(T: int, seed: int, P: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Returns drawn N(0, σ_t²) with a time-varying σ_t (a volatility regime), and σ_t itself."""
    rng = np.random.default_rng(seed)
    shape = (T,) if P is None else (T, P)
    sigma = 0.01 * np.exp(0.5 * np.sin(np.linspace(0, 6 * np.pi, T)))
    sigma = sigma if P is None else np.tile(sigma[:, None], (1, P))
    return sigma * rng.standard_normal(shape), sigma


# --- bias statistic -----------------------------------------------------------------------------

def test_bias_band_is_one_plus_minus_root_two_over_T():
    lo, hi = bias_band(200)
    assert lo == pytest.approx(1 - np.sqrt(2 / 200))
    assert hi == pytest.approx(1 + np.sqrt(2 / 200))
    assert bias_band(2) == pytest.approx((0.0, 2.0))
    with pytest.raises(ValueError):
        bias_band(0)


def test_correct_forecasts_give_a_bias_statistic_near_one_inside_the_band_on_most_samples():
    T = 250
    r, sigma = _forecast_and_returns(T, seed=1, P=400)  # 400 independent samples of T days
    b = bias_statistic(r, sigma)
    assert b.shape == (400,)
    assert np.mean(b) == pytest.approx(1.0, abs=0.01)
    lo, hi = bias_band(T)
    inside = np.mean((b >= lo) & (b <= hi))
    assert inside >= 0.9, f"only {inside:.0%} of correctly forecast samples inside the band"


def test_forecasts_twice_too_small_give_a_bias_statistic_near_two():
    r, sigma = _forecast_and_returns(5000, seed=2)
    b = bias_statistic(r, sigma / 2)
    assert b.shape == ()
    assert float(b) == pytest.approx(2.0, abs=0.06)


def test_bias_statistic_is_nan_aware_and_skips_missing_or_zero_forecasts():
    r, sigma = _forecast_and_returns(1000, seed=3)
    full = bias_statistic(r, sigma)
    r2, s2 = r.copy(), sigma.copy()
    r2[::7] = np.nan
    s2[3::11] = 0.0
    keep = np.isfinite(r2) & (s2 > 0)
    assert float(bias_statistic(r2, s2)) == pytest.approx(np.std(r[keep] / sigma[keep], ddof=1))
    assert np.isfinite(full)
    assert np.isnan(bias_statistic(np.array([0.01]), np.array([0.01])))  # one pair: undefined


def test_bias_statistic_rejects_mismatched_shapes():
    with pytest.raises(DataValidationError):
        bias_statistic(np.zeros(5), np.ones(6))


# --- rolling bias and MRAD ----------------------------------------------------------------------

def test_rolling_bias_matches_the_bias_statistic_of_each_window():
    r, sigma = _forecast_and_returns(400, seed=4)
    rb = rolling_bias(r, sigma, window=100)
    assert rb.shape == r.shape
    assert np.isnan(rb[:49]).all()  # fewer than window // 2 observations
    for t in (99, 250, 399):
        assert rb[t] == pytest.approx(float(bias_statistic(r[t - 99:t + 1], sigma[t - 99:t + 1])))


def test_mrad_of_perfect_forecasts_is_small_and_of_biased_ones_large():
    r, sigma = _forecast_and_returns(3000, seed=5)
    good = mrad(r, sigma, window=252)
    assert good < 0.06  # sampling noise of a 252-day bias statistic is ≈ 0.045
    assert mrad(r, sigma * 0.5, window=252) > 0.8


def test_mrad_penalises_errors_that_cancel_in_the_full_sample():
    # Too high in the first half, too low in the second: the full-sample bias can look fine.
    r, sigma = _forecast_and_returns(4000, seed=6)
    wrong = sigma * np.where(np.arange(4000) < 2000, 1.4, 0.75)
    assert mrad(r, wrong, window=252) > 3 * mrad(r, sigma, window=252)


# --- QLIKE --------------------------------------------------------------------------------------

def test_qlike_worked_example():
    # r² = h exactly: loss 0. h = 2 r²: 1/2 − log(1/2) − 1 = log 2 − 1/2.
    assert qlike(np.array([0.02]), np.array([0.0004])) == pytest.approx(0.0, abs=1e-12)
    assert qlike(np.array([0.02]), np.array([0.0008])) == pytest.approx(np.log(2) - 0.5)
    both = qlike(np.array([0.02, 0.02, np.nan]), np.array([0.0004, 0.0008, 0.0004]))
    assert both == pytest.approx((np.log(2) - 0.5) / 2)


def test_qlike_is_minimal_at_the_true_variance():
    r, sigma = _forecast_and_returns(20000, seed=7)
    scales = np.array([0.5, 0.7, 0.85, 1.0, 1.2, 1.5, 2.0])
    losses = [qlike(r, c * sigma**2) for c in scales]
    assert scales[int(np.argmin(losses))] == 1.0


def test_qlike_floors_a_zero_return_instead_of_returning_infinity():
    assert np.isfinite(qlike(np.array([0.0, 0.01]), np.array([1e-4, 1e-4])))


# --- stability coefficient and VIF --------------------------------------------------------------

def test_stability_coefficient_of_identical_exposures_is_one():
    rng = np.random.default_rng(8)
    x = rng.standard_normal(500)
    caps = rng.lognormal(22, 1.5, 500)
    assert stability_coefficient(x, x, caps) == pytest.approx(1.0)
    assert stability_coefficient(x, -x, caps) == pytest.approx(-1.0)


def test_stability_coefficient_is_cap_weighted_and_skips_missing_names():
    x = np.array([1.0, -1.0, 0.5, -0.5, np.nan])
    y = np.array([1.0, -1.0, -0.5, 0.5, 3.0])
    # The two big names agree, the two small ones disagree: cap weighting favours the big.
    big_first = stability_coefficient(x, y, np.array([100.0, 100.0, 1.0, 1.0, 1.0]))
    small_first = stability_coefficient(x, y, np.array([1.0, 1.0, 100.0, 100.0, 1.0]))
    assert big_first > 0.9 and small_first < 0


def test_vif_of_weighted_orthogonal_columns_is_one():
    rng = np.random.default_rng(9)
    N = 300
    w = rng.uniform(0.5, 2.0, N)
    # Columns orthogonal (and mean 0) under the weights: QR of a √w-scaled, centred matrix.
    A = rng.standard_normal((N, 3))
    A = np.c_[np.sqrt(w), A]
    Q, _ = np.linalg.qr(A * 1.0)
    X = Q[:, 1:] / np.sqrt(w)[:, None]
    np.testing.assert_allclose(vif(X, w), 1.0, atol=1e-9)


def test_vif_of_nearly_collinear_columns_is_large():
    rng = np.random.default_rng(10)
    N = 400
    a, c = rng.standard_normal(N), rng.standard_normal(N)
    X = np.c_[a, a + 0.01 * rng.standard_normal(N), c]
    v = vif(X, np.ones(N))
    assert v[0] > 1000 and v[1] > 1000
    assert v[2] < 1.1


def test_vif_of_a_constant_column_is_undefined_and_it_is_ignored_as_a_regressor():
    rng = np.random.default_rng(11)
    X = np.c_[np.ones(200), rng.standard_normal((200, 2))]
    v = vif(X, np.ones(200))
    assert np.isnan(v[0]) and np.all(v[1:] < 1.1)


# --- the report on a simulated factor model -----------------------------------------------------

def simulated_model(T: int = 700, N: int = 400, seed: int = 12, regime: bool = False):
    """A factor model whose truth is known: market + 2 styles + 3 industries.

    Factor returns f_t ~ N(0, c_t Σ), specific u_t ~ N(0, c_t s²); the forecasts handed to the
    report are exact, as of the close of t − 1: factor_cov[t − 1] = c_t Σ. With ``regime``
    c_t alternates between 1 and 4 day by day, so a report that used the forecast of the wrong
    day would see a bias statistic far from 1.
    """
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=T)
    factors = ["MARKET", "SIZE", "MOMENTUM", "TECH", "ENERGY", "UTILITIES"]
    K = len(factors)
    vols = np.array([0.010, 0.004, 0.005, 0.006, 0.007, 0.005])
    corr = np.full((K, K), 0.2) + 0.8 * np.eye(K)
    sigma = corr * np.outer(vols, vols)
    c = np.where(np.arange(T) % 2 == 0, 1.0, 4.0) if regime else np.ones(T)
    f = rng.multivariate_normal(np.zeros(K), sigma, size=T) * np.sqrt(c)[:, None]

    industry = rng.integers(0, 3, N)
    styles = rng.standard_normal((N, 2))
    X = np.empty((T, N, K))
    X[..., 0] = 1.0
    X[..., 1:3] = styles + 0.05 * rng.standard_normal((T, N, 2)).cumsum(axis=0) / np.sqrt(T)
    X[..., 3:] = np.eye(3)[industry]
    X[:50, :20] = np.nan  # some names enter the universe late

    spec_vol = rng.uniform(0.01, 0.03, N)
    u = rng.standard_normal((T, N)) * spec_vol * np.sqrt(c)[:, None]
    u[:51, :20] = np.nan

    c_next = np.r_[c[1:], c[-1]]  # the forecast made at t is for t + 1
    factor_cov = sigma[None] * c_next[:, None, None]
    specific_var = np.tile(spec_vol**2, (T, 1)) * c_next[:, None]
    caps = np.tile(rng.lognormal(22, 1.5, N), (T, 1))
    tickers = [f"S{i:03d}" for i in range(N)]
    return {
        "factor_returns": pd.DataFrame(f, index=dates, columns=factors),
        "factor_cov": factor_cov,
        "specific_returns": pd.DataFrame(u, index=dates, columns=tickers),
        "specific_var": pd.DataFrame(specific_var, index=dates, columns=tickers),
        "exposures": X,
        "caps": pd.DataFrame(caps, index=dates, columns=tickers),
    }


@pytest.fixture(scope="module")
def report() -> ValidationReport:
    model = simulated_model()
    r2 = pd.Series(np.linspace(0.2, 0.4, 700), index=model["factor_returns"].index)
    return validation_report(**model, r2=r2)


def test_report_pure_factor_bias_statistics_are_inside_the_band_for_most_factors(report):
    factors = report.table[report.table["group"] == "factor"]
    assert list(factors["name"]) == ["MARKET", "SIZE", "MOMENTUM", "TECH", "ENERGY", "UTILITIES"]
    assert (factors["n_obs"] == 699).all()  # T − 1: the first day has no forecast before it
    assert factors["inside_band"].mean() >= 0.8, factors[["name", "bias", "band_lo", "band_hi"]]
    assert np.allclose(factors["bias"], 1.0, atol=0.1)


def test_report_random_active_portfolios_are_inside_the_band(report):
    row = report.table.set_index("group").loc["random_active"]
    assert row["inside_band"], row
    assert row["share_inside"] >= 0.8
    assert len(report.random_active) == 100
    assert report.random_active["n_obs"].min() == 699


def test_report_specific_portfolios_have_a_median_bias_near_one(report):
    row = report.table.set_index("group").loc["specific"]
    assert row["bias"] == pytest.approx(1.0, abs=0.03)
    assert row["share_inside"] >= 0.85
    assert len(report.specific) == 400
    assert report.specific["n_obs"].min() == 699 - 50  # late entrants counted from their first day


def test_report_exposure_diagnostics_cover_styles_only_for_vif(report):
    t = report.table.set_index("name")
    assert np.isnan(t.loc["MARKET", "vif"]) and np.isnan(t.loc["TECH", "vif"])
    assert t.loc["SIZE", "vif"] == pytest.approx(1.0, abs=0.1)
    assert t.loc["SIZE", "stability"] > 0.95  # slowly drifting exposures
    assert t.loc["TECH", "stability"] == pytest.approx(1.0)  # no reclassification
    assert np.isnan(t.loc["MARKET", "stability"])  # a constant has no correlation


def test_report_carries_mrad_qlike_and_mean_r2_and_prints(report):
    assert report.mean_r2 == pytest.approx(0.3)
    assert report.table["mrad"].notna().all() and (report.table["mrad"] < 0.1).all()
    assert report.table["qlike"].notna().all()
    text = report.to_text()
    assert "1 ± √(2/T)" in text and "inside" in text and "mean R²: 0.300" in text
    assert "random active portfolios: median bias" in text


def test_report_judges_returns_on_t_against_forecasts_made_at_t_minus_one():
    # Volatility alternates day by day: only the correctly lagged forecast gives bias ≈ 1.
    model = simulated_model(T=500, N=150, seed=13, regime=True)
    good = validation_report(**model, n_random_portfolios=20)
    assert good.table.set_index("group").loc["random_active", "bias"] == pytest.approx(1.0, abs=0.08)
    assert good.table.set_index("group").loc["specific", "bias"] == pytest.approx(1.0, abs=0.05)
    # Hand the report forecasts for t stored on row t (one day too late): the bias is far off.
    shifted = dict(model, factor_cov=np.roll(model["factor_cov"], 1, axis=0),
                   specific_var=model["specific_var"].shift(1))
    bad = validation_report(**shifted, n_random_portfolios=20)
    assert abs(bad.table.set_index("group").loc["specific", "bias"] - 1.0) > 0.2


def test_report_accepts_a_covariance_callable():
    model = simulated_model(T=300, N=100, seed=14)
    stack = model["factor_cov"]
    dates = model["factor_returns"].index
    as_callable = dict(model, factor_cov=lambda d: None if d == dates[0] else stack[dates.get_loc(d)])
    rep = validation_report(**as_callable, n_random_portfolios=10)
    ref = validation_report(**dict(model, factor_cov=np.where(np.arange(300)[:, None, None] == 0, np.nan, stack)),
                            n_random_portfolios=10)
    pd.testing.assert_frame_equal(rep.table, ref.table)
    assert (rep.table.loc[rep.table["group"] == "factor", "n_obs"] == 298).all()


def test_report_rejects_misshapen_inputs():
    model = simulated_model(T=60, N=30, seed=15)
    with pytest.raises(DataValidationError, match="exposures"):
        validation_report(**dict(model, exposures=model["exposures"][:, :, :3]))
    with pytest.raises(DataValidationError, match="specific_var"):
        validation_report(**dict(model, specific_var=model["specific_var"].iloc[:, :10]))


def test_random_active_portfolios_keep_the_days_a_style_is_not_estimated():
    """A style missing for 100 days (its return NaN, its effect in the specific returns, no
    exposures and no forecast) leaves those days judged on the other factors."""
    model = simulated_model(T=400, N=300)
    f = model["factor_returns"].to_numpy().copy()
    X = model["exposures"].copy()
    gap = slice(200, 300)
    u = model["specific_returns"].to_numpy().copy()
    u[gap] += X[199:299, :, 1] * f[gap, 1][:, None]     # the regression leaves SIZE's effect in u
    f[gap, 1] = np.nan
    X[199:299, :, 1] = np.nan
    cov = model["factor_cov"].copy()
    cov[199:299, 1, :] = cov[199:299, :, 1] = np.nan
    report = validation_report(model["factor_returns"].__class__(f, index=model["factor_returns"].index,
                                                                 columns=model["factor_returns"].columns),
                               cov, pd.DataFrame(u, index=model["specific_returns"].index,
                                                 columns=model["specific_returns"].columns),
                               model["specific_var"], X, model["caps"], n_random_portfolios=30)
    assert report.random_active["n_obs"].min() == 399
    row = report.table.set_index("name").loc["SIZE"]
    assert row["n_obs"] == 399 - 100
    assert report.table.set_index("group").loc["random_active", "inside_band"]
