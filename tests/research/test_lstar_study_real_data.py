"""The L* study through the store on the real S&P 500 (the session's real_store: cascade 2016 …).

Skipped where ../shared/data is absent (its terms allow testing, not redistribution).
"""

from __future__ import annotations

import numpy as np
import pytest

from riskstrata.research import run_lstar_study

pytestmark = pytest.mark.realdata


def test_default_sample_on_the_real_store(real_store):
    study = run_lstar_study(real_store, n_boot=100)
    universe = study.universe
    # The default: 275 names stratified over the 11 GICS sectors (read from the sector ETF each
    # stock was hedged with), no ETF among them.
    assert len(universe) == 275 and universe["sector"].nunique() == 11
    assert universe["sector"].value_counts().min() >= 20
    assert not universe["ticker"].isin(["SPY", "XLK", "SOXX"]).any()
    r = study.rules
    assert r.loc["L3", "eff_21"] > r.loc["L2", "eff_21"] > r.loc["L1", "eff_21"] > 0.2
    assert r.loc["θ=∞", "eff_21"] == r.loc["L1", "eff_21"]
    assert (r["gross_leverage"].between(0.5, 3.0)).all()
    assert study.best_rule in study.curve.index
    assert not np.isinf(study.sectors.select_dtypes("number").to_numpy()).any()
