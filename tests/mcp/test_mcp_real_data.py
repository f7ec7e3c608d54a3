"""The MCP tools on the real S&P 500 store (the session's ``real_store``), through the SDK's client
connected in-process: real tickers, a typo a person makes, a real position's hedge and a small book."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client

from riskstrata.api.state import AppState
from riskstrata.data.store import Store
from riskstrata.mcp.server import build_server
from riskstrata.services import cascade
from tests.loops import run_async

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def answers(real_store: Store) -> dict[str, Any]:
    calls = {"aapl": ("get_metrics", {"ticker": "AAPL"}),
             "typo": ("get_metrics", {"ticker": "APPL"}),
             "nvda_hedge": ("hedge_position", {"ticker": "NVDA", "dollars": 100_000, "level": "L3"}),
             "book": ("analyze_portfolio", {"holdings": [{"ticker": "AAPL", "weight": 0.4},
                                                         {"ticker": "JPM", "weight": 0.3},
                                                         {"ticker": "XOM", "weight": 0.3}]}),
             "search": ("search_tickers", {"query": "JPM"})}

    async def run() -> dict[str, Any]:
        async with Client(build_server(AppState(real_store))) as client:
            return {k: await client.call_tool(tool, args) for k, (tool, args) in calls.items()}

    return run_async(run)


def body(result) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    return json.loads(result.content[0].text)


def test_real_tickers_answer_like_the_services(answers, real_store):
    m = cascade.metrics(real_store, "AAPL")
    got = body(answers["aapl"])
    assert {k: got[k] for k in m} == m and got["data_date"] == m["date"]
    assert body(answers["search"])["exact"]
    typo = answers["typo"]
    assert typo.is_error and "unknown ticker 'APPL'" in typo.content[0].text
    assert "AAPL" in typo.content[0].text.split("did you mean:")[1]


def test_a_real_position_and_book(answers, real_store):
    m = cascade.metrics(real_store, "NVDA")
    trades = {t["etf"]: t for t in body(answers["nvda_hedge"])["trades"]}
    legs = {m["market_etf"]: m["l3_mkt_hr"], m["sector_etf"]: m["l3_sec_hr"], m["subsector_etf"]: m["l3_sub_hr"]}
    for etf, hr in legs.items():
        assert trades[etf]["notional_usd"] == pytest.approx(abs(hr) * 100_000, rel=1e-12)
    book = body(answers["book"])
    assert book["analyzed"] == 3 and 0 < book["risk_index"] < 300
    assert sum(book["decomposition"].values()) == pytest.approx(1.0, abs=1e-10)
