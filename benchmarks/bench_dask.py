"""Benchmark: Model A's build on dask.distributed with 1 and 2 local workers, against the local build.

Store: the real S&P 500 names + ETFs of ../shared/data/prices/core.parquet from mid-2014 with
current GICS (as bench_update.py; ``--broad`` adds the 2,870 names of broad.parquet), the
cascade stored from 2016 on. Each configuration runs in a fresh process: the default build
(one process, the engine's threads), ``--cluster local:1`` and ``--cluster local:2`` (a
LocalCluster of 1 or 2 single-threaded worker processes, started inside the timed call, as the
CLI does). Reported per run: wall time, the client's peak RSS, each worker's peak RSS, the
bytes shipped per partition, the workers' compute seconds, the published bytes; and the largest
difference of any stored field between the cluster versions and the local one.

Usage: python benchmarks/bench_dask.py [--broad] [--repeat 1]
Writes benchmarks/results/dask.json and benchmarks/results/dask.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"

from timing import conditions, max_float_difference  # noqa: E402

MODES = ("local build", "local:1", "local:2")


def child(store_root: str, mode: str) -> None:
    """One build in this fresh process; prints a JSON line."""
    from riskstrata.data.store import Store, _dir_bytes
    from riskstrata.services.cascade import MODEL, build_cascade
    from riskstrata.memory import peak_rss_mb

    store = Store(store_root)
    t = time.perf_counter()
    summary = build_cascade(store, start="2016-01-01", cluster=None if mode == "local build" else mode)
    wall = time.perf_counter() - t
    meta = store.model_meta(MODEL)
    print(json.dumps({"mode": mode, "wall_s": wall, "client_peak_rss_mb": peak_rss_mb(), "version": summary.version,
                      "rows": summary.rows, "securities": summary.securities, "dates": meta["start"] + " … " + meta["end"],
                      "version_bytes": _dir_bytes(store.model_dir(MODEL) / summary.version),
                      "cluster": meta.get("cluster")}))


def idle_worker_rss_mb() -> float:
    """Peak RSS of a LocalCluster worker that has imported what a partition task imports, before any
    task: the part of a worker's memory that does not depend on the data."""
    from distributed import Client, LocalCluster

    def probe() -> float:
        import riskstrata.services.cascade  # noqa: F401 - what run_partition imports
        from riskstrata.memory import peak_rss_mb

        return peak_rss_mb()

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as local, \
            Client(local) as client:
        return round(max(client.run(probe).values()), 1)


def max_difference(store_root: Path, a: str, b: str) -> float:
    from riskstrata.data.store import Store
    from riskstrata.services.cascade import MODEL

    store = Store(store_root)
    key = ["security_id", "date"]
    x = store.read_model(MODEL, version=a).sort_values(key).reset_index(drop=True)
    y = store.read_model(MODEL, version=b).sort_values(key).reset_index(drop=True)
    return max_float_difference(x, y)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--broad", action="store_true")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--child", nargs=2, metavar=("STORE", "MODE"))
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    from bench_update import SHARED, make_store

    if not (SHARED / "prices" / "core.parquet").exists():
        sys.exit(f"real data absent at {SHARED}: this benchmark needs it")
    work = Path(tempfile.mkdtemp(prefix="bench_dask_"))
    env = {**os.environ, "RISKSTRATA_KEEP_VERSIONS": "20"}
    try:
        source, _ = make_store(work, args.broad)
        runs = []
        for _ in range(args.repeat):
            for mode in MODES:
                proc = subprocess.run([sys.executable, __file__, "--child", str(work / "store"), mode],
                                      capture_output=True, text=True, env=env)
                if proc.returncode:
                    sys.exit(f"{mode} failed:\n{proc.stderr[-3000:]}")
                runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                runs[-1]["load_avg_after"] = conditions()["load_avg_1_5_15"]
        base = next(r for r in runs if r["mode"] == "local build")
        for r in runs:
            if r["cluster"]:
                r["max_abs_diff_vs_local"] = max_difference(work / "store", base["version"], r["version"])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def best(mode: str) -> dict:
        return min((r for r in runs if r["mode"] == mode), key=lambda r: r["wall_s"])

    result = {"data": source,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                         f"numpy {np.__version__}",
              "conditions": {**conditions(), "note": "2 cores shared with other helpers' work during the run: noisy"},
              "runs": runs, "best": {m: best(m) for m in MODES}, "idle_worker_peak_rss_mb": idle_worker_rss_mb()}
    RESULTS.mkdir(exist_ok=True)
    name = "dask_broad" if args.broad else "dask"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    loc = result["best"]["local build"]
    md = ["# Model A on dask.distributed: 1 and 2 local workers against the local build", "",
          f"- data: {source}; {loc['securities']:,} securities, stored {loc['dates']}, {loc['rows']:,} rows "
          f"({loc['version_bytes'] / 1e6:.0f} MB of Parquet)",
          f"- machine: {result['machine']}; load average (1/5/15 min) at the end "
          f"{result['conditions']['load_avg_1_5_15']}: the 2 cores were shared with other work, times are noisy",
          "", "| build | wall s | client peak RSS MB | worker peak RSS MB | partitions | bytes shipped (median / max per partition) "
              "| workers' compute s | max abs diff vs local |", "|---|---|---|---|---|---|---|---|"]
    for m in MODES:
        r, c = result["best"][m], result["best"][m]["cluster"]
        if c is None:
            md.append(f"| {m} (one process) | {r['wall_s']:.2f} | {r['client_peak_rss_mb']:.0f} | — | — | — | — | — |")
        else:
            peaks = ", ".join(f"{v:.0f}" for v in c["worker_peak_rss_mb"].values())
            md.append(f"| --cluster {m} | {r['wall_s']:.2f} | {r['client_peak_rss_mb']:.0f} | {peaks} | {c['partitions']} "
                      f"| {c['bytes_shipped'] / 1e6:.1f} MB ({c['bytes_per_partition_median'] / 1e6:.2f} / "
                      f"{c['bytes_per_partition_max'] / 1e6:.2f} MB) | {c['task_seconds']:.2f} "
                      f"| {r['max_abs_diff_vs_local']:.1e} |")
    md += ["", f"An idle worker (riskstrata imported, no task yet) peaks at {result['idle_worker_peak_rss_mb']:.0f} MB: "
               "the rest of a worker's peak is its partitions' data, the engine's block and the Parquet writer.",
           "", "Wall times include starting the LocalCluster's worker processes (each imports numpy, pandas and "
               "riskstrata) and the client reading the store; the workers' compute seconds are the partitions' "
               "own time (engine + writing their parts), summed over workers.", "",
           f"Reproduce: `python benchmarks/bench_dask.py{' --broad' if args.broad else ''}` (needs ../shared/data)."]
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
