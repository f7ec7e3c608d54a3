"""What the web dashboard shows, assembled from the other services (the pages do no math).

Each ``*_view`` function returns plain numbers and frames for one page: the store's models
(home), one stock's four-stage walkthrough (stock), a factor model's summary (factors), and a
portfolio's analysis (portfolio). Everything here calls :mod:`riskstrata.services.cascade`,
:mod:`~riskstrata.services.factors` and :mod:`~riskstrata.services.portfolio` or the pure
engine functions they use; the identities the pages promise (the walkthrough's last points are
the attribution bars, the hedge list is ``portfolio hedge``'s) hold because the numbers come
from the same functions.

Units: returns and shares are decimals (0.05 = 5 %), hedge ratios are $ of ETF per $1 of stock
(negative = short), dollars are USD.
"""

from __future__ import annotations

import contextlib
import difflib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from riskstrata.cascade.attribution import Attribution, geometric_attribution
from riskstrata.data.store import Store
from riskstrata.errors import DataValidationError, DateOutOfRange, InsufficientHistory, RiskstrataError
from riskstrata.factors import summary as S
from riskstrata.factors.validation import bias_band, bias_statistic
from riskstrata.portfolio import holdings as H
from riskstrata.portfolio.risk import describe_trades, trade_list
from riskstrata.services import cascade, factors, portfolio
from riskstrata.services.cascade import LSTAR_FIELDS, MODEL

# The rows a stock page reads in one scan: the bridge's inputs and L*'s.
STOCK_FIELDS = ["returns_gross", "l1_cfr", "l2_cfr", "l3_cfr", *LSTAR_FIELDS]
LEVEL_ERS = {  # explained-risk shares per level: the parts of a stock's variance, summing to 1
    "L1": {"market": "l1_mkt_er", "residual": "l1_res_er"},
    "L2": {"market": "l2_mkt_er", "sector": "l2_sec_er", "residual": "l2_res_er"},
    "L3": {"market": "l3_mkt_er", "sector": "l3_sec_er", "subsector": "l3_sub_er", "residual": "l3_res_er"},
}
LEVEL_HRS = {  # hedge ratio fields per level and which ETF each trades
    "L1": {"l1_mkt_hr": "market_etf"},
    "L2": {"l2_mkt_hr": "market_etf", "l2_sec_hr": "sector_etf"},
    "L3": {"l3_mkt_hr": "market_etf", "l3_sec_hr": "sector_etf", "l3_sub_hr": "subsector_etf"},
}
PERIODS = {"3m": pd.DateOffset(months=3), "6m": pd.DateOffset(months=6), "1y": pd.DateOffset(years=1),
           "3y": pd.DateOffset(years=3), "5y": pd.DateOffset(years=5)}
DEFAULT_PERIOD = "1y"
TOP_FACTORS = 6  # the cumulative chart shows this many factors (by |cumulative return|) until others are picked
CUMULATIVE_POINTS = 600  # the cumulative chart's points per factor: every k-th day, the last day always kept


# ----------------------------------------------------------------------------- home


@dataclass
class ModelStatus:
    """One model of the store, as the home page lists it."""

    name: str
    kind: str                  # "cascade" or "factor"
    built: bool
    version: str | None = None
    start: str | None = None
    end: str | None = None      # data as of
    universe: int | None = None  # securities on the last date (cascade) or factors (Model B)
    built_at: str | None = None  # UTC commit time of the version
    description: str = ""


def models_status(store: Store, universe_size: int | None = None) -> list[ModelStatus]:
    """The cascade and every packaged factor spec, built or not (``universe_size``: the cascade's
    last-date universe when the caller holds it in memory)."""
    out = []
    version = store.current_version(MODEL)
    if version is None:
        out.append(ModelStatus("Model A: ETF cascade", "cascade", False, description="market → sector → subsector ETFs"))
    else:
        meta = store.model_meta(MODEL, version)
        out.append(ModelStatus("Model A: ETF cascade", "cascade", True, version, meta.get("start"), meta.get("end"),
                               universe_size, _utc_minutes(meta.get("committed_at")),
                               "market → sector → subsector ETFs"))
    for row in factors.list_models(store).itertuples():
        meta = store.model_meta(factors.model_names(row.model)["factors"], row.version) if row.built else {}
        out.append(ModelStatus(row.model, "factor", bool(row.built), row.version, row.start, row.end,
                               int(row.factors), _utc_minutes(meta.get("committed_at")), str(row.description)))
    return out


def _utc_minutes(stamp: object) -> str | None:
    return None if not stamp else pd.Timestamp(str(stamp)).strftime("%Y-%m-%d %H:%M UTC")


def suggest_tickers(query: str, known: list[str], n: int = 8) -> list[str]:
    """Tickers that look like ``query``: prefix matches first, then close spellings."""
    q = query.strip().upper()
    if not q:
        return []
    prefix = [t for t in known if t.startswith(q)]
    close = difflib.get_close_matches(q, known, n=n, cutoff=0.5)
    return list(dict.fromkeys(prefix[:n] + close))[:n]


# ----------------------------------------------------------------------------- stock


@dataclass
class StockView:
    """One stock over a period: the latest metrics row, the bridge and its daily lines, L*.

    walkthrough: (days × 4) cumulative returns, decimals: ``gross`` (Π(1+r) − 1), ``market_hedged``
    (gross − the market bar's path = prod_G − prod_L1), ``sector_hedged`` (prod_G − prod_L2),
    ``subsector_residual`` (prod_G − prod_L3). Their last values are gross, gross − market,
    gross − market − sector and the residual bar of ``attribution``.
    lstar: (days × [lstar_level, …]) the stored L* per day.
    """

    ticker: str
    start: pd.Timestamp
    end: pd.Timestamp
    metrics: dict
    attribution: Attribution
    walkthrough: pd.DataFrame
    lstar: pd.DataFrame
    exposures: pd.Series | None = None
    exposures_model: str | None = None
    notes: list[str] = field(default_factory=list)

    def risk_shares(self) -> dict[str, dict[str, float | None]]:
        """Explained-risk shares per level (L1, L2, L3), each summing to 1."""
        return {lvl: {part: self.metrics.get(f) for part, f in parts.items()} for lvl, parts in LEVEL_ERS.items()}

    def hedges(self) -> dict[str, list[dict]]:
        """Per level: each leg's ETF and hedge ratio ($ of ETF per $1 of stock; negative = short)."""
        out = {}
        for lvl, legs in LEVEL_HRS.items():
            out[lvl] = [{"field": f, "etf": self.metrics.get(etf_key), "hr": self.metrics.get(f)}
                        for f, etf_key in legs.items()
                        if self.metrics.get(f) is not None and self.metrics.get(etf_key)]  # no ETF: the level fell back
        return out


def period_bounds(model_start: str, model_end: str, period: str | None, start: str | None, end: str | None
                  ) -> tuple[pd.Timestamp, pd.Timestamp, str]:
    """(start, end, label) of a page's period: a preset (3m … 5y, max) ending on the model's last
    date, or an explicit range clipped to the model. Raises DateOutOfRange for an empty range."""
    first, last = pd.Timestamp(model_start), pd.Timestamp(model_end)
    try:
        if start or end:
            lo = max(first, pd.Timestamp(start)) if start else first
            hi = min(last, pd.Timestamp(end)) if end else last
            label = "custom"
        else:
            label = period if period in PERIODS or period == "max" else DEFAULT_PERIOD
            hi = last
            lo = first if label == "max" else max(first, last - PERIODS[label])
    except (ValueError, TypeError) as exc:
        raise DataValidationError(f"dates must be YYYY-MM-DD: {exc}") from None
    if lo >= hi:
        raise DateOutOfRange(f"the period {lo.date()} … {hi.date()} is empty; the model covers "
                             f"{first.date()} … {last.date()}")
    return lo, hi, label


def stock_view(store: Store, ticker: str, start: pd.Timestamp, end: pd.Timestamp, latest: dict | None = None,
               factor_model: factors.LatestFactorModel | None = None) -> StockView:
    """The stock page's numbers for ``ticker`` over [start, end].

    ``latest``: the ticker's latest metrics row when the caller holds it (a server's published
    version); otherwise it is read. ``factor_model``: Model B in memory, for the exposures.
    """
    rows = cascade.history(store, ticker, start, end, STOCK_FIELDS)
    if rows.empty:
        raise InsufficientHistory(f"{ticker} has no model rows between {start.date()} and {end.date()}")
    bridge = geometric_attribution(rows["returns_gross"], rows["l1_cfr"], rows["l2_cfr"], rows["l3_cfr"])
    lines = bridge.lines
    walk = pd.DataFrame({"gross": lines["prod_G"] - 1.0, "market_hedged": lines["prod_G"] - lines["prod_L1"],
                         "sector_hedged": lines["prod_G"] - lines["prod_L2"],
                         "subsector_residual": lines["prod_G"] - lines["prod_L3"]})
    m = latest if latest is not None else cascade.metrics(store, ticker, end)
    view = StockView(ticker.upper(), start, end, m, bridge, walk, cascade.lstar_from_rows(rows))
    if factor_model is not None:
        try:
            view.exposures = factors.stock_exposures(store, ticker, None, factor_model.model.spec, latest=factor_model)
            view.exposures_model = factor_model.model.spec
        except RiskstrataError as exc:
            view.notes.append(f"no factor exposures: {exc}")
    return view


# ----------------------------------------------------------------------------- factor summary


@dataclass
class FactorView:
    """A built factor model's summary page.

    summary: (K × SUMMARY_COLUMNS) per-factor performance (decimals); correlation: (K × K);
    cumulative: (points × K) compounded returns on every k-th day (the last kept);
    validation: (K × [bias, n_obs, band_lo, band_hi, inside_band]) of one-day-ahead forecasts.
    """

    spec: str
    version: str
    meta: dict
    summary: pd.DataFrame
    correlation: pd.DataFrame
    cumulative: pd.DataFrame
    top: list[str]
    validation: pd.DataFrame


def factor_view(store: Store, latest: factors.LatestFactorModel) -> FactorView:
    """The factor summary page of a built model held in memory (one read: its covariance diagonal)."""
    fr = latest.factor_returns
    table = S.factor_summary(fr)
    corr = S.correlation_matrix(fr)
    path = S.cumulative_returns(fr)
    step = max(1, int(np.ceil(len(path) / CUMULATIVE_POINTS)))
    keep = np.unique(np.r_[np.arange(0, len(path), step), len(path) - 1]) if len(path) else []
    top = table["cumulative_return"].abs().sort_values(ascending=False).index[:TOP_FACTORS].tolist()
    return FactorView(latest.model.spec, latest.version, latest.model.meta, table, corr, path.iloc[keep], top,
                      factor_bias(store, latest))


def factor_bias(store: Store, latest: factors.LatestFactorModel) -> pd.DataFrame:
    """Bias statistic of each factor's daily return against the volatility the model forecast at
    the previous close (√ of the covariance diagonal), with its ≈ 95 % band 1 ± √(2/T)."""
    names = latest.model.meta["factors"]
    diag = latest.model.read(store, "factor_cov", columns=["date", *[f"{f}|{f}" for f in names]])
    diag = diag.set_index("date").sort_index()
    diag.columns = names
    returns = latest.factor_returns.reindex(columns=names)
    # The forecast for day t is the covariance published at the close of the model day before t.
    forecast = np.sqrt(diag.clip(lower=0)).shift(1).reindex(returns.index)
    r, s = returns.to_numpy(), forecast.to_numpy()
    bias = bias_statistic(r, s)
    n_obs = (np.isfinite(r) & np.isfinite(s) & (s > 0)).sum(axis=0)
    bands = [bias_band(int(n)) if n > 0 else (np.nan, np.nan) for n in n_obs]
    out = pd.DataFrame({"bias": bias, "n_obs": n_obs, "band_lo": [b[0] for b in bands],
                        "band_hi": [b[1] for b in bands]}, index=pd.Index(names, name="factor"))
    out["inside_band"] = (out["bias"] >= out["band_lo"]) & (out["bias"] <= out["band_hi"])
    return out


def pair_view(latest: factors.LatestFactorModel, a: str, b: str) -> dict:
    """The correlation of two factors over all days, with its rolling history (:func:`summary.pair_correlation`)."""
    return S.pair_correlation(latest.factor_returns, a.strip().upper(), b.strip().upper())


# ----------------------------------------------------------------------------- portfolio


@dataclass
class PortfolioView:
    """The portfolio page: analysis, the trade list at every hedge level, optional scaling and look-through."""

    analysis: portfolio.PortfolioAnalysis
    value: float
    trades: dict[str, pd.DataFrame]      # level → trade_list (etf, side, notional_usd, hedge_ratio)
    descriptions: dict[str, str]         # level → "short $X SPY, …"
    scale: portfolio.ScaleResult | None = None
    lookthrough: portfolio.LookThroughResult | None = None
    notes: list[str] = field(default_factory=list)
    hedged_value: float = float("nan")   # USD the trades are sized on (``portfolio hedge``'s rule)
    hedge_basis: str = ""


def holdings_from_text(text: str, name: str = "pasted holdings") -> H.Holdings:
    """Holdings from CSV text exactly as ``riskstrata portfolio … FILE.csv`` reads a file (same
    header detection, delimiters and notes), without writing the text anywhere."""
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise DataValidationError("no holdings: paste CSV lines (a header such as ticker,shares then one line "
                                  "per position) or choose a file")
    cells, lines, notes = H._csv_cells(text, name)  # the file reader's own parser, on text in memory
    return H._from_table(cells, name, lines, notes)


def portfolio_view(store: Store, holdings: H.Holdings, value: float, scale_exposure: str | None = None,
                   scale_reduce: float | None = None, held: portfolio.PortfolioContext | None = None) -> PortfolioView:
    """Analyse holdings for a portfolio of ``value`` USD: the analysis, hedge trades at L1, L2, L3
    and L* (``portfolio hedge``'s list: the analysis' hedge ratios × the hedged dollars), scaling when asked,
    and the look-through when ETF holdings are loaded. ``held``: the published version's portfolio
    context (a server's), so the page reads only the ETF holdings, if any, from the store."""
    # Without it, the analysis, scaling and look-through read the store on one DuckDB connection.
    with store.one_connection() if held is None else contextlib.nullcontext():
        return _portfolio_view(store, holdings, value, scale_exposure, scale_reduce, held)


def _portfolio_view(store: Store, holdings: H.Holdings, value: float, scale_exposure: str | None,
                    scale_reduce: float | None, held: portfolio.PortfolioContext | None) -> PortfolioView:
    analysis = portfolio.analyze_portfolio(store, holdings, None, value, held)
    hedged, basis = portfolio.hedged_dollars(analysis, value)  # what `portfolio hedge` sizes its trades on
    trades, words = {}, {}
    for level in portfolio.HEDGE_LEVELS:
        trades[level] = trade_list(analysis.hedge_ratios[level], hedged)
        words[level] = describe_trades(trades[level])
    view = PortfolioView(analysis, value, trades, words, hedged_value=hedged, hedge_basis=basis)
    if scale_exposure:
        view.scale = portfolio.scale_portfolio(store, holdings, scale_exposure, float(scale_reduce or 0.0), value,
                                               held=held)
    if store.has_table("etf_holdings"):
        try:
            view.lookthrough = portfolio.lookthrough_portfolio(store, holdings, held=held)
        except RiskstrataError as exc:
            view.notes.append(f"no look-through: {exc}")
    return view


def sample_holdings(tickers: list[str], etfs: list[str], n: int = 8) -> str:
    """A sample holdings CSV for this store: ``n`` stocks spread over the universe, one ETF, a cash
    line and a symbol no store knows, in USD market values (so the page shows matching and its
    reasons)."""
    if not tickers:
        raise DataValidationError("the model has no stocks to build a sample portfolio from")
    picks = list(dict.fromkeys(tickers[int(i)] for i in np.linspace(0, len(tickers) - 1, min(n, len(tickers)))))
    rows = ["ticker,market_value"] + [f"{t},{25_000 * (k % 4 + 1)}" for k, t in enumerate(picks)]
    if etfs:
        rows.append(f"{etfs[0]},100000")
    rows += ["CASH,50000", "NOTATICKER,20000"]
    return "\n".join(rows) + "\n"
