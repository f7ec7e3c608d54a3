"""Benchmark: the run times the unit tests used to assert, each against a named peer.

The suite asserts no wall time (a busy machine made `specific_risk` take 42 s against a 20 s
bound); the same workloads are timed here instead, with the bound the test once had shown for
reference, and a peer doing comparable work timed in the same run, so a slow machine shows in
both columns. The CLI start-up is timed the same way (whole process, `riskstrata --help`).

Usage: python benchmarks/bench_unit_timings.py [--repeat 3] [--only NAME ...]
Writes benchmarks/results/unit_timings.json and benchmarks/results/unit_timings.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(ROOT))  # the tests' data generators are reused, so the workloads are the tests' own


def _median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _process_seconds(argv: list[str], repeat: int) -> float:
    """Median wall time of a whole process (start-up included), after one warm-up run."""
    subprocess.run(argv, capture_output=True, check=True)
    return _median_seconds(lambda: subprocess.run(argv, capture_output=True, check=True), repeat)


def specific_risk_case() -> tuple[Callable[[], object], Callable[[], object], str]:
    from riskstrata.factors.specific import specific_risk
    from tests.factors.test_specific import specific_market

    u, caps, _ = specific_market(T=2600, N=3000, seed=4)
    return (lambda: specific_risk(u, caps)), (lambda: u.ewm(halflife=84).std()), "pandas ewm(halflife=84).std() on the same 2600 × 3000 matrix"


def covariance_case() -> tuple[Callable[[], object], Callable[[], object], str]:
    from riskstrata.factors.covariance import CovarianceParams, factor_covariance
    from tests.factors.test_covariance import simulated_returns, true_covariance

    returns = simulated_returns(2600, true_covariance())
    return ((lambda: factor_covariance(returns, CovarianceParams(eigen_sims=0))),
            (lambda: returns.ewm(halflife=90).cov()), "pandas ewm(halflife=90).cov() (pairwise, every date)")


def regression_case() -> tuple[Callable[[], object], Callable[[], object], str]:
    import numpy as np

    from tests.factors.test_regression import run, simulate

    d = simulate(T=5, N=5000, seed=9)
    x = np.nan_to_num(np.asarray(d["exposures"], dtype=float))
    y = np.nan_to_num(np.asarray(d["returns"], dtype=float))

    def peer() -> None:
        for t in range(y.shape[0]):
            np.linalg.lstsq(x[t], y[t], rcond=None)

    return (lambda: run(d)), peer, "numpy lstsq per date on the same design (unweighted, unconstrained)"


def synthetic_case() -> tuple[Callable[[], object], Callable[[], object], str]:
    import numpy as np

    from riskstrata.data.synthetic import synthetic_market

    rng = np.random.default_rng(0)
    return ((lambda: synthetic_market(3000, 5040, seed=11)),
            (lambda: rng.standard_normal((5040, 3000))), "numpy standard_normal((5040, 3000))")


def synthetic_styles_case() -> tuple[Callable[[], object], Callable[[], object], str]:
    from riskstrata.data.synthetic import synthetic_market

    return ((lambda: synthetic_market(500, 252 * 5, seed=3, styles=True)),
            (lambda: synthetic_market(500, 252 * 5, seed=3)), "the same market without styles")


# name → (what, former asserted bound in s, case)
CASES: dict[str, tuple[str, float | None, Callable[[], tuple]]] = {
    "specific_risk": ("specific_risk, 3,000 names × 2,600 days", 20.0, specific_risk_case),
    "covariance": ("factor_covariance, K = 21, T = 2,600, no eigen simulation", 6.0, covariance_case),
    "regression": ("cross-sectional regression, 5 dates × 5,000 names", 5.0, regression_case),
    "synthetic": ("synthetic_market, 3,000 stocks × 5,040 days", 10.0, synthetic_case),
    "synthetic_styles": ("synthetic_market with styles, 500 × 1,260", 10.0, synthetic_styles_case),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None, help=f"cases among {list(CASES)} and 'cli'")
    args = parser.parse_args()
    rows = []
    for name, (what, bound, case) in CASES.items():
        if args.only and name not in args.only:
            continue
        ours, peer, peer_name = case()
        t_ours, t_peer = _median_seconds(ours, args.repeat), _median_seconds(peer, args.repeat)
        rows.append({"case": name, "what": what, "seconds": t_ours, "peer": peer_name, "peer_seconds": t_peer,
                     "former_test_bound_s": bound})
        print(f"{name}: {t_ours:.2f} s vs {peer_name}: {t_peer:.2f} s", flush=True)
    if not args.only or "cli" in args.only:
        exe = str(Path(sys.executable).with_name("riskstrata"))
        for what, argv in [("riskstrata --help (whole process)", [exe, "--help"])]:
            t_ours = _process_seconds(argv, max(args.repeat, 5))
            for peer_name, peer_argv in [("python -c 'import typer' (the CLI library alone)",
                                          [sys.executable, "-c", "import typer"]),
                                         ("python -c 'import scipy.signal' (what --help imported before)",
                                          [sys.executable, "-c", "import scipy.signal"])]:
                t_peer = _process_seconds(peer_argv, max(args.repeat, 5))
                rows.append({"case": "cli", "what": what, "seconds": t_ours, "peer": peer_name,
                             "peer_seconds": t_peer, "former_test_bound_s": None})
                print(f"cli: {t_ours:.3f} s vs {peer_name}: {t_peer:.3f} s", flush=True)

    RESULTS.mkdir(exist_ok=True)
    conditions = (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.python_implementation()} "
                  f"{platform.python_version()}, {os.cpu_count()} cores, load average "
                  f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} at the end; median of {args.repeat} runs "
                  "(CLI: of 5, after a warm-up)")
    (RESULTS / "unit_timings.json").write_text(json.dumps({"conditions": conditions, "rows": rows}, indent=2) + "\n")
    lines = ["# Run times the unit tests no longer assert", "",
             f"Conditions: {conditions}. The machine was shared with other work while this ran, so the",
             "figures are noisy: compare each row with its peer, timed in the same run.", "",
             "| workload | seconds | peer | peer seconds | ratio | former test bound (s) |",
             "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        bound = "—" if r["former_test_bound_s"] is None else f"{r['former_test_bound_s']:g}"
        lines.append(f"| {r['what']} | {r['seconds']:.3f} | {r['peer']} | {r['peer_seconds']:.3f} | "
                     f"{r['seconds'] / r['peer_seconds']:.1f}× | {bound} |")
    (RESULTS / "unit_timings.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'unit_timings.md'}")


if __name__ == "__main__":
    main()
