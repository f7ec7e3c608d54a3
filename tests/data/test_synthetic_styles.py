"""Model B's synthetic truth: default output untouched, truth exact and point-in-time."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from riskstrata.data.fundamentals import fundamentals_panel
from riskstrata.data.synthetic import SyntheticMarket, synthetic_market
from riskstrata.data.synthetic_styles import (
    FUNDAMENTAL_COLUMNS,
    GROWTH_LAG_DAYS,
    MODEL_B_INDUSTRY,
    PRICE_STYLES,
    STYLE_FACTORS,
)
from riskstrata.factors import descriptors as D

N_STOCKS, N_DAYS, SEED = 300, 252 * 4, 7
MODEL_A_FRAMES = ("etf_returns", "classifications", "assignments", "truth", "link_betas", "securities")
MODEL_B_FIELDS = ("shares_outstanding", "fundamentals", "volume", "market_cap", "style_truth", "style_returns",
                  "model_b_industry")
# USE4 LIQUIDITY: STOM, STOQ, STOA (ln of monthly turnover over 21, 63, 252 days), blended 35/35/30.
LIQUIDITY_WINDOWS, LIQUIDITY_WEIGHTS = (21, 63, 252), (0.35, 0.35, 0.30)


@pytest.fixture(scope="module")
def plain() -> SyntheticMarket:
    return synthetic_market(N_STOCKS, N_DAYS, seed=SEED)


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return synthetic_market(N_STOCKS, N_DAYS, seed=SEED, styles=True)


def _exposures(m: SyntheticMarket) -> np.ndarray:
    return np.stack([m.style_truth[k].to_numpy() for k in STYLE_FACTORS], axis=-1)


def _closes(m: SyntheticMarket) -> pd.DataFrame:
    """(T × N) adjusted closes as published (NaN on a day with no price row)."""
    return (m.prices().pivot(index="date", columns="ticker", values="adj_close")
            .reindex(index=m.returns.index, columns=m.returns.columns))


def _reference_exposures(m: SyntheticMarket, t: int, closes: pd.DataFrame) -> pd.DataFrame:
    """Row t of the truth recomputed from the published data alone, as a model would: the
    snapshots out by the close of t−1, the close of t−1, volume through t−1."""
    dates, tickers = m.returns.index, m.returns.columns
    day, prev = dates[t], dates[t - 1]
    pub = m.fundamentals[m.fundamentals["available_date"] <= prev].sort_values(["ticker", "period_end"])
    last = pub.groupby("ticker").tail(1).set_index("ticker")
    # GROWTH: ln(sales / sales a year ago), the year-ago sales as seen on the last trading day on
    # or before prev − 365 calendar days (none before the sample: NaN).
    j = dates.searchsorted(prev - pd.Timedelta(days=GROWTH_LAG_DAYS), side="right") - 1
    year_ago = pub[pub["available_date"] <= dates[j]] if j >= 0 else pub.iloc[:0]
    sales_then = year_ago.groupby("ticker").tail(1).set_index("ticker")["sales"].reindex(last.index)
    growth = np.log(last["sales"] / sales_then)
    close = closes.loc[prev].reindex(last.index)                  # the daily close of t−1
    cap = last["shares_outstanding"] * close                      # the daily cap of t−1
    raw = pd.DataFrame({
        "SIZE": np.log(cap),
        "VALUE": last["book_value_per_share"] / close,
        "EARNINGS_YIELD": last["eps"] / close,
        "DIVIDEND_YIELD": last["dividend_yield"],
        "GROWTH": growth,
        "QUALITY": last["ebitda"] / last["sales"],
        "LEVERAGE": last["total_debt"] / cap,
    }).reindex(tickers)
    # LIQUIDITY: turnover on days the share count was published (a snapshot out), per window the
    # log of 21 × mean daily turnover if at least half the window has one; weights renormalised.
    first_out = m.fundamentals.groupby("ticker")["available_date"].min().reindex(tickers)
    num, den = pd.Series(0.0, index=tickers), pd.Series(0.0, index=tickers)
    for w, wt in zip(LIQUIDITY_WINDOWS, LIQUIDITY_WEIGHTS):
        vol = m.volume.iloc[max(t - w, 0):t]
        known = pd.DataFrame(vol.index.to_numpy()[:, None] >= first_out.to_numpy()[None, :],
                             index=vol.index, columns=tickers)
        turnover = (vol / m.shares_outstanding).where(known)
        comp = np.log(21 * turnover.mean()).where(turnover.notna().sum() >= w / 2)
        num += (wt * comp).fillna(0.0)
        den += comp.notna() * wt
    raw["LIQUIDITY"] = (num / den).where(den > 0)
    life = m.truth
    listed = (life["list_date"] <= day) & (life["delist_date"].isna() | (life["delist_date"] >= day))
    universe = listed & raw.notna().all(axis=1)
    x = raw[universe]
    weight = cap.reindex(x.index)
    z = (x - x.mul(weight, axis=0).sum() / weight.sum()) / x.std(ddof=0)
    return z.reindex(tickers)


# --- the default market is untouched ---------------------------------------------------------------

def test_default_market_has_no_model_b_data(plain):
    for name in MODEL_B_FIELDS:
        assert getattr(plain, name) is None, name
    assert "styles" not in repr(plain)


def test_styles_change_only_the_returns_and_only_by_the_style_term(plain, market):
    for name in MODEL_A_FRAMES:
        pd.testing.assert_frame_equal(getattr(plain, name), getattr(market, name), obj=name)
    r0, r1 = plain.returns.to_numpy(), market.returns.to_numpy()
    assert (np.isnan(r0) == np.isnan(r1)).all()
    outside = ~np.isfinite(_exposures(market)[..., 0]) & np.isfinite(r0)
    assert (r1[outside] == r0[outside]).all()          # no exposure, no style term
    assert not np.allclose(np.nan_to_num(r0), np.nan_to_num(r1))


def test_same_seed_same_style_market(market):
    again = synthetic_market(N_STOCKS, N_DAYS, seed=SEED, styles=True)
    for name in ("returns", "fundamentals", "volume", "market_cap", "style_returns"):
        pd.testing.assert_frame_equal(getattr(market, name), getattr(again, name), obj=name)
    for k in STYLE_FACTORS:
        pd.testing.assert_frame_equal(market.style_truth[k], again.style_truth[k], obj=k)


# --- the truth is exact -----------------------------------------------------------------------------

def test_regressing_the_style_term_on_the_truth_recovers_the_style_returns(plain, market):
    x = _exposures(market)
    term = market.returns.to_numpy() - plain.returns.to_numpy()
    g = market.style_returns[list(STYLE_FACTORS)].to_numpy()
    rows = np.flatnonzero(np.isfinite(x[..., 0]).any(axis=1))
    assert len(rows) > N_DAYS // 2
    for t in rows:
        ok = np.isfinite(x[t, :, 0]) & np.isfinite(term[t])
        est, *_ = np.linalg.lstsq(x[t, ok], term[t, ok], rcond=None)
        np.testing.assert_allclose(est, g[t], rtol=0, atol=1e-12)


def test_exposures_are_standardised_over_the_universe(market):
    x = _exposures(market)
    universe = np.isfinite(x[..., 0])
    assert (np.isfinite(x).all(axis=-1) == universe).all()       # one universe for every style
    caps = market.market_cap.to_numpy()
    for t in np.flatnonzero(universe.any(axis=1))[::50]:
        cap = caps[t - 1, universe[t]]                             # the daily cap of t−1
        xt = x[t, universe[t]]
        np.testing.assert_allclose(cap @ xt / cap.sum(), 0.0, atol=1e-12)
        np.testing.assert_allclose(xt.std(axis=0), 1.0, atol=1e-12)


def test_truth_is_what_a_model_computes_from_the_published_data(market):
    """Point in time: row t uses only snapshots available by the close of t−1 (a snapshot
    published on t itself is not yet used), the close of t−1 and volume through t−1."""
    dates = market.returns.index
    closes = _closes(market)
    avail = pd.DatetimeIndex(market.fundamentals["available_date"].unique())
    x = _exposures(market)
    first = int(np.flatnonzero(np.isfinite(x[..., 0]).any(axis=1))[0])
    on_day = [int(i) for i in np.flatnonzero(dates.isin(avail)) if i > first + 5][:2]   # a release on t
    # a release exactly a year (365 days) before t−1: it counts in the year-ago sales
    year_edge = [t for t in range(first + 5, N_DAYS) if dates[t - 1] - pd.Timedelta(days=GROWTH_LAG_DAYS) in avail][:2]
    # the day after a missing return of a name in the universe: no close on t−1, no exposure on t
    gap = market.returns.isna().to_numpy()[:-2] & np.isfinite(x[:-2, :, 0])    # row s: missing on s
    after_gap = [int(s) + 1 for s in np.flatnonzero(gap.any(axis=1))][:2]
    assert len(on_day) == 2 and len(year_edge) == 2 and len(after_gap) == 2
    for t in after_gap:
        assert np.isnan(x[t, gap[t - 1]]).all() and np.isfinite(x[t + 1, gap[t - 1]]).all()
    rows = [first, first + 1, *on_day, *(i + 1 for i in on_day), *year_edge, *(i - 1 for i in year_edge),
            *after_gap, N_DAYS // 2, N_DAYS - 1]
    for t in rows:
        ref = _reference_exposures(market, t, closes)
        for j, k in enumerate(STYLE_FACTORS):
            np.testing.assert_allclose(x[t, :, j], ref[k].to_numpy(), rtol=0, atol=1e-9,
                                       err_msg=f"{k} on {dates[t].date()}")


def test_truth_is_the_models_own_descriptors_z_scored(market):
    """Every row: the model's descriptor functions on the point-in-time panels, lagged a day,
    z-scored over the truth's universe with the previous day's caps — and that universe is
    exactly the listed names with all eight descriptors."""
    dates, tickers = market.returns.index, market.returns.columns
    fields = ("book_value_per_share", "eps", "dividend_yield", "ebitda", "sales", "total_debt")
    fund = {f: fundamentals_panel(market.fundamentals, f, dates, tickers) for f in fields}
    shares = fundamentals_panel(market.fundamentals, "shares_outstanding", dates, tickers, max_age_days=3000)
    close = _closes(market)
    cap = D.market_cap_panel(close, shares)
    v = D.value_descriptors(fund, cap, close)
    raw = {"SIZE": D.log_size(cap), "VALUE": v["book_to_price"], "EARNINGS_YIELD": v["earnings_yield"],
           "DIVIDEND_YIELD": v["dividend_yield"], "GROWTH": v["growth"], "QUALITY": v["quality"],
           "LEVERAGE": v["leverage"], "LIQUIDITY": D.liquidity(market.volume, shares)}
    lagged = np.stack([raw[k].shift(1).to_numpy() for k in STYLE_FACTORS], axis=-1)
    weight = cap.shift(1).to_numpy()
    life = market.truth
    day = dates.to_numpy()[:, None]
    listed = (life["list_date"].to_numpy() <= day) & (life["delist_date"].isna().to_numpy()
                                                      | (life["delist_date"].to_numpy() >= day))
    x = _exposures(market)
    universe = np.isfinite(x[..., 0])
    np.testing.assert_array_equal(universe, listed & np.isfinite(lagged).all(axis=-1))
    rows = np.flatnonzero(universe.sum(axis=1) >= 2)
    assert len(rows) > N_DAYS // 2
    for t in rows:
        u = universe[t]
        d, w = lagged[t, u], weight[t, u]
        z = (d - w @ d / w.sum()) / d.std(axis=0)
        np.testing.assert_allclose(z, x[t, u], rtol=0, atol=1e-9, err_msg=str(dates[t].date()))


# --- the published data look like the real thing -------------------------------------------------

def test_fundamentals_are_point_in_time_quarterly_and_consistent(market):
    f = market.fundamentals
    assert list(f.columns) == list(FUNDAMENTAL_COLUMNS)
    assert f["available_date"].is_monotonic_increasing
    assert not f.duplicated(["ticker", "period_end"]).any()
    assert (f["period_end"] == f["period_end"] + pd.offsets.QuarterEnd(0)).all()     # calendar quarter ends
    lag = (f["available_date"] - f["period_end"]).dt.days
    assert lag.between(35, 55).all() and 40 < lag.mean() < 50
    assert f["available_date"].max() <= market.returns.index[-1]
    life = market.truth.reindex(f["ticker"])
    last_day = life["delist_date"].fillna(market.returns.index[-1])
    assert (f["available_date"].to_numpy() <= last_day.to_numpy()).all()
    # price = the adjusted close of the last trading day ≤ the quarter end
    prices = market.prices().set_index(["ticker", "date"])["adj_close"].sort_index()
    for _, row in f.sample(200, random_state=0).iterrows():
        series = prices.loc[row["ticker"]]
        assert row["price"] == series[series.index <= row["period_end"]].iloc[-1]
    np.testing.assert_allclose(f["market_cap"], f["price"] * f["shares_outstanding"], rtol=1e-15)
    np.testing.assert_allclose(f["price_to_book"], f["price"] / f["book_value_per_share"], rtol=1e-12)
    pos = f["eps"] > 0
    np.testing.assert_allclose(f.loc[pos, "pe"], f.loc[pos, "price"] / f.loc[pos, "eps"], rtol=1e-12)
    assert f.loc[~pos, "pe"].isna().all() and 0.02 < (~pos).mean() < 0.2
    assert (f["dividend_yield"] >= 0).all() and (f["dividend_yield"] < 0.1).all()
    assert (f[["sales", "market_cap", "price", "shares_outstanding"]] > 0).all().all()
    assert (f["total_debt"] >= 0).all()
    per_ticker = f.groupby("ticker")["shares_outstanding"].agg(["min", "max"])
    assert (per_ticker["min"] == per_ticker["max"]).all()
    np.testing.assert_array_equal(per_ticker["min"].to_numpy(),
                                  market.shares_outstanding.loc[per_ticker.index].to_numpy())


def test_descriptors_are_persistent_and_caps_span_three_orders(market):
    x = _exposures(market)
    for t in (400, 600):
        ok = np.isfinite(x[t, :, 0]) & np.isfinite(x[t + 252, :, 0])
        for j, k in enumerate(STYLE_FACTORS):
            assert np.corrcoef(x[t, ok, j], x[t + 252, ok, j])[0, 1] > 0.4, k
    caps = market.market_cap.to_numpy()
    lo, hi = np.nanquantile(caps, [0.01, 0.99], axis=1)
    assert (hi / lo > 200).all() and np.nanmedian(hi / lo) > 500
    assert np.isfinite(caps).sum() >= np.isfinite(market.returns.to_numpy()).sum()


def test_volume_turnover_differs_by_stock(market):
    v = market.volume
    assert (v.isna() == market.returns.isna()).all().all()
    assert np.nanmin(v.to_numpy()) > 0
    turnover = v.div(market.shares_outstanding).mean()
    assert 0.003 < turnover.median() < 0.012
    assert np.log(turnover).std() > 0.3                     # a liquidity characteristic


def test_style_returns(market):
    sr = market.style_returns
    assert list(sr.columns) == [*STYLE_FACTORS, *PRICE_STYLES] and sr.index.equals(market.returns.index)
    assert (sr[list(PRICE_STYLES)] == 0).all().all()
    vol = sr[list(STYLE_FACTORS)].std()
    assert vol.between(0.0015, 0.006).all()
    corr = sr[list(STYLE_FACTORS)].corr().to_numpy()
    assert np.abs(corr[~np.eye(len(STYLE_FACTORS), dtype=bool)]).max() < 0.15


def test_model_b_industry(market):
    ind = market.model_b_industry
    assert ind.index.equals(market.returns.columns)
    expected = market.classifications.set_index("ticker")["gics_sector"].map(MODEL_B_INDUSTRY)
    pd.testing.assert_series_equal(ind, expected.rename("industry"), check_index_type=False)
    assert ind.notna().all() and ind.nunique() == 10
    real_estate = market.classifications.loc[market.classifications["gics_sector"] == "Real Estate", "ticker"]
    assert (ind.loc[real_estate] == "FINANCIALS").all()


def test_tiny_markets_still_build():
    m = synthetic_market(5, 30, seed=1, styles=True)         # no quarter's report is out yet
    assert m.fundamentals.empty and list(m.fundamentals.columns) == list(FUNDAMENTAL_COLUMNS)
    assert all(v.isna().all().all() for v in m.style_truth.values())
    pd.testing.assert_frame_equal(m.returns, synthetic_market(5, 30, seed=1).returns)


def test_500_stocks_5_years_with_styles_builds():
    m = synthetic_market(500, 252 * 5, seed=3, styles=True)  # its run time: benchmarks/bench_unit_timings.py
    assert m.returns.shape == (252 * 5, 500) and len(m.fundamentals) > 500 * 15
