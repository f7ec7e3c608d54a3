"""Benchmark: a one-day `riskstrata update` of Model A against a full rebuild, in the same run.

Store: the real S&P 500 names + ETFs of ../shared/data/prices/core.parquet from mid-2014 with
current GICS (the test suite's ``real_store``), the cascade built from 2016 on without the last
trading day; with ``--broad``, the 2,870 names of broad.parquet too (longer to ingest). The last
day is then ingested and the store updated (timed: wall and CPU seconds of this process), then
the same store fully rebuilt (timed). The updated version's new rows are checked against the
rebuild's (max absolute difference over every float field). Ingest is not timed.

Usage: python benchmarks/bench_update.py [--broad] [--repeat 3]
Writes benchmarks/results/update.json and benchmarks/results/update.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SHARED = HERE.parent.parent / "shared" / "data"
RESULTS = HERE / "results"

from timing import conditions  # noqa: E402


def clock(call):
    """(result, wall s, CPU s of this process) of one call."""
    w, c = time.perf_counter(), time.process_time()
    out = call()
    return out, time.perf_counter() - w, time.process_time() - c


def make_store(root: Path, broad: bool) -> tuple[str, pd.Timestamp]:
    """Ingest everything but the last day, build; returns (description, last day)."""
    from riskstrata.data.ingest import ingest_classifications, ingest_prices
    from riskstrata.data.registry import EtfRegistry
    from riskstrata.data.store import Store
    from riskstrata.services.cascade import build_cascade

    px = pd.read_parquet(SHARED / "prices" / "core.parquet", filters=[("date", ">=", pd.Timestamp("2014-06-01"))])
    px = px[~px["ticker"].str.startswith("^")]  # yields are not prices
    if broad:
        extra = pd.read_parquet(SHARED / "prices" / "broad.parquet", filters=[("date", ">=", pd.Timestamp("2014-06-01"))])
        px = pd.concat([px, extra[~extra["ticker"].isin(px["ticker"].unique())]], ignore_index=True)
    last = px["date"].max()
    px[px["date"] < last].to_parquet(root / "old.parquet", index=False)
    px[px["date"] == last].to_parquet(root / "new.parquet", index=False)
    store = Store(root / "store")
    etfs = set(EtfRegistry.default().known_etfs())
    ingest_prices(store, [root / "old.parquet"], etf_tickers=etfs)
    ingest_classifications(store, SHARED / "reference" / "gics_current.csv")
    build_cascade(store, start="2016-01-01")
    names = px["ticker"].nunique()
    return f"real: {names} series of {'core + broad' if broad else 'core'}.parquet, 2014-06 … {last.date()}", last


def compare(store, version: str, last: pd.Timestamp, kept: pd.DataFrame) -> dict:
    """The updated version's last day against the rebuild's (the current version): the securities
    whose inferred ETFs the rebuild changed (``moved``) apart, every other row field by field."""
    from riskstrata.services.cascade import MODEL

    rebuilt = store.read_table("cascade_assignments")
    pair = lambda f: f.set_index("security_id")[["sector_etf", "subsector_etf"]].astype(object).fillna("-")  # noqa: E731
    joined = pair(kept).merge(pair(rebuilt), left_index=True, right_index=True, suffixes=("", "_new"))
    moved = joined.index[(joined["sector_etf"] != joined["sector_etf_new"])
                         | (joined["subsector_etf"] != joined["subsector_etf_new"])].astype(str)
    key = ["security_id", "date"]
    a = store.read_model(MODEL, version=version, where="date = ?", params=[last.to_pydatetime()])
    b = store.read_model(MODEL, where="date = ?", params=[last.to_pydatetime()])
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    floats = [c for c in b.columns if pd.api.types.is_float_dtype(b[c])]
    same = ~a["security_id"].astype(str).isin(moved).to_numpy()
    x, y = a[floats].to_numpy(np.float64), b[floats].to_numpy(np.float64)
    diff = np.abs(x - y)
    masked = np.where(same[:, None] & np.isfinite(diff), diff, -1.0)
    row, col = np.unravel_index(np.argmax(masked), masked.shape)
    worst = {"security_id": str(a["security_id"].iloc[row]), "field": floats[col],
             "update": float(x[row, col]), "rebuild": float(y[row, col])}
    return {"worst_other_row": worst,"rows": len(a), "rows_rebuild": len(b), "fields": len(floats),
            "inferred_moved_by_rebuild": len(moved), "moved": sorted(moved)[:10],
            "max_abs_diff_other_rows": float(np.nanmax(diff[same], initial=0.0)),
            "max_abs_diff_moved_rows": float(np.nanmax(diff[~same], initial=0.0)),
            "nan_pattern_equal_other_rows": bool((np.isnan(x[same]) == np.isnan(y[same])).all())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--broad", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not (SHARED / "prices" / "core.parquet").exists():
        sys.exit(f"real data absent at {SHARED}: this benchmark needs it")
    from riskstrata.data.ingest import ingest_prices
    from riskstrata.data.registry import EtfRegistry
    from riskstrata.data.store import Store
    from riskstrata.errors import DataValidationError
    from riskstrata.services.cascade import build_cascade
    from riskstrata.services.update import update_cascade

    work = Path(tempfile.mkdtemp(prefix="bench_update_"))
    try:
        t = time.perf_counter()
        source, last = make_store(work, args.broad)
        setup_s = time.perf_counter() - t
        base = work / "store"
        updates, rebuilds, check = [], [], None
        for i in range(args.repeat + 1):  # each run on a fresh copy of the built store; the last: --check-inferred
            root = work / f"copy{i}"
            shutil.copytree(base, root)
            store = Store(root)
            ingest_prices(store, [work / "new.parquet"], etf_tickers=set(EtfRegistry.default().known_etfs()))
            if i == args.repeat:
                w, c = time.perf_counter(), time.process_time()
                try:
                    outcome = update_cascade(store, check_inferred=True).status
                except DataValidationError as exc:
                    outcome = f"refused: {exc}"
                checked = {"wall_s": round(time.perf_counter() - w, 3), "cpu_s": round(time.process_time() - c, 3),
                           "outcome": outcome[:400]}
                shutil.rmtree(root)
                break
            kept = store.read_table("cascade_assignments")
            summary, wall, cpu = clock(lambda: update_cascade(store))
            assert summary.status == "updated" and summary.new_dates == [str(last.date())], summary
            updates.append({"wall_s": wall, "cpu_s": cpu, "rows": summary.rows})
            rebuilt, wall, cpu = clock(lambda: build_cascade(store, start="2016-01-01"))
            rebuilds.append({"wall_s": wall, "cpu_s": cpu, "rows": rebuilt.rows})
            if check is None:
                check = compare(store, summary.version, last, kept)
            shutil.rmtree(root)
        med = lambda xs, k: statistics.median(x[k] for x in xs)  # noqa: E731
        result = {
            "data": source, "last_day": str(last.date()),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                       f"numpy {np.__version__}",
            "conditions": {**conditions(), "note": "2 cores shared with other helpers' work during the run: noisy"},
            "setup_s_not_timed": round(setup_s, 1),
            "update_one_day": {"wall_s_median": round(med(updates, "wall_s"), 3),
                               "cpu_s_median": round(med(updates, "cpu_s"), 3),
                               "runs": [{k: round(v, 3) if isinstance(v, float) else v for k, v in u.items()}
                                        for u in updates]},
            "full_rebuild": {"wall_s_median": round(med(rebuilds, "wall_s"), 3),
                             "cpu_s_median": round(med(rebuilds, "cpu_s"), 3),
                             "runs": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
                                      for r in rebuilds]},
            "speedup_wall": round(med(rebuilds, "wall_s") / med(updates, "wall_s"), 1),
            "new_day_vs_rebuild": check,
            "update_check_inferred": checked,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    name = "update_broad" if args.broad else "update"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    u, r, c = result["update_one_day"], result["full_rebuild"], result["new_day_vs_rebuild"]
    md = [
        "# Daily update of Model A: one day appended vs a full rebuild",
        "",
        f"- data: {result['data']}; cascade stored from 2016-01 (window 252); the last day {result['last_day']} "
        "ingested after the build",
        f"- machine: {result['machine']}; load average (1/5/15 min) {result['conditions']['load_avg_1_5_15']} "
        "— the 2 cores were shared with other work, so times are noisy",
        f"- `update` (one day, {u['runs'][0]['rows']:,} new rows): **{u['wall_s_median']} s wall, "
        f"{u['cpu_s_median']} s CPU** (median of {len(u['runs'])})",
        f"- full rebuild of the same store (`build cascade --start 2016-01-01`): **{r['wall_s_median']} s wall, "
        f"{r['cpu_s_median']} s CPU** (median of {len(r['runs'])})",
        f"- update / rebuild: **{result['speedup_wall']}×** faster",
        f"- the new day's rows against the rebuild's: {c['rows']:,} rows (rebuild {c['rows_rebuild']:,}), "
        f"{c['fields']} float fields: max |difference| **{c['max_abs_diff_other_rows']:.1e}**, missing values in "
        f"the same places: {c['nan_pattern_equal_other_rows']}" + (
            f" — except the {c['inferred_moved_by_rebuild']} unclassified securities whose ETFs the rebuild "
            f"re-inferred differently from the longer history ({', '.join(c['moved'])}; their rows differ by up to "
            f"{c['max_abs_diff_moved_rows']:.1e}): the update keeps the build's inferred ETFs"
            if c["inferred_moved_by_rebuild"] else "; no inferred ETFs moved"),
        f"  - largest difference: {c['worst_other_row']['field']} of {c['worst_other_row']['security_id']} "
        f"(update {c['worst_other_row']['update']:.12g}, rebuild {c['worst_other_row']['rebuild']:.12g})",
        f"- `update --check-inferred` (re-runs the inference on the whole history, as a rebuild does): "
        f"{result['update_check_inferred']['cpu_s']} s CPU, {result['update_check_inferred']['wall_s']} s wall → "
        f"{result['update_check_inferred']['outcome'][:160]}",
        "",
        f"Reproduce: `python benchmarks/bench_update.py{' --broad' if args.broad else ''}` "
        "(needs ../shared/data).",
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
