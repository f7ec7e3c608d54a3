"""Model B over the store: gather panels, build a spec, and answer questions from the build.

A build writes one versioned model per spec, ``factors_<SPEC>``, whose parts are the long
table of exposures (one row per date and security, one column per factor); its meta.json
names the companion versions of ``factor_returns_<SPEC>`` (factor returns, t-stats and daily
diagnostics), ``factor_cov_<SPEC>`` (the adjusted covariance on each date, long) and
``specific_risk_<SPEC>``. Readers pin those versions, so a half-finished rebuild is never mixed
with a finished one. Asking for an unbuilt spec builds it first (auto-build).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from riskstrata.data.ingest import load_returns
from riskstrata.data.master import SecurityMaster
from riskstrata.data.store import Store
from riskstrata.errors import DataValidationError, ModelNotBuilt, StoreError, UnknownTicker
from riskstrata.factors import summary as S
from riskstrata.factors.model import FactorInputs, FactorModelResult, fit_factor_model
from riskstrata.factors.spec import ModelSpec, load_spec, packaged_specs

Progress = Callable[[str], None]
SHARES_MAX_AGE_DAYS = 3000  # ~8 years; other fundamentals go stale after the panel default (400 days)


def model_names(spec: str) -> dict[str, str]:
    return {part: f"{part}_{spec}" for part in ("factors", "factor_returns", "factor_cov", "specific_risk")}


def list_models(store: Store) -> pd.DataFrame:
    """Packaged specs and whether each is built in the store (version, date range)."""
    rows = []
    for name in sorted(packaged_specs()):
        spec = load_spec(name)
        version = store.current_version(model_names(name)["factors"])
        meta = store.model_meta(model_names(name)["factors"]) if version else {}
        rows.append({"model": name, "factors": len(spec.factors), "description": spec.description,
                     "built": version is not None, "version": version, "start": meta.get("start"), "end": meta.get("end")})
    return pd.DataFrame(rows)


def load_factor_inputs(store: Store, start: object | None = None, end: object | None = None) -> FactorInputs:
    """Panels for the stocks in the store, keyed by security_id (T × N)."""
    from riskstrata.data.fundamentals import fundamentals_panel
    from riskstrata.factors.descriptors import market_cap_panel

    master = SecurityMaster.from_store(store)
    records = master.records
    stocks = set(records.loc[records["asset_type"] == "stock", "security_id"])
    returns = load_returns(store, start, end)
    returns = returns[[c for c in returns.columns if c in stocks]]
    if returns.shape[1] < 10:
        raise StoreError("fewer than 10 stocks with prices in the store; ingest prices first")
    ids = list(returns.columns)
    prices = store.read_table("prices", columns=["security_id", "date", "adj_close", "volume"],
                              where=f"security_id IN ({', '.join('?' for _ in ids)})", params=ids)
    price = prices.pivot(index="date", columns="security_id", values="adj_close").reindex(index=returns.index, columns=ids)
    volume = prices.pivot(index="date", columns="security_id", values="volume").reindex(index=returns.index, columns=ids)
    if not volume.notna().any().any():
        volume = None
    if not store.has_table("fundamentals"):
        raise StoreError("no fundamentals in the store: run `riskstrata ingest fundamentals FILE` first")
    fields = ("market_cap", "price", "price_to_book", "book_value_per_share", "eps", "pe", "dividend_yield",
              "ebitda", "sales", "total_debt", "shares_outstanding")
    fund = {f: fundamentals_panel(store, f, returns.index, ids) for f in fields if f != "shares_outstanding"}
    # Share counts move slowly: carry the last known count across long gaps between snapshots
    # (the real snapshots skip 2018-02 … 2024-10), so caps follow the daily price throughout.
    shares = fundamentals_panel(store, "shares_outstanding", returns.index, ids, max_age_days=SHARES_MAX_AGE_DAYS)
    cap = market_cap_panel(price, shares)
    sector = pd.Series(dtype=object)
    if store.has_table("classifications"):
        cls = store.read_table("classifications", columns=["security_id", "valid_from", "gics_sector"])
        cls = cls.dropna(subset=["gics_sector"]).sort_values("valid_from")
        sector = cls.groupby("security_id")["gics_sector"].last()
    return FactorInputs(returns, cap, sector.reindex(ids), fund, volume, shares, price)


def build_factor_model(store: Store, spec: str | ModelSpec = "US21", start: object | None = None,
                       end: object | None = None, progress: Progress | None = None) -> dict:
    """Fit a spec on the store's data and publish it (see the module docstring for the layout)."""
    spec = spec if isinstance(spec, ModelSpec) else load_spec(spec)
    say = progress or (lambda _m: None)
    say("loading panels")
    inputs = load_factor_inputs(store, start, end)
    result = fit_factor_model(inputs, spec, progress=say)
    say("writing")
    return publish(store, result)


def publish(store: Store, result: FactorModelResult) -> dict:
    """Write a fitted model to the store: companions first, the exposures model last."""
    names = model_names(result.spec.name)
    master = SecurityMaster.from_store(store)
    tickers = master.records.sort_values("valid_from").groupby("security_id")["ticker"].last()
    label = pd.Index(tickers.reindex(result.tickers).fillna(pd.Series(result.tickers, index=result.tickers)))
    reg = result.regression
    meta = {"spec": result.spec.name, "factors": result.factors, "start": str(result.dates[0].date()),
            "end": str(result.dates[-1].date()), "notes": result.notes, "source": result.spec.source}
    versions = {}
    fr = reg.factor_returns.rename_axis("date").reset_index()
    ts = reg.t_stats.add_prefix("t_").rename_axis("date").reset_index(drop=True)
    diag = pd.DataFrame({"r2": reg.r2, "n_names": reg.n_names, "condition_number": reg.condition_number,
                         "constraint_residual": reg.constraint_residual}).reset_index(drop=True)
    with store.begin_version(names["factor_returns"]) as w:
        w.write_part(pd.concat([fr, ts, diag], axis=1))
        versions["factor_returns"] = w.commit(meta)
    T, K = len(result.dates), len(result.factors)
    cov = result.covariance.adjusted.reshape(T, K * K)
    cov_long = pd.DataFrame(cov, index=result.dates, columns=[f"{a}|{b}" for a in result.factors for b in result.factors])
    with store.begin_version(names["factor_cov"]) as w:
        w.write_part(cov_long.rename_axis("date").reset_index())
        versions["factor_cov"] = w.commit(meta)
    spec_long = result.specific_var.set_axis(label, axis=1).rename_axis("date").reset_index().melt(
        id_vars="date", var_name="ticker", value_name="specific_var").dropna()
    with store.begin_version(names["specific_risk"]) as w:
        w.write_part(spec_long)
        versions["specific_risk"] = w.commit(meta)
    N = len(result.tickers)
    flat = result.exposures.reshape(T * N, K)
    keep = ~np.isnan(flat).all(axis=1)
    exp_long = pd.DataFrame(flat[keep], columns=result.factors)
    exp_long.insert(0, "date", np.repeat(result.dates.to_numpy(), N)[keep])
    exp_long.insert(1, "security_id", np.tile(np.asarray(result.tickers, dtype=object), T)[keep])
    exp_long.insert(2, "ticker", np.tile(np.asarray(label, dtype=object), T)[keep])
    exp_long["imputed"] = result.imputed.reshape(T * N, K)[keep].any(axis=1)
    with store.begin_version(names["factors"]) as w:
        w.write_part(exp_long)
        version = w.commit({**meta, "companions": versions})
    return {"model": result.spec.name, "version": version, "factors": K, "dates": T, "names": N, "notes": result.notes}


@dataclass
class BuiltModel:
    """A built spec pinned to one version: its exposures version and the companions it names."""

    spec: str
    meta: dict
    version: str | None = None  # the exposures version (None: whichever is current when read)

    def read(self, store: Store, part: str, **kw) -> pd.DataFrame:
        names = model_names(self.spec)
        version = self.version if part == "factors" else self.meta["companions"][part]
        return store.read_model(names[part], version=version, **kw)


def ensure_built(store: Store, spec: str = "US21", progress: Progress | None = None) -> BuiltModel:
    """The built model, building it first when it is not (auto-build, with progress)."""
    name = model_names(spec)["factors"]
    if store.current_version(name) is None:
        if spec not in packaged_specs():
            raise ModelNotBuilt(f"model {spec!r} is not built and is not a packaged spec")
        build_factor_model(store, spec, progress=progress)
    version = store.current_version(name)
    return BuiltModel(spec, store.model_meta(name, version), version)


def factor_returns(store: Store, spec: str = "US21", progress: Progress | None = None) -> pd.DataFrame:
    return _factor_returns(store, ensure_built(store, spec, progress))


def _factor_returns(store: Store, m: BuiltModel) -> pd.DataFrame:
    """(dates × factors) daily factor returns of a built model."""
    return m.read(store, "factor_returns", columns=["date", *m.meta["factors"]]).set_index("date").sort_index()


def summary(store: Store, spec: str = "US21", progress: Progress | None = None) -> pd.DataFrame:
    """Per factor: CAGR, cumulative return, annualised vol, Sharpe, latest return, max drawdown."""
    return S.factor_summary(factor_returns(store, spec, progress))


def correlation(store: Store, spec: str = "US21", pair: tuple[str, str] | None = None,
                window: int | None = None) -> pd.DataFrame | dict:
    fr = factor_returns(store, spec)
    if pair:
        return S.pair_correlation(fr, pair[0], pair[1], window)
    return S.correlation_matrix(fr, window)


@dataclass(frozen=True)
class FactorRiskInputs:
    """What a portfolio's factor risk needs on one date.

    exposures:    (names × [factors…, security_id, ticker, …]) on the model date nearest before
                  the asked date, indexed by upper-case ticker.
    covariance:   (K, K) factor covariance of ``cov_date`` (daily, decimal²).
    specific_var: ticker → specific variance on ``cov_date`` (daily, decimal²).
    """

    exposures: pd.DataFrame
    covariance: np.ndarray
    cov_date: pd.Timestamp
    specific_var: pd.Series


@dataclass(frozen=True)
class LatestFactorModel:
    """A built model's latest snapshot, as a server holds it per published version: the whole
    factor-return history (T × K, small) and the risk inputs of the last date."""

    model: BuiltModel
    version: str
    factor_returns: pd.DataFrame  # dates × factors
    risk: FactorRiskInputs

    @property
    def end(self) -> pd.Timestamp:
        return pd.Timestamp(self.model.meta["end"])


def load_latest(store: Store, spec: str = "US21", version: str | None = None) -> LatestFactorModel:
    """A built spec's ``version`` (default: the current one) in memory; ModelNotBuilt if it is not built."""
    name = model_names(spec)["factors"]
    version = version or store.current_version(name)
    if version is None:
        raise ModelNotBuilt(f"model {spec!r} is not built")
    m = BuiltModel(spec, store.model_meta(name, version), version)
    return LatestFactorModel(m, version, _factor_returns(store, m), factor_risk_inputs(store, m, pd.Timestamp(m.meta["end"])))


def stock_exposures(store: Store, ticker: str, date: object | None = None, spec: str = "US21",
                    latest: LatestFactorModel | None = None) -> pd.Series:
    """A stock's exposure to every factor on a date (default: the model's last).

    ``latest``: the model's snapshot in memory; a name on its last date is answered from it.
    """
    m = ensure_built(store, spec) if latest is None else latest.model
    day = pd.Timestamp(date) if date is not None else pd.Timestamp(m.meta["end"])
    factors = m.meta["factors"]
    if latest is not None and day >= latest.end and ticker.strip().upper() in latest.risk.exposures.index:
        row = latest.risk.exposures.loc[ticker.strip().upper()]
    else:
        sid = SecurityMaster.from_store(store).resolve(ticker, day)
        rows = m.read(store, "factors", where="security_id = ? AND date <= ?", params=[sid, day.to_pydatetime()])
        if rows.empty:
            raise UnknownTicker(ticker, f"no factor exposures on or before {day.date()}")
        row = rows.sort_values("date").iloc[-1]
    return pd.Series({f: float(row[f]) for f in factors}, name=f"{ticker} {pd.Timestamp(row['date']).date()}")


def portfolio_factor_risk(store: Store, weights: pd.Series, date: object | None = None, spec: str = "US21",
                          latest: LatestFactorModel | None = None) -> dict:
    """X'FX + specific for ticker weights, with Euler shares by group (market/styles/industries/specific).

    ``latest``: the model's snapshot in memory, used when the date is its last (or later).
    """
    m = ensure_built(store, spec) if latest is None else latest.model
    day = pd.Timestamp(date) if date is not None else pd.Timestamp(m.meta["end"])
    inputs = latest.risk if latest is not None and day >= latest.end else factor_risk_inputs(store, m, day)
    return factor_risk(inputs, weights, m.meta["factors"], spec)


def factor_risk_inputs(store: Store, m: BuiltModel, day: pd.Timestamp) -> FactorRiskInputs:
    """Exposures, covariance and specific variances in force on ``day``, read from the store."""
    exp = _exposures_on(store, m, day)
    cov_row = m.read(store, "factor_cov", where="date <= ?", params=[day.to_pydatetime()]).sort_values("date").iloc[-1]
    factors = m.meta["factors"]
    K = len(factors)
    F = np.array([cov_row[f"{a}|{b}"] for a in factors for b in factors], dtype=float).reshape(K, K)
    cov_date = pd.Timestamp(cov_row["date"])
    spec_var = m.read(store, "specific_risk", where="date = ?", params=[cov_date.to_pydatetime()])
    return FactorRiskInputs(exp, F, cov_date, spec_var.set_index("ticker")["specific_var"])


def factor_risk(inputs: FactorRiskInputs, weights: pd.Series, factors: list[str], spec: str) -> dict:
    """The portfolio's factor risk from one date's inputs (pure: no store)."""
    exp = inputs.exposures
    w = weights.groupby(weights.index.str.upper()).sum()
    unknown = sorted(set(w.index) - set(exp.index))
    w = w.reindex(exp.index).fillna(0.0)
    if not w.abs().sum():
        raise DataValidationError(f"no holdings are in the factor model on {inputs.cov_date.date()}: {unknown}")
    F = inputs.covariance
    s2 = inputs.specific_var.reindex(exp.index).fillna(0.0).to_numpy()
    no_forecast = [f for f, v in zip(factors, np.diag(F)) if not np.isfinite(v)]
    F = np.nan_to_num(F)  # a factor never estimated (a thin industry) carries no forecast risk
    X = exp[factors].fillna(0.0).to_numpy()
    x = X.T @ w.to_numpy()
    contrib = x * (F @ x)
    specific = float((w.to_numpy() ** 2 * s2).sum())
    total = float(contrib.sum() + specific)
    n_styles = len(load_spec(spec).style_factors) if spec in packaged_specs() else 0
    shares = {"market": contrib[0] / total, "styles": contrib[1:1 + n_styles].sum() / total,
              "industries": contrib[1 + n_styles:].sum() / total, "specific": specific / total}
    return {"date": str(inputs.cov_date.date()), "vol_ann": float(np.sqrt(total * 252)),
            "shares": {k: float(v) for k, v in shares.items()}, "exposures": dict(zip(factors, map(float, x))),
            "unknown": unknown, "factors_without_forecast": no_forecast}


def _exposures_on(store: Store, m: BuiltModel, day: pd.Timestamp) -> pd.DataFrame:
    rows = m.read(store, "factors", where="date <= ? AND date >= ?",
                  params=[day.to_pydatetime(), (day - pd.Timedelta(days=10)).to_pydatetime()])
    if rows.empty:
        raise DataValidationError(f"no factor exposures near {day.date()}")
    last = rows[rows["date"] == rows["date"].max()]
    return last.set_index(last["ticker"].str.upper())


def validate_model(store: Store, spec: str = "US21", progress: Progress | None = None) -> pd.DataFrame:
    """Refit the spec on the store's data and report forecast quality with the eigenfactor
    adjustment on (the published forecast) and off (raw EWMA + Newey–West), side by side.
    The report is also written to table ``factor_validation_<SPEC>``."""
    from riskstrata.factors.validation import validation_report

    spec_obj = load_spec(spec)
    say = progress or (lambda _m: None)
    say("loading panels")
    result = fit_factor_model(load_factor_inputs(store), spec_obj, progress=say)
    say("validating")
    frames = []
    for label, cov in (("eigen on", result.covariance.adjusted), ("eigen off", result.covariance.raw)):
        report = validation_report(result.factor_returns, cov, result.regression.specific_returns,
                                   result.specific_var, result.exposures, result.market_cap,
                                   r2=result.regression.r2)
        frames.append(report.table.assign(covariance=label))
    table = pd.concat(frames, ignore_index=True)
    store.write_table(f"factor_validation_{spec_obj.name}", table)
    return table
