"""Small synthetic inputs for cascade tests, with exactly known structure."""

from __future__ import annotations

import numpy as np
import pandas as pd


def toy_market(T: int = 600, N: int = 12, seed: int = 0, noise: float = 0.015):
    """SPY, one sector ETF (XLK) and one subsector ETF (SOXX) with known link betas, N stocks.

    Returns (returns, etf_returns, assignments, truth) where truth holds true betas on the
    orthogonal factors (beta_m, beta_s, beta_u) per ticker.
    """
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2019-01-02", periods=T)
    m = rng.normal(0.0004, 0.011, T)
    s_star = rng.normal(0, 0.007, T)
    u_star = rng.normal(0, 0.009, T)
    s = 0.9 * m + s_star
    u = 0.5 * m + 0.8 * s_star + u_star
    etf = pd.DataFrame({"SPY": m, "XLK": s, "SOXX": u}, index=dates)
    truth = pd.DataFrame({"beta_m": rng.normal(1, .3, N), "beta_s": rng.normal(.8, .3, N),
                          "beta_u": rng.normal(.5, .3, N)}, index=[f"T{i:02d}" for i in range(N)])
    r = (np.outer(m, truth.beta_m) + np.outer(s_star, truth.beta_s) + np.outer(u_star, truth.beta_u)
         + rng.normal(0, noise, (T, N)))
    returns = pd.DataFrame(r, index=dates, columns=truth.index)
    assignments = pd.DataFrame({"sector_etf": "XLK", "subsector_etf": "SOXX"}, index=truth.index)
    return returns, etf, assignments, truth
