"""A trailing panel with the history counts before it gives a full build's masks on its rows.

The masks that look across dates — the estimation universe's history rule, the primary share
class (the class with the longest eligible history), ``in_model`` and the market return's
weights — read each name's past from its first day. A daily update prepares only the trailing
rows its descriptors need, with :class:`HistoryCounts` before them; every mask must then equal
the full frame's on the same rows, including share classes whose primary changes hands.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.synthetic import synthetic_market
from riskstrata.errors import DataValidationError
from riskstrata.factors.model import _rows, history_before, history_counts, prepare_model
from riskstrata.factors.spec import load_spec
from tests.factors.test_model import synthetic_inputs


@pytest.fixture(scope="module")
def full_inputs():
    market = synthetic_market(n_stocks=40, n_days=420, seed=11, styles=True)
    inputs = synthetic_inputs(market)
    names = inputs.returns.columns
    # Two issuers with two classes each; the second pair's younger class lists late and has a
    # longer run of eligible days only after the older one goes missing for a while.
    issuer = pd.Series(names, index=names, dtype=object)
    issuer[names[[0, 1]]] = "ISSUER-A"
    issuer[names[[2, 3]]] = "ISSUER-B"
    returns = inputs.returns.copy()
    returns.iloc[:150, 3] = np.nan
    cap = inputs.market_cap.copy()
    cap.iloc[200:330, 2] = np.nan
    return dataclasses.replace(inputs, returns=returns, market_cap=cap, issuer=issuer)


@pytest.mark.parametrize("w", [1, 140, 260])
def test_a_trailing_frame_with_its_counts_has_the_full_frames_masks(full_inputs, w) -> None:
    spec = load_spec("US21")
    full = prepare_model(full_inputs, spec)
    T = len(full.dates)
    before = history_counts(full, through=w - 1)
    trail = prepare_model(_rows(full_inputs, w, T), spec, before)
    for name in ("universe", "in_model", "codes"):
        assert np.array_equal(getattr(full, name)[w:], getattr(trail, name)), name
    # The market return of the trailing frame's first row needs the caps of the row before it.
    np.testing.assert_array_equal(full.market.to_numpy()[w + 1:], trail.market.to_numpy()[1:])
    # The share-class rule really is exercised: a secondary class out of the universe on some rows.
    assert (full.universe[:, :4].sum(axis=1) < np.isfinite(full.inp.market_cap.to_numpy()[:, :4]).sum(axis=1)).any()
    # Counts through the last row: the same from the trailing frame as from the full one.
    whole, tail = history_counts(full), history_counts(trail, before)
    for field in ("returns", "eligible", "positive_cap"):
        assert np.array_equal(getattr(whole, field), getattr(tail.on(whole.names), field)), field


def test_the_counts_before_a_panel_are_recovered_from_the_counts_through_a_later_row(full_inputs) -> None:
    spec = load_spec("US21")
    full = prepare_model(full_inputs, spec)
    w, c = 120, 400
    through = history_counts(full, through=c)
    got = history_before(_rows(full_inputs, w, len(full.dates)), spec, through, c - w)
    want = history_counts(full, through=w - 1)
    for field in ("returns", "eligible", "positive_cap"):
        assert np.array_equal(getattr(got, field), getattr(want.on(got.names), field)), field
    # Counts from other data (fewer days than the panel holds) are refused.
    short = dataclasses.replace(through, returns=through.returns - 300)
    with pytest.raises(DataValidationError, match="more history than the model counted"):
        history_before(_rows(full_inputs, w, len(full.dates)), spec, short, c - w)
