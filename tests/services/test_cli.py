"""The command line as a user meets it: a real process, a real store, one clear line per error."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from riskstrata.cascade.result import WIRE_FIELDS

RISKSTRATA = [sys.executable, "-m", "riskstrata.cli"]


def run(*args: str, store: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("RISKSTRATA_DEBUG", None)
    extra = ["--store", str(store)] if store is not None else []
    return subprocess.run([*RISKSTRATA, *args, *extra], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("cli") / "store"
    proc = run("demo", "--stocks", "60", "--years", "3", store=store)
    assert proc.returncode == 0, proc.stderr
    assert "identities" in proc.stdout and "riskstrata metrics" in proc.stdout
    return store


@functools.cache  # the demo store is only read here: its first name cannot change between tests
def first_ticker(store: Path) -> str:
    import pandas as pd

    from riskstrata.data.store import Store

    rows = Store(store).read_model("cascade", columns=["date", "ticker", "l3_mkt_hr"])
    last = rows[(rows["date"] == rows["date"].max()) & rows["l3_mkt_hr"].notna()]
    return str(sorted(last["ticker"])[0]) if len(last) else pd.NA


def test_metrics_json_keys_are_the_wire_names(demo_store):
    ticker = first_ticker(demo_store)
    proc = run("metrics", ticker, "--json", store=demo_store)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(WIRE_FIELDS) <= set(data)
    assert data["ticker"] == ticker
    total = data["l3_mkt_er"] + data["l3_sec_er"] + data["l3_sub_er"] + data["l3_res_er"]
    assert abs(total - 1) < 1e-9


def test_decompose_lstar_and_attribution_answer(demo_store):
    ticker = first_ticker(demo_store)
    dec = json.loads(run("decompose", ticker, "--json", store=demo_store).stdout)
    assert set(dec["bets"]) == {"market", "sector", "subsector", "residual"}
    stored = json.loads(run("lstar", ticker, "--json", store=demo_store).stdout)
    strict = json.loads(run("lstar", ticker, "--threshold", "0.9", "--json", store=demo_store).stdout)
    assert stored["threshold"] == 0.01 and len(stored["history"]) == len(strict["history"]) > 100
    assert {row["lstar_level"] for row in strict["history"]} <= {1, None}
    att = json.loads(run("attribution", ticker, "--start", "2016-01-01", "--end", "2017-12-31", "--json",
                         store=demo_store).stdout)
    assert abs(att["market"] + att["sector"] + att["subsector"] + att["residual"] - att["gross"]) < 1e-12


@pytest.mark.parametrize("args, message", [
    (("metrics", "NOSUCH"), "unknown ticker"),
    (("metrics", "{t}", "--date", "1990-01-01"), "outside the built model"),
    (("metrics", "{t}", "--date", "not-a-date"), "not a date"),
    (("attribution", "{t}", "--start", "2030-01-01", "--end", "2031-01-01"), "does not overlap"),
])
def test_bad_requests_get_one_error_line_and_a_nonzero_exit(demo_store, args, message):
    ticker = first_ticker(demo_store)
    proc = run(*(a.format(t=ticker) for a in args), store=demo_store)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1


def test_malformed_files_and_missing_stores_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("this is not\na price file\n")
    proc = run("ingest", "prices", str(bad), store=tmp_path / "s")
    assert proc.returncode != 0 and "error:" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("metrics", "AAPL", store=tmp_path / "nowhere")
    assert proc.returncode != 0 and "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_ingest_and_build_from_files_with_exponential_weights(tmp_path):
    from riskstrata.data.synthetic import synthetic_market

    market = synthetic_market(n_stocks=20, n_days=400, seed=8)
    wide = market.prices().pivot(index="date", columns="ticker", values="adj_close")
    prices, classes = tmp_path / "prices.csv", tmp_path / "gics.csv"
    wide.to_csv(prices)  # wide: dates × tickers
    market.classifications[["ticker", "gics_sector", "gics_sub_industry"]].to_csv(classes, index=False)
    store = tmp_path / "store"
    ingest = run("ingest", "prices", str(prices), store=store)
    assert ingest.returncode == 0, ingest.stderr
    assert "rows" in ingest.stdout
    assert run("ingest", "classifications", str(classes), store=store).returncode == 0
    build = run("build", "cascade", "--window", "200", "--halflife", "60", "--json", store=store)
    assert build.returncode == 0, build.stderr
    summary = json.loads(build.stdout)
    assert summary["securities"] >= 20 and summary["rows"] > 5000
    ticker = market.returns.columns[0]
    m = json.loads(run("metrics", ticker, "--json", store=store).stdout)
    assert m["ticker"] == ticker and m["sector_etf"] == market.assignments.loc[ticker, "sector_etf"]
