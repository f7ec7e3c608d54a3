"""riskstrata's own REST endpoints: Model B (builds, jobs, summary, correlations, exposures,
factor risk) and the portfolio layer (analyze, hedge, scale, look-through).

One small synthetic store per module with the cascade and Model B (US21) built; the auto-build
and a failing build each get a store of their own.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from riskstrata.api.app import create_app
from riskstrata.api.jobs import FAILED, JobRegistry
from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.services import factors as fsvc
from riskstrata.services.cascade import build_cascade
from riskstrata.services.demo import load_synthetic_into_store

JOB_TIMEOUT_S = 180


def _auth_headers(store: Store) -> dict[str, str]:
    """A bearer key when the app has key auth (riskstrata.api.auth.create_key), else nothing."""
    try:
        from riskstrata.api.auth import create_key
    except ImportError:
        return {}
    try:
        key = create_key(store, "tests")
    except TypeError:
        key = create_key(store)
    key = key if isinstance(key, str) else getattr(key, "key", None) or key[0]
    return {"Authorization": f"Bearer {key}"}


def _client(store: Store) -> TestClient:
    """Key auth as served; no rate limit (polling a job would spend a key's burst)."""
    try:
        from riskstrata.api.settings import ApiSettings
    except ImportError:
        return TestClient(create_app(store), headers=_auth_headers(store))
    return TestClient(create_app(store, ApiSettings(rate_limit=0)), headers=_auth_headers(store))


@pytest.fixture(scope="module")
def market():
    return synthetic_market(n_stocks=80, n_days=252 * 3, seed=5, styles=True)


@pytest.fixture(scope="module")
def store(tmp_path_factory, market) -> Store:
    s = Store(tmp_path_factory.mktemp("api_ours") / "store")
    load_synthetic_into_store(s, market)
    build_cascade(s)
    return s


@pytest.fixture(scope="module")
def client(store) -> TestClient:
    with _client(store) as c:
        yield c


def wait_for(client: TestClient, job_id: str) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        body = client.get(f"/api/jobs/{job_id}").json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {body['status']} (stage {body['stage']}) after {JOB_TIMEOUT_S}s")


@pytest.fixture(scope="module")
def built(client, store) -> str:
    """US21 built in the module's store (the auto-build path is tested on a store of its own)."""
    fsvc.ensure_built(store, "US21")
    return "US21"


@pytest.fixture(scope="module")
def names(built, store) -> list[str]:
    """Tickers with factor exposures and a cascade row on the last date."""
    last = store.read_model("factors_US21", columns=["date", "ticker"])
    return sorted(last.loc[last["date"] == last["date"].max(), "ticker"].unique())[:6]


def assert_error(resp, status: int, error: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) >= {"error", "message"} and body["message"], body
    if error is not None:
        assert body["error"] == error, body
    return body


# ----------------------------------------------------------------------------- models, builds, jobs


def test_models_lists_every_packaged_spec_with_its_build_status(client):
    resp = client.get("/api/factors/models")
    assert resp.status_code == 200
    models = {m["model"]: m for m in resp.json()["models"]}
    assert {"US21", "US_CORE"} <= set(models)
    assert models["US21"]["factors"] == 21
    assert set(models["US21"]) >= {"built", "version", "start", "end", "job"}


def test_a_summary_of_an_unbuilt_model_starts_its_build_then_answers(tmp_path):
    store = Store(tmp_path / "store")  # its own store, so no other test has built Model B in it yet
    load_synthetic_into_store(store, synthetic_market(n_stocks=40, n_days=252 * 2, seed=11, styles=True))
    with _client(store) as client:
        first = client.get("/api/factors/US21/summary")
        assert first.status_code == 202, first.text
        job = first.json()
        assert job["status"] in ("queued", "running") and job["model"] == "US21"
        assert first.headers["location"] == f"/api/jobs/{job['job_id']}"
        again = client.get("/api/factors/US21/correlation")  # a second question joins the same build
        assert again.status_code == 202 and again.json()["job_id"] == job["job_id"]
        done = wait_for(client, job["job_id"])
        assert done["status"] == "done" and done["progress"] == 1.0 and done["error"] is None, done
        assert done["result"]["model"] == "US21" and done["result"]["factors"] == 21
        summary = client.get("/api/factors/US21/summary")
        assert summary.status_code == 200
        rows = {r["factor"]: r for r in summary.json()["factors"]}
        assert len(rows) == 21 and {"MARKET", "SIZE", "VALUE", "TECHNOLOGY"} <= set(rows)
        assert set(rows["MARKET"]) >= {"cagr", "cumulative_return", "ann_vol", "sharpe", "latest_return",
                                       "latest_date", "max_drawdown", "n_days"}
        models = {m["model"]: m for m in client.get("/api/factors/models").json()["models"]}
        assert models["US21"]["built"] and models["US21"]["job"]["status"] == "done"


def test_build_returns_a_job_whose_stages_are_readable(client, built):
    resp = client.post("/api/factors/US_CORE/build")
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    done = wait_for(client, job_id)
    assert done["status"] == "done", done
    stages = [s["stage"] for s in done["stages"]]
    assert stages[0] == "loading panels" and stages[-1] == "writing" and "regression" in stages
    assert done["stage"] == "writing" and done["started"] and done["finished"]
    models = {m["model"]: m for m in client.get("/api/factors/models").json()["models"]}
    assert models["US_CORE"]["built"] and models["US_CORE"]["version"] == done["result"]["version"]


def test_build_with_a_date_range(client, built):
    resp = client.post("/api/factors/US_CORE/build", json={"start": "2015-06-01", "end": "2017-06-30"})
    assert resp.status_code == 202, resp.text
    done = wait_for(client, resp.json()["job_id"])
    assert done["status"] == "done", done
    assert done["result"]["dates"] < 756


def test_a_failed_build_is_reported_and_not_restarted_by_every_read(tmp_path):
    store = Store(tmp_path / "store")  # prices but no fundamentals: Model B cannot be built
    load_synthetic_into_store(store, synthetic_market(n_stocks=20, n_days=300, seed=3))
    with _client(store) as c:
        job = c.get("/api/factors/US21/summary").json()
        done = wait_for(c, job["job_id"])
        assert done["status"] == "failed" and "fundamentals" in done["error"], done
        body = assert_error(c.get("/api/factors/US21/summary"), 503, "Model Not Built")
        assert "last build failed" in body["message"] and body["job_id"] == job["job_id"]
        retry = c.post("/api/factors/US21/build")
        assert retry.status_code == 202 and retry.json()["job_id"] != job["job_id"]
        wait_for(c, retry.json()["job_id"])


def test_the_registry_runs_one_live_job_per_key_and_records_errors():
    import threading

    from riskstrata.errors import DataValidationError

    registry, release = JobRegistry(), threading.Event()

    def slow(progress):
        progress("waiting")
        release.wait(10)
        return {"ok": True}

    first, started = registry.start("build", "M", slow)
    second, again = registry.start("build", "M", slow)
    assert started and not again and second is first
    release.set()
    deadline = time.monotonic() + 10
    while first.live and time.monotonic() < deadline:
        time.sleep(0.01)
    assert first.status == "done" and first.result == {"ok": True} and first.stages[0]["stage"] == "waiting"

    def bad(progress):
        raise DataValidationError("the input is wrong")

    def bug(progress):
        raise KeyError("secret detail")

    failed, _ = registry.start("build", "M", bad)
    crashed, _ = registry.start("build", "N", bug)
    while (failed.live or crashed.live) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert failed.status == FAILED and failed.error == "the input is wrong"
    assert crashed.status == FAILED and crashed.error == "unexpected KeyError"  # no internals on the wire


def test_unknown_model_and_unknown_job_are_404(client):
    assert_error(client.get("/api/factors/NOPE/summary"), 404, "Not Found")
    assert_error(client.post("/api/factors/NOPE/build"), 404, "Not Found")
    # a spec *path* is never read from a request
    assert_error(client.get("/api/factors/..%2F..%2Fetc%2Fpasswd/summary"), 404)
    body = assert_error(client.get("/api/jobs/build-999-nothing"), 404, "Not Found")
    assert "worker" in body["message"]


# ----------------------------------------------------------------------------- questions to Model B


def test_correlation_matrix_is_symmetric_with_nan_as_null(client, built):
    resp = client.get("/api/factors/US21/correlation")
    assert resp.status_code == 200 and "NaN" not in resp.text
    body = resp.json()
    k = len(body["factors"])
    m = body["matrix"]
    assert k == 21 and len(m) == k and all(len(row) == k for row in m)
    for i in range(k):
        for j in range(k):
            assert m[i][j] == pytest.approx(m[j][i]) if m[i][j] is not None else m[j][i] is None
    assert m[0][0] == pytest.approx(1.0)
    windowed = client.get("/api/factors/US21/correlation", params={"window": 60}).json()
    assert windowed["window"] == 60 and windowed["matrix"] != m


def test_pair_correlation_with_its_rolling_history(client, built):
    body = client.get("/api/factors/US21/correlation/size/VALUE").json()
    assert body["a"] == "SIZE" and body["b"] == "VALUE" and -1 <= body["correlation"] <= 1
    assert body["rolling"]["days"] == 63 and len(body["rolling"]["dates"]) == len(body["rolling"]["values"]) > 0


def test_unknown_factor_is_400_naming_the_known_ones(client, built):
    body = assert_error(client.get("/api/factors/US21/correlation/SIZE/NOTAFACTOR"), 400, "Bad Request")
    assert "NOTAFACTOR" in body["message"] and "MOMENTUM" in body["message"]
    assert_error(client.get("/api/factors/US21/cumulative", params={"factors": "SIZE,BOGUS"}), 400)
    assert_error(client.get("/api/factors/US21/correlation", params={"window": 1}), 422, "Validation Error")


def test_cumulative_returns_are_compounded_paths(client, built):
    body = client.get("/api/factors/US21/cumulative", params={"factors": "market,SIZE"}).json()
    assert set(body["series"]) == {"MARKET", "SIZE"}
    assert len(body["dates"]) == len(body["series"]["MARKET"]) > 700
    summary = {r["factor"]: r for r in client.get("/api/factors/US21/summary").json()["factors"]}
    last = [v for v in body["series"]["MARKET"] if v is not None][-1]
    assert last == pytest.approx(summary["MARKET"]["cumulative_return"], rel=1e-9)


def test_a_stocks_exposures_as_of_a_date(client, names):
    ticker = names[0]
    latest = client.get(f"/api/factors/US21/exposures/{ticker.lower()}").json()
    assert latest["ticker"] == ticker and latest["exposures"]["MARKET"] == 1.0 and len(latest["exposures"]) == 21
    dated = client.get(f"/api/factors/US21/exposures/{ticker}", params={"date": "2016-06-15"}).json()
    assert dated["as_of"] <= "2016-06-15" and dated["exposures"] != latest["exposures"]


def test_unknown_ticker_is_404_and_a_bad_date_422(client, names):
    assert_error(client.get("/api/factors/US21/exposures/ZZZZZZ"), 404, "Symbol not found")
    assert_error(client.get(f"/api/factors/US21/exposures/{names[0]}", params={"date": "June"}), 422)


def test_a_date_outside_the_factor_model_is_a_400_naming_its_range(client, store, names):
    """Issue 12 §5: 9999-12-31 was clamped (200) and 1900-01-01 said "Symbol not found"."""
    meta = store.model_meta("factors_US21")
    holdings = [{"ticker": names[0], "weight": 1.0}]
    for day in ("9999-12-31", "1900-01-01"):
        for resp in (client.get(f"/api/factors/US21/exposures/{names[0]}", params={"date": day}),
                     client.post("/api/factors/US21/risk", json={"holdings": holdings, "date": day})):
            body = assert_error(resp, 400)
            assert day in body["message"] and f"({meta['start']} … {meta['end']})" in body["message"], body


def test_portfolio_factor_risk(client, names):
    holdings = [{"ticker": t, "weight": 0.25} for t in names[:4]] + [{"ticker": "NOTHELD", "weight": 0.0}]
    body = client.post("/api/factors/US21/risk", json={"holdings": holdings}).json()
    assert body["vol_ann"] > 0 and sum(body["shares"].values()) == pytest.approx(1.0)
    assert body["unknown"] == ["NOTHELD"] and len(body["exposures"]) == 21
    assert_error(client.post("/api/factors/US21/risk", json={"holdings": [{"ticker": "NOTHELD", "weight": 1}]}), 400)
    assert_error(client.post("/api/factors/US21/risk", json={"holdings": [{"ticker": names[0], "shares": 5}]}), 422)


def test_answers_from_memory_equal_the_stores(client, store, names):
    """The server holds each built model's last date in memory; its answers equal the service
    reading the store (exposures, factor risk, summary)."""
    api = client.get(f"/api/factors/US21/exposures/{names[0]}").json()
    want = fsvc.stock_exposures(store, names[0], spec="US21")
    assert api["as_of"] == str(want.name).split(" ")[-1]
    assert api["exposures"] == pytest.approx(want.to_dict(), rel=1e-15)
    weights = {t: w for t, w in zip(names[:4], (0.4, 0.3, 0.2, 0.1))}
    risk = client.post("/api/factors/US21/risk", json={"holdings": [{"ticker": t, "weight": w}
                                                                    for t, w in weights.items()]}).json()
    want_risk = fsvc.portfolio_factor_risk(store, pd.Series(weights), spec="US21")
    assert risk["date"] == want_risk["date"]
    assert risk["vol_ann"] == pytest.approx(want_risk["vol_ann"], rel=1e-12)
    assert risk["shares"] == pytest.approx(want_risk["shares"], rel=1e-12)
    summary = {r["factor"]: r for r in client.get("/api/factors/US21/summary").json()["factors"]}
    assert summary["MARKET"]["sharpe"] == pytest.approx(fsvc.summary(store, "US21").loc["MARKET", "sharpe"])


def test_a_rebuild_is_served_by_the_next_request(client, store, built):
    fsvc.ensure_built(store, "US_CORE")
    before = client.get("/api/factors/US_CORE/cumulative", params={"factors": "MARKET"}).json()
    fsvc.build_factor_model(store, "US_CORE", start="2016-01-01")
    after = client.get("/api/factors/US_CORE/cumulative", params={"factors": "MARKET"}).json()
    assert after["dates"][0] >= "2016-01-01" > before["dates"][0]
    assert after["dates"] == [d.date().isoformat() for d in fsvc.factor_returns(store, "US_CORE").index]


# ----------------------------------------------------------------------------- portfolio layer


def test_analyze_matches_scores_and_decomposes(client, names):
    holdings = [{"ticker": names[0], "shares": 100}, {"ticker": names[1], "market_value": 25_000},
                {"ticker": "CASH", "market_value": 5_000}, {"ticker": "QQQQZ", "shares": 10}]
    resp = client.post("/api/portfolio/analyze", json={"holdings": holdings})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["holdings_analyzed"].startswith("2/4 holdings analyzed") and body["analyzed"] == 2
    reasons = {e["ticker"]: e["reason"] for e in body["excluded"]}
    assert reasons == {"CASH": "cash", "QQQQZ": "unknown symbol"}
    assert body["risk_index"] > 0 and sum(body["decomposition"].values()) == pytest.approx(1.0)
    assert {p["ticker"] for p in body["by_position"]} == set(names[:2])
    assert set(body["hedge_ratios"]) == {"L1", "L2", "L3", "lstar"} and body["hedge_ratios"]["L1"]["SPY"] < 0
    assert body["factor_model"]["shares"]  # Model B is built: its factor-group shares are added


def test_all_in_spy_has_a_risk_index_of_100(client):
    body = client.post("/api/portfolio/analyze", json={"holdings": [{"ticker": "SPY", "weight": 1}]}).json()
    assert body["risk_index"] == pytest.approx(100.0)


def test_hedge_trade_list_in_dollars(client, names):
    holdings = [{"ticker": t, "weight": w} for t, w in zip(names[:3], (0.5, 0.3, 0.2), strict=True)]
    body = client.post("/api/portfolio/hedge", json={"holdings": holdings, "level": "L1", "value": 2_000_000}).json()
    assert body["level"] == "L1" and body["value"] == 2_000_000
    assert [t["etf"] for t in body["trades"]] == ["SPY"] and body["trades"][0]["side"] == "short"
    assert body["description"].startswith("short $") and body["market_beta_after"] == pytest.approx(0.0, abs=1e-9)
    assert body["risk_index_after"] < body["risk_index_before"]
    assert_error(client.post("/api/portfolio/hedge", json={"holdings": holdings, "level": "L9"}), 422)


def test_scaling_cuts_market_beta_by_the_fraction(client, names):
    holdings = [{"ticker": t, "weight": 0.5} for t in names[:2]]
    body = client.post("/api/portfolio/scale", json={"holdings": holdings, "reduce": 0.25}).json()
    assert body["exposure"] == "SPY" and body["trade"][0]["side"] == "short"
    assert body["exposure_after"] == pytest.approx(0.75 * body["exposure_before"], rel=1e-9)
    assert_error(client.post("/api/portfolio/scale", json={"holdings": holdings, "reduce": 1.5}), 422)
    assert_error(client.post("/api/portfolio/scale", json={"holdings": holdings, "exposure": "XLNOPE"}), 400)


def test_lookthrough_lists_unexpanded_etfs(client, names):
    holdings = [{"ticker": names[0], "weight": 0.6}, {"ticker": "SPY", "weight": 0.4}]
    body = client.post("/api/portfolio/lookthrough", json={"holdings": holdings}).json()
    assert body["holdings_analyzed"].startswith("2/2")
    assert {e["ticker"] for e in body["exposures"]} == {names[0], "SPY"}
    assert [u["ticker"] for u in body["unexpanded"]] == ["SPY"]  # no ETF holdings loaded in this store
    assert_error(client.post("/api/portfolio/lookthrough", json={"holdings": holdings, "benchmark": "../x"}), 422)


def test_bad_holdings_are_json_errors(client):
    assert_error(client.post("/api/portfolio/analyze", json={"holdings": []}), 422, "Validation Error")
    assert_error(client.post("/api/portfolio/analyze", json={"holdings": [{"shares": 5}]}), 422)
    assert_error(client.post("/api/portfolio/analyze", json={"holdings": [{"ticker": "A", "wieght": 1}]}), 422)
    assert_error(client.post("/api/portfolio/analyze", json={"holdings": [{"ticker": "QQQQZ", "weight": 1}]}),
                 400, "Bad Request")
    assert_error(client.post("/api/portfolio/analyze", content=b'{"holdings": [{"ticker": "A", "weight": NaN}]}',
                             headers={"content-type": "application/json"}), 422)
    assert_error(client.post("/api/portfolio/analyze", json={"holdings": [{"ticker": "SPY", "weight": 1}],
                                                             "date": "1990-01-01"}), 400)


def _fingerprint(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_holdings_are_never_written_to_the_store_or_logged(client, store, names, caplog):
    before = _fingerprint(store.root)
    marker = "PRIVQX"  # an unknown symbol: it can only come from the request body
    holdings = [{"ticker": names[0], "shares": 1234}, {"ticker": names[1], "weight": 0.3},
                {"ticker": marker, "shares": 7}, {"cusip": "037833100", "market_value": 999}]
    weights = [{"ticker": names[0], "weight": 0.7}, {"ticker": marker, "weight": 0.3}]
    with caplog.at_level(logging.DEBUG):
        calls = (("analyze", {}), ("hedge", {"level": "L3"}), ("scale", {"reduce": 0.5}), ("lookthrough", {}))
        for path, extra in calls:
            client.post(f"/api/portfolio/{path}", json={"holdings": holdings, **extra})
        assert client.post("/api/factors/US21/risk", json={"holdings": weights}).status_code == 200
        client.post("/api/portfolio/analyze", json={"holdings": [{"ticker": marker, "weight": 1}]})  # an error path
    assert _fingerprint(store.root) == before, "a portfolio call changed the store"
    assert marker not in caplog.text and "037833100" not in caplog.text


def test_every_route_needs_a_key(store):
    pytest.importorskip("riskstrata.api.auth")
    anonymous = TestClient(create_app(store))
    assert_error(anonymous.get("/api/factors/models"), 401)
    assert_error(anonymous.post("/api/portfolio/analyze", json={"holdings": [{"ticker": "SPY", "weight": 1}]}), 401)
    assert_error(anonymous.get("/api/jobs/anything"), 401)


def test_openapi_documents_the_request_models(client):
    doc = client.get("/api/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert {"Holding", "AnalyzeRequest", "HedgeRequest", "ScaleRequest", "LookthroughRequest",
            "FactorRiskRequest", "BuildRequest"} <= set(schemas)
    for path in ("/api/factors/models", "/api/factors/{model}/build", "/api/jobs/{job_id}",
                 "/api/factors/{model}/summary", "/api/factors/{model}/correlation",
                 "/api/factors/{model}/correlation/{a}/{b}", "/api/factors/{model}/cumulative",
                 "/api/factors/{model}/exposures/{ticker}", "/api/factors/{model}/risk", "/api/portfolio/analyze",
                 "/api/portfolio/hedge", "/api/portfolio/scale", "/api/portfolio/lookthrough"):
        assert path in doc["paths"], path
