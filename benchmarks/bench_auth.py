"""Benchmark (issue 12 §2): what checking an API key costs the server, right or wrong.

Times ``KeyRing.check`` (HMAC-SHA-256 under the store's secret, one constant-time compare) for
a right key (cached, and first sight), a wrong secret under a real key id, an unknown id and
junk, against the peer: the scrypt verification (n=2^14, r=8) keys used before issue 12, which
ran for any well-formed key whose id existed. Also the CPU cost of a whole ``GET
/api/metrics/{T}`` through the app in-process (ASGI, no network), the hot path auth sits on.

CPU time (``time.process_time``) of the best of 7 repeats: on a shared machine wall time is
mostly other people's work. Usage: ``python benchmarks/bench_auth.py``; writes
benchmarks/results/auth.md and auth.json.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import platform
import secrets
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_api import RESULTS, demo_store  # noqa: E402


def best_us(fn, n: int, repeats: int = 7) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - began) / n)
    return 1e6 * best


def key_costs() -> dict[str, float]:
    from riskstrata.api.auth import KeyRing, create_key
    from riskstrata.data.store import Store

    store = Store(Path(tempfile.mkdtemp()) / "store")
    key = create_key(store, "bench")
    ring = KeyRing(store)
    key_id = key.split("_")[1]
    wrong = f"rs_{key_id}_{secrets.token_urlsafe(32)}"
    unknown = f"rs_00000000_{secrets.token_urlsafe(32)}"
    assert ring.check(key) == "bench" and ring.check(wrong) is None and ring.check(unknown) is None

    def first_sight() -> None:
        ring._good.clear()
        ring.check(key)

    salt = secrets.token_bytes(16)
    return {
        "right key (verified before: cached)": best_us(lambda: ring.check(key), 20_000),
        "right key, first sight": best_us(first_sight, 20_000),
        "wrong secret, real key id": best_us(lambda: ring.check(wrong), 20_000),
        "unknown key id": best_us(lambda: ring.check(unknown), 20_000),
        "junk (5,000 characters)": best_us(lambda: ring.check("A" * 5000), 5_000),
        "peer: scrypt n=2^14, r=8 (before issue 12, per attempt on a real id)":
            best_us(lambda: hashlib.scrypt(wrong.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32), 5, 3),
    }


def metrics_cost() -> float:
    """CPU µs of one GET /api/metrics/{T} through the whole app (middleware, key, route)."""
    from riskstrata.api.app import create_app
    from riskstrata.api.auth import create_key
    from riskstrata.api.settings import ApiSettings
    from riskstrata.data.store import Store

    root, tickers, _ = demo_store(False)
    key = create_key(Store(root), "bench-auth", replace=True)
    app = create_app(Store(root), ApiSettings(rate_limit=0))

    async def call(path: str) -> None:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"authorization", f"Bearer {key}".encode()), (b"host", b"bench")],
                 "client": ("127.0.0.1", 5555), "server": ("bench", 80), "state": {}}
        await app(scope, receive, send)
        assert sent[0]["status"] == 200, sent[:1]

    async def main() -> float:
        async with app.router.lifespan_context(app):
            for t in tickers:
                await call(f"/api/metrics/{t}")
            best = float("inf")
            for _ in range(7):
                began = time.process_time()
                for i in range(2000):
                    await call(f"/api/metrics/{tickers[i % len(tickers)]}")
                best = min(best, (time.process_time() - began) / 2000)
            return 1e6 * best

    return asyncio.run(main())


def main() -> None:
    report = {"machine": f"{platform.machine()}, Python {platform.python_version()}", "key_check_us": key_costs(),
              "metrics_request_cpu_us": metrics_cost()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "auth.json").write_text(json.dumps(report, indent=2))
    lines = ["# What a key check costs the server (issue 12 §2)", "",
             f"`python benchmarks/bench_auth.py` on {report['machine']}: CPU time, best of 7 repeats.", "",
             "| key presented | µs per check |", "|---|---|"]
    lines += [f"| {name} | {us:,.1f} |" for name, us in report["key_check_us"].items()]
    lines += ["", f"A whole `GET /api/metrics/{{T}}` through the app in-process (ASGI, no network): "
              f"**{report['metrics_request_cpu_us']:.0f} µs** of CPU."]
    (RESULTS / "auth.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
