"""The security master read back from the store: the fast path (no second validation of a table
the master itself wrote) gives exactly the master the full constructor gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskstrata.data import master as master_module
from riskstrata.data.master import SecurityMaster
from riskstrata.data.store import Store


def _same_master(fast: SecurityMaster, full: SecurityMaster) -> None:
    """Records (values, dtypes, order) and both position maps (keys in order, positions) identical."""
    pd.testing.assert_frame_equal(fast._records, full._records, check_exact=True)
    for name in ("_by_ticker", "_by_id"):
        a, b = getattr(fast, name), getattr(full, name)
        assert list(a) == list(b), f"{name}: keys differ"
        for key in b:
            assert np.array_equal(a[key], b[key]) and a[key].dtype == b[key].dtype, f"{name}[{key!r}] differs"


@pytest.fixture
def stored(tmp_path: Path) -> Store:
    """A store whose master has a rename (one FIGI), a recycled ticker, issuers and ticker-only ids."""
    store = Store(tmp_path / "store")
    SecurityMaster(pd.DataFrame([
        {"figi": "BBG000MM2P62", "ticker": "FB", "name": "Facebook", "valid_from": "2012-05-18",
         "valid_to": "2022-06-08", "issuer_id": "0001326801"},
        {"figi": "BBG000MM2P62", "ticker": "META", "name": "Meta Platforms", "valid_from": "2022-06-09",
         "issuer_id": "0001326801"},
        {"isin": "US0000000A11", "ticker": "XYZ", "name": "A Corp", "valid_from": "2000-01-03",
         "valid_to": "2010-12-31"},
        {"ticker": "XYZ", "name": "B Inc", "valid_from": "2015-01-02", "shares_outstanding": 1e6},
        {"ticker": "SPY", "asset_type": "etf", "valid_from": "1993-01-29"},
        {"ticker": "GOOG", "valid_from": "2014-04-03", "issuer_id": "0001652044"},
        {"ticker": "GOOGL", "valid_from": "2004-08-19", "issuer_id": "0001652044"},
    ])).to_store(store)
    return store


def test_a_stored_master_reads_back_as_the_full_constructor_makes_it(stored: Store) -> None:
    table = stored.read_table("securities")
    assert master_module._is_stored_form(table), "a table the master wrote should take the fast path"
    _same_master(SecurityMaster._from_stored(table), SecurityMaster(table))
    master_module._FROM_STORE.clear()
    _same_master(SecurityMaster.from_store(stored), SecurityMaster(table))


def test_a_table_not_in_the_stored_form_is_validated_in_full(stored: Store) -> None:
    table = stored.read_table("securities")
    assert not master_module._is_stored_form(table.drop(columns=["cusip"]))
    assert not master_module._is_stored_form(table.assign(security_id=np.nan))
    _same_master(SecurityMaster._from_stored(table.drop(columns=["cusip"])), SecurityMaster(table))
    bare = table.assign(security_id=table["security_id"].where(table["ticker"] != "SPY"))
    _same_master(SecurityMaster._from_stored(bare), SecurityMaster(bare))


@pytest.mark.parametrize("keys", [["a", "b", "a", "c", "b", "a"], ["x"], []])
def test_positions_are_groupby_indices(keys: list[str]) -> None:
    series = pd.Series(keys, dtype="str")
    expected = series.groupby(series, sort=False).indices
    got = master_module._positions(series)
    assert list(got) == list(expected)
    for key in expected:
        assert np.array_equal(got[key], expected[key]) and got[key].dtype == expected[key].dtype
