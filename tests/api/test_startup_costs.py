"""What a worker pays to start and what a portfolio call pays in store connections.

- Importing the app and building it loads no part of the MCP SDK (~0.6 s of CPU per worker):
  the first ``/mcp`` request loads it, and ``/mcp`` answers as before — 401 without a key, 405
  on GET, 503 outside the app's lifespan, and two first requests at once start one server.
- Loading the published version (the server's start-up) reads the store on one DuckDB
  connection, and so does a portfolio analysis that takes the store path; a held analysis
  opens none.

Counts, not timings: the costs themselves are measured in the helper's report, not asserted.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import pandas as pd
import pytest

from riskstrata.api.app import create_app
from riskstrata.api.auth import create_key
from riskstrata.api.settings import ApiSettings
from riskstrata.api.state import AppState
from riskstrata.data.store import Store
from riskstrata.mcp import http as mcp_http
from riskstrata.services import portfolio as svc
from tests.loops import run_coroutine

PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def store(private_store: Store) -> Store:
    return private_store


@pytest.fixture(scope="module")
def key(store: Store) -> str:
    return create_key(store, "startup-costs")


class _Counter:
    """Wraps ``owner.name`` (a function or method) to count its calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> None:
        self.calls, original = 0, getattr(owner, name)

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)


def test_importing_and_building_the_app_loads_no_part_of_the_mcp_sdk(store: Store):
    code = ("import sys\n"
            "from riskstrata.api.app import create_app\n"
            "create_app(sys.argv[1])\n"
            "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')))\n")
    done = subprocess.run([sys.executable, "-c", code, str(store.root)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", f"the app loaded the MCP SDK at import or build: {done.stdout[:500]}"


def test_mcp_outside_the_lifespan_is_503_and_get_is_405(store: Store, key: str):
    app = create_app(store, ApiSettings(rate_limit=0))

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            not_running = await client.post("/mcp", json=PING, headers={**MCP_HEADERS, "X-API-Key": key})
            get = await client.get("/mcp", headers={**MCP_HEADERS, "X-API-Key": key})
            no_key = await client.post("/mcp", json=PING, headers=MCP_HEADERS)
        return not_running, get, no_key

    not_running, get, no_key = run_coroutine(scenario())
    assert not_running.status_code == 503 and not_running.json()["error"] == "Service Unavailable"
    assert get.status_code == 405
    assert no_key.status_code == 401 and no_key.json()["error"] == "Unauthorized"


def test_two_first_mcp_requests_at_once_start_one_server_and_both_are_answered(store: Store, key: str, monkeypatch):
    built = _Counter(monkeypatch, mcp_http, "_session_manager")
    app = create_app(store, ApiSettings(rate_limit=0))
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {key}"}

    async def scenario() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as client:
                first = await asyncio.gather(*(client.post("/mcp", json={**PING, "id": i}, headers=headers)
                                               for i in (1, 2)))
                later = await client.post("/mcp", json={**PING, "id": 3}, headers=headers)
        return [*first, later]

    answers = run_coroutine(scenario())
    for i, resp in enumerate(answers, start=1):
        assert resp.status_code == 200, resp.text[:500]
        assert json.loads(resp.text) == {"jsonrpc": "2.0", "id": i, "result": {}}
    assert built.calls == 1, "the SDK's server was built once per lifespan, whatever the number of first requests"
    assert app.state.mcp_sessions is None, "the lifespan's end stops /mcp (503 again)"


def test_the_published_version_loads_on_one_store_connection(store: Store, monkeypatch):
    connects = _Counter(monkeypatch, Store, "connect")
    AppState(store).current()
    assert connects.calls == 1, f"{connects.calls} DuckDB connections for one model load (one expected)"


def test_a_portfolio_analysis_opens_one_connection_on_the_store_path_and_none_when_held(store: Store, monkeypatch):
    held = AppState(store).portfolio()
    names = held.snapshot["ticker"].astype(str).tolist()[:6]
    holdings = pd.DataFrame({"ticker": names, "weight": [1.0 / len(names)] * len(names)})
    connects = _Counter(monkeypatch, Store, "connect")
    from_store = svc.analyze_portfolio(store, holdings)
    assert connects.calls == 1, f"{connects.calls} DuckDB connections for one analysis (one expected)"
    from_memory = svc.analyze_portfolio(store, holdings, held=held)
    assert connects.calls == 1, "the held path opened a connection"
    assert from_memory.risk.risk_index == pytest.approx(from_store.risk.risk_index, rel=1e-12)
