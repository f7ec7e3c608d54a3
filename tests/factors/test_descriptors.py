"""Raw descriptors: statsmodels equality for BETA, the momentum lag, zero volatility, liquidity gaps,
a worked example of the fundamental ratios, and GROWTH recovering the synthetic market's truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from riskstrata.data.fundamentals import fundamentals_panel
from riskstrata.data.synthetic import synthetic_market
from riskstrata.factors.descriptors import (
    beta_and_residual_vol,
    liquidity,
    log_size,
    market_cap_panel,
    momentum,
    total_volatility,
    value_descriptors,
)


def toy_returns(T: int = 420, N: int = 6, seed: int = 7) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-02", periods=T)
    market = pd.Series(rng.normal(0.0004, 0.01, T), index=dates)
    betas = np.linspace(0.5, 1.6, N)
    r = 0.0002 + market.to_numpy()[:, None] * betas + rng.normal(0, 0.015, (T, N))
    returns = pd.DataFrame(r, index=dates, columns=[f"S{i}" for i in range(N)])
    returns.iloc[:120, 2] = np.nan          # listed late
    returns.iloc[[200, 201, 333], 3] = np.nan  # missing days
    market.iloc[250] = np.nan                # a market holiday in the data
    return returns, market


def test_beta_equals_an_ew_weighted_statsmodels_wls_slope():
    returns, market = toy_returns()
    rng = np.random.default_rng(3)
    window, halflife = 252, 63
    beta, resid_vol = beta_and_residual_vol(returns, market, window=window, halflife=halflife, min_obs=126)
    delta = 0.5 ** (1 / halflife)
    picks = [(j, t) for j, t in zip(rng.integers(0, returns.shape[1], 12), rng.integers(260, len(returns), 12))]
    picks += [(2, 250), (3, 335), (0, 130)]  # a late listing, gaps, a short (not full) window
    for j, t in picks:
        lo = max(0, t - window + 1)
        y, x = returns.iloc[lo:t + 1, j].to_numpy(), market.iloc[lo:t + 1].to_numpy()
        w = delta ** np.arange(t - lo, -1, -1)
        ok = np.isfinite(y) & np.isfinite(x)
        fit = sm.WLS(y[ok], sm.add_constant(x[ok]), weights=w[ok]).fit()
        where = f"stock {returns.columns[j]}, row {t}"
        assert beta.iloc[t, j] == pytest.approx(fit.params[1], abs=1e-8), where
        expected_vol = np.sqrt(np.sum(w[ok] * fit.resid**2) / np.sum(w[ok]))
        assert resid_vol.iloc[t, j] == pytest.approx(expected_vol, abs=1e-10), where


def test_beta_is_nan_below_min_obs_and_recovers_the_true_beta():
    returns, market = toy_returns()
    beta, _ = beta_and_residual_vol(returns, market)
    assert beta.iloc[:125].isna().all().all()
    assert beta.iloc[:245, 2].isna().all()  # listed at row 120: 126 valid days by row 245
    np.testing.assert_allclose(beta.iloc[-1].to_numpy(), np.linspace(0.5, 1.6, 6), atol=0.35)


def test_momentum_skips_the_last_21_days():
    returns, _ = toy_returns()
    t = 400
    base = momentum(returns)
    shocked = returns.copy()
    shocked.iloc[t - 20:t + 1] = 0.5  # everything inside the lag
    assert momentum(shocked).iloc[t].to_numpy() == pytest.approx(base.iloc[t].to_numpy(), abs=0)
    shocked.iloc[t - 21] = 0.5  # the most recent day that counts
    assert not np.allclose(momentum(shocked).iloc[t].to_numpy(), base.iloc[t].to_numpy())


def test_momentum_is_the_ew_sum_of_log_returns_from_t_minus_251_to_t_minus_21():
    returns, _ = toy_returns()
    t, j = 380, 1
    delta = 0.5 ** (1 / 126)
    used = np.log1p(returns.iloc[t - 251:t - 20, j].to_numpy())  # rows t−251 … t−21
    weights = delta ** np.arange(len(used) - 1, -1, -1)  # the row t−21 weighs 1
    assert momentum(returns).iloc[t, j] == pytest.approx(np.sum(weights * used), abs=1e-12)


def test_volatility_of_constant_returns_is_zero_not_nan_or_inf():
    dates = pd.bdate_range("2020-01-01", periods=300)
    returns = pd.DataFrame({"FLAT": 0.001, "ZERO": 0.0, "ODD": 1 / 3}, index=dates)
    vol = total_volatility(returns)
    assert vol.iloc[62:].eq(0.0).all().all()
    assert vol.iloc[:62].isna().all().all()  # fewer than min_obs = 63 days
    _, resid = beta_and_residual_vol(returns, pd.Series(np.sin(np.arange(300)) / 100, index=dates))
    assert resid.iloc[125:].eq(0.0).all().all()


def test_total_volatility_is_the_ew_standard_deviation():
    returns, _ = toy_returns()
    t, j = 300, 4
    x = returns.iloc[t - 251:t + 1, j].to_numpy()
    w = (0.5 ** (1 / 42)) ** np.arange(251, -1, -1)
    mean = np.sum(w * x) / np.sum(w)
    expected = np.sqrt(np.sum(w * (x - mean) ** 2) / np.sum(w))
    assert total_volatility(returns).iloc[t, j] == pytest.approx(expected, rel=1e-10)


def test_liquidity_worked_example_and_nan_where_volume_is_missing():
    dates = pd.bdate_range("2020-01-01", periods=300)
    shares = pd.DataFrame({"A": 1e9, "B": 1e9, "C": 2e9}, index=dates)
    volume = pd.DataFrame({"A": 1e7, "B": np.nan, "C": 1e7}, index=dates)
    volume.iloc[100:200, 2] = np.nan  # C: a 100-day hole in its volume data
    liq = liquidity(volume, shares)
    # A turns over 1 % a day: 21 % a month in every window, so each component is log(0.21).
    assert liq["A"].iloc[251:].to_numpy() == pytest.approx(np.log(0.21))
    assert liq["B"].isna().all()
    assert np.isfinite(liq["C"].iloc[50])
    # C turns over 0.5 % a day where it has data. Each window needs half its days with data:
    # at row 120 only the 3-month window does (42 of 63 days), deep in the hole none does.
    assert liq["C"].iloc[120] == pytest.approx(np.log(21 * 0.005))
    assert liq["C"].iloc[160:200].isna().all()
    assert liq["C"].iloc[250] == pytest.approx(np.log(21 * 0.005))  # the mean over the days with data


def test_market_cap_and_log_size():
    dates = pd.bdate_range("2020-01-01", periods=2)
    price = pd.DataFrame({"A": [10.0, 11.0], "B": [5.0, -1.0]}, index=dates)
    shares = pd.DataFrame({"A": [1e8], "B": [2e8]}, index=dates[:1]).reindex(dates).ffill()
    cap = market_cap_panel(price, shares)
    assert cap["A"].tolist() == [1e9, 1.1e9] and cap["B"].iloc[0] == 1e9 and np.isnan(cap["B"].iloc[1])
    assert log_size(cap)["A"].iloc[0] == pytest.approx(np.log(1e9))
    assert np.isnan(log_size(cap)["B"].iloc[1])


def test_value_descriptors_worked_example():
    dates = pd.DatetimeIndex(["2019-06-28", "2020-06-30"])
    names = ["A", "B", "C"]

    def panel(rows):
        return pd.DataFrame(rows, index=dates, columns=names, dtype="float64")

    nan = np.nan
    price = panel([[40, 20, 10], [50, 25, 10]])
    cap = panel([[4e9, 2e9, 1e9], [5e9, 2.5e9, 1e9]])
    fund = {
        "book_value_per_share": panel([[20, nan, nan], [20, nan, nan]]),
        "price_to_book": panel([[nan, 4, nan], [nan, 5, -2]]),
        "eps": panel([[2.0, -1.0, nan], [2.5, -0.5, nan]]),
        "pe": panel([[nan, nan, 8], [nan, nan, 10]]),
        "dividend_yield": panel([[0.02, 0.0, nan], [0.03, 0.0, nan]]),
        "ebitda": panel([[6e8, 2e8, 1e8], [8e8, 2e8, 1e8]]),
        "total_debt": panel([[1e9, nan, 0], [2e9, nan, 0]]),
        "sales": panel([[nan, 1e9, nan], [4e9, 1e9, nan]]),
    }
    d = value_descriptors(fund, cap, price)
    assert set(d) == {
        "book_to_price", "earnings_yield", "dividend_yield", "ebitda_to_ev", "growth", "eps_growth", "quality",
        "leverage",
    }  # fmt: skip
    last = {k: v.iloc[1] for k, v in d.items()}
    assert last["book_to_price"].tolist() == pytest.approx([20 / 50, 1 / 5, -1 / 2])  # negative book allowed
    assert last["earnings_yield"].tolist() == pytest.approx([2.5 / 50, -0.5 / 25, 1 / 10])  # losses allowed
    assert last["dividend_yield"].tolist()[:2] == [0.03, 0.0]
    # B: debt unknown → EV = market cap.
    assert last["ebitda_to_ev"].tolist() == pytest.approx([8e8 / 7e9, 2e8 / 2.5e9, 1e8 / 1e9])
    assert last["quality"].tolist() == pytest.approx([8e8 / 4e9, 2e8 / 1e9, 1e8 / 1e9])  # C: ebitda / cap proxy
    assert last["leverage"].tolist()[0] == pytest.approx(2e9 / 5e9) and last["leverage"].iloc[2] == 0.0
    assert np.isnan(last["leverage"].iloc[1])  # debt unknown
    # EPS growth: eps against the last date on or before t − 365 days (2019-06-28 for 2020-06-30).
    assert last["eps_growth"].iloc[0] == pytest.approx((2.5 - 2.0) / 2.0)
    assert last["eps_growth"].iloc[1] == pytest.approx((-0.5 - -1.0) / 1.0)  # loss narrowing = growth
    assert d["eps_growth"].iloc[0].isna().all()  # no eps a year earlier
    # Growth: log sales growth over the same year; A had no sales a year earlier, C none at all.
    assert np.isnan(last["growth"].iloc[0]) and last["growth"].iloc[1] == 0.0 and np.isnan(last["growth"].iloc[2])
    assert d["growth"].iloc[0].isna().all()
    assert any("ebitda_to_ev" in n for n in d.notes) and any("quality" in n for n in d.notes)


def test_growth_is_one_year_log_sales_growth_point_in_time():
    # Trading days with a gap: the year-ago row is the last one on or before t − 365 days.
    dates = pd.DatetimeIndex(["2019-01-02", "2019-03-29", "2019-04-01", "2020-03-31", "2020-04-01", "2020-04-02"])
    names = ["A", "B", "C", "D", "E"]
    sales = pd.DataFrame({
        "A": [100, 110, 120, 121, 132, 144],
        "B": [10, 10, np.nan, 20, 20, 30],   # unknown a year before
        "C": [5, 5, -5, 5, 5, 5],            # a year before ≤ 0
        "D": [1, 1, 1, 0, -1, 2],            # now ≤ 0, then positive again
        "E": [5, 5, 5, 5, 5, 5],             # the same snapshot at both ends
    }, index=dates, dtype="float64")
    eps = sales / 100
    cap = pd.DataFrame(1e9, index=dates, columns=names)
    d = value_descriptors({"sales": sales, "eps": eps}, cap, cap / 1e7)
    g = d["growth"]
    # 2020-03-31 − 365 days = 2019-04-01 exactly (counts); 2020-04-01 and 2020-04-02 fall after
    # it with no row in between, so 2019-04-01 is still the year-ago row.
    assert g.loc["2020-03-31", "A"] == pytest.approx(np.log(121 / 120))
    assert g.loc["2020-04-01", "A"] == pytest.approx(np.log(132 / 120))
    assert g.loc["2020-04-02", "A"] == pytest.approx(np.log(144 / 120))
    assert g["B"].isna().all() and g["C"].isna().all()
    assert g["D"].iloc[3:5].isna().all() and g.loc["2020-04-02", "D"] == pytest.approx(np.log(2.0))
    assert g["E"].isna().all()  # one snapshot at both ends: growth cannot be measured, not 0
    assert g.iloc[:3].isna().all().all()  # nothing a year earlier
    assert not np.isinf(g.to_numpy()).any()
    assert d["eps_growth"].loc["2020-03-31", "A"] == pytest.approx((1.21 - 1.20) / 1.20)  # the eps version stays


def test_growth_is_missing_where_no_new_snapshot_arrived_within_the_year():
    """Issue 9's rule "a date the data cannot support is declared, never filled with zeros": a
    name whose snapshot in force on t is the one in force a year before has no measurable growth
    (NaN, so it does not count as coverage); two snapshots with equal sales do measure 0."""
    dates = pd.bdate_range("2019-01-01", "2020-12-31")
    cap = pd.DataFrame(1e9, index=dates, columns=list("ABCDE"))
    sales = pd.DataFrame(np.nan, index=dates, columns=cap.columns)
    ebitda = sales.copy()
    # A: quarterly snapshots, sales +10 % a year. B: one snapshot on 2019-01-01, carried (a panel
    # carries a value up to its age limit). C: snapshots on 2019-01-01 and 2019-07-01 with the
    # same sales, but a new EBITDA (a new snapshot, sales unchanged). D: like B, then a value
    # missing for a month (a lookup gap, not a new snapshot) and back. E: like C, but no field
    # changes: indistinguishable from one snapshot.
    for day in pd.date_range("2019-01-01", "2020-12-31", freq="QS"):
        sales.loc[day:, "A"] = 100.0 * 1.1 ** ((day - dates[0]).days / 365)
        ebitda.loc[day:, "A"] = 0.2 * sales.loc[day, "A"]
    sales["B"] = ebitda["B"] = 50.0
    sales["C"], ebitda["C"] = 80.0, 8.0
    ebitda.loc["2019-07-01":, "C"] = 9.0
    sales["D"] = 60.0
    sales.loc["2020-02-03":"2020-02-28", "D"] = np.nan
    sales["E"] = 70.0
    d = value_descriptors({"sales": sales, "ebitda": ebitda, "eps": sales / 100}, cap, cap / 1e7)
    g, eg = d["growth"], d["eps_growth"]
    year_on = dates[dates >= "2020-01-01"]
    # A: four new snapshots a year; the year-ago one is the last out by t − 365 days.
    assert g.loc[year_on, "A"].notna().all()
    a = sales["A"]
    np.testing.assert_allclose(g.loc["2020-01-02", "A"], np.log(a.loc["2020-01-02"] / a.loc["2019-01-02"]))
    # B, D, E: the same snapshot at both ends — missing, never 0 (and the eps version alike).
    for name in "BDE":
        assert g.loc[year_on, name].isna().all() and eg.loc[year_on, name].isna().all(), name
    # C: its second snapshot (2019-07-01) measures 0 against the first while the year-ago day
    # falls before it; from 2020-06-30 (365 days on, a leap year) both ends are the second: NaN.
    measured = year_on[year_on < "2020-06-30"]
    assert (g.loc[measured, "C"] == 0.0).all() and (eg.loc[measured, "C"] == 0.0).all()
    assert g.loc["2020-06-30":, "C"].isna().all()
    assert g.loc[:"2019-12-31"].isna().all().all()  # nothing a year earlier


def test_growth_descriptor_recovers_the_synthetic_growth_truth():
    """The model's growth from the published data (point-in-time panels, one-day lag, z-scored
    like the truth) is the synthetic market's GROWTH exposure."""
    m = synthetic_market(150, 252 * 3, seed=11, styles=True)
    dates, tickers = m.returns.index, m.returns.columns
    fund = {k: fundamentals_panel(m.fundamentals, k, dates, tickers) for k in ("sales", "eps", "market_cap")}
    price = m.prices().pivot(index="date", columns="ticker", values="adj_close").reindex(index=dates, columns=tickers)
    growth = value_descriptors(fund, fund["market_cap"], price)["growth"].shift(1)  # data through t−1
    weight = m.market_cap.shift(1)  # the truth's snapshot caps
    truth = m.style_truth["GROWTH"]
    rows = np.flatnonzero(truth.notna().sum(axis=1) > 10)
    assert len(rows) > 300 and (dates[rows[0]] - dates[0]).days > 365
    for t in rows:
        u = truth.iloc[t].notna().to_numpy()
        x, w = growth.iloc[t].to_numpy()[u], weight.iloc[t].to_numpy()[u]
        assert np.isfinite(x).all()
        z = (x - w @ x / w.sum()) / x.std()
        np.testing.assert_allclose(z, truth.iloc[t].to_numpy()[u], rtol=0, atol=1e-9, err_msg=str(dates[t].date()))
