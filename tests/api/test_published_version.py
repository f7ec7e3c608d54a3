"""A worker serves the latest numbers from memory, one published version at a time.

What the in-memory path promises: the bodies it renders once equal what the services compute;
a build published while the server runs is served by the next request (lineage headers and
numbers both); an unknown ticker is refused without a store read, in a single call or a batch;
and a name that is only in the model's history still resolves.
"""

from __future__ import annotations


import httpx
import pytest
from fastapi.testclient import TestClient

from riskstrata.api.app import create_app
from riskstrata.api.auth import create_key
from riskstrata.api.settings import ApiSettings
from riskstrata.data.store import Store
from riskstrata.services import cascade
from tests.api.conftest import serve_cli


@pytest.fixture(scope="module")
def store(private_store: Store) -> Store:
    """A private copy of the session's demo store: this module publishes new versions into it."""
    return private_store


@pytest.fixture(scope="module")
def client(store: Store):
    key = create_key(store, "published-tests")
    with TestClient(create_app(store, ApiSettings(rate_limit=0)), headers={"Authorization": f"Bearer {key}"}) as c:
        yield c


def _stock(store: Store) -> str:
    snap = cascade.stored_snapshot(store)
    return str(snap.index[snap["l3_sub_hr"].notna()][0]).upper()


def _assert_metrics_match(body: dict, want: dict) -> None:
    for field in ("l1_mkt_hr", "l3_mkt_hr", "l3_sec_hr", "l3_sub_hr", "l3_res_er", "vol_23d"):
        if want[field] is None:  # e.g. no subsector leg: null on the wire too
            assert body["metrics"][field] is None, field
        else:
            assert body["metrics"][field] == pytest.approx(want[field], rel=1e-12, abs=1e-15), field


def test_repeated_requests_get_the_same_body_and_the_services_numbers(client, store):
    ticker = _stock(store)
    first, again = client.get(f"/api/metrics/{ticker}"), client.get(f"/api/metrics/{ticker.lower()}")
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()  # the second answer comes from the rendered memo
    assert first.headers["x-request-id"] != again.headers["x-request-id"]  # per request, never memoised
    _assert_metrics_match(first.json(), cascade.metrics(store, ticker))
    for segment in ("retail", "stat_arb"):  # each segment is its own body
        body = client.get(f"/api/metrics/{ticker}", params={"user_segment": segment}).json()
        assert body["metrics"]["user_segment_applied"] == segment


def test_a_build_published_while_serving_is_served_next(client, store):
    ticker = _stock(store)
    before = client.get(f"/api/metrics/{ticker}")
    batch_before = client.post("/api/batch/analyze", json={"tickers": [ticker], "metrics": ["hedge_ratios"]})
    old_version = before.headers["x-risk-model-version"]

    cascade.build_cascade(store, window=126)  # other parameters, so the numbers move
    new_version = store.current_version(cascade.MODEL)
    assert new_version != old_version

    after = client.get(f"/api/metrics/{ticker}")
    assert after.headers["x-risk-model-version"] == new_version
    assert after.json()["_metadata"]["model_version"] == new_version
    assert after.json()["_metadata"]["factor_set_id"].endswith("_w126")
    want = cascade.metrics(store, ticker)
    _assert_metrics_match(after.json(), want)
    assert after.json()["metrics"]["l3_mkt_hr"] != before.json()["metrics"]["l3_mkt_hr"]

    batch_after = client.post("/api/batch/analyze", json={"tickers": [ticker], "metrics": ["hedge_ratios"]})
    assert batch_after.headers["x-risk-model-version"] == new_version
    assert batch_after.json()["results"][ticker]["hedge_ratios"]["l3_market"] == pytest.approx(want["l3_mkt_hr"])
    assert (batch_after.json()["results"][ticker]["hedge_ratios"]
            != batch_before.json()["results"][ticker]["hedge_ratios"])
    health = client.get("/api/health").json()
    assert health["services"]["cascade"]["version"] == new_version


def test_unknown_tickers_are_refused_from_memory(client, store, monkeypatch):
    def no_store_reads(*args, **kwargs):
        raise AssertionError("an unknown ticker must not cost a store read")

    monkeypatch.setattr(Store, "read_model", no_store_reads)
    monkeypatch.setattr(Store, "read_table", no_store_reads)
    resp = client.get("/api/metrics/NOSUCH")
    assert resp.status_code == 404 and resp.json()["error"] == "Symbol not found"
    assert "NOSUCH" in resp.json()["message"]
    batch = client.post("/api/batch/analyze", json={"tickers": [f"ZZ{i}" for i in range(100)]})
    assert batch.status_code == 200
    results = batch.json()["results"]
    assert len(results) == 100 and {e["status"] for e in results.values()} == {"error"}
    assert batch.json()["summary"] == {"total": 100, "success": 0, "errors": 100}


def test_a_name_only_in_the_models_history_is_served_from_the_store(client, store):
    """A ticker with model rows before the last date but none on it (the demo market delists a
    few names) passes the in-memory check and is answered by the service, as before."""
    from riskstrata.api.published import load_published

    pub = load_published(store, store.current_version(cascade.MODEL))
    history_only = sorted(pub.modelled - set(pub.latest))
    assert history_only, "the demo market should delist a few names"
    for ticker in history_only:
        want = cascade.metrics(store, ticker)
        resp = client.get(f"/api/metrics/{ticker}")
        assert resp.status_code == 200, resp.text
        assert resp.json()["teo"] == want["date"] < pub.end
        _assert_metrics_match(resp.json(), want)


@pytest.mark.slow  # make test-fast skips it
def test_every_worker_of_a_running_server_serves_a_new_build(store, tmp_path):
    """`riskstrata serve --workers 2`: whichever worker answers, after a publish it answers with
    the new version (each worker checks the pointer on every request; nothing to restart)."""
    key = create_key(store, "workers")
    ticker = _stock(store)
    with serve_cli(store, tmp_path / "serve.log", "--workers", "2", "--rate-limit", "0") as base, \
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, trust_env=False,
                         timeout=30) as http:
        before = {http.get(f"/metrics/{ticker}").headers["x-risk-model-version"] for _ in range(20)}
        assert before == {store.current_version(cascade.MODEL)}
        cascade.build_cascade(store, window=189)
        new_version = store.current_version(cascade.MODEL)
        after = [http.get(f"/metrics/{ticker}") for _ in range(20)]
        assert {r.headers["x-risk-model-version"] for r in after} == {new_version}
        want = cascade.metrics(store, ticker)
        for resp in after:
            _assert_metrics_match(resp.json(), want)
