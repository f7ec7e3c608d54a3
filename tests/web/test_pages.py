"""The dashboard in a real browser (Debian's chromium via Playwright) against ``riskstrata serve``.

What a user sees must be what the API and the CLI say: the heatmap's cells are
``/api/factors/{model}/correlation``, the pair selector's number is the pair route's, the
walkthrough ends on the attribution bars, the hedge list is ``portfolio hedge``'s. Every page
loads without a console error and without a request leaving 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from riskstrata.services import cascade
from riskstrata.services import dashboard as D
from riskstrata.services import portfolio
from tests.web.conftest import BUILT_SPEC, UNBUILT_SPEC, WIDTHS

PAGES = {"home": "/", "stock": "/stock/{ticker}", "factors": f"/factors/{BUILT_SPEC}", "portfolio": "/portfolio",
         "unknown-stock": "/stock/{typo}"}


@pytest.fixture(scope="module")
def ticker(api) -> str:
    """A stock with all three hedge legs on the model's last date."""
    names = api.get("/tickers").json()["tickers"]
    for t in names:
        m = api.get(f"/metrics/{t}").json()["metrics"]
        if m.get("l3_sub_hr") not in (None, 0) and m.get("l3_sec_hr") not in (None, 0):
            return t
    return names[0]


def _figure(page, fig_id: str) -> list[dict]:
    """The traces plotly.js drew in the element (its ``data``)."""
    page.wait_for_function(f"document.getElementById('{fig_id}') && document.getElementById('{fig_id}').data")
    return page.evaluate(f"document.getElementById('{fig_id}').data")


@pytest.mark.slow  # make test-fast skips it
def test_every_page_loads_clean_at_desktop_and_phone_width(browser, base_url, ticker, shots):
    for device, width in WIDTHS.items():
        context = browser.new_context(viewport={"width": width, "height": 900})
        try:
            from tests.web.conftest import Watched
            w = Watched(context.new_page())
            for name, path in PAGES.items():
                if device == "phone" and name == "unknown-stock":
                    continue
                url = base_url + path.format(ticker=ticker, typo=ticker[:-1] + "Q9")
                if name == "unknown-stock":
                    w.expect_404.add(url)
                resp = w.page.goto(url)
                assert resp.status == (404 if name == "unknown-stock" else 200), (name, resp.status)
                w.page.wait_for_load_state("networkidle")
                if name == "portfolio":  # the sample, so the screenshot shows a full analysis
                    w.page.click("#load-sample")
                    w.page.wait_for_selector("#analyzed")
                    w.page.wait_for_load_state("networkidle")
                for fig in w.page.query_selector_all("[data-figure]"):  # every chart drawn, with a title
                    assert fig.query_selector(".main-svg") is not None, (name, fig.get_attribute("id"))
                    assert fig.evaluate("e => e.layout.title.text"), (name, fig.get_attribute("id"))
                # Nothing wider than the screen but the tables and charts that scroll in their own box.
                overflow = w.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 1, (name, device, overflow)
                shots(w.page, f"{name}-{device}")
            if device == "desktop":
                assert "Did you mean" in w.page.content()  # the unknown ticker page suggests names
            w.clean()
        finally:
            context.close()


def test_heatmap_is_k_by_k_and_equals_the_api(watched, base_url, api):
    watched.page.goto(f"{base_url}/factors/{BUILT_SPEC}")
    heat = _figure(watched.page, "corr")[0]
    want = api.get(f"/factors/{BUILT_SPEC}/correlation").json()
    k = len(want["factors"])
    assert heat["x"] == want["factors"] and heat["y"] == want["factors"]
    z = np.array(heat["z"], dtype=float)
    assert z.shape == (k, k)
    np.testing.assert_allclose(z, np.array(want["matrix"], dtype=float), rtol=0, atol=1e-12)
    rows = watched.page.query_selector_all("#perf tbody tr")
    assert len(rows) == k
    watched.page.click("#perf th:nth-child(5)")  # sort by Sharpe, descending
    sharpe = [float(r.get_attribute("data-value")) for r in watched.page.query_selector_all("#perf tbody td:nth-child(5)")]
    finite = [s for s in sharpe if np.isfinite(s)]
    assert finite == sorted(finite, reverse=True)
    watched.clean()


def test_pair_selector_shows_the_apis_number(watched, base_url, api):
    watched.page.goto(f"{base_url}/factors/{BUILT_SPEC}")
    factors = api.get(f"/factors/{BUILT_SPEC}/correlation").json()["factors"]
    shown = {watched.page.input_value("#pair-a"), watched.page.input_value("#pair-b")}
    a, b = [f for f in factors if f not in shown][1:3]
    watched.page.select_option("#pair-a", a)
    watched.page.select_option("#pair-b", b)
    watched.page.wait_for_function(f"document.getElementById('pair-value').dataset.pair === {json.dumps(f'{a}|{b}')}")
    want = api.get(f"/factors/{BUILT_SPEC}/correlation/{a}/{b}").json()["correlation"]
    assert float(watched.page.get_attribute("#pair-value", "data-value")) == pytest.approx(want, abs=1e-12)
    assert watched.page.inner_text("#pair-value") == f"{want:.3f}"
    watched.clean()


def test_walkthrough_ends_on_the_attribution_of_the_same_period(watched, base_url, web_store, ticker):
    watched.page.goto(f"{base_url}/stock/{ticker}?period=6m")
    traces = {t["name"]: t["y"][-1] for t in _figure(watched.page, "walk")}
    meta = web_store.model_meta(cascade.MODEL)
    lo, hi, _ = D.period_bounds(meta["start"], meta["end"], "6m", None, None)
    a = cascade.attribution(web_store, ticker, lo, hi)
    want = {"1 · gross return": a.gross, "2 · market-hedged (L1 residual)": a.gross - a.market,
            "3 · sector-hedged (L2 residual)": a.subsector + a.residual, "4 · subsector residual (L3)": a.residual}
    assert traces.keys() == want.keys()
    for name, value in want.items():
        assert traces[name] == pytest.approx(value, abs=1e-6), name  # the page rounds to 6 decimals
    waterfall = _figure(watched.page, "attribution")[0]
    assert waterfall["y"][:4] == pytest.approx([a.market, a.sector, a.subsector, a.residual], abs=1e-8)
    watched.clean()


def _cli(store, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "riskstrata.cli", *args, "--store", str(store.root), "--json"],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


@pytest.mark.slow  # make test-fast skips it
def test_sample_upload_shows_analyzed_with_reasons_and_the_cli_hedges(watched, base_url, web_store, tmp_path):
    sample = watched.page.request.get(f"{base_url}/portfolio/sample.csv").text()
    assert "CASH" in sample and "NOTATICKER" in sample
    path = tmp_path / "sample.csv"
    path.write_text(sample)
    watched.page.goto(f"{base_url}/portfolio")
    watched.page.set_input_files("#holdings-file", str(path))  # the upload path: the file fills the text box
    watched.page.wait_for_function("document.getElementById('holdings').value.includes('NOTATICKER')")
    watched.page.fill("#value", "1000000")
    watched.page.click("#analyze")
    watched.page.wait_for_selector("#analyzed")
    lines = len(sample.strip().splitlines()) - 1
    assert re.fullmatch(rf"{lines - 2}/{lines} holdings analyzed \(2 excluded: 1 cash, 1 unknown symbol.*",
                        watched.page.inner_text("#analyzed"))
    reasons = {r.inner_text() for r in watched.page.query_selector_all("#excluded td.reason")}
    assert reasons == {"cash", "unknown symbol"}
    for level in portfolio.HEDGE_LEVELS:  # the page's trade list is `riskstrata portfolio hedge`'s
        if level == "L3":  # the command itself once; the service it prints for the other levels
            cli = _cli(web_store, "portfolio", "hedge", str(path), "--level", level, "--value", "1000000")
        else:
            cli = {"trades": portfolio.hedge_portfolio(web_store, str(path), level, 1_000_000.0).trades.to_dict("records")}
        shown = {s.get_attribute("data-etf"): (s.get_attribute("data-side"), float(s.get_attribute("data-usd")))
                 for s in watched.page.query_selector_all(f"#hedge-{level} .trade")}
        want = {t["etf"]: (t["side"], t["notional_usd"]) for t in cli["trades"]}
        assert shown.keys() == want.keys(), level
        for etf, (side, usd) in want.items():
            assert shown[etf][0] == side and shown[etf][1] == pytest.approx(usd, rel=1e-12), (level, etf)
    watched.page.select_option("#scale-exposure", "market")
    watched.page.fill("#scale-reduce", "0.5")
    watched.page.click("#scale")
    watched.page.wait_for_selector("#scale-result")
    assert "market" in watched.page.inner_text("#scale-result") or "SPY" in watched.page.inner_text("#scale-result")
    watched.clean()


def test_an_unbuilt_model_builds_from_the_page(watched, base_url, api):
    assert not next(m for m in api.get("/factors/models").json()["models"] if m["model"] == UNBUILT_SPEC)["built"]
    watched.page.goto(f"{base_url}/factors/{UNBUILT_SPEC}")
    watched.page.click("#build")
    watched.page.wait_for_selector(".progress:not([hidden])")
    watched.page.wait_for_selector("#corr .main-svg", timeout=120_000)  # the page reloads with the summary
    k = len(api.get(f"/factors/{UNBUILT_SPEC}/correlation").json()["factors"])
    assert len(watched.page.query_selector_all("#perf tbody tr")) == k
    watched.clean()


def test_a_server_on_other_interfaces_refuses_pages_without_a_key(web_store, web_key, tmp_path):
    import httpx

    from tests.api.conftest import serve_cli

    with serve_cli(web_store, tmp_path / "serve.log", "--host", "0.0.0.0") as api_url:
        base = api_url.removesuffix("/api")
        with httpx.Client(base_url=base, trust_env=False, timeout=30) as c:
            for path in ("/", "/factors/US21", "/portfolio"):
                r = c.get(path)
                assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
            assert c.get("/factors/US21/pair", params={"a": "SIZE", "b": "VALUE"}).status_code == 401
            assert c.post("/portfolio", data={"holdings": "ticker,weight\nX,1"}).status_code == 401
            assert c.post("/login", data={"key": "rs_wrong_key", "next": "/"}).status_code == 401
            r = c.post("/login", data={"key": web_key, "next": "/portfolio"})
            assert r.status_code == 303 and r.headers["location"] == "/portfolio"
            cookie = r.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie
            assert c.get("/portfolio").status_code == 200  # the cookie is sent from now on
            assert c.post("/login", data={"key": web_key, "next": "//evil.example/"}).headers["location"] == "/"
            assert c.get("/api/health").status_code == 200  # the API keeps its own rule
            assert c.get("/factors", params={"model": UNBUILT_SPEC}).headers["location"] == f"/factors/{UNBUILT_SPEC}"
            assert c.get("/favicon.ico").headers["content-type"].startswith("image/svg")
            # The home page's build button for the cascade: a new version is published, as the CLI's build does.
            before = web_store.current_version(cascade.MODEL)
            job = c.post("/cascade/build").json()
            for _ in range(600):
                job = c.get(f"/jobs/{job['job_id']}").json()
                if job["status"] in ("done", "failed"):
                    break
                time.sleep(0.2)
            assert job["status"] == "done" and job["progress"] == 1.0, job
            assert web_store.current_version(cascade.MODEL) != before
            assert c.post("/logout").status_code == 303
            c.cookies.clear()  # what the browser does with the expired cookie
            assert c.get("/").status_code == 303
            assert "API key" in c.get("/login").text


def test_every_chart_spec_is_a_valid_plotly_figure(web_store):
    """The specs are built as plain dicts for speed; plotly.py's validation accepts each one."""
    from riskstrata.services import factors
    from riskstrata.web import figures as F

    latest = factors.load_latest(web_store, BUILT_SPEC)
    view = D.factor_view(web_store, latest)
    meta = web_store.model_meta(cascade.MODEL)
    ticker = latest.risk.exposures.index[0]
    lo, hi, _ = D.period_bounds(meta["start"], meta["end"], "1y", None, None)
    stock = D.stock_view(web_store, ticker, lo, hi, factor_model=latest)
    pair = D.pair_view(latest, view.summary.index[1], view.summary.index[2])
    specs = [F.walkthrough(ticker, stock.walkthrough), F.risk_breakdown(ticker, stock.risk_shares()),
             F.attribution_bars(ticker, stock.attribution.bars(), "a", "b"), F.lstar_history(ticker, stock.lstar),
             F.exposures_bar(ticker, stock.exposures, BUILT_SPEC), F.correlation_heatmap(view.correlation, "M"),
             F.cumulative_chart(view.cumulative, view.top, "M"), F.rolling_pair(pair), F.bias_chart(view.validation, "M"),
             F.variance_shares({"market": 0.5, "residual": 0.5}, "t"),
             F.position_contributions(pd.DataFrame({"share": [0.7, 0.3]}, index=["A", "B"]))]
    for spec in specs:
        figure = F.as_figure(spec)
        assert figure.layout.title.text and figure.layout.yaxis.title.text or figure.layout.xaxis.title.text
    assert view.validation.loc["MARKET", "n_obs"] > 0 and view.validation.loc["MARKET", "bias"] > 0


def test_bad_input_gets_a_page_that_says_what_to_do(base_url, ticker):
    """Errors are pages with the service's message (never a traceback) and a 4xx status."""
    import httpx

    with httpx.Client(base_url=base_url, trust_env=False, timeout=60) as c:
        cases = [(c.get(f"/stock/{ticker}", params={"start": "garbage"}), 400, "YYYY-MM-DD"),
                 (c.get("/factors/NOPE"), 404, "US21"),
                 (c.post("/portfolio", data={"holdings": ""}), 400, "no holdings"),
                 (c.post("/portfolio", data={"holdings": "foo,bar\n1,2"}), 400, "no identifier column"),
                 (c.post("/portfolio", data={"holdings": "ticker,weight\nZZZZ,1"}), 400, "unknown symbol"),
                 (c.post("/portfolio", data={"holdings": f"ticker,shares\n{ticker},10", "value": "nan"}), 400, "finite")]
        for resp, status, words in cases:
            assert resp.status_code == status, (resp.request.url, resp.status_code)
            assert resp.headers["content-type"].startswith("text/html")
            assert words in resp.text and "Traceback" not in resp.text, (resp.request.url, words)
        assert c.get("/stock", params={"ticker": ticker.lower()}, follow_redirects=False).headers["location"] == \
            f"/stock/{ticker}"
