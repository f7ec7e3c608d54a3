"""The daily constrained WLS: agreement with independent solvers, identities, ground truth, edges."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from riskstrata.errors import DataValidationError
from riskstrata.factors.regression import cross_sectional_regression

N_STYLES, N_INDUSTRIES = 10, 10
FACTORS = ["MARKET", *[f"STYLE{i}" for i in range(N_STYLES)], *[f"IND{j}" for j in range(N_INDUSTRIES)]]
IND_COLS = list(range(1 + N_STYLES, 1 + N_STYLES + N_INDUSTRIES))


def simulate(T: int = 8, N: int = 300, seed: int = 0, noise: float = 0.01) -> dict:
    """Random market with K = 1 + 10 + 10 and returns r = X f + ε, f obeying the constraint.

    Industries have unequal sizes; caps are lognormal (USD); weights √cap.
    """
    rng = np.random.default_rng(seed)
    K = len(FACTORS)
    X = np.zeros((T, N, K))
    X[..., 0] = 1.0
    X[..., 1:1 + N_STYLES] = rng.normal(size=(T, N, N_STYLES))
    industry = rng.choice(N_INDUSTRIES, size=(T, N), p=np.linspace(1, 3, N_INDUSTRIES) / 20)
    X[np.arange(T)[:, None], np.arange(N)[None, :], IND_COLS[0] + industry] = 1.0
    cap = np.exp(rng.normal(22, 1.5, (T, N)))
    f = np.column_stack([rng.normal(0.0004, 0.01, T), rng.normal(0, 0.004, (T, N_STYLES)),
                         rng.normal(0, 0.008, (T, N_INDUSTRIES))])
    # Make the true industry returns obey the model's normalisation: cap-weighted sum zero
    # (the common part belongs to the market factor).
    shares = np.einsum("tn,tnj->tj", cap, X[..., IND_COLS])
    shares /= shares.sum(axis=1, keepdims=True)
    common = (shares * f[:, IND_COLS]).sum(axis=1)
    f[:, IND_COLS] -= common[:, None]
    f[:, 0] += common
    r = np.einsum("tnk,tk->tn", X, f) + rng.normal(0, noise, (T, N))
    return {"returns": r, "exposures": X, "weights": np.sqrt(cap), "caps": cap, "truth": f,
            "dates": pd.bdate_range("2021-01-04", periods=T),
            "tickers": pd.Index([f"S{i:04d}" for i in range(N)])}


def run(d: dict, **kw):
    return cross_sectional_regression(d["returns"], d["exposures"], d["weights"], FACTORS, IND_COLS,
                                      d["caps"], dates=d["dates"], tickers=d["tickers"], **kw)


def kkt_solution(r, X, w, cap, ind_cols) -> np.ndarray:
    """min Σ w (r − X f)² s.t. s·f = 0 via the explicit KKT system (s = industry cap shares)."""
    K = X.shape[1]
    s = np.zeros(K)
    s[ind_cols] = cap @ X[:, ind_cols]
    s /= s.sum()
    XtW = X.T * w
    M = np.block([[XtW @ X, s[:, None]], [s[None, :], np.zeros((1, 1))]])
    return np.linalg.solve(M, np.append(XtW @ r, 0.0))[:K]


def statsmodels_fit(r, X, w, cap, ind_cols, eliminate):
    """statsmodels WLS on the design with industry ``eliminate`` substituted out; (f, t) for all K."""
    K = X.shape[1]
    c = cap @ X[:, ind_cols]
    free = [k for k in range(K) if k != eliminate]
    R = np.zeros((K, K - 1))
    R[free, np.arange(K - 1)] = 1.0
    for j, cj in zip(ind_cols, c):
        if j != eliminate:
            R[eliminate, free.index(j)] = -cj / c[ind_cols.index(eliminate)]
    fit = sm.WLS(r, X @ R, weights=w).fit()
    f = R @ fit.params
    se = np.sqrt(np.diag(R @ fit.cov_params() @ R.T))
    return f, f / se


@pytest.fixture(scope="module")
def market():
    d = simulate()
    return d, run(d)


def test_factor_returns_equal_the_explicit_kkt_solution_on_random_days(market):
    d, res = market
    for t in np.random.default_rng(1).choice(len(d["dates"]), 5, replace=False):
        want = kkt_solution(d["returns"][t], d["exposures"][t], d["weights"][t], d["caps"][t], IND_COLS)
        got = res.factor_returns.iloc[t].to_numpy()
        assert np.max(np.abs(got - want)) < 1e-8, f"day {t}: differs from the KKT solution"


def test_factor_returns_and_t_stats_equal_statsmodels_wls_on_the_substituted_design(market):
    d, res = market
    t = 3
    args = d["returns"][t], d["exposures"][t], d["weights"][t], d["caps"][t], IND_COLS
    # Eliminating a different industry must not matter; between the two runs every factor,
    # including the one the module substitutes out, gets its t-stat as a free parameter.
    for eliminate in IND_COLS[:2]:
        f, tstat = statsmodels_fit(*args, eliminate=eliminate)
        assert np.max(np.abs(res.factor_returns.iloc[t].to_numpy() - f)) < 1e-10
        free = [k for k in range(len(FACTORS)) if k != eliminate]
        assert np.max(np.abs(res.t_stats.iloc[t].to_numpy()[free] - tstat[free])) < 1e-8


def test_constraint_residual_is_below_1e10_on_every_date(market):
    d, res = market
    assert (res.constraint_residual < 1e-10).all()
    # and independently, from the raw caps
    c = np.einsum("tn,tnj->tj", d["caps"], d["exposures"][..., IND_COLS])
    raw = np.abs((c * res.factor_returns.to_numpy()[:, IND_COLS]).sum(axis=1)) / c.sum(axis=1)
    assert raw.max() < 1e-10


def test_weighted_r2_and_specific_returns_identities(market):
    d, res = market
    f = res.factor_returns.to_numpy()
    e = d["returns"] - np.einsum("tnk,tk->tn", d["exposures"], f)
    np.testing.assert_allclose(res.specific_returns.to_numpy(), e, rtol=0, atol=1e-14)
    w, r = d["weights"], d["returns"]
    rbar = (w * r).sum(axis=1, keepdims=True) / w.sum(axis=1, keepdims=True)
    r2 = 1 - (w * e**2).sum(axis=1) / (w * (r - rbar) ** 2).sum(axis=1)
    np.testing.assert_allclose(res.r2.to_numpy(), r2, rtol=0, atol=1e-12)
    assert (res.n_names == 300).all()


def test_condition_number_is_that_of_the_weighted_reduced_design(market):
    d, res = market
    t = 0
    X, w, cap = d["exposures"][t], d["weights"][t], d["caps"][t]
    c = cap @ X[:, IND_COLS]
    L = IND_COLS[int(np.argmax(c))]                   # the module eliminates the largest industry
    free = [k for k in range(len(FACTORS)) if k != L]
    Xr = X[:, free] - np.outer(X[:, L], [c[IND_COLS.index(k)] / c.max() if k in IND_COLS else 0 for k in free])
    want = np.linalg.cond(Xr * np.sqrt(w)[:, None])
    assert res.condition_number.iloc[t] == pytest.approx(want, rel=1e-10)


def test_without_industry_caps_the_regression_weights_weight_the_constraint():
    d = simulate(T=2, seed=5)
    res = cross_sectional_regression(d["returns"], d["exposures"], d["weights"], FACTORS, IND_COLS, None,
                                     dates=d["dates"], tickers=d["tickers"])
    for t in range(2):
        want = kkt_solution(d["returns"][t], d["exposures"][t], d["weights"][t], d["weights"][t], IND_COLS)
        assert np.max(np.abs(res.factor_returns.iloc[t].to_numpy() - want)) < 1e-8


def test_ground_truth_factor_returns_are_recovered_over_250_days():
    d = simulate(T=250, N=1000, seed=7)
    res = run(d)
    for k, name in enumerate(FACTORS):
        corr = np.corrcoef(res.factor_returns[name], d["truth"][:, k])[0, 1]
        assert corr >= 0.95, f"{name}: correlation with the true factor return {corr:.3f} < 0.95"


def test_a_thin_industry_is_not_estimated_and_its_names_stay_in():
    d = simulate(T=3, seed=2)
    X = d["exposures"]
    thin_col = IND_COLS[-1]
    movers = np.flatnonzero(X[0, :, thin_col] == 1)[2:]   # leave two names in the last industry
    X[:, movers, thin_col] = 0.0
    X[:, movers, IND_COLS[0]] = 1.0
    res = run(d)
    assert res.factor_returns.iloc[0, thin_col] != res.factor_returns.iloc[0, thin_col]  # NaN
    assert res.thin_industries.iloc[0, thin_col] and res.thin_industries.iloc[0].sum() == 1
    assert any("IND9" in n for n in res.notes[d["dates"][0]])
    assert res.n_names.iloc[0] == 300 and res.specific_returns.iloc[0].notna().all()
    others = [k for k in range(len(FACTORS)) if k != thin_col]
    want = kkt_solution(d["returns"][0], X[0][:, others], d["weights"][0], d["caps"][0],
                        [others.index(j) for j in IND_COLS if j != thin_col])
    np.testing.assert_allclose(res.factor_returns.iloc[0].to_numpy()[others], want, rtol=0, atol=1e-8)
    assert res.constraint_residual.iloc[0] < 1e-10


def test_a_style_not_estimated_on_a_date_is_nan_and_the_rest_is_the_kkt_solve_without_it():
    d = simulate(T=3, seed=12)
    skip = np.zeros((3, len(FACTORS)), dtype=bool)
    style = 1 + 3                                      # STYLE3, not estimated on date 1 only
    skip[1, style] = True
    d["exposures"][1, :, style] = np.nan               # its exposures need not even be finite
    res = run(d, not_estimated=skip)
    assert np.isnan(res.factor_returns.iloc[1, style]) and np.isnan(res.t_stats.iloc[1, style])
    assert res.factor_returns.drop(columns=FACTORS[style]).notna().all().all()
    assert res.factor_returns.iloc[[0, 2], style].notna().all() and res.n_names.iloc[1] == 300
    others = [k for k in range(len(FACTORS)) if k != style]
    X = d["exposures"][1][:, others]
    want = kkt_solution(d["returns"][1], X, d["weights"][1], d["caps"][1], [others.index(j) for j in IND_COLS])
    np.testing.assert_allclose(res.factor_returns.iloc[1].to_numpy()[others], want, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.specific_returns.iloc[1].to_numpy(), d["returns"][1] - X @ want, atol=1e-10)
    assert not res.thin_industries.iloc[1].any()
    with pytest.raises(DataValidationError, match="not_estimated"):
        run(d, not_estimated=skip[:2])


def test_a_date_with_fewer_than_min_names_is_all_nan():
    d = simulate(T=3, seed=3)
    d["returns"][1, 20:] = np.nan
    res = run(d)
    assert res.factor_returns.iloc[1].isna().all() and res.t_stats.iloc[1].isna().all()
    assert np.isnan(res.r2.iloc[1]) and res.specific_returns.iloc[1].isna().all()
    assert res.n_names.iloc[1] == 20 and "min_names" in res.notes[d["dates"][1]][0]
    assert res.factor_returns.iloc[[0, 2]].notna().all().all()


def test_nan_inputs_and_non_positive_weights_drop_only_those_names():
    d = simulate(T=1, seed=4)
    bad = {3: ("returns", np.nan), 10: ("weights", 0.0), 11: ("weights", -1.0), 12: ("weights", np.nan)}
    for i, (key, value) in bad.items():
        d[key][0, i] = value
    d["exposures"][0, 20, 5] = np.nan
    res = run(d)
    keep = np.setdiff1d(np.arange(300), [*bad, 20])
    want = kkt_solution(d["returns"][0, keep], d["exposures"][0, keep], d["weights"][0, keep],
                        d["caps"][0, keep], IND_COLS)
    np.testing.assert_allclose(res.factor_returns.iloc[0].to_numpy(), want, rtol=0, atol=1e-10)
    assert res.n_names.iloc[0] == keep.size
    assert res.specific_returns.iloc[0, [*bad, 20]].isna().all()


def test_a_date_without_lagged_exposures_is_nan_without_a_note():
    d = simulate(T=3, seed=6)
    d["exposures"][0] = np.nan                      # the first date after lagging
    res = run(d)
    assert res.factor_returns.iloc[0].isna().all() and d["dates"][0] not in res.notes


def test_row_t_uses_only_row_t():
    d = simulate(T=4, seed=8)
    base = run(d)
    d["returns"][2:] += 0.05
    after = run(d)
    pd.testing.assert_frame_equal(base.factor_returns.iloc[:2], after.factor_returns.iloc[:2])


def test_no_n_by_n_matrix_5000_names_light():
    d = simulate(T=5, N=5000, seed=9)
    tracemalloc.start()
    res = run(d)  # its run time: benchmarks/bench_unit_timings.py
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert res.factor_returns.notna().all().all()
    # One 5000 × 5000 float64 matrix alone is 200 MB.
    assert peak < 40e6, f"peak {peak / 1e6:.0f} MB: something N × N was built"


def test_inconsistent_shapes_are_a_data_validation_error():
    d = simulate(T=2, seed=1)
    with pytest.raises(DataValidationError, match="weights"):
        cross_sectional_regression(d["returns"], d["exposures"], d["weights"][:, :10], FACTORS, IND_COLS,
                                   d["caps"], dates=d["dates"], tickers=d["tickers"])
    with pytest.raises(DataValidationError, match="factors"):
        cross_sectional_regression(d["returns"], d["exposures"], d["weights"], FACTORS[:-1], IND_COLS,
                                   d["caps"], dates=d["dates"], tickers=d["tickers"])
