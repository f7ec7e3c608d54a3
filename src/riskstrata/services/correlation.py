"""Correlation of a stock's returns with the factor ETFs (the client's ``get_factor_correlation``).

The commercial service correlates with macro series (oil, VIX, …) that a self-hosted store does
not have; riskstrata correlates with the ETFs its cascade hedges with: the market ETF, the
eleven sector SPDRs and the stock's own subsector ETF (or any ETF in the store, by ticker).

return_type picks the stock series (decimal daily returns, from the cascade's stored rows):
``gross`` = returns_gross, ``l1`` = l1_rr (after the market hedge), ``l2`` = l2_rr (after the
sector hedge), ``l3_residual`` = l3_rr (after the subsector hedge). The ETF series are raw
daily returns. The window is the last ``window_days`` model dates ending on the as-of date;
each factor is correlated over the days both series have (``overlap``); below
:data:`MIN_OVERLAP` days the correlation is None, with a warning. Pearson is the sample
correlation; Spearman the Pearson correlation of the ranks (ties averaged).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskstrata.data.ingest import load_returns
from riskstrata.data.master import SecurityMaster
from riskstrata.data.registry import EtfRegistry
from riskstrata.data.store import Store
from riskstrata.errors import DataValidationError
from riskstrata.services import cascade

RETURN_TYPES = {"gross": "returns_gross", "l1": "l1_rr", "l2": "l2_rr", "l3_residual": "l3_rr"}
METHODS = ("pearson", "spearman")
MIN_WINDOW, MAX_WINDOW = 20, 2000
MIN_OVERLAP = 30  # paired days below which a correlation is not reported (the service's ~30)


def correlation(x: np.ndarray, y: np.ndarray, method: str) -> float:
    """Pearson or Spearman correlation of two equal-length arrays without NaN; NaN if either is constant."""
    if method == "spearman":
        x, y = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def default_factors(store: Store, ticker_row: dict) -> list[str]:
    """The market ETF, the eleven sector SPDRs and the stock's subsector ETF."""
    return list(dict.fromkeys([ticker_row["market_etf"], *EtfRegistry.default().sector_etfs(),
                               *(e for e in (ticker_row.get("subsector_etf"),) if e)]))


def factor_correlation(store: Store, ticker: str, *, factors: list[str] | None = None,
                       return_type: str = "l3_residual", window_days: int = 252, method: str = "pearson",
                       as_of: object | None = None) -> dict:
    """Correlations of one stock's ``return_type`` returns with each factor ETF over the window.

    Returns {ticker, return_type, window_days, method, correlations {ETF: float | None},
    overlap_days (days the stock series has in the window), overlap_by_factor, warnings,
    start, end}.
    """
    if return_type not in RETURN_TYPES:
        raise DataValidationError(f"return_type must be one of {', '.join(RETURN_TYPES)}, got {return_type!r}")
    if method not in METHODS:
        raise DataValidationError(f"method must be pearson or spearman, got {method!r}")
    if not MIN_WINDOW <= int(window_days) <= MAX_WINDOW:
        raise DataValidationError(f"window_days must be within {MIN_WINDOW}..{MAX_WINDOW}, got {window_days}")
    row = cascade.metrics(store, ticker, as_of)
    end = pd.Timestamp(row["date"])
    chosen = [f.strip().upper() for f in factors if f and f.strip()] if factors else default_factors(store, row)
    field = RETURN_TYPES[return_type]
    # Calendar days enough for window_days trading days (252 a year, holidays included).
    start = end - pd.Timedelta(days=int(window_days * 1.6) + 14)
    stock = cascade.history(store, ticker, start, end, [field])[field].dropna().iloc[-int(window_days):]
    ids = SecurityMaster.from_store(store).resolve_many(chosen, end)
    known = ids.dropna()
    etf = load_returns(store, stock.index.min() if len(stock) else end, end, security_ids=list(known.to_numpy()))
    etf = etf.rename(columns={sid: t for t, sid in known.items()}).reindex(stock.index)
    correlations: dict[str, float | None] = {}
    overlap: dict[str, int] = {}
    warnings: list[str] = []
    for f in chosen:
        if f not in etf.columns:
            correlations[f], overlap[f] = None, 0
            warnings.append(f"{f}: no return series in this store")
            continue
        pair = pd.concat([stock, etf[f]], axis=1).dropna()
        overlap[f] = len(pair)
        value = correlation(pair.iloc[:, 0].to_numpy(), pair.iloc[:, 1].to_numpy(), method) \
            if len(pair) >= MIN_OVERLAP else float("nan")
        correlations[f] = value if np.isfinite(value) else None
        if len(pair) < MIN_OVERLAP:
            warnings.append(f"{f}: {len(pair)} paired days, fewer than {MIN_OVERLAP}")
    if len(stock) < int(window_days):
        warnings.append(f"{len(stock)} of the {window_days} window days have a {return_type} return")
    return {"ticker": row["ticker"], "return_type": return_type, "window_days": int(window_days), "method": method,
            "correlations": correlations, "overlap_days": int(len(stock)), "overlap_by_factor": overlap,
            "warnings": warnings, "series": field,
            "start": str(stock.index.min().date()) if len(stock) else None, "end": str(end.date())}
