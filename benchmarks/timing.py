"""Shared by the benchmarks: the median and worst of repeated calls, the machine's load, and how far
two stored results differ."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable


def timed(call: Callable[[], object], repeat: int, warm: bool = True) -> dict:
    """p50 and max wall time (ms) of ``repeat`` calls; ``warm`` first calls once untimed, because a
    first-use load (a model version read into memory) is not what a steady server pays."""
    if warm:
        call()
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - t0)
    return {"p50_ms": 1e3 * statistics.median(seconds), "max_ms": 1e3 * max(seconds), "n": repeat}


def conditions() -> dict:
    """The load averages (1, 5, 15 min) and core count: how busy the machine was during a run."""
    return {"load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}


def max_float_difference(x, y) -> float:
    """Largest |x − y| over the float columns of two frames with the same rows and columns, in
    order; inf when the shapes, the columns or the places of NaN differ."""
    import numpy as np
    import pandas as pd

    if len(x) != len(y) or list(x.columns) != list(y.columns):
        return float("inf")
    worst = 0.0
    for c in x.columns:
        if pd.api.types.is_float_dtype(x[c]):
            u, v = x[c].to_numpy(np.float64), y[c].to_numpy(np.float64)
            if not (np.isnan(u) == np.isnan(v)).all():
                return float("inf")
            worst = max(worst, float(np.nanmax(np.abs(u - v), initial=0.0)))
    return worst
