"""Factor summary (SPEC §3): performance of each factor return series and how they co-move.

Input everywhere: ``factor_returns``, a (T × K) DataFrame of daily simple returns in decimals,
index = dates, columns = factor names, NaN = no return that day. A NaN day is *skipped*, not
read as a zero return: it does not count in n_days, the mean or the volatility, and the
compounded path simply stays where it was.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskstrata.errors import DataValidationError

SUMMARY_COLUMNS = ["cagr", "cumulative_return", "ann_vol", "sharpe", "latest_return", "latest_date",
                   "max_drawdown", "n_days"]
ROLLING_DAYS = 63  # one quarter of trading days


def _frame(factor_returns: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(factor_returns, pd.DataFrame):
        raise DataValidationError("factor_returns must be a DataFrame (dates × factors)")
    return factor_returns.astype(np.float64)


def _excess(returns: pd.DataFrame, risk_free: pd.Series | None) -> pd.DataFrame:
    """Returns minus the daily risk-free rate of the same date (carried forward over gaps)."""
    if risk_free is None:
        return returns
    rf = pd.Series(risk_free, dtype=np.float64).reindex(returns.index).ffill()
    uncovered = rf.isna() & returns.notna().any(axis=1)
    if uncovered.any():
        first = returns.index[uncovered.to_numpy()][0]
        raise DataValidationError(f"risk_free has no rate on or before {first}: it must cover the factor returns")
    return returns.sub(rf, axis=0)


def _one_factor(r: pd.Series, excess: pd.Series, periods_per_year: int) -> dict:
    r = r.dropna()
    n = len(r)
    if n == 0:
        return {"n_days": 0, "latest_date": pd.NaT}
    wealth = np.cumprod(1.0 + r.to_numpy())
    cumulative = float(wealth[-1] - 1.0)
    # The running peak starts at the initial wealth of 1, so a loss on day one is a drawdown.
    peak = np.maximum.accumulate(np.r_[1.0, wealth])[1:]
    vol = float(r.std(ddof=1) * np.sqrt(periods_per_year)) if n >= 2 else np.nan
    mean_excess = float(excess.dropna().mean())
    return {
        "cagr": float(wealth[-1] ** (periods_per_year / n) - 1.0) if wealth[-1] > 0 else -1.0,
        "cumulative_return": cumulative,
        "ann_vol": vol,
        "sharpe": mean_excess * periods_per_year / vol if np.isfinite(vol) and vol > 0 else np.nan,
        "latest_return": float(r.iloc[-1]),
        "latest_date": r.index[-1],
        "max_drawdown": float(np.min(wealth / peak - 1.0)),
        "n_days": n,
    }


def factor_summary(
    factor_returns: pd.DataFrame,
    *,
    periods_per_year: int = 252,
    risk_free: pd.Series | None = None,
) -> pd.DataFrame:
    """Per-factor performance table, (K × 8), index = factor names.

    factor_returns: (T × K) daily decimal returns, NaN days skipped.
    risk_free: optional daily risk-free rate (decimal per day) by date, for the Sharpe ratio.
    Columns (decimals, not percent):
      cagr: (Π(1 + r))^(periods_per_year / n_days) − 1, a 252-day year by default;
      cumulative_return: Π(1 + r) − 1; ann_vol: std(r, ddof=1) · √periods_per_year;
      sharpe: mean(r − rf) · periods_per_year / ann_vol;
      latest_return / latest_date: the last non-NaN daily return and its date;
      max_drawdown: the worst fall of the compounded path from its running peak (≤ 0);
      n_days: the number of non-NaN returns.
    A factor with no returns has n_days 0 and NaN elsewhere.
    """
    returns = _frame(factor_returns)
    excess = _excess(returns, risk_free)
    rows = {name: _one_factor(returns[name], excess[name].where(returns[name].notna()), periods_per_year)
            for name in returns.columns}
    out = pd.DataFrame.from_dict(rows, orient="index").reindex(index=returns.columns, columns=SUMMARY_COLUMNS)
    out["n_days"] = out["n_days"].fillna(0).astype(int)
    return out


def cumulative_returns(factor_returns: pd.DataFrame) -> pd.DataFrame:
    """Compounded return path Π(1 + r) − 1 of each factor, (T × K), decimal (0 = no gain).

    A NaN day holds the previous level; days before a factor's first return stay NaN.
    """
    returns = _frame(factor_returns)
    path = (1.0 + returns.fillna(0.0)).cumprod() - 1.0
    return path.where(returns.notna().cumsum() > 0)


def _trailing(returns: pd.DataFrame, window: int | None) -> pd.DataFrame:
    if window is None:
        return returns
    if window < 2:
        raise ValueError(f"window must be at least 2 days, got {window}")
    return returns.iloc[-window:]


def correlation_matrix(factor_returns: pd.DataFrame, window: int | None = None) -> pd.DataFrame:
    """Pearson correlations of daily factor returns, (K × K), symmetric, unit diagonal.

    Each pair uses the days on which both factors have a return; ``window`` keeps only the
    last ``window`` rows (dates) of the frame. NaN where a pair has fewer than 2 common days
    or a factor is constant.
    """
    return _trailing(_frame(factor_returns), window).corr(min_periods=2)


def pair_correlation(
    factor_returns: pd.DataFrame,
    a: str,
    b: str,
    window: int | None = None,
    *,
    rolling_days: int = ROLLING_DAYS,
) -> dict:
    """Correlation of two factors' daily returns, with its rolling history.

    Returns {"a", "b", "correlation" (float, over the common days of the trailing ``window``
    rows, or all), "n_days" (int, those common days), "rolling" (Series: the correlation over
    the last ``rolling_days`` common days, indexed by those days, over the whole sample)}.
    Raises DataValidationError naming the known factors when a or b is not a column.
    """
    returns = _frame(factor_returns)
    unknown = [x for x in (a, b) if x not in returns.columns]
    if unknown:
        raise DataValidationError(f"unknown factor {', '.join(map(repr, unknown))}; "
                                  f"factors are: {', '.join(map(str, returns.columns))}")
    both = returns[[a, b]].dropna() if a != b else returns[[a]].dropna()
    recent = both[both.index.isin(_trailing(returns, window).index)]
    n = len(recent)
    corr = float(recent[a].corr(recent[b])) if n >= 2 else float("nan")
    rolling = both[a].rolling(rolling_days, min_periods=rolling_days).corr(both[b]).dropna()
    return {"a": a, "b": b, "correlation": corr, "n_days": n, "rolling": rolling.rename(f"{a}~{b}")}
