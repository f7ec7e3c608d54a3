"""The kept panels' arrays: stacked (eight arrays, written since), read back as they were kept,
and a version written before they were stacked (one array per panel and snapshot field) still
reads the same."""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskstrata.data.fundamentals import SnapshotsInForce
from riskstrata.services.factors_state import TrailingPanels


def kept(seed: int = 1) -> TrailingPanels:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2024-01-02", periods=7)
    names = pd.Index(["S1", "S2", "S3", "S4"], name="security_id")
    panels = {f: np.where(rng.random((7, 4)) < 0.2, np.nan, rng.lognormal(0, 2, (7, 4)))
              for f in ("market_cap", "price", "eps", "shares_outstanding")}
    in_force = {f: SnapshotsInForce(dates[-1], names, rng.normal(size=4), np.array([19720.0, np.nan, 19721.0, 19700.0]),
                                    np.array([19719.0, np.nan, 19721.0, 19699.0])) for f in panels}
    close_dates = pd.bdate_range("2023-12-20", periods=12)
    return TrailingPanels(dates, names, panels, close_dates, rng.lognormal(3, 1, (12, 4)), in_force)


def assert_same(a: TrailingPanels, b: TrailingPanels) -> None:
    assert a.dates.equals(b.dates) and a.names.equals(b.names) and a.close_dates.equals(b.close_dates)
    np.testing.assert_array_equal(a.closes, b.closes)
    assert list(a.panels) == list(b.panels) and set(a.in_force) == set(b.in_force)
    for f in a.panels:
        np.testing.assert_array_equal(a.panels[f], b.panels[f], err_msg=f)
    for f in a.in_force:
        for what in ("value", "available", "price_day"):
            np.testing.assert_array_equal(getattr(a.in_force[f], what), getattr(b.in_force[f], what), err_msg=f)
        assert a.in_force[f].day == b.in_force[f].day and a.in_force[f].names.equals(b.in_force[f].names)


def test_kept_panels_are_stacked_into_eight_arrays_and_read_back_as_kept(tmp_path):
    panels = kept()
    arrays = panels.to_arrays()
    assert sorted(arrays) == ["close_dates", "closes", "dates", "in_force", "in_force_fields", "names",
                              "panel_fields", "panels"]
    np.savez(tmp_path / "update_panels.npz", **arrays)
    with np.load(tmp_path / "update_panels.npz", allow_pickle=False) as npz:
        assert_same(TrailingPanels.from_arrays({k: npz[k] for k in npz.files}), panels)


def test_a_version_kept_before_the_stacking_reads_the_same():
    panels = kept(seed=2)
    arrays = panels.to_arrays()
    old = {k: arrays[k] for k in ("dates", "names", "close_dates", "closes")}
    old.update({f"panel/{f}": v for f, v in panels.panels.items()})
    for f, s in panels.in_force.items():
        old.update({f"in_force/{f}/value": s.value, f"in_force/{f}/available": s.available,
                    f"in_force/{f}/price_day": s.price_day})
    assert_same(TrailingPanels.from_arrays(old), panels)
