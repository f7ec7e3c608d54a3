"""Real data: US21 on the S&P 500 (prices, GICS, fundamentals snapshots, 1999–2021 volume), 2014–2026.

Skipped where ../shared/data is absent (its terms allow testing, not redistribution).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.fundamentals import check_fundamentals_file
from riskstrata.factors.model import FactorInputs, fit_factor_model
from riskstrata.factors.spec import load_spec
from riskstrata.factors.validation import bias_statistic
from riskstrata.services.factors import point_in_time_panels

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = pytest.mark.realdata
if not (SHARED / "fundamentals" / "snapshots.parquet").exists():
    pytest.skip(f"real market data not present at {SHARED}", allow_module_level=True)

@pytest.fixture(scope="module")
def snapshots():
    """The reference snapshots through the ingest checks (BRK-B's caps repaired, …), and the report."""
    return check_fundamentals_file(SHARED / "fundamentals" / "snapshots.parquet")


@pytest.fixture(scope="module")
def fitted(snapshots):
    gics = pd.read_csv(SHARED / "reference" / "gics_current.csv")
    tickers = gics["ticker"].tolist()
    # Adjusted closes from before the first snapshot (2012-12-27): caps roll from its close.
    px = pd.read_parquet(SHARED / "prices" / "core.parquet", filters=[("date", ">=", pd.Timestamp("2012-12-01"))])
    adj = px[px["ticker"].isin(tickers)].pivot(index="date", columns="ticker", values="adj_close")
    wide = adj.loc["2013-06-01":]
    returns = wide.pct_change(fill_method=None).iloc[1:]
    dates, names = returns.index, returns.columns
    # No debt in these snapshots: LEVERAGE is not estimated, and the build says why.
    pit = point_in_time_panels(snapshots[0], adj, dates, list(names))
    issuers = pd.read_parquet(SHARED / "sec" / "company_tickers.parquet").set_index("ticker")["cik"]
    ohlcv = pd.read_parquet(SHARED / "prices" / "ohlcv_2021.parquet", columns=["date", "ticker", "volume"],
                            filters=[("date", ">=", pd.Timestamp("2013-06-01"))])
    volume = ohlcv.pivot(index="date", columns="ticker", values="volume").reindex(index=dates, columns=names)
    inputs = FactorInputs(returns, pit.market_cap, gics.set_index("ticker")["gics_sector"], pit.fundamentals, volume,
                          pit.shares, pit.price, issuers.reindex(names))
    result = fit_factor_model(inputs, load_spec("US21"))
    return inputs, result


def test_leverage_is_dropped_with_a_note(fitted):
    _, result = fitted
    assert any(n.startswith("LEVERAGE: not estimated") and "debt field" in n for n in result.notes)


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


# ---------------------------------------------------------------------- honest inputs (issue 9 §1–2)


def _snapshot_days(snaps: pd.DataFrame, dates: pd.DatetimeIndex) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """(snapshot date, the first model date on or after it) for every snapshot inside the model."""
    out = []
    for d in sorted(snaps["available_date"].unique()):
        i = dates.searchsorted(d)
        if i < len(dates) and (dates[i] - d).days <= 4:
            out.append((pd.Timestamp(d), dates[i]))
    return out


def _rel_err(cap: pd.Series, snap: pd.DataFrame) -> pd.Series:
    return (cap / snap["market_cap"] - 1).abs().dropna()


def honest_input_figures(snaps: pd.DataFrame, inputs: FactorInputs, result) -> dict:
    """The figures of issue 9 §1 on the real data: per snapshot date the median |cap / snapshot
    cap − 1|, the worst of them; AAPL's and MSFT's lowest SIZE in the universe; per snapshot date
    VALUE's Spearman correlation with the snapshot's own B/P (fresh, non-imputed names)."""
    dates, names = inputs.returns.index, inputs.returns.columns
    k_size, k_value = result.factors.index("SIZE"), result.factors.index("VALUE")
    cap_err, cap_err_before, rank_corr = {}, {}, {}
    previous = None
    for d, day in _snapshot_days(snaps, dates):
        snap = snaps[snaps["available_date"] == d].set_index("ticker").reindex(names)
        i = dates.get_loc(day)
        if day == d:  # the snapshot's own trading day: its cap, as the vendor reported it
            err = _rel_err(inputs.market_cap.loc[day], snap)
            if len(err) >= 50:
                cap_err[d] = float(err.median())
        if previous is not None and (d - previous).days <= 60 and i > 0 and dates[i - 1] >= previous:
            # The day before: the previous snapshot's cap rolled by the adjusted-close relative.
            err = _rel_err(inputs.market_cap.iloc[i - 1], snap)
            if len(err) >= 50:
                cap_err_before[d] = float(err.median())
        previous = d
        bp = (1 / snap["price_to_book"]).fillna(snap["book_value_per_share"] / snap["price"])
        x = pd.Series(result.exposures[i, :, k_value], index=names)
        fresh = result.universe[i] & ~result.imputed[i, :, k_value]
        both = pd.concat([x[fresh], bp[fresh]], axis=1).dropna()
        if len(both) >= 50:
            rank_corr[d] = float(both.iloc[:, 0].corr(both.iloc[:, 1], method="spearman"))
    size_min = {}
    for t in ("AAPL", "MSFT"):
        j = names.get_loc(t)
        size_min[t] = float(np.nanmin(np.where(result.universe[:, j], result.exposures[:, j, k_size], np.nan)))
    return {"cap_err": pd.Series(cap_err), "cap_err_before": pd.Series(cap_err_before),
            "value_rank_corr": pd.Series(rank_corr), "size_min": size_min}


@pytest.fixture(scope="module")
def figures(snapshots, fitted):
    inputs, result = fitted
    out = honest_input_figures(snapshots[0], inputs, result)
    print(f"\nsnapshot trading days: {len(out['cap_err'])}; median |cap/snapshot cap − 1| worst {out['cap_err'].max():.2e}")
    before = out["cap_err_before"]
    print(f"the day before a snapshot (previous one ≤ 60 days old, rolled): median |cap/snapshot cap − 1| on "
          f"{len(before)} dates: worst {before.max():.4f} ({before.idxmax().date()}), median {before.median():.4f}")
    print(f"SIZE minimum in the universe: {out['size_min']}")
    rc = out["value_rank_corr"]
    print(f"VALUE vs snapshot B/P Spearman on {len(rc)} snapshot dates: min {rc.min():.4f} ({rc.idxmin().date()}), "
          f"median {rc.median():.4f}")
    return out


def test_caps_equal_the_snapshot_caps_on_snapshot_dates(figures):
    err = figures["cap_err"]
    assert len(err) > 60  # snapshots dated on a trading day
    assert (err < 0.01).all(), err[err >= 0.01]
    # Rolled forward from the previous snapshot, the cap lands on the next one: the adjusted-close
    # relative carries the price (a look-ahead cap from re-based adjusted closes would not).
    before = figures["cap_err_before"]
    assert len(before) > 60
    # (Between snapshots the vendor's share counts move too: the median name is off by ~1 %.)
    assert before.median() < 0.02 and (before < 0.06).all(), before[before >= 0.06]


def test_apple_and_microsoft_are_large_on_every_date_in_the_universe(figures):
    assert figures["size_min"]["AAPL"] > 1 and figures["size_min"]["MSFT"] > 1, figures["size_min"]


def test_value_ranks_follow_the_snapshots_own_book_to_price(figures):
    rc = figures["value_rank_corr"]
    assert len(rc) > 100
    assert (rc >= 0.95).all(), rc[rc < 0.95]


def test_share_classes_count_once_in_the_regression(fitted):
    """Alphabet, Fox and News Corp: on every date at most one class is in the estimation universe
    (it carries the issuer's whole cap, so the √cap weight and the cap-weighted industry constraint
    see one issuer), and when a class is eligible one is in."""
    inputs, result = fitted
    names = inputs.returns.columns
    cap = inputs.market_cap.to_numpy()
    for pair in (("GOOG", "GOOGL"), ("FOX", "FOXA"), ("NWS", "NWSA")):
        cols = [names.get_loc(t) for t in pair]
        inside = result.universe[:, cols]
        assert not inside.all(axis=1).any(), pair
        assert inside.any(axis=1).sum() > 250, pair  # Fox Corp since 2019, in the snapshots from 2024-10
        # The class inside weighs √(issuer cap): the issuer's cap as the vendor reports it on a class.
        t = np.flatnonzero(inside.any(axis=1))
        weight = np.sqrt(np.where(inside[t], cap[t][:, cols], 0.0)).sum(axis=1)
        issuer_cap = np.nanmax(cap[t][:, cols], axis=1)
        np.testing.assert_allclose(weight**2 / issuer_cap, 1.0, atol=0.2)


def test_ingest_repairs_berkshires_caps_and_drops_implausible_yields(snapshots):
    clean, report = snapshots
    brk = clean[(clean["ticker"] == "BRK-B") & clean["available_date"].between("2013-01-01", "2017-12-31")]
    assert brk["market_cap"].dropna().between(1e11, 1e12).all()  # was ≈1.8e8: 1,000× too small
    assert clean["dividend_yield"].max() <= 0.25  # 0.97 (TYC 2013) no longer passes
    repaired = report.issues[report.issues["reason"] == "market_cap_units"]
    assert "BRK-B" in set(repaired["ticker"]) and (repaired["action"] == "repaired").all()


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


def test_growth_gap_is_declared_where_no_year_apart_snapshots_exist(fitted):
    """GROWTH needs two snapshots a year apart. The last before the gap is 2018-02-08: from a
    year later both ends would be that one snapshot (growth was 0 for ~355 names and counted as
    covered); now growth is missing there, coverage is 0 and the note starts 2019-02, a month
    before the other fundamental styles' (their snapshot goes stale after 400 days), and runs
    until a year after the snapshots resume (2024-10-10). Likewise after the last snapshot of
    2025-02 until the daily ones of 2026-05-15."""
    _, result = fitted
    cov, thr = result.coverage["GROWTH"], result.spec.min_coverage
    notes = [n for n in result.notes if n.startswith("GROWTH: not estimated")]
    for first, last in (("2019-02-11", "2025-10-10"), ("2026-02-04", "2026-05-15")):
        assert any(n.startswith(f"GROWTH: not estimated {first} … {last} ") and "estimation universe's cap" in n
                   for n in notes), notes
        assert (cov.loc[first:last] < thr).all() and (cov.loc[first:last] == 0).mean() > 0.99
    assert cov.loc["2019-01":"2019-02-08"].min() > 0.9 and cov.loc["2026-01":"2026-02-03"].min() > 0.9
    assert not any("regression left it out" in n for n in notes)  # no date estimated on zeros only
    assert result.factor_returns["GROWTH"].loc["2019-02-11":"2025-10-10"].isna().all()


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


def test_the_issues_2014_example_nvidia_keeps_its_traded_price_and_size(fitted):
    """2014-06-02: NVDA traded near $19, not the $0.5 of today's re-based adjusted close; it is in
    the universe (over the $1 floor) with its cap of the day (≈ $10.5 bn) and a mid-cap SIZE (about
    −2: the cap-weighted mean is a ~$150 bn company), not −4.89; AAPL is large, not −1.25."""
    inputs, result = fitted
    day = pd.Timestamp("2014-06-02")
    i, k = result.dates.get_loc(day), result.factors.index("SIZE")
    nvda, aapl = result.tickers.get_loc("NVDA"), result.tickers.get_loc("AAPL")
    assert 15 < inputs.price.loc[day, "NVDA"] < 25
    assert 8e9 < inputs.market_cap.loc[day, "NVDA"] < 14e9
    assert result.universe[i, nvda] and -3 < result.exposures[i, nvda, k] < 0
    assert result.exposures[i, aapl, k] > 1
