"""The rest of riskmodels-py 0.5.0 (issue 11 §2) driven by the real client against a real server.

Snapshots, the PDF reports (read back with poppler's pdftotext and rendered with pdftoppm),
factor-ETF correlations, the xarray dataset, the signed-book exposure route and the 501s of the
methods not served. Numbers are checked against the services and, where cheap, against an
independent computation from the stored rows.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from riskstrata.api.wire_unserved import UNSERVED
from riskstrata.data.ingest import load_returns
from riskstrata.data.master import SecurityMaster
from riskstrata.services import cascade
from riskstrata.services.correlation import factor_correlation
from riskstrata.services.portfolio import analyze_portfolio

riskmodels = pytest.importorskip("riskmodels", reason="riskmodels-py (test extra) is not installed")
from riskmodels.exceptions import APIError  # noqa: E402

from tests.api.test_wire_client import no_validation_warning  # noqa: E402

UNKNOWN = "ZZZZ"
POPPLER = shutil.which("pdftotext") and shutil.which("pdftoppm")
needs_poppler = pytest.mark.skipif(not POPPLER, reason="poppler-utils (pdftotext, pdftoppm) not installed: "
                                                         "`make test` installs it where it runs as root")


@pytest.fixture(scope="module")
def served(server_url, api_key):
    """The official client pointed at the session's real server over the demo store (the uvicorn
    process of ``conftest.py``, no rate limit; these tests only read, so they need no server of
    their own: one start, ~3.5 s CPU, fewer per worker)."""
    client = riskmodels.RiskModelsClient(base_url=server_url, api_key=api_key)
    try:
        yield client, server_url
    finally:
        client.close()


@pytest.fixture(scope="module")
def rc(served):
    return served[0]


@pytest.fixture(scope="module")
def http(served, api_key):
    import httpx

    with httpx.Client(base_url=served[1], headers={"Authorization": f"Bearer {api_key}"}, timeout=120,
                      trust_env=False) as c:
        yield c


@pytest.fixture(scope="module")
def names(wire_store) -> list[str]:
    """Stocks with fitted L3 hedges on the last date (sorted, the first three)."""
    snap = cascade.stored_snapshot(wire_store)
    records = SecurityMaster.from_store(wire_store).records
    stocks = set(records.loc[records["asset_type"] == "stock", "ticker"])
    return sorted(t for t in snap.index if t in stocks and np.isfinite(snap.at[t, "l3_sub_hr"]))[:3]


def pdf_text(content: bytes, tmp_path, name: str) -> str:
    """The PDF's text (pdftotext) after checking that pdftoppm renders its one page."""
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(content)
    assert content[:5] == b"%PDF-"
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(path), str(tmp_path / name)], check=True, timeout=60)
    pages = list(tmp_path.glob(f"{name}*.png"))
    assert len(pages) == 1 and pages[0].stat().st_size > 3_000, "one rendered page with something on it"
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True,
                          timeout=60).stdout
    return " ".join(text.split())


# --------------------------------------------------------------------------- snapshots


def test_snapshot_of_a_portfolio_equals_the_services(rc, wire_store, names) -> None:
    a, b = names[:2]
    with no_validation_warning():
        body, lineage = rc.snapshot({a: 0.6, b: 0.4, UNKNOWN: 0.1}, lookback_days=60)
    ours = analyze_portfolio(wire_store, {a: 0.6 / 1.1, b: 0.4 / 1.1, UNKNOWN: 0.1 / 1.1})
    snap = body["snapshot"]
    assert snap["risk_index"]["value"] == pytest.approx(ours.risk.risk_index, rel=1e-12)
    vd = snap["variance_decomposition"]
    assert {k: vd[k] for k in ours.risk.by_role.index} == pytest.approx(ours.risk.by_role.to_dict(), rel=1e-12)
    assert sum(vd[k] for k in ("market", "sector", "subsector", "residual")) == pytest.approx(1.0, abs=1e-12)
    assert {p["ticker"]: p["weight"] for p in snap["positions"]} == pytest.approx({a: 0.6, b: 0.4})
    assert snap["unresolved"] == [{"ticker": UNKNOWN, "error": "unknown symbol"}]
    # time behaviour, independently: Σ w_i·returns_gross_i of the stored rows over the same days, compounded
    days = pd.DatetimeIndex(body["time_behavior"]["teo"])
    assert len(days) == 60
    gross = sum(w * cascade.history(wire_store, t, days[0], days[-1], ["returns_gross"])["returns_gross"]
                for t, w in ((a, 0.6), (b, 0.4)))
    assert body["time_behavior"]["cumulative_return"] == pytest.approx(list((1 + gross).cumprod() - 1), rel=1e-9)
    period = body["attribution"]["period"]
    assert period["market"] + period["sector"] + period["subsector"] + period["residual"] == pytest.approx(
        period["gross"], abs=1e-12)
    assert period["gross"] == pytest.approx(body["time_behavior"]["cumulative_return"][-1], rel=1e-9)
    assert lineage.data_as_of == body["metadata"]["data_as_of"] == wire_store.model_meta("cascade")["end"]
    assert body["metadata"]["model_version"] == wire_store.current_version("cascade")


def test_snapshot_of_a_ticker(rc, wire_store, names) -> None:
    t = names[0]
    with no_validation_warning():
        body, _ = rc.snapshot_ticker(t, lookback_days=120, benchmark="SPY")
    m = cascade.metrics(wire_store, t)
    snap = body["snapshot"]
    assert snap["ticker_meta"]["factors"] == [e for e in dict.fromkeys(["SPY", m["sector_etf"], m["subsector_etf"]]) if e]
    assert snap["metrics"]["l3_mkt_hr"] == m["l3_mkt_hr"] and snap["metrics"]["recommended_hedge_level"] in ("L1", "L2", "L3")
    assert snap["risk_index"]["value"] == pytest.approx(analyze_portfolio(wire_store, {t: 1.0}).risk.risk_index, rel=1e-12)
    assert snap["hedge_ratios"]["L3"]["SPY"] == pytest.approx(m["l3_mkt_hr"], rel=1e-12)
    assert len(body["time_behavior"]["benchmark_cumulative_return"]) == len(body["time_behavior"]["teo"]) == 120
    with pytest.raises(APIError) as err:
        rc.snapshot_ticker(UNKNOWN)
    assert err.value.status_code == 404


def test_portfolio_risk_snapshot_json(rc, wire_store, names) -> None:
    a, b = names[:2]
    with no_validation_warning():
        body, _ = rc.post_portfolio_risk_snapshot({a: 0.5, b: 0.3, UNKNOWN: 0.2}, title="Desk book",
                                                  include_diversification=True)
    pri = body["portfolio_risk_index"]
    vd = pri["variance_decomposition"]
    assert vd["market"] + vd["sector"] + vd["subsector"] + vd["residual"] == pytest.approx(1.0, abs=1e-9)
    assert {t: r["weight"] for t, r in body["per_ticker"].items()} == pytest.approx({a: 0.625, b: 0.375})
    assert body["per_ticker"][a]["l3_sub_hr"] == cascade.metrics(wire_store, a)["l3_sub_hr"]
    ours = analyze_portfolio(wire_store, {a: 0.625, b: 0.375})
    div = pri["diversification"]
    single = {t: np.sqrt(cascade.metrics(wire_store, t)["stock_var"] * 252) for t in (a, b)}
    assert div["weighted_average_volatility"] == pytest.approx(0.625 * single[a] + 0.375 * single[b], rel=1e-12)
    assert div["portfolio_volatility"] == pytest.approx(ours.risk.vol_ann, rel=1e-12)
    assert body["title"] == "Desk book" and body["snapshot"]["snapshot"]["title"] == "Desk book"
    assert body["risk_index"]["value"] == pytest.approx(ours.risk.risk_index, rel=1e-12)


@needs_poppler
def test_portfolio_and_stock_pdfs_open_and_carry_the_numbers(rc, http, wire_store, names, tmp_path) -> None:
    a, b = names[:2]
    end = wire_store.model_meta("cascade")["end"]
    pdf, lineage = rc.post_portfolio_risk_snapshot_pdf({a: 0.7, b: 0.3}, title="Desk book")
    text = pdf_text(pdf, tmp_path, "portfolio")
    risk_index = analyze_portfolio(wire_store, {a: 0.7, b: 0.3}).risk.risk_index
    assert f"Risk Index {risk_index:.1f}" in text and "Desk book" in text and a in text
    assert f"Data as of {end}" in text and wire_store.current_version("cascade") in text
    assert lineage.data_as_of == end
    pdf, _ = rc.get_metrics_snapshot_pdf(a)
    text = pdf_text(pdf, tmp_path, "stock")
    assert f"Stock risk snapshot: {a}" in text and f"Data as of {end}" in text
    assert f"Risk Index {analyze_portfolio(wire_store, {a: 1.0}).risk.risk_index:.1f}" in text
    assert "negative = short the ETF" in text and "diversifies" in text
    r = http.post("/portfolio/risk-snapshot", json={"positions": [{"ticker": a, "weight": 1}], "format": "png"})
    assert r.status_code == 422 and "format=png" in r.json()["message"]


@needs_poppler
def test_cli_report_of_a_ticker_and_of_a_holdings_file(wire_store, names, tmp_path) -> None:
    from typer.testing import CliRunner

    from riskstrata.cli import app

    a, b = names[:2]
    holdings = tmp_path / "book.csv"
    pd.DataFrame({"ticker": [a, b, "CASH"], "weight": [0.6, -0.3, 0.1]}).to_csv(holdings, index=False)
    end = wire_store.model_meta("cascade")["end"]
    out = tmp_path / "book.pdf"
    result = CliRunner().invoke(app, ["report", str(holdings), "--out", str(out), "--store", str(wire_store.root),
                                      "--value", "1000000", "--lookback", "60"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "Risk Index" in result.output
    text = pdf_text(out.read_bytes(), tmp_path, "book")
    assert "Risk Index" in text and f"Data as of {end}" in text and "2/3 holdings analyzed" in text
    assert "Book: long $600,000, short $300,000, gross $900,000" in text
    # a ticker: the snapshot the page is drawn from (the stock PDF itself is checked over the API)
    result = CliRunner().invoke(app, ["report", a, "--json", "--store", str(wire_store.root), "--lookback", "60"])
    assert result.exit_code == 0, result.output
    snap = json.loads(result.output)
    assert snap["snapshot"]["ticker_meta"]["ticker"] == a and snap["metadata"]["data_as_of"] == end
    missing = CliRunner().invoke(app, ["report", a, "--store", str(wire_store.root)])
    assert missing.exit_code != 0 and "--out" in str(missing.exception or missing.output)


def test_client_side_methods_over_the_served_routes(rc, wire_store, names) -> None:
    """get_hedge_levels, discover, pair_trade_neutralization and get_metrics_with_macro_correlation."""
    a, b = names[:2]
    m = cascade.metrics(wire_store, a)
    with no_validation_warning():
        levels = rc.get_hedge_levels(a)
        combined = rc.get_metrics_with_macro_correlation(a, factors=["SPY"], window_days=60)
        pair = rc.pair_trade_neutralization(a, b, 10_000)
    assert levels["L3"]["market_hr"] == m["l3_mkt_hr"] and levels["recommended_level"] == m["recommended_hedge_level"]
    want = factor_correlation(wire_store, a, factors=["SPY"], window_days=60)["correlations"]["SPY"]
    assert combined["macro_corr_SPY"].iloc[0] == pytest.approx(want, rel=1e-12)
    assert combined["l3_market_hr"].iloc[0] == m["l3_mkt_hr"]
    assert pair.recommended_level
    rc.discover(live=True)


# --------------------------------------------------------------------------- correlations, dataset


def _pearson_by_hand(wire_store, t: str, etf: str, field: str, days: int) -> float:
    end = pd.Timestamp(wire_store.model_meta("cascade")["end"])
    stock = cascade.history(wire_store, t, end - pd.Timedelta(days=3 * days), end, [field])[field].dropna()
    stock = stock.iloc[-days:]
    sid = SecurityMaster.from_store(wire_store).resolve_many([etf], end).iloc[0]
    etf_r = load_returns(wire_store, stock.index[0], end, security_ids=[sid])[sid].reindex(stock.index)
    pair = pd.concat([stock, etf_r], axis=1).dropna().to_numpy()
    return float(np.corrcoef(pair[:, 0], pair[:, 1])[0, 1])


def test_factor_correlation_single_and_batch(rc, wire_store, names) -> None:
    a, b = names[:2]
    with no_validation_warning():
        body = rc.get_factor_correlation_single(a, factors=["SPY", "xlk"], return_type="gross", window_days=120)
    assert body["correlations"]["SPY"] == pytest.approx(_pearson_by_hand(wire_store, a, "SPY", "returns_gross", 120),
                                                        rel=1e-12)
    assert body["overlap_days"] == 120 and body["window_days"] == 120 and body["method"] == "pearson"
    ours = factor_correlation(wire_store, a, method="spearman")
    df = rc.get_factor_correlation_single(a, method="spearman", as_dataframe=True)
    for etf, value in ours["correlations"].items():
        assert df[f"macro_corr_{etf}"].iloc[0] == pytest.approx(value, rel=1e-12), etf
    assert df["macro_return_type"].iloc[0] == "l3_residual"
    batch = rc.get_factor_correlation([a, b, UNKNOWN], return_type="l1", as_dataframe=True)
    assert list(batch["ticker"]) == [a, b, UNKNOWN]
    assert batch.set_index("ticker").loc[UNKNOWN, "macro_batch_status"] == "error"
    want = factor_correlation(wire_store, b, return_type="l1")["correlations"]["SPY"]
    assert batch.set_index("ticker").loc[b, "macro_corr_SPY"] == pytest.approx(want, rel=1e-12)
    one = rc.get_factor_correlation(a, factors=["SPY", "NOPE"])
    assert one["correlations"]["NOPE"] is None and any("NOPE" in w for w in one["warnings"])


def test_get_dataset_is_the_returns_panel(rc, wire_store, names) -> None:
    pytest.importorskip("xarray", reason="xarray (test extra) is not installed")
    a, b = names[:2]
    ds = rc.get_dataset([a, b], years=1)
    assert set(ds.coords["ticker"].values) == {a, b}
    end = pd.Timestamp(wire_store.model_meta("cascade")["end"])
    h = cascade.history(wire_store, a, end - pd.DateOffset(years=1), end, ["returns_gross"])["returns_gross"]
    got = ds["returns_gross"].sel(ticker=a).to_series().reindex(h.index)
    np.testing.assert_allclose(got.to_numpy(), h.to_numpy(), rtol=1e-7)


# --------------------------------------------------------------------------- signed book


def test_exposure_of_a_long_short_book_in_dollars(http, wire_store, names) -> None:
    a, b, c = names
    positions = [{"ticker": a, "value": 600_000}, {"ticker": b, "value": -599_999.0}, {"ticker": c, "value": 250_000},
                 {"ticker": UNKNOWN, "value": 50_000}]
    body = http.post("/portfolio/exposure", json={"positions": positions}).json()
    rows = {t: cascade.metrics(wire_store, t) for t in (a, b, c)}
    dollars = {a: 600_000, b: -599_999.0, c: 250_000}
    assert body["exposure"]["gross_usd"] == pytest.approx(1_449_999.0) and body["exposure"]["net_usd"] == pytest.approx(250_001)
    beta = sum(v * rows[t]["l1_mkt_beta"] for t, v in dollars.items())
    assert body["beta"]["beta_dollars"] == pytest.approx(beta, rel=1e-9)
    assert body["hedges"]["L1"]["trades_usd"]["SPY"] == pytest.approx(-beta, rel=1e-9)
    l3: dict[str, float] = {}
    for t, v in dollars.items():
        m = rows[t]
        for hr, etf in (("l3_mkt_hr", "SPY"), ("l3_sec_hr", m["sector_etf"]), ("l3_sub_hr", m["subsector_etf"])):
            l3[etf] = l3.get(etf, 0.0) + v * m[hr]
    assert body["hedges"]["L3"]["trades_usd"] == pytest.approx({k: x for k, x in l3.items() if abs(x) > 1e-6}, rel=1e-9)
    risk = body["risk"]
    assert risk["systematic"]["daily_variance_usd2"] + risk["residual"]["daily_variance_usd2"] == pytest.approx(
        risk["total"]["daily_variance_usd2"], rel=1e-12)
    residual = sum(v ** 2 * rows[t]["l3_res_er"] * rows[t]["stock_var"] for t, v in dollars.items())
    assert risk["residual"]["daily_variance_usd2"] == pytest.approx(residual, rel=1e-9)
    assert body["coverage"]["coverage"] == pytest.approx(1_449_999.0 / 1_499_999.0)
    assert any(UNKNOWN in w and "unknown symbol" in w for w in body["warnings"])
    too_many = http.post("/portfolio/exposure", json={"positions": [{"ticker": a, "value": 1.0}] * 1001})
    assert too_many.status_code == 422
    huge = http.post("/portfolio/exposure", json={"positions": [{"ticker": a, "value": 1e308}]})
    assert huge.status_code == 422 and "1000000000000000" in huge.json()["message"]


# --------------------------------------------------------------------------- not served


def _path(template: str) -> str:
    return (template.replace("{rest:path}", "x/y").replace("{ticker}", "AAA").replace("{name}", "x")
            .replace("{fund_id}", "F1").replace("{slug}", "s").replace("{cohort_type}", "c")
            .replace("{filer_id}", "F2").replace("{kind}", "stock").replace("{subject_id}", "AAA"))


def test_every_client_path_not_served_is_a_404_naming_the_method(http, rc) -> None:
    for methods, verb, template, _why in UNSERVED:
        r = http.request(verb, _path(template), json={} if verb == "POST" else None)
        assert r.status_code == 404, (template, r.status_code, r.text[:200])
        assert r.json()["error"] == "Not Served" and methods[0] in r.json()["message"], template
    for call, name in ((lambda: rc.get_rankings("AAA"), "get_rankings"),
                       (lambda: rc.get_macro_factor_series(), "get_macro_factor_series"),
                       (lambda: rc.get_fund("F1"), "get_fund"), (lambda: rc.search_filers("x"), "search_filers"),
                       (lambda: rc.get_fundamentals("AAA"), "get_fundamentals"),
                       (lambda: rc.exposure_history(["AAA"]), "exposure_history"),
                       (lambda: rc.get_plaid_holdings(), "get_plaid_holdings")):
        with pytest.raises(APIError) as err:
            call()
        assert err.value.status_code == 404 and name in str(err.value), name


def test_the_readme_table_lists_every_public_client_method() -> None:
    """README: every public method of RiskModelsClient 0.5.0 → served / not served (and why)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### riskmodels-py 0.5.0, method by method", 1)[1].split("\n## ", 1)[0]
    public = [m for m in dir(riskmodels.RiskModelsClient) if not m.startswith("_")
              and callable(getattr(riskmodels.RiskModelsClient, m, None))]
    missing = [m for m in public if f"`{m}`" not in section and m.upper() != m]
    assert not missing, f"README's client table lacks {missing}"
    assert json.dumps(section)  # the section exists and is text
