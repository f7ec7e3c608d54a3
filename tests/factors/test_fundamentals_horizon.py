"""Model B's inputs from a given start read the fundamentals available since a horizon only
(:func:`riskstrata.services.factors._stored_fundamentals`): every panel, trailing panel and
snapshot in force equals the one made from the whole table."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.services import factors as svc
from riskstrata.services.demo import load_synthetic_into_store


def _assert_same(got: object, want: object, where: str) -> None:
    """Equal values, labels and dtypes, NaN where NaN, recursing into dataclasses, dicts and tuples."""
    if dataclasses.is_dataclass(want):
        for f in dataclasses.fields(want):
            _assert_same(getattr(got, f.name), getattr(want, f.name), f"{where}.{f.name}")
    elif isinstance(want, dict):
        assert list(got) == list(want), f"{where}: keys differ"
        for key in want:
            _assert_same(got[key], want[key], f"{where}[{key!r}]")
    elif isinstance(want, (tuple, list)):
        assert len(got) == len(want), f"{where}: lengths differ"
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, pd.DataFrame):
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=where)
    elif isinstance(want, pd.Series):
        pd.testing.assert_series_equal(got, want, check_exact=True, obj=where)
    elif isinstance(want, pd.Index):
        pd.testing.assert_index_equal(got, want, exact=True, obj=where)
    elif isinstance(want, np.ndarray):
        np.testing.assert_array_equal(got, want, err_msg=where)
        assert got.dtype == want.dtype, f"{where}: dtype {got.dtype} != {want.dtype}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    store = Store(tmp_path_factory.mktemp("fundamentals-horizon") / "store")
    load_synthetic_into_store(store, synthetic_market(n_stocks=30, n_days=700, seed=5, styles=True))
    return store


def test_inputs_from_a_start_equal_those_from_the_whole_fundamentals_table(store: Store, monkeypatch) -> None:
    # A short share-count age limit puts the horizon inside the synthetic history, so the bounded
    # read leaves rows out (with the real limit, 3000 days, it would keep all 700 days' rows).
    monkeypatch.setattr(svc, "SHARES_MAX_AGE_DAYS", 100)
    days = pd.DatetimeIndex(store.read_table("prices", columns=["date"])["date"].unique()).sort_values()
    start = days[650]
    whole = store.read_table("fundamentals")
    # One name files nothing for the 300 days before the start: its snapshot in force there is
    # older than the horizon of a too-short bound would be, and must still be found.
    quiet = whole["security_id"].iloc[0]
    gap = (whole["security_id"] == quiet) & (whole["available_date"] > start - pd.Timedelta(days=300))
    store.write_table("fundamentals", whole.loc[~gap].reset_index(drop=True))
    whole = store.read_table("fundamentals")
    bounded = svc._stored_fundamentals(store, svc.SecurityMaster.from_store(store), start).table
    assert 0 < len(bounded) < len(whole), "the horizon should leave some rows out"
    fast = svc.load_factor_inputs_kept(store, start)

    full = svc._stored_fundamentals
    monkeypatch.setattr(svc, "_stored_fundamentals", lambda s, master, _start: full(s, master, None))
    slow = svc.load_factor_inputs_kept(store, start)
    _assert_same(fast, slow, "load_factor_inputs_kept")
