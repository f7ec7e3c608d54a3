"""Specific risk resumed from a state: a daily update equals a full rebuild of the same data.

The contract of the fast update (issue 13 §2): ``specific_risk_with_state`` over the old dates,
then ``advance_specific_risk`` over the new ones, gives the rows a full ``specific_risk`` over
all the dates gives for the new ones.

Tolerance: relative, |update − rebuild| ≤ 1e-12·|rebuild| on every finite forecast (all are ≥
MIN_SPECIFIC_VOL², so the relative error is well defined), and the NaN patterns identical.
The two differ only by rounding — the update keeps its running sums about the old sample's
mean where the rebuild centres on the whole sample's, and adds in another order — which is a
few 1e-15 relative on these panels; 1e-12 leaves a 100× margin and is still 100× tighter than
the 1e-10 the update must meet.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskstrata.errors import DataValidationError
from riskstrata.factors.specific import (
    SpecificParams,
    SpecificState,
    advance_specific_risk,
    specific_risk,
    specific_risk_with_state,
)

RTOL = 1e-12
NEW_NAME = "NEW"      # first appears in the new rows
LATE = "S003"         # starts after 150 days
DELISTED = "S004"     # stops after 300 days (still forecast: its EWMA only decays)
NEVER = "S005"        # never observed
LATE_AT_END = "S006"  # first observed a few days before the end: crosses nothing, stays NaN


def market(T: int = 400, N: int = 60, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(T × N+1) specific returns with gaps, late and delisted names, a non-zero mean (so the
    centre matters), drifting caps with NaN; column NEW observed only from row T − 8."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-02", periods=T)
    names = [f"S{i:03d}" for i in range(N)] + [NEW_NAME]
    vol = rng.uniform(0.01, 0.03, N + 1)
    u = pd.DataFrame(rng.standard_normal((T, N + 1)) * vol + 0.001, index=dates, columns=names)
    u = u.mask(rng.random((T, N + 1)) < 0.1)
    u.iloc[:150, 3] = np.nan
    u.iloc[300:, 4] = np.nan
    u.iloc[:, 5] = np.nan
    u.iloc[: T - 20, 6] = np.nan
    u.iloc[: T - 8, N] = np.nan
    u.iloc[200:260, 7] *= 3.0  # a regime change for the VRA to follow
    level = np.exp(rng.uniform(np.log(3e8), np.log(3e11), N + 1))
    caps = pd.DataFrame(level * np.exp(0.01 * rng.standard_normal((T, N + 1))).cumprod(axis=0),
                        index=dates, columns=names)
    caps = caps.mask(rng.random((T, N + 1)) < 0.05)
    caps.iloc[300:, 4] = np.nan
    return u, caps


def assert_equal_forecasts(got: pd.DataFrame, want: pd.DataFrame, what: str) -> None:
    assert list(got.columns) == list(want.columns) and got.index.equals(want.index), f"{what}: labels"
    a, b = got.to_numpy(), want.to_numpy()
    assert (np.isnan(a) == np.isnan(b)).all(), f"{what}: NaN pattern differs"
    ok = ~np.isnan(b)
    err = np.abs(a[ok] - b[ok]) / np.abs(b[ok])
    assert err.max(initial=0.0) <= RTOL, f"{what}: relative difference {err.max():.2e} > {RTOL:.0e}"


def old_and_new(u: pd.DataFrame, caps: pd.DataFrame, t_old: int, shuffle_seed: int = 1):
    """The old part (without NEW, unseen then) and the whole panel with its columns shuffled."""
    old_names = [n for n in u.columns if n != NEW_NAME]
    order = list(np.random.default_rng(shuffle_seed).permutation(u.columns))
    return (u.iloc[:t_old][old_names], caps.iloc[:t_old][old_names]), (u[order], caps[order])


PARAMS = [SpecificParams(), SpecificParams(halflife=20, nw_lags=2, shrink_q=0.0, min_obs=10, vra_halflife=10)]


def test_with_state_returns_the_frame_of_specific_risk_bit_for_bit():
    u, caps = market()
    frame, _ = specific_risk_with_state(u, caps)
    assert frame.equals(specific_risk(u, caps))


@pytest.mark.parametrize("params", PARAMS, ids=["use4", "short"])
@pytest.mark.parametrize("t_old", [3, 200, 392, 395])
@pytest.mark.parametrize("B", [1, 5])
def test_advancing_the_state_gives_the_rows_of_a_full_rebuild(B: int, t_old: int, params: SpecificParams):
    u, caps = market()
    (u_old, caps_old), (u_all, caps_all) = old_and_new(u, caps, t_old)
    full = specific_risk(u_all.iloc[: t_old + B], caps_all.iloc[: t_old + B], params)
    _, state = specific_risk_with_state(u_old, caps_old, params)
    new_rows = slice(t_old, t_old + B)
    got, after = advance_specific_risk(state, u_all.iloc[new_rows], caps_all.iloc[new_rows], params)
    assert_equal_forecasts(got, full.iloc[new_rows], f"B={B}, T_old={t_old}")
    assert t_old < 42 or got.notna().to_numpy().mean() > 0.8, "the comparison covers real forecasts"
    assert after.names == tuple(u_all.columns) and after.last_date == u_all.index[t_old + B - 1]
    if t_old >= 395:  # the rows cover the special names: check they are there for the right reason
        assert np.isfinite(got[DELISTED]).all(), "a delisted name keeps its (decaying) forecast"
        assert got[NEVER].isna().all() and got[NEW_NAME].isna().all(), "too few days: no forecast"


def test_a_new_name_gets_the_rebuilds_forecast_once_it_has_min_obs_days():
    u, caps = market()
    params = SpecificParams(min_obs=3)
    (u_old, caps_old), (u_all, caps_all) = old_and_new(u, caps, 390)
    _, state = specific_risk_with_state(u_old, caps_old, params)
    got, _ = advance_specific_risk(state, u_all.iloc[390:], caps_all.iloc[390:], params)
    assert_equal_forecasts(got, specific_risk(u_all, caps_all, params).iloc[390:], "new name")
    assert got[NEW_NAME].notna().sum() >= 3


@pytest.mark.parametrize("params", PARAMS, ids=["use4", "short"])
@pytest.mark.parametrize("t_old", [3, 300])
def test_the_update_can_run_day_after_day_until_the_end(t_old: int, params: SpecificParams):
    """From 3 days (fewer than the Newey–West lags) or 300, one day at a time to day 400."""
    u, caps = market()
    (u_old, caps_old), (u_all, caps_all) = old_and_new(u, caps, t_old)
    _, state = specific_risk_with_state(u_old, caps_old, params)
    rows = []
    for t in range(t_old, len(u_all)):
        row, state = advance_specific_risk(state, u_all.iloc[t:t + 1], caps_all.iloc[t:t + 1], params)
        rows.append(row)
    got = pd.concat(rows)
    assert_equal_forecasts(got, specific_risk(u_all, caps_all, params).iloc[t_old:], f"daily from {t_old}")
    assert got.notna().to_numpy().mean() > 0.5


def test_advancing_by_two_then_three_days_equals_advancing_by_five():
    u, caps = market()
    (u_old, caps_old), (u_all, caps_all) = old_and_new(u, caps, 390)
    _, state = specific_risk_with_state(u_old, caps_old)
    once, s_once = advance_specific_risk(state, u_all.iloc[390:395], caps_all.iloc[390:395])
    first, s_two = advance_specific_risk(state, u_all.iloc[390:392], caps_all.iloc[390:392])
    second, s_twice = advance_specific_risk(s_two, u_all.iloc[392:395], caps_all.iloc[392:395])
    assert_equal_forecasts(pd.concat([first, second]), once, "2 + 3 days vs 5 days")
    # the two states may keep their sums about different constants (a new name's centre comes
    # from its first days), so compare them by what they forecast next
    later_once, _ = advance_specific_risk(s_once, u_all.iloc[395:], caps_all.iloc[395:])
    later_twice, _ = advance_specific_risk(s_twice, u_all.iloc[395:], caps_all.iloc[395:])
    assert_equal_forecasts(later_twice, later_once, "the days after, from either state")
    assert s_twice.names == s_once.names and s_twice.last_date == s_once.last_date
    np.testing.assert_array_equal(s_twice.counts, s_once.counts)


def test_state_round_trips_through_npz_without_pickle(tmp_path):
    u, caps = market()
    (u_old, caps_old), (u_all, caps_all) = old_and_new(u, caps, 395)
    params = PARAMS[1]
    _, state = specific_risk_with_state(u_old, caps_old, params)
    arrays = state.to_arrays()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays.values())
    np.savez(tmp_path / "state.npz", **arrays)
    with np.load(tmp_path / "state.npz", allow_pickle=False) as stored:
        loaded = SpecificState.from_arrays(dict(stored))
    for key, value in loaded.to_arrays().items():
        np.testing.assert_array_equal(value, arrays[key], err_msg=key)
    assert loaded.names == state.names and loaded.params == params and loaded.last_date == state.last_date
    got, _ = advance_specific_risk(loaded, u_all.iloc[395:], caps_all.iloc[395:], params)
    want, _ = advance_specific_risk(state, u_all.iloc[395:], caps_all.iloc[395:], params)
    assert got.equals(want), "a loaded state continues exactly as the one in memory"


def test_the_state_grows_with_names_not_with_history():
    u, caps = market()
    short = specific_risk_with_state(u.iloc[:100], caps.iloc[:100])[1].to_arrays()
    long = specific_risk_with_state(u, caps)[1].to_arrays()
    assert {k: v.shape for k, v in short.items()} == {k: v.shape for k, v in long.items()}
    lags = SpecificParams().nw_lags
    assert sum(v.size for v in long.values()) <= (6 * lags + 12) * u.shape[1] + 16


def test_bad_updates_are_refused_with_a_reason():
    u, caps = market()
    (u_old, caps_old), (u_all, caps_all) = old_and_new(u, caps, 395)
    _, state = specific_risk_with_state(u_old, caps_old)
    new_u, new_caps = u_all.iloc[395:], caps_all.iloc[395:]

    with pytest.raises(DataValidationError, match="missing from the new columns"):
        advance_specific_risk(state, new_u.drop(columns="S010"), new_caps)
    with pytest.raises(DataValidationError, match="inf"):
        advance_specific_risk(state, new_u.where(new_u.isna(), np.inf), new_caps)
    with pytest.raises(DataValidationError, match="after the state's last date"):
        advance_specific_risk(state, u_all.iloc[394:396], caps_all.iloc[394:396])
    with pytest.raises(DataValidationError, match="ascending"):
        advance_specific_risk(state, new_u.iloc[::-1], new_caps)
    with pytest.raises(DataValidationError, match="twice"):
        advance_specific_risk(state, pd.concat([new_u, new_u[["S010"]]], axis=1), new_caps)
    with pytest.raises(DataValidationError, match="no dates"):
        advance_specific_risk(state, new_u.iloc[:0], new_caps)
    with pytest.raises(DataValidationError, match="built with"):
        advance_specific_risk(state, new_u, new_caps, SpecificParams(halflife=42))
    with pytest.raises(DataValidationError, match="dates"):
        advance_specific_risk(state, new_u.reset_index(drop=True), new_caps)
    with pytest.raises(DataValidationError, match="not a specific-risk state"):
        SpecificState.from_arrays({k: v for k, v in state.to_arrays().items() if k != "sum_xx"})
