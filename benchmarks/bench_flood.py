"""Benchmark (issue 12 §3): one key floods the server with heavy portfolio requests; do the others notice?

Store: the demo market of ``bench_api.py`` (300 stocks × 6 years, cascade built, in
benchmarks/.work/api_store). The script starts ``riskstrata serve`` (1 worker, auth on, per-key
rate limit off so the flood is not simply refused) twice over it:

- **peer: no gate** — ``--heavy-slots 0 --max-inflight-per-key 0``: what the server did before
  issue 12 (every heavy request runs at once on the thread pool);
- **riskstrata: gate on** — the defaults (2 heavy slots per worker, 1 per key, 64 requests in
  flight per key).

In each run a *flood* process (key ``flood``) keeps ``--flood`` connections busy with
``POST /api/portfolio/analyze`` of ``--lines`` holdings each, while the main process (key
``probe``) measures, at a steady pace, ``GET /api/health``, a small ``GET /api/metrics/{T}``
(both every 50 ms) and another key's small heavy request, a 2-name
``POST /api/portfolio/risk-index`` (every 500 ms). Target: /health and /metrics p99 < 50 ms
while the flood runs.

The clients share the server's 2 cores (and the machine is shared with other work): the
report says so and records the load average. Usage:

    python benchmarks/bench_flood.py [--duration 20] [--flood 16] [--lines 20000] [--name flood]

Writes benchmarks/results/<name>.json and benchmarks/results/<name>.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_api import RESULTS, Server, demo_store  # noqa: E402 - the same store and server harness

TARGET_P99_MS = 50.0
# label → (serve flags, whether the flood runs). The idle run is the floor this machine allows.
RUNS = {
    "idle: no flood (gate on)": ([], False),
    "peer: no gate (before issue 12)": (["--heavy-slots", "0", "--max-inflight-per-key", "0"], True),
    "riskstrata: gate on (defaults)": ([], True),
}


def _flood(base: str, key: str, body: bytes, connections: int, seconds: float, out: mp.Queue) -> None:
    """The flooding client (its own process): ``connections`` loops of heavy POSTs for ``seconds``."""
    import httpx

    async def main() -> dict:
        statuses: dict[int, int] = {}
        latencies: list[float] = []
        deadline = time.monotonic() + seconds
        headers = {"X-API-Key": key, "content-type": "application/json"}

        async def loop(client: httpx.AsyncClient) -> None:
            while time.monotonic() < deadline:
                began = time.perf_counter()
                try:
                    resp = await client.post("/api/portfolio/analyze", content=body, headers=headers,
                                             timeout=max(1.0, deadline - time.monotonic()))
                    code = resp.status_code
                    if code == 429:
                        await asyncio.sleep(float(resp.headers.get("retry-after", "1")))
                except httpx.HTTPError:
                    code = -1  # timed out at the end of the run
                statuses[code] = statuses.get(code, 0) + 1
                if code == 200:
                    latencies.append(time.perf_counter() - began)

        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(base_url=base, limits=limits, trust_env=False) as client:
            await asyncio.gather(*(loop(client) for _ in range(connections)))
        return {"statuses": statuses, "done": len(latencies),
                "p50_s": float(np.median(latencies)) if latencies else None}

    out.put(asyncio.run(main()))


async def _probe(base: str, key: str, ticker: str, names: list[str], seconds: float) -> dict:
    """Steady probes from another key; per probe the latencies (ms) and status counts."""
    import httpx

    results: dict[str, dict] = {}
    deadline = time.monotonic() + seconds

    async def loop(name: str, every: float, call) -> None:
        lat, codes = [], {}
        async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, trust_env=False, timeout=120) as c:
            while time.monotonic() < deadline:
                began = time.perf_counter()
                try:
                    code = (await call(c)).status_code
                except httpx.HTTPError:
                    code = -1
                took = time.perf_counter() - began
                lat.append(1000 * took)
                codes[code] = codes.get(code, 0) + 1
                await asyncio.sleep(max(0.0, every - took))
        arr = np.array(lat)
        results[name] = {"n": len(lat), "statuses": codes, "p50_ms": float(np.percentile(arr, 50)),
                         "p99_ms": float(np.percentile(arr, 99)), "max_ms": float(arr.max())}

    positions = [{"ticker": t, "weight": 1.0} for t in names]
    await asyncio.gather(
        loop("GET /api/health", 0.05, lambda c: c.get("/api/health")),
        loop(f"GET /api/metrics/{{T}} ({ticker})", 0.05, lambda c: c.get(f"/api/metrics/{ticker}")),
        loop("POST /api/portfolio/risk-index (2 names, another key)", 0.5,
             lambda c: c.post("/api/portfolio/risk-index", json={"positions": positions})))
    return results


def run(args: argparse.Namespace) -> dict:
    from riskstrata.api.auth import create_key
    from riskstrata.data.store import Store

    root, tickers, described = demo_store(False)
    store = Store(root)
    flood_key, probe_key = create_key(store, "flood", replace=True), create_key(store, "probe", replace=True)
    lines = [{"ticker": tickers[i % len(tickers)], "shares": 10 + i % 97} for i in range(args.lines)]
    body = json.dumps({"holdings": lines}).encode()
    report = {"store": described, "lines": args.lines, "body_bytes": len(body), "flood_connections": args.flood,
              "duration_s": args.duration, "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}", "runs": {}}
    for label, (flags, flooding) in RUNS.items():
        server = _Serve(root, flags)
        try:
            server.wait_ready()
            import httpx
            warm = httpx.post(f"{server.base}/api/portfolio/analyze", content=body, timeout=600, trust_env=False,
                              headers={"X-API-Key": probe_key, "content-type": "application/json"})
            one = warm.elapsed.total_seconds()
            load = os.getloadavg()[0]
            queue: mp.Queue = mp.Queue()
            flood = mp.Process(target=_flood, args=(server.base, flood_key, body, args.flood, args.duration, queue))
            if flooding:
                flood.start()
                time.sleep(1.0)  # the flood is under way before the probes start
            probes = asyncio.run(_probe(server.base, probe_key, tickers[0], tickers[1:3], args.duration - 1.0))
            flood_result = queue.get(timeout=900) if flooding else {"statuses": {}, "done": 0, "p50_s": None}
            if flooding:
                flood.join(timeout=60)
            report["runs"][label] = {"flags": " ".join(flags) or "(defaults)", "one_request_alone_s": one,
                                     "load_avg_1m_before": load, "probes": probes, "flood": flood_result}
            print(label, json.dumps(report["runs"][label], indent=1), file=sys.stderr)
        finally:
            server.stop()
    return report


class _Serve(Server):
    """``riskstrata serve`` with extra flags (bench_api's Server, with the gate flags appended)."""

    def __init__(self, root: Path, flags: list[str]) -> None:
        import subprocess
        import tempfile

        from bench_api import HOST, free_port

        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        cmd = [sys.executable, "-m", "riskstrata.cli", "serve", "--store", str(root), "--host", HOST,
               "--port", str(self.port), "--workers", "1", "--rate-limit", "0", "--log-level", "warning", *flags]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.command = " ".join(cmd[1:])


def write(report: dict, name: str = "flood") -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
    out = ["# One key floods, the others are served (issue 12 §3)", "",
           f"`python benchmarks/bench_flood.py --duration {report['duration_s']:g} --flood "
           f"{report['flood_connections']} --lines {report['lines']} --name {name}` on {report['machine']}; {report['store']}.",
           f"One flooding key keeps {report['flood_connections']} connections busy with `POST /api/portfolio/analyze` "
           f"of {report['lines']:,} holdings ({report['body_bytes'] / 1e6:.2f} MB each) for {report['duration_s']:g} s; "
           "another key probes at a steady pace. 1 worker, auth on, per-key rate limit off. The clients run on the "
           "same 2 cores as the server, on a machine shared with other work: figures are noisy (the load average "
           "before each run is given).", ""]
    out += ["| run | probe | n | p50 ms | p99 ms | max ms | statuses |", "|---|---|---|---|---|---|---|"]
    for label, r in report["runs"].items():
        for probe, p in r["probes"].items():
            out.append(f"| {label} | {probe} | {p['n']} | {p['p50_ms']:.1f} | **{p['p99_ms']:.1f}** | "
                       f"{p['max_ms']:.0f} | {p['statuses']} |")
    out += ["", "| run | flags | load avg before | one analyze alone | flood: answers | flood: median 200 |",
            "|---|---|---|---|---|---|"]
    for label, r in report["runs"].items():
        f = r["flood"]
        med = f"{f['p50_s']:.2f} s" if f["p50_s"] is not None else "—"
        out.append(f"| {label} | `{r['flags']}` | {r['load_avg_1m_before']:.2f} | {r['one_request_alone_s']:.2f} s | "
                   f"{f['statuses']} | {med} |")
    gate = report["runs"].get("riskstrata: gate on (defaults)", {}).get("probes", {})
    ok = all(p["p99_ms"] < TARGET_P99_MS for n, p in gate.items() if not n.startswith("POST"))
    out += ["", f"Target: /health and /metrics p99 < {TARGET_P99_MS:g} ms during the flood with the gate on: "
            f"**{'met' if ok else 'missed'}**."]
    (RESULTS / f"{name}.md").write_text("\n".join(out) + "\n")
    print("\n".join(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--flood", type=int, default=16, help="connections of the flooding key")
    parser.add_argument("--lines", type=int, default=20_000, help="holdings per flood request")
    parser.add_argument("--name", default="flood", help="results file name (without extension)")
    args = parser.parse_args()
    write(run(args), args.name)


if __name__ == "__main__":
    main()
