"""Raw style descriptors of Model B: (T × N) panels from returns, caps, volume and fundamentals.

Every function takes and returns ``pd.DataFrame`` panels (dates × names, float64, NaN =
missing) aligned on the same dates and names, and uses data through day t only for row t; the
pipeline lags descriptors by one day (exposures at t−1 explain returns on t). Returns are simple
daily decimals, market caps USD, volumes shares. All rolling and exponentially weighted sums run
along time on whole frames at once (:func:`riskstrata.cascade.moments.window_sums`): no loop
over stocks.

Trailing windows use the rows ``t − window + 1 … t``; exponential weights are ``δ^k`` for the
row k days before t, ``δ = 0.5 ** (1 / halflife)`` (USE4 half-lives: 63 for BETA, 126 for
momentum, 42 for volatility). Missing days carry no weight; ``min_obs`` counts the valid days
in the window (unweighted).

``first`` (every descriptor function takes it): the panels' rows first … T − 1 only, the same
numbers bit for bit as those rows of the whole panels — the earlier rows are read (windows, the
year-ago value, column means) but not computed. A block of a build or a daily update keeps
only its own dates of the trailing panel it computes on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from riskstrata.cascade.moments import center, decay_for, window_sums

__all__ = [
    "LIQUIDITY_WEIGHTS",
    "SNAPSHOT_FIELDS",
    "ValueDescriptors",
    "beta_and_residual_vol",
    "liquidity",
    "log_size",
    "market_cap_panel",
    "momentum",
    "secondary_share_classes",
    "snapshot_ids",
    "total_volatility",
    "value_descriptors",
]

# USE4 LIQUIDITY = 0.35·STOM + 0.35·STOQ + 0.30·STOA (1-, 3- and 12-month share turnover).
LIQUIDITY_WEIGHTS = (0.35, 0.35, 0.30)
TRADING_DAYS_PER_MONTH = 21
# A variance below this fraction of the mean square is rounding noise of the running sums: 0.
_ROUNDOFF = 1e-12


def _frame(values: np.ndarray, like: pd.DataFrame, first: int = 0) -> pd.DataFrame:
    """(T − first, N) ``values`` labelled as rows first … of ``like``."""
    return pd.DataFrame(values, index=like.index[first:], columns=like.columns, dtype="float64")


def _float(panel: pd.DataFrame) -> np.ndarray:
    return panel.to_numpy(dtype="float64", na_value=np.nan, copy=True)


def _check_window(window: int, min_obs: int) -> None:
    if window < 1 or min_obs < 1:
        raise ValueError(f"window and min_obs must be ≥ 1, got window={window}, min_obs={min_obs}")


# ---------------------------------------------------------------------- returns-based


def beta_and_residual_vol(
    returns: pd.DataFrame,
    market: pd.Series,
    *,
    window: int = 252,
    halflife: float = 63,
    min_obs: int = 126,
    first: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """USE4 BETA and the residual volatility of the same regression.

    returns: (T, N) daily simple returns; market: (T,) market (cap-weighted or ETF) returns on
    the same dates (reindexed to ``returns.index``).

    For each stock and day t: the weighted least-squares regression ``r = α + β·m + e`` over the
    trailing ``window`` days where both returns exist, weights ``δ^(t−s)`` (half-life 63 days).
    ``beta`` is β; ``residual_vol`` is the weighted standard deviation of e,
    ``sqrt(Σ w·e² / Σ w)`` — a daily decimal, not annualised (multiply by √252 to annualise; the
    standardisation of exposures makes the scale irrelevant to the model). NaN where fewer than
    ``min_obs`` days are valid or the market did not move in the window.

    Returns ``(beta, residual_vol)``, each (T, N) like ``returns`` (rows ``first`` … only).
    """
    _check_window(window, min_obs)
    decay = decay_for(halflife)
    # Covariances with an intercept are shift invariant: centring keeps the running sums exact.
    r = center(_float(returns))
    m = center(market.reindex(returns.index).to_numpy(dtype="float64", na_value=np.nan)[:, None])
    ok = np.isfinite(r) & np.isfinite(m)
    x = np.where(ok, m, 0.0)
    y = np.where(ok, r, 0.0)
    w = ok.astype("float64")
    sw = window_sums(w, window, decay, first)
    sx, sy = window_sums(x, window, decay, first), window_sums(y, window, decay, first)
    sxx, sxy, syy = (window_sums(p, window, decay, first) for p in (x * x, x * y, y * y))
    count = window_sums(w, window, first=first)
    with np.errstate(divide="ignore", invalid="ignore"):
        cxx = sxx - sx * sx / sw
        cxy = sxy - sx * sy / sw
        cyy = syy - sy * sy / sw
        usable = (count >= min_obs) & (sw > 0) & (cxx > _ROUNDOFF * sxx)
        beta = np.where(usable, cxy / cxx, np.nan)
        sse = cyy - beta * cxy  # Σw·e² of the weighted fit
        sse = np.where(sse <= _ROUNDOFF * syy, 0.0, sse)
        resid_vol = np.where(usable, np.sqrt(sse / sw), np.nan)
    return _frame(beta, returns, first), _frame(resid_vol, returns, first)


def momentum(
    returns: pd.DataFrame,
    *,
    window: int = 252,
    lag: int = 21,
    halflife: float = 126,
    min_obs: int = 126,
    first: int = 0,
) -> pd.DataFrame:
    """USE4 relative strength: the exponentially weighted sum of log(1 + r) over rows
    ``t − window + 1 … t − lag`` (12-1 momentum: the last ``lag`` days, where short-term reversal
    lives, are skipped).

    Weight ``δ^(k − lag)`` for the return k days before t (the most recent return used weighs 1;
    half-life 126 days). Missing returns count as 0 and carry no weight in ``min_obs``, which
    counts valid returns among the ``window − lag`` rows. No risk-free rate is subtracted (a
    constant across stocks on a day, removed by standardisation). Returns a (T, N) panel.
    """
    if not 0 <= lag < window:
        raise ValueError(f"lag must satisfy 0 ≤ lag < window, got lag={lag}, window={window}")
    span = window - lag
    _check_window(span, min_obs)
    r = _float(returns)
    with np.errstate(invalid="ignore", divide="ignore"):
        logret = np.where(r > -1.0, np.log1p(r), np.nan)
    lagged = np.full_like(logret, np.nan)
    lagged[lag:] = logret[: len(logret) - lag]
    ok = np.isfinite(lagged)
    total = window_sums(np.where(ok, lagged, 0.0), span, decay_for(halflife), first)
    count = window_sums(ok.astype("float64"), span, first=first)
    return _frame(np.where(count >= min_obs, total, np.nan), returns, first)


def total_volatility(
    returns: pd.DataFrame,
    *,
    window: int = 252,
    halflife: float = 42,
    min_obs: int = 63,
    first: int = 0,
) -> pd.DataFrame:
    """USE4 DASTD: exponentially weighted standard deviation of daily returns,
    ``sqrt(Σ w·(r − r̄_w)² / Σ w)`` over the trailing ``window`` days (half-life 42).

    Daily decimal, not annualised. A stock whose returns are constant has volatility exactly 0
    (never NaN or inf); NaN where fewer than ``min_obs`` returns exist. Returns a (T, N) panel.
    """
    _check_window(window, min_obs)
    decay = decay_for(halflife)
    r = center(_float(returns))
    ok = np.isfinite(r)
    y = np.where(ok, r, 0.0)
    sw = window_sums(ok.astype("float64"), window, decay, first)
    s1, s2 = window_sums(y, window, decay, first), window_sums(y * y, window, decay, first)
    count = window_sums(ok.astype("float64"), window, first=first)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_sq = s2 / sw
        var = mean_sq - (s1 / sw) ** 2
        var = np.where(var <= _ROUNDOFF * mean_sq, 0.0, var)
        vol = np.where((count >= min_obs) & (sw > 0), np.sqrt(var), np.nan)
    return _frame(vol, returns, first)


# ---------------------------------------------------------------------- size and liquidity


def market_cap_panel(
    raw_close: pd.DataFrame | None,
    shares_outstanding: pd.DataFrame | None,
    rolled_cap: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Daily market cap (USD), (T, N) like ``raw_close`` (else like ``rolled_cap``).

    raw_close: *raw* (unadjusted) closes, USD/share; shares_outstanding: point-in-time share
    counts (e.g. from :func:`riskstrata.data.fundamentals.fundamentals_panel`), aligned to it.
    rolled_cap: the latest snapshot's cap rolled to day t by the adjusted-close relative,
    ``cap_snapshot × adj_close_t / adj_close_snapshot`` (``fundamentals_panel`` for ``market_cap``
    with ``adj_close``): between snapshots the cap moves with the stock's total return.

    **Which input wins**: where a raw close and a share count are both given and positive, the
    cap is ``raw_close × shares`` (two observations of the day beat a rolled estimate); elsewhere
    the rolled snapshot cap; NaN where neither gives a positive cap. Never pass an adjusted close
    as ``raw_close``: it is re-based by every later split and dividend, so a cap built on it is
    look-ahead (a stock that later split and rallied looks small in the past).
    """
    like = raw_close if raw_close is not None else rolled_cap
    if like is None:
        raise ValueError("market_cap_panel needs raw closes and shares, or a rolled snapshot cap")
    cap = np.full(like.shape, np.nan)
    if rolled_cap is not None:
        c = _float(rolled_cap.reindex(index=like.index, columns=like.columns))
        cap = np.where(c > 0, c, np.nan)
    if raw_close is not None and shares_outstanding is not None:
        p = _float(raw_close)
        s = _float(shares_outstanding.reindex(index=like.index, columns=like.columns))
        with np.errstate(invalid="ignore"):
            cap = np.where((p > 0) & (s > 0), p * s, cap)
    return _frame(cap, like)


def secondary_share_classes(market_cap: pd.DataFrame, eligible: np.ndarray, issuer: pd.Series | None,
                            eligible_before: np.ndarray | None = None) -> np.ndarray:
    """(T, N) bool: the share classes that must not count again, True on the days a name is a
    non-primary class of an issuer with several classes.

    market_cap: (T, N) the issuer's whole cap on each of its classes (what vendors report per
    class); eligible: (T, N) bool, the days a name could enter the estimation universe (positive
    cap, history, price floor); issuer: name → issuer id (NaN or absent: its own issuer).

    Convention: an issuer's cap is **assigned whole to one primary class** per day — the
    eligible class with the longest eligible history to date, ties to the first column — and the
    other classes are kept out of the estimation universe (they still get exposures, specific
    risk and a cap, so portfolios holding them are priced). Why assignment, not a split: √cap
    regression weights are concave, so any split of a cap C over k classes weighs the issuer
    √k-fold more (Σ√(C/k) = √(kC)); a split needs class share counts the snapshots do not
    carry; and share classes are near-duplicate return series, so regressing both adds no
    information but doubles the issuer's pull. With assignment the issuer counts exactly once in
    the cap-weighted industry constraint, the cap-weighted standardisation and the √cap weights.

    eligible_before: (N,) eligible days before the panel's first row (a daily update works on a
    trailing panel: the history it does not hold still decides which class is primary).
    """
    T, N = market_cap.shape
    out = np.zeros((T, N), dtype=bool)
    if issuer is None:
        return out
    ids = pd.Series(issuer).reindex(market_cap.columns)
    ids = ids.where(ids.notna(), pd.Series(market_cap.columns.astype(str), index=market_cap.columns)).astype(str)
    # Only issuers with several classes have a choice to make: a few among thousands of names.
    code, _ = pd.factorize(ids.to_numpy(dtype=object))
    for group in np.flatnonzero(np.bincount(code) >= 2):
        cols = np.flatnonzero(code == group)
        run = np.cumsum(eligible[:, cols], axis=0)
        if eligible_before is not None:
            run = run + np.asarray(eligible_before)[None, cols]
        score = np.where(eligible[:, cols], run, -1)
        primary = np.argmax(score, axis=1)  # first column on ties
        sec = np.ones((T, len(cols)), dtype=bool)
        sec[np.arange(T), primary] = False
        out[:, cols] = sec & eligible[:, cols]
    return out


def log_size(market_cap: pd.DataFrame, first: int = 0) -> pd.DataFrame:
    """USE4 LNCAP: natural log of market cap (USD); NaN where the cap is missing or ≤ 0."""
    cap = _float(market_cap.iloc[first:])
    with np.errstate(invalid="ignore", divide="ignore"):
        return _frame(np.where(cap > 0, np.log(cap), np.nan), market_cap, first)


def liquidity(
    volume: pd.DataFrame,
    shares_outstanding: pd.DataFrame,
    *,
    windows: Sequence[int] = (21, 63, 252),
    weights: Sequence[float] = LIQUIDITY_WEIGHTS,
    min_coverage: float = 0.5,
    first: int = 0,
) -> pd.DataFrame:
    """USE4 share-turnover blend (STOM, STOQ, STOA).

    volume: (T, N) shares traded per day; shares_outstanding: (T, N) point in time (aligned to
    ``volume``). Daily turnover = volume / shares. For each window of w days the monthly
    turnover is the mean daily turnover over the valid days × 21, and the component is its
    natural log (USE4: ln(Σ_21 turnover), ln(⅓ Σ_63), ln(1/12 Σ_252) — the same numbers when no
    day is missing). LIQUIDITY = Σ weight·component, weights 0.35/0.35/0.30 renormalised over
    the components available. A component needs ``min_coverage`` of its window with data; NaN
    where there is no volume data (or zero turnover). Note: vendors' volumes are often not split
    adjusted while snapshot share counts are; turnover is off around a split until both agree.
    """
    if len(windows) != len(weights) or not windows:
        raise ValueError(f"windows and weights must have the same non-zero length, got {windows} and {weights}")
    shares = _float(shares_outstanding.reindex(index=volume.index, columns=volume.columns))
    v = _float(volume)
    with np.errstate(invalid="ignore", divide="ignore"):
        turnover = np.where((v >= 0) & (shares > 0), v / shares, np.nan)
    ok = np.isfinite(turnover)
    x, valid = np.where(ok, turnover, 0.0), ok.astype("float64")
    total = np.zeros_like(turnover[first:])
    weight = np.zeros_like(turnover[first:])
    for w, wt in zip(windows, weights):  # three windows, each over all stocks at once
        n = window_sums(valid, int(w), first=first)
        with np.errstate(invalid="ignore", divide="ignore"):
            monthly = TRADING_DAYS_PER_MONTH * window_sums(x, int(w), first=first) / n
            comp = np.where((n >= max(1.0, min_coverage * w)) & (monthly > 0), np.log(monthly), np.nan)
        has = np.isfinite(comp)
        total += np.where(has, wt * comp, 0.0)
        weight += np.where(has, wt, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _frame(np.where(weight > 0, total / weight, np.nan), volume, first)


# ---------------------------------------------------------------------- fundamentals-based


class ValueDescriptors(dict[str, pd.DataFrame]):
    """Descriptor name → (T, N) panel, plus ``notes``: what was approximated and where."""

    def __init__(self, *args: object, notes: list[str] | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.notes: list[str] = list(notes or [])


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / np.where(den != 0, den, np.nan)
    return np.where(np.isfinite(out), out, np.nan)


# Snapshot fields that hold still between two snapshots of a name (never rolled by the price, unlike
# market_cap, price and the yields): a change in any of them marks a new snapshot.
SNAPSHOT_FIELDS = ("sales", "eps", "ebitda", "total_debt", "book_value_per_share", "price_to_book", "pe",
                   "price_to_sales", "shares_outstanding")


def snapshot_ids(panels: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """(T, N) float: per name, how many snapshots have shown up through row t (0 before the first).

    panels: (T, N) = ``shape`` point-in-time values of fields that are constant between snapshots
    (:data:`SNAPSHOT_FIELDS`). A row starts a new snapshot where any panel has a finite value
    that differs from that panel's last finite value before it (or has none). Panels carry
    values, not their dates, so this is the snapshot's identity as far as the data can tell:
    going stale (NaN) is not a new snapshot, and a new snapshot whose fields all equal the
    previous one's is indistinguishable from it (it then counts as the same).
    """
    new = np.zeros(shape, dtype=bool)
    for p in panels:
        before = pd.DataFrame(p).ffill().shift(1).to_numpy(dtype="float64")
        new |= np.isfinite(p) & ~(p == before)
    return np.cumsum(new, axis=0).astype("float64")


def _value_at_lag(panel: np.ndarray, dates: pd.DatetimeIndex, days: int, tolerance_days: int = 31,
                  first: int = 0) -> np.ndarray:
    """Row t → the row of the last date on or before ``t − days`` (within ``tolerance_days``),
    for rows t = first … T − 1 of ``panel`` (T, N)."""
    dates = pd.DatetimeIndex(dates)
    target = dates[first:] - pd.Timedelta(days=days)
    pos = dates.searchsorted(target, side="right") - 1
    found = pos >= 0
    near = np.zeros(len(target), dtype=bool)
    near[found] = (target[found] - dates[pos[found]]) <= pd.Timedelta(days=tolerance_days)
    out = np.full((len(target), *panel.shape[1:]), np.nan)
    out[near] = panel[pos[near]]
    return out


def value_descriptors(
    fund: Mapping[str, pd.DataFrame],
    market_cap: pd.DataFrame,
    price: pd.DataFrame,
    *,
    growth_lag_days: int = 365,
    first: int = 0,
) -> ValueDescriptors:
    """Fundamental descriptors from point-in-time fundamentals panels.

    fund: field → (T, N) panel (keys of :data:`riskstrata.data.fundamentals.FUNDAMENTAL_FIELDS`
    and the snapshot ratios ``book_to_price`` / ``earnings_yield``, any subset, e.g. from
    ``fundamentals_panel``); market_cap: (T, N) daily cap, USD; price: (T, N) daily *raw* price,
    USD/share (never an adjusted close). Everything is aligned to ``market_cap``.

    Ratios to the price follow the price between snapshots. The loader
    (:func:`riskstrata.services.factors.load_factor_inputs`) passes them rolled:
    ``(B/P)_t = (B/P)_snapshot × adj_close_snapshot / adj_close_t``, the same for E/P and the
    dividend yield, and caps ``cap_snapshot × adj_close_t / adj_close_snapshot``; every ratio
    then comes from one snapshot's own numbers, so a split between snapshots cannot mix per-share
    bases.

    Returns a :class:`ValueDescriptors` (dict of (T, N) panels, NaN where not computable):

    - ``book_to_price`` = ``fund["book_to_price"]`` (the rolled snapshot ratio) where given, else
      book_value_per_share / price, else 1 / price_to_book;
    - ``earnings_yield`` = ``fund["earnings_yield"]`` where given, else eps / price, else 1 / pe
      (negative earnings give negative yields);
    - ``dividend_yield`` = ``fund["dividend_yield"]`` (decimal; rolled when the loader rolls it);
    - ``ebitda_to_ev`` = ebitda / (market_cap + total_debt); where debt is unknown the EV is the
      market cap alone (cash is never netted: snapshots carry none) — noted in ``notes``;
    - ``growth`` = ln(sales_t / sales_{t−1y}), one-year log sales growth: sales_t the panel's
      (point-in-time) value on t, sales_{t−1y} its value on the last date of the panel on or
      before t − ``growth_lag_days`` calendar days (within 31 days of it). NaN in the first year,
      or where either value is missing or ≤ 0, and NaN where no new snapshot arrived since the
      year-ago one (both ends would be the same snapshot: growth cannot be measured, it is not
      0). A new snapshot is told by a change in any of the name's :data:`SNAPSHOT_FIELDS` in
      ``fund`` (:func:`snapshot_ids`; the panels carry values, not their dates). With sparse
      snapshots the two can be more than a year apart (at most the lag plus the panel's age
      limit): growth is then over that longer span, not annualised;
    - ``eps_growth`` = (eps_t − eps_{t−1y}) / |eps_{t−1y}|, the same two dates on the eps panel
      (NaN where that earlier eps is 0 or missing, or both ends are the same snapshot; a
      narrowing loss counts as growth);
    - ``quality`` = ebitda / sales (EBITDA margin); where sales are unknown, the proxy
      ebitda / market_cap (profitability per dollar of equity value, a different scale) —
      noted in ``notes``;
    - ``leverage`` = total_debt / market_cap (market leverage; NaN where debt is unknown).

    ``first``: rows first … T − 1 only (module docstring); the notes count those rows.
    """
    like = market_cap
    nan = np.full((len(like.index) - first, len(like.columns)), np.nan)

    def whole(field: str) -> np.ndarray:
        """(T, N) the field's panel: the growth descriptors read the year-ago rows."""
        panel = fund.get(field)
        return np.full(like.shape, np.nan) if panel is None else _float(
            panel.reindex(index=like.index, columns=like.columns))

    # The fields that hold still between snapshots, whole: a new snapshot is told by a change.
    held = {f: whole(f) for f in SNAPSHOT_FIELDS if f in fund}

    def get(field: str) -> np.ndarray:
        """(T − first, N) the field's rows from ``first`` on."""
        if field in held:
            return held[field][first:]
        panel = fund.get(field)
        return nan.copy() if panel is None else _float(
            panel.reindex(index=like.index, columns=like.columns).iloc[first:])

    cap = _float(market_cap.iloc[first:])
    px = _float(price.reindex(index=like.index, columns=like.columns).iloc[first:])
    px = np.where(px > 0, px, np.nan)
    cap = np.where(cap > 0, cap, np.nan)
    notes: list[str] = []

    bvps, ptb = get("book_value_per_share"), get("price_to_book")
    book_to_price = np.where(np.isfinite(bvps), _ratio(bvps, px), _ratio(np.ones_like(ptb), ptb))
    rolled = get("book_to_price")
    book_to_price = np.where(np.isfinite(rolled), rolled, book_to_price)
    eps, pe = get("eps"), get("pe")
    earnings_yield = np.where(np.isfinite(eps), _ratio(eps, px), _ratio(np.ones_like(pe), pe))
    rolled = get("earnings_yield")
    earnings_yield = np.where(np.isfinite(rolled), rolled, earnings_yield)

    ebitda, debt = get("ebitda"), get("total_debt")
    has_debt = np.isfinite(debt)
    ebitda_to_ev = _ratio(ebitda, cap + np.where(has_debt, debt, 0.0))
    no_debt = int((np.isfinite(ebitda_to_ev) & ~has_debt).sum())
    if no_debt:
        notes.append(f"ebitda_to_ev: total_debt unknown for {no_debt:,} name-days; EV = market cap there")

    sales = get("sales")
    margin = _ratio(ebitda, sales)
    quality = np.where(np.isfinite(margin), margin, _ratio(ebitda, cap))
    proxied = int((np.isfinite(quality) & ~np.isfinite(margin)).sum())
    if proxied:
        notes.append(f"quality: sales unknown for {proxied:,} name-days; ebitda / market_cap used there")

    days = pd.DatetimeIndex(like.index)
    # Growth needs two snapshots: the one in force on t and an older one in force a year before.
    # Where no new snapshot arrived in between, both ends are the same numbers and growth cannot
    # be measured: NaN (missing, so it does not count as coverage), never a measured 0.
    ids = snapshot_ids(list(held.values()), like.shape)
    # NaN (no year-ago row) → False
    two_snapshots = _value_at_lag(ids, days, growth_lag_days, first=first) < ids[first:]
    eps_before = _value_at_lag(held["eps"] if "eps" in held else whole("eps"), days, growth_lag_days, first=first)
    eps_growth = np.where(two_snapshots, _ratio(eps - eps_before, np.abs(eps_before)), np.nan)
    sales_before = _value_at_lag(held["sales"] if "sales" in held else whole("sales"), days, growth_lag_days,
                                 first=first)
    with np.errstate(invalid="ignore", divide="ignore"):
        growth = np.where(two_snapshots & (sales > 0) & (sales_before > 0), np.log(sales / sales_before), np.nan)

    out = {
        "book_to_price": book_to_price,
        "earnings_yield": earnings_yield,
        "dividend_yield": get("dividend_yield"),
        "ebitda_to_ev": ebitda_to_ev,
        "growth": growth,
        "eps_growth": eps_growth,
        "quality": quality,
        "leverage": _ratio(debt, cap),
    }
    return ValueDescriptors({k: _frame(v, like, first) for k, v in out.items()}, notes=notes)
