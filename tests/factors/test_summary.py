"""Factor summary: performance per factor, cumulative paths, correlations (SPEC §3)."""

import numpy as np
import pandas as pd
import pytest

from riskstrata.errors import DataValidationError
from riskstrata.factors.summary import (
    SUMMARY_COLUMNS,
    correlation_matrix,
    cumulative_returns,
    factor_summary,
    pair_correlation,
)


@pytest.fixture
def worked() -> pd.DataFrame:
    dates = pd.bdate_range("2024-01-01", periods=3)
    return pd.DataFrame({"VALUE": [0.1, -0.05, 0.02]}, index=dates)


def test_factor_summary_worked_example_by_hand(worked):
    row = factor_summary(worked).loc["VALUE"]
    assert list(factor_summary(worked).columns) == SUMMARY_COLUMNS
    growth = 1.1 * 0.95 * 1.02
    assert row["cumulative_return"] == pytest.approx(growth - 1)
    assert row["cagr"] == pytest.approx(growth ** (252 / 3) - 1)  # a 252-day year
    # Path 1.10 → 1.045 → 1.0659: the worst fall from the 1.10 peak is 5 %.
    assert row["max_drawdown"] == pytest.approx(-0.05)
    r = np.array([0.1, -0.05, 0.02])
    assert row["ann_vol"] == pytest.approx(np.std(r, ddof=1) * np.sqrt(252))
    assert row["sharpe"] == pytest.approx(r.mean() * 252 / (np.std(r, ddof=1) * np.sqrt(252)))
    assert row["latest_return"] == pytest.approx(0.02)
    assert row["latest_date"] == pd.Timestamp("2024-01-03")
    assert row["n_days"] == 3


def test_sharpe_subtracts_the_daily_risk_free_rate(worked):
    rf = pd.Series(0.0001, index=worked.index[:1])  # one rate, carried forward
    row = factor_summary(worked, risk_free=rf).loc["VALUE"]
    r = np.array([0.1, -0.05, 0.02])
    assert row["sharpe"] == pytest.approx((r.mean() - 0.0001) * 252 / (np.std(r, ddof=1) * np.sqrt(252)))
    late = pd.Series(0.0001, index=worked.index[1:])
    with pytest.raises(DataValidationError, match="risk_free"):
        factor_summary(worked, risk_free=late)


def test_periods_per_year_sets_the_annualisation(worked):
    row = factor_summary(worked, periods_per_year=12).loc["VALUE"]
    assert row["cagr"] == pytest.approx((1.1 * 0.95 * 1.02) ** (12 / 3) - 1)
    assert row["ann_vol"] == pytest.approx(np.std([0.1, -0.05, 0.02], ddof=1) * np.sqrt(12))


def test_a_first_day_loss_is_a_drawdown():
    df = pd.DataFrame({"X": [-0.1, 0.05]}, index=pd.bdate_range("2024-01-01", periods=2))
    assert factor_summary(df).loc["X", "max_drawdown"] == pytest.approx(-0.1)
    up = pd.DataFrame({"X": [0.01, 0.02]}, index=pd.bdate_range("2024-01-01", periods=2))
    assert factor_summary(up).loc["X", "max_drawdown"] == 0.0


def test_nan_days_are_skipped_not_treated_as_zero():
    dates = pd.bdate_range("2024-01-01", periods=5)
    gappy = pd.DataFrame({"VALUE": [0.1, np.nan, -0.05, 0.02, np.nan],
                          "EMPTY": [np.nan] * 5}, index=dates)
    dense = pd.DataFrame({"VALUE": [0.1, -0.05, 0.02]}, index=dates[[0, 2, 3]])
    got, want = factor_summary(gappy).loc["VALUE"], factor_summary(dense).loc["VALUE"]
    for col in ("cagr", "cumulative_return", "ann_vol", "sharpe", "max_drawdown", "latest_return"):
        assert got[col] == pytest.approx(want[col]), col
    assert got["n_days"] == 3
    assert got["latest_date"] == dates[3]  # the last non-NaN day, not the last row
    empty = factor_summary(gappy).loc["EMPTY"]
    assert empty["n_days"] == 0 and np.isnan(empty["cagr"]) and pd.isna(empty["latest_date"])


def test_cumulative_returns_compound_from_zero_and_hold_over_gaps():
    dates = pd.bdate_range("2024-01-01", periods=5)
    df = pd.DataFrame({"A": [0.1, -0.05, np.nan, 0.02, 0.0],
                       "B": [np.nan, np.nan, 0.01, 0.01, np.nan]}, index=dates)
    path = cumulative_returns(df)
    np.testing.assert_allclose(path["A"], [0.1, 1.1 * 0.95 - 1, 1.1 * 0.95 - 1, 1.1 * 0.95 * 1.02 - 1,
                                           1.1 * 0.95 * 1.02 - 1])
    assert path["B"].iloc[:2].isna().all()  # the factor did not exist yet
    np.testing.assert_allclose(path["B"].iloc[2:], [0.01, 1.01**2 - 1, 1.01**2 - 1])
    assert path["A"].iloc[-1] == pytest.approx(factor_summary(df).loc["A", "cumulative_return"])


def _correlated(T: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((T, 3))
    df = pd.DataFrame({"MARKET": z[:, 0], "SIZE": 0.6 * z[:, 0] + 0.8 * z[:, 1], "VALUE": z[:, 2]},
                      index=pd.bdate_range("2022-01-03", periods=T)) * 0.01
    df.iloc[::9, 1] = np.nan
    return df


def test_correlation_matrix_is_symmetric_with_unit_diagonal():
    df = _correlated()
    c = correlation_matrix(df)
    assert list(c.index) == list(c.columns) == list(df.columns)
    np.testing.assert_allclose(c.to_numpy(), c.to_numpy().T)
    np.testing.assert_allclose(np.diag(c), 1.0)
    assert c.loc["MARKET", "SIZE"] == pytest.approx(0.6, abs=0.08)
    both = df[["MARKET", "SIZE"]].dropna()  # pairwise: the common days only
    assert c.loc["MARKET", "SIZE"] == pytest.approx(np.corrcoef(both.T)[0, 1])


def test_correlation_matrix_trailing_window_uses_the_last_rows():
    df = _correlated()
    c = correlation_matrix(df, window=100)
    assert c.loc["MARKET", "VALUE"] == pytest.approx(df.iloc[-100:]["MARKET"].corr(df.iloc[-100:]["VALUE"]))


def test_pair_correlation_reports_the_pair_its_days_and_a_63_day_rolling_series():
    df = _correlated()
    out = pair_correlation(df, "MARKET", "SIZE")
    assert set(out) == {"a", "b", "correlation", "n_days", "rolling"}
    assert (out["a"], out["b"]) == ("MARKET", "SIZE")
    common = df[["MARKET", "SIZE"]].dropna()
    assert out["n_days"] == len(common)
    assert out["correlation"] == pytest.approx(correlation_matrix(df).loc["MARKET", "SIZE"])
    rolling = out["rolling"]
    assert isinstance(rolling, pd.Series) and len(rolling) == len(common) - 62
    assert rolling.iloc[-1] == pytest.approx(common.iloc[-63:].corr().iloc[0, 1])
    recent = pair_correlation(df, "MARKET", "SIZE", window=90)
    assert recent["n_days"] == df.iloc[-90:][["MARKET", "SIZE"]].dropna().shape[0]


def test_pair_correlation_of_an_unknown_factor_lists_the_factors():
    with pytest.raises(DataValidationError, match="MARKET, SIZE, VALUE") as err:
        pair_correlation(_correlated(), "MARKET", "MOMENTUM")
    assert "MOMENTUM" in str(err.value)
