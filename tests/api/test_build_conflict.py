"""One build per model at a time through the API (409 with the running job's id), and a server
leases the version it holds so that the store's pruning never removes it (issue 12, §4)."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from riskstrata.api.jobs import JobConflict, JobRegistry, StoreClaim
from riskstrata.api.state import HeldModel
from riskstrata.data.store import Store
from tests.api.test_ours import _client, assert_error, wait_for


def _wait(job, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while job.live and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not job.live


def test_a_second_build_of_a_running_model_is_refused_with_the_running_jobs_id(tmp_path) -> None:
    store, release = Store(tmp_path / "s"), threading.Event()
    registry = JobRegistry()
    claim = StoreClaim(store, "factors_M")
    first = registry.start_exclusive("build", "M", lambda progress: release.wait(10), claim=claim)
    with pytest.raises(JobConflict) as refused:
        registry.start_exclusive("build", "M", lambda progress: None, claim=claim)
    assert refused.value.job_id == first.id
    # Another worker (its own registry) on the same store sees the claim.
    with pytest.raises(JobConflict) as elsewhere:
        JobRegistry().start_exclusive("build", "M", lambda progress: None, claim=claim)
    assert elsewhere.value.job_id == first.id
    release.set()
    _wait(first)
    again = registry.start_exclusive("build", "M", lambda progress: {"ok": True}, claim=claim)
    _wait(again)
    assert again.status == "done" and not (store.model_dir("factors_M") / ".build-claim").exists()


def test_post_build_while_building_is_409_with_the_job_id(tmp_path) -> None:
    store = Store(tmp_path / "s")
    assert store.claim_build("factors_US21", "build-7-elsewhere") is None  # a build running in another worker
    with _client(store) as client:
        body = assert_error(client.post("/api/factors/US21/build"), 409, "Conflict")
        assert body["job_id"] == "build-7-elsewhere" and "/api/jobs/build-7-elsewhere" in body["message"]
        store.release_build("factors_US21", "build-7-elsewhere")
        started = client.post("/api/factors/US21/build")
        assert started.status_code == 202, started.text
        wait_for(client, started.json()["job_id"])
    assert not (store.model_dir("factors_US21") / ".build-claim").exists()  # released when the job ended


def test_a_server_leases_the_version_it_holds(tmp_path) -> None:
    store = Store(tmp_path / "s", keep_versions=1)

    def publish(value: int) -> str:
        with store.begin_version("cascade") as w:
            w.write_part(pd.DataFrame({"x": [value]}))
            return w.commit()

    first = publish(0)
    held = HeldModel(store, "cascade", lambda version: store.read_model("cascade", version=version)["x"].iloc[0])
    assert held.get() == 0 and store.leased("cascade") == {first: 1}
    second, third = publish(1), publish(2)
    assert store.prune("cascade", grace_seconds=0) == [second]  # the held one stays, the unheld one goes
    assert held.get() == 2 and store.leased("cascade") == {third: 1}
    assert store.prune("cascade", grace_seconds=0) == [first]
