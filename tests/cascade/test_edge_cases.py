"""Edge cases: nulls with a reason, never a crash or an inf."""

import numpy as np
import pandas as pd
import pytest

from riskstrata.cascade import fit_cascade
from riskstrata.cascade.kernel import Flag
from riskstrata.errors import DataValidationError, InsufficientHistory
from tests.cascade.helpers import toy_market


def no_inf(res) -> None:
    for name, arr in res.values.items():
        assert not np.isinf(arr).any(), f"{name} has inf"


def test_short_history_gives_nulls_with_a_reason():
    returns, etf, asg, _ = toy_market(T=300, N=3)
    returns.iloc[:260, 1] = np.nan  # only 40 days, below min_obs = 63
    res = fit_cascade(returns, etf, asg)
    snap = res.snapshot()
    assert np.isnan(snap.loc["T01", "l3_mkt_hr"]) and np.isnan(snap.loc["T01", "l1_mkt_er"])
    assert snap.loc["T01", "flags"] & Flag.INSUFFICIENT_HISTORY
    assert "insufficient history" in snap.loc["T01", "notes"]
    assert snap.loc["T01", "lstar_level"] == 0
    assert np.isfinite(snap.loc["T00", "l3_mkt_hr"])
    no_inf(res)


def test_a_sector_etf_not_yet_listed_makes_l2_fall_back_to_l1_flagged():
    returns, etf, asg, _ = toy_market(T=700, N=3)
    etf.iloc[:400, etf.columns.get_loc("XLK")] = np.nan  # XLC-style late inception
    res = fit_cascade(returns, etf, asg, window=252)
    early, late = res.snapshot(returns.index[500]), res.snapshot(returns.index[699])
    row = early.loc["T00"]
    assert row["flags"] & Flag.SECTOR_FALLBACK
    assert row.l2_sec_hr == 0 and row.l2_sec_er == 0 and row.sector_etf is None
    assert row.l2_mkt_hr == pytest.approx(row.l1_mkt_hr)
    assert row.l2_res_er == pytest.approx(row.l1_res_er)
    assert "falls back" in row.notes
    assert not late.loc["T00", "flags"] & Flag.SECTOR_FALLBACK and late.loc["T00"].sector_etf == "XLK"
    no_inf(res)


def test_constant_returns_give_null_shares_not_inf():
    returns, etf, asg, _ = toy_market(T=300, N=3)
    returns["T02"] = 0.0
    res = fit_cascade(returns, etf, asg)
    row = res.snapshot().loc["T02"]
    assert row["flags"] & Flag.ZERO_VARIANCE and np.isnan(row.l1_mkt_er)
    no_inf(res)


def test_collinear_subsector_etf_gets_zero_beta_and_a_flag():
    returns, etf, asg, _ = toy_market(T=300, N=3)
    etf["COPY"] = etf["XLK"] * 1.0  # a "subsector" ETF identical to the sector ETF
    asg["subsector_etf"] = "COPY"
    res = fit_cascade(returns, etf, asg)
    row = res.snapshot().loc["T00"]
    assert row["flags"] & Flag.COLLINEAR_SUBSECTOR
    assert row.l3_sub_beta == 0 and row.l3_sub_hr == 0 and row.l3_sub_er == 0
    assert row.l3_mkt_hr == pytest.approx(row.l2_mkt_hr)
    no_inf(res)


def test_same_etf_for_sector_and_subsector_means_l3_equals_l2():
    returns, etf, asg, _ = toy_market(T=300, N=2)
    asg["subsector_etf"] = "XLK"
    res = fit_cascade(returns, etf, asg)
    row = res.snapshot().loc["T00"]
    assert row["flags"] & Flag.NO_SUBSECTOR_ETF and row.subsector_etf is None
    assert row.l3_res_er == pytest.approx(row.l2_res_er)


def test_etfs_are_decomposable_as_assets_spy_on_itself_is_minus_one():
    returns, etf, asg, _ = toy_market(T=300, N=2)
    assets = pd.concat([returns, etf], axis=1)
    asg = pd.concat([asg, pd.DataFrame({"sector_etf": [None, None, "XLK"], "subsector_etf": [None, None, None]},
                                       index=["SPY", "XLK", "SOXX"])])
    res = fit_cascade(assets, etf, asg)
    snap = res.snapshot()
    assert snap.loc["SPY", "l1_mkt_hr"] == pytest.approx(-1.0, abs=1e-12)
    assert snap.loc["SPY", "l1_res_er"] == pytest.approx(0.0, abs=1e-12)
    assert snap.loc["SOXX", "l2_sec_beta"] == pytest.approx(0.8, abs=0.15)  # SOXX on SPY and its sector ETF
    assert snap.loc["XLK", "l1_mkt_beta"] == pytest.approx(0.9, abs=0.1)


def test_missing_days_and_infinities_are_treated_as_missing_and_reported():
    returns, etf, asg, _ = toy_market(T=300, N=3)
    returns.iloc[100, 0] = np.inf
    returns.iloc[150:160, 1] = np.nan
    res = fit_cascade(returns, etf, asg)
    assert any("infinite" in d for d in res.diagnostics)
    assert np.isfinite(res.snapshot().loc[["T00", "T01"], "l3_mkt_hr"]).all()
    no_inf(res)


def test_reclassified_stock_uses_the_pair_held_on_each_date():
    returns, etf, asg, _ = toy_market(T=500, N=2)
    etf["IGV"] = etf["SOXX"] * 0.5 + np.random.default_rng(2).normal(0, 0.008, 500)
    dated = pd.DataFrame({"ticker": ["T00", "T00", "T01"], "valid_from": [pd.NaT, returns.index[400], pd.NaT],
                          "sector_etf": ["XLK", "XLK", "XLK"], "subsector_etf": ["SOXX", "IGV", "SOXX"]})
    res = fit_cascade(returns, etf, dated)
    assert res.snapshot(returns.index[399]).loc["T00", "subsector_etf"] == "SOXX"
    assert res.snapshot(returns.index[400]).loc["T00", "subsector_etf"] == "IGV"
    # Day 401's residual uses the IGV hedge fitted on day 400.
    hr = res.history("T00")
    expected = returns["T00"].iloc[401] + (hr.l3_mkt_hr.iloc[400] * etf.SPY.iloc[401] + hr.l3_sec_hr.iloc[400] * etf.XLK.iloc[401]
                                           + hr.l3_sub_hr.iloc[400] * etf.IGV.iloc[401])
    assert hr.l3_rr.iloc[401] == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("bad", ["no_market", "unknown_etf", "empty", "bad_window"])
def test_bad_inputs_get_a_clear_error(bad):
    returns, etf, asg, _ = toy_market(T=100, N=2)
    kwargs = {}
    if bad == "no_market":
        etf = etf.drop(columns="SPY")
    elif bad == "unknown_etf":
        asg.loc["T00", "subsector_etf"] = "NOPE"
    elif bad == "empty":
        returns = returns.iloc[:, :0]
    else:
        kwargs["window"] = 1
    with pytest.raises(DataValidationError):
        fit_cascade(returns, etf, asg, **kwargs)


def test_a_market_with_too_little_history_is_an_insufficient_history_error():
    returns, etf, asg, _ = toy_market(T=30, N=2)
    with pytest.raises(InsufficientHistory):
        fit_cascade(returns, etf, asg)
