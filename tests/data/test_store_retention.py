"""The store does not grow without bound, and pruning never takes what someone reads.

Retention after every publish (newest N per model), never the current version, a companion a
kept version names, a version a live process leases, or one superseded within the grace period;
a crash mid-prune leaves the store readable; one API build per model at a time (issue 12, §4).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import riskstrata.data.store as store_module
from riskstrata.data.store import Store
from riskstrata.errors import StoreError

SRC = Path(__file__).resolve().parents[2] / "src"


def publish(store: Store, model: str, value: int, **meta) -> str:
    with store.begin_version(model, meta=meta) as w:
        w.write_part(pd.DataFrame({"x": [value] * 100}))
        return w.commit()


@pytest.fixture
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prune after publish without the grace period (a test publishes within milliseconds)."""
    monkeypatch.setattr(store_module, "PRUNE_GRACE_SECONDS", 0)


def test_a_publish_keeps_the_newest_n_versions(tmp_path: Path, no_grace: None) -> None:
    store = Store(tmp_path / "s", keep_versions=2)
    made = [publish(store, "cascade", i) for i in range(5)]
    assert store.versions("cascade") == made[-2:]
    assert store.current_version("cascade") == made[-1]
    assert not list(store.model_dir("cascade").glob(".tmp-*"))


def test_the_default_is_three_and_the_environment_sets_it(tmp_path: Path, no_grace: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "s")
    made = [publish(store, "cascade", i) for i in range(5)]
    assert store.keep_versions == 3 and store.versions("cascade") == made[-3:]
    monkeypatch.setenv("RISKSTRATA_KEEP_VERSIONS", "1")
    assert Store(tmp_path / "s").keep_versions == 1
    monkeypatch.setenv("RISKSTRATA_KEEP_VERSIONS", "zero")
    with pytest.raises(StoreError, match="RISKSTRATA_KEEP_VERSIONS"):
        Store(tmp_path / "s")


def test_recently_superseded_versions_survive_the_grace_period(tmp_path: Path) -> None:
    store = Store(tmp_path / "s", keep_versions=1)
    made = [publish(store, "cascade", i) for i in range(3)]
    assert store.versions("cascade") == made  # superseded seconds ago: a request may still read them
    assert store.prune("cascade", grace_seconds=0) == made[:2]


def test_a_companion_named_by_a_kept_version_is_never_pruned(tmp_path: Path, no_grace: None) -> None:
    store = Store(tmp_path / "s", keep_versions=1)
    link = publish(store, "links", 0)
    main = publish(store, "cascade", 0, link_version=link)
    newer_links = [publish(store, "links", i) for i in range(1, 4)]
    assert store.versions("links") == [link, newer_links[-1]]  # the one `main` reads stays
    assert store.read_model("links", version=link)["x"].iloc[0] == 0
    publish(store, "cascade", 1, link_version=newer_links[-1])
    assert main not in store.versions("cascade") and link not in store.versions("links")


def test_a_leased_version_is_kept_until_released_or_its_process_dies(tmp_path: Path, no_grace: None) -> None:
    store = Store(tmp_path / "s", keep_versions=1)
    first = publish(store, "cascade", 0)
    lease = store.lease("cascade", first)
    publish(store, "cascade", 1)
    publish(store, "cascade", 2)
    assert first in store.versions("cascade") and store.leased("cascade") == {first: 1}
    assert store.read_model("cascade", version=first)["x"].iloc[0] == 0
    lease.release()
    publish(store, "cascade", 3)
    assert first not in store.versions("cascade")

    # A lease whose process is gone (a server killed with -9) holds nothing.
    held = publish(store, "cascade", 4)
    code = f"from riskstrata.data.store import Store; Store({str(store.root)!r}).lease('cascade', {held!r})"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert len(list((store.model_dir("cascade") / ".leases").iterdir())) == 1
    publish(store, "cascade", 5)
    assert held not in store.versions("cascade")
    assert not list((store.model_dir("cascade") / ".leases").iterdir())


def test_a_crash_mid_prune_leaves_the_store_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "s", keep_versions=1)
    made = [publish(store, "cascade", i) for i in range(3)]

    def crash(path, ignore_errors=False):  # the process dies between the rename and the delete
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module.shutil, "rmtree", crash)
    with pytest.raises(KeyboardInterrupt):
        store.prune("cascade", grace_seconds=0)
    monkeypatch.undo()
    assert store.current_version("cascade") == made[-1]
    assert store.read_model("cascade")["x"].iloc[0] == 2
    assert store.versions("cascade") == made[1:]  # the renamed one is gone from view, the rest intact
    assert store.query("SELECT max(x) AS m FROM model_cascade")["m"].iloc[0] == 2
    assert list(store.model_dir("cascade").glob(".tmp-del-*"))
    store.prune("cascade", grace_seconds=0)  # the leftover is removed by the next prune (or build)
    assert not list(store.model_dir("cascade").glob(".tmp-*")) and store.versions("cascade") == made[-1:]


def test_info_lists_versions_sizes_and_why_each_is_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / "s", keep_versions=2)
    store.write_table("prices", pd.DataFrame({"x": [1.0, 2.0]}))
    made = [publish(store, "cascade", i) for i in range(3)]
    info = store.info()
    assert info["keep_versions"] == 2 and info["tables"][0]["table"] == "prices"
    (model,) = info["models"]
    assert [v["version"] for v in model["versions"]] == made
    assert [v["current"] for v in model["versions"]] == [False, False, True]
    assert model["versions"][0]["kept"] == "superseded recently" and model["versions"][2]["kept"] == "current"
    sizes = [v["bytes"] for v in model["versions"]]
    assert all(b > 0 for b in sizes) and model["bytes"] == sum(sizes)
    assert info["bytes"] == model["bytes"] + info["tables"][0]["bytes"]


def test_a_build_claim_is_exclusive_and_taken_over_from_a_dead_process(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    assert store.claim_build("factors_US21", "build-1") is None
    assert store.claim_build("factors_US21", "build-2") == "build-1"
    store.release_build("factors_US21", "build-2")  # not its claim: nothing happens
    assert store.claim_build("factors_US21", "build-3") == "build-1"
    store.release_build("factors_US21", "build-1")
    assert store.claim_build("factors_US21", "build-4") is None
    claim = store.model_dir("factors_US21") / ".build-claim"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = json.loads(claim.read_text())
    claim.write_text(json.dumps({**record, "job_id": "build-dead", "pid": int(dead.stdout)}))
    assert store.claim_build("factors_US21", "build-5") is None


def test_cli_store_info_and_prune(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from riskstrata.cli import app

    store = Store(tmp_path / "s", keep_versions=5)
    made = [publish(store, "cascade", i) for i in range(4)]
    runner = CliRunner(env={"COLUMNS": "200"})
    shown = runner.invoke(app, ["store", "info", "--store", str(store.root)])
    assert shown.exit_code == 0, shown.output
    assert all(v in shown.output for v in made) and "kept because" in shown.output
    pruned = runner.invoke(app, ["store", "prune", "--keep", "2", "--grace", "0", "--json", "--store", str(store.root)])
    assert pruned.exit_code == 0, pruned.output
    body = json.loads(pruned.output)
    assert body["removed"] == {"cascade": made[:2]} and body["bytes_freed"] > 0
    assert store.versions("cascade") == made[2:]
    info = json.loads(runner.invoke(app, ["store", "info", "--json", "--store", str(store.root)]).output)
    assert [v["version"] for v in info["models"][0]["versions"]] == made[2:]
