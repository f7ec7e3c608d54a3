"""Shared by the in-process benchmarks: the median and worst of repeated calls, and the machine's load."""

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
