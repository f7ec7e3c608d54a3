"""Benchmark: the portfolio routes served from the worker's held version, against the store path.

Store: the real S&P 500 + ETFs of ../shared/data (prices 2014 on, cascade 2016 on, Model B US21
on the fundamentals snapshots), built as benchmarks/bench_web.py builds it; the demo market where
that data is absent. The app runs in-process (FastAPI's TestClient: routing, auth, validation,
JSON, no TCP). Peer of each route, in the same run: the service call on the store path — what
the CLI does and what every route did before (the store read on every call) — and, for scale,
the same service given the held context.

Also counted: store reads during one 50-name ``POST /api/portfolio/risk-index`` (the real
store's read methods wrapped with a counter).

Usage: python benchmarks/bench_portfolio_routes.py [--repeat 15] [--store PATH]
Writes benchmarks/results/portfolio_routes.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from timing import conditions, timed

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TARGET_MS = 20.0
READS = ("read_table", "read_model", "query", "model_meta", "current_version", "versions", "model_files",
         "has_table")




def store_reads(store_cls, call: Callable[[], object]) -> list[str]:
    """The Store read methods ``call`` invokes (the real methods, counted)."""
    calls: list[str] = []
    saved = {name: getattr(store_cls, name) for name in READS}
    for name, real in saved.items():
        def counted(self, *a, _real=real, _name=name, **kw):
            calls.append(_name)
            return _real(self, *a, **kw)
        setattr(store_cls, name, counted)
    try:
        call()
    finally:
        for name, real in saved.items():
            setattr(store_cls, name, real)
    return calls




# The same routes before the array work of issue 15's second pass (this benchmark's run committed
# in 8f97e43, store at /tmp/pfreal2/store, load 0.7-1.4): route p50 / held service p50, ms.
BEFORE_MS = {"risk-index": (25.9, 21.5), "analyze": (28.2, 22.0), "hedge": (33.4, 28.3), "scale": (34.7, 28.9),
             "exposure": (33.0, 28.8), "50 lines": (32.5, 27.4), "sample": (31.3, 25.2)}


def timed_cpu(call: Callable[[], object], repeat: int) -> dict:
    """timed() plus the process's CPU time per call (all threads: the app runs on the test
    client's portal thread), the steadier figure while other work shares the cores."""
    call()
    wall, cpu = [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        call()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    return {"p50_ms": 1e3 * float(np.median(wall)), "max_ms": 1e3 * max(wall), "cpu_p50_ms": 1e3 * float(np.median(cpu)),
            "n": repeat}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--store", type=Path, help="a store with the cascade (and US21) built: skips the build")
    args = ap.parse_args()

    os.environ["RISKSTRATA_WEB_HOST"] = "127.0.0.1"  # a loopback server: pages open, as `make run` serves them
    from bench_web import build_store
    from fastapi.testclient import TestClient

    from riskstrata.api.app import create_app
    from riskstrata.api.auth import create_key
    from riskstrata.api.settings import ApiSettings
    from riskstrata.data.store import Store
    from riskstrata.services import dashboard as D
    from riskstrata.services import portfolio as svc

    with tempfile.TemporaryDirectory() as tmp:
        if args.store:
            store, description = Store(args.store), f"store at {args.store}"
        else:
            store, description = build_store(Path(tmp))
        key = create_key(store, "bench-portfolio", replace=True)
        before = conditions()
        began = time.perf_counter()
        with TestClient(create_app(store, ApiSettings(rate_limit=0)),
                        headers={"Authorization": f"Bearer {key}"}) as c:
            pub = c.app.state.riskstrata.current()
            startup_s = time.perf_counter() - began
            held = pub.portfolio
            rows = pub.universe.rows
            stocks = [t for t in rows.index[(rows["asset_type"] == "stock") & rows["sector_etf"].notna()]
                      if t in pub.latest]
            names = [stocks[int(i)] for i in np.linspace(0, len(stocks) - 1, 50)]
            weights = {t: 1 / 50 for t in names}
            signed = {t: (1 if i % 4 else -1) * 20_000.0 * (1 + i % 5) for i, t in enumerate(names)}
            book = pd.DataFrame({"ticker": list(signed), "market_value": list(signed.values())})
            holdings = [{"ticker": t, "weight": w} for t, w in weights.items()]
            csv = "ticker,market_value\n" + "".join(f"{t},{abs(v):.0f}\n" for t, v in signed.items())
            form = {"holdings": csv, "value": "1000000", "action": "analyze"}
            sample = c.get("/portfolio/sample.csv").text  # the page's own sample (bench_web.py's row)
            sample_form = {"holdings": sample, "value": "1000000", "action": "analyze"}

            def ok(resp):
                assert resp.status_code == 200, resp.text[:300]
                return resp

            reads = store_reads(Store, lambda: ok(c.post("/api/portfolio/risk-index",
                                                          json={"positions": holdings})))
            plan = [
                ("POST /api/portfolio/risk-index (50)",
                 lambda: ok(c.post("/api/portfolio/risk-index", json={"positions": holdings})),
                 lambda: svc.analyze_portfolio(store, weights),
                 lambda: svc.analyze_portfolio(store, weights, held=held)),
                ("POST /api/portfolio/analyze (50)",
                 lambda: ok(c.post("/api/portfolio/analyze", json={"holdings": holdings, "value": 1e6})),
                 lambda: svc.analyze_portfolio(store, weights, None, 1e6),
                 lambda: svc.analyze_portfolio(store, weights, None, 1e6, held=held)),
                ("POST /api/portfolio/hedge (50, L3)",
                 lambda: ok(c.post("/api/portfolio/hedge", json={"holdings": holdings, "level": "L3"})),
                 lambda: svc.hedge_portfolio(store, weights, "L3"),
                 lambda: svc.hedge_portfolio(store, weights, "L3", held=held)),
                ("POST /api/portfolio/scale (50, market ½)",
                 lambda: ok(c.post("/api/portfolio/scale", json={"holdings": holdings, "exposure": "market"})),
                 lambda: svc.scale_portfolio(store, weights, "market", 0.5),
                 lambda: svc.scale_portfolio(store, weights, "market", 0.5, held=held)),
                ("POST /api/portfolio/exposure (50, long/short)",
                 lambda: ok(c.post("/api/portfolio/exposure",
                                   json={"positions": [{"ticker": t, "value": v} for t, v in signed.items()]})),
                 lambda: svc.book_exposure_report(store, book),
                 lambda: svc.book_exposure_report(store, book, held=held)),
                ("POST /portfolio (dashboard page, 50 lines)",
                 lambda: ok(c.post("/portfolio", data=form)),
                 lambda: D.portfolio_view(store, D.holdings_from_text(csv), 1e6),
                 lambda: D.portfolio_view(store, D.holdings_from_text(csv), 1e6, held=held)),
                (f"POST /portfolio (dashboard page, sample, {len(sample.splitlines()) - 1} lines)",
                 lambda: ok(c.post("/portfolio", data=sample_form)),
                 lambda: D.portfolio_view(store, D.holdings_from_text(sample), 1e6),
                 lambda: D.portfolio_view(store, D.holdings_from_text(sample), 1e6, held=held)),
            ]
            results = []
            for name, route, peer, mem in plan:
                r = {"route": name, "api": timed_cpu(route, args.repeat),
                     "store_path": timed(peer, max(3, args.repeat // 3)), "held_service": timed_cpu(mem, args.repeat)}
                results.append(r)
                print(f"{name}: route p50 {r['api']['p50_ms']:.1f} ms, service on the store path "
                      f"{r['store_path']['p50_ms']:.0f} ms, service held {r['held_service']['p50_ms']:.1f} ms",
                      flush=True)
            factor_built = held.factor_model() is not None
    after = conditions()
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "store": description, "repeat": args.repeat,
              "startup_s": startup_s, "store_reads_per_risk_index": len(reads), "model_b_built": factor_built,
              "conditions": {"before": before, "after": after},
              "machine": {"arch": platform.machine(), "python": platform.python_version()}, "rows": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "portfolio_routes.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Portfolio routes from the worker's held version, against the store path", "",
             f"- store: {description}; Model B (US21) built: {factor_built}",
             f"- app in-process (TestClient), auth on; {args.repeat} timed calls per route after one warm-up "
             f"({max(3, args.repeat // 3)} for the store path)",
             f"- server start (loading the published version, its portfolio context and nothing else): "
             f"{startup_s:.2f} s",
             f"- store reads during one 50-name risk-index request: **{len(reads)}**"
             + (f" ({', '.join(sorted(set(reads)))})" if reads else ""),
             "- peer: the same service on the store path (the CLI's; what each route did before), in the same run",
             f"- conditions: shared {after['cpus']}-core machine, other work running; load average (1/5/15 min) "
             f"{before['load_avg_1_5_15']} before, {after['load_avg_1_5_15']} after — numbers are noisy",
             f"- goal: a 50-name risk-index ≤ {TARGET_MS:.0f} ms", "",
             "| route | route p50 ms (CPU) | route max ms | before: route / held p50 ms | service, store path p50 ms | "
             "service, held p50 ms (CPU) | store path / route |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        before = next((v for k, v in BEFORE_MS.items() if k in r["route"]), None)
        lines.append(f"| {r['route']} | {r['api']['p50_ms']:.1f} ({r['api']['cpu_p50_ms']:.1f}) | "
                     f"{r['api']['max_ms']:.1f} | {before[0]:.1f} / {before[1]:.1f} | "
                     f"{r['store_path']['p50_ms']:.0f} | {r['held_service']['p50_ms']:.1f} "
                     f"({r['held_service']['cpu_p50_ms']:.1f}) | {r['store_path']['p50_ms'] / r['api']['p50_ms']:.0f}× |")
    lines += ["", "The route's time includes routing, auth, validation and JSON; the held service is the "
              "same call the route makes. The dashboard page also renders its figures and HTML. CPU: the "
              "process's CPU seconds per call (p50), all threads. 'Before': this benchmark's run committed in "
              "8f97e43, before the services' per-request pandas work was moved onto arrays (read_holdings, "
              "matching, the four levels' hedge ratios, the ETF covariance, portfolio_risk, trade lists) "
              "with every number bit-identical.", "",
              "Reproduce: `python benchmarks/bench_portfolio_routes.py` (add `--store PATH` to reuse a built store).",
              ""]
    (RESULTS / "portfolio_routes.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
