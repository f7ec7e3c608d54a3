"""riskstrata as an MCP server, driven the way an agent drives it: the SDK's own client talks to a
real ``riskstrata mcp`` process over stdio and to ``/mcp`` of a real ``riskstrata serve`` process
on a free loopback port, over one small synthetic store with both models built.

Each transport runs one conversation (every tool, the resources, the prompts, the errors) once
per module; the tests then check its answers against the services called in this process on
the same store, and that no holding reached a log or the store. The stdio conversation is
written, with the build's version stamps redacted, to ``docs/mcp_transcript.md`` (the README's
example).

This folder has no ``__init__.py`` on purpose: as a package it would be called ``mcp`` and hide the SDK.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import httpx2
import numpy as np
import pandas as pd
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from api.conftest import serve_cli  # tests/api's real-server helper (tests/ is on sys.path)
from riskstrata.api.auth import create_key
from riskstrata.data.ingest import ingest_prices
from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.services import cascade, factors, portfolio
from riskstrata.services.demo import load_synthetic_into_store
from tests.loops import run_async

pytestmark = pytest.mark.slow  # real servers per transport: make test-fast skips the module

TRANSCRIPT = Path(__file__).resolve().parents[2] / "docs" / "mcp_transcript.md"
TOOLS = {"get_metrics", "decompose", "get_lstar", "hedge_position", "compare", "analyze_portfolio",
         "hedge_portfolio", "scale_exposure", "factor_summary", "stock_exposures", "portfolio_factor_risk",
         "search_tickers"}
SECRET = "ZZPRIV"  # a holding that must never reach a log or the store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """40 synthetic stocks over two years with their ETFs: the cascade and US21 built (~3 s); then
    NEWCO, listed for the last 30 days and ingested after the build, so it has no model rows."""
    root = tmp_path_factory.mktemp("mcp")
    s = Store(root / "store")
    market = synthetic_market(n_stocks=40, n_days=252 * 2, seed=5, styles=True)
    load_synthetic_into_store(s, market)
    cascade.build_cascade(s)
    factors.build_factor_model(s, "US21")
    days = market.returns.index[-30:]
    pd.DataFrame({"date": days, "ticker": "NEWCO", "adj_close": 50.0 + 0.1 * np.arange(30)}).to_parquet(
        root / "newco.parquet", index=False)
    ingest_prices(s, [root / "newco.parquet"])
    return s


@pytest.fixture(scope="module")
def names(store: Store) -> list[str]:
    """Three stocks with all three L3 legs on the last date, and their sector ETF."""
    snap = cascade.stored_snapshot(store)
    full = snap[snap["l3_sub_hr"].notna() & (snap["sector_etf"] != snap["subsector_etf"])]
    stocks = [t for t in full.index if t not in set(snap["sector_etf"]) | set(snap["subsector_etf"]) | {"SPY"}]
    return sorted(stocks)[:3]


@pytest.fixture(scope="module")
def expected(store: Store, names: list[str]) -> dict[str, Any]:
    """The services' answers to the conversation's questions, computed once in this process."""
    book = pd.DataFrame(_holdings(names))
    return {"analyze": portfolio.analyze_portfolio(store, book),
            "hedge": portfolio.hedge_portfolio(store, book, "L3", 2_000_000),
            "scale": portfolio.scale_portfolio(store, book, "market", 0.5),
            "summary": factors.summary(store, "US21"),
            "exposures": factors.stock_exposures(store, names[0], None, "US21"),
            "factor_risk": factors.portfolio_factor_risk(store, pd.Series([0.5, 0.3, 0.15], index=names), None,
                                                         "US21")}


def _holdings(names: list[str]) -> list[dict[str, Any]]:
    return [{"ticker": names[0], "weight": 0.5}, {"ticker": names[1], "weight": 0.3},
            {"ticker": names[2], "weight": 0.15}, {"ticker": SECRET, "weight": 0.05}]


def _calls(names: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, tool, arguments): one call of every tool, then the errors an agent can cause."""
    a, b, c = names
    book = _holdings(names)
    weights = [{"ticker": h["ticker"], "weight": h["weight"]} for h in book[:3]]
    return [
        ("search", "search_tickers", {"query": a[:2]}),
        ("metrics", "get_metrics", {"ticker": a}),
        ("decompose", "decompose", {"ticker": a.lower()}),
        ("lstar", "get_lstar", {"ticker": a, "threshold": 0.05}),
        ("hedge_position", "hedge_position", {"ticker": a, "dollars": 250_000, "level": "L3"}),
        ("hedge_short", "hedge_position", {"ticker": b, "dollars": -100_000}),
        ("compare", "compare", {"tickers": [a, b, c, "NOPE1"]}),
        ("analyze", "analyze_portfolio", {"holdings": book}),
        ("hedge_portfolio", "hedge_portfolio", {"holdings": book, "value": 2_000_000, "level": "L3"}),
        ("scale", "scale_exposure", {"holdings": book, "exposure": "market", "reduce": 0.5}),
        ("factor_summary", "factor_summary", {"model": "US21"}),
        ("exposures", "stock_exposures", {"ticker": a, "model": "US21"}),
        ("factor_risk", "portfolio_factor_risk", {"holdings": weights, "model": "US21"}),
        # errors
        ("unknown_ticker", "get_metrics", {"ticker": a[:2] + "QQ"}),
        ("bad_holdings_type", "analyze_portfolio", {"holdings": "AAPL 50%, MSFT 50%"}),
        ("bad_holdings_field", "hedge_portfolio", {"holdings": [{"symbol": a, "weight": 1}], "value": 1e6,
                                                   "level": "L3"}),
        ("bad_holdings_value", "analyze_portfolio", {"holdings": [{"ticker": a, "weight": "half"}]}),
        ("no_holding_analysable", "analyze_portfolio", {"holdings": [{"ticker": SECRET, "weight": 1.0}]}),
        ("no_history", "get_lstar", {"ticker": "NEWCO"}),
        ("not_built", "factor_summary", {"model": "US_CORE"}),
        ("not_a_model", "factor_summary", {"model": "../../etc/passwd"}),
    ]


async def _converse(transport, names: list[str]) -> dict[str, Any]:
    """One session: list everything, call everything; answers keyed by label."""
    out: dict[str, Any] = {}
    async with Client(transport) as client:
        out["tools"] = (await client.list_tools()).tools
        out["resources"] = {str(r.uri): r for r in (await client.list_resources()).resources}
        out["methodology"] = (await client.read_resource("riskstrata://methodology")).contents[0].text
        out["models"] = json.loads((await client.read_resource("riskstrata://models")).contents[0].text)
        out["prompts"] = {p.name: p for p in (await client.list_prompts()).prompts}
        out["prompt_hedge"] = await client.get_prompt("hedge_position", {"ticker": names[0], "dollars": "250000"})
        out["prompt_portfolio"] = await client.get_prompt("explain_portfolio_risk", {"holdings": "AAA 60%, BBB 40%"})
        for label, tool, args in _calls(names):
            out[label] = await client.call_tool(tool, args)
    return out


@pytest.fixture(scope="module")
def stdio(store: Store, names: list[str], tmp_path_factory) -> dict[str, Any]:
    """The conversation with ``riskstrata mcp --store …`` over stdio; ``stderr`` is its log."""
    log = tmp_path_factory.mktemp("mcp_stdio") / "stderr.log"
    params = StdioServerParameters(command=sys.executable, args=["-m", "riskstrata.cli", "mcp", "--store",
                                                                 str(store.root)],
                                   env={k: v for k, v in os.environ.items() if k != "RISKSTRATA_DEBUG"})

    async def run() -> dict[str, Any]:
        with open(log, "w", encoding="utf-8") as errlog:
            return await _converse(stdio_client(params, errlog=errlog), names)

    answers = run_async(run)
    answers["log"] = log.read_text(encoding="utf-8")
    return answers


@pytest.fixture(scope="module")
def served(store: Store, tmp_path_factory):
    """``riskstrata serve`` over the store on a free port: (base URL of /api, a key, the log path)."""
    key = create_key(store, "mcp-tests")
    log = tmp_path_factory.mktemp("mcp_http") / "server.log"
    with serve_cli(store, log, "--rate-limit", "0") as url:
        yield url, key, log


@pytest.fixture(scope="module")
def http(served, names: list[str]) -> dict[str, Any]:
    """The same conversation with ``/mcp`` of the real server, with the key as a Bearer header."""
    url, key, log = served

    async def run() -> dict[str, Any]:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60.0,
                                      trust_env=False) as session:
            return await _converse(streamable_http_client(url.removesuffix("/api") + "/mcp", http_client=session),
                                   names)

    answers = run_async(run)
    answers["log"] = log.read_text(encoding="utf-8")
    return answers


def data(result) -> dict[str, Any]:
    """A successful tool result's JSON (the text block and the structured content agree)."""
    assert not result.is_error, result.content[0].text
    body = json.loads(result.content[0].text)
    assert body == result.structured_content
    return body


def error_text(result) -> str:
    assert result.is_error, result.content[0].text[:300]
    return result.content[0].text


@pytest.fixture(params=["stdio", "http"])
def answers(request) -> dict[str, Any]:
    return request.getfixturevalue(request.param)


# ----------------------------------------------------------------------------- the catalogue


def test_every_tool_resource_and_prompt_is_listed_with_units_and_signs(answers):
    tools = {t.name: t for t in answers["tools"]}
    assert set(tools) == TOOLS
    for t in tools.values():
        assert t.description and t.input_schema["type"] == "object" and t.annotations.read_only_hint
    assert "negative = " in tools["get_metrics"].description and "L*" in tools["get_metrics"].description
    assert "per $1" in tools["hedge_position"].description
    assert tools["hedge_position"].input_schema["required"] == ["ticker", "dollars"]
    assert set(answers["resources"]) == {"riskstrata://methodology", "riskstrata://models"}
    assert "replication identity" in answers["methodology"] and "Risk Index" in answers["methodology"]
    assert answers["models"]["cascade"]["built"]
    built = {m["model"]: m["built"] for m in answers["models"]["factor_models"]}
    assert built == {"US21": True, "US_CORE": False}
    assert set(answers["prompts"]) == {"hedge_position", "explain_portfolio_risk"}
    assert "hedge_position" in answers["prompt_hedge"].messages[0].content.text
    assert "AAA 60%" in answers["prompt_portfolio"].messages[0].content.text


# ----------------------------------------------------------------------------- numbers = the services'


def test_every_answer_carries_the_model_version_and_data_date(answers, store):
    a_version = store.current_version(cascade.MODEL)
    b_version = store.current_version(factors.model_names("US21")["factors"])
    end = store.model_meta(cascade.MODEL)["end"]
    for label, tool, _args in _calls(["X", "Y", "Z"]):
        if answers[label].is_error:
            continue
        body = data(answers[label])
        expected = b_version if tool in ("factor_summary", "stock_exposures", "portfolio_factor_risk") else a_version
        assert body["model_version"] == expected, label
        assert body["data_date"] == end, label


def test_single_name_tools_equal_the_services(answers, store, names):
    a = names[0]
    m = cascade.metrics(store, a)
    body = data(answers["metrics"])
    assert {k: body[k] for k in m} == m
    assert abs(body["l3_mkt_er"] + body["l3_sec_er"] + body["l3_sub_er"] + body["l3_res_er"] - 1) < 1e-9
    assert data(answers["decompose"])["bets"] == cascade.decompose(store, a)["bets"]
    lstar = data(answers["lstar"])
    h = cascade.lstar_history(store, a, 0.05)
    assert lstar["threshold"] == 0.05 and lstar["lstar_level"] == (int(h["lstar_level"].iloc[-1]) or None)
    assert sum(lstar["days_at_level_last_year"].values()) == min(252, len(h))
    compared = data(answers["compare"])
    assert [r["ticker"] for r in compared["rows"]] == names
    assert compared["rows"][1]["l3_sec_hr"] == cascade.metrics(store, names[1])["l3_sec_hr"]
    assert set(compared["errors"]) == {"NOPE1"} and "unknown ticker" in compared["errors"]["NOPE1"]
    found = data(answers["search"])
    assert a in [s["ticker"] for s in found["matches"]]


def test_a_position_hedge_is_the_names_hedge_ratios_times_the_dollars(answers, store, names):
    """Independent check: the L3 trades are the stock's own L3 hedge ratios × the position."""
    m = cascade.metrics(store, names[0])
    body = data(answers["hedge_position"])
    expected = {m["market_etf"]: m["l3_mkt_hr"], m["sector_etf"]: m["l3_sec_hr"], m["subsector_etf"]: m["l3_sub_hr"]}
    got = {t["etf"]: t for t in body["trades"]}
    assert set(got) == set(expected)
    for etf, hr in expected.items():
        assert got[etf]["hedge_ratio"] == pytest.approx(hr, abs=1e-12)
        assert got[etf]["notional_usd"] == pytest.approx(abs(hr) * 250_000, rel=1e-12)
        assert got[etf]["side"] == ("short" if hr < 0 else "long")
    assert abs(body["market_beta_after"]) < 1e-9
    short = data(answers["hedge_short"])  # a short position: its recommended level, the signs flipped
    mb = cascade.metrics(store, names[1])
    level = int(str(mb["recommended_hedge_level"]).lstrip("L"))
    assert short["level"] == f"L{level}"
    legs = {1: {mb["market_etf"]: mb["l1_mkt_hr"]},
            2: {mb["market_etf"]: mb["l2_mkt_hr"], mb["sector_etf"]: mb["l2_sec_hr"]},
            3: {mb["market_etf"]: mb["l3_mkt_hr"], mb["sector_etf"]: mb["l3_sec_hr"],
                mb["subsector_etf"]: mb["l3_sub_hr"]}}[level]
    for t in short["trades"]:
        assert t["notional_usd"] == pytest.approx(abs(legs[t["etf"]]) * 100_000, rel=1e-12)
        assert t["side"] == ("long" if legs[t["etf"]] < 0 else "short")


def test_portfolio_tools_equal_the_services(answers, expected):
    a = expected["analyze"]
    body = data(answers["analyze"])
    assert body["holdings_analyzed"] == a.match.summary() and body["analyzed"] == 3 and body["total"] == 4
    assert [e["ticker"] for e in body["excluded"]] == [SECRET]
    assert body["risk_index"] == pytest.approx(a.risk.risk_index, rel=1e-12)
    assert sum(body["decomposition"].values()) == pytest.approx(1.0, abs=1e-10)
    assert body["hedge_ratios"]["L3"] == pytest.approx(a.hedge_ratios["L3"][a.hedge_ratios["L3"] != 0].to_dict())
    h = expected["hedge"]
    hedged = data(answers["hedge_portfolio"])
    assert hedged["description"] == h.description
    assert hedged["risk_index_after"] == pytest.approx(h.after.risk_index, rel=1e-12)
    assert abs(hedged["market_beta_after"]) < 1e-9
    scaled = data(answers["scale"])
    assert scaled["exposure_after"] == pytest.approx(0.5 * scaled["exposure_before"], rel=1e-9)
    s = expected["scale"]
    assert scaled["trade"][0]["notional_usd"] == pytest.approx(float(s.trade["notional_usd"].iloc[0]), rel=1e-12)


def test_factor_tools_equal_the_services(answers, expected):
    table = expected["summary"]
    got = {r["factor"]: r for r in data(answers["factor_summary"])["factors"]}
    assert list(got) == list(table.index)
    assert got["SIZE"]["ann_vol"] == pytest.approx(float(table.loc["SIZE", "ann_vol"]), rel=1e-12)
    assert data(answers["exposures"])["exposures"] == pytest.approx(expected["exposures"].to_dict(), rel=1e-12)
    risk = expected["factor_risk"]
    body = data(answers["factor_risk"])
    assert body["vol_ann"] == pytest.approx(risk["vol_ann"], rel=1e-12)
    assert sum(body["shares"].values()) == pytest.approx(1.0, abs=1e-10)


# ----------------------------------------------------------------------------- errors, auth, privacy


def test_errors_are_tool_errors_with_the_clis_messages(answers, names):
    unknown = error_text(answers["unknown_ticker"])
    assert f"unknown ticker '{names[0][:2]}QQ'" in unknown and "did you mean" in unknown
    for label in ("bad_holdings_type", "bad_holdings_field", "bad_holdings_value"):
        assert "holdings" in error_text(answers[label]), label
    assert "none of the holdings can be analysed" in error_text(answers["no_holding_analysable"])
    assert "NEWCO has no model rows" in error_text(answers["no_history"])
    assert "not built" in error_text(answers["not_built"]) and "riskstrata factors build" in error_text(answers["not_built"])
    assert "unknown model" in error_text(answers["not_a_model"])
    assert "Traceback" not in answers["log"]


def test_holdings_never_reach_a_log_or_the_store(stdio, http, store):
    assert SECRET not in stdio["log"] and SECRET not in http["log"]
    for path in store.root.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_mcp_over_http_needs_a_key(served, http):
    url, key, _log = served
    mcp_url = url.removesuffix("/api") + "/mcp"
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"Accept": "application/json, text/event-stream"}
    with httpx.Client(timeout=30.0, trust_env=False) as plain:
        for sent in ({}, {"Authorization": "Bearer rs_00000000_notarealkeynotarealkeynotarealkey"},
                     {"X-API-Key": key + "x"}):
            r = plain.post(mcp_url, json=ping, headers={**headers, **sent})
            assert r.status_code == 401, (sent, r.text)
            assert r.json()["error"] == "Unauthorized"
        assert plain.post(mcp_url, json=ping, headers={**headers, "X-API-Key": key}).status_code == 200
        # stateless: no event stream to open (a GET would hold one, idle, for ever)
        assert plain.get(mcp_url, headers={**headers, "X-API-Key": key}).status_code == 405
    assert "POST /mcp 401" in http["log"] + _log.read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- the README's transcript


def test_transcript_of_a_conversation(stdio, store, names):
    """docs/mcp_transcript.md: an agent's calls and the server's answers, from this run."""
    versions = {store.current_version(cascade.MODEL): "<cascade version>",
                store.current_version(factors.model_names("US21")["factors"]): "<US21 version>"}

    def rounded(value: Any) -> Any:  # for reading: 4 decimals for ratios and shares, cents for dollars
        if isinstance(value, float):
            return round(value, 2 if abs(value) >= 100 else 4)
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        return [rounded(v) for v in value] if isinstance(value, list) else value

    def show(value: Any) -> str:
        text = json.dumps(rounded(value), indent=2)
        for version, label in versions.items():
            text = text.replace(version, label)
        return text

    def short(body: dict[str, Any], keep: tuple[str, ...]) -> dict[str, Any]:
        return {k: body[k] for k in keep if k in body}

    calls = {label: (tool, args) for label, tool, args in _calls(names)}
    steps = [
        ("Which tickers start with these letters?", "search", ("query", "exact", "matches")),
        ("Where does the risk of this stock come from?", "decompose", ("model", "model_version", "data_date", "ticker",
                                                                       "bets")),
        ("I hold $250,000 of it. Hedge it with ETFs.", "hedge_position",
         ("model_version", "data_date", "ticker", "dollars", "level", "trades", "description", "risk_index_before",
          "risk_index_after", "market_beta_after")),
        ("How risky is my book (one line is a ticker the store does not know)?", "analyze",
         ("model_version", "data_date", "holdings_analyzed", "excluded", "risk_index", "vol_ann", "decomposition",
          "hedge_ratios")),
        ("And from the factor model?", "factor_risk", ("model", "model_version", "data_date", "vol_ann", "shares")),
        ("What about a ticker with a typo?", "unknown_ticker", ()),
    ]
    lines = ["# An MCP conversation with riskstrata", "",
             "Written by `tests/mcp/test_mcp_server.py` from a real `riskstrata mcp` process (stdio, the "
             "official MCP client) over the test's seeded synthetic store (40 stocks, two years); version "
             "stamps are redacted, numbers rounded for reading and long answers trimmed to the keys shown. An "
             "agent reads the tool "
             "descriptions, calls the tools with typed arguments and gets JSON back; an error comes back as a "
             "tool error with the CLI's message.", "",
             f"Tools listed: {', '.join(t.name for t in stdio['tools'])}.", ""]
    for question, label, keep in steps:
        tool, args = calls[label]
        lines += [f"**Agent's question:** {question}", "", f"→ `{tool}`", "", "```json", show(args), "```", ""]
        result = stdio[label]
        if result.is_error:
            lines += ["← tool error:", "", "```text", result.content[0].text, "```", ""]
        else:
            lines += ["←", "", "```json", show(short(data(result), keep)), "```", ""]
    text = "\n".join(lines)
    assert "<cascade version>" in text and "short $" in text
    if not TRANSCRIPT.exists() or TRANSCRIPT.read_text(encoding="utf-8") != text:
        TRANSCRIPT.parent.mkdir(parents=True, exist_ok=True)
        TRANSCRIPT.write_text(text, encoding="utf-8")
