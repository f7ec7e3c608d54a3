"""The daily update's fast kernels against the plain computations they replace.

A daily update evaluates the covariance's EWMA sums on a few rows only, all its Newey–West sums
in one pass (:func:`_lagged_sums`), every restart's sums at once; the validation computes a month
end's stability coefficients and VIFs for all columns at once; the kept states stack fields of
one shape into one entry. Each is held here to the computation it stands for: the sums at given
rows to the filter over every row (rounding only: ~1e-15 of the row's scale), the stacked
diagnostics to the per-column functions (~1e-13), the stacked states to an exact round trip, and
states kept before the stacking (one entry per field) still read back exactly.
"""

import io

import numpy as np
import pandas as pd
import pytest

from riskstrata.factors.covariance import (CovarianceParams, _lagged_sums, _raw_covariance, _restarts,
                                           ewma_newey_west, ewma_newey_west_variance)
from riskstrata.factors.specific import SpecificParams, SpecificState
from riskstrata.factors.validation import (ValidationState, _stability_row, stability_coefficient,
                                           validation_reports_with_state, vif)
from tests.factors.test_covariance_extend import market
from tests.factors.test_validation_resume import OPTIONS, synthetic_panel

TOL = 1e-12
ROWS = np.array([0, 1, 57, 58, 59, 300, 399, 589, 590, 599])  # runs of several lengths, the first and last row


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """Largest |got − want| over the largest |want| of the same row (NaN patterns must agree)."""
    assert got.shape == want.shape
    assert np.array_equal(np.isnan(got), np.isnan(want)), "NaN patterns differ"
    axes = tuple(range(1, want.ndim))
    scale = np.nanmax(np.abs(want), axis=axes, keepdims=True, initial=0.0) if axes else np.abs(want)
    return float((np.nan_to_num(np.abs(got - want)) / np.maximum(np.nan_to_num(scale), np.finfo(float).tiny)).max())


# --- the covariance's sums at a few rows ------------------------------------------------------

@pytest.mark.parametrize("lags", [0, 2, 5])
def test_lagged_sums_at_rows_are_the_filtered_sums_on_those_rows(lags):
    x = market().to_numpy()
    m = np.isfinite(x).astype(float)
    x0 = np.where(m > 0, x, 0.0)
    every = _lagged_sums(x0, m, lags, 0.99, None)
    assert every.shape == (len(x), 2 + 4 * (lags + 1), x.shape[1])
    assert relative_error(_lagged_sums(x0, m, lags, 0.99, ROWS), every[ROWS]) < TOL


def test_lagged_sums_are_the_sums_of_their_terms():
    """Row t of each sum is Σ_{s≤t} δ^{t−s} z_s of its term, the lagged ones zero before row 0."""
    rng = np.random.default_rng(1)
    x, m = rng.standard_normal((30, 2)), (rng.random((30, 2)) > 0.2).astype(float)
    x = x * m
    sums = _lagged_sums(x, m, 2, 0.9, None)
    t, weights = 29, 0.9 ** np.arange(29, -1, -1.0)
    lag2 = np.vstack([np.zeros((2, 2)), x[:-2]]), np.vstack([np.zeros((2, 2)), m[:-2]])
    want = [m, x, x * lag2[0], x * lag2[1], m * lag2[0], m * lag2[1]]
    for i, term in zip([0, 1, 10, 11, 12, 13], want):
        np.testing.assert_allclose(sums[t, i], weights @ term, rtol=1e-13)


def test_covariance_and_variance_kernels_at_rows_are_their_rows():
    x = market().to_numpy()
    assert relative_error(ewma_newey_west(x, 50.0, 2, ROWS), ewma_newey_west(x, 50.0, 2)[ROWS]) < TOL
    assert relative_error(ewma_newey_west_variance(x, 30.0, 5, ROWS), ewma_newey_west_variance(x, 30.0, 5)[ROWS]) < TOL


def test_the_variance_of_many_series_is_each_series_own():
    """Wide panels are summed a few hundred series per pass: each column's numbers are its own
    (to the rounding of its full-sample centre, summed in another order)."""
    rng = np.random.default_rng(2)
    u = rng.standard_normal((120, 700))
    u[rng.random(u.shape) < 0.1] = np.nan
    u[:50, 3] = np.nan
    wide = ewma_newey_west_variance(u, 20.0, 5)
    for j in (0, 3, 117, 118, 699):
        assert relative_error(wide[:, j], ewma_newey_west_variance(u[:, [j]], 20.0, 5)[:, 0]) < TOL, j


def test_raw_covariance_at_rows_with_restarts_is_the_full_one_on_those_rows():
    """The restarted factors' variances (their sums all at once, their priors in row order)."""
    x = market().to_numpy()
    params = CovarianceParams(eigen_sims=0)
    groups = np.array([0, 1, 1, 2, 2, 2, 2, 2])
    assert len(_restarts(np.isfinite(x), params.restart_gap)) >= 3
    full, ok_full = _raw_covariance(x, params, groups)
    rows = np.array([299, 300, 301, 399, 400, 588, 589, 590, 599])
    raw, ok = _raw_covariance(x, params, groups, rows)
    assert np.array_equal(ok, ok_full[rows])
    assert relative_error(raw, full[rows]) < TOL


# --- the validation's month-end diagnostics ---------------------------------------------------

def reference_vif(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """1 / (1 − R²) of each varying column on the others and an intercept, by least squares."""
    ok = np.isfinite(X).all(axis=1) & np.isfinite(w) & (w > 0)
    X, w = X[ok], w[ok] / w[ok].sum()
    Z = (X - w @ X) * np.sqrt(w)[:, None]
    varying = np.ptp(X, axis=0) > 0
    out = np.full(X.shape[1], np.nan)
    for k in np.flatnonzero(varying):
        others = Z[:, varying & (np.arange(X.shape[1]) != k)]
        resid = Z[:, k] - others @ np.linalg.lstsq(others, Z[:, k], rcond=None)[0] if others.shape[1] else Z[:, k]
        out[k] = (Z[:, k] @ Z[:, k]) / (resid @ resid)
    return out


def test_stability_of_all_columns_is_each_columns_coefficient():
    rng = np.random.default_rng(3)
    for trial in range(100):
        N, K = int(rng.integers(1, 40)), int(rng.integers(1, 6))
        Xa, Xb, caps = rng.standard_normal((N, K)), rng.standard_normal((N, K)), rng.lognormal(size=N)
        Xa[rng.random((N, K)) < 0.2] = np.nan
        Xb[rng.random((N, K)) < 0.2] = np.nan
        caps[rng.random(N) < 0.1] = -1.0
        caps[rng.random(N) < 0.1] = np.nan
        want = np.array([stability_coefficient(Xa[:, k], Xb[:, k], caps) for k in range(K)])
        got = _stability_row(Xa, Xb, caps)
        assert np.array_equal(np.isnan(got), np.isnan(want)), trial
        assert np.nanmax(np.abs(got - want), initial=0.0) < 1e-13, trial


def test_vif_is_the_least_squares_vif():
    rng = np.random.default_rng(4)
    X, w = rng.standard_normal((200, 6)), rng.lognormal(size=200)
    X[:, 2] += 0.8 * X[:, 0]                     # correlated styles: VIF well above 1
    X[rng.random(X.shape) < 0.03] = np.nan
    got, want = vif(X, w), reference_vif(X, w)
    assert got[2] > 1.5 and np.allclose(got, want, rtol=1e-12, atol=0)


def test_vif_of_nearly_and_exactly_collinear_and_constant_columns():
    rng = np.random.default_rng(5)
    X, w = rng.standard_normal((100, 4)), rng.lognormal(size=100)
    X[:, 1] = X[:, 0] + 1e-4 * rng.standard_normal(100)   # nearly collinear: VIF ≈ 1e8, by the fits
    X[:, 3] = 2.0                                           # constant: spanned by the intercept
    got, want = vif(X, w), reference_vif(X, w)
    assert np.isnan(got[3]) and np.isnan(want[3])
    assert got[0] > 1e6 and np.allclose(got[:3], want[:3], rtol=1e-9)
    X[:, 1] = X[:, 0]                                       # exactly collinear
    assert np.isinf(vif(X, w)[:2]).all()


# --- the kept states: stacked entries, and states kept one entry per field ---------------------

def saved_and_loaded(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def assert_same_fields(a: object, b: object) -> None:
    for name, x in vars(a).items():
        y = getattr(b, name)
        if isinstance(x, list) and x and hasattr(x[0], "tail") or hasattr(x, "tail"):
            for m1, m2 in zip(x if isinstance(x, list) else [x], y if isinstance(y, list) else [y], strict=True):
                assert_same_fields(m1, m2)
        elif isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), name
        elif isinstance(x, pd.Index):
            assert list(x) == list(y), name
        else:
            assert x == y, name


@pytest.fixture(scope="module")
def validation_state() -> ValidationState:
    p = synthetic_panel()
    return validation_reports_with_state(p["factor_returns"], p["factor_covs"], p["specific_returns"],
                                         p["specific_var"], p["exposures"], p["caps"], r2=p["r2"], **OPTIONS)[1]


def one_entry_per_field(state: ValidationState) -> dict[str, np.ndarray]:
    """The state as a version kept it before the stacking (format 1)."""
    out = {key: v for key, v in state.to_arrays().items()
           if key in ("names", "factors", "labels", "params", "last_date_ns", "flags", "r2", "scores", "last_cov")}
    out["format"] = np.array(1)
    for name in ("last_s2", "last_X", "last_caps", "pme_X", "pme_caps", "me_n", "me_min", "me_max", "me_all01",
                 "stab_sum", "stab_n", "vif_mask", "vif_sum", "vif_n"):
        out[name] = np.array(getattr(state, name))
    groups = [(f"factor{i}_", m) for i, m in enumerate(state.factor)] + \
             [(f"random{i}_", m) for i, m in enumerate(state.random)] + [("specific_", state.specific)]
    for prefix, moments in groups:
        out.update({f"{prefix}{name}": np.array(getattr(moments, name)) for name in moments.FIELDS})
    return out


def test_validation_state_round_trips_exactly_in_fewer_entries(validation_state):
    arrays = validation_state.to_arrays()
    assert len(arrays) < len(one_entry_per_field(validation_state)) // 2 + 2
    assert_same_fields(ValidationState.from_arrays(saved_and_loaded(arrays)), validation_state)


def test_validation_state_kept_one_entry_per_field_reads_back_exactly(validation_state):
    assert_same_fields(ValidationState.from_arrays(saved_and_loaded(one_entry_per_field(validation_state))),
                       validation_state)


def test_specific_state_round_trips_exactly_and_reads_its_older_form():
    rng = np.random.default_rng(6)
    n, lags = 7, 3
    state = SpecificState(names=tuple(f"S{i}" for i in range(n)), last_date=pd.Timestamp("2024-05-31"),
                          params=SpecificParams(nw_lags=lags), centre=rng.standard_normal(n),
                          weight=rng.random(n), first=rng.standard_normal(n),
                          **{k: rng.standard_normal((lags + 1, n)) for k in ("sum_xx", "sum_xm", "sum_mx", "sum_mm")},
                          recent_x=rng.standard_normal((lags, n)), recent_mask=rng.random((lags, n)),
                          counts=rng.integers(0, 500, n), sigma=rng.random(n), caps=rng.lognormal(size=n),
                          vra_num=1.3, vra_den=1.1)
    arrays = state.to_arrays()
    assert "per_name" in arrays and "centre" not in arrays
    assert_same_fields(SpecificState.from_arrays(saved_and_loaded(arrays)), state)
    older = {k: v for k, v in arrays.items() if k not in ("per_name", "recent")}
    older.update({name: np.array(getattr(state, name)) for name in ("centre", "weight", "first", "sigma", "caps",
                                                                    "recent_x", "recent_mask")})
    assert_same_fields(SpecificState.from_arrays(saved_and_loaded(older)), state)


# --- the factor returns' history kept beside their parts ---------------------------------------

def test_kept_returns_history_reads_as_the_parts_do(tmp_path):
    from riskstrata.data.store import Store
    from riskstrata.services.factors_state import RETURNS_ARRAYS, returns_arrays
    from riskstrata.services.factors_update import _stored_returns

    rng = np.random.default_rng(7)
    dates = pd.bdate_range("2024-01-01", periods=40)
    rows = pd.DataFrame({"date": dates, "MARKET": rng.standard_normal(40), "SIZE": rng.standard_normal(40),
                         "t_MARKET": rng.standard_normal(40), "n_names": rng.integers(10, 20, 40),
                         "coverage_MARKET": rng.random(40), "coverage_SIZE": rng.random(40),
                         "coverage_VALUE": np.zeros(40)})
    rows.loc[3, "SIZE"] = np.nan
    store = Store(tmp_path / "store")
    names = {"factor_returns": "factor_returns_X"}
    with store.begin_version("factor_returns_X") as wr:
        wr.write_part(rows.iloc[:30])
        wr.write_part(rows.iloc[30:])
        version = wr.commit({})
    meta = {"factors": ["MARKET", "SIZE"], "companions": {"factor_returns": version}}
    from_parts, columns = _stored_returns(store, names, meta, ["MARKET", "SIZE", "VALUE"])
    assert columns == list(rows.columns) and len(from_parts) == 40

    with store.begin_version("factor_returns_X") as wr:
        wr.adopt_part(store.model_files("factor_returns_X", version)[0])
        wr.adopt_part(store.model_files("factor_returns_X", version)[1])
        wr.write_arrays(RETURNS_ARRAYS, returns_arrays(rows, ["MARKET", "SIZE"], ["MARKET", "SIZE", "VALUE"]))
        kept_version = wr.commit({})
    meta["companions"]["factor_returns"] = kept_version
    from_arrays, kept_columns = _stored_returns(store, names, meta, ["MARKET", "SIZE", "VALUE"])
    assert kept_columns == columns
    assert list(from_arrays.columns) == ["date", "MARKET", "SIZE", "coverage_MARKET", "coverage_SIZE", "coverage_VALUE"]
    pd.testing.assert_frame_equal(from_arrays, from_parts[list(from_arrays.columns)], check_exact=True)
    # Arrays of other columns than the version's factors and spec are not used: the parts are read.
    meta["factors"] = ["MARKET"]
    assert list(_stored_returns(store, names, meta, ["MARKET", "SIZE", "VALUE"])[0].columns) == list(rows.columns)
