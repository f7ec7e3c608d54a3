"""Benchmark: a one-day update of Model B (US21) against a full rebuild of the same data, in the same run.

Store: a synthetic market with fundamentals and volume (``synthetic_market(styles=True)``),
N names × T days. US21 is built on all but the last day (not timed), then updated (timed: wall
and CPU seconds of this process), and a copy of the store is rebuilt on all days (timed). The
updated version's factor returns and last covariance are checked against the rebuild's (max
absolute difference). The update computes descriptors for the new day and the model's last day
only; the regression, specific risk, covariance (eigen adjustment), validation and publishing
run over the whole history, as in a build.

Usage: python benchmarks/bench_factors_update.py [--names 500] [--days 1260] [--tag _3000]
Writes benchmarks/results/factors_update<TAG>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"

from timing import conditions  # noqa: E402


def clock(call):
    """(result, wall s, CPU s of this process) of one call."""
    w, c = time.perf_counter(), time.process_time()
    out = call()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    from riskstrata.data.store import Store
    from riskstrata.data.synthetic import synthetic_market
    from riskstrata.services import factors as svc
    from riskstrata.services.demo import load_synthetic_into_store

    ap = argparse.ArgumentParser()
    ap.add_argument("--names", type=int, default=500)
    ap.add_argument("--days", type=int, default=1260)
    ap.add_argument("--tag", default="", help="suffix of the result files (factors_update<TAG>.md)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "a")
        load_synthetic_into_store(store, synthetic_market(n_stocks=args.names, n_days=args.days, seed=7, styles=True))
        days = pd.DatetimeIndex(store.read_table("prices", columns=["date"])["date"].unique()).sort_values()
        shutil.copytree(store.root, Path(tmp) / "b")
        full = Store(Path(tmp) / "b")
        svc.build_factor_model(store, "US21", end=days[-2])
        info, up_wall, up_cpu = clock(lambda: svc.update_factor_model(store, "US21"))
        built, re_wall, re_cpu = clock(lambda: svc.build_factor_model(full, "US21"))
        a = svc.BuiltModel("US21", store.model_meta("factors_US21"), info["version"])
        b = svc.BuiltModel("US21", full.model_meta("factors_US21"), built["version"])
        fa, fb = (m.read(s, "factor_returns").select_dtypes("float").to_numpy() for m, s in ((a, store), (b, full)))
        ca, cb = (m.read(s, "factor_cov").select_dtypes("float").to_numpy()[-1] for m, s in ((a, store), (b, full)))
        diff = float(max(np.nanmax(np.abs(fa - fb)), np.nanmax(np.abs(ca - cb))))
        shape = f"{len(a.meta['factors'])} factors, {built['names']} names × {built['dates']} dates"
    result = {"shape": shape, "new_dates": info["new_dates"],
              "update": {"wall_s": round(up_wall, 2), "cpu_s": round(up_cpu, 2)},
              "rebuild": {"wall_s": round(re_wall, 2), "cpu_s": round(re_cpu, 2)},
              "speedup_wall": round(re_wall / up_wall, 2), "max_abs_diff_vs_rebuild": diff,
              "machine": f"{platform.machine()}, Python {platform.python_version()}",
              "conditions": {**conditions(), "note": "2 cores shared with other helpers' work during the run: noisy"}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"factors_update{args.tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# Model B: a one-day update against a full rebuild (same run)", "",
          f"- data: synthetic market with fundamentals and volume, US21: {shape}; new day {info['new_dates']}",
          f"- update: {up_wall:.2f} s wall, {up_cpu:.2f} s CPU; full rebuild: {re_wall:.2f} s wall, "
          f"{re_cpu:.2f} s CPU; the update is {re_wall / up_wall:.1f}× faster (wall)",
          f"- max |update − rebuild| over factor returns (and t-stats, diagnostics, coverage) and the last "
          f"covariance: {diff:.1e}",
          f"- machine: {result['machine']}; load average (1/5/15 min) {result['conditions']['load_avg_1_5_15']} "
          f"on {result['conditions']['cpus']} cores shared with other work: noisy",
          "- command: `python benchmarks/bench_factors_update.py "
          f"--names {args.names} --days {args.days}" + (f" --tag {args.tag}" if args.tag else "") + "`"]
    (RESULTS / f"factors_update{args.tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
