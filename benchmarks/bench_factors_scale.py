"""Benchmark: Model B at scale — the full store build, and the regression stage against peers.

Part ``build`` — what users call, ``riskstrata factors build --model US21`` on a store holding a
synthetic market of 3,000 stocks × 2,520 days with fundamentals and volume
(:func:`riskstrata.data.synthetic.synthetic_market` with ``styles=True``, ingested as files the
way ``make run`` does; built once into ``benchmarks/.work``). Every build runs in a fresh
process; wall time, CPU time (user + system) and peak RSS come from ``wait4`` of that process.
``--before SRC`` times the same command on another source tree too (e.g. ``git archive`` of an
older commit's ``src``) in the same run, for before/after figures.

Part ``regression`` — the daily cross-sectional regression on the same returns and exposures
(a market column, 10 normal styles, 10 industry dummies, √cap weights, lognormal caps, 2 % of
the names missing each day), by N ∈ {500, 1500, 3000} and T ∈ {630, 2520}:

- ``riskstrata``: :func:`riskstrata.factors.regression.cross_sectional_regression` (factor
  returns, t-stats, R², condition numbers, constraint residuals, specific returns);
- ``numpy_kkt``: the plain numpy peer — per day, the usable names, X'WX and the bordered KKT
  system with the cap-weighted industry constraint, ``np.linalg.inv``; the same factor returns,
  t-stats, R² and specific returns (asserted equal to 1e-10);
- ``skfolio``: ``skfolio.linear_model.CSLinearRegression`` (the regressor
  ``CharacteristicsFactorModel`` fits with) on the constraint-substituted design, built before
  the clock starts (skfolio's own reparameterisation is not timed); its factor returns mapped
  back are asserted equal to ours;
- ``toraniko``: ``toraniko.model.estimate_factor_returns`` on long polars frames of the same
  data (a different estimator: equal-weighted sector constraint, styles fitted in a second step,
  an N × N weight matrix per day, so not compared number for number). Run where T·N ≤ 630·3000
  or N = 500: it takes ~30 ms a day at 3,000 names.

The machine has 2 cores shared with other work: the load average before and after each part is
in the results, and every figure is the minimum over ``--rounds`` (default 1). The regression
part holds BLAS to one thread for every contender (as the build does).

Usage: python benchmarks/bench_factors_scale.py [--part build|regression|all] [--before SRC]
Writes benchmarks/results/factors_scale.json and benchmarks/results/factors_scale.md.
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

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from timing import conditions  # noqa: E402

ROOT = HERE.parent
WORK = HERE / ".work"
RESULTS = HERE / "results"
STORE = WORK / "fstore_3000x2520"
N_STOCKS, N_DAYS = 3000, 2520
GRID_N, GRID_T = (500, 1500, 3000), (630, 2520)
N_STYLES, N_INDUSTRIES = 10, 10


# ------------------------------------------------------------------------------------ build

def ensure_store(path: Path = STORE) -> Path:
    """The synthetic 3,000 × 2,520 market with fundamentals and volume, ingested once."""
    if (path / "tables" / "fundamentals.parquet").is_file():
        return path
    from riskstrata.data.store import Store
    from riskstrata.data.synthetic import synthetic_market
    from riskstrata.services.demo import load_synthetic_into_store

    market = synthetic_market(n_stocks=N_STOCKS, n_days=N_DAYS, seed=7, styles=True)
    load_synthetic_into_store(Store(path), market)
    return path


def timed_command(cmd: list[str], env: dict | None = None) -> dict:
    """Wall, CPU (user + sys) and peak RSS of one process, from wait4."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out[-2000:]!r}")
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "output": json.loads(out)}


CHILD = """
import json, sys, time
from riskstrata.data.store import Store
from riskstrata.services.factors import build_factor_model

def hwm():  # peak RSS so far, MB (VmHWM)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024

t0 = time.perf_counter()
stages = []
info = build_factor_model(Store(sys.argv[1]), "US21",
                          progress=lambda s: stages.append((s, time.perf_counter() - t0, hwm())))
end = time.perf_counter() - t0
seconds, peak = {}, {}
for (s, a, _), (_, b, m) in zip(stages, stages[1:] + [("end", end, hwm())]):
    seconds[s] = round(seconds.get(s, 0.0) + b - a, 2)
    peak[s] = max(peak.get(s, 0), m)   # the peak RSS reached by the end of the stage
print(json.dumps({"dates": info["dates"], "names": info["names"], "factors": info["factors"], "stages_s": seconds,
                  "peak_rss_mb_by_stage_end": peak}))
"""


def bench_build(rounds: int, before: str | None) -> dict:
    """``build_factor_model(store, "US21")`` — what ``riskstrata factors build`` runs — in a fresh
    process per build, with the seconds of each stage it reports."""
    store = ensure_store()
    cli = [sys.executable, "-c", CHILD, str(store)]
    trees = {"after": None, **({"before": before} if before else {})}
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    load = {"load_before": conditions()}
    for _ in range(rounds):
        for label, src in trees.items():
            env = dict(os.environ)
            if src:
                env["PYTHONPATH"] = str(Path(src).resolve())
            r = timed_command(cli, env)
            info = r.pop("output")
            r.update(info)
            runs[label].append(r)
            print(label, r, flush=True)
    load["load_after"] = conditions()
    best = {k: min(v, key=lambda r: r["wall_s"]) for k, v in runs.items()}
    return {"command": "build_factor_model(Store(STORE), 'US21') (what `riskstrata factors build --model US21` runs)",
            "store": f"synthetic {N_STOCKS} × {N_DAYS}, seed 7, styles=True ({store.relative_to(ROOT)})",
            "runs": runs, "best": best, **load}


# ------------------------------------------------------------------------------- regression

def simulate(T: int, N: int, seed: int = 0) -> dict:
    """Returns r = X·f + ε with a Model B-shaped design; 2 % of name-days missing."""
    rng = np.random.default_rng(seed)
    K = 1 + N_STYLES + N_INDUSTRIES
    X = np.zeros((T, N, K))
    X[..., 0] = 1.0
    X[..., 1:1 + N_STYLES] = rng.standard_normal((T, N, N_STYLES))
    industry = rng.choice(N_INDUSTRIES, size=N, p=np.linspace(1, 3, N_INDUSTRIES) / 20)   # fixed per name
    X[:, np.arange(N), 1 + N_STYLES + industry] = 1.0
    cap = np.exp(rng.normal(22, 1.5, N)) * np.exp(np.cumsum(rng.normal(0, 0.01, (T, N)), axis=0))
    f = rng.normal(0, 0.005, (T, K))
    r = np.einsum("tnk,tk->tn", X, f) + rng.normal(0, 0.02, (T, N))
    gone = rng.random((T, N)) < 0.02
    r[gone] = np.nan
    return {"returns": r, "exposures": X, "weights": np.sqrt(cap), "caps": cap,
            "industry_cols": list(range(1 + N_STYLES, K)), "industry": industry,
            "factors": ["MARKET", *[f"S{i}" for i in range(N_STYLES)], *[f"I{j}" for j in range(N_INDUSTRIES)]],
            "dates": pd.bdate_range("2010-01-04", periods=T), "tickers": pd.Index([f"N{i:05d}" for i in range(N)])}


def numpy_kkt(d: dict) -> dict:
    """The plain numpy peer: per day, X'WX and the bordered KKT system, inverted once."""
    r_all, X_all, w_all, c_all, ind = d["returns"], d["exposures"], d["weights"], d["caps"], d["industry_cols"]
    T, N, K = X_all.shape
    f, t_stat, r2 = np.full((T, K), np.nan), np.full((T, K), np.nan), np.full(T, np.nan)
    u = np.full((T, N), np.nan)
    usable = np.isfinite(r_all) & np.isfinite(X_all).all(axis=2) & (w_all > 0)
    for t in range(T):
        ok = usable[t]
        X, w, r = X_all[t, ok], w_all[t, ok], r_all[t, ok]
        s = np.zeros(K)
        s[ind] = c_all[t, ok] @ X[:, ind]
        xtw = X.T * w
        M = np.zeros((K + 1, K + 1))
        M[:K, :K], M[:K, K], M[K, :K] = xtw @ X, s, s
        m_inv = np.linalg.inv(M)
        ft = (m_inv @ np.append(xtw @ r, 0.0))[:K]
        e = r - X @ ft
        wss = w @ (e * e)
        f[t], u[t, ok] = ft, e
        t_stat[t] = ft / np.sqrt(wss / (len(r) - K + 1) * np.diag(m_inv)[:K])
        rbar = (w @ r) / w.sum()
        r2[t] = 1.0 - wss / (w @ (r - rbar) ** 2)
    return {"f": f, "t": t_stat, "r2": r2, "u": u}


def ours(d: dict) -> dict:
    from riskstrata.factors.regression import cross_sectional_regression

    res = cross_sectional_regression(d["returns"], d["exposures"], d["weights"], d["factors"], d["industry_cols"],
                                     d["caps"], dates=d["dates"], tickers=d["tickers"])
    return {"f": res.factor_returns.to_numpy(), "t": res.t_stats.to_numpy(), "r2": res.r2.to_numpy(),
            "u": res.specific_returns.to_numpy()}


def substituted(d: dict) -> tuple[np.ndarray, np.ndarray]:
    """(X·R (T, N, K − 1), R (T, K, K − 1)): the industry with the largest cap eliminated each day."""
    X, c, ind = d["exposures"], np.where(np.isfinite(d["returns"]), d["caps"], 0.0), d["industry_cols"]
    T, N, K = X.shape
    cap_ind = np.einsum("tn,tnj->tj", c, X[..., ind])
    lead = np.argmax(cap_ind, axis=1)
    R = np.zeros((T, K, K - 1))
    for t in range(T):
        L = ind[lead[t]]
        free = [k for k in range(K) if k != L]
        R[t, free, np.arange(K - 1)] = 1.0
        for j, cj in zip(ind, cap_ind[t]):
            if j != L:
                R[t, L, free.index(j)] = -cj / cap_ind[t, lead[t]]
    return np.matmul(X, R), R


def skfolio_fit(d: dict, XR: np.ndarray, R: np.ndarray) -> np.ndarray:
    from skfolio.linear_model import CSLinearRegression

    ok = np.isfinite(d["returns"])
    w = np.where(ok, d["weights"], 0.0)
    model = CSLinearRegression().fit(np.where(ok[..., None], XR, np.nan), d["returns"], cs_weights=w)
    return np.einsum("tkj,tj->tk", R, model.coef_)


def toraniko_frames(d: dict):
    import polars as pl

    T, N, K = d["exposures"].shape
    date = np.repeat(d["dates"].to_numpy(), N)
    sym = np.tile(np.asarray(d["tickers"], dtype=object), T)
    keep = np.isfinite(d["returns"].ravel())
    base = {"date": date[keep], "symbol": sym[keep]}
    ret = pl.DataFrame({**base, "asset_returns": d["returns"].ravel()[keep]})
    cap = pl.DataFrame({**base, "market_cap": d["caps"].ravel()[keep]})
    flat = d["exposures"].reshape(T * N, K)[keep]
    sectors = pl.DataFrame({**base, **{f"I{j}": flat[:, 1 + N_STYLES + j] for j in range(N_INDUSTRIES)}})
    styles = pl.DataFrame({**base, **{f"S{i}": flat[:, 1 + i] for i in range(N_STYLES)}})
    return ret, cap, sectors, styles


def toraniko_fit(frames) -> object:
    from toraniko.model import estimate_factor_returns

    return estimate_factor_returns(*frames, winsor_factor=None)


def clock(call) -> tuple[float, float, object]:
    c0, t0 = time.process_time(), time.perf_counter()
    out = call()
    return time.perf_counter() - t0, time.process_time() - c0, out


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if (np.isfinite(a) != np.isfinite(b)).any():
        return float("inf")
    return float((np.abs(a[ok] - b[ok]) / np.maximum(np.abs(a[ok]), 1.0)).max(initial=0.0))


def bench_regression(rounds: int) -> dict:
    """Every contender with BLAS held to one thread (threadpoolctl), as the build holds it: on 2
    shared cores a multi-threaded BLAS slows the per-day products of all of them erratically."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _bench_regression(rounds)


def _bench_regression(rounds: int) -> dict:
    rows = []
    load = {"load_before": conditions()}
    for T in GRID_T:
        for N in GRID_N:
            d = simulate(T, N, seed=T + N)
            row = {"T": T, "N": N}
            best: dict[str, float] = {}
            outs: dict[str, dict] = {}
            for _ in range(rounds):
                for name, call in (("riskstrata", lambda: ours(d)), ("numpy_kkt", lambda: numpy_kkt(d))):
                    wall, cpu, out = clock(call)
                    if wall < best.get(name, np.inf):
                        best[name], row[f"{name}_cpu_s"], outs[name] = wall, round(cpu, 3), out
            ref, peer = outs["riskstrata"], outs["numpy_kkt"]
            row["max_rel_diff_vs_numpy"] = max(max_rel(ref[k], peer[k]) for k in ("f", "t", "r2", "u"))
            XR, R = substituted(d)
            wall, cpu, f_sk = clock(lambda: skfolio_fit(d, XR, R))
            best["skfolio"], row["skfolio_cpu_s"] = wall, round(cpu, 3)
            row["max_rel_diff_skfolio_f"] = max_rel(ref["f"], f_sk)
            del XR, R
            if T * N <= 630 * 3000 or N == 500:
                frames = toraniko_frames(d)
                wall, cpu, _ = clock(lambda: toraniko_fit(frames))
                best["toraniko"], row["toraniko_cpu_s"] = wall, round(cpu, 3)
                del frames
            for name, s in best.items():
                row[f"{name}_s"] = round(s, 3)
            for name in ("numpy_kkt", "skfolio", "toraniko"):
                if name in best:
                    row[f"ratio_{name}"] = round(best["riskstrata"] / best[name], 3)
            rows.append(row)
            print(row, flush=True)
            del d, outs
    load["load_after"] = conditions()
    return {"grid": rows, **load}


# ---------------------------------------------------------------------------------- report

def versions() -> dict:
    out = {"python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__}
    for mod in ("skfolio", "toraniko", "polars"):
        try:
            from importlib.metadata import version
            out[mod] = version(mod)
        except Exception:  # noqa: BLE001 - a peer that is not installed is reported as such
            out[mod] = None
    return out


def write(result: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "factors_scale.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    old.update(result)
    path.write_text(json.dumps(old, indent=2, default=str) + "\n")
    lines = ["# Model B at scale", "",
             f"Run {old.get('when', '')} on {platform.machine()}, {os.cpu_count()} cores shared with other work "
             "(load averages below); `python benchmarks/bench_factors_scale.py`.", ""]
    if "build" in old:
        b = old["build"]
        lines += [f"## Full build: {b['command']}", "",
                  f"Store: {b['store']}. Fresh process per build; wall, CPU (user + sys) and peak RSS from `wait4`. "
                  f"Load average before/after: {b['load_before']['load_avg_1_5_15']} / "
                  f"{b['load_after']['load_avg_1_5_15']}.", "",
                  "| code | dates × names | factors | wall s | CPU s | peak RSS MB |", "|---|---|---|---|---|---|"]
        for label, r in b["best"].items():
            lines.append(f"| {label} | {r['dates']} × {r['names']} | {r['factors']} | {r['wall_s']} | {r['cpu_s']} | "
                         f"{r['peak_rss_mb']:,} |")
        lines += ["", "Seconds (wall) by the stages the build reports (now, each date block's regression and specific "
                  "returns run inside `exposures`; peak RSS by stage in the .json):", ""]
        for label, r in b["best"].items():
            if r.get("stages_s"):
                lines.append(f"- {label}: " + ", ".join(f"{k} {v}" for k, v in r["stages_s"].items()))
        lines.append("")
    if "regression" in old:
        g = old["regression"]
        lines += ["## Regression stage, same returns and exposures (K = 21)", "",
                  f"Load average before/after: {g['load_before']['load_avg_1_5_15']} / "
                  f"{g['load_after']['load_avg_1_5_15']}. BLAS held to one thread for every contender. Each "
                  "cell: wall s / CPU s; ratio = riskstrata / peer on wall / on CPU (< 1: riskstrata faster; CPU "
                  "is the steadier figure on a loaded machine).", "",
                  "| T | N | riskstrata | numpy KKT | ratio | skfolio CSLinearRegression | ratio | toraniko | ratio | "
                  "max rel. diff vs numpy (f, t, R², u) | vs skfolio (f) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]

        def cell(r: dict, name: str) -> str:
            if f"{name}_s" not in r:
                return "not run | –"
            ratio = (f"{r['riskstrata_s'] / r[f'{name}_s']:.2f} / {r['riskstrata_cpu_s'] / r[f'{name}_cpu_s']:.2f}"
                     if name != "riskstrata" else "")
            return f"{r[f'{name}_s']:.2f} / {r[f'{name}_cpu_s']:.2f}" + (f" | {ratio}" if ratio else "")

        for r in g["grid"]:
            lines.append(f"| {r['T']} | {r['N']:,} | {cell(r, 'riskstrata')} | {cell(r, 'numpy_kkt')} | "
                         f"{cell(r, 'skfolio')} | {cell(r, 'toraniko')} | {r['max_rel_diff_vs_numpy']:.1e} | "
                         f"{r['max_rel_diff_skfolio_f']:.1e} |")
        lines.append("")
    lines += [f"Versions: {old.get('versions')}", ""]
    (RESULTS / "factors_scale.md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("build", "regression", "all"), default="all")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--before", help="a source tree (its src/) to time the same build with, for before/after")
    args = ap.parse_args()
    result = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "versions": versions(),
              "machine": conditions()}
    if args.part in ("build", "all"):
        result["build"] = bench_build(args.rounds, args.before)
    if args.part in ("regression", "all"):
        result["regression"] = bench_regression(args.rounds)
    write(result)


if __name__ == "__main__":
    main()
