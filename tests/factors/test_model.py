"""Model B end to end on the synthetic market with known style returns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.fundamentals import fundamentals_panel
from riskstrata.data.synthetic import synthetic_market
from riskstrata.factors.model import FactorInputs, fit_factor_model
from riskstrata.factors.spec import load_spec

FIELDS = ("price", "price_to_book", "book_value_per_share", "eps", "pe", "dividend_yield", "ebitda", "sales",
          "total_debt", "market_cap")


def synthetic_inputs(market) -> FactorInputs:
    """Point-in-time panels from the generator's published data only (prices, snapshots, volume)."""
    returns = market.returns
    dates, tickers = returns.index, returns.columns
    prices = market.prices().pivot(index="date", columns="ticker", values="adj_close").reindex(index=dates,
                                                                                                columns=tickers)
    fund = {f: fundamentals_panel(market.fundamentals, f, dates, tickers) for f in FIELDS}
    shares = fundamentals_panel(market.fundamentals, "shares_outstanding", dates, tickers, max_age_days=3000)
    sectors = market.classifications.set_index("ticker")["gics_sector"]
    return FactorInputs(returns, shares * prices, sectors, fund, market.volume, shares, prices)


@pytest.fixture(scope="module")
def fitted():
    market = synthetic_market(n_stocks=400, n_days=252 * 4, seed=3, styles=True)
    result = fit_factor_model(synthetic_inputs(market), load_spec("US21"))
    return market, result


def test_style_factor_returns_are_recovered(fitted):
    market, result = fitted
    fr = result.factor_returns
    truth = market.style_returns
    for style in ("SIZE", "VALUE", "EARNINGS_YIELD", "DIVIDEND_YIELD", "GROWTH", "QUALITY", "LEVERAGE", "LIQUIDITY"):
        both = pd.concat([fr[style], truth[style]], axis=1).dropna().iloc[300:]  # once every descriptor exists
        corr = both.corr().iloc[0, 1]
        assert corr >= 0.95, f"{style}: correlation {corr:.3f} with the true factor return"


def test_style_exposures_are_recovered(fitted):
    market, result = fitted
    day = result.dates[-1]
    exp = result.exposures_on(day)
    for style in ("SIZE", "VALUE", "DIVIDEND_YIELD", "QUALITY", "LEVERAGE"):
        truth = market.style_truth[style].loc[day]
        both = pd.concat([exp[style], truth], axis=1).dropna()
        assert both.corr().iloc[0, 1] > 0.95, style


def test_structural_invariants_hold_on_every_date(fitted):
    _, result = fitted
    reg = result.regression
    assert reg.constraint_residual.dropna().max() < 1e-10
    for i in range(0, len(result.dates), 25):
        cov = result.covariance.adjusted[i]
        if np.isnan(cov).any():
            continue
        assert np.allclose(cov, cov.T, atol=1e-18)
        assert np.linalg.eigvalsh(cov).min() > -1e-12
    spec_var = result.specific_var.iloc[-1].dropna()
    assert len(spec_var) > 300 and np.isfinite(spec_var).all() and (spec_var > 0).all()
    # Exposure standardisation over the estimation universe: cap-weighted mean 0, equal std 1.
    i = len(result.dates) - 1
    u = result.universe[i]
    cap = result.market_cap.iloc[i].to_numpy()
    for k, name in enumerate(result.factors):
        if name in result.spec.style_factors:
            x = result.exposures[i, u, k]
            assert abs(np.average(x, weights=cap[u])) < 1e-10, name
            assert abs(np.std(x) - 1) < 1e-10, name


def test_exports_for_qlib_and_pyfolio(fitted):
    _, result = fitted
    exp, cov, risk = result.qlib_triplet()
    assert list(cov.index) == result.factors and exp.shape[1] == len(result.factors)
    assert (risk.dropna() > 0).all()
    fr, loadings = result.pyfolio_inputs()
    assert loadings.index.names == ["dt", "ticker"] and list(loadings.columns) == result.factors


def test_portfolio_risk_euler_shares_sum_to_one(fitted):
    _, result = fitted
    w = pd.Series(1 / 20, index=result.tickers[:20])
    r = result.portfolio_risk(w)
    assert sum(r["shares"].values()) == pytest.approx(1.0, abs=1e-10)
    assert r["vol_ann"] > 0
