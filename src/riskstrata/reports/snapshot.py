"""The canonical snapshot of a ticker or a portfolio (what ``POST /api/snapshot`` returns).

One dict, JSON-ready, with the blocks the commercial service names (``snapshot``,
``time_behavior``, ``attribution``, ``risk_summary``, ``metadata``), filled from riskstrata's
services:

- ``snapshot``: the matched positions with their L3 explained-risk shares and hedge ratios, the
  Risk Index (100 · σ_p / σ_SPY from the model covariance) and its Euler decomposition by role
  (``variance_decomposition``, sums to 1; a negative share diversifies), hedge ratios per level
  ($ of ETF per $1 of gross), the book in dollars, and what was not analysed;
- ``time_behavior`` / ``attribution``: the book with frozen weights over the last
  ``lookback_days`` model dates: cumulative return and drawdown, and the daily strips
  market = l1_cfr, sector = l2_cfr − l1_cfr, subsector = l3_cfr − l2_cfr, residual = gross − l3_cfr,
  with the geometric bridge of the whole period (its bars add up to the gross return exactly);
- ``risk_summary``: dominant drivers, concentration flags, top exposures.

A ticker's snapshot is the snapshot of a book holding only that ticker, plus ``ticker_meta`` and
its L*, recommended hedge level and per-level shares from :func:`riskstrata.services.cascade.metrics`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskstrata.cascade.attribution import geometric_attribution
from riskstrata.data.master import SecurityMaster
from riskstrata.data.store import Store
from riskstrata.errors import DataValidationError, InsufficientHistory
from riskstrata.portfolio.risk import NEGATIVE_SHARE_NOTE
from riskstrata.services import cascade
from riskstrata.services.portfolio import PortfolioAnalysis, analyze_portfolio, frozen_daily

MIN_LOOKBACK, MAX_LOOKBACK = 20, 2000   # trading days, the commercial service's bounds
DOMINANT_SHARE = 0.25                   # a role with at least this share of variance is a dominant driver
HIGH_SINGLE_NAME = 0.25                 # |weight| over this (of gross) flags single-name concentration
HIGH_LAYER_SHARE = 0.60                 # one role over this share of variance flags layer concentration
POSITION_FIELDS = ("l3_mkt_er", "l3_sec_er", "l3_sub_er", "l3_res_er", "l3_mkt_hr", "l3_sec_hr", "l3_sub_hr",
                   "vol_23d", "lstar_level")


def _num(x: object) -> float | None:
    """A JSON number or None (NaN / inf / missing → None)."""
    if x is None:
        return None
    v = float(x)
    return v if np.isfinite(v) else None


def lookback_start(store: Store, end: pd.Timestamp, days: int) -> pd.Timestamp:
    """The model date just before the last ``days`` model dates ending at ``end`` (exclusive start)."""
    if not MIN_LOOKBACK <= days <= MAX_LOOKBACK:
        raise DataValidationError(f"lookback_days must be within {MIN_LOOKBACK}..{MAX_LOOKBACK}, got {days}")
    rows = store.query(f"SELECT DISTINCT date FROM model_{cascade.MODEL} WHERE date <= ? ORDER BY date DESC LIMIT ?",
                       [end.to_pydatetime(), days + 1])
    dates = pd.DatetimeIndex(rows["date"])
    return dates.min() if len(dates) > days else dates.min() - pd.Timedelta(days=1)


def _series_blocks(store: Store, a: PortfolioAnalysis, days: int,
                   benchmark: str | None) -> tuple[dict, dict, list[str]]:
    """time_behavior and attribution of the frozen book over the lookback (days with every field only)."""
    end = a.match.as_of
    start = lookback_start(store, end, days)
    daily = frozen_daily(store, a.inputs, start, end).dropna()
    notes: list[str] = []
    teo = [str(d.date()) for d in daily.index]
    gross = daily["returns_gross"]
    wealth = (1.0 + gross).cumprod()
    time_behavior = {"teo": teo, "cumulative_return": (wealth - 1.0).tolist(),
                     "drawdown": (wealth / wealth.cummax() - 1.0).tolist()}
    if benchmark:
        bench = cascade.history(store, benchmark, start + pd.Timedelta(days=1), end, ["returns_gross"])
        r = bench["returns_gross"].reindex(daily.index).fillna(0.0)
        time_behavior["benchmark"] = benchmark.upper()
        time_behavior["benchmark_cumulative_return"] = ((1.0 + r).cumprod() - 1.0).tolist()
    attribution = {"teo": teo, "gross": gross.tolist(), "market": daily["l1_cfr"].tolist(),
                   "sector": (daily["l2_cfr"] - daily["l1_cfr"]).tolist(),
                   "subsector": (daily["l3_cfr"] - daily["l2_cfr"]).tolist(),
                   "residual": (gross - daily["l3_cfr"]).tolist(), "systematic": daily["l3_cfr"].tolist()}
    try:
        bridge = geometric_attribution(gross, daily["l1_cfr"], daily["l2_cfr"], daily["l3_cfr"])
        attribution["period"] = {**bridge.bars(), "days": bridge.days,
                                 "method": "geometric bridge: market + sector + subsector + residual = gross"}
    except InsufficientHistory as exc:
        attribution["period"] = None
        notes.append(f"no attribution over the lookback: {exc}")
    if len(daily) < days:
        notes.append(f"{len(daily)} of the {days} lookback days have returns and fitted hedges for the book")
    return time_behavior, attribution, notes


def _positions(a: PortfolioAnalysis) -> list[dict]:
    pos, share = a.inputs.positions, a.risk.by_position["share"]
    out = []
    for t in pos.index:
        out.append({"ticker": str(t), "weight": float(a.inputs.weights[t]),
                    "value": _num(a.inputs.values[t]) if a.inputs.values is not None else None,
                    "symbol": str(pos.at[t, "security_id"]), "teo": str(a.match.as_of.date()),
                    **{f: _num(pos.at[t, f]) for f in POSITION_FIELDS}, "share_of_variance": _num(share[t])})
        level = out[-1]["lstar_level"]
        out[-1]["lstar_level"] = int(level) if level else None
    return out


def _risk_summary(a: PortfolioAnalysis) -> dict:
    by_role = a.risk.by_role
    ranked = by_role.sort_values(ascending=False)
    dominant = [str(k) for k, v in ranked.items() if v >= DOMINANT_SHARE] or [str(ranked.index[0])]
    weights = a.inputs.weights
    top = weights.abs().sort_values(ascending=False).index[:10]
    return {"risk_index": float(a.risk.risk_index), "volatility_ann": a.risk.vol_ann,
            "market_volatility_ann": a.risk.market_vol_ann, "dominant_drivers": dominant,
            "concentration": {"high_single_name": bool(weights.abs().max() > HIGH_SINGLE_NAME),
                              "high_layer_concentration": bool(by_role.max() > HIGH_LAYER_SHARE)},
            "top_exposures": [{"ticker": str(t), "weight": float(weights[t]),
                               "share_of_variance": _num(a.risk.by_position.at[t, "share"])} for t in top],
            "systematic_risk_share": float(1.0 - by_role["residual"]),
            "holdings_analyzed": a.match.summary(), "share_note": NEGATIVE_SHARE_NOTE}


def snapshot_of(store: Store, a: PortfolioAnalysis, *, kind: str, lookback_days: int = 252, mode: str = "frozen",
                benchmark: str | None = None, title: str | None = None) -> dict:
    """The canonical snapshot dict of an analysed book (see the module docstring)."""
    time_behavior, attribution, notes = _series_blocks(store, a, lookback_days, benchmark)
    shares = {k: float(v) for k, v in a.risk.by_role.items()}
    shares["systematic"] = shares["market"] + shares["sector"] + shares["subsector"]
    hrs = a.hedge_ratios
    meta = store.model_meta(cascade.MODEL)
    snapshot = {
        "type": kind, "title": title, "as_of": str(a.match.as_of.date()), "lookback_trading_days": lookback_days,
        "mode": mode, "benchmark": benchmark.upper() if benchmark else None,
        "positions": _positions(a),
        "variance_decomposition": shares, "variance_decomposition_basis": "model_covariance_euler",
        "variance_decomposition_note": NEGATIVE_SHARE_NOTE,
        "risk_index": {"value": float(a.risk.risk_index), "volatility_ann": a.risk.vol_ann,
                       "market_volatility_ann": a.risk.market_vol_ann, "market_etf": a.inputs.market_etf},
        "hedge_ratios": {lvl: {str(k): float(v) for k, v in hrs[lvl][hrs[lvl] != 0].items()} for lvl in hrs},
        "hedge_ratios_unit": "$ of ETF per $1 of gross (negative = short the ETF)",
        "book": a.book.as_dict() if a.book is not None else None,
        "holdings_analyzed": a.match.summary(),
        "unresolved": [{"ticker": r.ticker if isinstance(r.ticker, str) else r.cusip, "error": r.reason}
                       for r in a.match.excluded.itertuples()],
        "notes": [*a.notes, *notes],
    }
    return {"snapshot": snapshot, "time_behavior": time_behavior, "attribution": attribution,
            "risk_summary": _risk_summary(a),
            "metadata": {"data_as_of": meta["end"], "as_of": snapshot["as_of"], "lookback_days": lookback_days,
                         "mode": mode, "benchmark": snapshot["benchmark"],
                         "model_version": store.current_version(cascade.MODEL),
                         "model": "riskstrata ETF cascade (Model A)"}}


def portfolio_snapshot(store: Store, holdings: object, *, lookback_days: int = 252, as_of: object | None = None,
                       value: float | None = None, benchmark: str | None = None, title: str | None = None) -> dict:
    """Snapshot of a portfolio (holdings as :func:`riskstrata.portfolio.holdings.read_holdings` takes them)."""
    a = analyze_portfolio(store, holdings, as_of, value)
    return snapshot_of(store, a, kind="portfolio", lookback_days=lookback_days, benchmark=benchmark, title=title)


def ticker_snapshot(store: Store, ticker: str, *, lookback_days: int = 252, as_of: object | None = None,
                    benchmark: str | None = None) -> dict:
    """Snapshot of one ticker: the book {ticker: 1.0} plus ``ticker_meta`` and its metrics row."""
    m = cascade.metrics(store, ticker, as_of)
    a = analyze_portfolio(store, {m["ticker"]: 1.0}, m["date"])
    out = snapshot_of(store, a, kind="ticker", lookback_days=lookback_days, benchmark=benchmark, title=m["ticker"])
    records = SecurityMaster.from_store(store).records
    kinds = records.loc[records["security_id"] == m["security_id"], "asset_type"]
    factors = list(dict.fromkeys(e for e in (m["market_etf"], m["sector_etf"], m["subsector_etf"]) if e))
    out["snapshot"]["ticker_meta"] = {"ticker": m["ticker"], "symbol": m["security_id"], "sector_etf": m["sector_etf"],
                                      "subsector_etf": m["subsector_etf"] or m["sector_etf"],
                                      "asset_type": str(kinds.iloc[0]) if len(kinds) else None, "factors": factors}
    out["snapshot"]["metrics"] = {k: m.get(k) for k in (
        "lstar_level", "recommended_hedge_level", "l1_mkt_er", "l2_mkt_er", "l2_sec_er", "l3_mkt_er", "l3_sec_er",
        "l3_sub_er", "l3_res_er", "l1_mkt_hr", "l2_mkt_hr", "l2_sec_hr", "l3_mkt_hr", "l3_sec_hr", "l3_sub_hr",
        "vol_23d", "vol_252d_ann", "l1_mkt_beta")}
    out["snapshot"]["metrics"]["lstar"] = f"L{m['lstar_level']}" if m.get("lstar_level") else None
    return out
