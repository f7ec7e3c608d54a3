"""Model B on dask.distributed (issue 13 §3): date blocks on workers, the rest on the client.

A LocalCluster of 2 in-process workers makes the date blocks (each shipped only the rows it
reads); the build that consumes them publishes a version equal to the single-process build's
to 1e-12 on every stored field (exposures, factor returns and diagnostics, covariance, specific
risk, validation), for √cap weights and for inv_specific_var weights (whose regression the
client re-runs); the CLI's ``--cluster local:2`` starts worker processes of its own; a failing
block publishes nothing.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.factors.model import fit_factor_model, lookback_start, prepare_model
from riskstrata.factors.spec import load_spec
from riskstrata.services import factors as svc
from riskstrata.services.demo import load_synthetic_into_store
from riskstrata.services.factors_cluster import ClusterBlocks, block_frame, build_factor_model_on_cluster
from tests.factors.frames import assert_same_frames
from tests.factors.test_blocks import same_model
from tests.cli.test_every_command import assert_ran, invoke

distributed = pytest.importorskip("distributed")

BLOCK = 100  # 330 dates: 4 blocks, each reading a lookback that reaches into the blocks before it
PARTS = ("factors", "factor_returns", "factor_cov", "specific_risk", "factor_validation")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as local:
        yield local


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A store with US21 built in one process: (store, its version)."""
    store = Store(tmp_path_factory.mktemp("factors-dask") / "store")
    load_synthetic_into_store(store, synthetic_market(n_stocks=60, n_days=330, seed=23, styles=True))
    return store, svc.build_factor_model(store, "US21", block_dates=BLOCK)["version"]


def stored(store: Store, version: str) -> dict[str, pd.DataFrame]:
    m = svc.BuiltModel("US21", store.model_meta("factors_US21", version), version)
    return {part: m.read(store, part) for part in PARTS}


def test_a_block_ships_only_the_rows_it_reads(built) -> None:
    store, _ = built
    mf = prepare_model(svc.load_factor_inputs(store), load_spec("US21"))
    a, b = 3 * BLOCK, len(mf.dates)
    sub, lo = block_frame(mf, a, b)
    assert lo == lookback_start(mf.dates, a) and 0 < lo < a - 1
    assert len(sub.dates) == b - lo and sub.universe.shape == (b - lo, len(mf.tickers))
    assert lookback_start(sub.dates, a - lo) == 0  # relative to its rows, the block reads from row 0
    np.testing.assert_array_equal(sub.in_model, mf.in_model[lo:b])


def test_a_cluster_build_equals_the_local_build(built, cluster) -> None:
    store, local = built
    info = build_factor_model_on_cluster(store, "US21", cluster=cluster.scheduler_address, block_dates=BLOCK)
    assert store.current_version("factors_US21") == info["version"] != local
    ran = info["cluster"]
    assert ran["workers"] == 2 and ran["blocks"] == 4 and ran["bytes_shipped"] > 0
    want, got = stored(store, local), stored(store, info["version"])
    for part in PARTS:
        assert_same_frames(got[part], want[part], part)
    own = {"companions", "version", "started_at", "committed_at"}  # the rest (status, notes…) the same
    meta = {k: v for k, v in store.model_meta("factors_US21", local).items() if k not in own}
    assert {k: v for k, v in store.model_meta("factors_US21", info["version"]).items() if k not in own} == meta


def test_inv_specific_var_weights_regress_on_the_client(built, cluster) -> None:
    """Workers regress with √cap (no specific variances yet); the client re-runs the regression."""
    store, _ = built
    base = load_spec("US21")
    spec = dataclasses.replace(base, regression={**base.regression, "weights": "inv_specific_var"})
    inputs = svc.load_factor_inputs(store)
    want = fit_factor_model(inputs, spec, block_dates=BLOCK)
    with distributed.Client(cluster.scheduler_address) as client:
        got = fit_factor_model(inputs, spec, block_dates=BLOCK, block_source=ClusterBlocks(client))
    same_model(got, want)


def test_a_failing_block_publishes_nothing(built, cluster, monkeypatch) -> None:
    import riskstrata.services.factors_cluster as fc

    store, _ = built
    before, versions = store.current_version("factors_US21"), store.versions("factors_US21")
    real = fc.finish_block

    def broken(sub, a, b, made, carry=None):  # the workers are threads of this process
        if carry is not None:
            raise MemoryError("worker out of memory")
        return real(sub, a, b, made, carry)

    monkeypatch.setattr(fc, "finish_block", broken)
    with pytest.raises(MemoryError, match="out of memory"):
        build_factor_model_on_cluster(store, "US21", cluster=cluster.scheduler_address, block_dates=BLOCK)
    assert store.current_version("factors_US21") == before and store.versions("factors_US21") == versions


def test_the_cli_starts_a_local_cluster_of_worker_processes(built) -> None:
    """``--cluster local:2``: two worker processes of its own, closed when the build ends."""

    store, local = built
    args = ["factors", "build", "--model", "US21", "--cluster", "local:2", "--json", "--store", str(store.root)]
    result = invoke(args)
    assert_ran(result, args)
    assert '"workers": 2' in result.stdout and store.current_version("factors_US21") != local
