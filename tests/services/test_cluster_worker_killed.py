"""A Dask worker killed mid-build fails the build and publishes nothing (issue 13 §3).

For each model: a first version built in this process; then the cluster ``--cluster local:2``
starts (:func:`riskstrata.services.distributed.connect`: two single-thread worker processes, a
scheduler with ``allowed_failures=0``) builds again, and one worker process is SIGKILLed while
it runs one of the build's tasks. The timing is held, not slept for: every worker's copy of the
function the task calls first (Model A: writing a part, Model B: a block's exposures) waits at
a gate, announcing its pid, until the test has killed the first worker to arrive there; only then
does the gate open for the survivor. Expected: a StoreError naming the dead worker, every
model's CURRENT as before, no build directory left behind, and the next build publishing.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import pytest

from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.errors import StoreError
from riskstrata.services import factors as factor_service
from riskstrata.services.cascade import MODEL as CASCADE, build_cascade
from riskstrata.services.demo import load_synthetic_into_store
from riskstrata.services.distributed import connect, worker_loss_fails_build
from riskstrata.services.factors_cluster import build_factor_model_on_cluster
from tests.cascade.test_dask import WINDOW
from tests.factors.test_factors_dask import BLOCK

pytest.importorskip("distributed")

GATE_SECONDS = 120  # a gate never holds longer than this, whatever happens to the test


def hold_at_gate(module: str, name: str, gate: str) -> None:
    """On a worker process: every call of ``module.name`` first writes ``gate/started-<pid>``,
    then waits until ``gate/open`` exists (the workers are separate processes: a monkeypatch in
    the test's process would not reach them)."""
    owner = importlib.import_module(module)
    real = getattr(owner, name)

    def held(*args, **kwargs):
        Path(gate, f"started-{os.getpid()}").touch()
        deadline = time.monotonic() + GATE_SECONDS
        while not Path(gate, "open").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return real(*args, **kwargs)

    setattr(owner, name, held)


class WorkerKiller(threading.Thread):
    """SIGKILLs the first worker process to reach the gate, then opens the gate for the others."""

    def __init__(self, gate: Path) -> None:
        super().__init__(daemon=True)
        self.gate, self.killed_pid, self.error = gate, None, None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + GATE_SECONDS
            while not (arrived := sorted(self.gate.glob("started-*"))):
                if time.monotonic() > deadline:
                    raise TimeoutError("no build task reached the gate")
                time.sleep(0.01)
            self.killed_pid = int(arrived[0].name.removeprefix("started-"))
            os.kill(self.killed_pid, signal.SIGKILL)
        except BaseException as exc:  # reported by the test, not lost in this thread
            self.error = exc
        finally:
            (self.gate / "open").touch()


def currents(store: Store) -> dict[str, str | None]:
    """Every model's CURRENT version."""
    models = store.root / "models"
    return {folder.name: store.current_version(folder.name) for folder in models.iterdir() if folder.is_dir()}


def build_directories(store: Store) -> list[Path]:
    """Builds in progress or abandoned: hidden ``.tmp-*`` directories under any model."""
    return sorted((store.root / "models").glob("*/.tmp-*"))


@pytest.fixture(scope="module")
def market():
    return synthetic_market(n_stocks=60, n_days=330, seed=23, styles=True)


@pytest.fixture
def market_store(market, tmp_path) -> Store:
    store = Store(tmp_path / "store")
    load_synthetic_into_store(store, market)
    return store


def build_with_a_worker_killed(gated: tuple[str, str], build: Callable[[str], object],
                               tmp_path: Path) -> tuple[BaseException, str]:
    """Run ``build(address)`` on ``--cluster local:2`` with the first worker to reach ``gated``
    (module, function) killed there. Returns (the build's error, the dead worker's address)."""
    gate = tmp_path / "gate"
    gate.mkdir()
    client, local = connect("local:2")
    # hold_at_gate travels by value: a worker importing this module would import the test
    # modules it takes its constants from (seconds per worker on two busy cores).
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        assert local.scheduler.allowed_failures == 0, "--cluster local:N should not retry a dead worker's task"
        client.wait_for_workers(2)
        client.run(hold_at_gate, *gated, str(gate))
        address_of = {pid: address for address, pid in client.run(os.getpid).items()}
        killer = WorkerKiller(gate)
        killer.start()
        with pytest.raises(Exception) as failed:
            build(local.scheduler_address)
        killer.join(GATE_SECONDS)
        assert killer.error is None, f"the worker was not killed: {killer.error!r}"
        return failed.value, address_of[killer.killed_pid]
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        (gate / "open").touch()
        client.close()
        local.close()


@pytest.mark.slow  # two worker processes started and one restarted: ~7-30 s on 2 busy cores
def test_a_killed_worker_fails_the_cascade_build_and_publishes_nothing(market_store, tmp_path) -> None:
    store = market_store
    first = build_cascade(store, window=WINDOW).version
    before = currents(store)

    error, dead = build_with_a_worker_killed(
        ("riskstrata.services.distributed", "write_part_file"),
        lambda address: build_cascade(store, window=WINDOW, cluster=address), tmp_path)

    assert isinstance(error, StoreError), f"a lost worker should fail the build with a StoreError: {error!r}"
    assert dead in str(error), f"the error should name the dead worker {dead}: {error}"
    assert currents(store) == before and store.current_version(CASCADE) == first
    assert not build_directories(store), "the failed build's directory should be removed"
    after = build_cascade(store, window=WINDOW)
    assert store.current_version(CASCADE) == after.version != first


@pytest.mark.slow
def test_a_killed_worker_fails_the_factor_build_and_publishes_nothing(market_store, tmp_path) -> None:
    store = market_store
    model = "factors_US21"
    first = factor_service.build_factor_model(store, "US21", block_dates=BLOCK)["version"]
    before = currents(store)

    error, dead = build_with_a_worker_killed(
        ("riskstrata.services.factors_cluster", "block_exposures"),
        lambda address: build_factor_model_on_cluster(store, "US21", cluster=address, block_dates=BLOCK), tmp_path)

    assert currents(store) == before and store.current_version(model) == first
    assert not build_directories(store), "the failed build's directory should be removed"
    after = factor_service.build_factor_model(store, "US21", block_dates=BLOCK)["version"]
    assert store.current_version(model) == after != first
    assert isinstance(error, StoreError), f"a lost worker should fail the build with a StoreError: {error!r}"
    assert dead in str(error), f"the error should name the dead worker {dead}: {error}"


def test_dasks_reports_of_a_lost_worker_become_store_errors_naming_it() -> None:
    """The four ways dask reports a lost worker, whichever of the build's tasks and data it held
    (the killed-worker tests above meet the last three; which one comes first is a race)."""
    from types import SimpleNamespace

    from distributed import KilledWorker
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError

    class Cluster:  # what worker_loss_fails_build asks of a client: the scheduler's worker list
        workers = {"tcp://10.0.0.1:1": {}, "tcp://10.0.0.2:1": {}}

        def scheduler_info(self) -> dict:
            return {"workers": dict(self.workers)}

    reports = [
        ("tcp://10.0.0.2:1", KilledWorker("cascade-partition-3-ab", SimpleNamespace(address="tcp://10.0.0.2:1"), 0)),
        ("tcp://10.0.0.1:1", FutureCancelledError("factors-block-0-cd", "already forgotten")),
        ("tcp://10.0.0.1:1", CommClosedError("in <TCP (closed) ConnectionPool.scatter>: Stream is closed")),
        # a scatter connecting to the dead worker's address before the scheduler dropped it
        ("tcp://10.0.0.2:1", OSError("Timed out trying to connect to tcp://10.0.0.2:1 after 30 s")),
    ]
    for dead, report in reports:
        client = Cluster()
        with pytest.raises(StoreError, match="nothing was published") as failed:
            with worker_loss_fails_build(client, "tcp://10.0.0.9:8786"):
                client.workers = {w: {} for w in client.workers if w != dead}  # the scheduler removed it
                raise report
        assert dead in str(failed.value) and failed.value.__cause__ is report
    with pytest.raises(ValueError, match="not a worker loss"):  # any other error passes through
        with worker_loss_fails_build(Cluster(), "tcp://10.0.0.9:8786"):
            raise ValueError("not a worker loss")
