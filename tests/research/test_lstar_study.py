"""The L* study (issue 16) on a synthetic market with known truth, checked against plain numpy.

One sector's subsector layer carries real signal for its stocks (β_u = 2 on the orthogonal
subsector factor); in another the stocks load nothing on their subsector factor (β_u = 0), so the
subsector ETF is pure noise for them and L3 can only over-fit. The study must prefer L3 in the
first and a shallower depth in the second; its numbers must equal an explicit computation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from riskstrata.cascade.fit import fit_cascade
from riskstrata.cli import app
from riskstrata.data.synthetic import synthetic_market
from riskstrata.errors import DataValidationError, InsufficientHistory, UnknownTicker
from riskstrata.research import lstar_study, panel_from_result, run_lstar_study, stratified_sample

WINDOW = 126  # a short window makes the over-fitting cost of a noise regressor (~1/window) visible


@pytest.fixture(scope="module")
def world():
    market = synthetic_market(n_stocks=260, n_days=900, seed=5, listing_fraction=0.0, delisting_fraction=0.0,
                              missing_day_rate=0.0, include_late_etf=False)
    a = market.assignments
    has_sub = a["subsector_etf"] != a["sector_etf"]
    sector = market.classifications.set_index("ticker")["gics_sector"]
    counts = sector[has_sub[has_sub].index].value_counts()
    signal, noise = counts.index[0], counts.index[1]
    orth = market.orthogonal_factors()
    returns = market.returns.copy()
    for ticker in has_sub[has_sub].index:
        u_star = orth[a.loc[ticker, "subsector_etf"]]
        if sector[ticker] == noise:
            returns[ticker] -= market.truth.loc[ticker, "beta_sub"] * u_star     # β_u → 0: noise for the stock
        elif sector[ticker] == signal:
            returns[ticker] += (2.0 - market.truth.loc[ticker, "beta_sub"]) * u_star  # β_u → 2: strong signal
    names = [t for t in has_sub[has_sub].index if sector[t] in (signal, noise)]
    result = fit_cascade(returns, market.etf_returns, a, window=WINDOW)
    # From the first full window on: before it the subsector ETF has too short a history and
    # every stock falls back to L2 (flagged), which would blur what the rule chooses.
    study = run_lstar_study(result=result, sectors=sector, universe=names, n_boot=200, seed=1,
                            start=result.dates[WINDOW], etf_returns=market.etf_returns)
    return {"result": result, "sector": sector, "signal": signal, "noise": noise, "names": names, "study": study,
            "etf": market.etf_returns, "assignments": a}


def test_the_study_picks_l3_where_the_subsector_carries_signal(world):
    s = world["study"].sectors.set_index(["sector", "rule"])
    sig = s.loc[world["signal"]]
    assert sig.loc["L3", "eff_21"] > sig.loc["L2", "eff_21"] > sig.loc["L1", "eff_21"]
    assert sig.loc["θ=1%", "share_l3"] > 0.95          # the 1 % bar keeps the informative layer
    best = world["study"].heatmap().loc[world["signal"]].idxmax()
    assert sig.loc[best, "share_l3"] > 0.95


def test_the_study_picks_a_shallower_depth_where_the_subsector_is_noise(world):
    s = world["study"].sectors.set_index(["sector", "rule"])
    noise = s.loc[world["noise"]]
    assert noise.loc["L2", "eff_21"] > noise.loc["L3", "eff_21"]   # L3 over-fits the noise regressor
    assert noise.loc["θ=1%", "share_l3"] < 0.3                     # the bar mostly stops at L2
    assert noise.loc["θ=1%", "eff_21"] > noise.loc["L3", "eff_21"]
    best = world["study"].heatmap().loc[world["noise"]].idxmax()
    assert noise.loc[best, "share_l3"] < 0.5


def _explicit(result, names, level_rule, h, cost, etf, assignments):
    """Plain-numpy, loop-by-loop version of the study's pooled metrics for a few names."""
    cols = [list(result.tickers).index(t) for t in names]
    factors = [etf[["SPY", assignments.loc[t, "sector_etf"], assignments.loc[t, "subsector_etf"]]].to_numpy()
               for t in names]
    v = {k: np.asarray(result.values[k])[:, cols] for k in
         ("returns_gross", "l1_rr", "l2_rr", "l3_rr", "l2_sec_er", "l3_sub_er",
          "l1_mkt_hr", "l2_mkt_hr", "l2_sec_hr", "l3_mkt_hr", "l3_sec_hr", "l3_sub_hr")}
    T, n = v["returns_gross"].shape
    legs = {1: ["l1_mkt_hr", None, None], 2: ["l2_mkt_hr", "l2_sec_hr", None], 3: ["l3_mkt_hr", "l3_sec_hr", "l3_sub_hr"]}
    num = den = net = hold = 0.0
    added = windows = 0
    trade_total = gross_total = days = 0.0
    for j in range(n):
        ok = np.zeros(T, bool)
        held = np.zeros(T, int)
        for t in range(1, T):
            er_ok = np.isfinite(v["l2_sec_er"][t - 1, j]) or np.isfinite(v["l3_sub_er"][t - 1, j])
            ok[t] = er_ok and all(np.isfinite(v[k][t, j]) for k in ("returns_gross", "l1_rr", "l2_rr", "l3_rr"))
            held[t] = level_rule(v, t - 1, j)
        rr = np.array([v[f"l{held[t]}_rr"][t, j] if ok[t] else 0.0 for t in range(T)])
        r = np.where(ok, v["returns_gross"][:, j], 0.0)

        def leg_vector(t):
            return np.array([0.0 if (name is None or t < 1) else np.nan_to_num(v[name][t - 1, j])
                             for name in legs.get(held[t], [None] * 3)])
        trade = np.zeros(T)
        for t in range(1, T):
            if ok[t]:
                gross_total += np.abs(leg_vector(t)).sum()
                days += 1
            if ok[t] and ok[t - 1]:
                trade[t] = np.abs(leg_vector(t) - leg_vector(t - 1)).sum()
        trade_total += trade.sum()
        for t0 in range(T - h + 1):
            if ok[t0:t0 + h].all():
                w_rr, w_r, w_tr = rr[t0:t0 + h], r[t0:t0 + h], trade[t0:t0 + h]
                num += np.var(w_rr)
                den += np.var(w_r)
                net += np.var(w_rr) + np.mean((cost * w_tr) ** 2)
                added += np.var(w_rr) > np.var(w_r)
                windows += 1
                # The hedge of day t0 frozen for the window: r + HR·f with raw ETF returns f.
                hold += np.var(w_r + factors[j][t0:t0 + h] @ leg_vector(t0))
        for t in range(1, T):  # on its own day, the frozen hedge is the cascade's time-safe residual
            if ok[t]:
                assert r[t] + factors[j][t] @ leg_vector(t) == pytest.approx(rr[t], abs=1e-12)
    return {"eff": 1 - num / den, "net_eff": 1 - net / den, "hold_eff": 1 - hold / den, "added": added / windows,
            "turnover_per_year": trade_total / days * 252, "gross_leverage": gross_total / days}


@pytest.mark.parametrize("rule", ["L2", "θ=1%"])
def test_reported_numbers_equal_an_explicit_computation(world, rule):
    names = world["names"][:3]
    panel = panel_from_result(world["result"], world["sector"], names, etf_returns=world["etf"])
    cost_bps = 50.0  # large, so that the cost term is visible in the comparison
    study = lstar_study(panel, horizons=(21,), cost_bps=cost_bps, n_boot=20)
    if rule == "L2":
        def level_rule(v, t, j):
            return 2 if (np.isfinite(v["l2_sec_er"][t, j]) or np.isfinite(v["l3_sub_er"][t, j])) else 0
    else:
        def level_rule(v, t, j):
            sub, sec = v["l3_sub_er"][t, j], v["l2_sec_er"][t, j]
            if np.isnan(sub) and np.isnan(sec):
                return 0
            return 3 if sub >= 0.01 else (2 if sec >= 0.01 else 1)
    want = _explicit(world["result"], names, level_rule, 21, cost_bps / 1e4, world["etf"], world["assignments"])
    got = study.rules.loc[rule]
    assert got["eff_21"] == pytest.approx(want["eff"], abs=1e-10)
    assert got["net_eff_21"] == pytest.approx(want["net_eff"], abs=1e-10)
    assert got["net_eff_21"] < got["eff_21"]
    assert got["added_21"] == pytest.approx(want["added"], abs=1e-12)
    assert got["hold_eff_21"] == pytest.approx(want["hold_eff"], abs=1e-10)
    assert got["turnover_per_year"] == pytest.approx(want["turnover_per_year"], rel=1e-10)
    assert got["gross_leverage"] == pytest.approx(want["gross_leverage"], rel=1e-10)


def test_identities_of_the_rules_and_intervals(world):
    r = world["study"].rules
    # θ = ∞ is L1; θ = 0 is L3 (a marginal ER is never negative); shares sum to one.
    for col in ("eff_21", "eff_63", "turnover_per_year", "gross_leverage"):
        assert r.loc["θ=∞", col] == r.loc["L1", col]
        assert r.loc["θ=0%", col] == pytest.approx(r.loc["L3", col], abs=1e-12)
    assert np.allclose(r[["share_l1", "share_l2", "share_l3"]].sum(axis=1), 1.0)
    assert (r["eff_21_lo"] <= r["eff_21"]).all() and (r["eff_21"] <= r["eff_21_hi"]).all()
    assert (r["depth_changes_per_year"].loc[["L1", "L2", "L3"]] == 0).all()
    curve = world["study"].curve
    assert list(curve.index) == [x for x in r.index if x.startswith("θ")]
    assert world["study"].best_rule in curve.index and world["study"].summary.startswith("Out of sample")
    assert not np.isinf(r.select_dtypes("number").to_numpy()).any()


def test_same_seed_same_intervals_and_sample(world):
    panel = panel_from_result(world["result"], world["sector"], world["names"][:6])
    a = lstar_study(panel, n_boot=30, seed=3).rules
    b = lstar_study(panel, n_boot=30, seed=3).rules
    pd.testing.assert_frame_equal(a, b)
    sectors = pd.Series(["A"] * 10 + ["B"] * 3 + ["C"] * 20, index=[f"T{i:02d}" for i in range(33)])
    pick = stratified_sample(sectors, 12, seed=4)
    assert len(pick) == 12 and pick.equals(stratified_sample(sectors, 12, seed=4))
    assert set(sectors[pick].value_counts().index) == {"A", "B", "C"}
    assert (sectors[pick] == "B").sum() == 3   # a small sector gives all it has, the rest is filled


def test_bad_input_is_a_clear_error(world):
    with pytest.raises(UnknownTicker):
        run_lstar_study(result=world["result"], sectors=world["sector"], universe=["NOPE"])
    with pytest.raises(DataValidationError):
        run_lstar_study(result=world["result"], sectors=world["sector"], universe="some")
    panel = panel_from_result(world["result"], world["sector"], world["names"][:3])
    with pytest.raises(DataValidationError):
        lstar_study(panel, cost_bps=-1)
    with pytest.raises(DataValidationError):
        lstar_study(panel, thetas=(-0.01,))
    with pytest.raises(InsufficientHistory):
        run_lstar_study(result=world["result"], sectors=world["sector"], universe=world["names"][:3],
                        start="2030-01-01")


def test_cli_on_a_store_without_a_model_says_so(tmp_path):
    from riskstrata.data.store import Store

    Store(tmp_path / "s", create=True)
    result = CliRunner().invoke(app, ["research", "lstar-study", "--store", str(tmp_path / "s")])
    assert result.exit_code != 0
    assert "build cascade" in str(result.exception)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """A store holding a small synthetic market with its cascade built, and the same market."""
    from riskstrata.data.ingest import ingest_classifications, ingest_prices
    from riskstrata.data.registry import EtfRegistry
    from riskstrata.data.store import Store
    from riskstrata.services.cascade import build_cascade

    market = synthetic_market(n_stocks=30, n_days=500, seed=12, listing_fraction=0.0, delisting_fraction=0.0,
                              missing_day_rate=0.0, include_late_etf=False)
    tmp = tmp_path_factory.mktemp("lstar_store")
    market.prices().to_parquet(tmp / "prices.parquet", index=False)
    market.classifications[["ticker", "gics_sector", "gics_sub_industry"]].to_csv(tmp / "gics.csv", index=False)
    store = Store(tmp / "store", create=True)
    ingest_prices(store, [tmp / "prices.parquet"], etf_tickers=set(EtfRegistry.default().etfs()))
    ingest_classifications(store, tmp / "gics.csv")
    build_cascade(store, window=WINDOW)
    return store, market


def test_the_store_path_equals_the_in_memory_path(small_store):
    store, market = small_store
    from_store = run_lstar_study(store, universe="all", n_boot=20)
    result = fit_cascade(market.returns, market.etf_returns, market.assignments, window=WINDOW)
    sector = market.classifications.set_index("ticker")["gics_sector"]
    in_memory = run_lstar_study(result=result, sectors=sector, universe=list(from_store.universe["ticker"]),
                                n_boot=20, etf_returns=market.etf_returns, start=from_store.params["start"])
    cols = ["eff_21", "eff_63", "hold_eff_21", "net_eff_63", "turnover_per_year", "share_l3", "stock_days"]
    pd.testing.assert_frame_equal(from_store.rules[cols], in_memory.rules[cols], rtol=1e-7)


def test_cli_json_on_a_built_store(small_store):
    import json

    store, _ = small_store
    args = ["research", "lstar-study", "--store", str(store.root), "--universe", "all", "--thetas", "0,1,inf",
            "--n-boot", "20", "--cost-bps", "10", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert [r["rule"] for r in body["rules"]] == ["θ=0%", "θ=1%", "θ=∞", "L1", "L2", "L3"]
    assert body["best_rule"] in ("θ=0%", "θ=1%", "θ=∞") and body["params"]["cost_bps"] == 10
    table = CliRunner().invoke(app, args[:-1] + ["--thetas", "1,x"])
    assert table.exit_code != 0 and "--thetas" in str(table.exception)
