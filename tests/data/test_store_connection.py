"""Store.one_connection (a block's reads on one DuckDB connection, per thread) and
Store.read_parts, on a local path, a file:// URL and memory://."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from riskstrata.data.store import Store
from tests.data.test_store import store  # noqa: F401  (the fixture: a path, a file:// URL, memory://)


def _filled(store: Store) -> Store:
    store.write_table("prices", pd.DataFrame({"date": pd.to_datetime(["2024-01-02", "2024-01-03"]),
                                              "ticker": ["A", "B"], "ret": [0.01, -0.02]}))
    for day in range(3):
        with store.begin_version("m") as writer:
            writer.write_part(pd.DataFrame({"day": [day], "x": [day * 1.5]}), "00000")
            writer.write_part(pd.DataFrame({"day": [day + 10], "x": [day * 2.5]}), "00001")
            writer.commit()
    return store


def _counting_connect(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    opened: list[int] = []
    connect = store.connect

    def counted():
        opened.append(threading.get_ident())
        return connect()

    monkeypatch.setattr(store, "connect", counted)
    return opened


def test_reads_in_a_block_share_one_connection_and_answer_as_without(store, monkeypatch):
    _filled(store)
    alone = (store.read_table("prices"), store.read_model("m"),
             store.query("SELECT count(*) AS n FROM prices", models=False),
             store.query("SELECT sum(x) AS s FROM model_m"))
    opened = _counting_connect(store, monkeypatch)
    with store.one_connection():
        with store.one_connection():  # nested: the outer block's connection
            held = (store.read_table("prices"), store.read_model("m"),
                    store.query("SELECT count(*) AS n FROM prices", models=False),
                    store.query("SELECT sum(x) AS s FROM model_m"))
        again = store.query("SELECT count(*) AS n FROM prices", models=False)  # views made once
    assert len(opened) == 1
    for got, want in zip(held, alone):
        pd.testing.assert_frame_equal(got, want)
    pd.testing.assert_frame_equal(again, alone[2])
    store.read_table("prices")  # after the block: a connection of its own again
    assert len(opened) == 2


def test_a_model_view_on_a_held_connection_follows_a_new_current_version(store):
    _filled(store)
    with store.one_connection():
        first = store.query("SELECT sum(x) AS s FROM model_m")
        with store.begin_version("m") as writer:
            writer.write_part(pd.DataFrame({"day": [99], "x": [100.0]}))
            writer.commit()
        assert store.query("SELECT sum(x) AS s FROM model_m")["s"].iloc[0] == 100.0
    assert first["s"].iloc[0] == pytest.approx(2 * 1.5 + 2 * 2.5)


def test_another_thread_inside_the_block_opens_its_own_connection(store, monkeypatch):
    _filled(store)
    opened = _counting_connect(store, monkeypatch)
    with store.one_connection():
        worker = threading.Thread(target=store.read_table, args=("prices",))
        worker.start()
        worker.join()
        store.read_table("prices")
    assert len(opened) == 2 and len(set(opened)) == 2


def test_read_parts_reads_the_named_part_files_in_order(store):
    _filled(store)
    files = store.model_files("m")
    got = store.read_parts(list(reversed(files)))
    assert got["day"].tolist() == [12, 2]
    pd.testing.assert_frame_equal(store.read_parts(files), store.read_model("m"))


# ---------------------------------------------------------------------- the process's database


def test_threads_querying_at_once_each_see_their_own_views(store):
    """Cursors of the one process database: every thread's views (tables, model_m) are its own,
    so concurrent queries neither collide on a view name nor read another thread's."""
    _filled(store)
    want = store.query("SELECT count(*) AS n, sum(x) AS s FROM model_m").iloc[0].tolist()
    errors, answers = [], []
    barrier = threading.Barrier(4)

    def run() -> None:
        try:
            barrier.wait()
            for _ in range(5):
                answers.append(store.query("SELECT count(*) AS n, sum(x) AS s FROM model_m").iloc[0].tolist())
                assert len(store.query("SELECT * FROM prices")) == 2
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and answers == [want] * 20


def test_a_forked_child_reads_the_store_and_exits_cleanly(tmp_path):
    """The parent has used the process database when it forks: the child makes its own and
    exits with 0 (destroying the inherited one would abort it: its threads are the parent's)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import multiprocessing as mp, sys
        import pandas as pd
        from riskstrata.data.store import Store

        store = Store({str(tmp_path / 's')!r})
        store.write_table("t", pd.DataFrame({{"x": [1.0, 2.0]}}))
        assert store.query("SELECT sum(x) AS s FROM t")["s"].iloc[0] == 3.0

        def child(q):
            q.put(float(store.query("SELECT sum(x) AS s FROM t")["s"].iloc[0]))

        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        got = q.get(timeout=60)
        p.join(60)
        print(got, p.exitcode)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3.0", "0"]
