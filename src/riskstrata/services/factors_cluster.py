"""Model B's build on a dask.distributed cluster: ``riskstrata factors build --cluster ADDRESS``.

The client loads the panels and runs :func:`~riskstrata.factors.model.prepare_model` once, as
the local build does. Each date block [a, b) then travels to a worker with only the rows it
reads — the panels and (T, N) masks from :func:`~riskstrata.factors.model.lookback_start` (a)
to b, never the whole frame — and the worker runs the unchanged block kernels on it:
:func:`~riskstrata.factors.model.block_exposures`, then
:func:`~riskstrata.factors.model.finish_block` (regression and specific returns), which needs
the previous block's last exposures: a small carry (N × K) that dask hands from block to block.
The client takes the blocks in date order through the build's ``block_source`` hook and runs
everything after them — specific risk, the factor covariance with the eigen adjustment,
validation and publishing — exactly as a local build: one code path for the math.

``inv_specific_var`` weights: the workers' regressions use √cap (the specific variances do not
exist yet) and the client re-runs the regression with the lagged specific variances, as the
local build does. A failed task (dask first retries it elsewhere) fails the build before
anything is published. dask is imported here (via :mod:`.distributed`) only.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from riskstrata.data.store import Store
from riskstrata.factors.model import (DEFAULT_BLOCK_DATES, BlockCarry, FactorBlock, ModelFrame, Tick, _rows,
                                      block_exposures, finish_block, lookback_start, one_blas_thread)
from riskstrata.factors.spec import ModelSpec
from riskstrata.memory import peak_rss_mb
from riskstrata.services.distributed import connect, worker_count, worker_loss_fails_build
from riskstrata.services.factors import build_factor_model


def block_frame(mf: ModelFrame, a: int, b: int) -> tuple[ModelFrame, int]:
    """(the rows of ``mf`` that block [a, b) reads, their first row ``lo``).

    Rows lo … b − 1 of every panel and mask, lo = lookback_start(a) (≤ a − 1 when a > 0, so the
    regression's lagged caps are there too). Relative to it, the block is [a − lo, b − lo) and
    its own lookback starts at row 0: the kernels read exactly the rows a whole build reads.
    """
    lo = lookback_start(mf.dates, a)
    rows = slice(lo, b)
    sub = ModelFrame(_rows(mf.inp, lo, b), mf.spec, mf.universe[rows], mf.codes[rows], mf.in_model[rows],
                     mf.market.iloc[rows], mf.needed, [])
    return sub, lo


def frame_nbytes(sub: ModelFrame) -> int:
    """Bytes of a block's rows: every panel, the masks and the market series."""
    inp = sub.inp
    panels = [inp.returns, inp.market_cap, inp.volume, inp.shares_outstanding, inp.price, *inp.fundamentals.values()]
    size = sum(p.to_numpy().nbytes for p in panels if p is not None)
    return int(size + sub.universe.nbytes + sub.codes.nbytes + sub.in_model.nbytes + sub.market.to_numpy().nbytes)


def exposures_task(sub: ModelFrame, a: int, b: int) -> tuple:
    """On a worker: the block's exposures (:func:`block_exposures`, rows relative to ``sub``)."""
    with one_blas_thread():
        return block_exposures(sub, a, b)


def carry_task(made: tuple) -> BlockCarry:
    """The last date's exposures (N, K) and coverage (K,): what explains the next block's first date."""
    return BlockCarry(made[0][-1].copy(), made[2][-1].copy())


def finish_task(sub: ModelFrame, a: int, b: int, made: tuple, carry: BlockCarry | None, lo: int) -> dict:
    """On a worker: the block's regression and specific returns (:func:`finish_block`), plus
    its figures (seconds, the worker's peak RSS); the block's rows back in whole-build numbering."""
    began = time.perf_counter()
    with one_blas_thread():
        blk = finish_block(sub, a, b, made, carry)
    blk.a, blk.b = a + lo, b + lo
    return {"block": blk, "seconds": time.perf_counter() - began, "worker_peak_rss_mb": peak_rss_mb(),
            "worker_pid": os.getpid()}


@dataclass
class ClusterBlocks:
    """A ``block_source`` for :func:`~riskstrata.factors.model.fit_factor_model`: every date
    block made on the cluster, handed back in date order.

    ahead: blocks in flight at once (submitted, not yet taken by the build), which bounds what
    the workers and this process hold. ``blocks`` records each block's bytes shipped.
    """

    client: object
    ahead: int = 4
    blocks: list[dict] = field(default_factory=list)

    def __call__(self, mf: ModelFrame, bounds: list[tuple[int, int]]) -> Iterator[FactorBlock]:
        client, todo, pending = self.client, iter(bounds), deque()
        carry = None  # the future of the previous block's carry (None before the first date)

        def submit() -> None:
            nonlocal carry
            nxt = next(todo, None)
            if nxt is None:
                return
            a, b = nxt
            sub, lo = block_frame(mf, a, b)
            tag = f"{a}-{os.urandom(4).hex()}"
            # Scattered first: the rows travel to one worker once, outside the task graph.
            data = client.scatter(sub, hash=False)
            made = client.submit(exposures_task, data, a - lo, b - lo, key=f"factors-exposures-{tag}", pure=False)
            done = client.submit(finish_task, data, a - lo, b - lo, made, carry, lo, key=f"factors-block-{tag}",
                                 pure=False)
            carry = client.submit(carry_task, made, key=f"factors-carry-{tag}", pure=False)
            pending.append(((a, b, lo, frame_nbytes(sub)), done))

        for _ in range(max(1, self.ahead)):
            submit()
        try:
            while pending:
                (a, b, lo, nbytes), future = pending.popleft()
                out = future.result()  # a task's error (a lost worker, a bad block…) is raised here
                del future
                self.blocks.append({"a": a, "b": b, "rows_shipped": b - lo, "bytes_shipped": nbytes,
                                    **{k: v for k, v in out.items() if k != "block"}})
                submit()
                yield out.pop("block")
        finally:
            for _, future in pending:  # the build stopped (an error): nothing more to compute
                future.cancel()

    def summary(self, cluster: str, workers: int, seconds: float) -> dict:
        """For the build's answer: address, workers, blocks, bytes shipped, per-worker peak RSS."""
        shipped = [blk["bytes_shipped"] for blk in self.blocks]
        peaks: dict[str, float] = {}
        for blk in self.blocks:
            if blk["worker_peak_rss_mb"] is not None:
                key = str(blk["worker_pid"])
                peaks[key] = round(max(peaks.get(key, 0.0), blk["worker_peak_rss_mb"]), 1)
        return {"cluster": cluster, "workers": workers, "blocks": len(self.blocks), "bytes_shipped": int(sum(shipped)),
                "bytes_per_block_median": int(np.median(shipped)) if shipped else 0,
                "bytes_per_block_max": int(max(shipped, default=0)), "seconds": round(seconds, 3),
                "worker_peak_rss_mb": peaks}


def build_factor_model_on_cluster(store: Store, spec: str | ModelSpec = "US21", start: object | None = None,
                                  end: object | None = None, progress: Callable[[str], None] | None = None,
                                  tick: Tick | None = None, *, cluster: str,
                                  block_dates: int | None = DEFAULT_BLOCK_DATES) -> dict:
    """:func:`~riskstrata.services.factors.build_factor_model` with the date blocks made on a
    dask cluster (an address, or ``local:N`` for N local worker processes); its answer plus
    ``cluster`` (:meth:`ClusterBlocks.summary`). Nothing is published if a block fails."""
    client, local = connect(cluster)
    began = time.perf_counter()
    try:
        workers = worker_count(client, cluster)
        source = ClusterBlocks(client, ahead=2 * workers)
        with worker_loss_fails_build(client, cluster):
            info = build_factor_model(store, spec, start, end, progress, tick, block_dates=block_dates,
                                      block_source=source)
    finally:
        client.close()
        if local is not None:
            local.close()
    info["cluster"] = source.summary(cluster, workers, time.perf_counter() - began)
    return info
