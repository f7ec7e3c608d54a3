"""Benchmark: Model B's build (US21) on dask.distributed with 1 and 2 local workers, against the local build.

Store: a synthetic market with styles (fundamentals, volume, sectors) of ``--names`` names ×
``--days`` business days, ingested as a user would (:func:`load_synthetic_into_store`). Each
configuration runs in a fresh process: the default build (one process, its block threads),
``--cluster local:1`` and ``--cluster local:2`` (a LocalCluster of 1 or 2 single-threaded
worker processes started inside the timed call, as the CLI does). Reported per run: wall time,
the client's peak RSS, each worker's peak RSS, the date blocks and the bytes shipped per block
(the panel and mask rows a block reads), and the largest difference of any stored field
(exposures, factor returns, covariance, specific risk, validation) from the local build.

Usage: python benchmarks/bench_factors_dask.py [--names 400] [--days 1260] [--block 252]
Writes benchmarks/results/factors_dask.json and benchmarks/results/factors_dask.md.
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
PARTS = ("factors", "factor_returns", "factor_cov", "specific_risk", "factor_validation")


def child(store_root: str, mode: str, block: int) -> None:
    """One build in this fresh process; prints a JSON line."""
    from riskstrata.data.store import Store
    from riskstrata.memory import peak_rss_mb
    from riskstrata.services.factors import build_factor_model
    from riskstrata.services.factors_cluster import build_factor_model_on_cluster

    store = Store(store_root)
    t = time.perf_counter()
    if mode == "local build":
        info = build_factor_model(store, "US21", block_dates=block)
    else:
        info = build_factor_model_on_cluster(store, "US21", cluster=mode, block_dates=block)
    wall = time.perf_counter() - t
    print(json.dumps({"mode": mode, "wall_s": wall, "client_peak_rss_mb": peak_rss_mb(), "version": info["version"],
                      "names": info["names"], "dates": info["dates"], "cluster": info.get("cluster")}))


def max_difference(store_root: Path, a: str, b: str) -> float:
    """The largest absolute difference of any float field of any stored part (inf: rows or NaNs differ)."""
    from riskstrata.data.store import Store
    from riskstrata.services.factors import BuiltModel

    store = Store(store_root)
    worst = 0.0
    for part in PARTS:
        x, y = (BuiltModel("US21", store.model_meta("factors_US21", v), v).read(store, part) for v in (a, b))
        worst = max(worst, max_float_difference(x, y))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--names", type=int, default=400)
    ap.add_argument("--days", type=int, default=1260)
    ap.add_argument("--block", type=int, default=252)
    ap.add_argument("--child", nargs=3, metavar=("STORE", "MODE", "BLOCK"))
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    from riskstrata.data.store import Store
    from riskstrata.data.synthetic import synthetic_market
    from riskstrata.services.demo import load_synthetic_into_store

    work = Path(tempfile.mkdtemp(prefix="bench_factors_dask_"))
    env = {**os.environ, "RISKSTRATA_KEEP_VERSIONS": "20"}
    try:
        load_synthetic_into_store(Store(work / "store"),
                                  synthetic_market(n_stocks=args.names, n_days=args.days, seed=5, styles=True))
        runs = []
        for mode in MODES:
            proc = subprocess.run([sys.executable, __file__, "--child", str(work / "store"), mode, str(args.block)],
                                  capture_output=True, text=True, env=env)
            if proc.returncode:
                sys.exit(f"{mode} failed:\n{proc.stderr[-3000:]}")
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            runs[-1]["load_avg_after"] = conditions()["load_avg_1_5_15"]
        base = runs[0]
        for r in runs[1:]:
            r["max_abs_diff_vs_local"] = max_difference(work / "store", base["version"], r["version"])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    data = f"synthetic, styles=True: {args.names} names × {args.days} business days, US21, blocks of {args.block} dates"
    result = {"data": data,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                         f"numpy {np.__version__}",
              "conditions": {**conditions(), "note": "2 cores shared with another helper's benchmarks: noisy"},
              "runs": runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "factors_dask.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    md = ["# Model B (US21) on dask.distributed: 1 and 2 local workers against the local build", "",
          f"- data: {data} ({base['names']} names with prices, {base['dates']} dates)",
          f"- machine: {result['machine']}; load average (1/5/15 min) at the end "
          f"{result['conditions']['load_avg_1_5_15']}: the 2 cores were shared with another helper's "
          "benchmarks, times are noisy", "",
          "| build | wall s | client peak RSS MB | worker peak RSS MB | blocks | bytes shipped (median / max per block) "
          "| max abs diff vs local |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        c = r["cluster"]
        if c is None:
            md.append(f"| {r['mode']} (one process) | {r['wall_s']:.2f} | {r['client_peak_rss_mb']:.0f} | — | — | — | — |")
            continue
        peaks = ", ".join(f"{v:.0f}" for v in c["worker_peak_rss_mb"].values())
        md.append(f"| --cluster {r['mode']} | {r['wall_s']:.2f} | {r['client_peak_rss_mb']:.0f} | {peaks} | {c['blocks']} "
                  f"| {c['bytes_shipped'] / 1e6:.1f} MB ({c['bytes_per_block_median'] / 1e6:.2f} / "
                  f"{c['bytes_per_block_max'] / 1e6:.2f} MB) | {r['max_abs_diff_vs_local']:.1e} |")
    md += ["", "A block ships the rows it reads: its own dates plus the descriptors' lookback (252 rows, or a "
               "year for GROWTH) of every panel and mask, so the bytes shipped are about (1 + 252 / block) × "
               "the panels' bytes. Workers return each block's exposures (B × N × K), factor returns and specific "
               "returns; the client holds the panels, a few blocks in flight and the (T, K, K) covariance.", "",
           "Wall times include starting the LocalCluster's worker processes (each imports numpy, pandas, "
           "riskstrata) and the client's load, covariance (eigen adjustment), specific risk, validation and "
           "publishing, which a cluster does not shorten.", "",
           f"Reproduce: `python benchmarks/bench_factors_dask.py --names {args.names} --days {args.days} "
           f"--block {args.block}`."]
    (RESULTS / "factors_dask.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
