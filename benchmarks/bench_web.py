"""Benchmark: the dashboard's server time per page and its weight, on the real S&P 500 store.

Store: the real S&P 500 + ETFs of ../shared/data/prices/core.parquet (mid-2014 on, cascade built
2016 on), GICS and the fundamentals snapshots, with Model B (US21) built — where that data is
present; else the demo market (synthetic, 300 stocks × 6 years). ``--store PATH`` reuses a
store built before (both models built).

The app runs in-process (FastAPI's TestClient: routing, access check, services, templates,
gzip; no TCP), so the times are the server's. Each page is asked once to warm up (the first load
of a model version: reading it into memory, rendering a model's page once) and then timed.
Stock pages are timed twice: the same ticker again (served from the page cache of the version)
and a first view of each of 20 other tickers (rendered for that request). The peer of each page
is the service call computing its numbers, called directly, so the table shows what the page
adds (figures, template, compression).

Usage: python benchmarks/bench_web.py [--repeat 15] [--store PATH]
Writes benchmarks/results/web.md and .json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

from timing import timed

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SHARED = HERE.parent.parent / "shared" / "data"
TARGET_MS = 150.0


def build_store(root: Path):
    """(store, description): the real core universe with fundamentals, cascade and US21 built;
    the demo market where ../shared/data is absent."""
    from riskstrata.data.fundamentals import ingest_fundamentals
    from riskstrata.data.ingest import ingest_classifications, ingest_prices
    from riskstrata.data.registry import EtfRegistry
    from riskstrata.data.store import Store
    from riskstrata.services import factors
    from riskstrata.services.cascade import build_cascade
    from riskstrata.services.demo import run_demo

    store = Store(root / "store")
    if not (SHARED / "prices" / "core.parquet").exists():
        run_demo(store)
        return store, "demo market (synthetic, 300 stocks × 6 years; ../shared/data absent)"
    px = pd.read_parquet(SHARED / "prices" / "core.parquet", filters=[("date", ">=", pd.Timestamp("2014-06-01"))])
    px = px[~px["ticker"].str.startswith("^")]
    px.to_parquet(root / "core.parquet", index=False)
    ingest_prices(store, [root / "core.parquet"], etf_tickers=set(EtfRegistry.default().known_etfs()))
    ingest_classifications(store, SHARED / "reference" / "gics_current.csv")
    ingest_fundamentals(store, SHARED / "fundamentals" / "snapshots.parquet")
    build_cascade(store, start="2016-01-01")
    factors.build_factor_model(store, "US21")
    return store, "real S&P 500 + ETFs (core.parquet 2014 on, cascade 2016 on, US21 on the fundamentals snapshots)"




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--store", type=Path, help="a store with the cascade and US21 built (skips the build)")
    args = ap.parse_args()

    os.environ["RISKSTRATA_WEB_HOST"] = "127.0.0.1"  # a loopback server: pages open, as `make run` serves them
    from fastapi.testclient import TestClient

    from riskstrata.api.app import create_app
    from riskstrata.api.settings import ApiSettings
    from riskstrata.data.store import Store
    from riskstrata.services import dashboard as D
    from riskstrata.services import factors
    from riskstrata.services.cascade import MODEL

    with tempfile.TemporaryDirectory() as tmp:
        if args.store:
            store, description = Store(args.store), f"store at {args.store}"
        else:
            store, description = build_store(Path(tmp))
        began = time.perf_counter()
        with TestClient(create_app(store, ApiSettings(rate_limit=0)), headers={"Accept-Encoding": "gzip"}) as c:
            startup_s = time.perf_counter() - began
            meta = store.model_meta(MODEL)
            published = c.app.state.riskstrata.current()
            stocks = [t for t in published.universe.rows.index[published.universe.rows["asset_type"] == "stock"]
                      if t in published.latest]
            t = "AAPL" if "AAPL" in stocks else stocks[0]
            others = [x for x in stocks if x != t][:: max(1, len(stocks) // 20)][:20]
            latest = factors.load_latest(store, "US21")
            lo, hi, _ = D.period_bounds(meta["start"], meta["end"], "1y", None, None)
            sample = c.get("/portfolio/sample.csv").text

            def ok(resp):
                assert resp.status_code == 200, resp.text[:300]
                return resp

            first = {}

            def first_load(path: str) -> float:
                t0 = time.perf_counter()
                ok(c.get(path))
                first[path] = 1e3 * (time.perf_counter() - t0)
                return first[path]

            for path in ("/", f"/stock/{t}", "/factors/US21", "/portfolio"):
                first_load(path)
            fresh = iter(others * (args.repeat + 1))
            form = {"holdings": sample, "value": "1000000", "action": "analyze"}
            plan = [
                ("GET / (home)", "/", lambda: ok(c.get("/")), lambda: D.models_status(store)),
                (f"GET /stock/{t} (1 y, again)", f"/stock/{t}", lambda: ok(c.get(f"/stock/{t}")),
                 lambda: D.stock_view(store, t, lo, hi, published.latest[t][0], latest)),
                ("GET /stock/{T} (1 y, first view of 20 others)", None, lambda: ok(c.get(f"/stock/{next(fresh)}")),
                 lambda: D.stock_view(store, (x := next(fresh)), lo, hi, published.latest[x][0], latest)),
                ("GET /factors/US21", "/factors/US21", lambda: ok(c.get("/factors/US21")),
                 lambda: D.factor_view(store, latest)),
                ("GET /factors/US21/pair (selector, JSON)", "/factors/US21/pair?a=SIZE&b=VALUE",
                 lambda: ok(c.get("/factors/US21/pair", params={"a": "SIZE", "b": "VALUE"})),
                 lambda: D.pair_view(latest, "SIZE", "VALUE")),
                ("GET /portfolio (form)", "/portfolio", lambda: ok(c.get("/portfolio")), lambda: None),
                (f"POST /portfolio (sample, {len(sample.splitlines()) - 1} lines)", None,
                 lambda: ok(c.post("/portfolio", data=form)),
                 lambda: D.portfolio_view(store, D.holdings_from_text(sample), 1_000_000.0)),
            ]
            rows = []
            for name, path, page, peer in plan:
                resp = page()
                raw = len(resp.content)
                packed = len(gzip.compress(resp.content, 5))
                row = {"page": name, "server": timed(page, args.repeat, warm=False),
                       "service": timed(peer, max(3, args.repeat // 3)),
                       "html_kb": raw / 1e3, "gzip_kb": packed / 1e3, "first_load_ms": first.get(path)}
                rows.append(row)
                print(f"{name}: p50 {row['server']['p50_ms']:.1f} ms (max {row['server']['max_ms']:.1f}), "
                      f"service {row['service']['p50_ms']:.1f} ms, {row['html_kb']:.0f} kB ({row['gzip_kb']:.0f} kB gz)")
            assets = {}
            for name in ("plotly.min.js", "app.js", "style.css"):
                data = c.get(f"/static/{name}", headers={"Accept-Encoding": "identity"}).content
                assets[name] = {"kb": len(data) / 1e3, "gzip_kb": len(gzip.compress(data, 6)) / 1e3}

    load = os.getloadavg()
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "store": description, "repeat": args.repeat,
              "startup_s": startup_s, "target_ms": TARGET_MS, "load_average": load,
              "machine": {"arch": platform.machine(), "python": platform.python_version(), "cores": os.cpu_count()},
              "rows": rows, "assets": assets}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "web.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Dashboard pages: server time and weight", "",
             f"- store: {result['store']}; app in-process (TestClient: routing, access check, services, "
             f"templates, gzip), {args.repeat} timed requests per page after a first load",
             f"- server start (loading the published cascade version): {startup_s:.2f} s; machine: "
             f"{os.cpu_count()} cores shared with other work (load average {load[0]:.1f} at the end: the times "
             "are noisy upward)",
             "- peer: the service call computing the page's numbers, called directly (with the same in-memory "
             "model version the server holds)",
             f"- goal: ≤ {TARGET_MS:.0f} ms per page after the first load of a model version", "",
             "| page | server p50 ms | max ms | first load ms | service p50 ms | HTML kB | gzip kB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        fl = f"{r['first_load_ms']:.0f}" if r["first_load_ms"] is not None else "—"
        lines.append(f"| {r['page']} | {r['server']['p50_ms']:.1f} | {r['server']['max_ms']:.1f} | {fl} | "
                     f"{r['service']['p50_ms']:.1f} | {r['html_kb']:.0f} | {r['gzip_kb']:.0f} |")
    lines += ["", "Shared assets (downloaded once, then cached by the browser for a day):", "",
              "| asset | kB | gzip kB |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['kb']:.0f} | {v['gzip_kb']:.0f} |" for k, v in assets.items()]
    lines += ["", "A model's pages are rendered once per version and kept (LRU of 256 stock pages per worker): "
              "'again' is that cache; a first view of a stock reads its year of rows (one scan) and renders. "
              "The portfolio POST is computed for its request and kept nowhere (holdings are never stored): "
              "its time is the portfolio service's.", "",
              "Reproduce: `python benchmarks/bench_web.py` (or `--store PATH` with both models built).", ""]
    (RESULTS / "web.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
