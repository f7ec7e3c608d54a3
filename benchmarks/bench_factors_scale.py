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

Part ``regression`` also times the whole models on the same data (second table):

- ``skfolio_model``: ``skfolio.prior.CharacteristicsFactorModel.fit`` — exposures (passthrough
  styles, a global factor, one-hot industries from an integer-coded field), the cap-weighted
  industry zero-sum basis, the √cap-weighted regression, expected factor returns (``EWMu``), the
  latest factor covariance (``RegimeAdjustedEWCovariance``), idiosyncratic variances on every
  date (``RegimeAdjustedEWVariance``), the N × N asset covariance and T × N asset return
  scenarios. Its panel is built before the clock starts. skfolio lags exposures by at least one
  observation, so the panel is shifted by one (observation s holds day s's exposures and caps and
  day s − 1's returns): it regresses the same returns on the same exposures, with the same √cap
  weights. Half-lives, Newey–West lags and regime half-life set to US21's (see :data:`SK_RISK`).
- ``riskstrata_model``: riskstrata's regression + specific risk (:func:`specific_risk_with_state`,
  what the build runs) + factor covariance (:func:`factor_covariance`, eigen adjustment
  included) with US21's ``[risk]`` settings — the stages of the build that correspond to
  skfolio's fit.

The machine has 2 cores shared with other work: the load average before and after each part is
in the results, and every figure is the minimum over ``--rounds`` (default 1). The regression
part holds BLAS to one thread for every contender (as the build does). Each part records when it
ran and the commit it ran on; ``--part regression`` keeps the stored build rows (with their date).

Usage: python benchmarks/bench_factors_scale.py [--part build|regression|all] [--rounds R] [--before SRC]
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
            "u": res.specific_returns.to_numpy(), "result": res}


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


# ------------------------------------------------------------------------ whole models

# skfolio's risk estimators set as close to US21's [risk] as their parameters allow: volatility
# half-life 84, correlation half-life 504, Newey–West 5 lags (skfolio has one HAC lag count for
# the whole matrix; US21 uses 5 for volatilities, 2 for correlations), regime (VRA) half-life 42.
# No eigenfactor adjustment and no size-decile shrinkage exist in skfolio: not emulated.
SK_RISK = {"half_life": 84, "corr_half_life": 504, "hac_lags": 5, "regime_half_life": 42}
SK_IDIO = {"half_life": 84, "hac_lags": 5, "regime_half_life": 42}


def skfolio_panel(d: dict):
    """The benchmark's data as skfolio's ``AssetPanel`` of T + 1 observations, shifted by one.

    ``CharacteristicsFactorModel`` regresses the returns of observation s on the exposures (and
    √cap weights) of observation s − 1 (``exposure_lag`` ≥ 1). Observation s therefore holds day
    s's styles, caps and industries and day s − 1's returns (observation 0: zero returns, never
    regressed; observation T: day T − 1's exposures again, never used as a regressor), so its
    regression s is ours of day s − 1. Styles are 2-D fields read back by ``Passthrough``;
    industries an integer-coded field that ``OneHotCategoricalFactors`` expands.
    """
    from skfolio.containers import AssetPanel, Field2D, FieldCategorical

    X, r, cap, industry = d["exposures"], d["returns"], d["caps"], d["industry"]
    T, N, _ = X.shape

    def ahead(a: np.ndarray) -> np.ndarray:  # (T, N) → (T + 1, N): day s at observation s
        return np.concatenate([a, a[-1:]], axis=0)

    fields = {"returns": Field2D(np.concatenate([np.zeros((1, N)), r], axis=0)),
              "market_cap": Field2D(ahead(cap)),
              "industry": FieldCategorical(np.broadcast_to(industry, (T + 1, N)).copy(),
                                           levels=np.array([f"I{j}" for j in range(N_INDUSTRIES)]))}
    for i in range(N_STYLES):
        fields[f"S{i}"] = Field2D(ahead(X[..., 1 + i]))
    dates = pd.bdate_range(d["dates"][0] - pd.offsets.BDay(1), periods=T + 1)
    return AssetPanel(fields=fields, observations=dates.to_numpy(), asset_names=np.asarray(d["tickers"], dtype=str))


def skfolio_model():
    """``CharacteristicsFactorModel`` with our design: a global (market) factor, 10 styles passed
    through untouched (no winsorising or re-scoring: the exposures are already standardised),
    10 one-hot industries under a cap-weighted zero-sum constraint, √cap regression weights."""
    from skfolio.descriptor import Passthrough
    from skfolio.factor_exposure import FixedWeightedFactor, GlobalFactor, OneHotCategoricalFactors
    from skfolio.moments import EWMu, RegimeAdjustedEWCovariance
    from skfolio.moments.variance import RegimeAdjustedEWVariance
    from skfolio.prior import CharacteristicsFactorModel, EmpiricalPrior

    styles = [(f"S{i}", FixedWeightedFactor(descriptors=[(f"S{i}", Passthrough(f"S{i}"))],
                                            outlier_transformer="passthrough", scoring_transformer="passthrough"))
              for i in range(N_STYLES)]
    return CharacteristicsFactorModel(
        factors=[("MARKET", GlobalFactor()), ("industry", OneHotCategoricalFactors("industry", family="industry")),
                 *styles],
        constrained_families=[("industry", None)],   # benchmark-weighted zero sum: with power 1, cap-weighted
        benchmark_mcap_power=1.0, regression_mcap_power=0.5,   # ours: cap constraint, √cap weights
        factor_prior_estimator=EmpiricalPrior(mu_estimator=EWMu(), covariance_estimator=RegimeAdjustedEWCovariance(**SK_RISK)),
        idio_variance_estimator=RegimeAdjustedEWVariance(**SK_IDIO), n_jobs=1)


def skfolio_model_diffs(d: dict, ref: dict, fitted) -> dict:
    """How far skfolio's fitted regression is from ours: specific returns, style returns, and the
    market and industry returns. The last differ by design: skfolio's zero-sum weights are the
    caps of the names with a return on the exposure date (observation s − 1), ours the names
    with a return on the regression day, and 2 % of names are missing at random each day."""
    fm = fitted.factor_model_
    names = [str(n) for n in fm.factor_names]
    f = fm.factor_returns[:, [names.index(n) for n in d["factors"]]]
    style = slice(1, 1 + N_STYLES)
    rest = [0, *range(1 + N_STYLES, len(d["factors"]))]
    return {"max_abs_diff_u": float(np.nanmax(np.abs(ref["u"] - fm.idio_returns))),
            "max_abs_diff_f_styles": float(np.nanmax(np.abs(ref["f"][:, style] - f[:, style]))),
            "max_abs_diff_f_market_industries": float(np.nanmax(np.abs(ref["f"][:, rest] - f[:, rest]))),
            "max_abs_f_market_industries": float(np.nanmax(np.abs(ref["f"][:, rest])))}


def ours_risk(d: dict, res) -> dict[str, tuple[float, float]]:
    """(wall s, CPU s) of riskstrata's specific risk and factor covariance on a regression result,
    with US21's [risk] settings, as the build runs them; and of the factor covariance without
    the eigenfactor adjustment (``eigen_sims=0``), the like-for-like figure for a peer that has
    none (its Monte Carlo is most of the stage's cost)."""
    from dataclasses import replace

    from riskstrata.factors.covariance import factor_covariance
    from riskstrata.factors.model import covariance_params, specific_params
    from riskstrata.factors.spec import load_spec
    from riskstrata.factors.specific import specific_risk_with_state

    spec = load_spec("US21")
    caps = pd.DataFrame(d["caps"], index=d["dates"], columns=d["tickers"])
    groups = ["market"] + ["style"] * N_STYLES + ["industry"] * N_INDUSTRIES
    wall_s, cpu_s, _ = clock(lambda: specific_risk_with_state(res.specific_returns, caps, specific_params(spec)))
    wall_c, cpu_c, _ = clock(lambda: factor_covariance(res.factor_returns, covariance_params(spec), groups=groups))
    no_eigen = replace(covariance_params(spec), eigen_sims=0)
    wall_n, cpu_n, _ = clock(lambda: factor_covariance(res.factor_returns, no_eigen, groups=groups))
    return {"specific_risk": (wall_s, cpu_s), "factor_covariance": (wall_c, cpu_c),
            "factor_covariance_no_eigen": (wall_n, cpu_n)}


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


def warm_imports() -> None:
    """Import every contender's modules before any clock starts: a first cell must not pay for
    loading scikit-learn or polars."""
    import riskstrata.factors.covariance  # noqa: F401
    import riskstrata.factors.regression  # noqa: F401
    import riskstrata.factors.specific  # noqa: F401
    for peer in ("skfolio.linear_model", "skfolio.prior", "skfolio.factor_exposure", "skfolio.descriptor",
                 "toraniko.model"):
        try:
            __import__(peer)
        except ImportError:  # a peer not installed fails later, at its own call
            pass


def _bench_regression(rounds: int) -> dict:
    warm_imports()
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
            whole_model_rows(d, ref, rounds, row, regression=(best["riskstrata"], row["riskstrata_cpu_s"]))
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


def whole_model_rows(d: dict, ref: dict, rounds: int, row: dict, regression: tuple[float, float]) -> None:
    """Adds to ``row`` riskstrata's regression + specific risk + factor covariance and skfolio's
    whole ``CharacteristicsFactorModel.fit`` (each the minimum wall over ``rounds``, with its CPU),
    their ratio, and how far skfolio's regression is from ours. ``regression``: (wall s, CPU s)
    of riskstrata's regression, already timed on the same data."""
    stages: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        for stage, (wall, cpu) in ours_risk(d, ref["result"]).items():
            if wall < stages.get(stage, (np.inf, np.inf))[0]:
                stages[stage] = (wall, cpu)
    for stage, (wall, cpu) in stages.items():
        row[f"riskstrata_{stage}_s"], row[f"riskstrata_{stage}_cpu_s"] = round(wall, 3), round(cpu, 3)
    reg_wall, reg_cpu = regression
    for total, covariance in (("riskstrata_model", "factor_covariance"),
                              ("riskstrata_model_no_eigen", "factor_covariance_no_eigen")):
        parts = (regression, stages["specific_risk"], stages[covariance])
        row[f"{total}_s"] = round(sum(w for w, _ in parts), 3)
        row[f"{total}_cpu_s"] = round(sum(c for _, c in parts), 3)

    panel, model = skfolio_panel(d), skfolio_model()
    best = (np.inf, np.inf)
    for _ in range(rounds):
        wall, cpu, fitted = clock(lambda: model.fit(characteristics=panel))
        if wall < best[0]:
            best = (wall, cpu)
            row.update({f"skfolio_model_{k}": v for k, v in skfolio_model_diffs(d, ref, fitted).items()})
        del fitted
    row["skfolio_model_s"], row["skfolio_model_cpu_s"] = round(best[0], 3), round(best[1], 3)
    row["ratio_model_skfolio_model"] = round(row["riskstrata_model_s"] / row["skfolio_model_s"], 3)
    row["ratio_model_skfolio_model_cpu"] = round(row["riskstrata_model_cpu_s"] / row["skfolio_model_cpu_s"], 3)
    row["ratio_model_no_eigen_skfolio_model"] = round(row["riskstrata_model_no_eigen_s"] / row["skfolio_model_s"], 3)
    row["ratio_model_no_eigen_skfolio_model_cpu"] = round(row["riskstrata_model_no_eigen_cpu_s"]
                                                          / row["skfolio_model_cpu_s"], 3)


# ---------------------------------------------------------------------------------- report

def versions() -> dict:
    out = {"python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__}
    for mod in ("skfolio", "scikit-learn", "toraniko", "polars"):
        try:
            from importlib.metadata import version
            out[mod] = version(mod)
        except Exception:  # noqa: BLE001 - a peer that is not installed is reported as such
            out[mod] = None
    return out


def head_commit() -> str | None:
    """The short commit the run measured (the code under test; uncommitted edits not shown)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def measured(part: dict) -> str:
    commit = f" at commit {part['commit']}" if part.get("commit") else ""
    return f"Measured {part.get('when', '(date not recorded)')}{commit}"


def build_lines(b: dict) -> list[str]:
    lines = [f"## Full build: {b['command']}", "",
             f"{measured(b)}, `python benchmarks/bench_factors_scale.py --part build`. "
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
    return lines + [""]


def pair(r: dict, name: str) -> str:
    """'wall / CPU' seconds of a contender, or 'not run'."""
    return f"{r[f'{name}_s']:.2f} / {r[f'{name}_cpu_s']:.2f}" if f"{name}_s" in r else "not run"


def ratio(r: dict, num: str, den: str) -> str:
    """num / den on wall and on CPU."""
    if f"{num}_s" not in r or f"{den}_s" not in r:
        return "–"
    return f"{r[f'{num}_s'] / r[f'{den}_s']:.2f} / {r[f'{num}_cpu_s'] / r[f'{den}_cpu_s']:.2f}"


def regression_lines(g: dict) -> list[str]:
    lines = ["## Regression stage, same returns and exposures (K = 21)", "",
             f"{measured(g)}, `python benchmarks/bench_factors_scale.py --part regression --rounds "
             f"{g.get('rounds', 1)}`. Load average before/after: {g['load_before']['load_avg_1_5_15']} / "
             f"{g['load_after']['load_avg_1_5_15']}. BLAS held to one thread for every contender. Each "
             "cell: wall s / CPU s; ratio = riskstrata / peer on wall / on CPU (< 1: riskstrata faster; CPU "
             "is the steadier figure on a loaded machine). riskstrata and numpy: the minimum of the rounds; "
             "skfolio's regressor and toraniko: one run each. toraniko is not run on the two largest cells "
             "(~30 ms a day at 3,000 names).", "",
             "| T | N | riskstrata | numpy KKT | ratio | skfolio CSLinearRegression | ratio | toraniko | ratio | "
             "max rel. diff vs numpy (f, t, R², u) | vs skfolio (f) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in g["grid"]:
        lines.append(f"| {r['T']} | {r['N']:,} | {pair(r, 'riskstrata')} | {pair(r, 'numpy_kkt')} | "
                     f"{ratio(r, 'riskstrata', 'numpy_kkt')} | {pair(r, 'skfolio')} | {ratio(r, 'riskstrata', 'skfolio')} | "
                     f"{pair(r, 'toraniko')} | {ratio(r, 'riskstrata', 'toraniko')} | "
                     f"{r['max_rel_diff_vs_numpy']:.1e} | {r['max_rel_diff_skfolio_f']:.1e} |")
    return lines + [""]


WHOLE_MODEL_NOTES = [
    "What each side computes in the timed region:",
    "",
    "- **riskstrata** (the build's stages after the exposures, US21 `[risk]` settings): the regression "
    "(factor returns, t-stats, R², condition numbers, constraint residuals, specific returns); specific risk "
    "(`specific_risk_with_state`: EWMA + Newey–West 5 lags, half-life 84, Bayesian shrinkage to size deciles, "
    "VRA half-life 42, a (T, N) daily forecast plus the daily-update state); factor covariance "
    "(`factor_covariance`: EWMA + Newey–West, vol/corr half-lives 84/504, lags 5/2, eigenfactor adjustment with "
    "300 simulations every 5 dates on 2 threads, VRA — a (T, K, K) daily forecast).",
    "- **skfolio** `CharacteristicsFactorModel.fit`: the exposures from the panel (a global factor, 10 styles "
    "through `Passthrough` without winsorising or re-scoring, 10 one-hot industries), the cap-weighted "
    "industry zero-sum basis, the √cap-weighted regression (`CSLinearRegression`) and idiosyncratic returns, "
    "expected factor returns (`EWMu`, half-life 40: riskstrata has no counterpart), the factor covariance "
    "(`RegimeAdjustedEWCovariance(half_life=84, corr_half_life=504, hac_lags=5, regime_half_life=42)`: "
    "EWMA + HAC + short-term volatility update, for the latest date only), idiosyncratic variances on every "
    "date (`RegimeAdjustedEWVariance(half_life=84, hac_lags=5, regime_half_life=42)`, (T, N)), the N × N asset "
    "covariance B F Bᵀ + D and T × N asset return scenarios (riskstrata forms neither in the build: a "
    "portfolio's risk is computed from F and D on demand).",
    "",
    "What differs: skfolio has no eigenfactor adjustment, no size-decile shrinkage of specific vols, one HAC "
    "lag count for the whole factor matrix (riskstrata: 5 for vols, 2 for correlations), and its factor "
    "covariance is the latest date's while riskstrata's is every date's; its expected returns, asset "
    "covariance and scenarios have no counterpart in riskstrata's stages. skfolio regresses observation s's "
    "returns on observation s − 1's exposures (`exposure_lag` ≥ 1), so its panel is shifted by one day (built "
    "before the clock starts): the same returns on the same exposures with the same √cap weights. Its "
    "specific returns and style factor returns equal ours to rounding (columns Δu, Δf styles); its market and "
    "industry returns differ slightly because its zero-sum weights are the caps of names with a return on the "
    "exposure date (observation s − 1), ours those with a return on the regression day (2 % of names are "
    "missing at random each day). Both single-threaded BLAS; skfolio `n_jobs=1`; riskstrata's eigen "
    "simulations use 2 threads as in the build (CPU s counts both).",
    "",
]


def whole_model_lines(g: dict, build: dict | None) -> list[str]:
    rows = [r for r in g["grid"] if "skfolio_model_s" in r]
    if not rows:
        return []
    lines = ["## Whole model: riskstrata regression + specific risk + factor covariance vs skfolio "
             "`CharacteristicsFactorModel.fit`", "",
             f"Same run and data as the table above (minimum of {g.get('rounds', 1)} round(s) for every cell). "
             "Each cell: wall s / CPU s; ratio = riskstrata / skfolio fit (< 1: riskstrata faster). "
             "Every cell finished well inside 3 minutes, so none is skipped. The eigenfactor adjustment's Monte "
             "Carlo (300 draws on every 5th date after the 63-day warm-up) is most of riskstrata's factor "
             "covariance; skfolio has none, so riskstrata is also timed without it (`eigen_sims=0`, the same "
             "stage otherwise) for the like-for-like ratio.", "",
             *WHOLE_MODEL_NOTES,
             "| T | N | riskstrata regression | specific risk | factor covariance | riskstrata total | "
             "skfolio CharacteristicsFactorModel.fit | ratio total | factor covariance without eigen adj. | "
             "riskstrata total without it | ratio | ratio regression alone | max abs Δu | "
             "max abs Δf styles | max abs Δf market, industries (max abs f) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['T']} | {r['N']:,} | {pair(r, 'riskstrata')} | {pair(r, 'riskstrata_specific_risk')} | "
                     f"{pair(r, 'riskstrata_factor_covariance')} | {pair(r, 'riskstrata_model')} | "
                     f"{pair(r, 'skfolio_model')} | {ratio(r, 'riskstrata_model', 'skfolio_model')} | "
                     f"{pair(r, 'riskstrata_factor_covariance_no_eigen')} | {pair(r, 'riskstrata_model_no_eigen')} | "
                     f"{ratio(r, 'riskstrata_model_no_eigen', 'skfolio_model')} | "
                     f"{ratio(r, 'riskstrata', 'skfolio_model')} | {r['skfolio_model_max_abs_diff_u']:.1e} | "
                     f"{r['skfolio_model_max_abs_diff_f_styles']:.1e} | "
                     f"{r['skfolio_model_max_abs_diff_f_market_industries']:.1e} "
                     f"({r['skfolio_model_max_abs_f_market_industries']:.1e}) |")
    lines.append("")
    stages = (build or {}).get("best", {}).get("after", {}).get("stages_s")
    if stages:
        lines += [f"In the full US21 build above (3,000 × 2,521 synthetic store, {build.get('when')}) the same two "
                  f"risk stages took {stages.get('specific risk')} s (specific risk) and "
                  f"{stages.get('factor covariance')} s (factor covariance) wall; the regression runs inside its "
                  "`exposures` stage.", ""]
    return lines


GROWTH = (("riskstrata", "riskstrata regression"), ("numpy_kkt", "numpy KKT"),
          ("skfolio", "skfolio CSLinearRegression"), ("toraniko", "toraniko estimate_factor_returns"),
          ("riskstrata_model", "riskstrata regression + specific risk + factor covariance"),
          ("riskstrata_model_no_eigen", "the same, factor covariance without eigen adjustment"),
          ("skfolio_model", "skfolio CharacteristicsFactorModel.fit"))


def growth_lines(g: dict) -> list[str]:
    """CPU seconds at the large end of N (or T) over the small end, the other held fixed."""
    cell = {(r["T"], r["N"]): r for r in g["grid"]}
    n_lo, n_hi, t_lo, t_hi = min(GRID_N), max(GRID_N), min(GRID_T), max(GRID_T)

    def grow(name: str, a: tuple[int, int], b: tuple[int, int]) -> str:
        ra, rb = cell.get(a, {}), cell.get(b, {})
        key = f"{name}_cpu_s"
        return f"×{rb[key] / ra[key]:.1f}" if key in ra and key in rb else "–"

    lines = ["## How each grows with N and T", "",
             f"CPU seconds at the larger size over the smaller, the other held fixed (linear growth: ×{n_hi / n_lo:.0f} "
             f"for N {n_lo:,} → {n_hi:,}, ×{t_hi / t_lo:.0f} for T {t_lo:,} → {t_hi:,}).", "",
             f"| contender | N {n_lo:,} → {n_hi:,} at T = {t_lo:,} | at T = {t_hi:,} | "
             + " | ".join(f"T {t_lo:,} → {t_hi:,} at N = {n:,}" for n in GRID_N) + " |",
             "|---|---|---|" + "---|" * len(GRID_N)]
    for name, label in GROWTH:
        cells = [grow(name, (t, n_lo), (t, n_hi)) for t in (t_lo, t_hi)]
        cells += [grow(name, (t_lo, n), (t_hi, n)) for n in GRID_N]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""]


def write(result: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "factors_scale.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    for part in ("build", "regression"):   # a part not re-run keeps its rows and the date they were measured
        if part in old and part not in result:
            old[part].setdefault("when", old.get("when"))
    old.update(result)
    path.write_text(json.dumps(old, indent=2, default=str) + "\n")
    lines = ["# Model B at scale", "",
             f"On {platform.machine()}, {os.cpu_count()} cores shared with other work (load averages in each "
             "section); `python benchmarks/bench_factors_scale.py [--part build|regression] [--rounds R]`. Each "
             "part says when it was measured.", ""]
    if "build" in old:
        lines += build_lines(old["build"])
    if "regression" in old:
        lines += regression_lines(old["regression"])
        lines += whole_model_lines(old["regression"], old.get("build"))
        lines += growth_lines(old["regression"])
    lines += [f"Versions (of the latest run): {old.get('versions')}", ""]
    (RESULTS / "factors_scale.md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("build", "regression", "all"), default="all",
                    help="regression: only the regression and whole-model comparison; the stored build rows stay")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--before", help="a source tree (its src/) to time the same build with, for before/after")
    args = ap.parse_args()
    stamp = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": head_commit()}
    result = {**stamp, "versions": versions(), "machine": conditions()}
    if args.part in ("build", "all"):
        result["build"] = {**bench_build(args.rounds, args.before), **stamp}
    if args.part in ("regression", "all"):
        result["regression"] = {**bench_regression(args.rounds), **stamp, "rounds": args.rounds}
    write(result)


if __name__ == "__main__":
    main()
