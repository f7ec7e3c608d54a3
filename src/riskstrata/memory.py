"""This process's peak resident memory, for the figures a build reports and the benchmarks quote."""

from __future__ import annotations

from pathlib import Path


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process (VmHWM), MB; None where /proc is absent.

    getrusage's ru_maxrss is not used: on Linux it is carried across fork/exec, so a child would
    report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
