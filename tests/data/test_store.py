"""The store: tables round-trip, writes are atomic, model versions publish atomically and survive kill -9.

Every test over the ``store`` fixture runs three times: on a local path (fsync, rename, hard links),
and as an fsspec store on a ``file://`` URL and on ``memory://`` (the object-storage code path:
no rename, CURRENT written last). Only the kill -9 test needs a second process, so it skips
``memory://``, which lives in one.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pandas as pd
import pyarrow.parquet as pq
import pytest

from riskstrata.data.store import Store, default_store_root
from riskstrata.errors import ModelNotBuilt, StoreError

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(params=["path", "file-url", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store: on a local path, a file:// URL, or memory:// (each test its own)."""
    if request.param != "memory":
        yield Store(tmp_path / "store" if request.param == "path" else (tmp_path / "store").as_uri())
        return
    made = Store(f"memory://test-store-{uuid.uuid4().hex}")
    yield made
    made.fs.rm(str(made.path()), recursive=True)  # memory:// lives as long as the process


def names_in(store: Store, folder) -> list[str]:
    """The entries of a store folder, sorted (hidden ones included)."""
    if store.is_local:
        return sorted(p.name for p in Path(folder).iterdir())
    return sorted(PurePosixPath(e).name for e in store.fs.ls(str(folder), detail=False))


def exists(store: Store, path) -> bool:
    return Path(path).exists() if store.is_local else store.fs.exists(str(path))


def hidden_builds(store: Store, model: str) -> list:
    """The hidden build directories (and leftovers) of a model."""
    folder = store.model_dir(model)
    return [folder / n for n in names_in(store, folder) if n.startswith(".tmp-")] if exists(store, folder) else []


def write_text(store: Store, path, text: str) -> None:
    if store.is_local:
        Path(path).write_text(text)
    else:
        store.fs.pipe_file(str(path), text.encode())


def sample_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "date": pd.to_datetime(["2020-01-02", "2020-01-03", "2020-01-06"]).astype("datetime64[ns]"),
            "ticker": pd.Series(["AAA", "BBB", "AAA"], dtype="str"),
            "value": [1.5, float("nan"), -2.25],
            "count": [1, 2, 3],
        }
    )


# ---------------------------------------------------------------------- tables


def test_a_table_round_trips_with_its_types(store: Store) -> None:
    df = sample_frame()
    store.write_table("sample", df)
    assert store.has_table("sample")
    assert store.tables() == ["sample"]
    pd.testing.assert_frame_equal(store.read_table("sample"), df)


def test_read_table_selects_columns_and_filters_rows_in_sql(store: Store) -> None:
    store.write_table("sample", sample_frame())
    got = store.read_table("sample", columns=["date", "value"], where="ticker = ? AND value < ?", params=["AAA", 0])
    assert list(got.columns) == ["date", "value"]
    assert got["value"].tolist() == [-2.25]


def test_reading_a_missing_table_says_so(store: Store) -> None:
    with pytest.raises(StoreError, match="table 'prices' not found"):
        store.read_table("prices")


def test_table_names_must_be_identifiers(store: Store) -> None:
    with pytest.raises(StoreError, match="invalid table name"):
        store.write_table("../evil", sample_frame())


def test_writing_a_table_replaces_it_whole(store: Store) -> None:
    store.write_table("sample", sample_frame())
    store.write_table("sample", sample_frame().iloc[:1])
    assert len(store.read_table("sample")) == 1
    assert names_in(store, store.path("tables")) == ["sample.parquet"]  # no temp files left


def test_a_write_that_dies_midway_leaves_the_old_table_intact(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store.write_table("sample", sample_frame())

    def crash(table, where, **kwargs):  # writes some bytes, then fails like a full disk
        where.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        store.write_table("sample", sample_frame().iloc[:1])
    monkeypatch.undo()
    pd.testing.assert_frame_equal(store.read_table("sample"), sample_frame())
    assert names_in(store, store.path("tables")) == ["sample.parquet"]


def test_query_sees_tables_and_current_models_as_views(store: Store) -> None:
    store.write_table("prices", sample_frame())
    with store.begin_version("cascade") as w:
        w.write_part(pd.DataFrame({"ticker": ["AAA"], "beta": [1.2]}))
        w.commit()
    got = store.query(
        "SELECT p.ticker, sum(p.count) AS n, any_value(m.beta) AS beta "
        "FROM prices p JOIN model_cascade m USING (ticker) GROUP BY p.ticker"
    )
    assert got.to_dict("records") == [{"ticker": "AAA", "n": 4, "beta": 1.2}]


def test_the_default_store_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RISKSTRATA_STORE", str(tmp_path / "elsewhere"))
    assert default_store_root() == tmp_path / "elsewhere"
    assert Store().root == tmp_path / "elsewhere"
    monkeypatch.delenv("RISKSTRATA_STORE")
    assert default_store_root() == Path.home() / ".riskstrata" / "store"


def test_opening_a_missing_store_without_create_fails(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no riskstrata store"):
        Store(tmp_path / "nothing", create=False)


# ---------------------------------------------------------------------- model versions


def publish(store: Store, model: str, values: list[int], **meta) -> str:
    with store.begin_version(model, meta=meta) as w:
        w.write_part(pd.DataFrame({"x": values}))
        return w.commit()


def test_a_committed_version_becomes_current(store: Store) -> None:
    version = publish(store, "cascade", [1, 2, 3], window=252)
    assert store.current_version("cascade") == version
    assert store.versions("cascade") == [version]
    assert store.read_model("cascade")["x"].tolist() == [1, 2, 3]
    meta = store.model_meta("cascade")
    assert meta["window"] == 252 and meta["rows"] == 3 and meta["version"] == version
    assert [p.name for p in store.model_files("cascade")] == ["part-00000.parquet"]


def test_versions_are_listed_oldest_first(store: Store) -> None:
    made = [publish(store, "cascade", [i]) for i in range(3)]
    assert store.versions("cascade") == made == sorted(made)
    assert store.read_model("cascade", version=made[0])["x"].tolist() == [0]


def test_readers_see_the_old_version_until_commit(store: Store) -> None:
    publish(store, "cascade", [1, 2, 3])
    with store.begin_version("cascade") as w:
        w.write_part(pd.DataFrame({"x": [7, 8]}))
        w.write_part(pd.DataFrame({"x": [9]}), name="tail")
        assert store.read_model("cascade")["x"].tolist() == [1, 2, 3]
        assert len(store.versions("cascade")) == 1
        new = w.commit()
    assert store.current_version("cascade") == new
    assert sorted(store.read_model("cascade")["x"]) == [7, 8, 9]
    assert store.read_model("cascade", where="x > ?", params=[7])["x"].tolist() in ([8, 9], [9, 8])


def test_leaving_a_build_without_commit_publishes_nothing(store: Store) -> None:
    first = publish(store, "cascade", [1])
    with pytest.raises(RuntimeError):
        with store.begin_version("cascade") as w:
            w.write_part(pd.DataFrame({"x": [2]}))
            raise RuntimeError("build failed")
    with store.begin_version("cascade") as w:
        w.write_part(pd.DataFrame({"x": [3]}))  # no commit, no error
    assert store.current_version("cascade") == first
    assert store.versions("cascade") == [first]
    assert not hidden_builds(store, "cascade")


def test_reading_a_model_never_built_raises_model_not_built(store: Store) -> None:
    with pytest.raises(ModelNotBuilt, match="'cascade' has not been built"):
        store.read_model("cascade")
    assert store.current_version("cascade") is None
    assert store.versions("cascade") == []


def test_prune_keeps_the_newest_and_never_the_current_one(store: Store) -> None:
    made = [publish(store, "cascade", [i]) for i in range(5)]
    # Point CURRENT back at an old version (a rollback): prune must keep it.
    write_text(store, store.model_dir("cascade") / "CURRENT", made[0])
    removed = store.prune("cascade", keep=2)
    assert removed == made[1:3]
    assert store.versions("cascade") == [made[0], *made[3:]]
    assert store.read_model("cascade")["x"].tolist() == [0]


CRASHING_BUILD = textwrap.dedent(
    """
    import sys, time
    import pandas as pd
    from riskstrata.data.store import Store

    store = Store(sys.argv[1])
    with store.begin_version("cascade") as w:
        w.write_part(pd.DataFrame({"x": [1, 2, 3]}))
        v1 = w.commit()
    w = store.begin_version("cascade")
    w.write_part(pd.DataFrame({"x": [666]}))
    print("READY", v1, flush=True)
    time.sleep(120)
    """
)


def test_a_build_killed_with_sigkill_leaves_the_last_good_version_current(store: Store) -> None:
    if str(store.root).startswith("memory:"):
        pytest.skip("memory:// lives in one process: the killed builder could not share it")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    with subprocess.Popen(
        [sys.executable, "-c", CRASHING_BUILD, str(store.root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    ) as proc:  # fmt: skip
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            line = proc.stdout.readline() if ready else ""
            errors = proc.stderr.read() if proc.poll() is not None else ""
            assert line.startswith("READY"), f"builder did not get ready: {line!r} {errors}"
            v1 = line.split()[1]
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # The killed build left its hidden directory behind; readers ignore it.
    leftovers = hidden_builds(store, "cascade")
    assert len(leftovers) == 1
    assert store.current_version("cascade") == v1
    assert store.versions("cascade") == [v1]
    assert store.read_model("cascade")["x"].tolist() == [1, 2, 3]

    # The next build cleans the dead one up, publishes, and becomes current.
    time.sleep(0.01)
    with store.begin_version("cascade") as w:
        assert not exists(store, leftovers[0])
        w.write_part(pd.DataFrame({"x": [4, 5]}))
        v2 = w.commit()
    assert store.current_version("cascade") == v2
    assert store.versions("cascade") == [v1, v2]
    assert store.read_model("cascade")["x"].tolist() == [4, 5]


def test_a_running_build_of_another_process_is_not_cleaned_up(store: Store) -> None:
    other = store.begin_version("cascade")  # this process is alive, so the build is live
    publish(store, "cascade", [1])
    assert exists(store, other.tmp_dir)
    other.abort()



def test_a_version_keeps_arrays_beside_its_parts(store: Store) -> None:
    import numpy as np

    with store.begin_version("cascade") as w:
        w.write_part(sample_frame())
        w.write_arrays("update_state", {"sums": np.arange(6.0).reshape(2, 3), "names": np.array(["A", "BB"])})
        version = w.commit()
    got = store.read_arrays("cascade", "update_state", version)
    assert got["sums"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]] and got["names"].tolist() == ["A", "BB"]
    assert store.read_arrays("cascade", "other_state", version) is None  # a version without them
    assert len(store.model_files("cascade", version)) == 1                # arrays are not a part
    with store.begin_version("cascade") as w, pytest.raises(StoreError, match="no pickled objects"):
        w.write_arrays("update_state", {"names": np.array(["A", None], dtype=object)})


def test_part_names_are_numbered_normalised_and_checked(store: Store) -> None:
    """A part is ``part-<name>.parquet``: numbered by default, the prefix and suffix accepted,
    anything but a plain file name refused before a byte is written; a name written twice too."""
    frame = pd.DataFrame({"x": [1.0]})
    with store.begin_version("m") as writer:
        assert writer.write_part(frame).name == "part-00000.parquet"
        assert writer.write_part(frame, "part-a.parquet").name == "part-a.parquet"
        assert writer.write_part(frame, "b").name == "part-b.parquet"
        for bad in ["../escape", "a/b", "", "a b"]:
            with pytest.raises(StoreError, match="invalid part name"):
                writer.write_part(frame, bad)
        with pytest.raises(StoreError, match="already written"):
            writer.write_part(frame, "b")
        version = writer.commit()
    assert [p["file"] for p in store.model_meta("m", version)["parts"]] == ["part-00000.parquet", "part-a.parquet",
                                                                            "part-b.parquet"]
