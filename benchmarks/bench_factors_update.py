"""Benchmark: a one-day update of Model B (US21) against a full rebuild of the same data, in the same run.

Stores:
- synthetic (default): ``synthetic_market(styles=True)``, N names × T days with fundamentals and
  volume; US21 is built on all but the last day (not timed);
- ``--real``: the real data of ../shared/data: core.parquet's stocks from 2013-06 (the first
  fundamentals snapshot is 2012-12-27), GICS sectors, the fundamentals snapshots and SEC issuers
  through the ingest commands; US21 is built on all but the last trading day, which is then
  ingested.

The update (``update_factor_model``: from the published version's state — trailing panels, the
new day's exposures and regression, specific risk, covariance and validation advanced by their
recursions, old parts hard-linked) is timed in this process (wall and CPU seconds, and by stage),
then a copy of the store is rebuilt on all days (timed). Every stored part of the updated
version is compared with the rebuild's (max relative difference above 1).

The update is timed ``--repeat`` times (default 5), each on its own copy of the built store; the
median run is reported with the spread (the machine is shared: a single run can catch a busy second).

Usage: python benchmarks/bench_factors_update.py [--names 500] [--days 1260] [--real] [--tag _3000] [--repeat 5]
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
SHARED = HERE.parents[1] / "shared" / "data"

from timing import conditions  # noqa: E402

PARTS = {"factors": ["date", "security_id"], "factor_returns": ["date"], "factor_cov": ["date"],
         "specific_risk": ["date", "ticker"], "factor_validation": None}


def clock(call):
    """(result, wall s, CPU s of this process) of one call."""
    w, c = time.perf_counter(), time.process_time()
    out = call()
    return out, time.perf_counter() - w, time.process_time() - c


class Stages:
    """progress(stage) callback recording wall and CPU seconds per stage."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float, float]] = []

    def __call__(self, stage: str) -> None:
        self.marks.append((stage, time.perf_counter(), time.process_time()))

    def summary(self) -> dict[str, dict[str, float]]:
        """Seconds from each mark to the next (the last mark: the end), summed by stage name."""
        out: dict[str, dict[str, float]] = {}
        for (stage, w, c), (_, w2, c2) in zip(self.marks, self.marks[1:]):
            got = out.setdefault(stage, {"wall_s": 0.0, "cpu_s": 0.0})
            got["wall_s"] = round(got["wall_s"] + w2 - w, 3)
            got["cpu_s"] = round(got["cpu_s"] + c2 - c, 3)
        return out


def synthetic_store(root: Path, names: int, days: int):
    """(store with the whole market, its last day) — the caller builds on all but that day."""
    from riskstrata.data.store import Store
    from riskstrata.data.synthetic import synthetic_market
    from riskstrata.services.demo import load_synthetic_into_store

    store = Store(root)
    load_synthetic_into_store(store, synthetic_market(n_stocks=names, n_days=days, seed=7, styles=True))
    last = pd.DatetimeIndex(store.read_table("prices", columns=["date"])["date"].unique()).max()
    return store, last, f"synthetic market with fundamentals and volume, {names} names × {days} days"


def real_store(root: Path):
    """(store with the real data, its last day): core.parquet's stocks, sectors, snapshots, issuers."""
    from riskstrata.data.fundamentals import ingest_fundamentals
    from riskstrata.data.ingest import ingest_classifications, ingest_prices
    from riskstrata.data.master import ingest_issuers
    from riskstrata.data.registry import EtfRegistry
    from riskstrata.data.store import Store

    gics = pd.read_csv(SHARED / "reference" / "gics_current.csv")
    px = pd.read_parquet(SHARED / "prices" / "core.parquet", filters=[("date", ">=", pd.Timestamp("2012-12-01"))])
    px = px[px["ticker"].isin(set(gics["ticker"]))]
    root.mkdir(parents=True, exist_ok=True)
    px.to_parquet(root.parent / "prices.parquet", index=False)
    store = Store(root)
    ingest_prices(store, [root.parent / "prices.parquet"], etf_tickers=set(EtfRegistry.default().known_etfs()))
    ingest_classifications(store, SHARED / "reference" / "gics_current.csv")
    ingest_fundamentals(store, SHARED / "fundamentals" / "snapshots.parquet")
    ingest_issuers(store, SHARED / "sec" / "company_tickers.parquet")
    return store, px["date"].max(), f"real: {px['ticker'].nunique()} stocks of core.parquet with GICS sectors, " \
                                    f"fundamentals snapshots, SEC issuers; 2013-06-03 … {px['date'].max().date()}"


def largest_difference(store, version: str, full, full_version: str) -> dict[str, float]:
    """Per stored part, max |updated − rebuilt| / max(|rebuilt|, 1) over float columns."""
    from riskstrata.services import factors as svc

    a = svc.BuiltModel("US21", store.model_meta("factors_US21", version), version)
    b = svc.BuiltModel("US21", full.model_meta("factors_US21", full_version), full_version)
    out = {}
    for part, key in PARTS.items():
        x, y = a.read(store, part), b.read(full, part)
        if key:
            x, y = x.sort_values(key).reset_index(drop=True), y.sort_values(key).reset_index(drop=True)
        if x.shape != y.shape:
            out[part] = float("inf")
            continue
        xf, yf = x.select_dtypes("float").to_numpy(), y.select_dtypes("float").to_numpy()
        with np.errstate(invalid="ignore"):
            out[part] = float(np.nanmax(np.abs(xf - yf) / np.maximum(np.abs(yf), 1.0), initial=0.0))
    return out


def main() -> None:
    from riskstrata.data.store import Store
    from riskstrata.services import factors as svc

    ap = argparse.ArgumentParser()
    ap.add_argument("--names", type=int, default=500)
    ap.add_argument("--days", type=int, default=1260)
    ap.add_argument("--real", action="store_true", help="the real data of ../shared/data instead of synthetic")
    ap.add_argument("--tag", default="", help="suffix of the result files (factors_update<TAG>.md)")
    ap.add_argument("--repeat", type=int, default=5, help="updates timed, each on its own copy of the built store")
    args = ap.parse_args()
    if args.real and not (SHARED / "prices" / "core.parquet").exists():
        sys.exit(f"real data absent at {SHARED}: --real needs it")
    with tempfile.TemporaryDirectory() as tmp:
        store, last, source = real_store(Path(tmp) / "a") if args.real else synthetic_store(Path(tmp) / "a", args.names,
                                                                                           args.days)
        start = "2013-06-01" if args.real else None
        shutil.copytree(store.root, Path(tmp) / "b")
        full = Store(Path(tmp) / "b")
        days = pd.DatetimeIndex(store.read_table("prices", columns=["date"])["date"].unique()).sort_values()
        svc.build_factor_model(store, "US21", start=start, end=days[-2])
        # The same update on copies of the built store (the machine is shared: one run can be
        # a busy second's): the median run's seconds and stages are reported, and the spread.
        copies = [Store(shutil.copytree(store.root, Path(tmp) / f"copy{i}")) for i in range(args.repeat - 1)]
        runs = []
        for target in [store, *copies]:
            stages = Stages()
            info, up_wall, up_cpu = clock(lambda: svc.update_factor_model(target, "US21", progress=stages))
            stages("end")
            runs.append((up_cpu, up_wall, stages.summary(), info))
        info = runs[0][3]  # the original store's, compared with the rebuild below
        up_cpu, up_wall, by_stage, _ = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        cpu_runs = sorted(round(r[0], 3) for r in runs)
        built, re_wall, re_cpu = clock(lambda: svc.build_factor_model(full, "US21", start=start))
        diff = largest_difference(store, info["version"], full, built["version"])
        shape = f"{info['factors']} factors, {built['names']} names × {built['dates']} dates"
    result = {"source": source, "shape": shape, "new_dates": info["new_dates"], "path": info["path"],
              "update": {"wall_s": round(up_wall, 3), "cpu_s": round(up_cpu, 3), "by_stage": by_stage,
                         "cpu_s_runs": cpu_runs},
              "rebuild": {"wall_s": round(re_wall, 2), "cpu_s": round(re_cpu, 2)},
              "speedup_cpu": round(re_cpu / up_cpu, 1), "max_rel_diff_vs_rebuild": diff,
              "machine": f"{platform.machine()}, Python {platform.python_version()}", "conditions": conditions()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"factors_update{args.tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    stage_text = ", ".join(f"{k} {v['cpu_s']:.3f}" for k, v in by_stage.items())
    md = ["# Model B: a one-day update against a full rebuild (same run)", "",
          f"- data: {source}; US21: {shape}; new day {info['new_dates']}",
          f"- update (path: {info['path']}): **{up_cpu:.2f} s CPU** (median of {len(cpu_runs)} runs on copies of the "
          f"store: {', '.join(f'{c:.2f}' for c in cpu_runs)}), {up_wall:.2f} s wall; full rebuild: "
          f"{re_cpu:.2f} s CPU, {re_wall:.2f} s wall; the update costs 1/{re_cpu / up_cpu:.0f} of the rebuild's CPU",
          f"- update CPU seconds by stage (the median run): {stage_text}",
          "- max |update − rebuild| / max(|rebuild|, 1) per stored part: "
          + ", ".join(f"{k} {v:.1e}" for k, v in diff.items()),
          f"- machine: {result['machine']}; load average (1/5/15 min) before/after "
          f"{result['conditions']['load_avg_1_5_15']} on {result['conditions']['cpus']} cores",
          "- command: `python benchmarks/bench_factors_update.py "
          + ("--real" if args.real else f"--names {args.names} --days {args.days}")
          + (f" --repeat {args.repeat}" if args.repeat != 5 else "")
          + (f" --tag {args.tag}" if args.tag else "") + "`"]
    (RESULTS / f"factors_update{args.tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
