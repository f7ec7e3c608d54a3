"""Benchmark and result: the L* study (issue 16) on the real S&P 500 data.

Data: ../shared/data/prices/core.parquet (current S&P 500 names + the registry's ETFs) and the
current GICS classification (reference/gics_current.csv), from 2005-06 so that the study's
first date (2006-08-01 by default) has a full 252-day window; 20 years to 2026-08.

Timed, in one process:
1. the cascade build (fit_cascade, window 252, every current S&P 500 name) — the model a user
   already has; the study reuses it;
2. the default study: stratified seeded sample of 275 names over the 11 sectors, θ grid
   {0, 0.25, 0.5, 1, 2, 5 %, ∞} + L1/L2/L3, horizons 21 and 63 days, 5 bps per dollar traded,
   1,000 block-bootstrap replicates (63-day blocks);
3. the peer: what "refit per θ" would cost — fit_cascade on the 275 sampled names, once, timed;
   a per-θ refit does that once per rule (10 rules). (The fits do not depend on θ at all, which
   is why the study does not refit.)

Usage: python benchmarks/bench_lstar_study.py [--start 2006-08-01] [--end 2026-08-03]
Writes benchmarks/results/lstar_study.json and benchmarks/results/lstar_study.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
RESULTS = HERE / "results"


def load_real(start: pd.Timestamp, end: pd.Timestamp):
    """(returns, etf_returns, assignments, sectors) of the current S&P 500 from core.parquet."""
    from riskstrata.data.registry import EtfRegistry

    registry = EtfRegistry.default()
    gics = pd.read_csv(SHARED / "reference" / "gics_current.csv")
    px = pd.read_parquet(SHARED / "prices" / "core.parquet",
                         filters=[("date", ">=", start - pd.Timedelta(days=400)), ("date", "<=", end)])
    px = px[~px["ticker"].str.startswith("^") & (px["adj_close"] > 0)]
    wide = px.pivot(index="date", columns="ticker", values="adj_close").sort_index()
    rets = wide.pct_change(fill_method=None).iloc[1:]
    etfs = [e for e in registry.etfs() if e in rets.columns]
    stocks = [t for t in gics["ticker"] if t in rets.columns and t not in set(etfs)]
    assignments = registry.assign(gics[gics["ticker"].isin(stocks)][["ticker", "gics_sector", "gics_sub_industry"]])
    assignments = assignments.set_index("ticker")[["sector_etf", "subsector_etf"]]
    keep = assignments["sector_etf"].isin(etfs)
    assignments.loc[~assignments["subsector_etf"].isin(etfs), "subsector_etf"] = assignments["sector_etf"]
    sectors = gics.set_index("ticker")["gics_sector"].reindex(stocks)
    return rets[stocks], rets[etfs], assignments[keep], sectors


def build_store(start: pd.Timestamp, end: pd.Timestamp):
    """A temporary store with core.parquet from a year before ``start`` and current GICS, cascade built."""
    import tempfile

    from riskstrata.data.ingest import ingest_classifications, ingest_prices
    from riskstrata.data.registry import EtfRegistry
    from riskstrata.data.store import Store
    from riskstrata.services.cascade import build_cascade

    tmp = Path(tempfile.mkdtemp(prefix="lstar_bench_"))
    px = pd.read_parquet(SHARED / "prices" / "core.parquet",
                         filters=[("date", ">=", start - pd.Timedelta(days=400)), ("date", "<=", end)])
    px = px[~px["ticker"].str.startswith("^")]
    px.to_parquet(tmp / "core.parquet", index=False)
    store = Store(tmp / "store", create=True)
    t0 = time.perf_counter()
    ingest_prices(store, [tmp / "core.parquet"], etf_tickers=set(EtfRegistry.default().known_etfs()))
    ingest_classifications(store, SHARED / "reference" / "gics_current.csv")
    summary = build_cascade(store, start=start, end=end)
    return store, (f"store at {tmp}: ingest + build {time.perf_counter() - t0:.0f}s (not timed), "
                   f"{summary.securities} securities, {summary.rows:,} rows")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", default="2006-08-01")
    ap.add_argument("--end", default="2026-08-03")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--skip-store", action="store_true", help="skip the study read from a store (the CLI path)")
    args = ap.parse_args()
    if not (SHARED / "prices" / "core.parquet").exists():
        raise SystemExit(f"real data absent at {SHARED}; this benchmark needs it")
    from riskstrata.cascade.fit import fit_cascade
    from riskstrata.research import run_lstar_study
    from riskstrata.research.service import panel_from_result

    start, end = pd.Timestamp(args.start), pd.Timestamp(args.end)
    t0 = time.perf_counter()
    returns, etf_returns, assignments, sectors = load_real(start, end)
    load_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    result = fit_cascade(returns, etf_returns, assignments, window=252)
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    study = run_lstar_study(result=result, sectors=sectors, start=start, end=end, n_boot=args.n_boot,
                            etf_returns=etf_returns)
    study_s = time.perf_counter() - t0

    # The CLI's path: the same study read from a store's built cascade (ingest and build not timed).
    store_s = store_note = None
    if not args.skip_store:
        store, store_note = build_store(start, end)
        t0 = time.perf_counter()
        from_store = run_lstar_study(store, start=start, end=end, n_boot=args.n_boot)
        store_s = time.perf_counter() - t0
        store_note += f"; best θ from the store: {from_store.best_rule}"

    # Peer: one refit of the sampled universe (a per-θ refit repeats it for each of the 10 rules).
    sample = panel_from_result(result, sectors, start=start, end=end).tickers
    t0 = time.perf_counter()
    fit_cascade(returns[sample], etf_returns, assignments.reindex(sample).dropna(how="all"), window=252, check=False)
    refit_s = time.perf_counter() - t0
    n_rules = len(study.rules)

    load = os.getloadavg()
    record = {
        "data": f"core.parquet: {returns.shape[1]} current S&P 500 names × {returns.shape[0]} days "
                f"({returns.index[0].date()} … {returns.index[-1].date()}), {etf_returns.shape[1]} ETFs",
        "study_window": [study.params["start"], study.params["end"]],
        "stocks_studied": study.params["stocks"], "common_stock_days": study.params["common_stock_days"],
        "load_s": load_s, "cascade_build_s": build_s, "study_s": study_s,
        "study_from_store_s": store_s, "store": store_note,
        "peer_refit_once_s": refit_s, "peer_refit_per_rule_s": refit_s * n_rules, "rules": n_rules,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} during the run (shared with other work)",
        "result": study.to_dict(),
    }
    RESULTS.mkdir(exist_ok=True)
    from riskstrata.jsonsafe import dumps_json

    (RESULTS / "lstar_study.json").write_bytes(dumps_json(record, indent=True))
    (RESULTS / "lstar_study.md").write_text(render(record, study), encoding="utf-8")
    print(render(record, study))


def _p(x: float) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x * 100:.2f}"


def render(rec: dict, study) -> str:
    h1, h2 = study.params["horizons"][:2]
    r = study.rules
    lines = [
        "# The L* study on the real data (benchmarks/bench_lstar_study.py)", "",
        f"Data: {rec['data']}. Study window {rec['study_window'][0]} … {rec['study_window'][1]}, "
        f"{rec['stocks_studied']} names (stratified seeded sample over the 11 GICS sectors), "
        f"{rec['common_stock_days']:,} stock-days on the common sample.", "",
        f"Machine: {rec['machine']}. Timings on this shared, loaded machine are noisy.", "",
        "| step | seconds |", "|---|---:|",
        f"| load core.parquet (not part of the study) | {rec['load_s']:.1f} |",
        f"| cascade build, all names, window 252 (the model the study reuses) | {rec['cascade_build_s']:.1f} |",
        f"| **the study** ({rec['rules']} rules, 2 horizons, {study.params['n_boot']} bootstrap replicates) | **{rec['study_s']:.1f}** |",
        *([f"| the same study read from a store's built cascade (the CLI path: `riskstrata research lstar-study`) "
           f"| {rec['study_from_store_s']:.1f} |"] if rec.get("study_from_store_s") is not None else []),
        f"| peer: one refit of the 275 sampled names | {rec['peer_refit_once_s']:.1f} |",
        f"| peer: refit per rule ({rec['rules']} ×) | {rec['peer_refit_per_rule_s']:.1f} |", "",
        *([f"Store: {rec['store']}.", ""] if rec.get("store") else []),
        "## Result", "", study.summary, "",
        f"Effectiveness = 1 − ΣVar(residual)/ΣVar(gross) over the {h1} and {h2} trading days following each "
        "stock-day (hedge ratios and the depth through the day before, rebalanced daily); 95 % intervals from a "
        f"{study.params['block_days']}-day block bootstrap over dates; net of {study.params['cost_bps']:g} bps per "
        "dollar of ETF traded. All values in %, except leverage (Σ|HR|), turnover (Σ|ΔHR| per year) and "
        "depth changes per year. 'held' = the hedge set at the window's first day and left unchanged.", "",
        f"| rule | eff {h1}d | 95% CI | eff {h2}d | 95% CI | held {h1}d | held {h2}d | 95% CI | net {h1}d "
        f"| hedge added var {h1}d | Σ\\|HR\\| | turnover/yr | depth changes/yr | at L1/L2/L3 |",
        "|---|---:|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, x in r.iterrows():
        lines.append(
            f"| {name} | {_p(x[f'eff_{h1}'])} | {_p(x[f'eff_{h1}_lo'])} … {_p(x[f'eff_{h1}_hi'])} | "
            f"{_p(x[f'eff_{h2}'])} | {_p(x[f'eff_{h2}_lo'])} … {_p(x[f'eff_{h2}_hi'])} | "
            f"{_p(x[f'hold_eff_{h1}'])} | {_p(x[f'hold_eff_{h2}'])} | {_p(x[f'hold_eff_{h2}_lo'])} … "
            f"{_p(x[f'hold_eff_{h2}_hi'])} | {_p(x[f'net_eff_{h1}'])} | "
            f"{_p(x[f'added_{h1}'])} | {x['gross_leverage']:.2f} | {x['turnover_per_year']:.1f} | "
            f"{x['depth_changes_per_year']:.1f} | {_p(x['share_l1'])}/{_p(x['share_l2'])}/{_p(x['share_l3'])} |")
    d = study.differences
    lines += ["", f"Gap to the best θ ({study.best_rule}), {h1}-day effectiveness, paired bootstrap (percentage points):", "",
              "| rule | gap | 95% CI |", "|---|---:|---|"]
    for name, x in d.iterrows():
        lines.append(f"| {name} | {_p(x[f'diff_{h1}'])} | {_p(x[f'diff_{h1}_lo'])} … {_p(x[f'diff_{h1}_hi'])} |")
    heat = study.heatmap()
    lines += ["", f"Per-sector {h1}-day effectiveness (%), the heatmap data:", "",
              "| sector | " + " | ".join(heat.columns) + " |", "|---|" + "---:|" * len(heat.columns)]
    for sector, row in heat.iterrows():
        lines.append(f"| {sector} | " + " | ".join(_p(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
