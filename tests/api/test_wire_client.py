"""The official riskmodels-py client against a real riskstrata server (api-contract §5, §9).

Every test drives the server through ``RiskModelsClient.from_env()`` and checks that the numbers
the client hands back are the engine's own (``services.cascade.metrics`` / ``history`` /
``lstar_history`` / ``services.portfolio``), and that the client raised no ValidationWarning.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

from riskstrata.cascade.result import WIRE_FIELDS
from riskstrata.data.master import SecurityMaster
from riskstrata.services import cascade
from riskstrata.services.portfolio import analyze_portfolio

riskmodels = pytest.importorskip("riskmodels", reason="riskmodels-py (test extra) is not installed")
from riskmodels.exceptions import APIError, ValidationWarning
from riskmodels.mapping import METRICS_V3_TO_SEMANTIC

UNKNOWN = "ZZZZ"
SHARE_CLASS = "GOOGL"  # listed by the fixture; the client sends GOOG for it
RICH = "TWIN"          # listed by the fixture with inferred sector and subsector ETFs


# --------------------------------------------------------------------------- helpers


@contextmanager
def no_validation_warning() -> Iterator[None]:
    """The block must not make the client warn that our numbers look wrong."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    bad = [str(w.message) for w in caught if issubclass(w.category, ValidationWarning)]
    assert not bad, f"the client raised ValidationWarning: {bad}"


def same(a: object, b: object, rel: float = 0.0) -> bool:
    """Equal numbers (exactly, or within ``rel``), or both missing (None/NaN)."""
    missing_a = a is None or (isinstance(a, float) and math.isnan(a))
    missing_b = b is None or (isinstance(b, float) and math.isnan(b))
    if missing_a or missing_b:
        return missing_a and missing_b
    if isinstance(a, (int, float, np.floating)) and isinstance(b, (int, float, np.floating)):
        return float(a) == float(b) if rel == 0 else math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-12)
    return a == b


def assert_series_equal(got: pd.Series | list, want: pd.Series | list, what: str, rel: float = 0.0) -> None:
    got, want = list(got), list(want)
    assert len(got) == len(want), f"{what}: {len(got)} values, the engine has {len(want)}"
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if not same(g, w, rel)]
    assert not bad, (f"{what}: differs from the engine at {len(bad)} dates, "
                     f"first at {bad[0]}: {got[bad[0]]} ≠ {want[bad[0]]}")


def window(store, years: int = 1) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The routes' history window: [end − years, end], end the model's last date."""
    end = pd.Timestamp(store.model_meta("cascade")["end"])
    return end - pd.DateOffset(years=years), end


def stock_tickers(store) -> set[str]:
    records = SecurityMaster.from_store(store).records
    return set(records.loc[records["asset_type"] == "stock", "ticker"])


@pytest.fixture(scope="module")
def names(wire_store) -> dict[str, str]:
    """Stocks to query: one with every L3 leg in use (its own sector and subsector ETF) and two others."""
    snap = cascade.stored_snapshot(wire_store)
    stocks = stock_tickers(wire_store)
    others = [t for t in snap.index if t in stocks and t not in (SHARE_CLASS, RICH)
              and np.isfinite(snap.at[t, "l3_mkt_hr"])]
    assert isinstance(snap.at[RICH, "sector_etf"], str) and isinstance(snap.at[RICH, "subsector_etf"], str), \
        "the fixture's TWIN should have inferred sector and subsector ETFs"
    return {"rich": RICH, "a": others[0], "b": others[1]}


# --------------------------------------------------------------------------- single ticker


def test_get_metrics_returns_the_engine_row(client, wire_store, names) -> None:
    for t in (names["rich"], names["a"]):
        with no_validation_warning():
            row = client.get_metrics(t)
        m = cascade.metrics(wire_store, t)
        assert row["ticker"] == t and row["teo"] == m["date"]
        for f in WIRE_FIELDS:
            assert same(row[METRICS_V3_TO_SEMANTIC.get(f, f)], m[f]), f"{t} {f}: {row.get(f)} ≠ engine {m[f]}"
        assert row["volatility"] == m["vol_23d"]
        assert row["hedge_levels"]["statistical_lstar"] == f"L{m['lstar_level']}"
        assert row["hedge_levels"]["L3"]["market_hr"] == m["l3_mkt_hr"]


def test_get_metrics_lineage_has_an_integer_universe_size(client, wire_store, names, http) -> None:
    with no_validation_warning():
        df = client.get_metrics(names["a"], as_dataframe=True)
    lineage = json.loads(df.attrs["riskmodels_lineage"])
    snap = cascade.stored_snapshot(wire_store)
    assert lineage["universe_size"] == sum(t in stock_tickers(wire_store) for t in snap.index)
    assert lineage["data_as_of"] == wire_store.model_meta("cascade")["end"]
    assert lineage["model_version"] == wire_store.current_version("cascade")
    r = http.get(f"/metrics/{names['a']}")
    assert r.headers["X-Universe-Size"].isdigit()
    assert int(r.headers["X-Universe-Size"]) == r.json()["_metadata"]["universe_size"] == lineage["universe_size"]
    assert r.headers["X-Data-As-Of"] == lineage["data_as_of"]


def test_unknown_ticker_is_404_symbol_not_found(client, http) -> None:
    with pytest.raises(APIError) as err:
        client.get_metrics(UNKNOWN)
    assert err.value.status_code == 404 and err.value.body["error"] == "Symbol not found"
    for path, kw in (("/decompose", {"json": {"ticker": UNKNOWN}}),
                     ("/ticker-returns", {"params": {"ticker": UNKNOWN}}),
                     ("/lstar", {"params": {"ticker": UNKNOWN}}),
                     ("/l3-decomposition", {"params": {"ticker": UNKNOWN}}),
                     ("/returns-decomposition", {"params": {"ticker": UNKNOWN}})):
        r = http.request("POST" if "json" in kw else "GET", path, **kw)
        assert r.status_code == 404 and r.json()["error"] == "Symbol not found", path


def test_goog_and_googl_both_resolve(client, wire_store, http) -> None:
    """The client sends GOOG for GOOGL (and batch sends what it is given): both reach the stock."""
    m = cascade.metrics(wire_store, SHARE_CLASS)
    with no_validation_warning():
        row = client.get_metrics("GOOG")
    assert row["l3_market_hr"] == m["l3_mkt_hr"] and row["l3_residual_er"] == m["l3_res_er"]
    body = http.post("/batch/analyze", json={"tickers": ["GOOG", "GOOGL"], "metrics": ["full_metrics"]}).json()
    for t in ("GOOG", "GOOGL"):
        assert body["results"][t]["status"] == "success"
        assert body["results"][t]["ticker"] == t and body["results"][t]["full_metrics"]["ticker"] == t
        assert body["results"][t]["full_metrics"]["l3_mkt_hr"] == m["l3_mkt_hr"]
    with no_validation_warning():
        pa = client.analyze({"GOOG": 1.0})
    assert pa.weights == {"GOOG": 1.0} and not pa.errors


def test_decompose_dataframe_and_hedge_sign(client, wire_store, names, http) -> None:
    t = names["rich"]
    m = cascade.metrics(wire_store, t)
    with no_validation_warning():
        df = client.decompose(t, as_dataframe=True)
    assert list(df["layer"]) == ["market", "sector", "subsector", "residual"]
    by_layer = df.set_index("layer")
    for layer, er, hr in (("market", "l3_mkt_er", "l3_mkt_hr"), ("sector", "l3_sec_er", "l3_sec_hr"),
                          ("subsector", "l3_sub_er", "l3_sub_hr"), ("residual", "l3_res_er", None)):
        assert same(by_layer.at[layer, "er"], m[er]), layer
        assert same(by_layer.at[layer, "hr"], m[hr] if hr else None), layer
    assert by_layer.at["market", "hedge_etf"] == "SPY"
    assert by_layer.at["sector", "hedge_etf"] == m["sector_etf"]
    assert by_layer.at["subsector", "hedge_etf"] == (m["subsector_etf"] or m["sector_etf"])
    assert df["data_as_of"].iloc[0] == m["date"]
    # hedge[etf] = Σ hr over the layers trading it: a long position shorts SPY when its beta is positive.
    body = http.post("/decompose", json={"ticker": t}).json()
    expected: dict[str, float] = {}
    for layer in ("market", "sector", "subsector"):
        e = body["exposure"][layer]
        if e["hedge_etf"] and e["hr"] is not None:
            expected[e["hedge_etf"]] = expected.get(e["hedge_etf"], 0.0) + e["hr"]
    assert body["hedge"] == pytest.approx(expected, rel=0, abs=0)
    assert body["hedge"]["SPY"] == m["l3_mkt_hr"]
    assert m["l1_mkt_hr"] == -m["l1_mkt_beta"]


def test_decompose_accepts_as_of(http, wire_store, names) -> None:
    day = str((pd.Timestamp(wire_store.model_meta("cascade")["end"]) - pd.Timedelta(days=30)).date())
    body = http.post("/decompose", json={"ticker": names["a"], "as_of": day}).json()
    m = cascade.metrics(wire_store, names["a"], day)
    assert body["data_as_of"] == m["date"] <= day
    assert body["exposure"]["market"]["hr"] == m["l3_mkt_hr"]


# --------------------------------------------------------------------------- batch


def test_analyze_with_an_unknown_ticker(client, wire_store, names) -> None:
    a, b = names["a"], names["rich"]
    with no_validation_warning():
        pa = client.analyze({a: 0.5, b: 0.3, UNKNOWN: 0.2})
    assert pa.errors == {UNKNOWN: f"Symbol not found for ticker {UNKNOWN}"}
    assert pa.weights == pytest.approx({a: 0.5 / 0.8, b: 0.3 / 0.8})
    rows = {t: cascade.metrics(wire_store, t) for t in (a, b)}
    for t, m in rows.items():
        for f in ("l1_mkt_hr", "l3_mkt_hr", "l3_sec_hr", "l3_sub_hr", "l3_mkt_er", "l3_res_er", "vol_23d"):
            assert same(pa.per_ticker.at[t, METRICS_V3_TO_SEMANTIC.get(f, f)], m[f]), (t, f)
    expected = sum(pa.weights[t] * rows[t]["l3_mkt_hr"] for t in rows)
    assert pa.portfolio_hedge_ratios["l3_market_hr"] == pytest.approx(expected, rel=1e-12)
    assert pa.portfolio_hedge_levels is not None


def test_batch_analyze_json_blocks(client, wire_store, names) -> None:
    t = names["rich"]
    body = client.batch_analyze([t, UNKNOWN], ["full_metrics", "hedge_ratios", "returns", "l3_decomposition"])
    assert body["summary"] == {"total": 2, "success": 1, "errors": 1}
    assert body["results"][UNKNOWN] == {"ticker": UNKNOWN, "status": "error",
                                        "error": f"Symbol not found for ticker {UNKNOWN}"}
    entry = body["results"][t]
    m = cascade.metrics(wire_store, t)
    assert entry["hedge_ratios"] == {"l1_market": m["l1_mkt_hr"], "l2_market": m["l2_mkt_hr"],
                                     "l2_sector": m["l2_sec_hr"], "l3_market": m["l3_mkt_hr"],
                                     "l3_sector": m["l3_sec_hr"], "l3_subsector": m["l3_sub_hr"]}
    start, end = window(wire_store)
    h = cascade.history(wire_store, t, start, end, ["returns_gross", "l3_mkt_hr", "l3_res_er"])
    returns = entry["returns"]
    assert returns["dates"] == [str(d.date()) for d in h.index]
    assert_series_equal(returns["values"], h["returns_gross"], "returns.values")
    assert_series_equal(returns["l1"], h["l3_mkt_hr"].fillna(0.0), "returns.l1 (the L3 market HR series)")
    assert_series_equal(entry["l3_decomposition"]["l3_residual_er"], h["l3_res_er"], "l3_decomposition")
    assert isinstance(body["_metadata"]["universe_size"], int)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_batch_analyze_tabular(client, wire_store, names, fmt) -> None:
    t = names["a"]
    m = cascade.metrics(wire_store, t)
    df, lineage = client.batch_analyze([t, UNKNOWN], ["full_metrics"], format=fmt)
    by_ticker = df.set_index("ticker")
    assert by_ticker.at[UNKNOWN, "status"] == "error"
    assert by_ticker.at[t, "status"] == "success"
    for f in ("l3_mkt_hr", "l3_sub_er", "l1_mkt_beta", "vol_23d", "lstar_rr"):
        assert same(by_ticker.at[t, f], m[f], rel=1e-15), f
    assert lineage.universe_size and lineage.data_as_of == m["date"]
    hedges, _ = client.batch_analyze([t, UNKNOWN], ["hedge_ratios"], format=fmt)
    assert same(hedges.set_index("ticker").at[t, "l3_market"], m["l3_mkt_hr"], rel=1e-15)
    long, _ = client.batch_analyze([t, UNKNOWN], ["returns"], format=fmt)
    mine = long[long["ticker"] == t]
    start, end = window(wire_store)
    h = cascade.history(wire_store, t, start, end, ["returns_gross", "l3_mkt_hr"])
    assert_series_equal(mine["returns_gross"], h["returns_gross"], f"{fmt} returns_gross", rel=1e-15)
    assert_series_equal(mine["l3_market_hr"], h["l3_mkt_hr"], f"{fmt} l3_market_hr", rel=1e-15)
    assert (long.loc[long["ticker"] == UNKNOWN, "status"] == "error").all()


# --------------------------------------------------------------------------- histories


def test_get_ticker_returns(client, wire_store, names) -> None:
    t = names["rich"]
    with no_validation_warning():
        df = client.get_ticker_returns(t, years=1)
    start, end = window(wire_store)
    h = cascade.history(wire_store, t, start, end)
    assert list(df["date"]) == [str(d.date()) for d in h.index]
    for wire_name, col in (("returns_gross", "returns_gross"), ("l1_cfr", "l1_combined_factor_return"),
                           ("l3_cfr", "l3_combined_factor_return"), ("l3_mkt_hr", "l3_market_hr"),
                           ("l3_sub_hr", "l3_subsector_hr"), ("l3_res_er", "l3_residual_er")):
        # the client casts every float column to float32 (api-contract §10.10)
        assert_series_equal(df[col].astype(float), h[wire_name].astype(np.float32).astype(float), col)
    assert df["price_close"].notna().all()
    assert df.attrs["asset_type"] == "stock"


def test_get_lstar_without_and_with_threshold(client, wire_store, names) -> None:
    t = names["rich"]
    start, end = window(wire_store)
    levels = cascade.history(wire_store, t, start, end)
    for threshold in (None, 0.01, 0.05):
        with no_validation_warning():
            df = client.get_lstar(t, threshold=threshold)
        want = cascade.lstar_history(wire_store, t, threshold, start, end)
        what = f"lstar θ={threshold}"
        assert list(df["date"]) == [str(d.date()) for d in want.index], what
        assert list(df["lstar"]) == [f"L{k}" if k else None for k in want["lstar_level"]], what
        assert_series_equal(df["residual_return"], want["lstar_rr"], f"{what} residual_return")
        assert_series_equal(df["l3_subsector_er"], want["l3_sub_er"], f"{what} l3_subsector_er")
        k = want["lstar_level"].to_numpy()
        market = np.select([k == 1, k == 2, k == 3], [levels["l1_mkt_hr"], levels["l2_mkt_hr"], levels["l3_mkt_hr"]],
                           np.nan)
        assert_series_equal(df["market_hr"], market, f"{what} market_hr of the chosen level")
        assert df.attrs["threshold_used"] == (0.01 if threshold is None else threshold)
    # Absent θ reads the level the build published; an explicit 0.01 recomputes it in the window,
    # so the first day has no "level held the day before" and no residual return.
    stored = cascade.lstar_history(wire_store, t, None, start, end)
    recomputed = cascade.lstar_history(wire_store, t, 0.01, start, end)
    assert np.isfinite(stored["lstar_rr"].iloc[0]) and np.isnan(recomputed["lstar_rr"].iloc[0])
    assert (cascade.lstar_history(wire_store, t, 0.05, start, end)["lstar_level"] != stored["lstar_level"]).any(), \
        "θ = 0.05 should pick a different level on some day, or this test proves nothing about θ"


def test_batch_lstar(client, wire_store, names) -> None:
    start, end = window(wire_store)
    body = client.batch_lstar([names["rich"], names["a"], UNKNOWN], threshold=0.05)
    assert body["summary"] == {"total": 3, "success": 2, "errors": 1}
    assert body["results"][UNKNOWN]["status"] == "error"
    frames = client.batch_lstar_to_dataframes(body)
    for t in (names["rich"], names["a"]):
        want = cascade.lstar_history(wire_store, t, 0.05, start, end)
        assert list(frames[t]["lstar"]) == [f"L{k}" if k else None for k in want["lstar_level"]], t
        assert_series_equal(frames[t]["residual_return"], want["lstar_rr"], f"{t} residual_return")
    canonical = client.batch_lstar([names["rich"], names["b"]])
    frames = client.batch_lstar_to_dataframes(canonical)
    for t in (names["rich"], names["b"]):
        assert canonical["results"][t]["threshold_used"] == 0.01
        assert canonical["results"][t]["lstar_source"] == "materialized"
        want = cascade.lstar_history(wire_store, t, None, start, end)
        assert list(frames[t]["lstar"]) == [f"L{k}" if k else None for k in want["lstar_level"]], t
        assert_series_equal(frames[t]["residual_return"], want["lstar_rr"], f"{t} published residual_return")


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_batch_lstar_tabular(client, wire_store, names, fmt) -> None:
    start, end = window(wire_store)
    df, lineage = client.batch_lstar([names["rich"], UNKNOWN], threshold=0.05, format=fmt)
    want = cascade.lstar_history(wire_store, names["rich"], 0.05, start, end)
    mine = df[df["ticker"] == names["rich"]]
    assert list(mine["date"]) == [str(d.date()) for d in want.index]
    assert_series_equal(mine["residual_return"], want["lstar_rr"], f"{fmt} residual_return", rel=1e-15)
    assert list(mine["lstar"].where(mine["lstar"].notna(), None)) == [f"L{k}" if k else None
                                                                      for k in want["lstar_level"]]
    assert df.loc[df["ticker"] == UNKNOWN, "status"].tolist() == ["error"]
    assert lineage.data_as_of == str(end.date())


def test_get_l3_decomposition(client, wire_store, names) -> None:
    t = names["rich"]
    with no_validation_warning():
        df = client.get_l3_decomposition(t)
    start, end = window(wire_store)
    h = cascade.history(wire_store, t, start, end)
    assert list(df["date"]) == [str(d.date()) for d in h.index]
    for wire_name, semantic in (("l3_mkt_hr", "l3_market_hr"), ("l3_sec_hr", "l3_sector_hr"),
                                ("l3_sub_hr", "l3_subsector_hr"), ("l3_mkt_er", "l3_market_er"),
                                ("l3_sec_er", "l3_sector_er"), ("l3_sub_er", "l3_subsector_er"),
                                ("l3_res_er", "l3_residual_er")):
        assert_series_equal(df[semantic], h[wire_name], semantic)


def test_get_returns_decomposition(client, wire_store, names) -> None:
    t = names["rich"]
    with no_validation_warning():
        df = client.get_returns_decomposition(t, years=2, include_lstar=True)
    start, end = window(wire_store, 2)
    h = cascade.history(wire_store, t, start, end)
    assert list(df["date"]) == [str(d.date()) for d in h.index]
    assert_series_equal(df["gross_return"], h["returns_gross"], "gross_return")
    for k in (1, 2, 3):
        assert_series_equal(df[f"l{k}_combined_factor_return"], h[f"l{k}_cfr"], f"l{k}_cfr")
        assert_series_equal(df[f"l{k}_residual_return"], h[f"l{k}_rr"], f"l{k}_rr")
    summed = df["l1_factor_return"] + df["l2_factor_return"] + df["l3_factor_return"]
    assert_series_equal(summed, h["l3_cfr"], "Σ level factor returns = l3_cfr", rel=1e-9)
    want = cascade.lstar_history(wire_store, t, None, start, end)
    assert_series_equal(df["lstar_residual_return"], want["lstar_rr"], "lstar_residual_return")
    assert df.attrs["threshold_used"] == 0.01


# --------------------------------------------------------------------------- portfolio and universe


def test_portfolio_risk_index(client, wire_store, names) -> None:
    a, b = names["a"], names["rich"]
    with no_validation_warning():
        body = client.post_portfolio_risk_index([(a, 0.5), (b, 0.5), (UNKNOWN, 0.1)])
    w = {a: 0.5, b: 0.5}  # renormalised over the resolved positions: the unknown leaves no hole
    rows = {t: cascade.metrics(wire_store, t) for t in (a, b)}
    pri = body["portfolio_risk_index"]
    for role, f in (("market", "l3_mkt_er"), ("sector", "l3_sec_er"), ("subsector", "l3_sub_er"),
                    ("residual", "l3_res_er")):
        assert pri["variance_decomposition"][role] == pytest.approx(sum(w[t] * rows[t][f] for t in w), rel=1e-12)
    assert pri["portfolio_volatility_23d"] == pytest.approx(sum(w[t] * rows[t]["vol_23d"] for t in w), rel=1e-12)
    assert pri["position_count"] == 2
    assert body["summary"] == {"total_positions": 3, "resolved": 2, "errors": 1}
    assert body["errors"] == [{"ticker": UNKNOWN, "error": f"Symbol not found for ticker {UNKNOWN}"}]
    assert body["per_ticker"][a]["weight"] == pytest.approx(w[a])
    ours = analyze_portfolio(wire_store, {a: 0.5 / 1.1, b: 0.5 / 1.1, UNKNOWN: 0.1 / 1.1})
    assert pri["risk_index"] == pytest.approx(ours.risk.risk_index, rel=1e-12)
    assert body["risk_index"]["value"] == pri["risk_index"]
    assert body["risk_index"]["decomposition"] == pytest.approx(ours.risk.by_role.to_dict(), rel=1e-12)
    assert body["holdings_analyzed"] == "2/3 holdings analyzed"


def test_portfolio_risk_index_edges(client, http, names, wire_store) -> None:
    assert client.post_portfolio_risk_index([])["status"] == "syncing"
    r = http.post("/portfolio/risk-index", json={"positions": [{"ticker": UNKNOWN, "weight": 1}]})
    assert r.status_code == 400 and r.json()["error"] == "No valid positions"
    assert r.json()["errors"] == [{"ticker": UNKNOWN, "error": f"Symbol not found for ticker {UNKNOWN}"}]
    body = client.post_portfolio_risk_index([(names["a"], 1.0)], time_series=True, years=1)
    start, end = window(wire_store)
    h = cascade.history(wire_store, names["a"], start, end, ["l3_mkt_er"])
    assert [p["date"] for p in body["time_series"]] == [str(d.date()) for d in h.index]
    assert_series_equal([p["market_er"] for p in body["time_series"]], h["l3_mkt_er"].fillna(0.0), "time_series")


def test_search_tickers(client, wire_store, names) -> None:
    snap = cascade.stored_snapshot(wire_store)
    universe = client.search_tickers()
    assert list(universe["ticker"]) == sorted(snap.index)
    exact = client.search_tickers(search=names["a"].lower())
    assert list(exact["ticker"]) == [names["a"]]
    assert list(client.search_tickers(search="GOOG")["ticker"]) == [SHARE_CLASS]
    with_meta = client.search_tickers(include_metadata=True, as_dataframe=False)
    assert names["a"] in with_meta


# --------------------------------------------------------------------------- wire hygiene


def _strict_json(text: str) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"JSON body contains {token}")
    return json.loads(text, parse_constant=refuse)


def test_bodies_are_strict_json_with_nulls_and_equal_length_arrays(http, names) -> None:
    """The whole history (years=27) includes the first window's days, which have no estimates."""
    t = names["rich"]
    requests = [("GET", "/lstar", {"params": {"ticker": t, "years": 27}}),
                ("GET", "/lstar", {"params": {"ticker": t, "years": 27, "threshold": 0.2}}),
                ("GET", "/l3-decomposition", {"params": {"ticker": t, "years": 27}}),
                ("GET", "/returns-decomposition", {"params": {"ticker": t, "years": 27, "include_lstar": "true"}}),
                ("POST", "/batch/lstar", {"json": {"tickers": [t], "years": 27}}),
                ("POST", "/batch/analyze", {"json": {"tickers": [t], "metrics": ["returns", "l3_decomposition"],
                                                     "years": 27}})]
    saw_null = False
    for method, path, kw in requests:
        r = http.request(method, path, **kw)
        assert r.status_code == 200, (path, r.text[:300])
        body = _strict_json(r.text)
        # a body with parallel arrays, or batch results whose entries (or their blocks) have them
        blocks = [body] if "dates" in body else [
            b for res in body["results"].values() for b in (res, *(v for v in res.values() if isinstance(v, dict)))]
        series = [b for b in blocks if "dates" in b]
        assert series, path
        for s in series:
            n = len(s["dates"])
            assert n > 0
            for key, value in s.items():
                if isinstance(value, list):
                    assert len(value) == n, f"{path}: {key} has {len(value)} values for {n} dates"
                    saw_null |= any(v is None for v in value)
    assert saw_null, "the full history should include days without estimates (sent as null)"
    rows = _strict_json(http.get("/ticker-returns", params={"ticker": t, "years": 27}).text)["data"]
    assert any(row["l3_mkt_hr"] is None for row in rows)


def test_openapi_documents_the_request_bodies(http) -> None:
    doc = http.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for name in ("DecomposeRequest", "BatchAnalyzeRequest", "BatchLstarRequest", "RiskIndexRequest"):
        assert name in schemas
    for path in ("/api/metrics/{ticker}", "/api/decompose", "/api/batch/analyze", "/api/ticker-returns",
                 "/api/lstar", "/api/batch/lstar", "/api/returns-decomposition", "/api/l3-decomposition",
                 "/api/portfolio/risk-index", "/api/tickers", "/api/health"):
        assert path in doc["paths"], path


def test_health_is_public(server_url) -> None:
    import httpx

    r = httpx.get(f"{server_url}/health", trust_env=False)
    assert r.status_code == 200 and r.json()["status"] == "healthy"
    assert r.json()["services"]["cascade"]["status"] == "up"
