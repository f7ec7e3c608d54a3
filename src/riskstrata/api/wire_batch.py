"""/batch/analyze bodies: per-ticker entries, explicit errors, and the flat tables (§5.3).

Every requested ticker gets an entry: ``status: "success"`` with the asked-for blocks, or
``status: "error"`` with why (the client silently drops a ticker that is simply missing).
"""

from __future__ import annotations

import pandas as pd

from riskstrata.api.wire_series import L3_FIELDS, l3_arrays, returns_block, returns_long
from riskstrata.api.wire_snapshot import (
    batch_meta,
    full_metrics,
    hedge_levels,
    hedge_ratios,
)

BATCH_HISTORY_FIELDS = ("returns_gross", *L3_FIELDS)


def batch_needs_history(blocks: list[str], fmt: str) -> bool:
    """Whether /batch/analyze needs daily rows: for the returns / l3 blocks, or for the long
    table a tabular request without full_metrics or hedge_ratios gets."""
    if {"returns", "l3_decomposition"} & set(blocks):
        return True
    return fmt != "json" and not {"full_metrics", "hedge_ratios"} & set(blocks)


def batch_entry(requested: str, row: dict, close: float | None, market_cap: float | None, blocks: list[str],
                history: pd.DataFrame | None, levels: dict | None = None) -> dict:
    """One success entry of /batch/analyze ``results``; ``levels``: the row's :func:`hedge_levels`
    when the caller already has them.

    ``ticker`` (and ``full_metrics.ticker``) echo the ticker as requested: the client keys its
    weights by what it sent, so answering GOOG with GOOGL would silently drop the position.
    """
    entry: dict = {"ticker": requested, "status": "success", "symbol": row["security_id"],
                   "resolved_ticker": row["ticker"]}
    if "hedge_ratios" in blocks:
        entry["hedge_ratios"] = hedge_ratios(row)
    if "full_metrics" in blocks:
        entry["full_metrics"] = {**full_metrics(row, close, market_cap), "ticker": requested}
    if "returns" in blocks and history is not None:
        entry["returns"] = returns_block(history)
    if "l3_decomposition" in blocks and history is not None:
        entry["l3_decomposition"] = l3_arrays(history)
    entry["meta"] = batch_meta(row)
    entry["hedge_levels"] = hedge_levels(row) if levels is None else levels
    return entry


def error_entry(requested: str, error: str) -> dict:
    return {"ticker": requested, "status": "error", "error": error}


def batch_summary(results: dict) -> dict:
    ok = sum(1 for e in results.values() if e["status"] == "success")
    return {"total": len(results), "success": ok, "errors": len(results) - ok}


def batch_table(results: dict, blocks: list[str], histories: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """/batch/analyze as one flat table (format=parquet|csv), error rows included.

    With ``full_metrics``: one row per ticker of its fields; else with ``hedge_ratios``: the
    ticker's hedge ratios; else the long daily form (ticker, date, gross_return, l1, l2, l3, …).
    Every table has ``status`` and ``error`` columns so an unknown ticker is never just absent.
    """
    records: list[dict] = []
    for t, entry in results.items():
        if entry["status"] != "success":
            records.append({"ticker": t, "status": "error", "error": entry["error"]})
        elif "full_metrics" in blocks:
            records.append({**entry["full_metrics"], "status": "success", "error": None})
        elif "hedge_ratios" in blocks:
            records.append({"ticker": t, **entry["hedge_ratios"], "status": "success", "error": None})
        else:
            records.extend(returns_long(t, histories[t]).assign(status="success", error=None).to_dict("records"))
    table = pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=["ticker", "status", "error"])
    return table[["ticker", *[c for c in table.columns if c != "ticker"]]]
