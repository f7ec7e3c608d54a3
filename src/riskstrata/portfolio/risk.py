"""Portfolio risk from Model A: Risk Index, Euler decomposition, hedges, scaling (pure functions).

Model A says every stock is r_i = Σ_k e_ik·f_k + ε_i with e_i = −(L3 hedge ratios) on the raw
ETFs f (SPY, sector and subsector ETFs) and ε_i uncorrelated across stocks. A portfolio with
weights w therefore has ETF exposures x = Σ_i w_i·e_i and variance

    σ²_p = x'·Σ_f·x + Σ_i w_i²·σ²_ε,i

with Σ_f the sample covariance of the raw ETF returns over the model window and
σ²_ε,i = l3_res_er_i · stock_var_i. Correlations between names come in through Σ_f — this is
not a weighted average of single-name vols. Risk Index = 100 · σ_p / σ_SPY, so 100 % SPY
scores exactly 100. Euler contributions (w·∂σ²/∂w) add up to σ²_p by position, by ETF and by
role (market / sector / subsector / residual).

A contribution can be negative: that position (or layer) diversifies — it lowers σ²_p at the
margin (a short against a correlated long, a sector leg offsetting the market leg). Every face
that prints shares says so (:data:`NEGATIVE_SHARE_NOTE`).

Signed books: weights are relative to gross (w = value / Σ|value|), so a long/short book is
measured per dollar of gross; dollars are kept alongside (:class:`BookExposure`): long, short,
gross, net, beta-dollars and the hedge trades in dollars, Σ_i value_i·HR_i per ETF.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from riskstrata.errors import DataValidationError

LEVEL_HRS = {
    "L1": {"market": "l1_mkt_hr"},
    "L2": {"market": "l2_mkt_hr", "sector": "l2_sec_hr"},
    "L3": {"market": "l3_mkt_hr", "sector": "l3_sec_hr", "subsector": "l3_sub_hr"},
}
ROLES = ("market", "sector", "subsector", "residual")
NEGATIVE_SHARE_NOTE = ("a negative share of variance means the position (or layer) diversifies: "
                       "it lowers the portfolio's variance")


def etf_exposures(positions: pd.DataFrame, level: str, market_etf: str = "SPY") -> pd.DataFrame:
    """Per-position hedge ratios on raw ETFs at a level, as a (positions × ETFs) matrix.

    positions: index = position key; columns l{1,2,3}_*_hr, sector_etf, subsector_etf, and
    for level 'lstar' also lstar_level (1/2/3; 0/NaN → L1). Missing HRs count as 0.
    Returns HR dollars of each ETF per $1 of the position (negative = short).
    """
    return PositionLegs(positions, market_etf).frame(level)


class PositionLegs:
    """The positions' ETFs and hedge ratios as arrays, read once for every level's exposures."""

    def __init__(self, positions: pd.DataFrame, market_etf: str = "SPY") -> None:
        self.index = positions.index
        self.market_etf = market_etf
        n = len(positions)
        self.etf_of = {"market": np.full(n, market_etf, dtype=object),
                       "sector": positions["sector_etf"].to_numpy(dtype=object),
                       "subsector": positions["subsector_etf"].to_numpy(dtype=object)}
        self.named = {role: np.array([isinstance(e, str) for e in etf], dtype=bool) for role, etf in self.etf_of.items()}
        self.hr = {f: positions[f].to_numpy(dtype=float) for fields in LEVEL_HRS.values() for f in fields.values()}
        self._lstar = positions["lstar_level"] if "lstar_level" in positions.columns else None

    def levels(self, level: str) -> np.ndarray:
        """(n,) level name of each position ('L1'…; for 'lstar' its L*, 0/NaN → L1)."""
        if level.lower() == "lstar":
            if self._lstar is None:
                raise KeyError("lstar_level")
            k = self._lstar.to_numpy(dtype=float, na_value=np.nan)
            k = np.maximum(np.where(np.isnan(k), 0.0, k).astype(int), 1)
            return np.array([f"L{v}" for v in k], dtype=object)
        level = level.upper()
        if level not in LEVEL_HRS:
            raise DataValidationError(f"unknown hedge level {level!r}; use L1, L2, L3 or lstar")
        return np.full(len(self.index), level, dtype=object)

    def matrix(self, level: str) -> tuple[list[str], np.ndarray]:
        """(ETF columns, (n × ETFs) hedge ratios) at ``level``; the market ETF is always a column."""
        lvl = self.levels(level)
        n = len(lvl)
        # (n, roles) ETF names and hedge ratios; a role the position's level lacks, a missing ETF or a
        # zero / missing HR leaves its cell empty.
        names = np.full((n, 3), None, dtype=object)
        hrs = np.zeros((n, 3))
        for r, role in enumerate(("market", "sector", "subsector")):
            for level_name, fields in LEVEL_HRS.items():
                if role not in fields:
                    continue
                hr = self.hr[fields[role]]
                ok = (lvl == level_name) & np.isfinite(hr) & (hr != 0) & self.named[role]
                names[ok, r], hrs[ok, r] = self.etf_of[role][ok], hr[ok]
        # Columns in order of first appearance, row by row and market → sector → subsector; sums in
        # that order from 0.0 (a name whose sector and subsector ETF coincide adds both).
        columns = list(dict.fromkeys(e for e in names.ravel() if e is not None))
        col = {e: j for j, e in enumerate(columns)}
        out = np.zeros((n, len(columns) + (self.market_etf not in col)))
        for r in range(3):
            have = np.flatnonzero(names[:, r] != None)  # noqa: E711 (element-wise)
            out[have, [col[e] for e in names[have, r]]] += hrs[have, r]
        if self.market_etf not in col:
            columns.append(self.market_etf)
        return columns, out

    def frame(self, level: str) -> pd.DataFrame:
        columns, out = self.matrix(level)
        return pd.DataFrame(out, index=self.index, columns=columns)


@dataclass
class PortfolioRisk:
    """Risk of one portfolio on one date; variances are daily, vols annualised (√252)."""

    risk_index: float             # 100 · σ_p / σ_SPY
    vol_ann: float                # σ_p annualised
    market_vol_ann: float         # σ_SPY annualised
    variance: float               # σ²_p, daily
    exposures: pd.Series          # x: $ of each raw ETF per $1 of portfolio (+ = long)
    by_position: pd.DataFrame     # index position: weight, factor, residual, total (Euler, daily variance), share
    by_etf: pd.DataFrame          # index ETF: exposure, role, contribution (daily variance), share
    by_role: pd.Series            # market / sector / subsector / residual shares of σ²_p (sum to 1)
    notes: list[str] = field(default_factory=list)


def etf_roles(etfs: list[str], market_etf: str, sector_etfs: set[str]) -> pd.Series:
    """market for the market ETF, sector for sector SPDRs, subsector for every other ETF."""
    return pd.Series(["market" if e == market_etf else "sector" if e in sector_etfs else "subsector" for e in etfs],
                     index=etfs)


def portfolio_risk(weights: pd.Series, exposures: pd.DataFrame, residual_var: pd.Series, etf_cov: pd.DataFrame,
                   roles: pd.Series, market_etf: str = "SPY") -> PortfolioRisk:
    """Risk Index and its Euler decomposition.

    weights: (n,) decimal weights by position (shorts negative); exposures: (n × K) raw-ETF
    exposures e_i (= −L3 hedge ratios); residual_var: (n,) daily σ²_ε; etf_cov: (K × K) daily
    covariance of the raw ETF returns (must include the market ETF); roles: ETF → role.
    """
    w = weights.astype(float)
    if not np.isfinite(w).all() or w.empty:
        raise DataValidationError("weights must be finite and non-empty")
    # Rows already in the weights' order with no gap need no reindex (the services' usual case).
    aligned = exposures.index.equals(w.index) and not exposures.isna().to_numpy().any()
    E = exposures if aligned else exposures.reindex(index=w.index).fillna(0.0)
    etfs = list(dict.fromkeys([market_etf, *E.columns]))
    E = E.reindex(columns=etfs, fill_value=0.0)
    cov = _aligned_cov(etf_cov, etfs)
    used = np.abs(E.to_numpy()).sum(axis=0) > 0
    missing = [e for e, u, d in zip(etfs, used, np.diag(cov)) if (u or e == market_etf) and not np.isfinite(d)]
    if missing:
        raise DataValidationError(f"no return history in the window for ETF(s) {missing}")
    C = np.where(np.isnan(cov), 0.0, cov)
    x = w.to_numpy() @ E.to_numpy()                       # (K,) portfolio ETF exposures
    Cx = C @ x
    s2 = (residual_var if residual_var.index.equals(w.index) else residual_var.reindex(w.index)).to_numpy(dtype=float)
    notes = []
    if np.isnan(s2).any():
        notes.append(f"{int(np.isnan(s2).sum())} positions without a residual variance count it as 0")
        s2 = np.nan_to_num(s2)
    factor_pos = w.to_numpy() * (E.to_numpy() @ Cx)       # w_i · e_i'Σ_f x
    resid_pos = w.to_numpy() ** 2 * s2
    total = float(x @ Cx + resid_pos.sum())
    var_m = float(C[0, 0])
    pos_total = factor_pos + resid_pos
    by_position = pd.DataFrame({"weight": w.to_numpy(), "factor": factor_pos, "residual": resid_pos, "total": pos_total,
                                "share": pos_total / total if total > 0 else np.nan}, index=w.index)
    role_of = dict(zip(roles.index, roles.to_numpy(dtype=object)))
    contribution = x * Cx
    by_etf = pd.DataFrame({"exposure": x, "role": [role_of.get(e, "subsector") for e in etfs],
                           "contribution": contribution, "share": contribution / total if total > 0 else np.nan},
                          index=etfs)
    by_role = by_etf.groupby("role")["contribution"].sum().reindex(ROLES, fill_value=0.0)
    by_role["residual"] = resid_pos.sum()
    by_role = by_role / total if total > 0 else by_role * np.nan
    return PortfolioRisk(
        risk_index=100.0 * np.sqrt(total / var_m), vol_ann=float(np.sqrt(total * 252)),
        market_vol_ann=float(np.sqrt(var_m * 252)), variance=total,
        exposures=pd.Series(x, index=etfs), by_position=by_position, by_etf=by_etf, by_role=by_role, notes=notes)


def _aligned_cov(etf_cov: pd.DataFrame, etfs: list[str]) -> np.ndarray:
    """``etf_cov.reindex(index=etfs, columns=etfs).to_numpy()`` (NaN where an ETF is absent)."""
    if not (etf_cov.index.is_unique and etf_cov.index.equals(etf_cov.columns)):
        return etf_cov.reindex(index=etfs, columns=etfs).to_numpy(dtype=float, na_value=np.nan)
    at = {e: i for i, e in enumerate(etf_cov.index)}
    pos = np.array([at.get(e, -1) for e in etfs], dtype=np.intp)
    out = etf_cov.to_numpy(dtype=float, na_value=np.nan)[np.ix_(np.maximum(pos, 0), np.maximum(pos, 0))]
    out[pos < 0, :] = np.nan
    out[:, pos < 0] = np.nan
    return out


@dataclass
class BookExposure:
    """A book in dollars (or in weight units where no dollar value is known: ``unit == 'weight'``).

    long ≥ 0, short ≤ 0, gross = long − short, net = long + short; beta_dollars = Σ value_i·β_i
    with β_i the cascade's L1 market beta (−l1_mkt_hr); beta = beta_dollars / gross;
    hedge_dollars: (ETFs × levels) Σ_i value_i·HR_i (− = short the ETF), the trades that hedge the
    book at each level, sized on the matched positions only.
    """

    unit: str
    long: float
    short: float
    gross: float
    net: float
    beta_dollars: float
    beta: float
    hedge_dollars: pd.DataFrame

    def as_dict(self) -> dict:
        """JSON-ready: the numbers and the hedge trades per level (non-zero ETFs only)."""
        return {"unit": self.unit, "long": self.long, "short": self.short, "gross": self.gross, "net": self.net,
                "net_over_gross": self.net / self.gross if self.gross > 0 else None,
                "beta_dollars": self.beta_dollars, "beta_over_gross": self.beta,
                "hedge_dollars": nonzero_by_column(self.hedge_dollars),
                "convention": "weights are value / gross (Σ|value|); long-only books sum to 1"}


def nonzero_by_column(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """{column: {row label: value}} of a float frame's non-zero cells (JSON-ready; NaN kept)."""
    labels = [str(k) for k in frame.index]
    values = frame.to_numpy(dtype=float)
    return {col: {k: float(v) for k, v in zip(labels, values[:, j]) if v != 0} for j, col in enumerate(frame.columns)}


def book_exposure(values: pd.Series, positions: pd.DataFrame, hedge_per_gross: pd.DataFrame, unit: str) -> BookExposure:
    """Dollars of a signed book. values: (n,) signed value by position (USD or weight units);
    positions: index position, column l1_mkt_hr (β = −l1_mkt_hr, NaN counts as 0); hedge_per_gross:
    (ETFs × levels) hedge ratios per $1 of gross (:func:`portfolio_hedge` of value/gross weights)."""
    v = values.astype(float)
    long, short = float(v[v > 0].sum()), float(v[v < 0].sum())
    gross = long - short
    beta = -positions["l1_mkt_hr"].reindex(v.index).astype(float).fillna(0.0)
    beta_dollars = float((v * beta).sum())
    return BookExposure(unit, long, short, gross, long + short, beta_dollars,
                        beta_dollars / gross if gross > 0 else float("nan"), hedge_per_gross * gross)


def portfolio_hedge(weights: pd.Series, hedge_ratios: pd.DataFrame) -> pd.Series:
    """Position-weighted hedge ratios netted by ETF: $ of each ETF per $1 of portfolio (− = short)."""
    return (hedge_ratios.reindex(index=weights.index).fillna(0.0).mul(weights, axis=0)).sum(axis=0)


def trade_list(portfolio_hr: pd.Series, value: float) -> pd.DataFrame:
    """Hedge trades in dollars for a portfolio of ``value`` USD: side, ETF, notional (USD)."""
    if not np.isfinite(value) or value <= 0:
        raise DataValidationError(f"portfolio value must be a positive number of USD, got {value!r}")
    hr = portfolio_hr.to_numpy(dtype=float)
    keep = np.abs(hr) > 1e-12
    dollars = hr[keep] * value
    notional = np.abs(dollars)
    # Largest first, in the order DataFrame.sort_values(ascending=False) gives (ties included):
    # pandas sorts the reversed values and reverses the result (NaN, which cannot occur here, last).
    order = np.arange(len(notional))[::-1][notional[::-1].argsort(kind="quicksort")][::-1]
    return pd.DataFrame({"etf": portfolio_hr.index[keep][order], "side": np.where(dollars[order] < 0, "short", "long"),
                         "notional_usd": notional[order], "hedge_ratio": hr[keep][order]})


def describe_trades(trades: pd.DataFrame) -> str:
    """'short $X SPY, short $Y XLK, …' as a person would say it."""
    return ", ".join(f"{side} ${notional:,.0f} {etf}" for side, notional, etf
                     in zip(trades["side"], trades["notional_usd"], trades["etf"])) or "no trades"


def market_beta(exposures: pd.Series, etf_cov: pd.DataFrame, market_etf: str = "SPY") -> float:
    """Beta of the ETF exposures to the market ETF under the model covariance."""
    etfs = list(exposures.index)
    C = etf_cov.reindex(index=etfs, columns=etfs).fillna(0.0)
    return float((C @ exposures)[market_etf] / C.loc[market_etf, market_etf])


def scaling_trade(exposures: pd.Series, etf_cov: pd.DataFrame, target: str, reduce: float,
                  market_etf: str = "SPY") -> pd.Series:
    """ETF positions ($ per $1 of portfolio) that cut one exposure by the fraction ``reduce``.

    target 'market' (or the market ETF): the portfolio's beta to the market, cut with the
    market ETF (beta 1). Any other ETF: the net dollar exposure to that ETF from the model's
    raw-ETF map, cut with that ETF. Holdings are not touched (tax-efficient).
    """
    if not 0 < reduce <= 1:
        raise DataValidationError(f"reduce must be a fraction in (0, 1], got {reduce!r}")
    key = market_etf if target.lower() == "market" else target.upper()
    if key == market_etf:
        amount = -reduce * market_beta(exposures, etf_cov, market_etf)
    else:
        if key not in exposures.index or exposures[key] == 0:
            raise DataValidationError(f"the portfolio has no exposure to {key} to reduce")
        amount = -reduce * float(exposures[key])
    return pd.Series({key: amount})
