"""Issue 12 §2, §3, §5: authentication that costs the attacker, one key that cannot starve the
others, logs that cannot be forged, and an OpenAPI document that is the truth.

Each test here failed before the hardening (the comment says how) and passes after. Most drive
the app in-process over a private copy of the session's demo store; raw ASGI calls stand in for
clients that stall or vanish mid-body, and the real uvicorn server of ``conftest.py`` for the
one that must be seen on a socket.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import socket
import threading
import time
from urllib.parse import urlsplit

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from riskstrata.api import auth
from riskstrata.api.app import create_app
from riskstrata.api.auth import LEGACY_KDF, TABLE, KeyRing, create_key, list_keys
from riskstrata.api.deps import authenticate_key
from riskstrata.api.limits import RequestGate, is_heavy
from riskstrata.api.logs import safe_path
from riskstrata.api.settings import ApiSettings
from riskstrata.data.store import Store
from tests.loops import run_coroutine


@pytest.fixture(scope="module")
def store(private_store: Store) -> Store:
    return private_store


@pytest.fixture(scope="module")
def key(store: Store) -> str:
    return create_key(store, "hardening")


@pytest.fixture(scope="module")
def authed(store: Store, key: str):
    with TestClient(create_app(store, ApiSettings(rate_limit=0)), headers={"X-API-Key": key}) as c:
        yield c


@pytest.fixture(scope="module")
def ticker(authed) -> str:
    return authed.get("/api/tickers").json()["tickers"][0]


def _legacy_key(store: Store, name: str) -> str:
    """A key as `riskstrata keys create` made it before HMAC keys: a salted scrypt row."""
    key_id = secrets.token_hex(4)
    key = f"rs_{key_id}_{secrets.token_urlsafe(32)}"
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(key.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    with auth._locked(store):
        table = auth._read(store)
        row = {"name": name, "key_id": key_id, "salt": salt.hex(), "hash": digest.hex(), "kdf": LEGACY_KDF,
               "created_at": "2026-12-02T10:00:00+00:00", "revoked_at": None}
        auth._write(store, pd.concat([table, pd.DataFrame([row], columns=auth.COLUMNS)], ignore_index=True))
    return key


class _Counter:
    def __init__(self, monkeypatch, module, name: str) -> None:
        self.calls, original = 0, getattr(module, name)

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)


async def _asgi(app, method: str, path: str, headers: dict, chunks, *, timeout: float = 20.0) -> tuple[int, dict, bool]:
    """Call the ASGI app once; ``chunks`` is an async iterator of receive() messages. Returns
    (status, body as JSON, whether the app ever asked for the body)."""
    asked = False
    sent: list[dict] = []

    async def receive():
        nonlocal asked
        asked = True
        return await chunks.__anext__()

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("203.0.113.9", 5555), "server": ("testserver", 80), "state": {}}
    await asyncio.wait_for(app(scope, receive, send), timeout)
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return (start["status"] if start else 0), (json.loads(body) if body else {}), asked


async def _stalled(first: bytes = b'{"holdings": ['):
    """A body whose first chunk arrives and whose rest never does."""
    yield {"type": "http.request", "body": first, "more_body": True}
    await asyncio.Event().wait()


async def _vanishing(first: bytes = b'{"holdings": ['):
    """A client that sends a first chunk and disconnects."""
    yield {"type": "http.request", "body": first, "more_body": True}
    yield {"type": "http.disconnect"}


async def _lifespan(app):
    """Run the app's startup (it loads the model) for raw ASGI calls."""
    async with app.router.lifespan_context(app):
        yield


# --------------------------------------------------------------------------- §2 authentication


def test_any_wrong_key_costs_one_hmac_and_one_compare_never_scrypt(store, key, monkeypatch):
    """Before: a known key id with a wrong secret cost ~100 ms of scrypt (and 4 vs 107 ms told
    whether the id exists); now every wrong key costs the same HMAC and one compare."""
    ring = KeyRing(store)
    assert ring.verify(key) == "hardening"
    scrypt = _Counter(monkeypatch, auth, "_scrypt")
    compares = _Counter(monkeypatch, auth.hmac, "compare_digest")
    key_id = key.split("_")[1]
    wrong = [f"rs_{key_id}_{secrets.token_urlsafe(32)}",  # a real id, a wrong secret
             f"rs_{'0' * 8}_{secrets.token_urlsafe(32)}",  # an unknown id
             "rs_zz_junk", "", "A" * 5000]
    for i, candidate in enumerate(wrong, start=1):
        assert ring.check(candidate) is None and ring.verify(candidate) is None
        assert compares.calls == 2 * i, candidate[:20]
    assert scrypt.calls == 0
    assert ring.verify(key) == "hardening"  # and the right key still works (from the cache)


def test_a_key_made_before_hmac_keys_still_works_and_is_upgraded_once(store, ticker, monkeypatch):
    """A store whose keys were made yesterday with scrypt: the key works, its row is rewritten as
    an HMAC row on first use, and it never costs scrypt again."""
    old = _legacy_key(store, "made-yesterday")
    with TestClient(create_app(store, ApiSettings(rate_limit=0))) as c:
        assert c.get(f"/api/metrics/{ticker}", headers={"X-API-Key": old}).status_code == 200
        forged = old[:-4] + ("AAAA" if not old.endswith("AAAA") else "BBBB")
        assert c.get(f"/api/metrics/{ticker}", headers={"X-API-Key": forged}).status_code == 401
    row = auth._read(store).set_index("name").loc["made-yesterday"]
    assert row["kdf"] == "hmac-sha256" and row["key_id"] == old.split("_")[1]
    assert [k.active for k in list_keys(store) if k.name == "made-yesterday"] == [True]
    scrypt = _Counter(monkeypatch, auth, "_scrypt")
    assert KeyRing(store).check(old) == "made-yesterday" and scrypt.calls == 0


def test_failed_authentications_are_limited_per_client_address(store, key, ticker):
    """Before: any number of wrong keys per second, each answered 401."""
    app = create_app(store, ApiSettings(rate_limit=0, auth_fail_rate=0.01, auth_fail_burst=3))
    path = f"/api/metrics/{ticker}"
    with TestClient(app, client=("198.51.100.7", 4000)) as guesser, TestClient(app) as other:
        codes = [guesser.get(path, headers={"X-API-Key": f"rs_00000000_{i:043d}"}).status_code for i in range(4)]
        assert codes == [401, 401, 401, 429]
        resp = guesser.get(path, headers={"X-API-Key": key})  # not even a right key from that address…
        assert resp.status_code == 429 and int(resp.headers["retry-after"]) >= 1
        assert resp.json()["_agent"]["action"] == "retry"
        assert other.get(path, headers={"X-API-Key": key}).status_code == 200  # …but others are unaffected
        assert guesser.get("/api/health").status_code == 200  # public routes stay open


def test_authenticate_key_for_other_faces(store, key):
    """The function the web pages' cookie check and the MCP mount call with a raw key."""
    app = create_app(store, ApiSettings())
    assert run_coroutine(authenticate_key(app, key)) == "hardening"
    assert run_coroutine(authenticate_key(app, key + "x")) is None
    assert run_coroutine(authenticate_key(app, "")) is None


def test_no_byte_of_a_body_is_read_before_the_key_is_checked(store):
    """Before: BodyGuard buffered up to 1 MiB per connection before the key was looked at."""
    app = create_app(store, ApiSettings())
    headers = {"content-type": "application/json", "content-length": str(1 << 20), "x-api-key": "wrong"}
    status, body, asked = run_coroutine(_asgi(app, "POST", "/api/portfolio/analyze", headers, _stalled()))
    assert status == 401 and body["error"] == "Unauthorized" and not asked
    status, _, asked = run_coroutine(_asgi(app, "POST", "/api/portfolio/analyze",
                                         {k: v for k, v in headers.items() if k != "x-api-key"}, _stalled()))
    assert status == 401 and not asked


def test_a_stalled_upload_without_a_key_is_refused_at_once_over_tcp(server_url):
    """On a real socket: headers announcing 1 MiB and no body get their 401 without waiting."""
    parts = urlsplit(server_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"POST /api/portfolio/analyze HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1048576\r\n\r\n{")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:100]


def test_a_slow_body_times_out_with_408(store, key):
    """Before: a client trickling its body held the connection and the buffer for ever."""
    app = create_app(store, ApiSettings(body_timeout=0.3))
    headers = {"content-type": "application/json", "content-length": "5000", "x-api-key": key}
    status, body, asked = run_coroutine(_asgi(app, "POST", "/api/portfolio/analyze", headers, _stalled(), timeout=10))
    assert asked and status == 408 and body["error"] == "Request Timeout"


# --------------------------------------------------------------------------- §3 one key cannot starve the others


def test_requests_in_flight_per_key_are_bounded(store, key, ticker):
    """Before: one key could hold any number of connections mid-request."""
    other = create_key(store, "hardening-other")
    app = create_app(store, ApiSettings(rate_limit=0, max_inflight_per_key=2))

    async def scenario():
        headers = {"content-type": "application/json", "content-length": "5000", "x-api-key": key}
        stalled = [asyncio.create_task(_asgi(app, "POST", "/api/portfolio/analyze", headers, _stalled()))
                   for _ in range(2)]
        await asyncio.sleep(0.05)
        third = await _asgi(app, "POST", "/api/portfolio/analyze", headers, _stalled())
        elsewhere = await _asgi(app, "GET", f"/api/metrics/{ticker}", {"x-api-key": other}, _stalled())
        for task in stalled:
            task.cancel()
        return third, elsewhere

    (status, body, asked), (other_status, _, _) = run_coroutine(scenario())
    assert status == 429 and "in flight" in body["message"] and not asked
    assert other_status == 200


def test_heavy_work_waits_in_line_and_one_key_leaves_a_slot_for_others():
    """RequestGate: 2 heavy slots per worker, 1 per key: a key flooding with 5 requests runs one
    at a time, and another key's request runs next to it instead of waiting behind the flood."""
    gate = RequestGate(per_key=0, heavy_slots=2, heavy_per_key=1)
    running: dict[str, int] = {"flood": 0, "small": 0}
    peak: dict[str, int] = {"flood": 0, "small": 0, "total": 0}
    order: list[str] = []
    # Events, not sleeps: the flood's first request holds its slot until the small one is done,
    # whatever the machine's load (a 50 ms sleep could end before the small request was
    # scheduled on a busy machine, and the test failed for no fault of the gate).
    flood_running, small_done = asyncio.Event(), asyncio.Event()

    async def job(who: str) -> None:
        async def work():
            running[who] += 1
            peak[who] = max(peak[who], running[who])
            peak["total"] = max(peak["total"], sum(running.values()))
            if who == "flood":
                flood_running.set()
                await small_done.wait()
            running[who] -= 1
            order.append(who)
        await gate.heavy(who, work)

    async def scenario():
        flood = [asyncio.create_task(job("flood")) for _ in range(5)]
        await flood_running.wait()  # the flood holds a slot; its other four wait for their key's
        try:  # a gate that queued it behind the flood would never run it: fail instead of hanging
            await asyncio.wait_for(job("small"), timeout=60)
        except TimeoutError:
            raise AssertionError("the small request waited behind the flood") from None
        assert order == ["small"]  # done before any of the flood's five
        small_done.set()
        await asyncio.gather(*flood)

    run_coroutine(scenario())
    assert peak == {"flood": 1, "small": 1, "total": 2}
    assert is_heavy("POST", "/api/portfolio/analyze") and is_heavy("GET", "/api/ticker-returns")
    assert not is_heavy("GET", "/api/metrics/AAPL") and not is_heavy("GET", "/api/factors/models")
    assert is_heavy("GET", "/api/metrics/AAPL/snapshot.pdf") and is_heavy("GET", "/api/metrics/AAPL/correlation")


def test_heavy_requests_run_whole_on_the_bounded_pool_not_the_servers_loop(store, key):
    """Before: a 20,000-line body was parsed and validated on the event loop (and the route ran
    on a thread pool shared with everything); now the whole request runs on a pool loop thread."""
    app = create_app(store, ApiSettings(rate_limit=0))
    seen: dict[str, str] = {}

    @app.post("/api/portfolio/_where")
    async def where(body: dict) -> dict:
        seen["heavy"] = threading.current_thread().name
        return {"n": len(body)}

    @app.get("/api/_where_light")
    async def where_light() -> dict:
        seen["light"] = threading.current_thread().name
        return {}

    with TestClient(app, headers={"X-API-Key": key}) as c:
        assert c.post("/api/portfolio/_where", json={"a": 1, "b": 2}).json() == {"n": 2}
        assert c.get("/api/_where_light").status_code == 200
    assert seen["heavy"].startswith("riskstrata-heavy-") and not seen["light"].startswith("riskstrata-heavy-")


def test_a_client_gone_while_waiting_in_line_leaves_the_line(store, key):
    """Before: a request queued for a heavy slot stayed queued (and counted in flight) after its
    client went away, so a client that dropped its requests and reconnected got 429s."""
    app = create_app(store, ApiSettings(rate_limit=0, heavy_slots=1, max_inflight_per_key=2))
    release = threading.Event()

    @app.post("/api/portfolio/_hold")
    def hold() -> dict:
        release.wait(20)
        return {}

    async def body_then_gone(delay: float):
        yield {"type": "http.request", "body": b"{}", "more_body": False}
        await asyncio.sleep(delay)
        yield {"type": "http.disconnect"}

    async def scenario():
        headers = {"content-type": "application/json", "content-length": "2", "x-api-key": key}
        holder = asyncio.create_task(_asgi(app, "POST", "/api/portfolio/_hold", headers, body_then_gone(60)))
        await asyncio.sleep(0.2)
        gone = await _asgi(app, "POST", "/api/portfolio/_hold", headers, body_then_gone(0.1), timeout=5)
        third = asyncio.create_task(_asgi(app, "POST", "/api/portfolio/_hold", headers, body_then_gone(60)))
        await asyncio.sleep(0.2)
        release.set()
        return gone, await holder, await third

    gone, first, third = run_coroutine(scenario())
    assert gone[0] == 0  # left the line without an answer (logged 499)…
    assert first[0] == 200 and third[0] == 200  # …and did not hold the key's in-flight count


def test_one_requests_history_is_bounded_in_names_times_years(authed, ticker):
    """Before: 100 names × 27 years (~700,000 rows) in one request."""
    resp = authed.post("/api/batch/analyze", json={"tickers": [ticker] * 1 + [f"Z{i}" for i in range(99)],
                                                    "metrics": ["returns"], "years": 27})
    assert resp.status_code == 422 and "name-years" in resp.json()["message"]
    resp = authed.post("/api/batch/lstar", json={"tickers": [f"Z{i}" for i in range(50)], "years": 27})
    assert resp.status_code == 422
    assert authed.post("/api/batch/analyze", json={"tickers": [ticker], "metrics": ["returns"], "years": 27}
                       ).status_code == 200


# --------------------------------------------------------------------------- §5 logs


def test_the_access_log_escapes_control_characters(authed, caplog):
    """Before: %0D%0A in a path wrote a forged second line; a NUL reached the log as is."""
    with caplog.at_level(logging.INFO, logger="riskstrata.access"):
        authed.get("/api/metrics/A%0D%0AGET%20/api/admin%20200%200.1ms%20key=root%00")
    lines = [r.getMessage() for r in caplog.records if r.name == "riskstrata.access"]
    assert len(lines) == 1 and not any(c in lines[0] for c in "\r\n\x00"), lines
    assert "A\\r\\nGET /api/admin 200 0.1ms key=root\\x00" in lines[0]
    assert safe_path("/a\\b\x1b[31m\u2028") == "/a\\\\b\\x1b[31m\\u2028"


def test_a_client_gone_mid_body_is_logged_499_not_500(store, key, caplog):
    app = create_app(store, ApiSettings())
    headers = {"content-type": "application/json", "content-length": "5000", "x-api-key": key}
    with caplog.at_level(logging.INFO, logger="riskstrata.access"):
        status, _, asked = run_coroutine(_asgi(app, "POST", "/api/portfolio/analyze", headers, _vanishing()))
    assert asked and status == 0  # nobody to answer
    lines = [r.getMessage() for r in caplog.records if r.name == "riskstrata.access"]
    assert lines and " 499 " in lines[-1] and " 500 " not in lines[-1], lines


# --------------------------------------------------------------------------- §5 the contract


@pytest.mark.parametrize("path, body", [
    ("/api/batch/lstar", {"tickers": ["AAA"], "threshold": False}),       # was taken as 0.0
    ("/api/batch/lstar", {"tickers": ["AAA"], "years": "2"}),
    ("/api/portfolio/risk-index", {"positions": [{"ticker": "AAA", "weight": 1}], "timeSeries": "yes"}),
    ("/api/portfolio/risk-index", {"positions": [{"ticker": "AAA", "weight": 1}], "timeSeries": 1}),
    ("/api/factors/US21/build", {"end": 0}),                              # was 1970-01-01 (and a build)
    ("/api/factors/US21/build", {"start": 20200101}),
    ("/api/decompose", {"ticker": "AAA", "as_of": 0}),
    ("/api/portfolio/analyze", {"holdings": [{"ticker": 7, "shares": 1}]}),
    ("/api/portfolio/analyze", {"holdings": [{"ticker": "AAA", "shares": True}]}),
], ids=["threshold-false", "years-text", "timeseries-text", "timeseries-int", "end-0", "start-int", "as-of-0",
        "ticker-int", "shares-bool"])
def test_wrongly_typed_fields_are_refused_not_coerced(authed, path, body):
    resp = authed.post(path, json=body)
    assert resp.status_code == 422, (resp.status_code, resp.text[:300])
    assert resp.json()["error"] == "Validation Error"


def test_dates_as_strings_and_ints_as_floats_still_pass(authed, ticker):
    ok = authed.post("/api/batch/lstar", json={"tickers": [ticker], "threshold": 0, "years": 1})
    assert ok.status_code == 200, ok.text[:300]
    assert authed.post("/api/portfolio/risk-index", json={"positions": [{"ticker": ticker, "weight": 2}],
                                                           "timeSeries": True}).status_code == 200


@pytest.mark.parametrize("request_", [
    ("GET", "/api/metrics/%29", None), ("GET", "/api/ticker-returns?ticker=", None),
    ("GET", "/api/lstar?ticker=A%20B", None), ("POST", "/api/decompose", {"ticker": ")"}),
    ("POST", "/api/decompose", {"ticker": ""}),
], ids=["path-paren", "query-empty", "query-space", "body-paren", "body-empty"])
def test_a_malformed_ticker_is_400_and_the_schema_says_so(authed, request_):
    method, path, body = request_
    resp = authed.request(method, path, json=body)
    assert resp.status_code == 400 and resp.json()["error"] == "Malformed ticker", resp.text[:300]


def test_the_openapi_document_declares_patterns_tables_and_strict_dates(authed):
    doc = authed.get("/api/openapi.json").json()
    params = {(path, p["name"]): p["schema"] for path, ops in doc["paths"].items() for op in ops.values()
              for p in op.get("parameters", [])}
    for where in [("/api/metrics/{ticker}", "ticker"), ("/api/ticker-returns", "ticker"), ("/api/lstar", "ticker"),
                  ("/api/factors/{model}/exposures/{ticker}", "ticker")]:
        assert "pattern" in params[where], where
    tabular = 0
    for path, ops in doc["paths"].items():
        for op in ops.values():
            formats = [p["schema"] for p in op.get("parameters", []) if p["name"] == "format"]
            body_ref = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema", {})
            body = doc["components"]["schemas"].get(body_ref.get("$ref", "/").rsplit("/", 1)[-1], {})
            formats += [body["properties"]["format"]] if "format" in body.get("properties", {}) else []
            if "csv" in json.dumps(formats):  # a route that can answer a table says which media types
                tabular += 1
                content = op["responses"]["200"]["content"]
                assert {"text/csv", "application/vnd.apache.parquet"} <= set(content), path
    assert tabular >= 4  # /metrics, /ticker-returns, /batch/analyze, /batch/lstar
    end = doc["components"]["schemas"]["BuildRequest"]["properties"]["end"]
    assert {"type": "string", "format": "date"} in end["anyOf"]


def test_a_trailing_slash_is_404_json_without_a_redirect(authed, ticker):
    """Before: 307 with a Location built from the Host header."""
    resp = authed.get(f"/api/metrics/{ticker}/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert resp.status_code == 404 and "location" not in resp.headers
    assert resp.json()["error"] == "Not Found"


def test_dates_outside_the_model_are_one_400_naming_its_range(authed, store, ticker):
    """Before: /decompose answered 400 while other routes clamped or said "Symbol not found"."""
    meta = store.model_meta("cascade")
    span = f"({meta['start']} … {meta['end']})"
    for day in ("9999-12-31", "1900-01-01"):
        for path, body in [("/api/decompose", {"ticker": ticker, "as_of": day}),
                           ("/api/portfolio/analyze", {"holdings": [{"ticker": ticker, "weight": 1.0}], "date": day}),
                           ("/api/portfolio/hedge", {"holdings": [{"ticker": ticker, "weight": 1.0}], "date": day})]:
            resp = authed.post(path, json=body)
            assert resp.status_code == 400 and span in resp.json()["message"], (path, day, resp.text[:300])
            assert day in resp.json()["message"]
    assert authed.post("/api/decompose", json={"ticker": ticker, "as_of": meta["end"]}).status_code == 200


def test_no_hot_path_regression_the_metrics_get_reads_no_body(store, key, ticker):
    """A GET without a body goes straight through the body guard: no receive() at all."""
    app = create_app(store, ApiSettings())

    async def scenario():
        async with app.router.lifespan_context(app):
            return await _asgi(app, "GET", f"/api/metrics/{ticker}", {"x-api-key": key}, _stalled())

    status, body, asked = run_coroutine(scenario())
    assert status == 200 and body["ticker"] == ticker and not asked
    time.sleep(0)  # (no timing asserted: see benchmarks/bench_api.py)


def test_concurrent_first_requests_with_an_old_key_run_scrypt_once_and_all_pass(store, monkeypatch):
    """Issue 15: requests that all saw the old scrypt row (check() said LEGACY) queue for the one
    scrypt; the first verifies and upgrades the row, the others are then answered by the HMAC
    row (before: they found no scrypt row left and were refused, 401 for a valid key)."""
    old = _legacy_key(store, "raced-yesterday")
    ring = KeyRing(store)
    assert ring.check(old) is auth.LEGACY and ring.check(old) is auth.LEGACY  # two requests, before either verifies
    scrypt = _Counter(monkeypatch, auth, "_scrypt")
    assert [ring.verify_legacy(old), ring.verify_legacy(old)] == ["raced-yesterday", "raced-yesterday"]
    assert scrypt.calls == 1
