"""Benchmark: the latency of each wire route, one request at a time, against its service call.

Store: the real S&P 500 + ETFs of ../shared/data/prices/core.parquet (mid-2014 on, cascade
built 2016 on) where that data is present, else the demo market (synthetic, 300 stocks × 6
years). The app runs in-process (FastAPI's TestClient: routing, auth, validation, JSON, no
TCP); the peer of each route is the service function that computes the same numbers, called
directly, so the table shows what the API adds to the engine and the store.

Usage: python benchmarks/bench_api_endpoints.py [--repeat 15]
Writes benchmarks/results/api_endpoints.md and .json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

from timing import timed

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SHARED = HERE.parent.parent / "shared" / "data"


def real_or_demo_store(root: Path):
    """(store, description): the real core universe where ../shared/data has it, else the demo market."""
    from riskstrata.data.ingest import ingest_classifications, ingest_prices
    from riskstrata.data.registry import EtfRegistry
    from riskstrata.data.store import Store
    from riskstrata.data.synthetic import synthetic_market
    from riskstrata.services.cascade import build_cascade
    from riskstrata.services.demo import load_synthetic_into_store

    store = Store(root / "store")
    if (SHARED / "prices" / "core.parquet").exists():
        px = pd.read_parquet(SHARED / "prices" / "core.parquet", filters=[("date", ">=", pd.Timestamp("2014-06-01"))])
        px = px[~px["ticker"].str.startswith("^")]
        px.to_parquet(root / "core.parquet", index=False)
        ingest_prices(store, [root / "core.parquet"], etf_tickers=set(EtfRegistry.default().known_etfs()))
        ingest_classifications(store, SHARED / "reference" / "gics_current.csv")
        build_cascade(store, start="2016-01-01")
        return store, "real S&P 500 + ETFs (core.parquet, cascade 2016 on)"
    load_synthetic_into_store(store, synthetic_market(n_stocks=300, n_days=6 * 252, seed=7))
    build_cascade(store)
    return store, "demo market (synthetic, 300 stocks × 6 years; ../shared/data absent)"




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from riskstrata.api.app import create_app
    from riskstrata.api.auth import create_key
    from riskstrata.api.settings import ApiSettings
    from riskstrata.services import cascade
    from riskstrata.services.portfolio import analyze_portfolio

    with tempfile.TemporaryDirectory() as tmp:
        store, description = real_or_demo_store(Path(tmp))
        key = create_key(store, "bench")
        began = time.perf_counter()
        with TestClient(create_app(store, ApiSettings(rate_limit=0)), headers={"Authorization": f"Bearer {key}"}) as c:
            startup_s = time.perf_counter() - began
            tickers = [t for t in c.get("/api/tickers").json()["tickers"]][:100]
            t = "AAPL" if "AAPL" in tickers else tickers[0]
            end = pd.Timestamp(store.model_meta(cascade.MODEL)["end"])
            year, five = end - pd.DateOffset(years=1), end - pd.DateOffset(years=5)

            def ok(resp):
                assert resp.status_code == 200, resp.text[:300]
                return resp

            plan = [
                ("GET /metrics/{T}", lambda: ok(c.get(f"/api/metrics/{t}")), lambda: cascade.metrics(store, t)),
                ("POST /decompose", lambda: ok(c.post("/api/decompose", json={"ticker": t})),
                 lambda: cascade.decompose(store, t)),
                ("GET /ticker-returns (1 y)", lambda: ok(c.get("/api/ticker-returns", params={"ticker": t})),
                 lambda: cascade.history(store, t, year, end, ["returns_gross", "l3_mkt_hr"])),
                ("GET /l3-decomposition (5 y)",
                 lambda: ok(c.get("/api/l3-decomposition", params={"ticker": t, "years": 5})),
                 lambda: cascade.history(store, t, five, end, ["l3_mkt_hr", "l3_mkt_er"])),
                ("GET /lstar (θ = 0.02)", lambda: ok(c.get("/api/lstar", params={"ticker": t, "threshold": 0.02})),
                 lambda: cascade.lstar_history(store, t, 0.02, year, end)),
                ("POST /batch/analyze (100, latest)", lambda: ok(c.post("/api/batch/analyze", json={"tickers": tickers})),
                 lambda: cascade.latest_metrics(store)),
                ("POST /batch/analyze (100, + returns)",
                 lambda: ok(c.post("/api/batch/analyze", json={"tickers": tickers, "metrics": ["returns"]})),
                 lambda: [cascade.history(store, x, year, end, ["returns_gross"]) for x in tickers]),
                ("POST /portfolio/risk-index (50)",
                 lambda: ok(c.post("/api/portfolio/risk-index",
                                   json={"positions": [{"ticker": x, "weight": 0.02} for x in tickers[:50]]})),
                 lambda: analyze_portfolio(store, {x: 0.02 for x in tickers[:50]})),
            ]
            rows = []
            for name, route, peer in plan:
                rows.append({"route": name, "api": timed(route, args.repeat), "service": timed(peer, args.repeat)})
                print(f"{name}: API p50 {rows[-1]['api']['p50_ms']:.1f} ms, service p50 "
                      f"{rows[-1]['service']['p50_ms']:.1f} ms")

    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "store": description, "repeat": args.repeat,
              "startup_s": startup_s, "machine": {"arch": platform.machine(), "python": platform.python_version()},
              "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "api_endpoints.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Wire routes, one request at a time, against their service calls", "",
             f"- store: {result['store']}; app in-process (TestClient), auth on, {args.repeat} timed calls each "
             "after one warm-up",
             f"- server start (loading the published version into memory): {startup_s:.2f} s",
             "- peer: the service function computing the same numbers, called directly (what the API adds to "
             "the engine and the store)", "",
             "| route | API p50 ms | API max ms | service p50 ms | API / service |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['route']} | {r['api']['p50_ms']:.1f} | {r['api']['max_ms']:.1f} | "
                     f"{r['service']['p50_ms']:.1f} | {r['api']['p50_ms'] / r['service']['p50_ms']:.2f} |")
    lines += ["", "Below 1: the route answers from the version held in memory where the service reads the store. "
              "The batch-with-returns peer is the per-ticker history the route replaces with one scan.", "",
              "Reproduce: `python benchmarks/bench_api_endpoints.py`.", ""]
    (RESULTS / "api_endpoints.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
