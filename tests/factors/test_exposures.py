"""Exposures: z-scores over the estimation universe, winsorising, imputation, blending, timing."""

from __future__ import annotations

import numpy as np
import pytest

from riskstrata.errors import DataValidationError
from riskstrata.factors.exposures import (
    MAD_TO_SIGMA,
    impute,
    industry_dummies,
    lag_one_day,
    standardise,
    style_exposure,
    winsorise,
)


@pytest.fixture()
def panel():
    """(T=6, N=400): lognormal caps (USD), a skewed descriptor, 85 % universe, 5 industries."""
    rng = np.random.default_rng(0)
    T, N = 6, 400
    cap = np.exp(rng.normal(22, 1.5, (T, N)))
    x = rng.lognormal(0, 1, (T, N)) + 0.3 * np.log(cap)
    x[rng.random((T, N)) < 0.05] = np.nan
    universe = rng.random((T, N)) < 0.85
    industry = rng.integers(-1, 5, (T, N))
    return x, cap, universe, industry


def universe_moments(z, cap, universe):
    """Per date: cap-weighted mean and equal-weighted (population) std over the universe."""
    out = []
    for t in range(z.shape[0]):
        m = universe[t] & np.isfinite(z[t])
        out.append((np.average(z[t, m], weights=cap[t, m]), np.std(z[t, m])))
    return np.array(out)


def test_standardise_gives_cap_weighted_mean_0_and_equal_weighted_std_1_on_every_date(panel):
    x, cap, universe, _ = panel
    z = standardise(x, cap, universe)
    moments = universe_moments(z, cap, universe)
    assert np.max(np.abs(moments[:, 0])) < 1e-12
    assert np.max(np.abs(moments[:, 1] - 1)) < 1e-12


def test_names_outside_the_universe_get_the_universe_mean_and_std(panel):
    x, cap, universe, _ = panel
    z = standardise(x, cap, universe)
    for t in range(x.shape[0]):
        inside = universe[t] & np.isfinite(x[t])
        mean = np.average(x[t, inside], weights=cap[t, inside])
        std = np.std(x[t, inside])
        outside = ~universe[t] & np.isfinite(x[t])
        np.testing.assert_allclose(z[t, outside], (x[t, outside] - mean) / std, rtol=1e-12)
    assert np.array_equal(np.isnan(z), np.isnan(x))


def test_a_date_without_dispersion_standardises_to_zero():
    x = np.full((1, 5), 3.0)
    z = standardise(x, np.ones((1, 5)), np.ones((1, 5), bool))
    assert np.array_equal(z, np.zeros((1, 5)))


def test_winsorise_clips_an_outlier_and_leaves_the_rest():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 200))
    x[0, 7] = 100.0
    x[1, 3] = np.nan
    w = winsorise(x)
    med = np.median(x[0])
    bound = med + 5 * MAD_TO_SIGMA * np.median(np.abs(x[0] - med))
    assert w[0, 7] == pytest.approx(bound) and bound < 10
    others = np.arange(200) != 7
    assert np.array_equal(w[0, others], x[0, others])
    assert np.isnan(w[1, 3]) and np.array_equal(w[1, np.arange(200) != 3], x[1, np.arange(200) != 3])


def test_winsorise_leaves_a_date_with_zero_mad_alone():
    x = np.array([[0.0, 0.0, 0.0, 0.0, 1.0, 50.0]])
    assert np.array_equal(winsorise(x), x)


def test_impute_fills_only_missing_universe_cells_and_flags_them(panel):
    x, cap, universe, industry = panel
    filled, mask = impute(x, industry, np.log(cap), universe)
    assert np.array_equal(mask, universe & np.isnan(x))
    assert np.isfinite(filled[mask]).all()
    kept = ~mask
    assert np.array_equal(filled[kept], x[kept], equal_nan=True)   # outside cells stay NaN


def test_impute_recovers_an_exact_industry_plus_size_relation(panel):
    _, cap, universe, industry = panel
    log_cap = np.log(cap)
    level = np.array([-0.5, 0.1, 0.4, -0.2, 0.8, 0.3])        # per industry code −1..4
    truth = level[industry + 1] + 0.25 * (log_cap - 22)
    x = truth.copy()
    hide = np.random.default_rng(2).random(x.shape) < 0.1
    x[hide] = np.nan
    filled, mask = impute(x, industry, log_cap, universe)
    np.testing.assert_allclose(filled[mask], truth[mask], rtol=0, atol=1e-10)


def test_impute_falls_back_to_the_industry_mean_then_zero():
    x = np.array([[1.0, 3.0, np.nan, 5.0, np.nan]])
    industry = np.array([[0, 0, 0, 1, 2]])
    log_cap = np.full((1, 5), np.nan)                   # no size: the regression cannot run
    filled, mask = impute(x, industry, log_cap, np.ones((1, 5), bool))
    assert filled[0, 2] == 2.0 and filled[0, 4] == 0.0 and mask.sum() == 2


def test_style_exposure_is_standardised_and_flags_only_names_without_any_descriptor(panel):
    x, cap, universe, industry = panel
    rng = np.random.default_rng(3)
    d2 = 0.5 * x + rng.normal(size=x.shape)
    d2[:, :10] = np.nan
    x = x.copy()
    x[:, 5:15] = np.nan                                  # names 5–9 have neither descriptor
    exposure, imputed = style_exposure({"a": x, "b": d2}, {"a": 2.0, "b": 1.0}, cap, universe,
                                       industry, np.log(cap))
    moments = universe_moments(exposure, cap, universe)
    assert np.max(np.abs(moments[:, 0])) < 1e-12 and np.max(np.abs(moments[:, 1] - 1)) < 1e-12
    assert np.array_equal(imputed, universe & np.isnan(x) & np.isnan(d2))
    assert np.isfinite(exposure[universe]).all()


def test_style_exposure_renormalises_the_blend_over_available_descriptors(panel):
    x, cap, universe, industry = panel
    d2 = np.random.default_rng(4).normal(size=x.shape)
    d2[:, 0] = np.nan
    exposure, _ = style_exposure({"a": x, "b": d2}, {"a": 2.0, "b": 1.0}, cap, universe, industry,
                                 np.log(cap))
    za, zb = (standardise(winsorise(d), cap, universe) for d in (x, d2))
    blend = np.where(np.isnan(zb), za, (2 * za + zb) / 3)   # name 0 has only descriptor a
    t = next(t for t in range(x.shape[0]) if universe[t, 0] and np.isfinite(x[t, 0]))
    # The re-standardisation is one affine map per date, shared by every name.
    others = universe[t] & np.isfinite(blend[t])
    slope, intercept = np.polyfit(blend[t, others], exposure[t, others], 1)
    assert exposure[t, 0] == pytest.approx(slope * blend[t, 0] + intercept, abs=1e-10)


def test_style_exposure_rejects_weights_for_missing_descriptors(panel):
    x, cap, universe, industry = panel
    with pytest.raises(DataValidationError, match="not given"):
        style_exposure({"a": x}, {"a": 1.0, "b": 1.0}, cap, universe, industry, np.log(cap))


def test_industry_dummies_are_one_hot_and_none_is_all_zero():
    industry = np.array([[0, 2, -1], [1, 1, 2]])
    d = industry_dummies(industry, 3)
    assert d.shape == (2, 3, 3) and d.dtype == np.float64
    assert np.array_equal(d[0, 0], [1, 0, 0]) and np.array_equal(d[0, 2], [0, 0, 0])
    assert np.array_equal(d.sum(axis=2), (industry >= 0).astype(float))
    with pytest.raises(DataValidationError):
        industry_dummies(np.array([[3]]), 3)


def test_lag_one_day_gives_row_t_the_values_of_row_t_minus_1():
    x = np.arange(12).reshape(4, 3)
    lagged = lag_one_day(x)
    assert np.isnan(lagged[0]).all()
    assert np.array_equal(lagged[1:], x[:-1])
    cube = np.arange(24.0).reshape(4, 3, 2)
    assert np.array_equal(lag_one_day(cube)[2], cube[1])
