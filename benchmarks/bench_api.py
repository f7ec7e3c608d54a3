"""Benchmark: the REST API under load, served by real uvicorn workers on the loopback interface.

Store: the demo market (synthetic, 300 stocks × 6 years, seed 7) ingested and built with the
cascade in benchmarks/.work/api_store (kept between runs; --fresh rebuilds it). For 1 and 2
workers the script starts ``riskstrata serve`` on a free 127.0.0.1 port with auth on (a key
made with riskstrata.api.auth.create_key) and the per-key rate limit off, and drives it with
64 concurrent connections for 30 s per endpoint:

- ``GET /api/metrics/{T}`` over random tickers of the universe;
- ``POST /api/batch/analyze`` with 100 random tickers (``full_metrics`` + ``hedge_ratios``,
  what ``riskmodels-py``'s ``analyze_portfolio`` sends); also one connection alone, for the
  latency of a single batch without queueing;
- the peer: ``benchmarks/bare_fastapi.py`` (a constant-JSON FastAPI route, no middleware or
  data) under the same workers and load, so /metrics is also reported as a share of the
  framework's ceiling on this machine.

The load comes from ``wrk`` when it is installed (a Lua script picks the ticker per request),
otherwise from Python (asyncio + httpx, in several processes so the client is not the
bottleneck). Both run on the same machine as the server and share its cores; that is said in
the report. An endpoint that is missing (404/405 on the probe) is reported, not benchmarked.

Usage: python benchmarks/bench_api.py [--duration 30] [--connections 64] [--workers 1 2]
                                      [--driver auto|wrk|python] [--fresh]
Writes benchmarks/results/api.json and benchmarks/results/api.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
RESULTS = HERE / "results"
STORE = WORK / "api_store"
HOST = "127.0.0.1"  # loopback only: the benchmark never binds or calls anything else

METRICS_TARGET = {"rps": 2000.0, "p99_ms": 50.0, "errors": 0}
BATCH_TARGET = {"p50_ms": 25.0}
BATCH_SIZE = 100
BATCH_METRICS = ["full_metrics", "hedge_ratios"]


# ----------------------------------------------------------------------------- the store and the server


def demo_store(fresh: bool) -> tuple[Path, list[str], str]:
    """The demo market with the cascade built; returns (root, stock tickers on the last date, description)."""
    from riskstrata.data.store import Store
    from riskstrata.data.synthetic import synthetic_market
    from riskstrata.services.cascade import MODEL, build_cascade, stored_snapshot
    from riskstrata.services.demo import load_synthetic_into_store

    if fresh and STORE.exists():
        shutil.rmtree(STORE)
    store = Store(STORE)
    if store.current_version(MODEL) is None:
        print("building the demo store (300 stocks × 6 years) …", file=sys.stderr)
        load_synthetic_into_store(store, synthetic_market(n_stocks=300, n_days=6 * 252, seed=7, styles=True))
        build_cascade(store)
    snap = stored_snapshot(store)
    tickers = sorted(str(t) for t in snap.index)
    return STORE, tickers, f"demo market: {len(tickers)} tickers with a row on {store.model_meta(MODEL)['end']}"


def api_key(root: Path) -> str | None:
    """A fresh key named 'bench' when the app has key auth, else None."""
    try:
        from riskstrata.api.auth import create_key
    except ImportError:
        return None
    from riskstrata.data.store import Store

    return create_key(Store(root), "bench", replace=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """``riskstrata serve`` (or plain uvicorn where the CLI has no serve command) in a child process."""

    def __init__(self, root: Path, workers: int, auth: bool, bare: bool = False) -> None:
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        env = {**os.environ, "RISKSTRATA_STORE": str(root), "RISKSTRATA_RATE_LIMIT": "0",
               "RISKSTRATA_AUTH": "true" if auth else "false"}
        serve = [sys.executable, "-m", "riskstrata.cli", "serve", "--store", str(root), "--host", HOST,
                 "--port", str(self.port), "--workers", str(workers), "--rate-limit", "0", "--log-level", "warning"]
        if not auth:
            serve.append("--no-auth")
        has_serve = subprocess.run([sys.executable, "-m", "riskstrata.cli", "serve", "--help"],
                                   capture_output=True, env=env).returncode == 0
        if bare:  # the peer: a constant-JSON FastAPI route under the same uvicorn settings
            serve = [sys.executable, "-m", "uvicorn", "bare_fastapi:app", "--app-dir", str(HERE), "--host", HOST,
                     "--port", str(self.port), "--workers", str(workers), "--log-level", "warning",
                     "--no-access-log"]
        cmd = serve if has_serve or bare else [
            sys.executable, "-m", "uvicorn", "riskstrata.api.app:create_app", "--factory", "--host", HOST,
            "--port", str(self.port), "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.command = " ".join(cmd[1:])

    def wait_ready(self, timeout: float = 120.0, path: str = "/api/health") -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}):\n{self.output()}")
            try:
                if httpx.get(f"{self.base}{path}", timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server did not answer /api/health in {timeout:.0f}s:\n{self.output()}")

    def settle(self, limit: float = 180.0, path: str = "/api/health") -> float:
        """Wait until the backlog of the previous run is served (a light request answers in < 0.5 s)."""
        import httpx

        began = time.monotonic()
        while time.monotonic() - began < limit:
            t0 = time.monotonic()
            try:
                httpx.get(f"{self.base}{path}", timeout=5)
                if time.monotonic() - t0 < 0.5:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        return time.monotonic() - began

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)  # the server's own process group: uvicorn and its workers
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


# ----------------------------------------------------------------------------- requests


def batch_bodies(tickers: list[str], n: int = 64, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    k = min(BATCH_SIZE, len(tickers))
    return [json.dumps({"tickers": rng.sample(tickers, k), "metrics": BATCH_METRICS, "years": 1, "format": "json"})
            for _ in range(n)]


def probe(base: str, headers: dict, tickers: list[str]) -> dict[str, str | None]:
    """One request per endpoint: None when it answers 200, else why not (missing, error)."""
    import httpx

    out: dict[str, str | None] = {}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
        for name, call in (("metrics", lambda: c.get(f"/api/metrics/{tickers[0]}")),
                           ("batch", lambda: c.post("/api/batch/analyze", content=batch_bodies(tickers, 1)[0],
                                                    headers={"content-type": "application/json"}))):
            r = call()
            if r.status_code in (404, 405) and "not found" in r.text.lower() and "symbol" not in r.text.lower():
                out[name] = f"missing: {r.status_code} {r.text[:200]}"
            elif r.status_code != 200:
                out[name] = f"HTTP {r.status_code}: {r.text[:200]}"
            else:
                out[name] = None
    return out


# ----------------------------------------------------------------------------- wrk driver

_LUA = """
local tickers = {%(tickers)s}
local bodies = {%(bodies)s}
local kind = "%(kind)s"
wrk.headers["Content-Type"] = "application/json"
%(auth)s
request = function()
  if kind == "bare" then
    return wrk.format("GET", "/bare")
  end
  if kind == "health" then
    return wrk.format("GET", "/api/health")
  end
  if kind == "metrics" then
    return wrk.format("GET", "/api/metrics/" .. tickers[math.random(#tickers)])
  end
  return wrk.format("POST", "/api/batch/analyze", nil, bodies[math.random(#bodies)])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %%d, "duration_us": %%d, "non2xx": %%d, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "timeout": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d, "mean_us": %%f}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def _lua_str(s: str) -> str:
    return "[==[" + s + "]==]"


def run_wrk(base: str, headers: dict, kind: str, tickers: list[str], connections: int, duration: float) -> dict:
    script = _LUA % {"tickers": ",".join(_lua_str(t) for t in tickers),
                     "bodies": ",".join(_lua_str(b) for b in batch_bodies(tickers)),
                     "kind": kind,
                     "auth": "\n".join(f'wrk.headers["{k}"] = {_lua_str(v)}' for k, v in headers.items())}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        threads = max(1, min(connections, os.cpu_count() or 1, 4))
        proc = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(duration)}s", "--timeout", "10s",
                               "-s", f.name, base], capture_output=True, text=True, timeout=duration + 120)
    finally:
        os.unlink(f.name)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    r = json.loads(line[len("RESULT "):])
    seconds = r["duration_us"] / 1e6
    errors = {k: r[k] for k in ("non2xx", "connect", "read", "write", "timeout") if r[k]}
    # wrk records a latency only for a response within --timeout; a later one (or none) is a timeout error.
    completed = r["requests"] - r["timeout"] > 0 and r["max_us"] > 0
    ms = {f"{p}_ms": (r[f"{p}_us"] / 1e3 if completed else None) for p in ("p50", "p90", "p99", "max", "mean")}
    if r["requests"] == 0:
        errors["no response in the run"] = 1
    return {"requests": r["requests"], "seconds": seconds, "rps": r["requests"] / seconds, **ms,
            "errors": sum(errors.values()), "error_kinds": errors}


# ----------------------------------------------------------------------------- Python driver


async def _drive(base: str, headers: dict, kind: str, tickers: list[str], connections: int, duration: float,
                 seed: int) -> tuple[list[float], dict[str, int]]:
    import httpx

    rng = random.Random(seed)
    bodies = batch_bodies(tickers, seed=seed)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=10) as client:
        stop = time.perf_counter() + duration

        async def one_connection() -> None:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                try:
                    if kind == "bare":
                        r = await client.get("/bare")
                    elif kind == "health":
                        r = await client.get("/api/health")
                    elif kind == "metrics":
                        r = await client.get(f"/api/metrics/{rng.choice(tickers)}")
                    else:
                        r = await client.post("/api/batch/analyze", content=rng.choice(bodies),
                                              headers={"content-type": "application/json"})
                    await r.aread()
                    ok = r.status_code == 200
                    why = f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    ok, why = False, type(exc).__name__
                latencies.append(time.perf_counter() - t0)
                if not ok:
                    errors[why] = errors.get(why, 0) + 1

        await asyncio.gather(*(one_connection() for _ in range(connections)))
    return latencies, errors


def _drive_process(args: tuple) -> tuple[list[float], dict[str, int]]:
    return asyncio.run(_drive(*args))


def run_python(base: str, headers: dict, kind: str, tickers: list[str], connections: int, duration: float) -> dict:
    procs = max(1, min(connections, (os.cpu_count() or 2)))
    share = [connections // procs + (i < connections % procs) for i in range(procs)]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(procs) as pool:
        parts = pool.map(_drive_process, [(base, headers, kind, tickers, c, duration, i) for i, c in enumerate(share)])
    seconds = time.perf_counter() - t0
    n = sum(len(p[0]) for p in parts)
    lat = np.array([x for p in parts for x in p[0]] or [np.nan]) * 1e3
    errors: dict[str, int] = {}
    for _, e in parts:
        for k, v in e.items():
            errors[k] = errors.get(k, 0) + v
    if n == 0:
        errors["no response in the run"] = 1
    return {"requests": n, "seconds": seconds, "rps": n / duration,
            "p50_ms": float(np.percentile(lat, 50)), "p90_ms": float(np.percentile(lat, 90)),
            "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()), "mean_ms": float(lat.mean()),
            "errors": sum(errors.values()), "error_kinds": errors}


# ----------------------------------------------------------------------------- report


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f} ms"


def _versus(value: float | None, target: float, higher_is_better: bool) -> str:
    """'met' or how far off: the share of the target reached, or the multiple of the limit."""
    if value is None:
        return "no completed request"
    if (value >= target) if higher_is_better else (value < target):
        return "met"
    return f"{value / target:.0%} of the target" if higher_is_better else f"{value / target:.1f}x the limit"


def verdicts(runs: list[dict]) -> list[str]:
    out = []
    for r in runs:
        head = f"{r['workers']} worker(s), {r['endpoint']}, {r['connections']} connection(s)"
        if r.get("skipped"):
            out.append(f"{head}: not measured: {r['skipped']}")
        elif r["kind"] == "metrics":
            rps = _versus(r["rps"], METRICS_TARGET["rps"], True)
            p99 = _versus(r["p99_ms"], METRICS_TARGET["p99_ms"], False)
            ok = rps == "met" and p99 == "met" and r["errors"] == 0
            peer = next((p for p in runs if p["kind"] == "bare" and p["workers"] == r["workers"] and p.get("rps")), None)
            versus_peer = f"; {r['rps'] / peer['rps']:.0%} of the bare FastAPI peer's {peer['rps']:,.0f} req/s" if peer else ""
            out.append(f"{head}: {r['rps']:,.0f} req/s ({rps}; target >= 2,000{versus_peer}), p99 {_ms(r['p99_ms'])} "
                       f"({p99}; target < 50 ms), {r['errors']} errors: {'MET' if ok else 'MISSED'}")
        elif r["kind"] == "batch_single":
            p50 = _versus(r["p50_ms"], BATCH_TARGET["p50_ms"], False)
            ok = p50 == "met" and r["errors"] == 0
            out.append(f"{head}: p50 {_ms(r['p50_ms'])} ({p50}; target < 25 ms), {r['errors']} errors: "
                       f"{'MET' if ok else 'MISSED'}")
        else:
            out.append(f"{head}: {r['rps']:,.0f} req/s, p50 {_ms(r['p50_ms'])}, p99 {_ms(r['p99_ms'])} "
                       f"(throughput; p50 includes queueing), {r['errors']} errors")
    return out


def write_report(result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "api.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = ["# REST API load benchmark", "",
             f"- store: {result['store']}",
             f"- machine: {m['arch']}, {m['cpus']} cores, Python {m['python']}; the load generator "
             f"({result['driver']}) runs on the same cores as the server",
             f"- server: `{result['server_command']}` on {HOST} (auth on with a bench key, rate limit off, "
             "log level warning)",
             f"- load: {result['connections']} concurrent connections, {result['duration_s']:.0f} s per run; "
             f"batch = {BATCH_SIZE} random tickers, metrics {BATCH_METRICS}",
             "", "| workers | endpoint | connections | req/s | p50 ms | p90 ms | p99 ms | max ms | errors |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["runs"]:
        if r.get("skipped"):
            lines.append(f"| {r['workers']} | {r['endpoint']} | — | — | — | — | — | — | {r['skipped']} |")
            continue
        errs = f"{r['errors']}" + (f" {r['error_kinds']}" if r["errors"] else "")
        cells = " | ".join("—" if r[k] is None else f"{r[k]:.1f}" for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms"))
        lines.append(f"| {r['workers']} | {r['endpoint']} | {r['connections']} | {r['rps']:,.0f} | {cells} | {errs} |")
    timeouts = ("wrk: a request unanswered after 10 s is a timeout error and is not in the percentiles"
                if result["driver"] == "wrk" else "python: a request unanswered after 10 s is an error; its 10 s "
                "count in the percentiles")
    lines += ["", "Targets: metrics ≥ 2,000 req/s with p99 < 50 ms and 0 errors; a batch of 100 p50 < 25 ms "
              "(judged on the single-connection run: under 64 connections its p50 is mostly queueing). "
              f"{timeouts}. `/api/health` (a store version check, no model rows) shows the stack's own cost "
              "(middleware, routing, JSON) on this machine, for scale. The peer, `benchmarks/bare_fastapi.py`, is the "
              "plainest FastAPI route uvicorn can serve (constant JSON, no middleware, no auth, no data) under the "
              "same workers and load: the framework's own ceiling here. Each run starts after the previous "
              "run's backlog is served.", ""]
    lines += [f"- {v}" for v in result["verdicts"]]
    lines += ["", "Reproduce: `python benchmarks/bench_api.py` (`--driver python` without wrk).", ""]
    (RESULTS / "api.md").write_text("\n".join(lines))


def peer_run(workers: int, connections: int, duration: float, drive) -> dict:
    """The peer under the same load: bare_fastapi.py's constant-JSON route, same workers."""
    row = {"workers": workers, "kind": "bare", "endpoint": "peer: bare FastAPI GET /bare (constant JSON)",
           "connections": connections}
    server = Server(STORE, workers, auth=False, bare=True)
    try:
        server.wait_ready(path="/bare")
        drive(server.base, {}, "bare", [], connections, min(5.0, duration))
        server.settle(path="/bare")
        print(f"{workers} worker(s): {row['endpoint']}, {connections} connection(s), {duration:.0f} s …", file=sys.stderr)
        row.update(drive(server.base, {}, "bare", [], connections, duration))
    finally:
        server.stop()
    print(f"  {row['rps']:,.0f} req/s, p50 {_ms(row['p50_ms'])}, p99 {_ms(row['p99_ms'])}", file=sys.stderr)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--driver", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--fresh", action="store_true", help="rebuild the demo store")
    args = ap.parse_args()
    driver = ("wrk" if shutil.which("wrk") else "python") if args.driver == "auto" else args.driver
    drive = run_wrk if driver == "wrk" else run_python

    root, tickers, store_desc = demo_store(args.fresh)
    key = api_key(root)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    runs, command = [], ""
    for workers in args.workers:
        server = Server(root, workers, auth=key is not None)
        command = server.command.replace(f"--port {server.port}", "--port PORT").replace(
            f"--workers {workers}", "--workers N")
        try:
            server.wait_ready()
            missing = probe(server.base, headers, tickers)
            plan = [("health", "GET /api/health (light: a version check, no key)", args.connections),
                    ("metrics", "GET /api/metrics/{T}", args.connections),
                    ("batch", f"POST /api/batch/analyze ({BATCH_SIZE} tickers)", args.connections),
                    ("batch_single", f"POST /api/batch/analyze ({BATCH_SIZE} tickers)", 1)]
            for kind, endpoint, conns in plan:
                base_kind = "batch" if kind.startswith("batch") else kind
                row = {"workers": workers, "kind": kind, "endpoint": endpoint, "connections": conns}
                if missing.get(base_kind):
                    runs.append({**row, "skipped": missing[base_kind]})
                    continue
                server.settle()
                drive(server.base, headers, base_kind, tickers, conns, min(5.0, args.duration))  # warm every worker
                server.settle()
                duration = args.duration if kind in ("metrics", "batch") else min(args.duration, 10.0)
                print(f"{workers} worker(s): {endpoint}, {conns} connection(s), {duration:.0f} s …", file=sys.stderr)
                row.update(drive(server.base, headers, base_kind, tickers, conns, duration))
                runs.append(row)
                print(f"  {row['rps']:,.0f} req/s, p50 {_ms(row['p50_ms'])}, p99 {_ms(row['p99_ms'])}, "
                      f"{row['errors']} errors", file=sys.stderr)
        finally:
            server.stop()
        runs.append(peer_run(workers, args.connections, args.duration, drive))
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "store": store_desc, "driver": driver,
              "server_command": command, "connections": args.connections, "duration_s": args.duration,
              "machine": {"arch": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()},
              "targets": {"metrics": METRICS_TARGET, "batch": BATCH_TARGET}, "runs": runs}
    result["verdicts"] = verdicts(runs)
    write_report(result)
    print("\n".join(result["verdicts"]))


if __name__ == "__main__":
    main()
