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


def test_validate_reports_bias_statistics_with_eigen_on_and_off(store):
    table = svc.validate_model(store, "US21")
    assert set(table["covariance"]) == {"eigen on", "eigen off"}
    assert {"bias", "band_lo", "band_hi"} <= set(table.columns)
    assert store.has_table("factor_validation_US21")


def test_portfolio_analysis_adds_the_factor_group_decomposition_once_built(store):
    from riskstrata.services.cascade import build_cascade
    from riskstrata.services.portfolio import analyze_portfolio

    build_cascade(store)
    names = store.read_model("factors_US21", columns=["ticker"])["ticker"].unique()[:5]
    a = analyze_portfolio(store, {n: 0.2 for n in names})
    assert a.factor_risk is not None
    assert sum(a.factor_risk["shares"].values()) == pytest.approx(1.0, abs=1e-9)
