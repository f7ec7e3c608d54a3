"""Model A's build on a dask.distributed cluster: ``riskstrata build cascade --cluster ADDRESS``.

The client reads and prepares the inputs once (as the local build does), cuts them into
partitions of stocks that share their ETF pair (:mod:`riskstrata.cascade.partition`), ships
each partition — its stocks' returns and assignment codes and the three ETF series they need —
to a worker, and each worker runs the unchanged engine on it and writes its blocks as parts
straight into the version's build directory. The client registers the parts and publishes the
version atomically, exactly as a local build: a failed task fails the build and the build
directory is removed unpublished.

A worker that dies mid-build (killed, out of memory) fails the build too, with a
:class:`~riskstrata.errors.StoreError` naming it (:func:`worker_loss_fails_build`), rather than
being retried: the partitions' inputs are scattered data that dask cannot recompute, and a
partition retried elsewhere finds the parts its first attempt already wrote. A ``local:N``
scheduler is started with ``allowed_failures=0`` for this; a scheduler at an ADDRESS keeps its
own setting (``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0`` gives the same behaviour).

Workers must reach the build directory the client names (:attr:`VersionWriter.tmp_location`):
a local store's directory at the same path (one machine, or a shared file system), or an fsspec
store's URL (``file://`` on a shared disk, object storage with the driver and credentials on every
worker). A ``memory://`` store lives in the client's process, so only workers in that process
(``LocalCluster(processes=False)``) can build into it. dask is imported here only, so the default
path never loads it.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

from riskstrata.cascade.fit import CascadeParams, PreparedInputs
from riskstrata.cascade.partition import Partition, fit_partition, iter_partitions
from riskstrata.data.store import VersionWriter, write_part_file
from riskstrata.errors import DataValidationError, StoreError
from riskstrata.memory import peak_rss_mb

CONNECT_TIMEOUT = "20s"


def parse_cluster(cluster: str) -> tuple[str, int | None]:
    """('local', N) for ``local:N``, else ('address', None) for a scheduler address."""
    text = str(cluster).strip()
    if text.startswith("local:") or text == "local":
        count = text.partition(":")[2] or str(os.cpu_count() or 1)
        if not count.isdigit() or not 1 <= int(count) <= 256:
            raise DataValidationError(f"--cluster {text!r}: write local:N with N workers between 1 and 256")
        return "local", int(count)
    if not text:
        raise DataValidationError("--cluster needs a scheduler address (tcp://host:8786) or local:N")
    return "address", None


def connect(cluster: str):
    """(dask Client, the LocalCluster it owns or None) for an address or ``local:N``."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - dask is a dependency; an environment may lack it
        raise DataValidationError("--cluster needs dask.distributed: pip install 'riskstrata[dask]'") from None
    kind, workers = parse_cluster(cluster)
    if kind == "local":
        # One thread per worker process: a partition is one numpy-bound task, and N processes
        # on N cores is what a cluster of N single-core workers would do.
        # The scheduler binds an HTTP port (8787 by default) even with no dashboard; when that port
        # is taken it moves to a free one and warns, which is noise for a cluster this process owns.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
            # allowed_failures=0: a task whose worker dies is not retried elsewhere; the build fails
            # (see the module doc), as it does for a task that raises.
            local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                 scheduler_kwargs={"allowed_failures": 0})
        return Client(local), local
    try:
        return Client(cluster, timeout=CONNECT_TIMEOUT), None
    except (OSError, TimeoutError, ValueError) as exc:
        raise DataValidationError(f"cannot reach the Dask scheduler at {cluster!r}: {exc}") from None


def worker_count(client, cluster: str) -> int:
    """How many workers the connected cluster has; a clear error for none (tasks would wait forever)."""
    workers = len(client.scheduler_info()["workers"])
    if workers == 0:
        raise StoreError(f"the Dask cluster at {cluster!r} has no workers")
    return workers


@contextmanager
def worker_loss_fails_build(client, cluster: str) -> Iterator[None]:
    """Around a build's tasks: dask's report of a lost worker becomes a StoreError naming it.

    Three reports, depending on what of the build the worker held: ``KilledWorker`` for a task
    running or queued there (the scheduler's ``allowed_failures`` exceeded: 0 on a ``local:N``
    cluster); a cancelled future for a task whose scattered inputs were only there (dask cannot
    recompute them: the build never cancels its own tasks before an error, so a cancellation
    means the cluster dropped them); a closed connection, or a connection that times out, for
    data being scattered to it. Any other error (an OSError while every worker is still there
    included) passes through unchanged.
    """
    from distributed import KilledWorker
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError

    before = set(client.scheduler_info()["workers"])
    unpublished = "the build failed and nothing was published: the last version stays current"
    try:
        yield
    except KilledWorker as exc:
        raise StoreError(f"a Dask worker of {cluster!r} died while running this build's task {exc.task!r} "
                         f"(worker {exc.last_worker.address}; killed, or out of memory?): {unpublished}") from exc
    except (FutureCancelledError, OSError) as exc:  # CommClosedError is an OSError
        gone = _workers_gone(client, before)
        if not isinstance(exc, (FutureCancelledError, CommClosedError)) and gone == NONE_GONE:
            raise  # not a lost worker: a network or disk error of its own
        raise StoreError(f"the Dask cluster {cluster!r} lost a worker during this build (workers gone since it "
                         f"started: {gone}; dask: {str(exc).rstrip('.')}): {unpublished}") from exc


NONE_GONE = "none seen"


def _workers_gone(client, before: set[str], patience: float = 5.0) -> str:
    """The workers of ``before`` the scheduler no longer lists, for an error message. A scatter can
    fail a moment before the scheduler has removed the dead worker: wait up to ``patience`` s."""
    deadline = time.monotonic() + patience
    try:
        while not (gone := before - set(client.scheduler_info()["workers"])) and time.monotonic() < deadline:
            time.sleep(0.1)
    except OSError:  # the scheduler itself is gone
        return "the scheduler is unreachable"
    return ", ".join(sorted(gone)) or NONE_GONE


def run_partition(part: Partition, params: CascadeParams, keep: np.ndarray, tickers: pd.DataFrame,
                  directory: str) -> dict:
    """On a worker: the engine on one partition, each block written as a part into ``directory``.

    keep: (T,) bool, the dates stored; tickers: the master's dated ticker records of the
    partition's securities. Returns the parts written ({file, rows}), the partition's input
    bytes, its compute seconds and the worker's peak RSS.
    """
    from riskstrata.services.cascade import block_frame

    began = time.perf_counter()
    files = []
    for j, block in enumerate(fit_partition(part, params)):
        frame = block_frame(block, part.inputs.dates, part.inputs.assignment.pairs, keep, tickers)
        path = write_part_file(directory, f"{part.index:05d}-{j:03d}", frame)
        files.append({"file": path.name, "rows": len(frame)})
    return {"partition": part.index, "stocks": len(part.cols), "etfs": len(part.inputs.etfs),
            "input_bytes": part.nbytes, "parts": files, "seconds": time.perf_counter() - began,
            "worker_peak_rss_mb": peak_rss_mb(), "worker_pid": os.getpid()}


def write_blocks_on_cluster(cluster: str, prepared: PreparedInputs, params: CascadeParams, keep: np.ndarray,
                            tickers: pd.DataFrame, writer: VersionWriter,
                            progress: Callable[[int, int], None] | None = None) -> tuple[int, dict]:
    """Run every partition on the cluster; the workers' parts are registered with ``writer``.

    Returns (rows written, a summary for the version's meta: address, workers, partitions,
    bytes shipped, per-partition figures). Any failed task raises here, before anything is published.
    """
    if writer.store.in_process and parse_cluster(cluster)[0] == "local":
        raise StoreError(f"a memory:// store lives in this process; the workers of --cluster {cluster} are other "
                         "processes: build into a file:// URL or a directory instead")
    client, local = connect(cluster)
    began = time.perf_counter()
    try:
        workers = worker_count(client, cluster)
        ids = tickers.assign(security_id=tickers["security_id"].astype(str))
        futures = []
        from distributed import as_completed, wait

        done, rows, results = 0, 0, []
        with worker_loss_fails_build(client, cluster):
            try:
                for part in iter_partitions(prepared, params.market_etf):
                    records = ids[ids["security_id"].isin(part.inputs.tickers.astype(str))]
                    # Scattered first: the data travels to one worker once, not inside the task graph
                    # (and this process keeps no copy of it).
                    data = client.scatter(part, hash=False)
                    futures.append(client.submit(run_partition, data, params, keep, records, writer.tmp_location,
                                                 key=f"cascade-partition-{part.index}-{os.urandom(4).hex()}",
                                                 pure=False))
                for future in as_completed(futures):
                    result = future.result()  # a task's error (IdentityViolation, a lost worker…) is raised here
                    for item in result["parts"]:
                        writer.adopt_part(writer.tmp_dir / item["file"], item["rows"])
                        rows += item["rows"]
                    results.append(result)
                    done += result["stocks"]
                    if progress:
                        progress(done, len(prepared.tickers))
            except BaseException:
                # Let the tasks already submitted end before the build directory is removed (a
                # partition that fails to scatter stops the loop above with earlier ones running):
                # one still writing into it would leave a half-deleted directory behind.
                wait(futures)
                raise
    finally:
        client.close()
        if local is not None:
            local.close()
    results.sort(key=lambda r: r["partition"])
    shipped = [r["input_bytes"] for r in results]
    info = {"cluster": cluster, "workers": workers, "partitions": len(futures), "bytes_shipped": int(sum(shipped)),
            "bytes_per_partition_median": int(np.median(shipped)) if shipped else 0,
            "bytes_per_partition_max": int(max(shipped, default=0)),
            "seconds": round(time.perf_counter() - began, 3),
            "task_seconds": round(sum(r["seconds"] for r in results), 3),
            "worker_peak_rss_mb": _per_worker_peak(results)}
    return rows, info


def _per_worker_peak(results: list[dict]) -> dict[str, float]:
    peaks: dict[str, float] = {}
    for r in results:
        if r["worker_peak_rss_mb"] is not None:
            key = str(r["worker_pid"])
            peaks[key] = round(max(peaks.get(key, 0.0), r["worker_peak_rss_mb"]), 1)
    return peaks

