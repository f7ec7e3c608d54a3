"""Fixtures for the REST face: a small built store and a real server process over it.

The server is a separate ``uvicorn`` process on a free 127.0.0.1 port, so the tests drive the
app exactly as a user's riskmodels-py client does: over TCP, with lineage headers, auth and
JSON encoding all on the path.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from riskstrata.data.ingest import ingest_prices
from riskstrata.data.registry import EtfRegistry
from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.services.cascade import build_cascade
from riskstrata.services.demo import load_synthetic_into_store
from tests.shared_builds import private_copy, shared_build

SERVER_START_SECONDS = 60
# Two extra listings, each a noisy copy of a synthetic stock that has a subsector ETF, with no
# classification row, so the build infers their sector and subsector ETFs from returns:
# GOOGL, so that GOOG (what the client sends for GOOGL) must resolve to it, and TWIN, a plain
# name whose L2/L3 legs are all in use.
EXTRA_LISTINGS = {"GOOGL": ("NAG", 11), "TWIN": ("UTT", 12)}


def _add_listing(store: Store, market, ticker: str, twin: str, seed: int, tmp: Path) -> None:
    """``ticker`` with the twin's returns plus idiosyncratic noise."""
    rng = np.random.default_rng(seed)
    base = market.returns[twin]
    returns = base + rng.normal(0.0, 0.006, len(base))
    prices = 100.0 * np.cumprod(1.0 + returns.fillna(0.0).to_numpy())
    path = tmp / f"{ticker}.parquet"
    pd.DataFrame({"date": base.index, "ticker": ticker, "adj_close": prices}).to_parquet(path, index=False)
    ingest_prices(store, [path], etf_tickers=set(EtfRegistry.default().etfs()))


def _build_wire_store(root: Path) -> None:
    """60 synthetic stocks over three years (plus GOOGL and TWIN), cascade built, in root/store."""
    store = Store(root / "store")
    market = synthetic_market(n_stocks=60, n_days=252 * 3, seed=5)
    load_synthetic_into_store(store, market)
    for ticker, (twin, seed) in EXTRA_LISTINGS.items():
        _add_listing(store, market, ticker, twin, seed, root)
    build_cascade(store)


@pytest.fixture(scope="session")
def wire_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A demo store: 60 synthetic stocks over three years (plus GOOGL and TWIN), cascade built.

    Built once per run (tests/shared_builds.py); each worker gets its own copy, since the
    session's keys are created and revoked in it."""
    built = shared_build(tmp_path_factory, "wire-store", [], _build_wire_store) / "store"
    return Store(private_copy(built, tmp_path_factory.mktemp("wire") / "store"))


@pytest.fixture(scope="module")
def private_store(wire_store: Store, tmp_path_factory: pytest.TempPathFactory, request) -> Store:
    """A copy of the session's demo store for one test module: keys it creates, builds it
    publishes and limits it trips stay in that module."""
    root = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]) / "store"
    return Store(private_copy(wire_store.root, root))


@pytest.fixture(scope="session")
def api_key(wire_store: Store) -> str:
    """A key the server accepts: a real one where the auth module can issue it, else any string."""
    try:
        from riskstrata.api.auth import create_key
    except ImportError:
        return "rm_agent_test_dummy_key_000"
    key = create_key(wire_store, "wire-client-tests")
    return key if isinstance(key, str) else str(key[0] if isinstance(key, (tuple, list)) else key)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(proc: subprocess.Popen, url: str) -> bool:
    """True once GET {url}/health answers; False if the process died first.

    One client for every poll: ``httpx.get`` builds a client, and with it an SSL context, per
    call (~40 ms CPU), which every 0.1 s took a third of a core from the server starting up."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    with httpx.Client(timeout=2.0, trust_env=False) as poller:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                if poller.get(f"{url}/health").status_code < 500:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"the API server did not answer {url}/health within {SERVER_START_SECONDS}s")


@contextmanager
def serve_cli(store: Store, log_path: Path, *options: str) -> Iterator[str]:
    """``riskstrata serve`` over ``store`` on a free port, as a user starts it, logging to
    ``log_path``; yields the base URL (``http://127.0.0.1:PORT/api``) once /health answers."""
    port = _free_port()
    env = {**{k: v for k, v in os.environ.items() if k != "RISKSTRATA_DEBUG"}, "NO_PROXY": "127.0.0.1"}
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen([sys.executable, "-m", "riskstrata.cli", "serve", "--store", str(store.root),
                                 "--port", str(port), *options], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/api"
    try:
        if not _wait_until_up(proc, url):
            raise RuntimeError(f"riskstrata serve exited: {log_path.read_text(encoding='utf-8')[-2000:]}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="session")
def server_url(wire_store: Store, api_key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (``http://127.0.0.1:PORT/api``) of a real uvicorn process serving the store."""
    env = {**os.environ, "RISKSTRATA_STORE": str(wire_store.root), "RISKSTRATA_RATE_LIMIT": "0",
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    for _attempt in range(3):  # a free port can be taken between choosing it and binding it
        port = _free_port()
        url = f"http://127.0.0.1:{port}/api"
        with open(log_path, "w", encoding="utf-8") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", "riskstrata.api.app:create_app",
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            if _wait_until_up(proc, url):
                break
        except RuntimeError:
            proc.terminate()
            raise
    else:
        raise RuntimeError(f"the API server failed to start: {log_path.read_text(encoding='utf-8')[-2000:]}")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def client(server_url: str, api_key: str):
    """The official client, configured the documented way: RiskModelsClient.from_env()."""
    riskmodels = pytest.importorskip("riskmodels", reason="riskmodels-py (test extra) is not installed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RISKMODELS_BASE_URL", server_url)
        mp.setenv("RISKMODELS_API_KEY", api_key)
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        mp.delenv("RISKMODELS_CLIENT_ID", raising=False)
        mp.delenv("RISKMODELS_CLIENT_SECRET", raising=False)
        c = riskmodels.RiskModelsClient.from_env()
        try:
            yield c
        finally:
            c.close()


@pytest.fixture(scope="session")
def http(server_url: str, api_key: str) -> Iterator[httpx.Client]:
    """A plain HTTP client on the same server, for what the SDK hides (raw bodies, headers)."""
    with httpx.Client(base_url=server_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60.0,
                      trust_env=False) as c:
        yield c
