"""The portfolio layer over a built store: matching, Risk Index, hedges, scaling, a fund over time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.services.cascade import build_cascade, metrics
from riskstrata.services.demo import load_synthetic_into_store
from riskstrata.services.portfolio import analyze_portfolio, fund_over_time, hedge_portfolio, scale_portfolio
from tests.services.test_cli import run


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    market = synthetic_market(n_stocks=60, n_days=252 * 3, seed=31, listing_fraction=0.15, delisting_fraction=0.1)
    store = Store(tmp_path_factory.mktemp("portfolio") / "store")
    load_synthetic_into_store(store, market)
    build_cascade(store)
    return store, market


_STORED_METRICS: dict[tuple[Path, str], dict] = {}


def stored_metrics(store: Store, ticker: str) -> dict:
    """``metrics(store, ticker)``, the stored row the tests check the portfolio layer against,
    read once per store and name (~0.2 s a read): no test here rebuilds the cascade, so the row
    cannot change between tests (a copy each time: a caller may not change the next one's)."""
    key = (store.root, ticker)
    if key not in _STORED_METRICS:
        _STORED_METRICS[key] = metrics(store, ticker)
    return dict(_STORED_METRICS[key])


def complete_names(market, k=4):
    """Stocks listed for the whole sample (so their window is every day)."""
    full = market.returns.notna().mean() > 0.995
    return list(market.returns.columns[full][:k])


def test_all_in_spy_has_a_risk_index_of_exactly_100(built):
    store, _ = built
    a = analyze_portfolio(store, {"SPY": 1.0})
    assert a.risk.risk_index == pytest.approx(100.0, abs=1e-9)
    assert a.match.summary().startswith("1/1")


def test_a_single_stock_scores_its_model_vol_over_spys(built):
    store, market = built
    ticker = complete_names(market, 1)[0]
    a = analyze_portfolio(store, {ticker: 1.0})
    m, spy = stored_metrics(store, ticker), stored_metrics(store, "SPY")
    assert a.risk.risk_index == pytest.approx(100 * m["vol_252d_ann"] / spy["vol_252d_ann"], rel=1e-9)


def test_x_of_y_holdings_analyzed_with_every_exclusion_explained(built, tmp_path):
    store, market = built
    names = complete_names(market, 2)
    delisted = market.truth.index[market.truth["delist_date"].notna()][0]
    late = market.truth["list_date"].sort_values().index[-1]
    as_of = market.truth.loc[late, "list_date"] - pd.Timedelta(days=30)
    assert market.truth.loc[delisted, "delist_date"] < as_of  # the seed gives both cases on one date
    csv = tmp_path / "h.csv"
    pd.DataFrame({"Symbol": [*names, "CASH", "EUR", "ZZZZZ", late, delisted],
                  "Market Value": [10_000, 20_000, 5_000, 3_000, 1_000, 2_000, 4_000]}).to_csv(csv, index=False)
    a = analyze_portfolio(store, csv, as_of)
    reasons = dict(zip(a.match.excluded["ticker"], a.match.excluded["reason"]))
    assert reasons["CASH"] == "cash" and reasons["EUR"] == "currency" and reasons["ZZZZZ"] == "unknown symbol"
    assert a.match.total_lines == 7 and a.match.analyzed == len(a.match.matched)
    assert a.match.summary().startswith(f"{a.match.analyzed}/7 holdings analyzed")
    assert a.inputs.weights.sum() == pytest.approx(1.0)
    assert reasons[late] == "no history yet" and reasons[delisted] == "delisted"
    assert a.match.analyzed == 2


def test_euler_contributions_sum_to_the_total(built):
    store, market = built
    names = complete_names(market, 4)
    a = analyze_portfolio(store, {names[0]: 0.4, names[1]: 0.3, names[2]: 0.2, "XLK": 0.1})
    assert a.risk.by_position["total"].sum() == pytest.approx(a.risk.variance, rel=1e-10)
    assert a.risk.by_role.sum() == pytest.approx(1.0, abs=1e-10)


def test_hedges_flatten_market_at_l1_and_every_etf_at_l3(built):
    store, market = built
    holdings = dict(zip(complete_names(market, 3), (0.5, 0.3, 0.2)))
    l3 = hedge_portfolio(store, holdings, "L3", 2_000_000)
    assert np.abs(l3.after.exposures).max() < 1e-10
    assert l3.after.by_role["residual"] == pytest.approx(1.0)
    assert l3.description.startswith(("short $", "long $"))
    l1 = hedge_portfolio(store, holdings, "L1", 2_000_000)
    assert l1.market_beta_after == pytest.approx(0.0, abs=1e-10)
    assert l1.after.risk_index < l1.before.risk_index


def test_scaling_by_half_halves_the_chosen_exposure(built):
    store, market = built
    holdings = dict(zip(complete_names(market, 3), (0.5, 0.3, 0.2)))
    s = scale_portfolio(store, holdings, "market", 0.5)
    assert s.after_exposure == pytest.approx(0.5 * s.before_exposure, rel=1e-10)
    sector = analyze_portfolio(store, holdings).risk.exposures.drop("SPY")
    etf = sector.abs().idxmax()
    s = scale_portfolio(store, holdings, etf, 0.5)
    assert s.after_exposure == pytest.approx(0.5 * s.before_exposure, rel=1e-10)


def test_a_fund_over_time_bridges_exactly(built):
    store, market = built
    names = complete_names(market, 4)
    dates = market.returns.index
    dated = {dates[300]: {names[0]: 0.5, names[1]: 0.5}, dates[500]: {names[2]: 0.6, names[3]: 0.4}}
    f = fund_over_time(store, dated)
    a = f.attribution
    assert a.market + a.sector + a.subsector + a.residual == pytest.approx(a.gross, abs=1e-12)
    assert list(f.risk.index) == [dates[300], dates[500]]


def test_cli_portfolio_analyze_and_hedge(built, tmp_path):
    store, market = built
    csv = tmp_path / "h.csv"
    pd.DataFrame({"ticker": complete_names(market, 2) + ["CASH"], "shares": [100, 50, 1000]}).to_csv(csv, index=False)
    proc = run("portfolio", "analyze", str(csv), "--json", store=store.root)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["holdings_analyzed"].startswith("2/3") and data["risk_index"] > 0
    assert abs(sum(data["decomposition"].values()) - 1) < 1e-9
    proc = run("portfolio", "hedge", str(csv), "--level", "L3", "--value", "1000000", store=store.root)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    # Shares are dollars already: the hedge is sized on them, says so, and leaves the cash alone.
    assert "L3 hedge of $" in text and "sized on the matched positions' gross $" in text
    assert "from shares × close" in text and "cash and excluded lines ($1,000) are not hedged" in text
    assert "the given value $1,000,000 is not used" in text


# ----------------------------------------------------------------------------- issue 11: money a desk trades on


def dollar_hedge(store, dollars: dict[str, float], level: str = "L3") -> dict[str, float]:
    """Σ_i value_i·HR_i per ETF, by hand from each name's stored metrics row (the explicit dollar computation)."""
    legs = {"L1": [("l1_mkt_hr", "market")], "L3": [("l3_mkt_hr", "market"), ("l3_sec_hr", "sector_etf"),
                                                   ("l3_sub_hr", "subsector_etf")]}[level]
    out: dict[str, float] = {}
    for t, v in dollars.items():
        m = stored_metrics(store, t)
        for hr, etf in legs:
            e = "SPY" if etf == "market" else m[etf]
            if e is not None and m[hr] is not None:
                out[e] = out.get(e, 0.0) + v * m[hr]
    return {k: x for k, x in out.items() if abs(x) > 1e-9}


def trades_as_dollars(trades: pd.DataFrame) -> dict[str, float]:
    return {r.etf: (-1 if r.side == "short" else 1) * r.notional_usd for r in trades.itertuples()}


def test_a_ten_percent_cash_book_hedges_ninety_percent_of_the_value(built):
    store, market = built
    a, b = complete_names(market, 2)
    with_cash = hedge_portfolio(store, {a: 0.5, b: 0.4, "CASH": 0.1}, "L1", 1_000_000)
    assert with_cash.hedged_value == pytest.approx(900_000, rel=1e-12)
    assert "sized on the matched positions' gross $900,000" in with_cash.hedge_basis
    assert "cash and excluded lines ($100,000) are not hedged" in with_cash.hedge_basis
    want = dollar_hedge(store, {a: 500_000, b: 400_000}, "L1")
    assert trades_as_dollars(with_cash.trades) == pytest.approx(want, rel=1e-12)
    # The same positions without the cash line and a $900,000 book: the same trade.
    no_cash = hedge_portfolio(store, {a: 5 / 9, b: 4 / 9}, "L1", 900_000)
    assert trades_as_dollars(no_cash.trades) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("short", [-0.4999999, -0.5])
def test_a_near_net_zero_long_short_book_is_finite_and_in_dollars(built, short):
    store, market = built
    a, b = complete_names(market, 2)
    value = 1_000_000
    an = analyze_portfolio(store, {a: 0.5, b: short}, value=value)
    book = an.book
    assert book.long == pytest.approx(500_000) and book.short == pytest.approx(short * value)
    assert book.gross == pytest.approx(500_000 - short * value) and book.net == pytest.approx(500_000 + short * value)
    # Weights are relative to gross: Σ|w| = 1, so nothing is divided by a net near zero.
    assert an.inputs.weights.abs().sum() == pytest.approx(1.0)
    # σ_p ≤ Σ|w_i|·σ_i ≤ max σ_i with Σ|w| = 1; a single name's Risk Index is 100·vol_252d_ann / SPY's.
    vols = [stored_metrics(store, t)["vol_252d_ann"] for t in (a, b)]
    bound = 100 * max(vols) / stored_metrics(store, "SPY")["vol_252d_ann"]
    assert np.isfinite(an.risk.risk_index) and 0 < an.risk.risk_index <= bound * (1 + 1e-9)
    assert np.isfinite(an.risk.by_role.to_numpy()).all()
    beta = {t: stored_metrics(store, t)["l1_mkt_beta"] for t in (a, b)}
    assert book.beta_dollars == pytest.approx(500_000 * beta[a] + short * value * beta[b], rel=1e-9)
    h = hedge_portfolio(store, {a: 0.5, b: short}, "L3", value)
    assert h.hedged_value == pytest.approx(book.gross)
    want = dollar_hedge(store, {a: 500_000, b: short * value}, "L3")
    got = trades_as_dollars(h.trades)
    assert got.keys() == want.keys() and all(abs(got[k] - want[k]) < 1e-6 for k in want), (got, want)
    assert max(abs(x) for x in got.values()) < 3 * value  # bounded by the gross times the hedge ratios
    assert "short $" in h.hedge_basis


def test_weights_of_1e308_are_an_overflow_not_nulls(built):
    from riskstrata.errors import ValueOverflow

    store, market = built
    a, b = complete_names(market, 2)
    for holdings in ({a: 1e308, b: 1e308}, {a: 1e308}, {a: {"shares": 1e14}}):
        with pytest.raises(ValueOverflow):
            analyze_portfolio(store, holdings)


def test_negative_euler_shares_are_explained(built, tmp_path):
    store, market = built
    a, b = complete_names(market, 2)
    an = analyze_portfolio(store, {a: 0.7, b: -0.3}, value=1_000_000)
    assert (an.risk.by_position["share"] < 0).any() or (an.risk.by_role < 0).any(), "the short should diversify"
    assert any("negative share of variance means the position (or layer) diversifies" in n for n in an.notes)
    from typer.testing import CliRunner

    from riskstrata.cli import app

    result = CliRunner().invoke(app, ["portfolio", "analyze", _csv(tmp_path, {a: 0.7, b: -0.3}), "--value", "1000000",
                                      "--store", str(store.root)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "diversifies" in text and "beta-dollars" in text and "gross $1,000,000" in text


def test_lookthrough_of_spy_and_a_direct_pick_shows_the_combined_weight(built, tmp_path):
    store, market = built
    name = complete_names(market, 1)[0]
    holdings_file = tmp_path / "etf_holdings.csv"
    pd.DataFrame({"date": ["2017-01-03"] * 3, "etf": ["SPY"] * 3, "holding": [name, "OTHER1", "OTHER2"],
                  "weight_pct": [5.0, 60.0, 35.0]}).to_csv(holdings_file, index=False)
    proc = run("ingest", "etf-holdings", str(holdings_file), store=store.root)
    assert proc.returncode == 0, proc.stderr
    from riskstrata.services.portfolio import lookthrough_portfolio

    r = lookthrough_portfolio(store, {"SPY": 0.5, name: 0.5}, benchmark="SPY")
    assert r.look.exposures.loc[name, "combined_weight"] == pytest.approx(0.5 + 0.5 * 0.05, abs=1e-12)
    assert 0 < r.active_share < 1
    proc = run("portfolio", "lookthrough", str(_csv(tmp_path, {"SPY": 0.5, name: 0.5})), "--json", store=store.root)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["exposures"][0]["combined_weight"] == pytest.approx(0.525)


def _csv(tmp_path, weights: dict) -> str:
    path = tmp_path / f"weights-{'-'.join(weights)}.csv"
    pd.DataFrame({"ticker": list(weights), "weight": list(weights.values())}).to_csv(path, index=False)
    return str(path)


@pytest.mark.slow  # make test-fast skips it
def test_bad_portfolio_requests_are_clear_errors(built, tmp_path):
    store, _ = built
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    for args in (("portfolio", "analyze", str(empty)),
                 ("portfolio", "analyze", _csv(tmp_path, {"NOPE1": 0.5, "NOPE2": 0.5})),
                 ("portfolio", "hedge", _csv(tmp_path, {"SPY": 1.0}), "--level", "L9"),
                 ("portfolio", "scale", _csv(tmp_path, {"SPY": 1.0}), "--reduce", "1.5")):
        proc = run(*args, store=store.root)
        assert proc.returncode != 0 and "error:" in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_13f_style_holdings_match_by_the_security_masters_cusip(built):
    store, market = built
    from riskstrata.data.master import SecurityMaster
    from riskstrata.portfolio.holdings import HOLDING_COLUMNS, Holdings

    name = complete_names(market, 1)[0]
    master = SecurityMaster.from_store(store)
    record = master.records[master.records["ticker"] == name].iloc[[0]].assign(cusip="037833100")
    master.upsert(record).to_store(store)
    lines = pd.DataFrame([{"line": 1, "ticker": None, "cusip": "037833100", "shares": np.nan, "market_value": 1e6,
                           "weight": np.nan, "currency": "USD", "kind": "security", "note": None}])[HOLDING_COLUMNS]
    a = analyze_portfolio(store, Holdings(lines, "13F", []))
    assert a.match.matched["ticker"].tolist() == [name]
