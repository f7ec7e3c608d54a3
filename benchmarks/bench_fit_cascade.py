"""Benchmark: the public ``fit_cascade`` next to the engine and a plain numpy baseline, one run.

Same inputs as ``bench_cascade.py`` (the real broad universe of ../shared/data, 2,870 stocks ×
2,520 days, or a synthetic market of that shape where the data is absent). Three ways to get
the cascade's numbers, each timed in a fresh process of its own (so its peak RSS is its own):

- ``numpy``: the textbook peer: per stock and date, trailing-252-day sums of X'X and X'y by
  cumulative sums, and ``np.linalg.solve`` of the normal equations of the L1, L2 and L3
  regressions on raw ETF returns (hedge ratios of the three levels only: no explained risk,
  time-safe returns, L*, vols or identity checks);
- ``engine``: ``CascadeEngine.blocks`` as the store build uses it, every block dropped once made
  (what ``make bench`` times);
- ``fit_cascade``: the public Python API, whose result holds the regression outputs and derives
  the other fields on first read (reading every field once afterwards is timed apart);
- ``scatter``: fit_cascade's assembly before issue 15, for the same run: every block's columns
  written into (T, N) C-order arrays (``target[:, cols] = arr``), every field its own copy.

The three run in turn, round after round (the order rotates), so a busy machine slows each
alike; min and median over the rounds are reported, with the fit_cascade / engine ratio taken
round by round. Timed: from the loaded inputs to the finished result (loading excluded).

Usage: python benchmarks/bench_fit_cascade.py [--rounds 5] [--stocks 3000] [--days 2520]
Writes benchmarks/results/fit_cascade.json and benchmarks/results/fit_cascade.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cascade import RESULTS, WORK, load_frame, peak_rss_mb, prepare_inputs  # noqa: E402

MODES = ("numpy", "engine", "fit_cascade", "scatter")
WINDOW, MIN_OBS = 252, 63


def _rolling(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing window sums along axis 0 by a cumulative sum (rows before the window: partial)."""
    out = np.cumsum(x, axis=0)
    out[window:] -= out[:-window].copy()
    return out


def numpy_hedge_ratios(returns: pd.DataFrame, etf: pd.DataFrame, assignments: pd.DataFrame,
                       chunk: int = 256) -> dict[int, np.ndarray]:
    """Hedge ratios of L1/L2/L3 by rolling normal equations: {level: (T, N, 3)} on (SPY, sector, subsector).

    A stock-day gets a solve when the window has ≥ 63 valid days and X'X is non-singular
    (an ETF not yet listed makes it singular, and the stock-day is NaN).
    """
    r = returns.to_numpy(dtype=np.float64)
    T, N = r.shape
    e = etf.to_numpy(dtype=np.float64)
    col = {name: j for j, name in enumerate(etf.columns)}
    m = e[:, col["SPY"]]
    out = {k: np.full((T, N, 3), np.nan) for k in (1, 2, 3)}
    asg = assignments.reindex(returns.columns)
    pairs = asg[["sector_etf", "subsector_etf"]].astype(object).where(asg.notna(), None)
    keys = [(s, u if u != s else None) for s, u in pairs.itertuples(index=False)]
    for pair in sorted(set(keys), key=str):
        members = np.flatnonzero([k == pair for k in keys])
        legs = [m] + [e[:, col[x]] if x in col else np.full(T, np.nan) for x in pair if x is not None]
        for start in range(0, len(members), chunk):
            cols = members[start:start + chunk]
            y = r[:, cols]
            for level in (1, 2, 3):
                k = min(level, len(legs))
                X = np.column_stack([np.ones(T)] + legs[:k])  # (T, p)
                ok = np.isfinite(y) & np.isfinite(X).all(axis=1)[:, None]
                w = ok.astype(np.float64)
                Xz, yz = np.nan_to_num(X), np.where(ok, y, 0.0)
                xx = _rolling(w[:, :, None, None] * (Xz[:, None, :, None] * Xz[:, None, None, :]), WINDOW)
                xy = _rolling(yz[:, :, None] * Xz[:, None, :], WINDOW)
                n = _rolling(w, WINDOW)
                det = np.linalg.det(xx)
                usable = (n >= MIN_OBS) & (np.abs(det) > 1e-30)
                xx[~usable] = np.eye(k + 1)
                beta = np.linalg.solve(xx, xy[..., None])[..., 0]  # (T, n, p)
                beta[~usable] = np.nan
                out[level][:, cols, :k] = -beta[:, :, 1:]
                out[level][:, cols, k:] = np.where(usable[..., None], 0.0, np.nan)
    return out


def scatter_fit(returns: pd.DataFrame, etf: pd.DataFrame, assignments: pd.DataFrame) -> dict[str, np.ndarray]:
    """fit_cascade's output assembly as it was before issue 15 (scattered column writes)."""
    from riskstrata.cascade.fit import CascadeEngine, CascadeParams
    from riskstrata.cascade.fit import prepare_inputs as prep

    params = CascadeParams(window=WINDOW)
    inputs = prep(returns, etf, assignments, params)
    engine = CascadeEngine(inputs, params)
    T, N = len(inputs.dates), len(inputs.tickers)
    values: dict[str, np.ndarray] = {}
    for block in engine.blocks(check=True):
        cols = inputs.tickers.get_indexer(block.tickers)
        for key, arr in block.values.items():
            target = values.setdefault(key, np.empty((T, N), dtype=arr.dtype))
            target[:, cols] = arr
    engine.link_betas()
    return values


def child(mode: str) -> None:
    """Runs in a fresh process: time one way of fitting, print wall/CPU/peak RSS as JSON."""
    returns, etf = load_frame("returns"), load_frame("etf")
    assignments = pd.read_parquet(WORK / "assignments.parquet")
    rss_inputs = peak_rss_mb()
    extra: dict[str, float] = {}
    c0, t0 = os.times(), time.perf_counter()
    if mode == "numpy":
        numpy_hedge_ratios(returns, etf, assignments)
    elif mode == "engine":
        from riskstrata.cascade.fit import CascadeEngine, CascadeParams
        from riskstrata.cascade.fit import prepare_inputs as prep

        params = CascadeParams(window=WINDOW)
        engine = CascadeEngine(prep(returns, etf, assignments, params), params)
        for _block in engine.blocks(check=True):
            pass
        engine.link_betas()
    elif mode == "fit_cascade":
        from riskstrata import fit_cascade

        result = fit_cascade(returns, etf, assignments, window=WINDOW)
        held = {a.__array_interface__["data"][0]: a.nbytes
                for a in (result.values[k] for k in result.values.held())}
        extra["result_mb"] = sum(held.values()) / 2**20
        extra["result_arrays"] = len(held)
        extra["fields"] = len(result.values)
    else:
        scatter_fit(returns, etf, assignments)
    wall = time.perf_counter() - t0
    c1 = os.times()
    peak = peak_rss_mb()
    if mode == "fit_cascade":
        # Not timed above: the last date's snapshot and one stock's history (derived cells only),
        # then reading every field once (the derived ones computed on first read).
        s0 = time.perf_counter()
        result.snapshot()
        extra["snapshot_ms"] = 1e3 * (time.perf_counter() - s0)
        s0 = time.perf_counter()
        result.history(str(result.tickers[len(result.tickers) // 2]))
        extra["history_ms"] = 1e3 * (time.perf_counter() - s0)
        c2 = os.times()
        t2 = time.perf_counter()
        for key in result.values:
            assert result.values[key].shape == returns.shape
        c3 = os.times()
        extra["read_all_wall_s"] = time.perf_counter() - t2
        extra["read_all_cpu_s"] = (c3.user - c2.user) + (c3.system - c2.system)
        extra["read_all_peak_rss_mb"] = peak_rss_mb()
    print(json.dumps({"mode": mode, "wall_s": wall, "cpu_s": (c1.user - c0.user) + (c1.system - c0.system),
                      "sys_s": c1.system - c0.system, "peak_rss_mb": peak, "rss_inputs_mb": rss_inputs,
                      **extra}))


def agreement(n_stocks: int = 150) -> float:
    """Max |L3 hedge ratio difference| between the numpy peer and fit_cascade on clean stock-days."""
    from riskstrata import fit_cascade

    returns = load_frame("returns").iloc[:, :n_stocks]
    etf = load_frame("etf")
    assignments = pd.read_parquet(WORK / "assignments.parquet")
    ours = fit_cascade(returns, etf, assignments, window=WINDOW, min_obs=MIN_OBS)
    peer = numpy_hedge_ratios(returns, etf, assignments)[3]
    clean = ours.values["flags"] == 0
    worst = 0.0
    for j, name in enumerate(("l3_mkt_hr", "l3_sec_hr", "l3_sub_hr")):
        a, b = ours.values[name], peer[:, :, j]
        both = clean & np.isfinite(a) & np.isfinite(b)
        worst = max(worst, float(np.max(np.abs(a[both] - b[both]))) if both.any() else 0.0)
    return worst


def summarise(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 3), "median": round(median(values), 3), "max": round(max(values), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--stocks", type=int, default=3000)
    ap.add_argument("--days", type=int, default=2520)
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    source = prepare_inputs(args.stocks, args.days)
    load_before = os.getloadavg()
    runs: list[dict] = []
    for i in range(args.rounds):
        order = MODES[i % len(MODES):] + MODES[:i % len(MODES)]
        for mode in order:
            proc = subprocess.run([sys.executable, __file__, "--child", mode], capture_output=True, text=True,
                                  check=True)
            runs.append({**json.loads(proc.stdout.strip().splitlines()[-1]), "round": i})
            print(runs[-1], flush=True)
    load_after = os.getloadavg()
    by = {mode: [r for r in runs if r["mode"] == mode] for mode in MODES}
    stats = {mode: {key: summarise([r[key] for r in rs]) for key in ("wall_s", "cpu_s", "sys_s", "peak_rss_mb")}
             for mode, rs in by.items()}
    stats["read_all"] = {key: summarise([r[f"read_all_{key}"] for r in by["fit_cascade"]])
                         for key in ("wall_s", "cpu_s", "peak_rss_mb")}
    stats["partial"] = {key: summarise([r[key] for r in by["fit_cascade"]]) for key in ("snapshot_ms", "history_ms")}
    ratios: dict[str, dict] = {"fit_cascade": {}, "scatter": {}}
    for mode, per_mode in ratios.items():
        for key in ("wall_s", "cpu_s", "peak_rss_mb"):
            fit = {r["round"]: r[key] for r in by[mode]}
            per_mode[key] = summarise([fit[r["round"]] / r[key] for r in by["engine"]])
    shape = returns_shape()
    result = {
        "data": source,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                   f"numpy {np.__version__}",
        "conditions": f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (1-minute); "
                      "the machine was shared with other busy processes",
        "rounds": args.rounds, "stocks": shape[1], "days": shape[0], "window": WINDOW,
        "stats": stats, "over_engine": ratios,
        "numpy_vs_fit_cascade_max_abs_l3_hr_diff": agreement(),
        "fit_cascade_result_mb": round(by["fit_cascade"][0]["result_mb"], 1),
        "fit_cascade_result_arrays": by["fit_cascade"][0]["result_arrays"],
        "fit_cascade_fields": by["fit_cascade"][0]["fields"],
        "rss_after_loading_inputs_mb": round(median(r["rss_inputs_mb"] for r in runs), 1),
        "targets": {"fit_over_engine_wall": 1.2, "fit_over_engine_peak_rss": 1.2},
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fit_cascade.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "fit_cascade.md").write_text(render(result))
    print(render(result))


def returns_shape() -> tuple[int, int]:
    return tuple(np.load(WORK / "returns.npy", mmap_mode="r").shape)


def render(res: dict) -> str:
    s, q = res["stats"], res["over_engine"]

    def cell(mode: str, key: str, unit: str, scale: float = 1.0) -> str:
        v = s[mode][key]
        return f"{v['median'] * scale:,.2f} {unit} (min {v['min'] * scale:,.2f})"

    lines = [
        "# fit_cascade (public API) next to the engine and a plain numpy baseline",
        "",
        f"- data: {res['data']}",
        f"- machine: {res['machine']}",
        f"- conditions: {res['conditions']}; {res['rounds']} rounds, each way in a fresh process, order rotated",
        "- timed: loaded inputs → finished result (loading excluded); CPU = user + system seconds of the "
        "process over that span (both worker threads), the steadier figure on a busy machine; "
        "peak RSS of the whole process",
        "",
        "| | wall, median (min) | CPU, median (min) | peak RSS, median (min) |",
        "|---|---|---|---|",
        f"| plain numpy rolling normal equations (HRs of 3 levels only) | {cell('numpy', 'wall_s', 's')} | "
        f"{cell('numpy', 'cpu_s', 's')} | {cell('numpy', 'peak_rss_mb', 'GB', 1 / 1024)} |",
        f"| engine (`CascadeEngine.blocks`, blocks dropped) | {cell('engine', 'wall_s', 's')} | "
        f"{cell('engine', 'cpu_s', 's')} | {cell('engine', 'peak_rss_mb', 'GB', 1 / 1024)} |",
        f"| `fit_cascade` (regression outputs held, other fields derived on first read) | "
        f"{cell('fit_cascade', 'wall_s', 's')} | "
        f"{cell('fit_cascade', 'cpu_s', 's')} | {cell('fit_cascade', 'peak_rss_mb', 'GB', 1 / 1024)} |",
        f"| then reading every field once (not in the fit's time; peak of the whole process) | "
        f"{cell('read_all', 'wall_s', 's')} | {cell('read_all', 'cpu_s', 's')} | "
        f"{cell('read_all', 'peak_rss_mb', 'GB', 1 / 1024)} |",
        f"| fit_cascade before issue 15 (scattered column writes, every field copied) | "
        f"{cell('scatter', 'wall_s', 's')} | {cell('scatter', 'cpu_s', 's')} | "
        f"{cell('scatter', 'peak_rss_mb', 'GB', 1 / 1024)} |",
        *(f"| {label} / engine, round by round | {q[m]['wall_s']['median']:.2f}× (min {q[m]['wall_s']['min']:.2f}×) | "
          f"{q[m]['cpu_s']['median']:.2f}× (min {q[m]['cpu_s']['min']:.2f}×) | "
          f"{q[m]['peak_rss_mb']['median']:.2f}× (min {q[m]['peak_rss_mb']['min']:.2f}×) |"
          for m, label in (("fit_cascade", "fit_cascade"), ("scatter", "before issue 15"))),
        "",
        f"The result fit_cascade returns holds {res['fit_cascade_result_mb'] / 1024:.2f} GB "
        f"({res['fit_cascade_result_arrays']} arrays of {res['days']:,} × {res['stocks']:,}: the betas, link "
        f"betas, explained shares, stock variance, flags, the two volatilities and the prepared returns) for "
        f"{res['fit_cascade_fields']} fields; the process holds {res['rss_after_loading_inputs_mb'] / 1024:.2f} GB "
        "once the inputs are loaded. Hedge ratios, residual shares, time-safe factor and residual returns, "
        "L* and n_obs are elementwise arithmetic (or a window count) on those and are derived "
        "exactly (same functions, same bits) when first read, then kept; reading every field once brings "
        "the result to every field held, as before issue 15's memory work.",
        "",
        f"After the fit, `snapshot()` of the last date took {s['partial']['snapshot_ms']['median']:.0f} ms and "
        f"`history()` of one stock {s['partial']['history_ms']['median']:.0f} ms (wall, median): they derive only "
        "their cells and keep nothing.",
        "",
        f"numpy peer vs fit_cascade, L3 hedge ratios on clean stock-days of 150 stocks: max |diff| "
        f"{res['numpy_vs_fit_cascade_max_abs_l3_hr_diff']:.1e}.",
        "",
        "Reproduce: `python benchmarks/bench_fit_cascade.py` (results in benchmarks/results/fit_cascade.json).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
