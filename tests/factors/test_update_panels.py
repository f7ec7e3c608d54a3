"""The fundamentals panels a Model B version keeps for its daily update (issue 13 §2).

An update computes only the new days' rows of the point-in-time panels: from the snapshots in
force on the model's last date and the rows available since (``fundamentals_panel_after``), and
takes the kept rows as they were — except for names whose adjusted closes changed since (a
vendor's re-based series). Each is held to the whole computation bit for bit: the same floats,
the same NaNs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.fundamentals import (CloseHistory, StoredFundamentals, fundamentals_panel,
                                          fundamentals_panel_after, snapshots_in_force)
from riskstrata.data.master import SecurityMaster
from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.services import factors as svc
from riskstrata.services.demo import load_synthetic_into_store


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """(store, fundamentals with holes, stocks' returns, adjusted closes) of a small synthetic market."""
    store = Store(tmp_path_factory.mktemp("update-panels") / "store")
    load_synthetic_into_store(store, synthetic_market(n_stocks=40, n_days=400, seed=11, styles=True))
    table = store.read_table("fundamentals")
    # Holes: a snapshot without EPS or a cap falls back to the name's previous one that has it.
    rng = np.random.default_rng(3)
    for column in ("eps", "market_cap", "dividend_yield", "shares_outstanding", "price"):
        table.loc[rng.random(len(table)) < 0.2, column] = np.nan
    master = SecurityMaster.from_store(store)
    stocks = set(master.records.loc[master.records["asset_type"] == "stock", "security_id"])
    returns, adj, _ = svc._price_panels(store, stocks, None, None)
    return store, StoredFundamentals(master, table), returns, adj


def _same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape, what
    assert np.array_equal(got, want, equal_nan=True), f"{what}: {np.nanmax(np.abs(got - want))}"


@pytest.mark.parametrize("field, age, rolled", [("market_cap", 3000, True), ("book_to_price", 400, True),
                                                ("eps", 400, False), ("eps", 60, False),
                                                ("shares_outstanding", 3000, False), ("dividend_yield", 45, True)])
def test_new_rows_from_the_snapshots_in_force_equal_the_whole_panel(market, field, age, rolled) -> None:
    """Split anywhere, in one step or two: the rows after the split are the whole panel's, with
    snapshots arriving, falling back past holes and ageing out (a 45- or 60-day limit on
    quarterly snapshots) on the way."""
    _, fund, returns, adj = market
    dates, names = returns.index, pd.Index(returns.columns)
    closes = CloseHistory.of(adj.reindex(columns=names)) if rolled else None
    want = fundamentals_panel(fund, field, dates, names, max_age_days=age, adj_close=closes)
    for split in (200, 271, len(dates) - 6):
        held = snapshots_in_force(fund, field, dates[split], names, max_age_days=age)
        got, after = fundamentals_panel_after(held, fund, field, dates[split + 1:], max_age_days=age, adj_close=closes)
        _same(got, want.iloc[split + 1:], f"{field} after row {split}")
        # Two steps: the snapshots in force the first step hands on carry the second.
        mid = split + (len(dates) - split) // 2
        first, held_mid = fundamentals_panel_after(held, fund, field, dates[split + 1:mid + 1], max_age_days=age,
                                                   adj_close=closes)
        second, _ = fundamentals_panel_after(held_mid, fund, field, dates[mid + 1:], max_age_days=age, adj_close=closes)
        _same(np.vstack([first, second]), want.iloc[split + 1:], f"{field} in two steps after row {split}")
        again = snapshots_in_force(fund, field, dates[-1], names, max_age_days=age)
        for attr in ("value", "available", "price_day"):
            _same(getattr(after, attr), getattr(again, attr), f"{field} in force on the last date: {attr}")


def test_snapshots_in_force_need_security_ids(market) -> None:
    _, fund, returns, _ = market
    with pytest.raises(Exception, match="security id"):
        snapshots_in_force(fund, "eps", returns.index[-1], ["NOT-AN-ID"])


def _kept(fund: StoredFundamentals, adj: pd.DataFrame, dates: pd.DatetimeIndex, names: list, first: int):
    pit = svc.point_in_time_panels(fund, adj, dates, names)
    return svc.trailing_panels(pit, adj, first, fund)


def test_the_panels_from_kept_rows_equal_the_whole_panels(market) -> None:
    """The update's panels: kept rows, new rows computed, a re-based name and a name the kept
    panels lack recomputed — equal to the whole computation, and so are the panels kept for
    the next update."""
    _, fund, returns, adj = market
    dates, names = returns.index, list(returns.columns)
    T = len(dates)
    window = dates[T - 300:]
    kept = _kept(fund, adj, dates[:T - 4], names[:-1], T - 300)    # the last name listed since
    assert kept is not None and kept.dates.equals(dates[T - 300:T - 4])
    rebased = adj.copy()
    rebased[names[3]] *= 1.37            # a vendor re-based one name's whole series
    for closes in (adj, rebased):
        got, in_force = svc.extend_point_in_time_panels(kept, fund, closes, window, names)
        want = svc.point_in_time_panels(fund, closes, window, names)
        _same(got.market_cap, want.market_cap, "market_cap")
        _same(got.price, want.price, "price")
        _same(got.shares, want.shares, "shares")
        for f in svc.PANEL_FIELDS:
            _same(got.fundamentals[f], want.fundamentals[f], f)
        for f, held in in_force.items():
            again = snapshots_in_force(fund, f, window[-1], names, **svc._asks()[f])
            _same(held.value, again.value, f"{f} in force")


def test_kept_panels_that_do_not_begin_the_window_are_refused(market) -> None:
    _, fund, returns, adj = market
    dates, names = returns.index, list(returns.columns)
    kept = _kept(fund, adj, dates[:-4], names, len(dates) - 300)
    with pytest.raises(Exception, match="first rows"):
        svc.extend_point_in_time_panels(kept, fund, adj, dates[-299:], names)


def test_a_name_no_longer_traded_keeps_its_rows(market, monkeypatch) -> None:
    """A name without a close on any kept row (delisted before them) has no rolled value there
    whatever its older closes: an update that does not read them (the name is not priced in
    the window) keeps its rows as they are — the same panels, nothing recomputed."""
    _, fund, returns, adj = market
    dates, names = returns.index, list(returns.columns)
    T, gone = len(dates), names[5]
    traded = adj.copy()
    traded.loc[traded.index >= dates[T - 320], gone] = np.nan     # delisted before the kept rows
    kept = _kept(fund, traded, dates[:T - 4], names, T - 300)
    unread = traded.copy()
    unread[gone] = np.nan                                           # the update reads none of its closes
    recomputed = []
    real = svc._fundamentals_panels
    monkeypatch.setattr(svc, "_fundamentals_panels", lambda s, a, d, n: recomputed.append(list(n)) or real(s, a, d, n))
    got, _ = svc.extend_point_in_time_panels(kept, fund, unread, dates[T - 300:], names)
    want = real(fund, unread, dates[T - 300:], names)
    for f in (*svc.PANEL_FIELDS, "shares_outstanding"):
        _same(got.fundamentals[f] if f != "shares_outstanding" else got.shares, want[f], f)
    assert recomputed == [], recomputed
