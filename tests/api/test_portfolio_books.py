"""Issue 11 §1 over the wire: one set of weights per risk-index response, overflow is a 422,
hedges sized on the matched dollars, long/short books in dollars."""

from __future__ import annotations

import pytest

from riskstrata.services import cascade
from riskstrata.services.portfolio import hedge_portfolio

UNKNOWN = "ZZZZ"


@pytest.fixture(scope="module")
def pair(wire_store) -> tuple[str, str]:
    snap = cascade.stored_snapshot(wire_store)
    stocks = [t for t in snap.index if t not in ("SPY", "GOOGL", "TWIN") and not str(t).startswith("X")
              and snap.at[t, "l3_mkt_hr"] == snap.at[t, "l3_mkt_hr"]]
    return stocks[0], stocks[1]


def test_risk_index_renormalises_after_an_unknown_ticker(http, wire_store, pair) -> None:
    """0.4 / 0.4 / 0.2 with the 0.2 unknown: every block of the response sums to 1 with the same weights."""
    a, b = pair
    body = http.post("/portfolio/risk-index", json={"positions": [
        {"ticker": a, "weight": 0.4}, {"ticker": b, "weight": 0.4}, {"ticker": UNKNOWN, "weight": 0.2}]}).json()
    clean = http.post("/portfolio/risk-index", json={"positions": [
        {"ticker": a, "weight": 0.5}, {"ticker": b, "weight": 0.5}]}).json()
    pri = body["portfolio_risk_index"]
    vd = pri["variance_decomposition"]
    assert vd["market"] + vd["sector"] + vd["subsector"] + vd["residual"] == pytest.approx(1.0, abs=1e-9)
    assert vd["systematic"] == pytest.approx(vd["market"] + vd["sector"] + vd["subsector"], abs=1e-12)
    assert {t: r["weight"] for t, r in body["per_ticker"].items()} == pytest.approx({a: 0.5, b: 0.5})
    assert sum(body["risk_index"]["decomposition"].values()) == pytest.approx(1.0, abs=1e-9)
    # the same as the portfolio without the unknown line, block by block
    assert vd == pytest.approx(clean["portfolio_risk_index"]["variance_decomposition"], rel=1e-12)
    assert pri["portfolio_volatility_23d"] == pytest.approx(clean["portfolio_risk_index"]["portfolio_volatility_23d"],
                                                            rel=1e-12)
    assert body["risk_index"]["value"] == pytest.approx(clean["risk_index"]["value"], rel=1e-12)
    assert body["weighting"]["dropped_weight"] == pytest.approx(0.2)
    assert any("2 matched holdings and sum to 1" in n for n in body["risk_index"]["notes"])
    assert "diversifies" in body["risk_index"]["decomposition_note"]


@pytest.mark.parametrize("weights", [[1e308, 1e308], [1e308, 1.0], [1.7e308, 1.7e308]])
def test_risk_index_overflow_is_a_422(http, pair, weights) -> None:
    r = http.post("/portfolio/risk-index", json={"positions": [
        {"ticker": t, "weight": w} for t, w in zip(pair, weights)]})
    assert r.status_code == 422, r.text
    message = r.json()["message"]  # from the request schema (≤ 1e15) or, past it, from the sum's check
    assert r.json()["error"] and ("1e+15" in message or "1000000000000000" in message or "largest float" in message)


def test_portfolio_routes_answer_overflow_with_422(http, pair) -> None:
    a, b = pair
    for holdings in ([{"ticker": a, "weight": 1e308}, {"ticker": b, "weight": 1e308}],
                     [{"ticker": a, "shares": 1e14}]):
        for path in ("/portfolio/analyze", "/portfolio/hedge"):
            r = http.post(path, json={"holdings": holdings})
            assert r.status_code == 422, (path, r.text)
            assert set(r.json()) >= {"error", "message"}


def test_hedge_route_sizes_on_the_matched_dollars_of_a_long_short_book(http, wire_store, pair) -> None:
    a, b = pair
    holdings = [{"ticker": a, "weight": 0.5}, {"ticker": b, "weight": -0.4999999}, {"ticker": "CASH", "weight": 0.1}]
    body = http.post("/portfolio/hedge", json={"holdings": holdings, "level": "L1", "value": 1_000_000}).json()
    ours = hedge_portfolio(wire_store, {a: 0.5, b: -0.4999999, "CASH": 0.1}, "L1", 1_000_000)
    assert body["hedged_value"] == pytest.approx(ours.hedged_value) == pytest.approx(999_999.9)
    assert body["book"]["net"] == pytest.approx(0.1, abs=1e-6)
    beta = {t: cascade.metrics(wire_store, t)["l1_mkt_beta"] for t in (a, b)}
    beta_dollars = 500_000 * beta[a] - 499_999.9 * beta[b]
    assert body["book"]["beta_dollars"] == pytest.approx(beta_dollars, rel=1e-9)
    # at L1 the trade is exactly the beta-dollars, short (or long) SPY
    spy = {t["etf"]: (-1 if t["side"] == "short" else 1) * t["notional_usd"] for t in body["trades"]}["SPY"]
    assert spy == pytest.approx(-beta_dollars, rel=1e-9)
    assert "cash and excluded lines ($100,000) are not hedged" in body["hedge_basis"]
    analysed = http.post("/portfolio/analyze", json={"holdings": holdings, "value": 1_000_000}).json()
    assert analysed["risk_index"] == pytest.approx(ours.before.risk_index, rel=1e-12) and analysed["risk_index"] < 1e4
    assert analysed["book"]["hedge_dollars"]["L1"]["SPY"] == pytest.approx(-beta_dollars, rel=1e-9)
    assert "diversifies" in analysed["share_note"]
