"""The wire API over the real S&P 500 store (../shared/data; skipped where it is absent).

What synthetic data cannot show: both GOOG and GOOGL listed (each answers for itself), tickers
with a hyphen (BRK-B, BF-B), ~500 stocks and the sector ETFs, real gaps and flags. Every name
of the universe is asked for once; its body must parse as strict JSON and carry the service's
numbers; a 100-ticker batch with unknown names in it answers each one.
"""

from __future__ import annotations

import json
import math

import pytest
from fastapi.testclient import TestClient

from riskstrata.api.app import create_app
from riskstrata.api.auth import create_key
from riskstrata.api.settings import ApiSettings
from riskstrata.data.store import Store
from riskstrata.services import cascade
from tests.shared_builds import private_copy

pytestmark = pytest.mark.realdata
FIELDS = ("l1_mkt_hr", "l2_mkt_hr", "l2_sec_hr", "l3_mkt_hr", "l3_sec_hr", "l3_sub_hr", "l3_mkt_er", "l3_sec_er",
          "l3_sub_er", "l3_res_er", "vol_23d", "lstar_level")


@pytest.fixture(scope="module")
def client(real_store: Store, tmp_path_factory: pytest.TempPathFactory):
    # The run's real store is shared by every worker: the key goes into this module's own copy.
    store = Store(private_copy(real_store.root, tmp_path_factory.mktemp("wire-real") / "store"))
    key = create_key(store, "real-data-tests")
    with TestClient(create_app(store, ApiSettings(rate_limit=0)), headers={"Authorization": f"Bearer {key}"}) as c:
        yield c


@pytest.fixture(scope="module")
def universe(client) -> list[str]:
    return client.get("/api/tickers").json()["tickers"]


def _strict(text: str) -> dict:
    """Parse refusing NaN/Infinity, as a strict JSON reader would."""
    def refuse(token: str) -> float:
        raise AssertionError(f"{token} in a JSON body")
    return json.loads(text, parse_constant=refuse)


def _same(got: object, want: object) -> bool:
    if want is None or got is None:
        return got is None and want is None
    return math.isclose(float(got), float(want), rel_tol=1e-12, abs_tol=1e-15)


def test_share_classes_and_hyphenated_tickers_answer_for_themselves(client):
    for ticker in ("GOOG", "GOOGL", "BRK-B", "BF-B"):
        resp = client.get(f"/api/metrics/{ticker}")
        assert resp.status_code == 200, (ticker, resp.text)
        body = resp.json()
        assert body["ticker"] == ticker and body["meta"]["resolved_ticker"] == ticker
    goog, googl = (client.get(f"/api/metrics/{t}").json()["metrics"] for t in ("GOOG", "GOOGL"))
    assert goog["l3_res_er"] != googl["l3_res_er"]  # two listings, two rows


def test_every_name_of_the_universe_has_the_services_numbers(client, real_store, universe):
    assert len(universe) > 450
    latest = cascade.latest_metrics(real_store)
    mismatches = []
    for ticker in universe:
        resp = client.get(f"/api/metrics/{ticker}")
        assert resp.status_code == 200, (ticker, resp.text[:200])
        body = _strict(resp.text)
        want = latest[ticker]
        mismatches += [(ticker, f) for f in FIELDS if not _same(body["metrics"][f], want[f])]
        ers = [body["metrics"][f] for f in ("l3_mkt_er", "l3_sec_er", "l3_sub_er", "l3_res_er")]
        if all(e is not None for e in ers):
            assert sum(ers) == pytest.approx(1.0, abs=1e-9), ticker
    assert not mismatches, mismatches[:10]


def test_a_batch_of_100_real_names_and_unknowns_answers_each(client, universe):
    asked = universe[:98] + ["NOSUCH", "ZZZZ1"]
    resp = client.post("/api/batch/analyze", json={"tickers": asked, "metrics": ["full_metrics", "hedge_ratios"]})
    assert resp.status_code == 200
    body = _strict(resp.text)
    assert list(body["results"]) == asked
    assert body["summary"] == {"total": 100, "success": 98, "errors": 2}
    assert {body["results"][t]["status"] for t in ("NOSUCH", "ZZZZ1")} == {"error"}
    for t in universe[:98]:
        entry = body["results"][t]
        assert entry["hedge_ratios"]["l3_market"] == entry["full_metrics"]["l3_mkt_hr"]


def test_a_years_history_has_arrays_the_length_of_its_dates(client, real_store):
    body = _strict(client.get("/api/l3-decomposition", params={"ticker": "AAPL", "years": 1}).text)
    n = len(body["dates"])
    assert 240 <= n <= 260
    assert all(len(v) == n for v in body.values() if isinstance(v, list))
    history = cascade.history(real_store, "AAPL", body["dates"][0], body["dates"][-1], ["l3_mkt_hr"])
    assert len(history) == n
    assert body["l3_market_hr"] == pytest.approx(history["l3_mkt_hr"].tolist(), rel=1e-12)
