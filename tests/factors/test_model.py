"""Model B end to end on the synthetic market with known style returns."""

from __future__ import annotations

from pathlib import Path

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


def truth_spec(tmp_path):
    """US21 with EARNINGS_YIELD on its earnings descriptor alone, as the generator defines it —
    a second spec is only a new file."""
    text = (Path(load_spec("US21").source).read_text()
            .replace("descriptors = { earnings_yield = 0.7, ebitda_to_ev = 0.3 }", "descriptors = { earnings_yield = 1.0 }")
            .replace('name = "US21"', 'name = "US21_TRUTH"'))
    path = tmp_path / "US21_TRUTH.toml"
    path.write_text(text)
    return load_spec(path)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    # A high-signal market (style vols 0.6–1 % a day) so that recovery measures the model, not
    # the estimation noise of 400 names (≈ 0.15 % a day per style, an oracle bound).
    market = synthetic_market(n_stocks=400, n_days=252 * 5, seed=3, styles=True, style_vol=(0.006, 0.010))
    result = fit_factor_model(synthetic_inputs(market), truth_spec(tmp_path_factory.mktemp("spec")))
    return market, result


def established(frame: pd.DataFrame, market) -> pd.DataFrame:
    """Rows once the truth universe exists (GROWTH needs a year-old report)."""
    start = market.style_truth["GROWTH"].notna().sum(axis=1).gt(100).idxmax() + pd.Timedelta(days=30)
    return frame.loc[start:]


def test_style_factor_returns_are_recovered(fitted):
    market, result = fitted
    fr = result.factor_returns
    truth = market.style_returns
    for style in ("SIZE", "VALUE", "EARNINGS_YIELD", "DIVIDEND_YIELD", "GROWTH", "QUALITY", "LEVERAGE", "LIQUIDITY"):
        both = established(pd.concat([fr[style], truth[style]], axis=1), market).dropna()
        corr = both.corr().iloc[0, 1]
        assert corr >= 0.95, f"{style}: correlation {corr:.3f} with the true factor return"


def test_style_exposures_are_recovered(fitted):
    market, result = fitted
    day = result.dates[-1]
    exp = result.exposures_on(day)
    for style in ("SIZE", "VALUE", "EARNINGS_YIELD", "DIVIDEND_YIELD", "GROWTH", "QUALITY", "LEVERAGE", "LIQUIDITY"):
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
