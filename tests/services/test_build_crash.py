"""A build killed half way (kill -9) leaves the last good version readable, and a rerun succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.services.cascade import MODEL, build_cascade, metrics
from riskstrata.services.demo import load_synthetic_into_store


@pytest.mark.slow  # make test-fast skips it
@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_kill_minus_nine_mid_build_keeps_the_previous_version(tmp_path):
    store = Store(tmp_path / "store")
    market = synthetic_market(n_stocks=400, n_days=252 * 4, seed=5)
    load_synthetic_into_store(store, market)
    first = build_cascade(store, window=126).version
    ticker = next(t for t in market.returns.columns if market.returns[t].notna().iloc[-1])
    before = metrics(store, ticker)

    # Second build in its own process; kill it as soon as it has written its first part.
    proc = subprocess.Popen([sys.executable, "-m", "riskstrata.cli", "build", "cascade", "--window", "252",
                             "--store", str(store.root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    model_dir = store.root / "models" / MODEL
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if any(p.name.startswith("part-") for d in model_dir.glob(".tmp-*") for p in d.iterdir()):
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the build finished before it could be killed; make the market bigger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    assert store.current_version(MODEL) == first
    assert metrics(store, ticker) == before  # still the window-126 version, fully readable
    assert any(model_dir.glob(".tmp-*")), "the killed build's leftovers should be there (and ignored)"

    again = build_cascade(store, window=252)
    assert store.current_version(MODEL) == again.version != first
    assert store.model_meta(MODEL)["params"]["window"] == 252
    assert metrics(store, ticker)["n_obs"] > before["n_obs"]
