"""Specific risk: EWMA + Newey–West per name, size-decile shrinkage, VRA, history rules."""


import numpy as np
import pandas as pd
import pytest

from riskstrata.errors import DataValidationError
from riskstrata.factors.specific import SpecificParams, shrink_to_size_deciles, specific_risk


def specific_market(T: int = 400, N: int = 200, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Specific returns N(0, σ_n²) with σ_n 1%–3% per day, caps log-uniform $0.3bn–$300bn."""
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(0.01, 0.03, N)
    dates = pd.bdate_range("2015-01-02", periods=T)
    names = [f"S{i:03d}" for i in range(N)]
    u = pd.DataFrame(rng.standard_normal((T, N)) * sigma, index=dates, columns=names)
    cap = np.exp(rng.uniform(np.log(3e8), np.log(3e11), N))
    caps = pd.DataFrame(np.tile(cap, (T, 1)), index=dates, columns=names)
    return u, caps, sigma


def test_forecast_is_finite_and_positive_exactly_where_a_name_has_min_obs():
    u, caps, _ = specific_market()
    u.iloc[:300, 0] = np.nan        # listed late: 100 observations
    u.iloc[:370, 1] = np.nan        # listed very late: 30 observations, never enough
    u.iloc[::3, 2] = np.nan         # gaps count as missing days, not as zeros
    p = SpecificParams()
    out = specific_risk(u, caps, p)
    enough = u.notna().cumsum() >= p.min_obs
    values = out.to_numpy()
    assert np.all(np.isfinite(values[enough.to_numpy()]))
    assert np.all(values[enough.to_numpy()] > 0)
    assert np.isnan(values[~enough.to_numpy()]).all()
    assert out["S001"].isna().all()
    assert out["S000"].first_valid_index() == u.index[300 + p.min_obs - 1]


def test_shrinkage_formula_on_a_worked_example():
    """One decile, equal caps: σ = 1%, 1%, 1%, 5% → σ̄ = 2%, Δσ = √3 %; the outlier gets
    v = 0.1·3 / (√3 + 0.1·3) = 0.1476 and σ = 0.1476·2% + 0.8524·5% = 4.557%."""
    sigma = np.array([[0.01, 0.01, 0.01, 0.05]])
    caps = np.ones((1, 4))
    out = shrink_to_size_deciles(sigma, caps, q=0.1, deciles=1)
    v = 0.003 / (np.sqrt(3e-4) + 0.003)
    assert out[0, 3] == pytest.approx(v * 0.02 + (1 - v) * 0.05, rel=1e-12)
    assert out[0, 3] == pytest.approx(0.04557, abs=1e-5)
    v_low = 0.001 / (np.sqrt(3e-4) + 0.001)
    assert out[0, 0] == pytest.approx(v_low * 0.02 + (1 - v_low) * 0.01, rel=1e-12)


def test_shrinkage_target_is_the_cap_weighted_mean_of_the_names_size_decile():
    # two deciles by cap: the small names shrink toward 2%, the large toward 1%, never across
    sigma = np.array([[0.02, 0.02, 0.04, 0.01, 0.01, 0.005]])
    caps = np.array([[1.0, 2.0, 3.0, 10.0, 20.0, 30.0]])
    out = shrink_to_size_deciles(sigma, caps, q=0.1, deciles=2)
    small_mean = (1 * 0.02 + 2 * 0.02 + 3 * 0.04) / 6
    large_mean = (10 * 0.01 + 20 * 0.01 + 30 * 0.005) / 60
    assert small_mean < out[0, 2] < 0.04
    assert 0.005 < out[0, 5] < large_mean
    unknown = shrink_to_size_deciles(sigma, np.array([[1.0, 2.0, np.nan, 10.0, 20.0, 30.0]]), 0.1, 2)
    assert unknown[0, 2] == 0.04, "a name without a cap is left as it is"


def test_shrinkage_pulls_an_outlier_toward_its_decile_in_the_full_forecast():
    u, caps, sigma = specific_market(T=300, N=200, seed=1)
    u["S005"] *= 5 * 0.02 / sigma[5]  # a 10%-a-day name among 1–3% peers
    shrunk = np.sqrt(specific_risk(u, caps, SpecificParams()).iloc[-1])
    plain = np.sqrt(specific_risk(u, caps, SpecificParams(shrink_q=0.0)).iloc[-1])
    assert shrunk["S005"] < 0.85 * plain["S005"], "the outlier was not pulled in"
    typical = (shrunk / plain).drop("S005")
    assert typical.median() == pytest.approx(1.0, abs=0.03), "ordinary names barely move"


def test_standardised_specific_returns_have_unit_std_on_stationary_data():
    u, caps, _ = specific_market(T=600, N=300, seed=2)
    out = specific_risk(u, caps)
    z = (u.to_numpy()[1:] / np.sqrt(out.to_numpy()[:-1]))[100:]
    b = np.nanstd(z, axis=0)
    assert abs(np.median(b) - 1) < 0.05, f"median bias statistic {np.median(b):.3f}"


def test_vra_raises_every_forecast_after_a_regime_shift():
    u, caps, _ = specific_market(T=500, N=200, seed=3)
    calm = specific_risk(u, caps)
    shocked_u = u.copy()
    shocked_u.iloc[-60:] *= 2.0
    shocked = specific_risk(shocked_u, caps)
    ratio = (shocked.iloc[-1] / calm.iloc[-1]).median()
    # the EWMA alone (half-life 84) would give ≈ 1 + 3·(1 − 0.5^(60/84)) ≈ 2.16 after 60 days
    assert ratio > 2.5, f"variance ratio after the shift {ratio:.2f}"


def test_no_look_ahead_a_forecast_ignores_later_returns_and_caps():
    u, caps, _ = specific_market(T=300, N=60, seed=5)
    full = specific_risk(u, caps)
    cut = specific_risk(u.iloc[:200], caps.iloc[:200])
    assert np.allclose(cut.to_numpy(), full.iloc[:200].to_numpy(), rtol=1e-9, equal_nan=True)


def test_degenerate_series_still_get_a_positive_forecast():
    u, caps, _ = specific_market(T=120, N=30)
    u["S000"] = 0.0
    caps.loc[:, "S000"] = np.nan
    out = specific_risk(u, caps)
    assert (out["S000"].iloc[60:] > 0).all() and np.isfinite(out["S000"].iloc[60:]).all()


def test_caps_are_aligned_by_label_and_bad_input_refused():
    u, caps, _ = specific_market(T=100, N=20)
    wider = caps.assign(EXTRA=1e9)[caps.columns[::-1].tolist() + ["EXTRA"]]
    assert specific_risk(u, wider).equals(specific_risk(u, caps))
    with pytest.raises(DataValidationError):
        specific_risk(u.iloc[::-1], caps)
    with pytest.raises(DataValidationError):
        specific_risk(u.to_numpy(), caps)

# Its speed on 3,000 names × ten years is measured in benchmarks/bench_unit_timings.py, not here.
