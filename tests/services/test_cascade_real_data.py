"""Real data: ingest the S&P 500 + ETFs from ../shared/data, build 2016–2026, check what a quant would.

Skipped where ../shared/data is absent (its terms allow testing, not redistribution).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from riskstrata.cascade.kernel import Flag
from riskstrata.services import cascade as svc

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = pytest.mark.realdata
if not (SHARED / "prices" / "core.parquet").exists():
    pytest.skip(f"real market data not present at {SHARED}", allow_module_level=True)


@pytest.fixture(scope="module")
def model(real_store) -> pd.DataFrame:
    return real_store.read_model(svc.MODEL)


def test_spy_against_itself_is_a_perfect_minus_one_hedge(real_store):
    m = svc.metrics(real_store, "SPY")
    assert m["l1_mkt_hr"] == pytest.approx(-1.0, abs=1e-10)
    assert m["l1_res_er"] == pytest.approx(0.0, abs=1e-10)


def test_median_sp500_market_beta_is_near_one(real_store, model):
    """Over 2016–2026 the typical S&P 500 name moves one-for-one with SPY.

    (On single dates it wanders: the mega-cap-led market of 2025–26 puts the median near 0.6,
    which a direct cov/var on the raw prices confirms.)
    """
    gics = pd.read_csv(SHARED / "reference" / "gics_current.csv")
    stocks = model[model["ticker"].isin(gics["ticker"])]
    per_date = stocks.groupby("date")["l1_mkt_beta"].median()
    assert stocks.loc[stocks["date"] == stocks["date"].max(), "ticker"].nunique() > 450
    assert 0.85 < per_date.median() < 1.1
    assert per_date.min() > 0.5 and per_date.max() < 1.5


def test_semiconductor_names_hedge_with_a_semiconductor_etf(real_store):
    for ticker in ("NVDA", "AMD", "AVGO", "INTC"):
        assert svc.metrics(real_store, ticker)["subsector_etf"] in ("SOXX", "SMH")


def test_xlc_names_fall_back_to_l1_at_level_2_before_xlc_has_a_full_window(real_store):
    early = svc.metrics(real_store, "META", "2018-12-31")
    assert early["flags"] & Flag.SECTOR_FALLBACK and early["sector_etf"] is None and early["l2_sec_hr"] == 0
    late = svc.metrics(real_store, "META", "2020-06-30")
    assert late["sector_etf"] == "XLC" and not late["flags"] & Flag.SECTOR_FALLBACK


def test_identities_hold_on_the_whole_build(model):
    v = model
    for parts in (["l1_mkt_er", "l1_res_er"], ["l2_mkt_er", "l2_sec_er", "l2_res_er"],
                  ["l3_mkt_er", "l3_sec_er", "l3_sub_er", "l3_res_er"]):
        total = v[parts].sum(axis=1, min_count=len(parts))
        assert total.notna().sum() > 500_000
        assert (total.dropna() - 1).abs().max() < 1e-9
    for k in (1, 2, 3):
        gap = (v[f"l{k}_cfr"] + v[f"l{k}_rr"] - v["returns_gross"]).abs()
        assert gap.max() < 1e-12
    assert not np.isinf(v.select_dtypes("number").to_numpy()).any()


def test_equals_statsmodels_ols_on_raw_and_orthogonal_etfs_at_random_windows_of_real_data(real_store, model):
    prices = real_store.read_table("prices", columns=["ticker", "date", "ret"])
    wide = prices.pivot_table(index="date", columns="ticker", values="ret", aggfunc="first").sort_index()
    rng = np.random.default_rng(42)
    rows = model[(model["n_obs"] >= 252) & model["l3_mkt_hr"].notna() & model["subsector_etf"].notna()
                 & model["sector_etf"].notna()]
    picks = rows.iloc[rng.integers(0, len(rows), 30)]
    for row in picks.itertuples():
        dates = wide.index[wide.index <= row.date][-252:]
        y = wide.loc[dates, row.ticker]
        X = wide.loc[dates, ["SPY", row.sector_etf, row.subsector_etf]]
        ok = y.notna() & X.notna().all(axis=1)
        fit = sm.OLS(y[ok].to_numpy(), sm.add_constant(X[ok].to_numpy())).fit()
        assert [-row.l3_mkt_hr, -row.l3_sec_hr, -row.l3_sub_hr] == pytest.approx(list(fit.params[1:]), abs=1e-8), row.ticker
        assert 1 - row.l3_res_er == pytest.approx(fit.rsquared, abs=1e-8)
        l1 = sm.OLS(y[ok].to_numpy(), sm.add_constant(X[ok]["SPY"].to_numpy())).fit()
        assert -row.l1_mkt_hr == pytest.approx(l1.params[1], abs=1e-8)
        l2 = sm.OLS(y[ok].to_numpy(), sm.add_constant(X[ok][["SPY", row.sector_etf]].to_numpy())).fit()
        assert [-row.l2_mkt_hr, -row.l2_sec_hr] == pytest.approx(list(l2.params[1:]), abs=1e-8)
        # On the orthogonalised ETFs of the same window: s* = s − λ_sm·m, u* = u − λ_um·m − λ_us·s*.
        m, s, u = (X[ok][c].to_numpy() for c in ("SPY", row.sector_etf, row.subsector_etf))
        lam_sm = sm.OLS(s, sm.add_constant(m)).fit().params[1]
        s_star = s - lam_sm * m
        lam = sm.OLS(u, sm.add_constant(np.column_stack([m, s_star]))).fit().params
        u_star = u - lam[1] * m - lam[2] * s_star
        orth = sm.OLS(y[ok].to_numpy(), sm.add_constant(np.column_stack([m, s_star, u_star]))).fit()
        assert [row.l1_mkt_beta, row.l2_sec_beta, row.l3_sub_beta] == pytest.approx(list(orth.params[1:]), abs=1e-8)
        assert [row.lambda_sm, row.lambda_um, row.lambda_us] == pytest.approx([lam_sm, lam[1], lam[2]], abs=1e-8)
