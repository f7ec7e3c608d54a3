"""Resumable validation: a state from the first dates, advanced by the new ones, gives the
reports of a full rebuild on the whole history (issue 13 §2, the fast daily update)."""

import numpy as np
import pandas as pd
import pytest

from riskstrata.factors.blocks import BlockArray
from riskstrata.factors.validation import (
    StaleValidationState,
    ValidationReport,
    ValidationState,
    advance_validation,
    random_scores,
    validation_reports,
    validation_reports_with_state,
)

# Both sides add the same numbers in a different grouping (running sums vs one pass, pandas'
# rolling variance restarted on the tail): they agree to rounding, far inside the lead's 1e-10.
RTOL = ATOL = 1e-12
OPTIONS = {"n_random_portfolios": 12, "seed": 3, "window": 60, "min_obs": 3}
NEW_NAME = "NEW"


def synthetic_panel(T: int = 400, N: int = 80, seed: int = 21) -> dict:
    """A factor model's inputs over T business days (≈ 19 month ends) and N + 1 names.

    Factors: a constant market column, two 0/1 industry dummies and three styles. Two
    covariance labels (the second scaled and without forecasts for the first days). Gaps: late
    entrants, missing returns and variances, a style not estimated for 30 days (its return,
    exposures and forecasts NaN), a missing R². The name ``NEW`` sits in the middle of the
    columns and has data only from row ``new_from`` on (set by the caller; NaN before).
    """
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2021-01-04", periods=T)
    factors = ["MARKET", "IND_A", "IND_B", "VALUE", "SIZE", "MOMENTUM"]
    K = len(factors)
    names = [f"S{i:03d}" for i in range(N // 2)] + [NEW_NAME] + [f"S{i:03d}" for i in range(N // 2, N)]
    n = len(names)
    vols = np.array([0.010, 0.006, 0.007, 0.004, 0.005, 0.003])
    sigma = (np.full((K, K), 0.2) + 0.8 * np.eye(K)) * np.outer(vols, vols)
    regime = np.exp(0.4 * np.sin(np.linspace(0, 5 * np.pi, T)))
    f = rng.multivariate_normal(np.zeros(K), sigma, size=T) * np.sqrt(regime)[:, None]
    X = np.empty((T, n, K))
    X[..., 0] = 1.0
    X[..., 1:3] = np.eye(2)[rng.integers(0, 2, n)]
    X[..., 3:] = rng.standard_normal((n, 3)) + 0.1 * rng.standard_normal((T, n, 3)).cumsum(axis=0) / np.sqrt(T)
    spec_vol = rng.uniform(0.01, 0.03, n)
    u = rng.standard_normal((T, n)) * spec_vol * np.sqrt(regime)[:, None]
    s2 = np.tile(spec_vol**2, (T, 1)) * np.r_[regime[1:], regime[-1]][:, None]
    caps = rng.lognormal(22, 1.5, n) * np.exp(0.01 * rng.standard_normal((T, n)).cumsum(axis=0))
    cov_on = sigma[None] * np.r_[regime[1:], regime[-1]][:, None, None]
    cov_off = 1.2 * cov_on
    cov_off[:7] = np.nan

    X[:40, :5] = np.nan                      # late entrants
    u[:41, :5] = np.nan
    s2[:40, :5] = np.nan
    caps[:40, :5] = np.nan
    new = names.index(NEW_NAME)              # NEW has every day (a test counts its days)
    u[(rng.random((T, n)) < 0.03) & (np.arange(n) != new)] = np.nan    # missing returns
    s2[(rng.random((T, n)) < 0.02) & (np.arange(n) != new)] = np.nan   # missing forecasts
    gap = slice(150, 180)                    # MOMENTUM not estimated
    f[gap, 5] = np.nan
    X[149:179, :, 5] = np.nan
    cov_on[149:179, 5, :] = cov_on[149:179, :, 5] = np.nan
    cov_off[149:179, 5, :] = cov_off[149:179, :, 5] = np.nan
    r2 = pd.Series(rng.uniform(0.1, 0.5, T), index=dates)
    r2.iloc[11] = np.nan

    def frame(a: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(a, index=dates, columns=names)

    return {"factor_returns": pd.DataFrame(f, index=dates, columns=factors),
            "factor_covs": {"eigen on": cov_on, "eigen off": cov_off},
            "specific_returns": frame(u), "specific_var": frame(s2), "exposures": X, "caps": frame(caps), "r2": r2}


def with_new_name_from(panel: dict, row: int) -> dict:
    """The panel with NEW outside the universe before ``row`` (NaN there, as a full rebuild sees it)."""
    out = dict(panel, exposures=panel["exposures"].copy())
    j = panel["specific_returns"].columns.get_loc(NEW_NAME)
    for key in ("specific_returns", "specific_var", "caps"):
        out[key] = panel[key].copy()
        out[key].iloc[:row, j] = np.nan
    out["exposures"][:row, j] = np.nan
    return out


def rows(panel: dict, a: int, b: int, *, drop_new: bool = False) -> dict:
    """Dates a … b − 1 of the panel (without NEW if ``drop_new``)."""
    keep = np.ones(panel["specific_returns"].shape[1], dtype=bool)
    if drop_new:
        keep[panel["specific_returns"].columns.get_loc(NEW_NAME)] = False
    return {"factor_returns": panel["factor_returns"].iloc[a:b],
            "factor_covs": {label: cov[a:b] for label, cov in panel["factor_covs"].items()},
            "specific_returns": panel["specific_returns"].iloc[a:b, keep],
            "specific_var": panel["specific_var"].iloc[a:b, keep],
            "exposures": panel["exposures"][a:b][:, keep], "caps": panel["caps"].iloc[a:b, keep],
            "r2": panel["r2"].iloc[a:b]}


def advance(state: ValidationState, new: dict) -> tuple[dict[str, ValidationReport], ValidationState]:
    return advance_validation(state, new["factor_returns"], new["factor_covs"], new["specific_returns"],
                              new["specific_var"], new["exposures"], new["caps"], r2_new=new["r2"])


def assert_reports_equal(got: dict[str, ValidationReport], want: dict[str, ValidationReport]) -> None:
    assert list(got) == list(want)
    for label in want:
        g, w = got[label], want[label]
        for part in ("table", "random_active", "specific"):
            pd.testing.assert_frame_equal(getattr(g, part), getattr(w, part), check_exact=False, rtol=RTOL,
                                          atol=ATOL, obj=f"{label} {part}")
        assert g.mean_r2 == pytest.approx(w.mean_r2, rel=RTOL, abs=ATOL)


@pytest.fixture(scope="module")
def panel() -> dict:
    return synthetic_panel()


def _split_inside_a_month(dates: pd.DatetimeIndex) -> int:
    """T_old with dates T_old − 1 … T_old + 5 in one month."""
    months = dates.to_period("M")
    return next(t for t in range(300, len(dates) - 6) if months[t - 1] == months[t + 5])


def _split_at_a_month_end(dates: pd.DatetimeIndex) -> int:
    """T_old with row T_old − 1 the last date of its month."""
    months = dates.to_period("M")
    return next(t for t in range(300, len(dates) - 6) if months[t - 1] != months[t])


@pytest.mark.parametrize("where", ["inside a month", "at a month end"])
@pytest.mark.parametrize("B", [1, 5, 40])  # 40: past DIRECT_ROLLING_ROWS, and across a month end
def test_state_of_the_first_dates_advanced_by_the_new_ones_equals_a_full_rebuild(panel, where, B):
    dates = panel["factor_returns"].index
    T_old = _split_inside_a_month(dates) if where == "inside a month" else _split_at_a_month_end(dates)
    data = with_new_name_from(panel, T_old)
    full = rows(data, 0, T_old + B)
    want = validation_reports(**full, **OPTIONS)

    old = rows(data, 0, T_old, drop_new=True)
    first, state = validation_reports_with_state(**old, **OPTIONS)
    assert_reports_equal(first, validation_reports(**old, **OPTIONS))
    got, _ = advance(state, rows(data, T_old, T_old + B))
    assert_reports_equal(got, want)
    if B == 5:  # NEW has 4 judged days (its first has no forecast before it): it is reported
        assert got["eigen on"].specific.loc[NEW_NAME, "n_obs"] == 4


def test_the_whole_history_day_by_day_equals_a_full_rebuild_across_month_ends(panel):
    T_old = 340
    data = with_new_name_from(panel, T_old + 7)
    _, state = validation_reports_with_state(**rows(data, 0, T_old, drop_new=True), **OPTIONS)
    for t in range(T_old, T_old + 30):  # crosses a month end; NEW joins on day 8
        new = rows(data, t, t + 1, drop_new=t < T_old + 7)
        got, state = advance(state, new)
    want = validation_reports(**rows(data, 0, T_old + 30), **OPTIONS)
    assert_reports_equal(got, want)


def test_advancing_twice_equals_advancing_once_and_leaves_the_state_passed_in_unchanged(panel):
    T_old = _split_inside_a_month(panel["factor_returns"].index)
    data = with_new_name_from(panel, T_old)
    _, state = validation_reports_with_state(**rows(data, 0, T_old, drop_new=True), **OPTIONS)
    before = {k: v.copy() for k, v in state.to_arrays().items()}
    once, state_once = advance(state, rows(data, T_old, T_old + 5))
    _, state_two = advance(state, rows(data, T_old, T_old + 2))
    twice, state_two = advance(state_two, rows(data, T_old + 2, T_old + 5))
    assert_reports_equal(twice, once)
    for key, value in before.items():
        np.testing.assert_array_equal(state.to_arrays()[key], value, err_msg=key)
    a, b = state_once.to_arrays(), state_two.to_arrays()
    assert a.keys() == b.keys()
    for key in a:
        if a[key].dtype.kind in "fc":
            np.testing.assert_allclose(a[key], b[key], rtol=RTOL, atol=ATOL, err_msg=key)
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_state_round_trips_through_npz_without_pickle(panel, tmp_path):
    T_old = _split_at_a_month_end(panel["factor_returns"].index)
    data = with_new_name_from(panel, T_old)
    reports, state = validation_reports_with_state(**rows(data, 0, T_old, drop_new=True), **OPTIONS)
    arrays = state.to_arrays()
    assert all(a.dtype != object for a in arrays.values())
    assert {a.dtype.kind for a in arrays.values()} <= {"f", "i", "b", "U"}
    path = tmp_path / "validation_state.npz"
    np.savez(path, **arrays)
    with np.load(path, allow_pickle=False) as saved:
        loaded = ValidationState.from_arrays(saved)
    assert_reports_equal(loaded.reports(), reports)
    new = rows(data, T_old, T_old + 5)
    assert_reports_equal(advance(loaded, new)[0], advance(state, new)[0])


def test_state_does_not_grow_with_the_number_of_dates(panel):
    short = validation_reports_with_state(**rows(panel, 0, 200), **OPTIONS)[1].to_arrays()
    long = validation_reports_with_state(**rows(panel, 0, 400), **OPTIONS)[1].to_arrays()
    assert {k: v.shape for k, v in short.items()} == {k: v.shape for k, v in long.items()}


def test_a_new_name_leaves_every_other_names_random_scores_unchanged():
    names = [f"S{i:03d}" for i in range(50)]
    scores = random_scores(names, 20, seed=7)
    grown = ["ZZZ"] + names[::-1]  # a new name first, the others in reverse order
    grown_scores = random_scores(grown, 20, seed=7)
    np.testing.assert_array_equal(grown_scores[1:], scores[::-1])
    assert not np.allclose(random_scores(names, 20, seed=8), scores)  # the seed still matters
    assert abs(scores.mean()) < 0.1 and scores.std() == pytest.approx(1.0, abs=0.05)


def test_the_state_scores_of_a_name_that_joins_are_its_own(panel):
    T_old = 380
    data = with_new_name_from(panel, T_old)
    _, state = validation_reports_with_state(**rows(data, 0, T_old, drop_new=True), **OPTIONS)
    _, after = advance(state, rows(data, T_old, T_old + 1))
    names = list(after.names)
    np.testing.assert_array_equal(after.scores, random_scores(names, OPTIONS["n_random_portfolios"],
                                                              OPTIONS["seed"]))
    old_rows = [names.index(n) for n in state.names]
    np.testing.assert_array_equal(after.scores[old_rows], state.scores)


def test_exposures_streamed_as_date_blocks_give_the_same_reports_and_state(panel, tmp_path):
    data = rows(panel, 0, 300)
    X = data["exposures"]
    bounds = [(0, 70), (70, 200), (200, 300)]
    paths = []
    for a, b in bounds:
        paths.append(tmp_path / f"x{a}.npy")
        np.save(paths[-1], X[a:b])
    blocks = BlockArray(bounds, paths, X.shape[1:], X.dtype)
    want, want_state = validation_reports_with_state(**data, **OPTIONS)
    got, got_state = validation_reports_with_state(**dict(data, exposures=blocks), **OPTIONS)
    assert_reports_equal(got, want)
    new = rows(panel, 300, 303)
    np.save(tmp_path / "new.npy", new["exposures"])
    new_blocks = BlockArray([(0, 3)], [tmp_path / "new.npy"], new["exposures"].shape[1:], X.dtype)
    assert_reports_equal(advance(got_state, dict(new, exposures=new_blocks))[0], advance(want_state, new)[0])


def test_dates_without_a_calendar_skip_the_month_end_diagnostics_and_still_resume(panel):
    data = rows(panel, 0, 250)
    plain = {k: (v.reset_index(drop=True) if isinstance(v, pd.DataFrame | pd.Series) else v) for k, v in data.items()}
    _, state = validation_reports_with_state(**rows(plain, 0, 240), **OPTIONS)
    got, _ = advance(state, rows(plain, 240, 250))
    want = validation_reports(**plain, **OPTIONS)
    assert_reports_equal(got, want)
    assert got["eigen on"].table["stability"].isna().all() and got["eigen on"].table["vif"].isna().all()


def test_new_dates_that_change_the_style_columns_ask_for_a_rebuild(panel):
    # IND_B was a 0/1 dummy at every month end; a value of 0.5 makes it a style for the VIF,
    # which changes the VIF of every past month end.
    T_old = 380
    _, state = validation_reports_with_state(**rows(panel, 0, T_old), **OPTIONS)
    new = rows(panel, T_old, T_old + 1)
    new["exposures"] = new["exposures"].copy()
    new["exposures"][0, 3, 2] = 0.5
    with pytest.raises(StaleValidationState, match="rebuild"):
        advance(state, new)


def test_advance_rejects_dates_that_do_not_follow_the_state_and_names_that_drop_out(panel):
    _, state = validation_reports_with_state(**rows(panel, 0, 300), **OPTIONS)
    with pytest.raises(Exception, match="after"):
        advance(state, rows(panel, 299, 301))
    new = rows(panel, 300, 301)
    fewer = {k: (v.iloc[:, 1:] if k in ("specific_returns", "specific_var", "caps") else v) for k, v in new.items()}
    fewer["exposures"] = new["exposures"][:, 1:]
    with pytest.raises(Exception, match="drop out"):
        advance(state, fewer)
