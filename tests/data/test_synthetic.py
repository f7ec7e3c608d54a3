"""The synthetic market: reproducible, shaped like real data, and exactly the truth it claims."""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.registry import EtfRegistry
from riskstrata.data.synthetic import SyntheticMarket, synthetic_market

N_STOCKS, N_DAYS = 300, 252 * 6


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return synthetic_market(N_STOCKS, N_DAYS, seed=7)


FRAMES = ("returns", "etf_returns", "classifications", "assignments", "truth", "link_betas", "securities")


def test_same_seed_gives_identical_output(market):
    again = synthetic_market(N_STOCKS, N_DAYS, seed=7)
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(market, name), getattr(again, name), obj=name)


def test_another_seed_gives_another_market(market):
    other = synthetic_market(N_STOCKS, N_DAYS, seed=8)
    assert not np.allclose(np.nan_to_num(market.returns.to_numpy()), np.nan_to_num(other.returns.to_numpy()))


def test_shapes_and_labels(market):
    r, e = market.returns, market.etf_returns
    assert r.shape == (N_DAYS, N_STOCKS) and r.dtypes.eq(np.float64).all()
    assert isinstance(r.index, pd.DatetimeIndex) and r.index.equals(pd.bdate_range("2015-01-02", periods=N_DAYS))
    assert e.index.equals(r.index) and e.columns[0] == "SPY"
    registry = EtfRegistry.default()
    assert set(registry.sector_etfs()) <= set(e.columns)
    assert set(e.columns) <= set(registry.etfs())
    assert set(market.assignments["subsector_etf"]) <= set(e.columns)
    for frame in (market.truth, market.assignments):
        assert frame.index.equals(r.columns)
    assert market.classifications["ticker"].tolist() == r.columns.tolist()
    assert len(market.securities) == N_STOCKS + e.shape[1]
    assert set(market.securities["asset_type"]) == {"stock", "etf"}


def test_tickers_look_real_are_unique_and_never_an_etf(market):
    tickers = market.returns.columns
    assert tickers.is_unique
    assert all(re.fullmatch(r"[A-Z]{3,4}", t) for t in tickers)
    assert not set(tickers) & EtfRegistry.default().known_etfs()


def test_classifications_use_real_gics_names_and_the_registry_assignment(market):
    registry = EtfRegistry.default()
    t = registry.table
    rows = set(zip(t["gics_sector"], t["gics_sub_industry"]))
    cls = market.classifications
    assert all(pair in rows for pair in zip(cls["gics_sector"], cls["gics_sub_industry"]))
    share = cls["gics_sector"].value_counts(normalize=True)
    assert share[["Information Technology", "Financials", "Health Care"]].min() > share["Utilities"]
    expected = registry.assign(cls).set_index("ticker")[["sector_etf", "subsector_etf"]]
    pd.testing.assert_frame_equal(market.assignments, expected)


def test_stocks_without_a_subsector_factor_use_the_sector_etf_twice(market):
    a, truth = market.assignments, market.truth
    no_sub = a["subsector_etf"] == a["sector_etf"]
    assert 0 < no_sub.sum() < len(a)
    assert (truth.loc[no_sub, "beta_sub"] == 0).all()
    assert (truth.loc[~no_sub, "beta_sub"] != 0).all()


def test_listing_delisting_and_missing_days(market):
    r, truth = market.returns, market.truth
    valid = r.notna()
    first = valid.idxmax()
    last = valid[::-1].idxmax()
    pd.testing.assert_series_equal(first, truth["list_date"], check_names=False)
    delisted = truth["delist_date"].notna()
    pd.testing.assert_series_equal(last[delisted], truth.loc[delisted, "delist_date"], check_names=False)
    assert (last[~delisted] == r.index[-1]).all()
    late = truth["list_date"] > r.index[0]
    assert late.sum() == round(0.1 * N_STOCKS) and delisted.sum() == round(0.05 * N_STOCKS)
    # Inside each stock's life only isolated days are missing, at about the requested rate.
    day = np.arange(len(r))[:, None]
    life = (day >= r.index.get_indexer(truth["list_date"])) & (day <= np.where(
        delisted, r.index.get_indexer(truth["delist_date"].fillna(r.index[-1])), len(r) - 1))
    holes = life & ~valid.to_numpy()
    assert 0.0003 < holes.sum() / life.sum() < 0.003
    assert valid.to_numpy()[~life].sum() == 0


def test_options_switch_the_nan_patterns_off():
    clean = synthetic_market(50, 300, seed=1, listing_fraction=0, delisting_fraction=0,
                             missing_day_rate=0, include_late_etf=False)
    assert clean.returns.notna().all().all() and clean.etf_returns.notna().all().all()


def test_xlc_starts_late_like_the_real_one(market):
    xlc = market.etf_returns["XLC"]
    start = xlc.first_valid_index()
    assert xlc.loc[start:].notna().all()
    assert abs(market.etf_returns.index.get_loc(start) / N_DAYS - 0.4) < 0.01
    others = market.etf_returns.drop(columns="XLC")
    assert others.notna().all().all()


def test_link_betas_are_the_etf_on_etf_regressions(market):
    """s = λ_sm·m + s* and u = λ_um·m + λ_us·s* + u* hold exactly; OLS recovers λ approximately."""
    ortho = market.orthogonal_factors()
    lb, e = market.link_betas, market.etf_returns
    m = e["SPY"]
    for etf, row in lb.iterrows():
        if row["level"] == "sector":
            rebuilt = row["lambda_sm"] * m + ortho[etf]
        else:
            rebuilt = row["lambda_um"] * m + row["lambda_us"] * ortho[row["sector_etf"]] + ortho[etf]
        both = rebuilt.notna()            # u* of an XLC industry ETF needs XLC, absent early on
        assert both.mean() > 0.5
        np.testing.assert_allclose(rebuilt[both], e.loc[both, etf], rtol=0, atol=1e-15)
    xlk = e["XLK"]
    fitted = np.polyfit(m, xlk, 1)[0]
    assert abs(fitted - lb.loc["XLK", "lambda_sm"]) < 0.1


def test_truth_is_what_a_regression_on_the_orthogonal_factors_finds(market):
    """Full-history stocks: OLS on [1, m, s*, u*] recovers the true betas within 4 standard errors
    (a few of 200-odd may stray at that level by chance), and the residual vol: fat tails and
    volatility regimes make a 6-year sample vol wander ~5 %, so the typical error is checked."""
    ortho = market.orthogonal_factors()
    truth, a = market.truth, market.assignments
    full = market.returns.columns[market.returns.notna().mean() > 0.99]
    assert len(full) > 200
    z_scores, vol_ratio = [], []
    for t in full:
        sec, sub = a.loc[t, "sector_etf"], a.loc[t, "subsector_etf"]
        cols = ["SPY", sec] + ([sub] if sub != sec else [])
        data = pd.concat([market.returns[t], ortho[cols]], axis=1).dropna().to_numpy()
        y, x = data[:, 0], np.column_stack([np.ones(len(data)), data[:, 1:]])
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        resid = y - x @ coef
        s2 = resid @ resid / (len(y) - x.shape[1])
        se = np.sqrt(np.diag(s2 * np.linalg.inv(x.T @ x)))
        true = truth.loc[t, ["beta_mkt", "beta_sec", "beta_sub"]].to_numpy(dtype=float)[: x.shape[1] - 1]
        z_scores.append((coef[1:] - true) / se[1:])
        vol_ratio.append(np.sqrt(s2) / truth.loc[t, "resid_vol"])
    z = np.concatenate(z_scores)
    assert np.mean(np.abs(z) > 4) < 0.01, f"{np.sum(np.abs(z) > 4)} of {z.size} betas beyond 4 s.e."
    assert abs(np.mean(z)) < 0.15 and 0.8 < np.std(z) < 1.2
    err = np.abs(np.array(vol_ratio) - 1)
    assert np.median(err) < 0.05 and err.max() < 0.25, f"median {np.median(err):.3f}, max {err.max():.3f}"


def test_true_hedge_ratios_follow_the_spec_formulas(market):
    hr = market.true_hedge_ratios()
    t, a, lb = market.truth, market.assignments, market.link_betas
    assert list(hr.columns) == ["l1_mkt_hr", "l2_mkt_hr", "l2_sec_hr", "l3_mkt_hr", "l3_sec_hr", "l3_sub_hr"]
    np.testing.assert_allclose(hr["l1_mkt_hr"], -t["beta_mkt"])
    np.testing.assert_allclose(hr["l2_sec_hr"], -t["beta_sec"])
    lam_sm = lb["lambda_sm"].reindex(a["sector_etf"]).to_numpy()
    np.testing.assert_allclose(hr["l2_mkt_hr"], -t["beta_mkt"] + t["beta_sec"] * lam_sm)
    no_sub = a["subsector_etf"] == a["sector_etf"]
    pd.testing.assert_series_equal(hr.loc[no_sub, "l3_mkt_hr"], hr.loc[no_sub, "l2_mkt_hr"], check_names=False)
    assert (hr.loc[no_sub, "l3_sub_hr"] == 0).all()


def test_true_hedge_ratios_hedge_the_raw_etfs(market):
    """Regressing a stock on the *raw* ETFs of its level gives −HR (SPEC §2 definition)."""
    hr = market.true_hedge_ratios()
    a, e = market.assignments, market.etf_returns
    with_sub = a.index[(a["subsector_etf"] != a["sector_etf"]) & (a["sector_etf"] != "XLC")]
    errors = []
    for t in with_sub[:40]:
        cols = ["SPY", a.loc[t, "sector_etf"], a.loc[t, "subsector_etf"]]
        data = pd.concat([market.returns[t], e[cols]], axis=1).dropna().to_numpy()
        x = np.column_stack([np.ones(len(data)), data[:, 1:]])
        coef, *_ = np.linalg.lstsq(x, data[:, 0], rcond=None)
        errors.append(coef[1:] + hr.loc[t, ["l3_mkt_hr", "l3_sec_hr", "l3_sub_hr"]].to_numpy(dtype=float))
    assert np.median(np.abs(errors)) < 0.1


def test_prices_rebuild_the_returns(market):
    prices = market.prices()
    assert list(prices.columns) == ["date", "ticker", "adj_close"]
    assert not prices.duplicated(["date", "ticker"]).any()
    assert (prices.groupby("ticker")["adj_close"].first() == 100).all()
    assert set(prices["ticker"]) == set(market.returns.columns) | set(market.etf_returns.columns)
    wide = prices.pivot(index="date", columns="ticker", values="adj_close")
    # A missing day has no price; the return recomputed across it is the next day's return.
    rebuilt = wide.ffill().pct_change(fill_method=None).reindex(market.returns.index)
    for frame in (market.returns, market.etf_returns):
        got = rebuilt[frame.columns].where(frame.notna())
        pd.testing.assert_frame_equal(got, frame, check_names=False, check_freq=False, atol=1e-12,
                                      check_column_type=False)
    first = prices.groupby("ticker")["date"].min()
    sec = market.securities.set_index("ticker")
    pd.testing.assert_series_equal(first.sort_index(), sec["valid_from"].sort_index(), check_names=False)


def test_full_scale_generates_lean():
    """3,000 stocks x 20 years in under 2 GB (its run time: benchmarks/bench_unit_timings.py)."""
    tracemalloc.start()
    big = synthetic_market(3000, 5040, seed=11)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert big.returns.shape == (5040, 3000)
    assert peak < 2e9
