"""Caps without look-ahead and share classes counted once (issue 9 §1), on small synthetic data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.synthetic import synthetic_market
from riskstrata.factors.descriptors import market_cap_panel, secondary_share_classes, value_descriptors
from riskstrata.factors.model import FactorInputs, fit_factor_model
from riskstrata.factors.spec import load_spec
from riskstrata.services.factors import point_in_time_panels


def test_raw_close_times_shares_wins_over_the_rolled_cap_where_both_exist():
    days = pd.bdate_range("2020-01-01", periods=3)
    rolled = pd.DataFrame({"A": [1e9, 1.1e9, 1.2e9], "B": [5e8, np.nan, 6e8]}, index=days)
    raw = pd.DataFrame({"A": [10.0, np.nan, 12.5], "B": [np.nan, 3.0, -1.0]}, index=days)
    shares = pd.DataFrame({"A": [1e8, 1e8, 1e8], "B": [2e8, 2e8, 2e8]}, index=days)
    cap = market_cap_panel(raw, shares, rolled)
    assert cap["A"].tolist() == [1e9, 1.1e9, 1.25e9]  # day 2: no raw close → the rolled cap
    assert cap["B"].tolist() == [5e8, 6e8, 6e8]       # a non-positive close is no observation
    assert market_cap_panel(None, None, rolled).equals(rolled.where(rolled > 0))
    with pytest.raises(ValueError, match="raw closes"):
        market_cap_panel(None, None, None)


def test_value_descriptors_take_the_rolled_snapshot_ratios():
    days = pd.bdate_range("2020-01-01", periods=2)
    cap = pd.DataFrame({"A": [1e9, 2e9]}, index=days)
    price = pd.DataFrame({"A": [10.0, 20.0]}, index=days)
    fund = {"book_to_price": pd.DataFrame({"A": [0.5, np.nan]}, index=days),
            "book_value_per_share": pd.DataFrame({"A": [4.0, 4.0]}, index=days),
            "earnings_yield": pd.DataFrame({"A": [0.05, 0.025]}, index=days),
            "eps": pd.DataFrame({"A": [9.0, 9.0]}, index=days)}
    v = value_descriptors(fund, cap, price)
    assert v["book_to_price"]["A"].tolist() == [0.5, 0.2]  # rolled ratio, else book / price
    assert v["earnings_yield"]["A"].tolist() == [0.05, 0.025]


def test_one_primary_class_per_issuer_and_day():
    days = pd.bdate_range("2020-01-01", periods=4)
    cap = pd.DataFrame(1e9, index=days, columns=["GOOGL", "GOOG", "AAPL", "SOLO"])
    eligible = np.array([[1, 0, 1, 1],     # only GOOGL eligible
                         [1, 1, 1, 1],     # GOOGL has the longer history
                         [0, 1, 1, 1],     # GOOGL out: GOOG is the primary
                         [1, 1, 1, 1]], bool)
    issuer = pd.Series({"GOOGL": "ABC", "GOOG": "ABC", "AAPL": np.nan})  # SOLO: not mapped
    sec = secondary_share_classes(cap, eligible, issuer)
    assert sec.tolist() == [[False] * 4, [False, True, False, False], [False] * 4, [False, True, False, False]]
    assert not secondary_share_classes(cap, eligible, None).any()


@pytest.fixture(scope="module")
def small_market():
    return synthetic_market(n_stocks=60, n_days=320, seed=11, styles=True)


def _inputs(market, duplicate: str | None = None, issuer: bool = False) -> FactorInputs:
    """The store path's panels (rolled from the snapshots) on the synthetic market; optionally a
    second share class of ``duplicate``: the same returns, fundamentals and (issuer) cap."""
    returns = market.returns
    adj = market.prices().pivot(index="date", columns="ticker", values="adj_close")
    adj.index = pd.DatetimeIndex(adj.index)
    fundamentals = market.fundamentals
    sector = market.classifications.set_index("ticker")["gics_sector"]
    if duplicate:
        twin = f"{duplicate}2"
        returns = returns.assign(**{twin: returns[duplicate]})
        adj = adj.assign(**{twin: adj[duplicate]})
        extra = fundamentals[fundamentals["ticker"] == duplicate].assign(ticker=twin)
        fundamentals = pd.concat([fundamentals, extra], ignore_index=True)
        sector = pd.concat([sector, pd.Series({twin: sector[duplicate]})])
    names = list(returns.columns)
    pit = point_in_time_panels(fundamentals, adj, returns.index, names)
    issuers = pd.Series({duplicate: "ISSUER", f"{duplicate}2": "ISSUER"}) if duplicate and issuer else None
    return FactorInputs(returns, pit.market_cap, sector, pit.fundamentals, None, pit.shares, pit.price, issuers)


def test_a_second_share_class_stays_out_of_the_universe_once_its_issuer_is_known(small_market):
    """Counted once: a twin class of the largest stock, mapped to the same issuer, stays out of the
    estimation universe (the issuer's regression weight is one √cap, its cap in the industry
    constraint once) and barely moves the factor returns; unmapped it counts twice and moves them."""
    spec = load_spec("US21")
    base = fit_factor_model(_inputs(small_market), spec)
    big = base.market_cap.iloc[-1].idxmax()
    mapped = fit_factor_model(_inputs(small_market, big, issuer=True), spec)
    twice = fit_factor_model(_inputs(small_market, big, issuer=False), spec)
    j, k = list(mapped.tickers).index(big), list(mapped.tickers).index(f"{big}2")
    assert not (mapped.universe[:, j] & mapped.universe[:, k]).any()
    assert mapped.universe[:, j].sum() == base.universe[:, list(base.tickers).index(big)].sum() > 100
    fr_base = base.factor_returns.to_numpy()
    moved_mapped = np.nanmean(np.abs(mapped.factor_returns[base.factors].to_numpy() - fr_base))
    moved_twice = np.nanmean(np.abs(twice.factor_returns[base.factors].to_numpy() - fr_base))
    # Not exactly 0: the winsorisation bands (exposures.winsorise) are the median ± 5 MAD of every
    # name with a value, the twin included, so a few clipped exposures move by a hair (measured:
    # 2e-5 mean |Δf| mapped against 7e-4 counted twice).
    assert moved_twice > 1e-4 and moved_mapped < moved_twice / 10, (moved_mapped, moved_twice)
    # The twin is still priced: it has exposures wherever the original has.
    np.testing.assert_array_equal(np.isfinite(mapped.exposures[:, j]), np.isfinite(mapped.exposures[:, k]))


def test_synthetic_caps_rolled_from_the_snapshots_equal_shares_times_close(small_market):
    """The synthetic market has no splits or dividends (adjusted close = traded close) and a
    constant share count: rolling each snapshot's cap from its price date reproduces the true
    daily cap exactly, from the first snapshot on (before it: missing, not invented)."""
    pit = _inputs(small_market)
    truth = small_market.market_cap
    cap = pit.market_cap.to_numpy()
    both = np.isfinite(cap) & np.isfinite(truth.to_numpy())
    assert both.sum() > 0.6 * np.isfinite(truth.to_numpy()).sum()  # the first reports come out after ~3 months
    np.testing.assert_allclose(cap[both], truth.to_numpy()[both], rtol=1e-12)
    first = small_market.fundamentals.groupby("ticker")["available_date"].min()
    for t in list(truth.columns[:5]):
        assert pit.market_cap[t].loc[: first[t] - pd.Timedelta(days=1)].isna().all()


def test_the_store_build_reads_issuers_and_rolls_caps_from_the_price_date(tmp_path, small_market):
    """The store path: fundamentals ingested with their price dates, an issuer file ingested;
    ``load_factor_inputs`` gives the true daily caps and one issuer for the two mapped names."""
    from riskstrata.data.master import SecurityMaster, ingest_issuers
    from riskstrata.data.store import Store
    from riskstrata.services.demo import load_synthetic_into_store
    from riskstrata.services.factors import load_factor_inputs

    store = Store(tmp_path / "store")
    load_synthetic_into_store(store, small_market)
    a, b = small_market.returns.columns[:2]
    (tmp_path / "issuers.csv").write_text(f"ticker,cik\n{a},0000000042\n{b},0000000042\n")
    ingest_issuers(store, tmp_path / "issuers.csv")
    inputs = load_factor_inputs(store)
    master = SecurityMaster.from_store(store)
    sid = {t: master.resolve(t, small_market.returns.index[-1]) for t in small_market.returns.columns}
    assert inputs.issuer[sid[a]] == inputs.issuer[sid[b]] == "0000000042"
    assert inputs.issuer.drop([sid[a], sid[b]]).is_unique
    truth = small_market.market_cap
    cap = inputs.market_cap.rename(columns={v: k for k, v in sid.items()}).reindex(index=truth.index, columns=truth.columns)
    both = cap.notna().to_numpy() & small_market.market_cap.notna().to_numpy()
    assert both.sum() > 0.6 * small_market.market_cap.notna().to_numpy().sum()
    np.testing.assert_allclose(cap.to_numpy()[both], small_market.market_cap.to_numpy()[both], rtol=1e-12)


def test_user_raw_closes_win_for_the_price_floor_and_with_stated_shares_for_the_cap():
    """A snapshot with price 100, cap 1e9, then a 2:1 split: the adjusted closes are re-based,
    the user's raw closes are the traded prices. A raw close is the price where given. The cap is
    raw × shares only where the data state a share count (and the user keeps it current); a count
    implied by an older snapshot (cap / price, on the pre-split basis) is never used so."""
    days = pd.bdate_range("2020-01-06", periods=6)
    snaps = pd.DataFrame({"available_date": [days[0]], "ticker": ["A"], "price": [100.0], "market_cap": [1e9]})
    adj = pd.DataFrame({"A": [50.0, 51.0, 52.0, 53.0, 54.0, 55.0]}, index=days)
    raw = pd.DataFrame({"A": [100.0, 102.0, np.nan, 53.0, 54.0, 55.0]}, index=days)  # split on day 4
    rolled_cap = 1e9 * adj["A"] / 50.0
    pit = point_in_time_panels(snaps, adj, days, ["A"], raw_close=raw)
    np.testing.assert_allclose(pit.price["A"], raw["A"].fillna(100.0 * adj["A"] / 50.0), rtol=1e-15)
    np.testing.assert_allclose(pit.market_cap["A"], rolled_cap, rtol=1e-15)
    # The user's own share counts: 1e7 before the split, 2e7 from its day.
    stated = pd.concat([snaps.assign(shares_outstanding=1e7),
                        snaps.assign(available_date=days[3], shares_outstanding=2e7, price=np.nan, market_cap=np.nan)])
    pit = point_in_time_panels(stated, adj, days, ["A"], raw_close=raw)
    expected = pd.Series([1e9, 1.02e9, rolled_cap.iloc[2], 1.06e9, 1.08e9, 1.1e9], index=days)
    np.testing.assert_allclose(pit.market_cap["A"], expected, rtol=1e-12)
