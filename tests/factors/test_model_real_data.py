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
    assert any(n.startswith("LEVERAGE: not estimated") and "debt field" in n for n in result.notes)
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


# ---------------------------------------------------------------------- visible gaps, every factor (issue 9 §3–§4)


def test_no_style_has_a_factor_return_on_a_date_it_is_not_estimated(fitted):
    _, result = fitted
    fr, cov, thr = result.factor_returns, result.coverage, result.spec.min_coverage
    for style in result.spec.style_factors:
        if style in fr.columns:
            low = ~(cov[style] >= thr).to_numpy()
            assert fr.loc[low, style].isna().all(), style
    # The snapshots skip 2018-02 … 2024-10: the fundamental styles have no return in 2020–2023.
    for style in ("VALUE", "QUALITY", "DIVIDEND_YIELD", "EARNINGS_YIELD", "GROWTH"):
        assert fr.loc["2020":"2023", style].isna().all(), style
        assert fr.loc["2015", style].notna().mean() > 0.95, style


def test_the_2019_2024_snapshot_gap_is_noted_per_factor(fitted):
    _, result = fitted
    for style in ("VALUE", "EARNINGS_YIELD"):
        gap = [n for n in result.notes if n.startswith(f"{style}: not estimated 2019-")]
        assert gap and " … 2024-10-" in gap[0] and "estimation universe's cap" in gap[0], result.notes


def test_every_spec_factor_is_estimated_or_has_a_reason(fitted):
    _, result = fitted
    status = {s["factor"]: s for s in result.status}
    assert list(status) == result.spec.factors
    assert not status["LEVERAGE"]["estimated"] and "debt field" in status["LEVERAGE"]["reason"]
    # Volume exists to 2021-04 (ohlcv_2021): LIQUIDITY is estimated until its turnover windows run dry.
    liq = result.factor_returns["LIQUIDITY"]
    assert liq.loc["2015":"2020"].notna().mean() > 0.95 and liq.loc["2022":].isna().all()
    assert status["LIQUIDITY"]["estimated"] and status["LIQUIDITY"]["gaps"][-1]["last"] == str(result.dates[-1].date())


def real_data_figures(inputs: FactorInputs, result) -> dict:
    """The figures quoted in README and docs/model_b.md: bias statistic of each estimated factor
    (adjusted covariance, 2015 on, 1 ± 3√(2/T)), and MARKET, SIZE, VALUE, MOMENTUM against the
    cap-weighted index and Fama–French SMB, HML (daily, to 2024-08) and UMD (monthly)."""
    fr = result.factor_returns.loc["2015":]
    i0 = result.dates.get_loc(fr.index[0])
    sigma = np.sqrt(np.array([np.diag(result.covariance.adjusted[i]) for i in range(i0 - 1, len(result.dates) - 1)]))
    z = fr.to_numpy() / sigma
    n = np.isfinite(z).sum(axis=0)
    bias = pd.DataFrame({"bias": bias_statistic(fr.to_numpy(), sigma), "n": n,
                         "half_band": 3 * np.sqrt(2 / np.maximum(n, 1))}, index=fr.columns)
    cap = inputs.market_cap.shift(1)
    cw = (inputs.returns * cap).sum(axis=1, min_count=1) / cap.where(inputs.returns.notna()).sum(axis=1)
    ff = pd.read_csv(SHARED / "famafrench" / "ff5_daily.csv", parse_dates=["date"]).set_index("date")
    daily = result.factor_returns.loc["2014":"2024-08"]

    def corr(a: pd.Series, b: pd.Series) -> tuple[float, int]:
        both = pd.concat([a, b], axis=1, sort=True).dropna()
        return float(both.iloc[:, 0].corr(both.iloc[:, 1])), len(both)

    mom = pd.read_csv(SHARED / "famafrench" / "ff5_mom_monthly.csv", parse_dates=["date"]).set_index("date")["mom"]
    monthly = (1 + result.factor_returns["MOMENTUM"].loc["2014":]).resample("ME").prod(min_count=15) - 1
    mom.index = mom.index.to_period("M").to_timestamp("M")
    return {"bias": bias, "market_vs_cap_weighted": corr(result.factor_returns["MARKET"].loc["2014":], cw),
            "size_vs_smb": corr(daily["SIZE"], ff["smb"]), "value_vs_hml": corr(daily["VALUE"], ff["hml"]),
            "momentum_vs_umd_monthly": corr(monthly, mom)}


@pytest.fixture(scope="module")
def quoted(fitted):
    inputs, result = fitted
    out = real_data_figures(inputs, result)
    print("\n" + out["bias"].round(3).to_string())
    for key in ("market_vs_cap_weighted", "size_vs_smb", "value_vs_hml", "momentum_vs_umd_monthly"):
        print(f"{key}: corr {out[key][0]:.3f} over {out[key][1]} periods")
    return out


def test_bias_statistic_of_every_estimated_factor_is_within_three_standard_errors(quoted):
    bias = quoted["bias"]
    judged = bias[bias["n"] >= 250]
    assert len(judged) >= 19
    outside = judged[(judged["bias"] - 1).abs() > judged["half_band"]]
    assert outside.empty, outside


def test_factors_against_the_index_and_fama_french(quoted):
    assert quoted["market_vs_cap_weighted"][0] > 0.95
    assert quoted["size_vs_smb"][0] < -0.2      # big-minus-small inside the S&P 500 vs small-minus-big
    assert quoted["value_vs_hml"][0] > 0.3
    assert quoted["momentum_vs_umd_monthly"][0] > 0.3 and quoted["momentum_vs_umd_monthly"][1] > 100
