"""Model A on dask.distributed (issue 13 §3): partitions by ETF pair, the same engine, the same rows.

The pure part: every partition carries only its stocks and the ETF series their pairs need,
and the engine run partition by partition gives the single-process numbers exactly. The
cluster part: a LocalCluster of 2 in-process workers builds the store's cascade through the
scheduler (the ``--cluster ADDRESS`` path, from the service and from the CLI) and publishes a
version equal to the local build's to 1e-12 on every stored field; a failing task publishes
nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskstrata.cascade.fit import CascadeEngine, CascadeParams, prepare_inputs
from riskstrata.cascade.partition import fit_partition, partition_inputs
from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.errors import DataValidationError
from riskstrata.services.cascade import MODEL, build_cascade
from riskstrata.services.demo import load_synthetic_into_store
from riskstrata.services.distributed import parse_cluster
from tests.services.test_update import KEY, assert_same_rows
from tests.cli.test_every_command import assert_ran, invoke

WINDOW = 63

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def market():
    return synthetic_market(n_stocks=40, n_days=320, seed=21)


@pytest.fixture(scope="module")
def cluster():
    """Two workers in this process (threads): the scheduler, the task graph and the data transfer
    are dask's own; only the process spawn (seconds on two cores) is left out."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as local:
        yield local


@pytest.fixture(scope="module")
def built(market, tmp_path_factory):
    """A store of the market with the cascade built locally: (store, the local version)."""
    store = Store(tmp_path_factory.mktemp("dask") / "store")
    load_synthetic_into_store(store, market)
    return store, build_cascade(store, window=WINDOW)


def test_partitions_carry_their_stocks_and_only_the_etfs_they_need(market) -> None:
    params = CascadeParams(window=WINDOW)
    inputs = prepare_inputs(market.returns, market.etf_returns, market.assignments, params)
    parts = partition_inputs(inputs, "SPY", max_stocks=8)
    cols = np.sort(np.concatenate([p.cols for p in parts]))
    assert (cols == np.arange(len(inputs.tickers))).all(), "every stock in exactly one partition"
    for part in parts:
        held = {inputs.assignment.pairs[c] for c in np.unique(part.inputs.assignment.codes)}
        assert len(held) == 1 and len(part.cols) <= 8  # static assignments: one pair per partition
        (sec, sub), = held
        assert set(part.inputs.etfs) == {"SPY"} | {e for e in (sec, sub) if e}  # ≤ 3 series
        assert part.nbytes == (part.inputs.returns.nbytes + part.inputs.etf_returns.nbytes
                               + part.inputs.assignment.codes.nbytes + 8 * len(inputs.dates))
    # The engine run partition by partition: the single-process numbers. Not always bit for bit:
    # a column's mean (centring) is summed in another order when its block has another width.
    whole = {}
    for block in CascadeEngine(inputs, params).blocks(workers=1):
        for key, arr in block.values.items():
            whole.setdefault(key, np.full((len(inputs.dates), len(inputs.tickers)), np.nan))[:, block.cols] = arr
    for part in parts:
        for block in fit_partition(part, params):
            for key, arr in block.values.items():
                np.testing.assert_allclose(arr, whole[key][:, part.cols[block.cols]], rtol=0, atol=1e-12,
                                           err_msg=key)


def test_a_cluster_build_equals_the_local_build(built, cluster) -> None:
    store, local = built
    on_cluster = build_cascade(store, window=WINDOW, cluster=cluster.scheduler_address)
    assert store.current_version(MODEL) == on_cluster.version and on_cluster.rows == local.rows
    assert_same_rows(store.read_model(MODEL, version=on_cluster.version), store.read_model(MODEL, version=local.version),
                     KEY, tol=1e-12)
    info = store.model_meta(MODEL)["cluster"]
    assert info["workers"] == 2 and info["partitions"] >= 2
    assert info["bytes_shipped"] >= 8 * 320 * 40  # every stock's returns travelled once
    # The CLI's --cluster ADDRESS: the same path from the command line.

    args = ["build", "cascade", "--window", str(WINDOW), "--cluster", cluster.scheduler_address, "--json",
            "--store", str(store.root)]
    result = invoke(args)
    assert_ran(result, args)
    assert store.model_meta(MODEL)["cluster"]["cluster"] == cluster.scheduler_address


def test_a_failing_task_publishes_nothing(built, cluster, monkeypatch) -> None:
    """A worker whose part write fails (a full disk, injected on the third part) fails the build:
    the error reaches the caller, the last version stays current and the build directory is gone."""
    import riskstrata.services.distributed as dist

    store, _ = built
    before, versions = store.current_version(MODEL), store.versions(MODEL)
    real, calls = dist.write_part_file, []

    def disk_full(directory, name, df):
        calls.append(name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(directory, name, df)

    monkeypatch.setattr(dist, "write_part_file", disk_full)  # the workers are threads of this process
    with pytest.raises(OSError, match="No space left"):
        build_cascade(store, window=WINDOW, cluster=cluster.scheduler_address)
    assert store.current_version(MODEL) == before and store.versions(MODEL) == versions
    assert not list(store.model_dir(MODEL).glob(".tmp-*"))


def test_cluster_names_are_checked_before_anything_runs() -> None:
    assert parse_cluster("local:2") == ("local", 2)
    assert parse_cluster("tcp://10.0.0.5:8786") == ("address", None)
    for bad in ("local:0", "local:two", "local:-1", " "):
        with pytest.raises(DataValidationError, match="--cluster"):
            parse_cluster(bad)
