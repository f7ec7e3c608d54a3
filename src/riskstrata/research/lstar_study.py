"""The L* study: does a hedge-depth bar θ pay, out of sample? (issue 16; pure numpy, no I/O).

Input is a :class:`StudyPanel` of (T dates × n stocks) arrays taken from a built cascade: the
gross return, the time-safe residual returns ``l{k}_rr`` (day t hedged with ratios estimated
through t−1), the marginal explained risks that L* reads, and the hedge ratios. Nothing is
refitted: a rule only chooses, per stock-day, which of the three existing residuals it holds.

Rules: L*(θ) for each θ of the grid (θ = ∞ holds L1 always) and the fixed depths L1, L2, L3.
The level held on day t is the one chosen from the window ending t−1 (as ``lstar`` does).

Metrics, per rule, per sector and overall, on ONE common sample (stock-days where every rule
has a residual, so rules are compared on the same days):

- effectiveness over h days (h = 21, 63): for every stock and origin day t0 whose next h days
  [t0, t0+h) are all valid, V_res = Var(rr over the window), V_gross = Var(r over the window)
  (population variances, ÷h); effectiveness = 1 − Σ V_res / Σ V_gross, pooled over stock-origins
  (a variance-weighted mean of per-window effectiveness: stable where a ratio of means is not).
- share where the hedge added variance: the share of those stock-origins with V_res > V_gross.
- net of trading cost c (decimal per dollar traded): day t's residual is charged c·trade_t,
  trade_t = Σ_legs |HR held on t − HR held on t−1| (raw-ETF legs mkt/sec/sub, a level switch
  included); V_net = V_res + mean over the window of (c·trade)², i.e. the cost (its drag and its
  variability) counts as error, as if independent of the residual. With c = 0 it equals V_res.
- held hedge (when the panel carries each stock's ETF returns): the hedge set at t0 (ratios and
  depth through t0−1) is held UNCHANGED over [t0, t0+h); hold_eff_h = 1 − Σ Var(r + Σ HR·f) /
  Σ V_gross over the same windows. The daily-rebalanced numbers above answer "how good is the
  rule's hedge each day"; these answer "how long does it stay good".
- gross leverage: mean Σ|HR| of the hedge held; turnover: Σ trade per stock-year (×252/days);
  depth changes per stock-year; the share of stock-days held at L1/L2/L3.

Confidence intervals: a block bootstrap over dates (blocks of ``block_days`` consecutive dates,
resampled with replacement, seeded). Every metric is a ratio of sums over dates, so each
replicate re-sums per-block numerators and denominators — the same draw for every rule, which
also gives paired intervals for differences between rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from riskstrata.cascade.lstar import lstar_level
from riskstrata.errors import DataValidationError, InsufficientHistory

DEFAULT_THETAS = (0.0, 0.0025, 0.005, 0.01, 0.02, 0.05, np.inf)
DEFAULT_HORIZONS = (21, 63)
FIXED_DEPTHS = (1, 2, 3)
TRADING_DAYS = 252
OVERALL = "All"
NEGLIGIBLE = 0.001  # an effectiveness gap below 0.1 percentage point is called negligible in the summary

HR_FIELDS = ("l1_mkt_hr", "l2_mkt_hr", "l2_sec_hr", "l3_mkt_hr", "l3_sec_hr", "l3_sub_hr")
PANEL_FIELDS = ("returns_gross", "l1_rr", "l2_rr", "l3_rr", "l2_sec_er", "l3_sub_er") + HR_FIELDS
# Optional: each stock's raw market / sector / subsector ETF return on day t (0 or NaN where the
# level fell back). With them the study also scores hedges held unchanged over the horizon.
FACTOR_FIELDS = ("mkt_ret", "sec_ret", "sub_ret")
# Raw-ETF legs (market, sector, subsector) of each level's hedge.
_LEGS = {1: ("l1_mkt_hr", None, None), 2: ("l2_mkt_hr", "l2_sec_hr", None), 3: ("l3_mkt_hr", "l3_sec_hr", "l3_sub_hr")}


@dataclass
class StudyPanel:
    """What the study reads. values[f]: (T, n) float arrays for every f of ``PANEL_FIELDS``,
    aligned to ``dates`` × ``tickers``; row t of an ER or HR field is estimated through day t,
    row t of ``l{k}_rr`` is day t's residual with ratios through t−1. sectors: (n,) labels."""

    dates: pd.DatetimeIndex
    tickers: pd.Index
    sectors: np.ndarray
    values: dict[str, np.ndarray]

    def validate(self) -> None:
        shape = (len(self.dates), len(self.tickers))
        missing = [f for f in PANEL_FIELDS if f not in self.values]
        if missing:
            raise DataValidationError(f"study panel lacks fields {missing}")
        for f in PANEL_FIELDS:
            if np.shape(self.values[f]) != shape:
                raise DataValidationError(f"study panel field {f} has shape {np.shape(self.values[f])}, expected {shape}")
        if len(self.sectors) != shape[1]:
            raise DataValidationError("one sector label per ticker is needed")
        for f in FACTOR_FIELDS:
            if f in self.values and np.shape(self.values[f]) != shape:
                raise DataValidationError(f"study panel field {f} has shape {np.shape(self.values[f])}, expected {shape}")

    @property
    def has_factors(self) -> bool:
        return all(f in self.values for f in FACTOR_FIELDS)


@dataclass(frozen=True)
class Rule:
    """A hedge-depth rule: L*(θ) (θ = inf: always L1) or a fixed depth."""

    name: str
    theta: float | None = None
    depth: int | None = None


def theta_label(theta: float) -> str:
    return "θ=∞" if np.isinf(theta) else f"θ={theta * 100:g}%"


def default_rules(thetas: tuple[float, ...] = DEFAULT_THETAS) -> list[Rule]:
    rules = [Rule(theta_label(t), theta=float(t)) for t in thetas]
    return rules + [Rule(f"L{k}", depth=k) for k in FIXED_DEPTHS]


@dataclass
class LStarStudy:
    """The study's results.

    rules: one row per rule (index rule name): theta, eff_{h}, eff_{h}_lo/_hi (95 % block-bootstrap
        interval), net_eff_{h} (+ interval), added_{h} (share of stock-windows the hedge made
        worse), gross_leverage, turnover_per_year, depth_changes_per_year, share_l1/l2/l3,
        stock_days, cost_drag_bps_per_year.
    curve: θ rules only, the effectiveness-vs-θ curve (theta, eff_h, lo, hi for every horizon).
    sectors: long table (sector, rule, the same metrics) — the heatmap data, see :meth:`heatmap`.
    differences: per rule, its effectiveness minus the best θ rule's (primary horizon), with a
        paired bootstrap interval.
    summary: generated plain-language finding; best_rule: the best θ rule at the primary horizon.
    """

    rules: pd.DataFrame
    curve: pd.DataFrame
    sectors: pd.DataFrame
    differences: pd.DataFrame
    summary: str
    best_rule: str
    params: dict
    universe: pd.DataFrame  # ticker, sector
    notes: list[str] = field(default_factory=list)

    def heatmap(self, metric: str | None = None) -> pd.DataFrame:
        """(sectors × rules) of one metric (default: the primary horizon's effectiveness)."""
        metric = metric or f"eff_{self.params['primary_horizon']}"
        table = self.sectors.pivot(index="sector", columns="rule", values=metric)
        return table[[r for r in self.rules.index if r in table.columns]]

    def to_dict(self) -> dict:
        """JSON-ready (NaN stays NaN here; :func:`riskstrata.jsonsafe.dumps_json` writes null)."""
        return {
            "summary": self.summary, "best_rule": self.best_rule, "params": self.params,
            "rules": self.rules.reset_index().to_dict(orient="records"),
            "curve": self.curve.reset_index().to_dict(orient="records"),
            "differences": self.differences.reset_index().to_dict(orient="records"),
            "sectors": self.sectors.to_dict(orient="records"),
            "universe": self.universe.to_dict(orient="records"),
            "notes": self.notes,
        }


# ---------------------------------------------------------------------------------------------
# Universe

def stratified_sample(sectors: pd.Series, n: int = 275, seed: int = 0) -> pd.Index:
    """n tickers spread evenly over sectors (seeded): n // #sectors from each, a sector with too
    few gives all it has, and the remainder is drawn from the names left, uniformly.

    sectors: index ticker → sector label (only eligible names). Returns the tickers, sorted.
    """
    if n < 1:
        raise DataValidationError(f"sample size must be ≥ 1, got {n}")
    rng = np.random.default_rng(seed)
    sectors = sectors.dropna().sort_index()
    if len(sectors) <= n:
        return pd.Index(sectors.index)
    groups = sorted(sectors.unique(), key=str)
    per = n // len(groups)
    chosen: list = []
    for g in groups:
        names = sectors.index[sectors == g].to_numpy()
        take = min(per, len(names))
        chosen.extend(rng.choice(names, size=take, replace=False))
    rest = np.setdiff1d(sectors.index.to_numpy(dtype=object).astype(str), np.asarray(chosen, dtype=str))
    if n > len(chosen):
        chosen.extend(rng.choice(rest, size=n - len(chosen), replace=False))
    return pd.Index(sorted(chosen))


# ---------------------------------------------------------------------------------------------
# Engine

def _lag(x: np.ndarray, fill: float | int) -> np.ndarray:
    out = np.empty_like(x)
    out[0] = fill
    out[1:] = x[:-1]
    return out


def held_levels(panel: StudyPanel, rule: Rule) -> np.ndarray:
    """(T, n) int8 level held on each day (chosen from the window ending the day before); 0 = none."""
    shape = (len(panel.dates), len(panel.tickers))
    if rule.depth is not None:
        return np.full(shape, rule.depth, dtype=np.int8)
    v = panel.values
    if np.isinf(rule.theta):
        level = np.where(np.isfinite(v["l2_sec_er"]) | np.isfinite(v["l3_sub_er"]), 1, 0).astype(np.int8)
    else:
        level = lstar_level(v["l2_sec_er"], v["l3_sub_er"], rule.theta)
    return _lag(level, 0)


def lagged_ratios(panel: StudyPanel) -> dict[str, np.ndarray]:
    """Every hedge ratio shifted one day (row t = estimated through t−1), missing as 0: computed
    once per study and shared by every rule."""
    return {name: _lag(np.nan_to_num(panel.values[name], nan=0.0, posinf=0.0, neginf=0.0), 0.0)
            for name in HR_FIELDS}


def _legs(lagged: dict[str, np.ndarray], held: np.ndarray) -> list[np.ndarray]:
    """The three raw-ETF legs (mkt, sec, sub) of the hedge held on each day: row t holds the
    ratios estimated through t−1 of the level held on t. Missing ratios count as 0."""
    at = {k: held == k for k in FIXED_DEPTHS}
    legs = []
    for pos in range(3):
        leg = np.zeros(held.shape)
        for k, names in _LEGS.items():
            if names[pos] is not None:
                np.copyto(leg, lagged[names[pos]], where=at[k])
        legs.append(leg)
    return legs


def _window_sums(x: np.ndarray, h: int) -> np.ndarray:
    """(T, n) sums of x over [t, t+h) at row t (NaN-free x); rows with no full window are 0."""
    c = np.zeros((x.shape[0] + 1, x.shape[1]))
    np.cumsum(x, axis=0, out=c[1:])
    out = np.zeros_like(x)
    if x.shape[0] >= h:
        out[: x.shape[0] - h + 1] = c[h:] - c[:-h]
    return out


def _group_sum(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(T, n) → (T, G+1): per-date sums over each group's stocks, then over every stock.

    Stocks are ordered by group, so each group is a run of columns starting at ``starts``
    (reduceat: a matrix product with a one-hot matrix was 20× slower here).
    """
    parts = np.add.reduceat(x, starts, axis=1)
    return np.column_stack([parts, parts.sum(axis=1)])


@dataclass
class _Shared:
    """What every rule reuses: the common sample, lagged ratios, and per horizon the full-window
    mask and the gross variance of each stock-origin (the gross side does not depend on the rule)."""

    common: np.ndarray
    starts: np.ndarray
    lagged: dict[str, np.ndarray]
    full: dict[int, np.ndarray]
    var_gross: dict[int, np.ndarray]


def _shared(panel: StudyPanel, common: np.ndarray, starts: np.ndarray, horizons: tuple[int, ...]) -> _Shared:
    r = np.where(common, panel.values["returns_gross"], 0.0)
    okf = common.astype(np.float64)
    full, var_gross = {}, {}
    for h in horizons:
        full[h] = _window_sums(okf, h) >= h - 0.5
        mean_r = _window_sums(r, h) / h
        var_gross[h] = np.maximum(_window_sums(r * r, h) / h - mean_r ** 2, 0.0)
    return _Shared(common, starts, lagged_ratios(panel), full, var_gross)


def _rule_sums(panel: StudyPanel, held: np.ndarray, sh: _Shared, horizons: tuple[int, ...],
               cost: float) -> dict[str, np.ndarray]:
    """Per-date (T, G) numerators/denominators of every metric for one rule's held levels."""
    v = panel.values
    starts = sh.starts
    ok = sh.common
    rr = np.zeros(held.shape)
    for k in FIXED_DEPTHS:
        np.copyto(rr, v[f"l{k}_rr"], where=(held == k) & ok)
    legs = _legs(sh.lagged, held)
    prev_ok = _lag(ok, False)
    # A trade is counted only between two held days of the sample (entry into a stock is not a trade).
    trade = sum(np.abs(leg - _lag(leg, 0.0)) for leg in legs) * (ok & prev_ok)
    gross = sum(np.abs(leg) for leg in legs) * ok
    changed = (held != _lag(held, 0)) & ok & prev_ok
    okf = ok.astype(np.float64)
    sums = {
        "days": _group_sum(okf, starts),
        "gross": _group_sum(gross, starts),
        "trade": _group_sum(trade, starts),
        "changes": _group_sum(changed.astype(np.float64), starts),
    }
    for k in FIXED_DEPTHS:
        sums[f"at_l{k}"] = _group_sum(((held == k) & ok).astype(np.float64), starts)
    for h in horizons:
        full, var_r = sh.full[h], sh.var_gross[h]
        mean_rr = _window_sums(rr, h) / h
        var_rr = np.maximum(_window_sums(rr * rr, h) / h - mean_rr ** 2, 0.0)
        # The cost's mean square over the window (its drag² plus its variance) is added to the
        # residual variance. The cross term with rr is left out on purpose: a cost charged on a
        # day the residual happens to be up would otherwise *lower* the measured risk.
        var_net = var_rr + cost ** 2 * _window_sums(trade * trade, h) / h
        fullf = full.astype(np.float64)
        sums[f"var_gross_{h}"] = _group_sum(var_r * fullf, starts)
        sums[f"var_res_{h}"] = _group_sum(var_rr * fullf, starts)
        sums[f"var_net_{h}"] = _group_sum(np.maximum(var_net, 0.0) * fullf, starts)
        sums[f"added_{h}"] = _group_sum(((var_rr > var_r) & full).astype(np.float64), starts)
        sums[f"windows_{h}"] = _group_sum(fullf, starts)
    return sums


def _hold_variances(panel: StudyPanel, helds: list[np.ndarray], sh: _Shared, h: int) -> list[np.ndarray]:
    """Per rule, (T, G) sums of Var over [t0, t0+h) of r + Σ HR·f with the hedge frozen at t0.

    The hedge held at t0 (ratios through t0−1) is kept unchanged for the whole window: its
    variance is the quadratic form w'Cw, w = (1, HR_mkt, HR_sec, HR_sub), C the window
    covariance of (r, m, s, u) — computed once per horizon and shared by every rule.
    """
    v = panel.values
    ok = sh.common
    x = [np.where(ok, v["returns_gross"], 0.0)] + [np.where(ok, np.nan_to_num(v[f]), 0.0) for f in FACTOR_FIELDS]
    full = sh.full[h]
    means = [_window_sums(a, h) / h for a in x]
    cov = {}
    for i in range(4):
        for j in range(i, 4):
            cov[i, j] = _window_sums(x[i] * x[j], h) / h - means[i] * means[j]
    del means
    out = []
    for held in helds:
        w = [None] + _legs(sh.lagged, held)
        var = cov[0, 0].copy()
        for i in range(1, 4):
            var += 2 * w[i] * cov[0, i] + w[i] * w[i] * cov[i, i]
            for j in range(i + 1, 4):
                var += 2 * w[i] * w[j] * cov[i, j]
        out.append(_group_sum(np.maximum(var, 0.0) * full, sh.starts))
    return out


def _metrics(s: dict[str, np.ndarray], horizons: tuple[int, ...], cost: float) -> dict[str, np.ndarray]:
    """Ratio metrics from summed numerators/denominators (any leading shape)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {}
        for h in horizons:
            out[f"eff_{h}"] = 1 - s[f"var_res_{h}"] / s[f"var_gross_{h}"]
            out[f"net_eff_{h}"] = 1 - s[f"var_net_{h}"] / s[f"var_gross_{h}"]
            out[f"added_{h}"] = s[f"added_{h}"] / s[f"windows_{h}"]
            if f"var_hold_{h}" in s:
                out[f"hold_eff_{h}"] = 1 - s[f"var_hold_{h}"] / s[f"var_gross_{h}"]
        out["gross_leverage"] = s["gross"] / s["days"]
        out["turnover_per_year"] = s["trade"] / s["days"] * TRADING_DAYS
        out["cost_drag_bps_per_year"] = out["turnover_per_year"] * cost * 1e4
        out["depth_changes_per_year"] = s["changes"] / s["days"] * TRADING_DAYS
        for k in FIXED_DEPTHS:
            out[f"share_l{k}"] = s[f"at_l{k}"] / s["days"]
        out["stock_days"] = s["days"]
    return {k: np.where(np.isfinite(v), v, np.nan) for k, v in out.items()}


BOOTSTRAPPED = ("eff", "net_eff", "hold_eff")


def lstar_study(panel: StudyPanel, *, thetas: tuple[float, ...] = DEFAULT_THETAS,
                horizons: tuple[int, ...] = DEFAULT_HORIZONS, cost_bps: float = 5.0, n_boot: int = 1000,
                block_days: int = 63, seed: int = 0, noise_band: float | None = None) -> LStarStudy:
    """Run the study on a panel. cost_bps: basis points per dollar of ETF traded; n_boot
    bootstrap replicates over blocks of ``block_days`` dates (seeded by ``seed``).

    The primary horizon (the summary's) is the first of ``horizons``.
    """
    panel.validate()
    horizons = tuple(int(h) for h in horizons)
    if not horizons or min(horizons) < 2:
        raise DataValidationError("horizons must be trading-day counts ≥ 2")
    if cost_bps < 0 or not np.isfinite(cost_bps):
        raise DataValidationError(f"cost_bps must be a finite number ≥ 0, got {cost_bps}")
    if any(t < 0 for t in thetas) or any(np.isnan(t) for t in thetas):
        raise DataValidationError(f"θ must be ≥ 0 (inf = always L1), got {list(thetas)}")
    if n_boot < 10 or block_days < 1:
        raise DataValidationError("n_boot must be ≥ 10 and block_days ≥ 1")
    cost = cost_bps / 1e4
    v = panel.values
    rules = default_rules(tuple(sorted(set(float(t) for t in thetas))))
    # The common sample: every rule has a residual (all three levels, and a level chosen the day before).
    er_ok = _lag(np.isfinite(v["l2_sec_er"]) | np.isfinite(v["l3_sub_er"]), False)
    common = np.isfinite(v["returns_gross"]) & er_ok
    for k in FIXED_DEPTHS:
        common &= np.isfinite(v[f"l{k}_rr"])
    if common.sum() == 0 or len(panel.dates) < max(horizons) + block_days:
        raise InsufficientHistory("too few stock-days with residuals at every level for the study "
                                  f"(need at least {max(horizons) + block_days} dates with data)")
    labels = sorted({str(s) for s in panel.sectors})
    groups = labels + [OVERALL]
    # Stocks ordered by sector, so that a sector is a run of columns.
    code = np.array([labels.index(str(s)) for s in panel.sectors])
    order = np.argsort(code, kind="stable")
    starts = np.searchsorted(code[order], np.arange(len(labels)))
    panel = StudyPanel(panel.dates, panel.tickers[order], np.asarray(panel.sectors)[order],
                       {f: np.ascontiguousarray(np.asarray(panel.values[f])[:, order])
                        for f in PANEL_FIELDS + FACTOR_FIELDS if f in panel.values})

    common = common[:, order]
    sh = _shared(panel, common, starts, horizons)
    # Rules that hold the same levels everywhere (θ = 0 and L3 when no marginal ER is negative,
    # θ = ∞ and L1) are computed once.
    helds: list[np.ndarray] = []
    which: list[int] = []
    for rule in rules:
        held = np.where(common, held_levels(panel, rule), 0).astype(np.int8)  # only sample days count
        same = next((i for i, x in enumerate(helds) if np.array_equal(x, held)), None)
        if same is None:
            helds.append(held)
            same = len(helds) - 1
        which.append(same)
    distinct = [_rule_sums(panel, held, sh, horizons, cost) for held in helds]
    if panel.has_factors:
        for h in horizons:
            for sums, var in zip(distinct, _hold_variances(panel, helds, sh, h)):
                sums[f"var_hold_{h}"] = var
    per_rule = [distinct[i] for i in which]
    keys = list(per_rule[0])
    # (K keys, R rules, T dates, G groups)
    stacked = np.stack([np.stack([s[k] for s in per_rule]) for k in keys])
    totals = dict(zip(keys, stacked.sum(axis=2)))  # (R, G)
    point = _metrics(totals, horizons, cost)

    # Block bootstrap over dates: per-block sums, then W (n_boot × blocks) counts of each block.
    T = len(panel.dates)
    block_id = np.arange(T) // block_days
    n_blocks = int(block_id[-1]) + 1
    block_sums = np.zeros((stacked.shape[0], stacked.shape[1], n_blocks, stacked.shape[3]))
    for b in range(n_blocks):
        block_sums[:, :, b] = stacked[:, :, block_id == b].sum(axis=2)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_blocks, size=(n_boot, n_blocks))
    weights = np.zeros((n_boot, n_blocks))
    np.add.at(weights, (np.arange(n_boot)[:, None], draws), 1.0)
    boot = {k: np.einsum("bk,rkg->brg", weights, block_sums[i]) for i, k in enumerate(keys)}
    boot_m = _metrics(boot, horizons, cost)

    rule_names = [r.name for r in rules]
    # θ = ∞ is kept out of the numbers (no inf in a result): its ``kind`` says "always_l1".
    theta_col = [r.theta if r.theta is not None and np.isfinite(r.theta) else np.nan for r in rules]
    kind_col = ["fixed" if r.theta is None else ("always_l1" if np.isinf(r.theta) else "lstar") for r in rules]
    metric_names = list(point)

    def table(g: int) -> pd.DataFrame:
        cols: dict[str, object] = {"kind": kind_col, "theta": theta_col}
        for m in metric_names:
            cols[m] = point[m][:, g]
            if m.startswith(BOOTSTRAPPED):
                lo, hi = np.nanpercentile(boot_m[m][:, :, g], [2.5, 97.5], axis=0)
                cols[f"{m}_lo"], cols[f"{m}_hi"] = lo, hi
        return pd.DataFrame(cols, index=pd.Index(rule_names, name="rule"))

    overall = table(len(groups) - 1)
    sector_rows = []
    for g, label in enumerate(labels):
        t = table(g).reset_index()
        t.insert(0, "sector", label)
        sector_rows.append(t)
    sectors = pd.concat(sector_rows, ignore_index=True)

    primary = horizons[0]
    key = f"eff_{primary}"
    is_theta = np.array([r.theta is not None for r in rules])
    theta_idx = np.flatnonzero(is_theta)
    if not np.isfinite(point[key][theta_idx, -1]).any():
        raise InsufficientHistory(f"no stock has {primary} consecutive days with residuals at every level")
    best = int(theta_idx[np.nanargmax(point[key][theta_idx, -1])])
    diff = boot_m[key][:, :, -1] - boot_m[key][:, best, -1][:, None]
    lo, hi = np.nanpercentile(diff, [2.5, 97.5], axis=0)
    differences = pd.DataFrame({
        "theta": theta_col, f"diff_{primary}": point[key][:, -1] - point[key][best, -1],
        f"diff_{primary}_lo": lo, f"diff_{primary}_hi": hi,
    }, index=pd.Index(rule_names, name="rule"))
    prefixes = ("eff", "hold_eff") if panel.has_factors else ("eff",)
    curve_cols = ["kind", "theta"] + [f"{p}_{h}{x}" for h in horizons for p in prefixes for x in ("", "_lo", "_hi")]
    curve = overall.loc[is_theta, curve_cols]

    universe = pd.DataFrame({"ticker": panel.tickers.astype(str), "sector": [str(s) for s in panel.sectors]})
    params = {"thetas": [None if np.isinf(t) else t for t in sorted(set(float(t) for t in thetas))],
              "theta_inf_means": "always L1", "horizons": list(horizons), "primary_horizon": primary,
              "cost_bps": cost_bps, "n_boot": n_boot, "block_days": block_days, "seed": seed,
              "start": str(panel.dates[0].date()), "end": str(panel.dates[-1].date()),
              "stocks": len(panel.tickers), "sectors": len(labels), "common_stock_days": int(common.sum())}
    summary = _summary(overall, differences, rule_names[best], primary, sectors, labels)
    return LStarStudy(overall, curve, sectors, differences, summary, rule_names[best], params, universe)


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def _summary(overall: pd.DataFrame, diff: pd.DataFrame, best: str, h: int, sectors: pd.DataFrame,
             labels: list[str]) -> str:
    """A few sentences: the winning θ and by how much, or that the gaps are within noise."""
    key = f"eff_{h}"
    row = overall.loc[best]
    thetas = overall[overall["kind"] != "fixed"]
    others = diff.loc[thetas.index.drop(best)]
    col, lo, hi = f"diff_{h}", f"diff_{h}_lo", f"diff_{h}_hi"
    runner = others[col].idxmax()
    clear = others[others[hi] < 0].index.tolist()
    noise = others[others[hi] >= 0].index.tolist()
    lines = [f"Out of sample over {h}-day windows, the best θ is {best}: effectiveness {_pct(row[key])} "
             f"(95% CI {_pct(row[key + '_lo'])} … {_pct(row[key + '_hi'])}), "
             f"net of costs {_pct(row[f'net_eff_{h}'])}."]
    d = others.loc[runner]
    if d[hi] >= 0:
        lines.append(f"The runner-up {runner} is {_pct(-d[col])} behind, within noise "
                     f"(paired 95% CI of the gap {_pct(d[lo])} … {_pct(d[hi])}).")
    else:
        lines.append(f"It beats the runner-up {runner} by {_pct(-d[col])} "
                     f"(paired 95% CI {_pct(-d[hi])} … {_pct(-d[lo])}), beyond noise.")
    if noise:
        lines.append(f"Statistically indistinguishable from the best: {', '.join(noise)}.")
    if clear:
        lines.append(f"Worse beyond noise: {', '.join(clear)}.")
    small = others[(others[col] > -NEGLIGIBLE)].index.tolist()
    if small:
        lines.append(f"Within {NEGLIGIBLE * 100:.1f} percentage point of the best (economically negligible): "
                     f"{', '.join(small)}.")
    if "θ=1%" in overall.index and best != "θ=1%":
        d1 = diff.loc["θ=1%"]
        lines.append(f"The commercial 1% bar: {_pct(d1[col])} vs the best (CI {_pct(d1[lo])} … {_pct(d1[hi])}).")
    hold = f"hold_eff_{h}"
    if hold in overall.columns:
        best_hold = thetas[hold].idxmax()
        lines.append(f"With the hedge held unchanged for {h} days instead of rebalanced daily, the best θ is "
                     f"{best_hold} ({_pct(thetas.loc[best_hold, hold])}, CI {_pct(thetas.loc[best_hold, hold + '_lo'])} … "
                     f"{_pct(thetas.loc[best_hold, hold + '_hi'])}; θ=1%: "
                     + (f"{_pct(overall.loc['θ=1%', hold])}" if "θ=1%" in overall.index else "not in the grid") + ").")
    fixed = overall.loc[[r for r in ("L1", "L2", "L3") if r in overall.index], key]
    lines.append("Fixed depths: " + ", ".join(f"{r} {_pct(v)}" for r, v in fixed.items()) + ".")
    per_sector = sectors.pivot(index="sector", columns="rule", values=key)[list(overall.index)]
    winners = per_sector.idxmax(axis=1)  # ties (L2 = L3 where a sector has no subsector ETF): the first rule
    lines.append("Best rule per sector: " + "; ".join(f"{s} {winners[s]}" for s in labels) + ".")
    return " ".join(lines)
