"""Model B's daily update (issue 13 §2): appending the last days equals a full rebuild.

A small synthetic market with fundamentals and volume is loaded; US21 is built on all but its last
five days (the build's ``end``), then updated, and compared with a full build of the same store
in another copy: every stored part (exposures, factor returns with t-stats, diagnostics and
coverage, covariance, specific risk, validation) equal to 1e-10, labels and meta identical. No new
day publishes nothing; data changed under the published model is refused with the command to run.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import uuid

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.errors import DataValidationError
from riskstrata.factors import covariance
from riskstrata.factors.spec import load_spec
from riskstrata.services import factors as svc
from riskstrata.services.cascade import MODEL, build_cascade
from riskstrata.services.demo import load_synthetic_into_store
from riskstrata.services import factors_update as fu
from riskstrata.services.factors_update import update_factor_model
from tests.cli.test_every_command import assert_ran, invoke
from riskstrata.services.factors_state import PANELS_ARRAYS, STATE_ARRAYS, input_digest, read_update_state
from tests.factors.frames import assert_same_frames

NEW_DAYS = 5
_EXTEND = svc.extend_point_in_time_panels
PARTS = ["factors", "factor_returns", "factor_cov", "specific_risk", "factor_validation"]
KEYS = {"factors": ["date", "security_id"], "factor_returns": ["date"], "factor_cov": ["date"],
        "specific_risk": ["date", "ticker"]}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """(store built on all but the last days, the last old day, the full rebuild's store and version)."""
    tmp = tmp_path_factory.mktemp("factors-update")
    loaded = Store(tmp / "loaded")
    load_synthetic_into_store(loaded, synthetic_market(n_stocks=60, n_days=330, seed=29, styles=True))
    days = pd.DatetimeIndex(loaded.read_table("prices", columns=["date"])["date"].unique()).sort_values()
    # A stock that lists on the second new day: a column the old version has no row for (too
    # young for exposures on the new days, in the update as in the rebuild).
    prices = loaded.read_table("prices")
    newcomer = sorted(loaded.read_table("fundamentals", columns=["security_id"])["security_id"].unique())[0]
    loaded.write_table("prices", prices[~((prices["security_id"] == newcomer) & (prices["date"] < days[-NEW_DAYS + 1]))])
    shutil.copytree(loaded.root, tmp / "full")
    full = Store(tmp / "full")
    version = svc.build_factor_model(full, "US21")["version"]
    svc.build_factor_model(loaded, "US21", end=days[-NEW_DAYS - 1])  # each test updates a copy
    return loaded.root, days[-NEW_DAYS - 1], full, version


def _built_before(stores, tmp_path) -> Store:
    """A copy of the store with US21 built on all but the last NEW_DAYS days."""
    shutil.copytree(stores[0], tmp_path / "store")
    return Store(tmp_path / "store")


def _parts(store: Store, version: str) -> dict[str, pd.DataFrame]:
    m = svc.BuiltModel("US21", store.model_meta("factors_US21", version), version)
    out = {}
    for part in PARTS:
        frame = m.read(store, part)
        key = KEYS.get(part)
        out[part] = frame.sort_values(key).reset_index(drop=True) if key else frame
    return out


def test_an_update_of_five_days_equals_a_full_rebuild(stores, tmp_path, monkeypatch) -> None:
    _, last_old, full, full_version = stores
    store = _built_before(stores, tmp_path)
    before = store.current_version("factors_US21")
    simulated = []  # the eigen simulations the update runs: only on new dates (the rest are stored)
    real = covariance.eigen_bias
    monkeypatch.setattr(covariance, "eigen_bias", lambda *a: simulated.append(1) or real(*a))
    info = update_factor_model(store, "US21")
    assert 0 < len(simulated) <= 2, len(simulated)
    assert info["path"] == "state"  # from the published state, not the whole history again
    assert info["previous"] == before and len(info["new_dates"]) == NEW_DAYS
    assert pd.Timestamp(info["new_dates"][0]) > last_old
    version = store.current_version("factors_US21")
    assert version == info["version"] != before
    got, want = _parts(store, version), _parts(full, full_version)
    assert len(got["factor_returns"]) == len(want["factor_returns"]) > NEW_DAYS
    for part in PARTS:
        assert_same_frames(got[part], want[part], part, tol=1e-10, relative_above_one=True)
    meta, ref = store.model_meta("factors_US21", version), full.model_meta("factors_US21", full_version)
    assert meta["updated_from"] == before and meta["update"]["new_dates"] == info["new_dates"]
    for key in ("factors", "start", "end", "notes", "status", "spec_factors", "groups", "has_data"):
        assert meta[key] == ref[key], key
    # Nothing new: a no-op that publishes nothing.
    again = update_factor_model(store, "US21")
    assert again["version"] is None and store.current_version("factors_US21") == version


def test_five_daily_updates_in_a_row_equal_a_full_rebuild(stores, tmp_path, monkeypatch) -> None:
    """Each update goes on from the state the one before left: no drift across a week. Daily
    parts are merged once COMPACT_AFTER would gather (3 here: one merge within the week)."""
    monkeypatch.setattr(fu, "COMPACT_AFTER", 3)
    _, _, full, full_version = stores
    store = _built_before(stores, tmp_path)
    built_parts = len(store.model_files("factors_US21"))
    prices = store.read_table("prices")
    days = np.sort(prices["date"].unique())
    for k in range(NEW_DAYS, 0, -1):  # the store as it was each evening
        store.write_table("prices", prices[prices["date"] <= days[-k]])
        info = update_factor_model(store, "US21")
        assert info["path"] == "state" and info["new_dates"] == [str(pd.Timestamp(days[-k]).date())]
    version = store.current_version("factors_US21")
    got, want = _parts(store, version), _parts(full, full_version)
    for part in PARTS:
        assert_same_frames(got[part], want[part], part, tol=1e-10, relative_above_one=True)
    assert store.model_meta("factors_US21", version)["notes"] == full.model_meta("factors_US21", full_version)["notes"]
    files = [f.stem for f in store.model_files("factors_US21", version)]
    daily = [f for f in files if f.endswith(fu.DAILY)]
    # Days 1–2 add daily parts, day 3 merges them with its own rows, days 4–5 add two more.
    assert len(daily) == 2 and len(files) == built_parts + 1 + 2, files
    assert files == sorted(files, key=lambda f: int(f[len("part-"):].split("-")[0])), files


def test_inv_specific_var_weights_update_exactly_too(stores, tmp_path) -> None:
    """Weights from the specific variances: the build regresses every date twice; so does the update."""
    base = load_spec("US21")
    spec = dataclasses.replace(base, regression={**base.regression, "weights": "inv_specific_var"})
    store = _built_before(stores, tmp_path)
    svc.build_factor_model(store, spec, end=stores[1])
    info = update_factor_model(store, spec)
    assert info["path"] == "recomputed"  # every date's weights feed back: the long way (module docstring)
    version = info["version"]
    shutil.copytree(stores[2].root, tmp_path / "full")
    full = Store(tmp_path / "full")
    full_version = svc.build_factor_model(full, spec)["version"]
    got, want = _parts(store, version), _parts(full, full_version)
    for part in PARTS:
        assert_same_frames(got[part], want[part], part, tol=1e-10, relative_above_one=True)
    assert not np.allclose(got["factor_returns"]["MARKET"], _parts(*stores[2:])["factor_returns"]["MARKET"])


def _correct_a_price(store: Store, row: int) -> None:
    prices = store.read_table("prices")
    day = np.sort(prices["date"].unique())[row]
    prices.loc[prices["date"] == day, "ret"] += 0.05
    store.write_table("prices", prices)


@pytest.mark.parametrize("row", [-NEW_DAYS - 3, 150])
def test_a_corrected_price_under_the_model_is_refused(stores, tmp_path, row) -> None:
    """Any input row the published model read — inside the last date's lookback or long before
    it — changes the inputs' fingerprint: only a rebuild is right."""
    store = _built_before(stores, tmp_path)
    before = store.current_version("factors_US21")
    _correct_a_price(store, row)
    with pytest.raises(DataValidationError, match="prices data through the model's last date .* changed"
                                                  ".*riskstrata factors build --model US21"):
        update_factor_model(store, "US21")
    assert store.current_version("factors_US21") == before


def test_a_fundamentals_backfill_of_old_dates_is_refused(stores, tmp_path) -> None:
    """A snapshot corrected years back moves only old dates' exposures (no recomputed number
    shows it): the fingerprint of the fundamentals rows does."""
    store = _built_before(stores, tmp_path)
    before = store.current_version("factors_US21")
    fund = store.read_table("fundamentals").sort_values("available_date")
    fund.loc[fund.index[3], "book_value_per_share"] *= 1.5
    store.write_table("fundamentals", fund)
    with pytest.raises(DataValidationError, match="fundamentals data .* changed"):
        update_factor_model(store, "US21")
    assert store.current_version("factors_US21") == before


@pytest.mark.parametrize("path, reason", [("state", "exposures on the model's last date"),
                                          ("recomputed", "published dates' factor returns come out differently")])
def test_changed_data_the_fingerprint_misses_is_still_refused(stores, tmp_path, monkeypatch, path, reason) -> None:
    """Behind the fingerprint, the recomputed numbers: the model's last date's exposures (both
    paths) and, on the long path, every old date's factor returns."""
    store = _built_before(stores, tmp_path)
    before = store.current_version("factors_US21")
    monkeypatch.setattr(fu, "_check_digest", lambda *a: None)
    if path == "recomputed":  # a version without a state takes the long way
        (store.model_dir("factors_US21") / before / f"{STATE_ARRAYS}.npz").unlink()
        monkeypatch.setattr(fu, "_check_last", lambda *a: None)
    _correct_a_price(store, -NEW_DAYS - 3 if path == "state" else 150)
    with pytest.raises(DataValidationError, match=f"{reason}.*riskstrata factors build --model US21"):
        update_factor_model(store, "US21")
    assert store.current_version("factors_US21") == before


def test_a_version_built_before_updates_is_refused(stores, tmp_path) -> None:
    store = _built_before(stores, tmp_path)
    version = store.current_version("factors_US21")
    path = store.model_dir("factors_US21") / version / "meta.json"
    meta = json.loads(path.read_text())
    del meta["has_data"]
    path.write_text(json.dumps(meta))
    with pytest.raises(DataValidationError, match="older riskstrata"):
        update_factor_model(store, "US21")
    assert store.current_version("factors_US21") == version


def test_the_cli_updates_both_models(stores, tmp_path) -> None:
    _, last_old, _, _ = stores
    store = _built_before(stores, tmp_path)
    build_cascade(store, window=63, end=last_old)
    before = {m: store.current_version(m) for m in ("factors_US21", MODEL)}
    args = ["update", "--store", str(store.root)]
    result = invoke(args)
    assert_ran(result, args)
    assert "Model A: appended 5 trading day(s)" in result.output, result.output
    assert "Model B (US21): appended 5 trading day(s)" in result.output, result.output
    assert all(store.current_version(m) != v for m, v in before.items())
    result = invoke(args)
    assert_ran(result, args)
    assert "Model A is up to date" in result.output and "Model B (US21) is up to date" in result.output, result.output


def test_a_security_listed_after_the_build_does_not_stop_the_update(stores, tmp_path) -> None:
    """The fingerprint counts the model's own securities: a new listing is not a correction."""
    store = _built_before(stores, tmp_path)
    securities = store.read_table("securities")
    listed = securities.iloc[[0]].assign(security_id="NEWLISTING", ticker="NEWL", figi=None, isin=None, cusip=None)
    store.write_table("securities", pd.concat([securities, listed], ignore_index=True))
    info = update_factor_model(store, "US21")
    assert info["path"] == "state" and len(info["new_dates"]) == NEW_DAYS


def test_a_version_without_kept_panels_or_published_tail_updates_exactly_too(stores, tmp_path) -> None:
    """A version that keeps neither its trailing fundamentals panels nor the published numbers
    the update reads again (built before they were kept): the update computes the panels whole
    and reads the parts — the same numbers — and keeps both for the next update."""
    _, _, full, full_version = stores
    store = _built_before(stores, tmp_path)
    folder = store.model_dir("factors_US21") / store.current_version("factors_US21")
    (folder / f"{PANELS_ARRAYS}.npz").unlink()
    with np.load(folder / f"{STATE_ARRAYS}.npz") as npz:
        kept = {k: npz[k] for k in npz.files if not k.startswith("published/")}
        assert len(kept) < len(npz.files)
    np.savez(folder / f"{STATE_ARRAYS}.npz", **kept)
    info = update_factor_model(store, "US21")
    assert info["path"] == "state"
    got, want = _parts(store, info["version"]), _parts(full, full_version)
    for part in PARTS:
        assert_same_frames(got[part], want[part], part, tol=1e-10, relative_above_one=True)
    assert store.read_arrays("factors_US21", PANELS_ARRAYS, info["version"]) is not None
    assert any(k.startswith("published/") for k in store.read_arrays("factors_US21", STATE_ARRAYS, info["version"]))


def test_a_corrected_return_is_refused_with_the_kept_panels_in_use(stores, tmp_path, monkeypatch) -> None:
    """The kept panels stand for the fundamentals only: the returns are read again, so a
    correction inside the lookback that the fingerprint missed still shows in the last date's
    exposures."""
    store = _built_before(stores, tmp_path)
    before = store.current_version("factors_US21")
    published = store.model_meta("factors_US21", before)["input_digest"]
    real = fu.input_digest_and_new_rows
    monkeypatch.setattr(fu, "input_digest_and_new_rows", lambda *a: (published, real(*a)[1]))
    used = []  # the kept panels are in use (not the whole computation)
    monkeypatch.setattr(svc, "extend_point_in_time_panels", lambda *a: used.append(1) or _EXTEND(*a))
    _correct_a_price(store, -NEW_DAYS - 3)
    with pytest.raises(DataValidationError, match="exposures on the model's last date"):
        update_factor_model(store, "US21")
    assert used and store.current_version("factors_US21") == before



def test_the_updated_fingerprint_is_the_one_a_build_would_record(stores, tmp_path) -> None:
    """The new version's input fingerprint, summed from the checked one and the new rows (no
    history hashed again), is the fingerprint of every row through its new last date."""
    store = _built_before(stores, tmp_path)
    info = update_factor_model(store, "US21")
    meta = store.model_meta("factors_US21", info["version"])
    names = read_update_state(store, "factors_US21", info["version"]).history.names
    assert meta["input_digest"] == input_digest(store, meta["end"], names)


def test_an_update_on_a_memory_store_equals_a_full_rebuild(stores) -> None:
    """On a store DuckDB cannot read by path (fsspec memory://) the update's reads are the
    store's own; the same numbers."""
    loaded, last_old, full, full_version = stores
    local = Store(loaded)
    mem = Store(f"memory://factors-update-{uuid.uuid4().hex}")
    try:
        for table in local.tables():
            mem.write_table(table, local.read_table(table))
        svc.build_factor_model(mem, "US21", end=last_old)
        info = update_factor_model(mem, "US21")
        assert info["path"] == "state" and len(info["new_dates"]) == NEW_DAYS
        got, want = _parts(mem, info["version"]), _parts(full, full_version)
        for part in PARTS:
            assert_same_frames(got[part], want[part], part, tol=1e-10, relative_above_one=True)
    finally:
        mem.fs.rm(str(mem.path()), recursive=True)
