"""POST /portfolio/risk-index: the contract's body plus riskstrata's own Risk Index.

Two different numbers answer "how risky is this portfolio", and the body carries both:

- the contract's "Portfolio Risk Index" (api-contract §8): holdings-weighted L3 explained-risk
  shares and a weighted average of single-name ``vol_23d``. Unlike the commercial service
  (which leaves the weights of dropped names in the denominator), weights are renormalised over
  the *resolved* positions, so one response carries one set of weights: ``per_ticker`` weights,
  the ``variance_decomposition`` (which sums to 1), the weighted vol and the ``risk_index`` block
  (whose matching drops the same names) all agree;
- riskstrata's Risk Index (SPEC §4): 100 × σ_portfolio / σ_SPY with correlations through the
  ETF covariance, decomposed by Euler contributions into market / sector / subsector /
  residual, from :func:`riskstrata.services.portfolio.analyze_portfolio`, with "X/Y holdings
  analyzed".
"""

from __future__ import annotations

import pandas as pd

import math

from riskstrata.api.errors import ApiError
from riskstrata.api.wire_schemas import Position
from riskstrata.portfolio.holdings import MAX_QUANTITY
from riskstrata.portfolio.risk import NEGATIVE_SHARE_NOTE
from riskstrata.services.portfolio import PortfolioAnalysis

ER_KEYS = {"market": "l3_mkt_er", "sector": "l3_sec_er", "subsector": "l3_sub_er", "residual": "l3_res_er"}
PER_TICKER_FIELDS = ("l3_mkt_er", "l3_sec_er", "l3_sub_er", "l3_res_er", "vol_23d", "lstar_rr", "lstar_level")


def normalized_weights(positions: list[Position]) -> dict[str, float]:
    """ticker (upper-cased, as requested) → weight / Σ weight over every submitted position.

    Repeated tickers are summed. Weights are positive by schema; ratios are what matter, so
    fractions and dollar notionals give the same weights. A weight beyond 1e15 (or a sum that
    overflows) is a 422, never a body of nulls.
    """
    raw: dict[str, float] = {}
    for p in positions:
        t = p.ticker.strip().upper()
        if float(p.weight) > MAX_QUANTITY:
            raise ApiError(422, "Unprocessable Entity", f"positions: weight {p.weight:.4g} of {t} is beyond "
                           f"{MAX_QUANTITY:.0e}: too large to be a position (and sums of such values overflow)")
        raw[t] = raw.get(t, 0.0) + float(p.weight)
    total = sum(raw.values())
    if not math.isfinite(total):
        raise ApiError(422, "Unprocessable Entity", "positions: the weights sum past the largest float")
    return {t: w / total for t, w in raw.items()} if total > 0 else raw


def resolved_weights(weights: dict[str, float], rows: dict[str, dict]) -> dict[str, float]:
    """The weights renormalised over the resolved names (Σ = 1): dropped names leave no hole."""
    total = sum(weights[t] for t in rows)
    return {t: weights[t] / total for t in rows} if total > 0 else {t: weights[t] for t in rows}


def weighted_decomposition(weights: dict[str, float], rows: dict[str, dict]) -> dict:
    """Σ w_i·l3_*_er_i over the resolved names, weights renormalised over them (a null ER counts
    as 0), and ``systematic``."""
    weights = resolved_weights(weights, rows)
    out = {role: sum(weights[t] * (row.get(field) or 0.0) for t, row in rows.items())
           for role, field in ER_KEYS.items()}
    out["systematic"] = out["market"] + out["sector"] + out["subsector"]
    return out


def weighted_vol(weights: dict[str, float], rows: dict[str, dict]) -> float | None:
    """Σ w_i·vol_23d_i (weights over the resolved names) over names with a volatility; None when none has one."""
    weights = resolved_weights(weights, rows)
    have = [(weights[t], row["vol_23d"]) for t, row in rows.items() if row.get("vol_23d") is not None]
    return sum(w * v for w, v in have) if have else None


def er_time_series(weights: dict[str, float], histories: dict[str, pd.DataFrame]) -> list[dict]:
    """Daily weighted L3 ER shares with the same fixed weights, renormalised over the resolved
    names (a missing day or null ER counts as 0)."""
    if not histories:
        return []
    weights = resolved_weights(weights, histories)
    parts = []
    for t, h in histories.items():
        parts.append(h[list(ER_KEYS.values())].astype(float).fillna(0.0) * weights[t])
    total = pd.concat(parts).groupby(level=0).sum().sort_index()
    out = []
    for day, r in total.iterrows():
        shares = {f"{role}_er": float(r[field]) for role, field in ER_KEYS.items()}
        shares["systematic_er"] = shares["market_er"] + shares["sector_er"] + shares["subsector_er"]
        out.append({"date": str(pd.Timestamp(day).date()), **shares})
    return out


def per_ticker(weights: dict[str, float], rows: dict[str, dict], closes: dict[str, float]) -> dict:
    """The contract's ``per_ticker`` rows (abbreviated keys), keyed by the ticker as requested;
    ``weight`` renormalised over the resolved names."""
    weights = resolved_weights(weights, rows)
    out = {}
    for t, row in rows.items():
        out[t] = {"weight": weights[t], "symbol": row["security_id"], "teo": row["date"],
                  "sector_etf": row.get("sector_etf"),
                  "subsector_etf": row.get("subsector_etf") or row.get("sector_etf"),
                  **{f: row.get(f) for f in PER_TICKER_FIELDS}, "price_close": closes.get(row["security_id"])}
    return out


def risk_index_block(analysis: PortfolioAnalysis | None, failure: str | None) -> dict:
    """riskstrata's Risk Index and its Euler decomposition (None values with the reason on failure)."""
    if analysis is None:
        return {"value": None, "portfolio_volatility_ann": None, "market_volatility_ann": None,
                "decomposition": None, "error": failure}
    risk, match = analysis.risk, analysis.match
    return {"value": risk.risk_index, "portfolio_volatility_ann": risk.vol_ann,
            "market_volatility_ann": risk.market_vol_ann, "market_etf": analysis.inputs.market_etf,
            "as_of": str(match.as_of.date()), "decomposition": {k: float(v) for k, v in risk.by_role.items()},
            "decomposition_note": NEGATIVE_SHARE_NOTE,
            "holdings_summary": match.summary(), "notes": list(analysis.notes)}


def holdings_analyzed(total: int, resolved: int, analysis: PortfolioAnalysis | None) -> str:
    """ "X/Y holdings analyzed": from the portfolio matching where it ran, else from resolution."""
    if analysis is not None:
        return f"{analysis.match.analyzed}/{analysis.match.total_lines} holdings analyzed"
    return f"{resolved}/{total} holdings analyzed"


def risk_index_body(weights: dict[str, float], rows: dict[str, dict], errors: dict[str, str],
                    closes: dict[str, float], analysis: PortfolioAnalysis | None, failure: str | None,
                    series: list[dict] | None, metadata: dict, agent: dict) -> dict:
    """The whole response: contract fields first, riskstrata's additions after."""
    ours = risk_index_block(analysis, failure)
    body = {
        "portfolio_risk_index": {"variance_decomposition": weighted_decomposition(weights, rows),
                                 "portfolio_volatility_23d": weighted_vol(weights, rows),
                                 "position_count": len(rows), "risk_index": ours["value"]},
        "per_ticker": per_ticker(weights, rows, closes),
        "summary": {"total_positions": len(weights), "resolved": len(rows), "errors": len(errors)},
        "weighting": {"basis": "renormalised over the resolved positions (every block sums to 1)",
                      "dropped_weight": 1.0 - sum(weights[t] for t in rows)},
    }
    if errors:
        body["errors"] = [{"ticker": t, "error": e} for t, e in errors.items()]
    if series is not None:
        body["time_series"] = series
    body["risk_index"] = ours
    body["holdings_analyzed"] = holdings_analyzed(len(weights), len(rows), analysis)
    body["_agent"] = agent
    body["_metadata"] = metadata
    return body
