"""The portfolio routes answer from what the worker holds.

A worker holds one published cascade version with its :class:`PortfolioContext` (the last
date's model rows, the matching universe, the ETF returns of the covariance window, the
registry) and Model B's last-date risk inputs. What this module checks, on a real store on disk
(a small synthetic market with the cascade and US21 built):

- the held path and the store path (the CLI's) give the same numbers, to 1e-12, for analyze,
  hedge, scale, the signed-book exposure report and the risk-index route's block;
- a 50-name ``POST /api/portfolio/risk-index`` for the latest date performs no store read
  (the real store's read methods are wrapped with a counter, nothing else changes);
- a build published while the app serves is what the next portfolio request answers with;
- a request for an older date still takes the store path, with the store path's numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from riskstrata.api.app import create_app
from riskstrata.api.auth import create_key
from riskstrata.api.settings import ApiSettings
from riskstrata.api.state import AppState
from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.services import cascade, factors
from riskstrata.services import portfolio as svc
from riskstrata.services.demo import load_synthetic_into_store

TOL = {"rtol": 1e-12, "atol": 1e-15}
READS = ("read_table", "read_model", "query", "model_meta", "current_version", "versions", "model_files",
         "has_table")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """55 synthetic stocks with styles over 400 days: the cascade and Model B (US21) built."""
    store = Store(tmp_path_factory.mktemp("held") / "store")
    load_synthetic_into_store(store, synthetic_market(n_stocks=55, n_days=400, seed=17, styles=True))
    cascade.build_cascade(store)
    factors.build_factor_model(store, svc.FACTOR_SPEC)
    return store


@pytest.fixture(scope="module")
def client(store: Store):
    key = create_key(store, "held-portfolio-tests")
    with TestClient(create_app(store, ApiSettings(rate_limit=0)), headers={"Authorization": f"Bearer {key}"}) as c:
        yield c


def _names(store: Store, n: int) -> list[str]:
    snap = cascade.stored_snapshot(store)
    stocks = [str(t) for t in snap.index[snap["l3_sub_hr"].notna()] if not str(t).startswith("ETF")]
    return stocks[:n]


def _weights(names: list[str]) -> dict[str, float]:
    raw = {t: 1.0 + (i % 7) for i, t in enumerate(names)}
    return {t: w / sum(raw.values()) for t, w in raw.items()}


def _book(names: list[str]) -> pd.DataFrame:
    """A long/short book in dollars plus a line nobody knows (it is excluded, with its reason)."""
    values = [(1 if i % 3 else -1) * 10_000.0 * (1 + i % 5) for i in range(len(names))]
    return pd.DataFrame({"ticker": [*names, "NOSUCH"], "market_value": [*values, 5_000.0]})


def _same_risk(a, b) -> None:
    assert a.risk_index == pytest.approx(b.risk_index, rel=1e-12)
    assert a.variance == pytest.approx(b.variance, rel=1e-12)
    pd.testing.assert_series_equal(a.exposures, b.exposures, **TOL)
    pd.testing.assert_series_equal(a.by_role, b.by_role, **TOL)
    pd.testing.assert_frame_equal(a.by_position, b.by_position, **TOL)
    pd.testing.assert_frame_equal(a.by_etf, b.by_etf, **TOL)


def _same_dicts(a, b, path: str = "") -> None:
    """Nested JSON-like values equal, floats to 1e-12."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _same_dicts(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same_dicts(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-15, nan_ok=True), path
    else:
        assert a == b, path


def test_the_held_path_gives_the_store_paths_numbers(store):
    held = AppState(store).portfolio()
    assert held is not None and held.factor_model() is not None
    names = _names(store, 30)
    weights = _weights(names)

    a, b = svc.analyze_portfolio(store, weights, value=2e6), svc.analyze_portfolio(store, weights, value=2e6, held=held)
    _same_risk(a.risk, b.risk)
    pd.testing.assert_frame_equal(a.hedge_ratios, b.hedge_ratios, **TOL)
    pd.testing.assert_frame_equal(a.inputs.etf_cov, b.inputs.etf_cov, **TOL)
    pd.testing.assert_frame_equal(a.inputs.positions, b.inputs.positions, **TOL)
    _same_dicts(a.book.as_dict(), b.book.as_dict())
    assert a.notes == b.notes and a.match.summary() == b.match.summary()
    assert a.factor_risk is not None  # Model B's view came from the held snapshot on one side
    _same_dicts(a.factor_risk, b.factor_risk)

    for level in svc.HEDGE_LEVELS:
        h, g = (svc.hedge_portfolio(store, weights, level, 2e6, held=x) for x in (None, held))
        pd.testing.assert_frame_equal(h.trades, g.trades, **TOL)
        _same_risk(h.after, g.after)
        assert h.market_beta_after == pytest.approx(g.market_beta_after, rel=1e-12, abs=1e-15)
        assert (h.description, h.hedge_basis, h.hedged_value) == (g.description, g.hedge_basis, g.hedged_value)

    etf = str(a.risk.exposures.index[a.risk.exposures.index != held.meta["params"]["market_etf"]][0])
    for exposure in ("market", etf):
        s, t = (svc.scale_portfolio(store, weights, exposure, 0.5, 2e6, held=x) for x in (None, held))
        pd.testing.assert_frame_equal(s.trade, t.trade, **TOL)
        assert (s.before_exposure, s.after_exposure) == pytest.approx((t.before_exposure, t.after_exposure), rel=1e-12)
        _same_risk(s.after, t.after)

    book = _book(names)
    _same_dicts(svc.book_exposure_report(store, book), svc.book_exposure_report(store, book, held=held))

    alone = svc.portfolio_context(store)  # outside a server: Model B read from the store on first use
    c = svc.analyze_portfolio(store, weights, value=2e6, held=alone)
    _same_risk(a.risk, c.risk)
    _same_dicts(a.factor_risk, c.factor_risk)
    assert a.notes == c.notes


def test_an_older_date_takes_the_store_path(store):
    held = AppState(store).portfolio()
    names = _names(store, 12)
    dates = store.query(f"SELECT DISTINCT date FROM model_{cascade.MODEL} ORDER BY date")["date"]
    older = pd.Timestamp(dates.iloc[-20])
    assert not held.serves(older) and held.serves(None) and held.serves(held.as_of)
    a = svc.analyze_portfolio(store, _weights(names), older)
    b = svc.analyze_portfolio(store, _weights(names), older, held=held)
    assert b.match.as_of == older
    _same_risk(a.risk, b.risk)


def test_a_50_name_risk_index_reads_nothing_from_the_store(client, store, monkeypatch):
    names = _names(store, 50)
    assert len(names) == 50
    body = {"positions": [{"ticker": t, "weight": w} for t, w in _weights(names).items()]}
    warm = client.post("/api/portfolio/risk-index", json=body)  # loads the version (and the key) once
    assert warm.status_code == 200, warm.text

    calls: list[str] = []
    for name in READS:  # the real methods, counted
        real = getattr(Store, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(Store, name, counted)
    resp = client.post("/api/portfolio/risk-index", json=body)
    assert resp.status_code == 200, resp.text
    assert calls == []
    ours = resp.json()["risk_index"]
    assert ours["holdings_summary"] == "50/50 holdings analyzed"
    monkeypatch.undo()

    want = svc.analyze_portfolio(store, {t: w for t, w in _weights(names).items()})
    assert ours["value"] == pytest.approx(want.risk.risk_index, rel=1e-12)
    _same_dicts(ours["decomposition"], {k: float(v) for k, v in want.risk.by_role.items()})


def test_the_portfolio_routes_match_the_cli_path(client, store):
    names = _names(store, 20)
    weights = _weights(names)
    holdings = [{"ticker": t, "weight": w} for t, w in weights.items()]
    r = client.post("/api/portfolio/analyze", json={"holdings": holdings, "value": 1e6})
    assert r.status_code == 200, r.text
    a = svc.analyze_portfolio(store, weights, value=1e6)
    assert r.json()["risk_index"] == pytest.approx(a.risk.risk_index, rel=1e-12)
    r = client.post("/api/portfolio/hedge", json={"holdings": holdings, "level": "L3", "value": 1e6})
    assert r.status_code == 200, r.text
    h = svc.hedge_portfolio(store, weights, "L3", 1e6)
    assert r.json()["risk_index_after"] == pytest.approx(h.after.risk_index, rel=1e-12)
    r = client.post("/api/portfolio/scale", json={"holdings": holdings, "exposure": "market", "reduce": 0.5,
                                                  "value": 1e6})
    assert r.status_code == 200, r.text
    s = svc.scale_portfolio(store, weights, "market", 0.5, 1e6)
    assert r.json()["exposure_after"] == pytest.approx(s.after_exposure, rel=1e-12, abs=1e-15)
    book = _book(names)
    r = client.post("/api/portfolio/exposure",
                    json={"positions": [{"ticker": t, "value": v}
                                        for t, v in zip(book["ticker"], book["market_value"])]})
    assert r.status_code == 200, r.text
    want = svc.book_exposure_report(store, book)
    got = {k: v for k, v in r.json().items() if not k.startswith("_")}
    _same_dicts(got, want)


def test_a_build_published_while_serving_is_what_the_next_request_answers(client, store):
    names = _names(store, 15)
    body = {"positions": [{"ticker": t, "weight": w} for t, w in _weights(names).items()]}
    before = client.post("/api/portfolio/risk-index", json=body)
    cascade.build_cascade(store, window=126)  # other parameters, so the numbers move
    after = client.post("/api/portfolio/risk-index", json=body)
    assert after.headers["x-risk-model-version"] == store.current_version(cascade.MODEL) \
        != before.headers["x-risk-model-version"]
    want = svc.analyze_portfolio(store, _weights(names))
    assert after.json()["risk_index"]["value"] == pytest.approx(want.risk.risk_index, rel=1e-12)
    assert after.json()["risk_index"]["value"] != pytest.approx(before.json()["risk_index"]["value"], rel=1e-9)


def _exposures_cell_by_cell(positions: pd.DataFrame, level: str, market_etf: str) -> pd.DataFrame:
    """The per-cell reference for etf_exposures (its former implementation): one dict per position."""
    from riskstrata.portfolio.risk import LEVEL_HRS

    if level == "lstar":
        levels = positions["lstar_level"].fillna(0).astype(int).clip(lower=1).map(lambda k: f"L{k}")
    else:
        levels = pd.Series(level, index=positions.index)
    etf_of = {"market": pd.Series(market_etf, index=positions.index),
              "sector": positions["sector_etf"], "subsector": positions["subsector_etf"]}
    rows = []
    for key, lvl in levels.items():
        row: dict[str, float] = {}
        for role, hr_field in LEVEL_HRS[lvl].items():
            etf, hr = etf_of[role].get(key), positions.at[key, hr_field]
            if isinstance(etf, str) and np.isfinite(hr) and hr != 0:
                row[etf] = row.get(etf, 0.0) + float(hr)
        rows.append(row)
    frame = pd.DataFrame(rows, index=positions.index).fillna(0.0)
    if market_etf not in frame.columns:
        frame[market_etf] = 0.0
    return frame


def test_vectorised_etf_exposures_equal_the_cell_by_cell_rule():
    """Missing ETFs and HRs, zero HRs, a sector ETF that is also the subsector's, Arrow strings,
    every L* level and an empty book: the same frame, bit for bit, columns in the same order."""
    from riskstrata.portfolio.risk import etf_exposures

    rng = np.random.default_rng(3)
    hr_fields = ["l1_mkt_hr", "l2_mkt_hr", "l2_sec_hr", "l3_mkt_hr", "l3_sec_hr", "l3_sub_hr"]
    for trial in range(60):
        n = int(rng.integers(0, 25))
        pos = pd.DataFrame({f: rng.normal(size=n) for f in hr_fields}, index=[f"T{i}" for i in range(n)])
        for f in hr_fields:
            pos.loc[rng.random(n) < 0.2, f] = np.nan
            pos.loc[rng.random(n) < 0.1, f] = 0.0
        etfs = np.array(["XLK", "XLF", "SOXX", "IGV", None], dtype=object)
        sector, sub = rng.choice(etfs, n), rng.choice(etfs, n)
        sub = np.where(rng.random(n) < 0.2, sector, sub)  # subsector ETF = sector ETF on some names
        dtype = "string[pyarrow]" if trial % 2 else object
        pos["sector_etf"], pos["subsector_etf"] = pd.array(sector, dtype=dtype), pd.array(sub, dtype=dtype)
        pos["lstar_level"] = rng.choice([0.0, 1.0, 2.0, 3.0, np.nan], n)
        for level in ("L1", "L2", "L3", "lstar"):
            pd.testing.assert_frame_equal(etf_exposures(pos, level, "SPY"), _exposures_cell_by_cell(pos, level, "SPY"),
                                          check_exact=True)


def test_the_held_covariance_and_netting_helpers_equal_pandas_bit_for_bit():
    """_sample_cov is DataFrame.cov (complete rows, rows with gaps, fewer rows than min_periods, one
    column, none); _frame_of_columns is DataFrame(dict).fillna(0) (same or different labels)."""
    rng = np.random.default_rng(8)
    for rows, cols, gaps in ((300, 7, False), (300, 7, True), (30, 4, False), (120, 1, False), (50, 0, False)):
        mat = rng.normal(scale=0.01, size=(rows, cols))
        if gaps:
            mat[rng.random(mat.shape) < 0.05] = np.nan
        names = [f"E{j}" for j in range(cols)]
        # A frame whose values are C-ordered, as the store path's pivot hands them to DataFrame.cov
        # (np.cov's rounding depends on the layout).
        frame = pd.DataFrame(np.ascontiguousarray(mat), columns=names, copy=False)
        assert frame.to_numpy().flags.c_contiguous
        expected = frame.cov(min_periods=63)
        pd.testing.assert_frame_equal(svc._sample_cov(np.ascontiguousarray(mat), names, 63), expected,
                                      check_exact=True)
    same = {k: pd.Series(rng.normal(size=3), index=["SPY", "XLK", "IGV"]) for k in ("L1", "L2")}
    mixed = {"L1": pd.Series([0.5], index=["SPY"]), "L3": pd.Series([1.0, -2.0, 3.0], index=["XLK", "SPY", "IGV"])}
    for columns in (same, mixed):
        pd.testing.assert_frame_equal(svc._frame_of_columns(columns), pd.DataFrame(columns).fillna(0.0),
                                      check_exact=True)
