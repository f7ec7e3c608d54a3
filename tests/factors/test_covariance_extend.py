"""The daily update of the factor covariance: extend_factor_covariance equals a rebuild's rows.

A rebuild of the extended history (:func:`factor_covariance`) is the specification; the update
computes only its last rows from the store's copy of the old ones. Every field is held to
TOL relative to the largest entry of its row (the update's rounding is ~4e-15 here: the EWMA
sums of the last stored row are weighted Gram matrices instead of a filter over the history).
"""

from functools import cache

import numpy as np
import pandas as pd
import pytest

from riskstrata.errors import DataValidationError, IdentityViolation, InsufficientHistory
from riskstrata.factors.covariance import (CovarianceParams, FactorCovariance, extend_factor_covariance,
                                           factor_covariance)
from tests.factors.test_covariance import simulated_returns, true_covariance

TOL = 1e-12
T_ALL, K = 600, 8
GROUPS = ["mkt", "style", "style", "ind", "ind", "ind", "ind", "ind"]
PARAMS = CovarianceParams(eigen_sims=50, eigen_every=5, workers=1)
LATE_START = 150                 # factor 2 is first estimated here
RESTARTS = {3: 300, 4: 400, 5: 590}  # factor → first date back after a gap ≥ restart_gap


def market() -> pd.DataFrame:
    """Factor returns with every gap the estimator handles."""
    returns = simulated_returns(T_ALL, true_covariance(K, seed=4), seed=4)
    returns.iloc[:LATE_START, 2] = np.nan           # a factor that starts late
    returns.iloc[200:300, 3] = np.nan               # restarts on 300 (prior from its peers)
    returns.iloc[250:400, 4] = np.nan               # restarts on 400, its peer 3 restarted on 300
    returns.iloc[520:590, 5] = np.nan               # restarts on 590: inside or just before new rows
    returns.iloc[::13, 1] = np.nan                  # missing on single days
    return returns


@cache
def rebuild(T: int, params: CovarianceParams = PARAMS) -> FactorCovariance:
    return factor_covariance(market().iloc[:T], params, GROUPS)


def as_stored(fc: FactorCovariance) -> FactorCovariance:
    """What the store keeps: no raw, no eigen_applied, the bias only where the simulation ran."""
    ran = fc.eigen_recomputed
    return FactorCovariance(dates=fc.dates, factors=fc.factors, raw=np.empty((0, K, K)), adjusted=fc.adjusted,
                            eigen_applied=np.zeros(0, bool), vra_lambda=fc.vra_lambda, eigen_recomputed=ran,
                            eigen_bias=np.where(ran[:, None], fc.eigen_bias, np.nan), params=fc.params)


def assert_rows_equal(got: FactorCovariance, full: FactorCovariance, first: int) -> None:
    """got's rows are full's rows first.. — boolean fields exactly, numbers to TOL of their row's scale."""
    rows = slice(first, len(full.dates))
    assert got.dates.equals(full.dates[rows]) and got.factors == full.factors
    for name in ("eigen_applied", "eigen_recomputed"):
        assert np.array_equal(getattr(got, name), getattr(full, name)[rows]), name
    for name in ("raw", "adjusted", "eigen_bias", "vra_lambda"):
        a, b = getattr(got, name), getattr(full, name)[rows]
        assert a.shape == b.shape, name
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"{name}: NaN patterns differ"
        axes = tuple(range(1, b.ndim))
        scale = np.nanmax(np.abs(b), axis=axes, keepdims=True, initial=0.0) if axes else np.abs(b)
        err = np.nan_to_num(np.abs(a - b)) / np.maximum(scale, np.finfo(float).tiny)
        assert err.max() <= TOL, f"{name}: relative difference {err.max():.2e} > {TOL:.0e}"


# --- equal to the rebuild --------------------------------------------------------------------

SPLITS = {  # T_old → the case it covers, checked in the test itself
    599: "B = 1, no simulation on the new row",
    595: "B = 5, the new rows include a scheduled simulation",
    593: "B = 7, a restart (590) just before the new rows: its prior is read on 589",
    591: "B = 9, a restart (590) on the recomputed last stored row",
    588: "B = 12, a restart (590) inside the new rows",
    400: "the restart on 400 is the first new row; its prior reads its restarted peer on 399",
}


@pytest.mark.parametrize("T_old", list(SPLITS), ids=list(SPLITS.values()))
def test_extension_equals_the_rows_of_a_rebuild(T_old):
    full = rebuild(T_ALL)
    got = extend_factor_covariance(market(), as_stored(rebuild(T_old)), PARAMS, GROUPS)
    assert_rows_equal(got, full, T_old - 1)
    runs_new = full.eigen_recomputed[T_old:]
    assert runs_new.any() == (T_old != 599), "the split does not cover the case it is named for"


def test_one_day_that_runs_the_simulation():
    scheduled = np.flatnonzero(rebuild(T_ALL).eigen_recomputed)
    t = int(scheduled[-1])  # the new row is a scheduled one: simulated, same draws as the rebuild
    got = extend_factor_covariance(market().iloc[:t + 1], as_stored(rebuild(t)), PARAMS, GROUPS)
    assert got.eigen_recomputed.tolist() == [False, True]
    assert_rows_equal(got, rebuild(t + 1), t - 1)


def test_day_by_day_updates_of_the_stored_rows_equal_the_rebuild():
    """Each update's new rows are appended to the store and the next update starts from them."""
    stored = as_stored(rebuild(570))
    for T in range(571, 581):
        got = extend_factor_covariance(market().iloc[:T], stored, PARAMS, GROUPS)
        stored = as_stored(FactorCovariance(
            dates=stored.dates.append(got.dates[1:]), factors=stored.factors, raw=np.empty(0),
            adjusted=np.concatenate([stored.adjusted, got.adjusted[1:]]), eigen_applied=np.zeros(0, bool),
            vra_lambda=np.concatenate([stored.vra_lambda, got.vra_lambda[1:]]),
            eigen_recomputed=np.concatenate([stored.eigen_recomputed, got.eigen_recomputed[1:]]),
            eigen_bias=np.concatenate([stored.eigen_bias, got.eigen_bias[1:]])))
    assert_rows_equal(got, rebuild(580), 578)


@pytest.mark.parametrize("params", [CovarianceParams(eigen_sims=0),
                                    CovarianceParams(eigen_sims=50, restart_prior_obs=0)],
                         ids=["no eigen adjustment", "restarts without a prior"])
def test_other_params_are_extended_as_rebuilt(params):
    for T_old in (401, 595):
        got = extend_factor_covariance(market(), as_stored(rebuild(T_old, params)), params, GROUPS)
        assert_rows_equal(got, rebuild(T_ALL, params), T_old - 1)


def test_a_store_without_raw_or_the_recomputed_flags_reads_them_from_the_biases():
    stored = as_stored(rebuild(595))
    stored.raw, stored.eigen_applied, stored.eigen_recomputed = None, None, None
    assert_rows_equal(extend_factor_covariance(market(), stored, PARAMS, GROUPS), rebuild(T_ALL), 594)


def first_rows(fc: FactorCovariance, n: int) -> FactorCovariance:
    """The first n rows of a result (what a build of those dates stored, up to rounding)."""
    return FactorCovariance(dates=fc.dates[:n], factors=fc.factors, raw=fc.raw[:n], adjusted=fc.adjusted[:n],
                            eigen_applied=fc.eigen_applied[:n], vra_lambda=fc.vra_lambda[:n],
                            eigen_recomputed=fc.eigen_recomputed[:n], eigen_bias=fc.eigen_bias[:n])


def test_from_a_single_stored_row():
    stored = as_stored(first_rows(rebuild(200), 1))  # a build of one date alone would refuse (too few days)
    assert_rows_equal(extend_factor_covariance(market().iloc[:200], stored, PARAMS, GROUPS), rebuild(200), 0)
    with pytest.raises(InsufficientHistory):
        extend_factor_covariance(market().iloc[:30], stored, PARAMS, GROUPS)


# --- refusals --------------------------------------------------------------------------------

def test_changed_factor_returns_are_refused():
    changed = market()
    changed.iloc[500, 0] *= 1.5  # an old return revised after the covariance was stored
    with pytest.raises(IdentityViolation, match="differs from the stored one"):
        extend_factor_covariance(changed, as_stored(rebuild(595)), PARAMS, GROUPS)
    other = simulated_returns(T_ALL, true_covariance(K, seed=9), seed=9)
    other.columns = market().columns
    with pytest.raises(IdentityViolation):
        extend_factor_covariance(other, as_stored(rebuild(595)), PARAMS, GROUPS)


def test_a_missing_stored_bias_is_refused():
    stored = as_stored(rebuild(597))
    last_run = np.flatnonzero(stored.eigen_recomputed)[-1]
    stored.eigen_bias = stored.eigen_bias.copy()
    stored.eigen_bias[last_run, 0] = np.nan
    with pytest.raises(IdentityViolation, match="eigen bias"):
        extend_factor_covariance(market(), stored, PARAMS, GROUPS)


def test_other_params_or_groups_than_the_stored_ones_are_refused():
    stored = as_stored(rebuild(595))
    with pytest.raises(IdentityViolation):
        extend_factor_covariance(market(), stored, CovarianceParams(eigen_sims=50, eigen_every=3, workers=1), GROUPS)
    with pytest.raises(IdentityViolation):
        extend_factor_covariance(market(), stored, CovarianceParams(eigen_sims=50, vra_halflife=21, workers=1), GROUPS)
    restarted_late = as_stored(rebuild(T_ALL - 4))  # its recomputed row 595 lies in factor 5's restart
    with pytest.raises(IdentityViolation):
        extend_factor_covariance(market(), restarted_late, PARAMS, ["all"] * K)


def test_a_previous_that_does_not_fit_the_frame_is_refused():
    stored = as_stored(rebuild(595))
    with pytest.raises(DataValidationError, match="T_old"):
        extend_factor_covariance(market().iloc[:595], stored, PARAMS, GROUPS)
    with pytest.raises(DataValidationError, match="factors"):
        extend_factor_covariance(market().iloc[:, ::-1], stored, PARAMS, GROUPS[::-1])
    shifted = market()
    shifted.index = shifted.index + pd.Timedelta(days=1)
    with pytest.raises(DataValidationError, match="dates"):
        extend_factor_covariance(shifted, stored, PARAMS, GROUPS)
