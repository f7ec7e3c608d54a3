"""``EtfRegistry.default()``: validated once per process, and every caller gets its own copy.

A caller may edit what it was given (its table, even the lookup maps behind it); the next
caller still gets the packaged registry, equal in every field to one validated afresh.
"""

from __future__ import annotations

import pandas as pd

from riskstrata.data.registry import EtfRegistry, _default_table

LOOKUPS = ("_sector", "_sub", "_sub_sector", "_sector_etfs", "_parent", "_inception")


def _fresh() -> EtfRegistry:
    """The packaged registry validated now (what default() returned before it was cached)."""
    return EtfRegistry(_default_table().copy())


def _assert_same(got: EtfRegistry, want: EtfRegistry) -> None:
    pd.testing.assert_frame_equal(got.table, want.table)
    assert got.market_etf == want.market_etf
    for name in LOOKUPS:
        assert getattr(got, name) == getattr(want, name), f"{name} differs from a freshly validated registry"


def test_default_equals_a_freshly_validated_registry_and_is_a_new_object_each_time():
    first, second = EtfRegistry.default(), EtfRegistry.default()
    _assert_same(first, _fresh())
    assert first is not second and first.table is not second.table


def test_a_caller_that_edits_its_registry_changes_nothing_for_the_next_caller():
    mine = EtfRegistry.default()
    tech_sub = next(key for key, sectors in mine._sub_sector.items() if len(sectors) == 1)
    mine.table.loc[mine.table["level"] == "sector", "etf"] = "ZZZ"  # the table, in place
    mine.table.loc[mine.table.index[:5], "gics_sector"] = "renamed"
    mine._sector.clear()                                           # and every lookup map behind it
    mine._sub.clear()
    mine._sub_sector[tech_sub].add("another sector")
    mine._parent["XRT"] = "ZZZ"
    mine._inception.clear()
    assert mine.sector_etfs() == ["ZZZ"]  # the edit took, for this caller

    theirs = EtfRegistry.default()
    _assert_same(theirs, _fresh())
    assert theirs.sector_etf("Information Technology") == "XLK"
    assert theirs.parent_of("XRT")["sector_etf"] != "ZZZ"
