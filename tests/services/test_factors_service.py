"""Model B over the store: ingest → build → summary, correlation, exposures, risk, validate; CLI; auto-build."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from riskstrata.data.store import Store
from riskstrata.data.synthetic import synthetic_market
from riskstrata.services import factors as svc
from riskstrata.services.demo import load_synthetic_into_store
from tests.services.test_cli import run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    market = synthetic_market(n_stocks=120, n_days=252 * 3, seed=17, styles=True)
    s = Store(tmp_path_factory.mktemp("factors") / "store")
    load_synthetic_into_store(s, market)
    return s


def test_models_lists_specs_and_summary_auto_builds(store):
    before = svc.list_models(store).set_index("model")
    assert {"US21", "US_CORE"} <= set(before.index) and not before.loc["US21", "built"]
    stages = []
    summary = svc.summary(store, "US21", progress=stages.append)  # not built yet → builds first
    assert stages and svc.list_models(store).set_index("model").loc["US21", "built"]
    assert {"cagr", "ann_vol", "sharpe", "max_drawdown"} <= set(summary.columns)
    assert "MARKET" in summary.index and "VALUE" in summary.index
    # The synthetic market carries debt and volume: every style is estimated. In a market of
    # 120 names an industry can be too thin ever to be estimated: it is listed, with the reason.
    models = svc.list_models(store).set_index("model")
    missing = models.loc["US21", "not_estimated"]
    assert models.loc["US21", "factors"] == 21 and models.loc["US21", "estimated"] == 21 - len(missing)
    assert all("names in the industry" in m for m in missing) and len(models.loc["US21", "coverage"]) == 21
    spec = svc.load_spec("US21")
    assert list(summary.index) == spec.factors and (summary.loc[spec.style_factors, "status"] == "estimated").all()
    # GROWTH needs a year-old report: its first year is a visible gap, with coverage stored per date.
    growth = summary.loc["GROWTH"]
    assert growth["dates_estimated"] < growth["dates"] and "not estimated on" in growth["reason"]
    assert 0 < models.loc["US21", "coverage"]["GROWTH"] < 1 and models.loc["US21", "coverage"]["SIZE"] == 1
    fr = store.read_model("factor_returns_US21")
    assert {f"coverage_{f}" for f in svc.load_spec("US21").factors} <= set(fr.columns)
    low = fr["coverage_GROWTH"] < 0.5
    assert low.any() and fr.loc[low, "GROWTH"].isna().all()


def test_exposures_correlation_and_portfolio_risk(store):
    fr = svc.factor_returns(store)
    ticker = store.read_model("factors_US21", columns=["ticker"])["ticker"].iloc[-1]
    exp = svc.stock_exposures(store, ticker)
    assert exp["MARKET"] == 1.0 and np.isfinite(exp).all()
    corr = svc.correlation(store)
    diag = np.diag(corr)  # a thin industry never estimated in this small market has no correlation
    assert np.allclose(diag[np.isfinite(diag)], 1.0) and np.allclose(corr, corr.T, equal_nan=True)
    pair = svc.correlation(store, pair=("SIZE", "VALUE"))
    assert -1 <= pair["correlation"] <= 1
    names = store.read_model("factors_US21", columns=["ticker"])["ticker"].unique()[:10]
    risk = svc.portfolio_factor_risk(store, pd.Series(0.1, index=names))
    assert sum(risk["shares"].values()) == pytest.approx(1.0, abs=1e-9) and risk["vol_ann"] > 0
    assert len(fr.columns) >= 20


@pytest.mark.slow  # make test-fast skips it
def test_cli_factors_commands(store):
    root = store.root
    proc = run("factors", "models", "--json", store=root)
    assert proc.returncode == 0 and any(m["model"] == "US21" for m in json.loads(proc.stdout))
    proc = run("factors", "summary", "--json", store=root)
    assert proc.returncode == 0, proc.stderr
    assert {row["index"] if "index" in row else row.get("factor") for row in json.loads(proc.stdout)} >= {"MARKET"}
    proc = run("factors", "correlation", "--pair", "SIZE", "VALUE", "--json", store=root)
    assert proc.returncode == 0 and "correlation" in json.loads(proc.stdout)
    proc = run("factors", "exposures", "NOSUCH", store=root)
    assert proc.returncode != 0 and "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_validate_reads_the_stored_build_instead_of_refitting(store, monkeypatch):
    def no_refit(*_a, **_k):
        raise AssertionError("validate must read the stored build, not refit the model")

    monkeypatch.setattr(svc, "fit_factor_model", no_refit)
    monkeypatch.setattr(svc, "load_factor_inputs", no_refit)
    table = svc.validate_model(store, "US21")
    assert set(table["covariance"]) == {"eigen on", "eigen off"}
    assert {"bias", "band_lo", "band_hi"} <= set(table.columns)
    factors = table[(table["group"] == "factor") & (table["covariance"] == "eigen on")]
    assert list(factors["name"]) == svc.ensure_built(store).meta["factors"]


def _tech_names(store, n=6):
    exp = svc.factor_risk_inputs(store, svc.ensure_built(store), pd.Timestamp(svc.ensure_built(store).meta["end"]))
    return exp, list(exp.exposures.index[exp.exposures["TECHNOLOGY"] == 1][:n])


def test_industry_share_of_a_pure_tech_book_equals_the_explicit_x_f_x(store):
    inputs, names = _tech_names(store)
    factors = svc.ensure_built(store).meta["factors"]
    r = svc.portfolio_factor_risk(store, pd.Series(1.0, index=names))
    w = np.full(len(names), 1 / len(names))
    X = inputs.exposures.loc[names, factors].fillna(0.0).to_numpy()
    F = np.nan_to_num(inputs.covariance)
    x = X.T @ w
    s2 = inputs.specific_var.reindex(names).to_numpy()
    total = x @ F @ x + (w**2 * s2).sum()
    ind = [k for k, f in enumerate(factors) if f in svc.load_spec("US21").industry_factors]
    assert r["shares"]["industries"] > 0.01
    assert r["shares"]["industries"] == pytest.approx((x[ind] * (F @ x)[ind]).sum() / total, rel=1e-9)
    assert r["vol_ann"] == pytest.approx(np.sqrt(252 * total), rel=1e-12)


@pytest.mark.slow  # make test-fast skips it
def test_factors_risk_refuses_mixed_quantities_and_answers_a_net_zero_book(store, tmp_path):
    """What `factors risk FILE` runs (its CLI form runs in tests/cli/test_every_command.py)."""
    import warnings

    from riskstrata.errors import DataValidationError

    _, names = _tech_names(store, 4)
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(f"ticker,shares,weight\n{names[0]},100,\n{names[1]},,0.5\n")
    with pytest.raises(DataValidationError, match="mixed quantities"):
        svc.holdings_factor_risk(store, mixed)
    shares = tmp_path / "shares.csv"
    shares.write_text(f"ticker,shares\n{names[0]},100\n{names[1]},50\nNOSUCH,10\n")
    body = svc.holdings_factor_risk(store, shares)
    assert body["analyzed"].startswith("2/3") and body["excluded"][0]["reason"] == "unknown symbol"
    neutral = tmp_path / "neutral.csv"
    neutral.write_text(f"ticker,weight\n{names[0]},0.5\n{names[1]},0.5\n{names[2]},-0.5\n{names[3]},-0.5\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning, no null
        body = svc.holdings_factor_risk(store, neutral)
    assert body["net"] == pytest.approx(0.0, abs=1e-12) and body["vol_ann"] > 0
    assert sum(body["shares"].values()) == pytest.approx(1.0, abs=1e-9)


def test_portfolio_analysis_adds_the_factor_group_decomposition_once_built(store):
    from riskstrata.services.cascade import build_cascade
    from riskstrata.services.portfolio import analyze_portfolio

    build_cascade(store)
    names = store.read_model("factors_US21", columns=["ticker"])["ticker"].unique()[:5]
    a = analyze_portfolio(store, {n: 0.2 for n in names})
    assert a.factor_risk is not None
    assert sum(a.factor_risk["shares"].values()) == pytest.approx(1.0, abs=1e-9)
    _, tech = _tech_names(store, 5)
    a = analyze_portfolio(store, {n: 0.2 for n in tech})
    assert a.factor_risk["shares"]["industries"] > 0.01


def test_api_models_and_summary_show_every_spec_factor_with_its_coverage(store):
    from tests.api.test_ours import _client

    svc.ensure_built(store)
    with _client(store) as client:
        models = {m["model"]: m for m in client.get("/api/factors/models").json()["models"]}
        us21 = models["US21"]
        assert us21["factors"] == 21 and us21["estimated"] == 21 - len(us21["not_estimated"])
        assert set(us21["coverage"]) == set(svc.load_spec("US21").factors)
        rows = {r["factor"]: r for r in client.get("/api/factors/US21/summary").json()["factors"]}
        assert list(rows) == svc.load_spec("US21").factors
        assert rows["SIZE"]["status"] == "estimated" and rows["SIZE"]["reason"] is None
        assert "not estimated on" in rows["GROWTH"]["reason"] and rows["GROWTH"]["dates_estimated"] > 0
        _, names = _tech_names(store, 4)
        body = {"holdings": [{"ticker": n, "weight": w} for n, w in zip(names, (0.5, 0.5, -0.5, -0.5))]}
        risk = client.post("/api/factors/US21/risk", json=body).json()
        assert risk["net"] == pytest.approx(0.0, abs=1e-12) and risk["vol_ann"] > 0
