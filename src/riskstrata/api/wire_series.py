"""Date-indexed engine frames → the contract's daily rows and parallel arrays (§5.3–§5.6, §7.1).

Inputs are frames from :func:`riskstrata.services.cascade.history` and ``lstar_history``.
Every array of a body is built from one frame, so it has the length of ``dates`` (the client
raises otherwise); NaN stays NaN here and becomes null in the JSON encoder. Key names follow
the contract per route: abbreviated on /ticker-returns, semantic on /l3-decomposition, /lstar's
own (``market_hr`` …) on /lstar, and the returns-decomposition names on /returns-decomposition.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskstrata.api.wire_meta import UNIVERSE_NAME
from riskstrata.api.wire_snapshot import level_name

L3_FIELDS = ("l3_mkt_hr", "l3_sec_hr", "l3_sub_hr", "l3_mkt_er", "l3_sec_er", "l3_sub_er", "l3_res_er")
SEMANTIC = {"l3_mkt_hr": "l3_market_hr", "l3_sec_hr": "l3_sector_hr", "l3_sub_hr": "l3_subsector_hr",
            "l3_mkt_er": "l3_market_er", "l3_sec_er": "l3_sector_er", "l3_sub_er": "l3_subsector_er",
            "l3_res_er": "l3_residual_er"}
RETURN_FIELDS = ("returns_gross", "l1_cfr", "l2_cfr", "l3_cfr") + L3_FIELDS
LEVEL_FIELDS = ("l1_mkt_hr", "l1_mkt_er", "l2_mkt_hr", "l2_sec_hr", "l2_mkt_er", "l2_sec_er",
                "l3_mkt_hr", "l3_sec_hr", "l3_sub_hr", "l3_mkt_er", "l3_sec_er", "l3_sub_er")
LSTAR_INPUT_FIELDS = (*LEVEL_FIELDS, "lstar_level", "lstar_rr")  # what lstar_arrays reads, stored L* included
LSTAR_ARRAYS = ("lstar", "market_hr", "sector_hr", "subsector_hr", "total_er", "residual_return", "l2_sector_er",
                "l3_subsector_er")
DECOMPOSITION_FIELDS = ("returns_gross", "l1_cfr", "l2_cfr", "l3_cfr", "l1_rr", "l2_rr", "l3_rr")


def dates(index: pd.Index) -> list[str]:
    return [str(pd.Timestamp(d).date()) for d in index]


def column(frame: pd.DataFrame, name: str) -> list:
    """A frame column as a list with NaN kept (the JSON encoder turns it into null)."""
    return frame[name].astype(float).tolist()


def returns_block(history: pd.DataFrame) -> dict:
    """Batch ``returns``: gross returns and the L3 HR series.

    Quirk kept from the contract (§10.3): ``l1``/``l2``/``l3`` are the L3 *market/sector/
    subsector HR* series (nulls as 0), not levels; the explicit ``l3_*_hr`` arrays (nulls kept)
    are sent too and the client prefers them.
    """
    out = {"dates": dates(history.index), "values": column(history, "returns_gross")}
    for legacy, f in (("l1", "l3_mkt_hr"), ("l2", "l3_sec_hr"), ("l3", "l3_sub_hr")):
        out[legacy] = history[f].astype(float).fillna(0.0).tolist()
        out[SEMANTIC[f]] = column(history, f)
    return out


def l3_arrays(history: pd.DataFrame) -> dict:
    """Parallel arrays under the semantic names /l3-decomposition uses (§5.5)."""
    return {"dates": dates(history.index), **{SEMANTIC[f]: column(history, f) for f in L3_FIELDS}}


def returns_long(ticker: str, history: pd.DataFrame) -> pd.DataFrame:
    """Batch tabular long form: ticker, date, gross_return, l1, l2, l3 and the explicit l3_*_hr."""
    block = returns_block(history)
    return pd.DataFrame({"ticker": ticker, "date": block["dates"], "gross_return": block["values"],
                         "l1": block["l1"], "l2": block["l2"], "l3": block["l3"],
                         **{k: block[k] for k in ("l3_market_hr", "l3_sector_hr", "l3_subsector_hr")}})


def ticker_returns_body(requested: str, security_id: str, asset_type: str, rows: list[dict],
                        factors: list[str | None], metadata: dict) -> dict:
    """/ticker-returns: the rows plus who the ticker is. factors: [market, sector, subsector] ETFs
    (shorter where unknown); the subsector falls back to the sector ETF as in ``meta`` elsewhere."""
    market, sector, sub = (list(factors) + [None, None])[:3]
    return {"symbol": security_id, "ticker": requested, "asset_type": asset_type, "periodicity": "daily",
            "data": rows,
            "meta": {"market_etf": market, "sector_etf": sector, "subsector_etf": sub or sector,
                     "universe": "US_ETF" if asset_type == "etf" else UNIVERSE_NAME},
            "_metadata": metadata}


def ticker_returns_rows(history: pd.DataFrame, closes: pd.Series) -> list[dict]:
    """/ticker-returns ``data``: one object per date with abbreviated keys (§5.4)."""
    frame = history[list(RETURN_FIELDS)].astype(float)
    frame.insert(1, "price_close", closes.reindex(frame.index).astype(float))
    return [{"date": d, **vals} for d, vals in zip(dates(frame.index), frame.to_dict("records"))]


def lstar_arrays(lstar: pd.DataFrame, levels: pd.DataFrame) -> dict:
    """/lstar arrays: per date the chosen level and that level's HRs and total ER (§7.1).

    lstar: ``lstar_history`` (lstar_level, lstar_rr, l2_sec_er, l3_sub_er); levels: the same
    dates' per-level HR/ER fields. Null ER terms count as 0 in ``total_er``; no level → nulls.
    ``residual_return`` is the engine's time-safe ``lstar_rr`` (the level held from the day before).
    """
    k = lstar["lstar_level"].fillna(0).astype(int).to_numpy()
    f = levels.reindex(lstar.index)[list(LEVEL_FIELDS)].astype(float)

    def pick(by_level: dict[int, np.ndarray]) -> list:
        out = np.full(len(k), np.nan)
        for level, values in by_level.items():
            out = np.where(k == level, values, out)
        return out.tolist()

    er = f.fillna(0.0)
    return {
        "dates": dates(lstar.index),
        "lstar": [level_name(v) for v in k],
        "market_hr": pick({1: f["l1_mkt_hr"], 2: f["l2_mkt_hr"], 3: f["l3_mkt_hr"]}),
        "sector_hr": pick({2: f["l2_sec_hr"], 3: f["l3_sec_hr"]}),
        "subsector_hr": pick({3: f["l3_sub_hr"]}),
        "total_er": pick({1: er["l1_mkt_er"], 2: er["l2_mkt_er"] + er["l2_sec_er"],
                          3: er["l3_mkt_er"] + er["l3_sec_er"] + er["l3_sub_er"]}),
        "residual_return": column(lstar, "lstar_rr"),
        "l2_sector_er": column(lstar, "l2_sec_er"),
        "l3_subsector_er": column(lstar, "l3_sub_er"),
    }


def lstar_table(results: dict) -> pd.DataFrame:
    """/batch/lstar as one long table (format=parquet|csv): ticker, date, the per-date arrays,
    ``status`` and ``error``; an unknown ticker is one error row."""
    records: list[dict] = []
    for t, entry in results.items():
        if entry["status"] != "success":
            records.append({"ticker": t, "status": "error", "error": entry["error"]})
            continue
        columns = {"date": entry["dates"], **{k: entry[k] for k in LSTAR_ARRAYS}}
        records.extend({"ticker": t, **{k: v[i] for k, v in columns.items()}, "status": "success", "error": None}
                       for i in range(len(entry["dates"])))
    return pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=["ticker", "status", "error"])


def returns_decomposition_arrays(history: pd.DataFrame) -> dict:
    """/returns-decomposition arrays: gross, and per level the factor, combined and residual returns.

    ``l{k}_combined_factor_return`` is the stored ``l{k}_cfr`` (cumulative through level k);
    ``l{k}_factor_return`` is level k's own increment, ``l{k}_cfr − l{k−1}_cfr`` (§6.1).
    """
    h = history[list(DECOMPOSITION_FIELDS)].astype(float)
    out = {"dates": dates(h.index), "gross_return": column(h, "returns_gross")}
    previous = pd.Series(0.0, index=h.index)
    for k in (1, 2, 3):
        out[f"l{k}_factor_return"] = (h[f"l{k}_cfr"] - previous).tolist()
        previous = h[f"l{k}_cfr"]
    for k in (1, 2, 3):
        out[f"l{k}_combined_factor_return"] = column(h, f"l{k}_cfr")
    for k in (1, 2, 3):
        out[f"l{k}_residual_return"] = column(h, f"l{k}_rr")
    return out
