"""Multi-period attribution: the geometric bridge of SPEC §2.

Daily components come from the time-safe combined factor returns: market = l1_cfr,
sector = l2_cfr − l1_cfr, subsector = l3_cfr − l2_cfr. Compounding the cumulative levels
    prod_L1 = Π(1+mkt), prod_L2 = Π(1+mkt+sec), prod_L3 = Π(1+mkt+sec+sub), prod_G = Π(1+r)
gives bars (prod_L1−1, prod_L2−prod_L1, prod_L3−prod_L2, prod_G−prod_L3) that telescope to
exactly the compound gross return prod_G − 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from riskstrata.errors import InsufficientHistory


@dataclass(frozen=True)
class Attribution:
    """Bars in decimal return over the period, and the daily cumulative lines (DataFrame by date)."""

    market: float
    sector: float
    subsector: float
    residual: float
    gross: float
    days: int
    days_skipped: int
    lines: pd.DataFrame  # columns prod_G, prod_L1, prod_L2, prod_L3, cum_residual

    def bars(self) -> dict[str, float]:
        return {"market": self.market, "sector": self.sector, "subsector": self.subsector,
                "residual": self.residual, "gross": self.gross}


def geometric_attribution(gross: pd.Series, l1_cfr: pd.Series, l2_cfr: pd.Series, l3_cfr: pd.Series) -> Attribution:
    """Geometric bridge over the given dates (all Series on one DatetimeIndex, decimal daily returns).

    Days where the gross return or any factor return is missing (before the first estimate,
    a non-trading day) are skipped — counted in ``days_skipped``, never silently.
    """
    frame = pd.concat({"r": gross, "c1": l1_cfr, "c2": l2_cfr, "c3": l3_cfr}, axis=1)
    ok = frame.notna().all(axis=1)
    used = frame[ok]
    if used.empty:
        raise InsufficientHistory("no day in the period has both a return and a fitted hedge")
    lines = pd.DataFrame({
        "prod_G": np.cumprod(1.0 + used["r"].to_numpy()),
        "prod_L1": np.cumprod(1.0 + used["c1"].to_numpy()),
        "prod_L2": np.cumprod(1.0 + used["c2"].to_numpy()),
        "prod_L3": np.cumprod(1.0 + used["c3"].to_numpy()),
    }, index=used.index)
    lines["cum_residual"] = lines["prod_G"] - lines["prod_L3"]
    last = lines.iloc[-1]
    return Attribution(
        market=float(last["prod_L1"] - 1.0),
        sector=float(last["prod_L2"] - last["prod_L1"]),
        subsector=float(last["prod_L3"] - last["prod_L2"]),
        residual=float(last["prod_G"] - last["prod_L3"]),
        gross=float(last["prod_G"] - 1.0),
        days=int(ok.sum()),
        days_skipped=int((~ok).sum()),
        lines=lines,
    )
