"""Real data: US21 on the S&P 500 (prices, GICS, fundamentals snapshots, 1999–2021 volume), 2014–2026.

Skipped where ../shared/data is absent (its terms allow testing, not redistribution).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.fundamentals import fundamentals_panel, read_fundamentals_file
from riskstrata.factors.model import FactorInputs, fit_factor_model
from riskstrata.factors.spec import load_spec
from riskstrata.factors.validation import bias_statistic

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = pytest.mark.realdata
if not (SHARED / "fundamentals" / "snapshots.parquet").exists():
    pytest.skip(f"real market data not present at {SHARED}", allow_module_level=True)

FIELDS = ("price", "price_to_book", "book_value_per_share", "eps", "pe", "dividend_yield", "ebitda", "sales",
          "total_debt", "market_cap")


@pytest.fixture(scope="module")
def fitted():
    gics = pd.read_csv(SHARED / "reference" / "gics_current.csv")
    tickers = gics["ticker"].tolist()
    px = pd.read_parquet(SHARED / "prices" / "core.parquet", filters=[("date", ">=", pd.Timestamp("2013-06-01"))])
    wide = px[px["ticker"].isin(tickers)].pivot(index="date", columns="ticker", values="adj_close")
    returns = wide.pct_change(fill_method=None).iloc[1:]
    price = wide.reindex(returns.index)
    snaps = read_fundamentals_file(SHARED / "fundamentals" / "snapshots.parquet")
    dates, names = returns.index, returns.columns
    # No debt in these snapshots: LEVERAGE is dropped by the spec (missing = "drop"), with a note.
    fund = {f: fundamentals_panel(snaps, f, dates, names) for f in FIELDS if f != "total_debt"}
    shares = fundamentals_panel(snaps, "shares_outstanding", dates, names, max_age_days=3000)
    ohlcv = pd.read_parquet(SHARED / "prices" / "ohlcv_2021.parquet", columns=["date", "ticker", "volume"],
                            filters=[("date", ">=", pd.Timestamp("2013-06-01"))])
    volume = ohlcv.pivot(index="date", columns="ticker", values="volume").reindex(index=dates, columns=names)
    inputs = FactorInputs(returns, shares * price, gics.set_index("ticker")["gics_sector"], fund, volume, shares, price)
    result = fit_factor_model(inputs, load_spec("US21"))
    assert any("LEVERAGE dropped" in n for n in result.notes)
    return inputs, result


def test_it_builds_with_plausible_fit(fitted):
    _, result = fitted
    r2 = result.regression.r2.loc["2014":].dropna()
    assert len(r2) > 2500
    assert 0.15 < r2.mean() < 0.7
    # Fundamentals (hence caps) exist only for names in the index at each snapshot: ~300 in 2015.
    assert result.regression.n_names.loc["2015":].median() > 300


def test_market_factor_tracks_the_cap_weighted_return(fitted):
    inputs, result = fitted
    cap = inputs.market_cap.shift(1)
    cw = (inputs.returns * cap).sum(axis=1, min_count=1) / cap.where(inputs.returns.notna()).sum(axis=1)
    both = pd.concat([result.factor_returns["MARKET"], cw], axis=1).loc["2014":].dropna()
    assert both.corr().iloc[0, 1] > 0.95


def test_factor_bias_statistics_are_plausible(fitted):
    _, result = fitted
    fr = result.factor_returns.loc["2015":]
    i0 = result.dates.get_loc(fr.index[0])
    sigma = np.sqrt(np.array([np.diag(result.covariance.adjusted[i]) for i in range(i0 - 1, len(result.dates) - 1)]))
    bias = bias_statistic(fr.to_numpy(), sigma)
    ok = np.isfinite(bias)
    assert ok.sum() >= 15
    assert 0.7 < np.median(bias[ok]) < 1.4


def test_fama_french_sanity_size_against_smb_and_value_against_hml(fitted):
    _, result = fitted
    ff = pd.read_csv(SHARED / "famafrench" / "ff5_daily.csv", parse_dates=["date"]).set_index("date")
    fr = result.factor_returns.loc["2014":"2024-08"]
    size = pd.concat([fr["SIZE"], ff["smb"]], axis=1, sort=True).dropna()
    assert len(size) > 2000
    assert size["SIZE"].corr(size["smb"]) < -0.2  # big-minus-small inside the S&P 500 vs small-minus-big
    # Book values exist only where snapshots are fresh (they skip 2018-02 … 2024-10).
    value = pd.concat([fr["VALUE"], ff["hml"]], axis=1, sort=True).dropna()
    assert len(value) > 800
    assert value["VALUE"].corr(value["hml"]) > 0.3
