"""Identities the model promises: shares sum to 1, replication, time safety, L*, attribution."""

import numpy as np
import pandas as pd
import pytest

from riskstrata.cascade import fit_cascade
from riskstrata.cascade.fit import check_result_identities
from riskstrata.cascade.lstar import lstar_level, recommended_hedge_level
from riskstrata.errors import IdentityViolation
from tests.cascade.helpers import toy_market


@pytest.fixture(scope="module")
def fitted():
    returns, etf, asg, truth = toy_market(T=700, N=15)
    returns.iloc[:200, 0] = np.nan
    return fit_cascade(returns, etf, asg), returns, etf


def test_explained_risk_shares_sum_to_one_at_every_level(fitted):
    res, _, _ = fitted
    v = res.values
    for parts in (["l1_mkt_er", "l1_res_er"], ["l2_mkt_er", "l2_sec_er", "l2_res_er"],
                  ["l3_mkt_er", "l3_sec_er", "l3_sub_er", "l3_res_er"]):
        total = sum(v[p] for p in parts)
        defined = np.isfinite(total)
        assert defined.sum() > 0
        assert np.max(np.abs(total[defined] - 1)) < 1e-9


def test_replication_identity_with_hedge_ratios_of_the_day_before(fitted):
    res, returns, etf = fitted
    hr = res["l3_mkt_hr"].shift(1), res["l3_sec_hr"].shift(1), res["l3_sub_hr"].shift(1)
    rebuilt = -(hr[0].mul(etf["SPY"], axis=0) + hr[1].mul(etf["XLK"], axis=0) + hr[2].mul(etf["SOXX"], axis=0)) + res["l3_rr"]
    ok = rebuilt.notna()
    assert ok.sum().sum() > 1000
    assert np.nanmax(np.abs((rebuilt - returns)[ok]).to_numpy()) < 1e-14
    # cfr + rr = gross at each level
    for k in (1, 2, 3):
        gap = (res[f"l{k}_cfr"] + res[f"l{k}_rr"] - returns).abs().max().max()
        assert gap < 1e-15


def test_residual_returns_are_time_safe_no_look_ahead():
    returns, etf, asg, _ = toy_market(T=400, N=5, seed=9)
    base = fit_cascade(returns, etf, asg)
    t = 300
    shocked = returns.copy()
    shocked.iloc[t:] += 0.05  # change the future from day t on
    after = fit_cascade(shocked, etf, asg)
    # Everything estimated through t−1 is untouched, and day t's factor return too.
    for f in ("l3_mkt_hr", "l3_sub_er", "l2_sec_beta"):
        pd.testing.assert_frame_equal(base[f].iloc[:t], after[f].iloc[:t])
    pd.testing.assert_frame_equal(base["l3_cfr"].iloc[:t + 1], after["l3_cfr"].iloc[:t + 1])
    # day t's estimate does see day t.
    assert not np.allclose(base["l3_mkt_hr"].iloc[t], after["l3_mkt_hr"].iloc[t])


def test_a_broken_identity_fails_the_build_loudly(fitted):
    res, returns, etf = fitted
    values = {k: v.copy() for k, v in res.values.items()}
    values["l3_rr"][400, 3] += 1e-6
    held = {"m": np.repeat(etf[["SPY"]].to_numpy(), 15, axis=1), "s": np.repeat(etf[["XLK"]].to_numpy(), 15, axis=1),
            "u": np.repeat(etf[["SOXX"]].to_numpy(), 15, axis=1)}
    check_result_identities(res.values, held)
    with pytest.raises(IdentityViolation, match="L3 replication"):
        check_result_identities(values, held)
    values = {k: v.copy() for k, v in res.values.items()}
    values["l2_sec_er"][500, 2] += 1e-6
    with pytest.raises(IdentityViolation, match="L2 explained-risk"):
        check_result_identities(values, held)


def test_lstar_rule_tests_l3_first_and_is_null_when_both_ers_are():
    sec = np.array([0.2, 0.005, 0.2, np.nan, 0.005, -0.1])
    sub = np.array([0.02, 0.02, 0.001, np.nan, 0.0, np.nan])
    assert lstar_level(sec, sub, 0.01).tolist() == [3, 3, 2, 0, 1, 1]
    assert lstar_level(sec, sub, 0.5).tolist() == [1, 1, 1, 0, 1, 1]


def test_custom_threshold_gives_a_full_history(fitted):
    res, _, _ = fitted
    default = res.lstar(0.01)["lstar_level"]
    np.testing.assert_array_equal(default.to_numpy(), res.values["lstar_level"])
    strict = res.lstar(0.99)["lstar_level"]
    defined = strict.to_numpy() > 0
    assert (strict.to_numpy()[defined] == 1).all()


def test_recommended_level_steps_down_for_leverage_and_thin_marginal_er():
    v = {"l2_sec_er": np.array([0.05, 0.05, 0.05]), "l3_sub_er": np.array([0.05, 0.05, 0.012]),
         "l1_mkt_hr": np.array([-1.0, -1.0, -1.0]), "l2_mkt_hr": np.array([-0.5, -1.2, -0.5]),
         "l2_sec_hr": np.array([-0.4, -1.0, -0.4]), "l3_mkt_hr": np.array([-0.3, -1.5, -0.3]),
         "l3_sec_hr": np.array([-0.3, -0.5, -0.3]), "l3_sub_hr": np.array([-0.3, -0.5, -0.3])}
    # 1: fits everything → L3. 2: L3 gross 2.5 and L2 gross 2.2 exceed 2.0 → L1.
    # 3: 0.7 × 0.012 < 0.01 → step down to L2.
    assert recommended_hedge_level(v, "family_office").tolist() == [3, 1, 2]
    assert recommended_hedge_level(v, "stat_arb").tolist() == [3, 3, 2]


def test_geometric_attribution_bars_sum_exactly_to_the_compound_gross_return(fitted):
    res, returns, _ = fitted
    a = res.attribution("T04", "2020-01-01", "2021-06-30")
    gross = np.prod(1 + returns["T04"].loc["2020-01-01":"2021-06-30"]) - 1
    assert a.market + a.sector + a.subsector + a.residual == pytest.approx(a.gross, abs=1e-14)
    assert a.gross == pytest.approx(gross, abs=1e-12)
    assert a.lines["cum_residual"].iloc[-1] == pytest.approx(a.residual, abs=1e-15)
    assert a.days_skipped == 0
