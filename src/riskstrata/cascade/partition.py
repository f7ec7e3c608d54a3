"""Model A cut into independent partitions of stocks (SPEC §6): what a cluster worker receives.

A stock's numbers need only its own returns and the ETF series of the pairs it holds, so the
prepared inputs split by security with no communication between the parts. Stocks are grouped
by the (sector ETF, subsector ETF) pair they hold on the last date — the grouping
:meth:`CascadeEngine.blocks` uses in one process — so a partition normally carries three ETF
series (market, sector, subsector; more only for stocks reclassified during the sample).

Each partition is itself a :class:`~riskstrata.cascade.fit.PreparedInputs`, and
:func:`fit_partition` runs the unchanged :class:`~riskstrata.cascade.fit.CascadeEngine` on it:
every per-column operation (centring, window sums, the closed forms) is the same arithmetic on
the same numbers as in the single-process build, so the results are identical. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from riskstrata.cascade.assignments import AssignmentCodes
from riskstrata.cascade.fit import CascadeBlock, CascadeEngine, CascadeParams, PreparedInputs

# Stocks per partition at most: the engine's own default block. A larger pair is split.
PARTITION_STOCKS = 1024
# Stocks per engine block inside a partition: the block's (T, n) temporaries (≈ 55 arrays of
# 8 bytes per stock-day) are what a worker holds beside its inputs, so 128 stocks bound them at
# ≈ 0.3 GB for 20 years whatever the partition's size. The block size changes no number.
BLOCK_STOCKS = 128


@dataclass
class Partition:
    """Stocks ``cols`` (positions in the full prepared inputs) with only the data they need.

    inputs.returns: (T, n) float64; inputs.etf_returns: (T, e) float64, e = the market plus the
    ETFs of the pairs in inputs.assignment.codes (T, n) int32 (pairs: the full list; codes index it).
    """

    index: int
    cols: np.ndarray
    inputs: PreparedInputs

    @property
    def nbytes(self) -> int:
        """Bytes of array data a worker receives (labels excluded: a few bytes per stock)."""
        i = self.inputs
        return int(i.returns.nbytes + i.etf_returns.nbytes + i.assignment.codes.nbytes + i.dates.asi8.nbytes)


def partition_inputs(inputs: PreparedInputs, market_etf: str, max_stocks: int = PARTITION_STOCKS) -> list[Partition]:
    """Partitions of ≤ ``max_stocks`` stocks that share their last-date ETF pair (pure)."""
    return list(iter_partitions(inputs, market_etf, max_stocks))


def iter_partitions(inputs: PreparedInputs, market_etf: str, max_stocks: int = PARTITION_STOCKS
                    ) -> Iterator[Partition]:
    """:func:`partition_inputs` one at a time: a caller that ships each partition away never holds
    a second copy of the whole (T, N) returns."""
    if max_stocks < 1:
        raise ValueError(f"max_stocks must be ≥ 1, got {max_stocks}")
    codes, pairs = inputs.assignment.codes, inputs.assignment.pairs
    home = codes[-1] if len(codes) else np.zeros(codes.shape[1], dtype=np.int32)
    index = 0
    for code in np.unique(home):
        members = np.flatnonzero(home == code)
        for start in range(0, len(members), max_stocks):
            cols = members[start:start + max_stocks]
            held = codes[:, cols]
            needed = {market_etf} | {etf for c in np.unique(held) for etf in pairs[int(c)] if etf is not None}
            etf_cols = [j for j, name in enumerate(inputs.etfs) if name in needed]
            part = PreparedInputs(
                dates=inputs.dates, tickers=inputs.tickers[cols],
                returns=np.ascontiguousarray(inputs.returns[:, cols]),
                etfs=inputs.etfs[etf_cols], etf_returns=np.ascontiguousarray(inputs.etf_returns[:, etf_cols]),
                assignment=AssignmentCodes(np.ascontiguousarray(held), pairs))
            yield Partition(index, cols, part)
            index += 1


def fit_partition(part: Partition, params: CascadeParams, check: bool = True,
                  block_size: int = BLOCK_STOCKS) -> Iterator[CascadeBlock]:
    """The engine's blocks for one partition, computed in the calling thread.

    Block ``cols`` index the partition's stocks; ``part.cols[block.cols]`` are their positions in
    the full inputs. Identity checks run per block as in the local build (IdentityViolation).
    """
    yield from CascadeEngine(part.inputs, params).blocks(block_size=block_size, check=check, workers=1)
