"""One date of one ticker → the contract's snapshot bodies (api-contract §5.1–§5.3, §7.3).

Input is a metrics row: the dict of :func:`riskstrata.services.cascade.metrics` (the server
holds one per ticker of the latest date, :mod:`riskstrata.api.published`). Nothing is
estimated here; the functions rename and regroup, and ask the engine (``cascade.lstar``) for
the recommended level and gross hedge of a row.

- /metrics and batch ``full_metrics`` use the abbreviated wire keys (``l3_mkt_hr``);
- hedge ratios are ETF dollars per $1 long (negative = short), and the decompose hedge map is
  ``hedge[etf] = Σ hr`` over the layers trading that ETF (the client's post-2026-09-29 sign).
"""

from __future__ import annotations

import numpy as np

from riskstrata.cascade.lstar import (
    DEFAULT_SEGMENT,
    ER_HAIRCUT,
    LEVERAGE_CAPS,
    hedge_gross,
    recommended_hedge_level,
)
from riskstrata.cascade.result import WIRE_FIELDS

HR_FIELDS = ("l1_mkt_hr", "l2_mkt_hr", "l2_sec_hr", "l3_mkt_hr", "l3_sec_hr", "l3_sub_hr")
BATCH_HR_KEYS = {"l1_market": "l1_mkt_hr", "l2_market": "l2_mkt_hr", "l2_sector": "l2_sec_hr",
                 "l3_market": "l3_mkt_hr", "l3_sector": "l3_sec_hr", "l3_subsector": "l3_sub_hr"}


def level_name(level: object) -> str | None:
    """1/2/3 → "L1"/"L2"/"L3"; 0, None or NaN → None."""
    if level is None or (isinstance(level, float) and not np.isfinite(level)) or int(level) == 0:
        return None
    return f"L{int(level)}"


def subsector_or_sector(row: dict) -> str | None:
    """The subsector ETF, falling back to the sector ETF as the contract's ``meta`` does."""
    return row.get("subsector_etf") or row.get("sector_etf")


def recommended_level(row: dict, segment: str = DEFAULT_SEGMENT) -> int:
    """The engine's economic hedge level (1/2/3) for one row and user segment."""
    values = {k: np.array([np.nan if row.get(k) is None else row[k]], dtype=float) for k in
              ("l2_sec_er", "l3_sub_er", *HR_FIELDS)}
    return int(recommended_hedge_level(values, segment)[0])


def hedge_levels(row: dict, segment: str = DEFAULT_SEGMENT) -> dict:
    """The ``hedge_levels`` block: per level its HRs, ERs and ETFs, plus the L* and recommended levels."""
    market, sector, sub = row["market_etf"], row.get("sector_etf"), subsector_or_sector(row)
    block = {
        "L1": {"market_hr": row["l1_mkt_hr"], "sector_hr": None, "subsector_hr": None,
               "market_er": row["l1_mkt_er"], "sector_er": None, "subsector_er": None, "residual_er": row["l1_res_er"],
               "hedge_etfs": {"market": market, "sector": None, "subsector": None}},
        "L2": {"market_hr": row["l2_mkt_hr"], "sector_hr": row["l2_sec_hr"], "subsector_hr": None,
               "market_er": row["l2_mkt_er"], "sector_er": row["l2_sec_er"], "subsector_er": None,
               "residual_er": row["l2_res_er"], "hedge_etfs": {"market": market, "sector": sector, "subsector": None}},
        "L3": {"market_hr": row["l3_mkt_hr"], "sector_hr": row["l3_sec_hr"], "subsector_hr": row["l3_sub_hr"],
               "market_er": row["l3_mkt_er"], "sector_er": row["l3_sec_er"], "subsector_er": row["l3_sub_er"],
               "residual_er": row["l3_res_er"], "hedge_etfs": {"market": market, "sector": sector, "subsector": sub}},
    }
    block["recommended_level"] = level_name(recommended_level(row, segment))
    block["statistical_lstar"] = level_name(row.get("lstar_level"))
    return block


def economic_fields(row: dict, segment: str = DEFAULT_SEGMENT) -> dict:
    """L*, the recommended hedge level for ``segment`` and the gross hedge per level (§7.3)."""
    values = {k: np.array([np.nan if row.get(k) is None else row[k]], dtype=float) for k in HR_FIELDS}
    marginal = sum(row.get(k) or 0.0 for k in ("l2_sec_er", "l3_sub_er"))
    return {"lstar": level_name(row.get("lstar_level")),
            "recommended_hedge_level": level_name(recommended_level(row, segment)),
            "user_segment_applied": segment, "leverage_cap_applied": LEVERAGE_CAPS[segment],
            **{f"l{k}_hedge_gross": float(hedge_gross(values, k)[0]) for k in (1, 2, 3)},
            "higher_er_haircut": ER_HAIRCUT * marginal}


def metrics_body(row: dict, requested: str, asset_type: str, close: float | None, market_cap: float | None,
                 segment: str, metadata: dict) -> dict:
    """GET /metrics/{ticker}: abbreviated keys under ``metrics`` (§5.1)."""
    metrics = {"vol_23d": row["vol_23d"], "vol_252d_ann": row["vol_252d_ann"], "price_close": close,
               "market_cap": market_cap, "stock_var": row["stock_var"]}
    metrics.update({f: row[f] for f in WIRE_FIELDS if f not in metrics})
    metrics["lstar_level"] = row.get("lstar_level")
    metrics.update(economic_fields(row, segment))
    er = [row[f] for f in ("l3_mkt_er", "l3_sec_er", "l3_sub_er", "l3_res_er")]
    return {
        "symbol": row.get("security_id"), "ticker": requested, "teo": row["date"], "periodicity": "daily",
        "metrics": metrics,
        "meta": {"market_etf": row["market_etf"], "sector_etf": row.get("sector_etf"),
                 "subsector_etf": subsector_or_sector(row), "asset_type": asset_type,
                 "resolved_ticker": row["ticker"], "assignment_source": row.get("assignment_source"),
                 "n_obs": row.get("n_obs"), "notes": row.get("notes", [])},
        "hedge_levels": hedge_levels(row, segment),
        "_metadata": metadata,
        "_data_health": {"er_populated": all(v is not None for v in er),
                         "vol_populated": row["vol_23d"] is not None,
                         "l1_populated": row["l1_mkt_hr"] is not None, "l2_populated": row["l2_mkt_hr"] is not None,
                         "data_as_of": row["date"]},
    }


def metrics_table_row(body: dict) -> dict:
    """The flat one-row form of a /metrics body (format=parquet|csv)."""
    return {"ticker": body["ticker"], "teo": body["teo"], **{k: v for k, v in body["metrics"].items()},
            "sector_etf": body["meta"]["sector_etf"], "subsector_etf": body["meta"]["subsector_etf"]}


def decompose_body(bets_result: dict, requested: str, metadata: dict) -> dict:
    """POST /decompose: four bets and the hedge map ``hedge[etf] = Σ hr`` (§5.2, §6.3).

    bets_result: :func:`riskstrata.services.cascade.decompose`'s dict. The subsector layer
    trades the sector ETF where the stock has no distinct subsector ETF, as in the contract;
    layers sharing an ETF are summed; null HRs or ETFs and the residual are skipped.
    """
    bets = {layer: dict(v) for layer, v in bets_result["bets"].items()}
    if bets["subsector"]["hedge_etf"] is None:
        bets["subsector"]["hedge_etf"] = bets["sector"]["hedge_etf"]
    hedge: dict[str, float] = {}
    for layer in ("market", "sector", "subsector"):
        etf, hr = bets[layer]["hedge_etf"], bets[layer]["hr"]
        if etf is not None and hr is not None:
            hedge[etf] = hedge.get(etf, 0.0) + hr
    ers = [bets[layer]["er"] for layer in ("market", "sector", "subsector", "residual")]
    return {"ticker": requested, "data_as_of": bets_result["date"], "teo": bets_result["date"],
            "exposure": bets, "hedge": hedge, "notes": bets_result.get("notes", []),
            "_metadata": metadata,
            "_data_health": {"er_populated": all(e is not None for e in ers),
                             "er_sum": sum(ers) if all(e is not None for e in ers) else None}}


def full_metrics(row: dict, close: float | None, market_cap: float | None) -> dict:
    """Batch ``full_metrics``: abbreviated keys plus ``volatility`` and ``close_price`` (§5.3)."""
    out = {"ticker": row["ticker"], "date": row["date"], "volatility": row["vol_23d"]}
    out.update({f: row[f] for f in WIRE_FIELDS})
    out["lstar_level"] = row.get("lstar_level")
    out.update({"market_cap": market_cap, "close_price": close, "price_close": close})
    return out


def hedge_ratios(row: dict) -> dict:
    """Batch ``hedge_ratios`` with the short keys the client maps (l1_market → l1_market_hr …)."""
    return {short: row[f] for short, f in BATCH_HR_KEYS.items()}


def batch_meta(row: dict) -> dict:
    return {"market_etf": row["market_etf"], "sector_etf": row.get("sector_etf"),
            "subsector_etf": subsector_or_sector(row)}
