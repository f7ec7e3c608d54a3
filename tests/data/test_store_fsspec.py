"""The store on an fsspec file system (issue 13 §3): what object storage lacks, made safe another way.

``memory://`` stands in for object storage (no rename, no hard links, writes whole); ``file://``
is the same code on a local disk, shared between processes. A commit publishes by writing
``meta.json`` after the parts and ``CURRENT`` last, so a commit or a prune that dies at any step
leaves the last version current and nothing half-written visible; leases, claims, stamps,
the key table and the secret work as on a local path. The behaviour every store shares is
tested over all three kinds in test_store.py.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pytest

import riskstrata.data.store as store_module
import riskstrata.data.store_fsspec as fsspec_module
from riskstrata.data.store import Store, default_store_root, write_part_file
from riskstrata.data.store_fsspec import FsspecStore
from riskstrata.errors import StoreError


@pytest.fixture
def mem() -> Iterator[FsspecStore]:
    """An empty memory:// store of its own, removed after the test."""
    store = Store(f"memory://fsspec-test-{uuid.uuid4().hex}", keep_versions=1)
    yield store
    store.fs.rm(str(store.path()), recursive=True)


@pytest.fixture
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "PRUNE_GRACE_SECONDS", 0)


def publish(store: Store, value: int, model: str = "cascade") -> str:
    with store.begin_version(model) as w:
        w.write_part(pd.DataFrame({"x": [value] * 10}))
        return w.commit()


def entries(store: FsspecStore, folder: PurePosixPath) -> list[str]:
    return sorted(PurePosixPath(e).name for e in store.fs.ls(str(folder), detail=False))


def test_a_url_opens_an_fsspec_store_and_a_path_a_local_one(tmp_path: Path) -> None:
    assert type(Store(tmp_path / "a")) is Store and Store(tmp_path / "a").is_local
    on_disk = Store((tmp_path / "b").as_uri())
    assert isinstance(on_disk, FsspecStore) and not on_disk.is_local
    assert on_disk.root == (tmp_path / "b").as_uri()  # printable, and what --store takes back
    assert (tmp_path / "b" / "tables").is_dir()       # file:// is the same directory on disk
    with pytest.raises(StoreError, match="no riskstrata store"):
        Store(f"memory://nothing-{uuid.uuid4().hex}", create=False)
    with pytest.raises(StoreError, match="cannot open store"):
        Store("nosuchprotocol://bucket/store")


def test_the_default_store_may_be_a_url_and_a_pickled_store_stays_what_it_was(
        mem: FsspecStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKSTRATA_STORE", mem.root)
    assert default_store_root() == mem.root
    assert isinstance(Store(), FsspecStore) and Store().root == mem.root
    local = Store(tmp_path / "s")
    assert type(pickle.loads(pickle.dumps(local))) is Store  # not turned into the URL store of the environment
    again = pickle.loads(pickle.dumps(mem))
    assert isinstance(again, FsspecStore) and again.root == mem.root


def test_a_commit_that_dies_before_meta_json_publishes_nothing(mem: FsspecStore, monkeypatch: pytest.MonkeyPatch) -> None:
    first = publish(mem, 1)
    real = FsspecStore._put_bytes

    def dies_at_meta(self, path, data):  # the parts are moved; the process dies before meta.json
        if path.name == "meta.json":
            raise KeyboardInterrupt
        return real(self, path, data)

    monkeypatch.setattr(FsspecStore, "_put_bytes", dies_at_meta)
    writer = mem.begin_version("cascade")
    writer.write_part(pd.DataFrame({"x": [666]}))
    with pytest.raises(KeyboardInterrupt):
        writer.commit()
    monkeypatch.undo()
    folder = mem.model_dir("cascade")
    half = [n for n in entries(mem, folder) if n.startswith("v") and n != first]
    assert len(half) == 1 and entries(mem, folder / half[0]) == ["part-00000.parquet"]  # moved, not published
    assert mem.current_version("cascade") == first and mem.versions("cascade") == [first]
    assert mem.read_model("cascade")["x"].tolist() == [1] * 10
    assert mem.query("SELECT max(x) AS m FROM model_cascade")["m"].iloc[0] == 1

    # A later build removes the half-moved version once it is older than a build may take.
    monkeypatch.setattr(fsspec_module, "STALE_BUILD_SECONDS", -1)
    publish(mem, 2)
    assert half[0] not in entries(mem, folder)


def test_a_commit_that_dies_before_current_leaves_the_last_version_current(
        mem: FsspecStore, monkeypatch: pytest.MonkeyPatch) -> None:
    first = publish(mem, 1)
    real = FsspecStore._put_bytes

    def dies_at_current(self, path, data):
        if path.name == "CURRENT":
            raise KeyboardInterrupt
        return real(self, path, data)

    monkeypatch.setattr(FsspecStore, "_put_bytes", dies_at_current)
    with pytest.raises(KeyboardInterrupt):
        publish(mem, 2)
    monkeypatch.undo()
    assert mem.current_version("cascade") == first  # complete, listed, but nobody reads it until CURRENT moves
    assert mem.read_model("cascade")["x"].iloc[0] == 1 and len(mem.versions("cascade")) == 2


def test_an_aborted_build_leaves_nothing_and_a_dead_builders_prefix_is_removed(mem: FsspecStore) -> None:
    first = publish(mem, 1)
    with mem.begin_version("cascade") as w:
        w.write_part(pd.DataFrame({"x": [2]}))
    assert not [n for n in entries(mem, mem.model_dir("cascade")) if n.startswith(".tmp-")]
    with pytest.raises(StoreError, match="aborted"):
        w.write_part(pd.DataFrame({"x": [3]}))

    killed = mem.begin_version("cascade")
    killed.write_part(pd.DataFrame({"x": [3]}))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = killed.tmp_dir / ".owner"
    mem.fs.pipe_file(str(owner), json.dumps({**json.loads(mem.fs.cat_file(str(owner))), "pid": int(dead.stdout)}).encode())
    latest = publish(mem, 4)  # the next build of the model clears the dead one's prefix
    assert not mem.fs.exists(str(killed.tmp_dir))
    assert mem.versions("cascade") == [first, latest] and mem.read_model("cascade")["x"].tolist() == [4] * 10


def test_prune_removes_meta_json_first_and_a_leftover_goes_later(mem: FsspecStore, monkeypatch: pytest.MonkeyPatch) -> None:
    made = [publish(mem, i) for i in range(3)]  # all within the grace period: none pruned yet
    assert mem.versions("cascade") == made
    real = mem._rm_tree

    def dies(path):  # meta.json is gone; the process dies before the files
        raise KeyboardInterrupt

    monkeypatch.setattr(mem, "_rm_tree", dies)
    with pytest.raises(KeyboardInterrupt):
        mem.prune("cascade", grace_seconds=0)
    monkeypatch.setattr(mem, "_rm_tree", real)
    assert mem.versions("cascade") == made[1:] and mem.current_version("cascade") == made[-1]
    assert made[0] in entries(mem, mem.model_dir("cascade"))  # an invisible leftover
    assert mem.prune("cascade", grace_seconds=0) == made[1:2]
    monkeypatch.setattr(fsspec_module, "STALE_BUILD_SECONDS", -1)
    mem.prune("cascade", grace_seconds=0)
    assert [n for n in entries(mem, mem.model_dir("cascade")) if n.startswith("v")] == made[2:]


def test_leases_keep_a_version_and_a_dead_processes_lease_holds_nothing(mem: FsspecStore, no_grace: None) -> None:
    first = publish(mem, 0)
    lease = mem.lease("cascade", first)
    publish(mem, 1)
    assert first in mem.versions("cascade") and mem.leased("cascade") == {first: 1}
    assert mem.read_model("cascade", version=first)["x"].iloc[0] == 0
    lease.release()
    lease.release()  # idempotent
    publish(mem, 2)
    assert first not in mem.versions("cascade")

    held = mem.current_version("cascade")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = mem.model_dir("cascade") / ".leases" / f"{held}@dead"
    mem.fs.pipe_file(str(path), json.dumps({"pid": int(dead.stdout), "host": __import__("socket").gethostname(),
                                            "version": held, "at": 0}).encode())
    publish(mem, 3)
    assert held not in mem.versions("cascade") and not mem.fs.exists(str(path))


@pytest.mark.parametrize("exclusive", [True, False], ids=["exclusive-create", "check-write-read-back"])
def test_a_build_claim_holds_and_is_taken_over_from_a_dead_process(
        mem: FsspecStore, exclusive: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not exclusive:  # a driver without mode "xb" (older object-store drivers)
        real_open = mem.fs.open

        def no_x(path, mode="rb", **kwargs):
            if "x" in mode:
                raise ValueError(f"unsupported mode {mode}")
            return real_open(path, mode, **kwargs)

        monkeypatch.setattr(mem.fs, "open", no_x)
    assert mem.claim_build("factors_US21", "build-1") is None
    assert mem.claim_build("factors_US21", "build-2") == "build-1"
    mem.release_build("factors_US21", "build-2")  # not its claim
    assert mem.claim_build("factors_US21", "build-3") == "build-1"
    mem.release_build("factors_US21", "build-1")
    assert mem.claim_build("factors_US21", "build-4") is None
    claim = mem.model_dir("factors_US21") / ".build-claim"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = json.loads(mem.fs.cat_file(str(claim)))
    mem.fs.pipe_file(str(claim), json.dumps({**record, "job_id": "dead", "pid": int(dead.stdout)}).encode())
    assert mem.claim_build("factors_US21", "build-5") is None


def test_stamps_change_with_every_write_and_columns_come_from_the_footer(mem: FsspecStore) -> None:
    assert mem.table_stamp("prices") is None and mem.current_stamp("cascade") is None
    mem.write_table("prices", pd.DataFrame({"date": pd.to_datetime(["2020-01-02"]), "ret": [0.1]}))
    first = mem.table_stamp("prices")
    mem.write_table("prices", pd.DataFrame({"date": pd.to_datetime(["2020-01-02"]), "ret": [0.2]}))  # same size
    assert first is not None and mem.table_stamp("prices") != first
    assert mem.table_columns("prices") == ["date", "ret"]
    publish(mem, 1)
    pointer = mem.current_stamp("cascade")
    mem.set_current("cascade", mem.current_version("cascade"))
    assert pointer is not None and mem.current_stamp("cascade") != pointer
    assert store_module.file_stamp(mem.location(mem.table_path("prices"))) is not None  # by URL too
    with pytest.raises(StoreError, match="not found"):
        mem.table_columns("missing")


def test_workers_write_parts_by_url_and_an_update_copies_published_parts(mem: FsspecStore) -> None:
    base = publish(mem, 1)
    with mem.begin_version("cascade") as w:
        assert w.tmp_location.startswith("memory://")
        made = write_part_file(w.tmp_location, "00007-000", pd.DataFrame({"x": [7, 7]}))  # as a Dask worker does
        with pytest.raises(StoreError, match="already written"):
            write_part_file(w.tmp_location, "00007-000", pd.DataFrame({"x": [7]}))
        w.adopt_part(w.tmp_dir / made.name, 2)
        for part in mem.model_meta("cascade", base)["parts"]:  # carried over, as a daily update does
            w.adopt_part(mem.model_dir("cascade") / base / part["file"])
        with pytest.raises(StoreError, match="already"):
            w.adopt_part(mem.model_dir("cascade") / base / "part-00000.parquet")
        w.write_arrays("update_state", {"sums": np.arange(3.0)})
        version = w.commit()
    assert sorted(mem.read_model("cascade")["x"]) == [1] * 10 + [7, 7]
    assert mem.model_meta("cascade")["rows"] == 12
    assert mem.read_arrays("cascade", "update_state", version)["sums"].tolist() == [0.0, 1.0, 2.0]
    assert mem.read_model("cascade", version=base)["x"].tolist() == [1] * 10  # the source is untouched


def test_the_same_writes_read_the_same_on_every_kind_of_store(mem: FsspecStore, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=600_000, freq="min").astype("datetime64[ns]"),
                          "ticker": rng.choice(["AAA", "BBB", "CCC"], 600_000), "ret": rng.normal(size=600_000)})
    stores = [Store(tmp_path / "local"), Store((tmp_path / "url").as_uri()), mem]
    for store in stores:
        store.write_table("prices", frame)
        with store.begin_version("cascade") as w:
            w.write_part(frame.iloc[:300_000])
            w.write_part(frame.iloc[300_000:])
            w.commit()
    sql = "SELECT ticker, count(*) AS n, sum(m.ret - p.ret) AS zero, sum(m.ret) AS s FROM model_cascade m JOIN prices p USING (date, ticker) GROUP BY 1 ORDER BY 1"
    want = stores[0].query(sql)
    for store in stores[1:]:
        pd.testing.assert_frame_equal(store.query(sql), want)
        got = store.read_model("cascade", columns=["ret"], where="ticker = ? AND date >= ?",
                               params=["BBB", pd.Timestamp("2020-01-05").to_pydatetime()])
        pd.testing.assert_frame_equal(got, stores[0].read_model("cascade", columns=["ret"], where="ticker = ? AND date >= ?",
                                                                 params=["BBB", pd.Timestamp("2020-01-05").to_pydatetime()]))
    info = mem.info()
    assert info["root"] == mem.root and info["models"][0]["versions"][0]["bytes"] > 0 and info["tables"][0]["bytes"] > 0


def test_api_keys_and_the_master_work_on_a_memory_store(mem: FsspecStore) -> None:
    from riskstrata.api.auth import KeyRing, create_key, list_keys, revoke_key, store_secret
    from riskstrata.data.master import SecurityMaster

    ring = KeyRing(mem)
    assert not ring.has_keys()
    key = create_key(mem, "alice")
    secret = store_secret(mem)
    assert secret is not None and len(secret) == 32 and store_secret(mem, create=True) == secret  # made once
    assert ring.check(key) == "alice" and [k.name for k in list_keys(mem)] == ["alice"]
    revoke_key(mem, "alice")
    assert ring.check(key) is None  # the ring saw the table's new stamp
    assert SecurityMaster.from_store(mem).records.empty


def test_cli_reads_a_file_url_store(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from riskstrata.cli import app

    url = (tmp_path / "s").as_uri()
    store = Store(url)
    made = [publish(store, i) for i in range(2)]
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["store", "info", "--json", "--store", url])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["root"] == url and [v["version"] for v in info["models"][0]["versions"]] == made


def test_a_file_url_store_creates_private_files_as_a_local_store_does(tmp_path: Path) -> None:
    """On file:// the private files are made on disk like a local store's: mode 0600, the first
    creator's bytes kept; the store-wide lock is the local one (a file under tables/)."""
    url = Store((tmp_path / "s").as_uri())
    url.create_file(b"first", "secrets", "x.bin")
    url.create_file(b"second", "secrets", "x.bin")
    on_disk = tmp_path / "s" / "secrets" / "x.bin"
    assert on_disk.read_bytes() == b"first" and (on_disk.stat().st_mode & 0o777) == 0o600
    assert Store(tmp_path / "s").read_file("secrets", "x.bin") == b"first"
    with url.lock("keys"):
        assert (tmp_path / "s" / "tables" / ".keys.lock").is_file()
