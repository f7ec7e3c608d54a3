"""Benchmark: `riskstrata update` as a user runs it — a fresh CLI process that appends one day to
both models of the real store — against the CLI's own start-up and the full rebuild of both.

Store: the real S&P 500 names + ETFs of ../shared/data/prices/core.parquet from mid-2014 with
current GICS, the fundamentals snapshots and SEC issuers; Model A (the cascade) and Model B (US21)
built from 2016 without the last trading day. For each run, a copy of that store ingests the last
day (not timed) and `riskstrata update --json` runs in a child process: its wall time and its CPU
seconds (user + system, from the children's resource usage) are measured, and each model's own
seconds as the command reports them. In the same run:

- ``riskstrata update --help`` (the CLI's start-up: Python, Typer), the floor of any command;
- importing what the update runs on (pandas, numpy, DuckDB, pyarrow, the update services) in a
  fresh interpreter: paid by the command before any model is touched;
- the full rebuild of both models through the CLI (`build cascade`, `factors build`) on a copy
  with the same last day: what a user without the daily update would run.

Usage: python benchmarks/bench_update_cli.py [--repeat 5]
Writes benchmarks/results/update_cli.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SHARED = HERE.parent.parent / "shared" / "data"
RESULTS = HERE / "results"
CLI = [str(Path(sys.executable).with_name("riskstrata"))]  # the installed entry point, as a user runs it
START = "2016-01-01"

from timing import conditions  # noqa: E402


IMPORTS = [sys.executable, "-c", "import riskstrata.services.update, riskstrata.services.factors_update"]


def run_cli(args: list[str], command: list[str] = CLI) -> tuple[str, float, float]:
    """(stdout, wall s, CPU s of the child) of one CLI call; fails loudly on a non-zero exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run([*command, *args], capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"riskstrata {' '.join(args)} failed ({out.returncode}): {out.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out.stdout, wall, cpu


def make_store(work: Path) -> tuple[str, pd.Timestamp]:
    """The store with both models built without the last day; returns (description, last day)."""
    from riskstrata.data.fundamentals import ingest_fundamentals
    from riskstrata.data.ingest import ingest_classifications, ingest_prices
    from riskstrata.data.master import ingest_issuers
    from riskstrata.data.registry import EtfRegistry
    from riskstrata.data.store import Store
    from riskstrata.services.cascade import build_cascade
    from riskstrata.services.factors import build_factor_model

    px = pd.read_parquet(SHARED / "prices" / "core.parquet", filters=[("date", ">=", pd.Timestamp("2014-06-01"))])
    px = px[~px["ticker"].str.startswith("^")]  # yields are not prices
    last = px["date"].max()
    px[px["date"] < last].to_parquet(work / "old.parquet", index=False)
    px[px["date"] == last].to_parquet(work / "new.parquet", index=False)
    store = Store(work / "store")
    ingest_prices(store, [work / "old.parquet"], etf_tickers=set(EtfRegistry.default().known_etfs()))
    ingest_classifications(store, SHARED / "reference" / "gics_current.csv")
    ingest_fundamentals(store, SHARED / "fundamentals" / "snapshots.parquet")
    ingest_issuers(store, SHARED / "sec" / "company_tickers.parquet")
    build_cascade(store, start=START)
    build_factor_model(store, "US21", start=START)
    return (f"real: {px['ticker'].nunique()} series of core.parquet (2014-06 … {last.date()}), GICS, fundamentals "
            f"snapshots, SEC issuers; Model A and US21 stored from {START}"), last


def copy_with_last_day(work: Path, name: str) -> Path:
    """A copy of the built store that has ingested the last day (not timed)."""
    from riskstrata.data.ingest import ingest_prices
    from riskstrata.data.registry import EtfRegistry
    from riskstrata.data.store import Store

    root = work / name
    shutil.copytree(work / "store", root)
    ingest_prices(Store(root), [work / "new.parquet"], etf_tickers=set(EtfRegistry.default().known_etfs()))
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if not (SHARED / "prices" / "core.parquet").exists():
        sys.exit(f"real data absent at {SHARED}: this benchmark needs it")
    work = Path(tempfile.mkdtemp(prefix="bench_update_cli_"))
    try:
        source, last = make_store(work)
        startup = [run_cli(["update", "--help"])[1:] for _ in range(args.repeat)]
        imports = [run_cli([], IMPORTS)[1:] for _ in range(args.repeat)]
        runs = []
        for i in range(args.repeat):
            root = copy_with_last_day(work, f"copy{i}")
            stdout, wall, cpu = run_cli(["update", "--store", str(root), "--json"])
            summaries = json.loads(stdout)
            assert all(s["status"] == "updated" and s["new_dates"] == [str(last.date())] for s in summaries), summaries
            runs.append({"wall_s": wall, "cpu_s": cpu,
                         "models": {s["model"]: round(s["seconds"], 3) for s in summaries}})
            shutil.rmtree(root)
        root = copy_with_last_day(work, "rebuild")
        _, wall_a, cpu_a = run_cli(["build", "cascade", "--store", str(root), "--start", START, "--json"])
        _, wall_b, cpu_b = run_cli(["factors", "build", "--store", str(root), "--model", "US21", "--start", START,
                                    "--json"])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = statistics.median
    update = {"wall_s": round(med(r["wall_s"] for r in runs), 3), "cpu_s": round(med(r["cpu_s"] for r in runs), 3),
              "cpu_s_runs": sorted(round(r["cpu_s"], 3) for r in runs),
              "model_seconds_median": {m: round(med(r["models"][m] for r in runs), 3) for m in runs[0]["models"]}}
    start = {"wall_s": round(med(w for w, _ in startup), 3), "cpu_s": round(med(c for _, c in startup), 3)}
    loaded = {"wall_s": round(med(w for w, _ in imports), 3), "cpu_s": round(med(c for _, c in imports), 3)}
    rebuild = {"wall_s": round(wall_a + wall_b, 2), "cpu_s": round(cpu_a + cpu_b, 2),
               "cascade_cpu_s": round(cpu_a, 2), "factors_cpu_s": round(cpu_b, 2)}
    result = {"data": source, "last_day": str(last.date()), "update_cli": update, "cli_startup": start,
              "imports": loaded,
              "rebuild_cli": rebuild, "speedup_cpu": round(rebuild["cpu_s"] / update["cpu_s"], 1),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "conditions": conditions()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "update_cli.json").write_text(json.dumps(result, indent=2) + "\n")
    models = ", ".join(f"{m} {s:.2f} s" for m, s in update["model_seconds_median"].items())
    md = ["# `riskstrata update` from the command line: one day appended to both models", "",
          f"- data: {source}; new day {last.date()}",
          f"- `riskstrata update` (a fresh process, both models): **{update['cpu_s']:.2f} s CPU**, "
          f"{update['wall_s']:.2f} s wall (median of {len(runs)} runs on copies: "
          f"{', '.join(f'{c:.2f}' for c in update['cpu_s_runs'])} s CPU); each model's own wall seconds as the "
          f"command reports them (median): {models}",
          f"- the CLI's start-up alone (`riskstrata update --help`): {start['cpu_s']:.2f} s CPU, {start['wall_s']:.2f} s "
          f"wall; importing what the update runs on (pandas, numpy, DuckDB, pyarrow, the services) in a fresh "
          f"interpreter: {loaded['cpu_s']:.2f} s CPU; the rest of the command, {update['cpu_s'] - start['cpu_s'] - loaded['cpu_s']:.2f} s CPU, "
          f"is the two updates (with their first-call costs in a fresh process) and the command's own output",
          f"- full rebuild of both through the CLI (`build cascade` + `factors build`): {rebuild['cpu_s']:.1f} s CPU "
          f"({rebuild['cascade_cpu_s']:.1f} + {rebuild['factors_cpu_s']:.1f}), {rebuild['wall_s']:.1f} s wall; the "
          f"update costs 1/{result['speedup_cpu']:.0f} of it",
          f"- machine: {result['machine']}; load average (1/5/15 min) at the end {result['conditions']['load_avg_1_5_15']}",
          "- command: `python benchmarks/bench_update_cli.py"
          + (f" --repeat {args.repeat}" if args.repeat != 5 else "") + "`"]
    (RESULTS / "update_cli.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
