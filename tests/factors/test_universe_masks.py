"""The estimation universe's masks computed the short way equal their definitions: the size rank
only on dates with more eligible names than ``estimation_size``, the primary share class only
for issuers with several classes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskstrata.factors import descriptors as D
from riskstrata.factors.model import FactorInputs, HistoryCounts, _eligible, estimation_universe
from riskstrata.factors.spec import load_spec


def secondary_by_definition(cap: pd.DataFrame, eligible: np.ndarray, issuer: pd.Series,
                            before: np.ndarray | None) -> np.ndarray:
    """Every issuer group, primary = the eligible class with the longest eligible history (ties: first)."""
    T, N = cap.shape
    out = np.zeros((T, N), dtype=bool)
    ids = issuer.reindex(cap.columns)
    ids = ids.where(ids.notna(), pd.Series(cap.columns.astype(str), index=cap.columns)).astype(str)
    run = np.cumsum(eligible, axis=0) + (0 if before is None else before[None, :])
    for cols in ids.groupby(ids.to_numpy()).indices.values():
        if len(cols) < 2:
            continue
        primary = np.argmax(np.where(eligible[:, cols], run[:, cols], -1), axis=1)
        sec = np.ones((T, len(cols)), dtype=bool)
        sec[np.arange(T), primary] = False
        out[:, cols] = sec & eligible[:, cols]
    return out


def panel(T: int = 300, N: int = 40, seed: int = 4) -> tuple[FactorInputs, HistoryCounts]:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=T)
    names = [f"S{i:02d}" for i in range(N)]
    returns = pd.DataFrame(rng.normal(0, 0.02, (T, N)), index=dates, columns=names)
    returns.iloc[: rng.integers(0, 200), 5] = np.nan                  # listed late
    cap = pd.DataFrame(np.exp(rng.normal(22, 1.5, (T, N))), index=dates, columns=names)
    cap.iloc[100:140, 7] = np.nan                                      # no cap for a while
    cap.iloc[:, 9] = cap.iloc[:, 8]                                    # two classes, the issuer's cap on each
    price = pd.DataFrame(rng.uniform(0.5, 80, (T, N)), index=dates, columns=names)
    issuer = pd.Series({n: n for n in names} | {"S09": "S08", "S21": "S20", "S22": "S20", "S30": None})
    before = HistoryCounts(pd.Index(names), rng.integers(0, 300, N), rng.integers(0, 300, N), rng.integers(0, 300, N))
    return FactorInputs(returns, cap, pd.Series("Energy", index=names), price=price, issuer=issuer), before


def test_secondary_share_classes_equal_the_definition():
    inp, before = panel()
    eligible = np.isfinite(inp.market_cap.to_numpy())
    for prior in (None, before.eligible):
        got = D.secondary_share_classes(inp.market_cap, eligible, inp.issuer, prior)
        assert np.array_equal(got, secondary_by_definition(inp.market_cap, eligible, inp.issuer, prior))
        # Every class eligible on every date: one primary per issuer, the others secondary.
        assert (got[:, [8, 9]].sum(axis=1) == 1).all() and (got[:, [20, 21, 22]].sum(axis=1) == 2).all()
        assert not got[:, [0, 30]].any()


def test_the_size_rank_keeps_the_largest_names_only_on_crowded_dates():
    inp, before = panel()
    base = load_spec("US21")
    for size in (3000, 25, 12):
        spec = type(base)(**{**base.__dict__, "universe": {**base.universe, "estimation_size": size}})
        ok = _eligible(inp, spec, before)
        ok &= ~secondary_by_definition(inp.market_cap, ok, inp.issuer, before.eligible)
        cap = inp.market_cap.to_numpy()
        ranked = pd.DataFrame(np.where(ok, cap, np.nan)).rank(axis=1, ascending=False).to_numpy()
        expected = ok & (ranked <= size)
        got = estimation_universe(inp, spec, before)
        assert np.array_equal(got, expected), f"estimation_size {size}"
        assert got.sum(axis=1).max() <= size
        if size == 25:  # some dates above the size, some at or below it: both kinds are exercised
            assert (ok.sum(axis=1) > size).any() and (ok.sum(axis=1) <= size).any()
