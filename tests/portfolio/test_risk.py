"""Portfolio risk from Model A: Risk Index, Euler contributions, hedges and scaling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskstrata.cascade import fit_cascade
from riskstrata.portfolio.risk import (etf_exposures, etf_roles, market_beta, portfolio_hedge, portfolio_risk,
                                       scaling_trade, trade_list, describe_trades)
from tests.cascade.helpers import toy_market

WINDOW = 252


@pytest.fixture(scope="module")
def model():
    returns, etf, asg, _ = toy_market(T=600, N=10, seed=12)
    assets = pd.concat([returns, etf], axis=1)
    asg = pd.concat([asg, pd.DataFrame({"sector_etf": [None, None, "XLK"], "subsector_etf": [None, None, None]},
                                       index=["SPY", "XLK", "SOXX"])])
    res = fit_cascade(assets, etf, asg, window=WINDOW)
    snap = res.snapshot()
    cov = etf.iloc[-WINDOW:].cov()  # the same rows as the last window, ddof = 1 like stock_var
    roles = etf_roles(list(etf.columns), "SPY", {"XLK"})
    return snap, cov, roles


def risk_of(snap, cov, roles, weights, extra=None):
    exposures = -etf_exposures(snap.loc[weights.index], "L3")
    residual = snap.loc[weights.index, "l3_res_er"] * snap.loc[weights.index, "stock_var"]
    if extra is not None:
        overlay = pd.DataFrame(np.eye(len(extra)), index=[f"h:{e}" for e in extra.index], columns=extra.index)
        exposures = pd.concat([exposures, overlay]).fillna(0.0)
        weights = pd.concat([weights, pd.Series(extra.to_numpy(), index=overlay.index)])
        residual = pd.concat([residual, pd.Series(0.0, index=overlay.index)])
    return portfolio_risk(weights, exposures, residual, cov, roles)


def test_all_in_spy_scores_exactly_100(model):
    snap, cov, roles = model
    r = risk_of(snap, cov, roles, pd.Series({"SPY": 1.0}))
    assert r.risk_index == pytest.approx(100.0, abs=1e-9)
    assert r.by_role["market"] == pytest.approx(1.0, abs=1e-12)


def test_a_single_stock_scores_its_model_vol_over_spys(model):
    snap, cov, roles = model
    r = risk_of(snap, cov, roles, pd.Series({"T03": 1.0}))
    expected = 100 * np.sqrt(snap.loc["T03", "stock_var"]) / np.sqrt(cov.loc["SPY", "SPY"])
    assert r.risk_index == pytest.approx(expected, rel=1e-10)
    assert r.vol_ann == pytest.approx(snap.loc["T03", "vol_252d_ann"], rel=1e-10)


def test_euler_contributions_add_up_to_the_total(model):
    snap, cov, roles = model
    w = pd.Series({"T00": 0.3, "T01": 0.25, "T02": -0.1, "T05": 0.35, "XLK": 0.2})
    r = risk_of(snap, cov, roles, w)
    assert r.by_position["total"].sum() == pytest.approx(r.variance, rel=1e-12, abs=1e-20)
    assert r.by_etf["contribution"].sum() + r.by_position["residual"].sum() == pytest.approx(r.variance, rel=1e-12)
    assert r.by_role.sum() == pytest.approx(1.0, abs=1e-10)
    # Correlations matter: the index is not the weighted average of single-name vols.
    singles = sum(abs(w[t]) * np.sqrt(risk_of(snap, cov, roles, pd.Series({t: 1.0})).variance) for t in w.index)
    assert np.sqrt(r.variance) < singles


def test_hedges_remove_the_exposure_they_target(model):
    snap, cov, roles = model
    w = pd.Series({"T00": 0.4, "T01": 0.3, "T04": 0.3})
    l3 = portfolio_hedge(w, etf_exposures(snap.loc[w.index], "L3"))
    after3 = risk_of(snap, cov, roles, w, l3[l3 != 0])
    assert np.abs(after3.exposures).max() < 1e-12
    assert after3.by_role["residual"] == pytest.approx(1.0)
    l1 = portfolio_hedge(w, etf_exposures(snap.loc[w.index], "L1"))
    after1 = risk_of(snap, cov, roles, w, l1[l1 != 0])
    assert market_beta(after1.exposures, cov) == pytest.approx(0.0, abs=1e-10)
    trades = trade_list(l3, 1_000_000)
    assert describe_trades(trades).startswith("short $")
    assert trades["notional_usd"].sum() == pytest.approx(1_000_000 * l3.abs().sum())


def test_scaling_by_half_halves_the_chosen_exposure(model):
    snap, cov, roles = model
    w = pd.Series({"T00": 0.5, "T02": 0.5})
    before = risk_of(snap, cov, roles, w)
    for target in ("market", "XLK", "SOXX"):
        overlay = scaling_trade(before.exposures, cov, target, 0.5)
        after = risk_of(snap, cov, roles, w, overlay)
        if target == "market":
            assert market_beta(after.exposures, cov) == pytest.approx(0.5 * market_beta(before.exposures, cov), rel=1e-10)
        else:
            assert after.exposures[target] == pytest.approx(0.5 * before.exposures[target], rel=1e-10)


def test_lstar_level_uses_each_names_own_level(model):
    snap, _, _ = model
    rows = snap.loc[["T00", "T01"]].copy()
    rows["lstar_level"] = [1, 3]
    e = etf_exposures(rows, "lstar")
    assert e.loc["T00", "SPY"] == rows.loc["T00", "l1_mkt_hr"] and e.loc["T00", "SOXX"] == 0
    assert e.loc["T01", "SOXX"] == rows.loc["T01", "l3_sub_hr"]


def test_trade_list_orders_as_pandas_sort_values_ties_included():
    """trade_list sorts on arrays; the rows, their order (ties too) and dtypes are those of the
    DataFrame.sort_values rule it replaced."""
    import numpy as np
    import pandas as pd

    from riskstrata.portfolio.risk import describe_trades, trade_list

    def by_pandas(hr: pd.Series, value: float) -> pd.DataFrame:
        dollars = hr[hr.abs() > 1e-12] * value
        out = pd.DataFrame({"etf": dollars.index, "side": np.where(dollars < 0, "short", "long"),
                            "notional_usd": dollars.abs().to_numpy(), "hedge_ratio": hr[dollars.index].to_numpy()})
        return out.sort_values("notional_usd", ascending=False).reset_index(drop=True)

    rng = np.random.default_rng(4)
    for k in range(200):
        n = int(rng.integers(0, 20))
        v = rng.choice([0.0, 1e-13, -0.5, 0.5, 0.25, -0.25], n) if k % 2 else rng.normal(size=n)
        hr = pd.Series(v, index=[f"E{i}" for i in range(n)])
        ours = trade_list(hr, 2e6)
        pd.testing.assert_frame_equal(ours, by_pandas(hr, 2e6), check_exact=True)
        assert describe_trades(ours) == (", ".join(f"{r.side} ${r.notional_usd:,.0f} {r.etf}" for r in ours.itertuples())
                                         or "no trades")
