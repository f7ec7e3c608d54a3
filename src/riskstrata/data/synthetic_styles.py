"""Model B's part of the synthetic market: fundamentals, volume and style factors with known truth.

``synthetic_market(..., styles=True)`` calls :func:`add_styles` on the finished Model A market. It
draws from its own generator (``default_rng([seed, STYLE_STREAM])``), so the Model A draws, and
everything ``styles=False`` returns, stay exactly as they were; only ``returns`` gains a term.

Published data (what a model may read)
--------------------------------------
shares_outstanding  per stock, constant: lognormal (ln-sd 1.4, bounded at ±2.5 sd), so market
    caps span about three orders of magnitude.
fundamentals        one row per stock and calendar quarter end (``period_end``) inside its life,
    published ``available_date`` = period_end + 45 ± 10 calendar days (``price_date``: the day
    the price and cap were observed, the quarter end or the stock's first close if later) (never sooner than 35 days
    after the quarter end; rows whose availability falls after the sample end or after a
    delisting are not published). ``price`` and ``market_cap`` are the adjusted close of the last
    trading day ≤ period_end (the same level as :meth:`SyntheticMarket.prices`) and
    price × shares_outstanding. Slowly varying characteristics drive the rest: each follows a
    quarterly AR(1) (ρ = 0.9) on a standard normal, bounded at ±2.5 sd, so every descriptor is
    persistent (1-year autocorrelation of the exposures ≈ 0.65; GROWTH, a sum over a year, ≈ 0.78;
    VALUE, EARNINGS_YIELD and LEVERAGE, which also move with the price, 0.5–0.6; SIZE and
    LIQUIDITY, from a fixed share count and turnover, ≈ 0.97–0.99). Measured over 500 stocks ×
    5 years, |x − equal-weighted mean| ≤ 2.8 sd for QUALITY, ≤ 2.5 for LIQUIDITY, ≈ 3.0 for
    DIVIDEND_YIELD, 3.3–3.7 for GROWTH (the name-days whose year spans five quarterly reports)
    and up to 4 for SIZE (price dispersion adds a normal tail to the bounded share count): no
    outliers. VALUE, EARNINGS_YIELD and LEVERAGE divide a snapshot number by the daily close, so
    they move with the price since the report (a stock that halved since its quarter end shows
    twice the book-to-price) and reach 6–8 sd; the model's winsorisation (median ±
    5·1.4826·MAD) clips 0.02–0.1 % of their name-days in the universe (the truth is not
    winsorised):
        book_to_price 0.50 ± 0.18   → book_value_per_share = b/p · price, price_to_book = 1 / (b/p)
        earnings_yield 0.05 ± 0.035 → eps = e/p · price (negative for ~8 %), pe = price / eps (NaN if eps ≤ 0)
        dividend_yield max(0, 0.015 ± 0.012) (about 10 % pay nothing)
        sales growth 0.06 ± 0.10 /yr → sales (TTM, USD) grow by exp(g/4) a quarter from an
                                      initial sales / market cap of 0.6 (ln-sd 0.35)
        ebitda margin 0.18 ± 0.07    → ebitda = margin · sales
        debt / market cap max(0, 0.40 ± 0.22) → total_debt
volume              (T × N) shares/day = shares · τ_i · lognormal(σ 0.3, mean 1), rounded; τ_i, the
    stock's turnover, is lognormal (median 0.6 %/day, ln-sd 0.5 bounded at ±2 sd). NaN wherever
    the return is.
market_cap          (T × N) daily adjusted close × shares (NaN where :meth:`prices` has no row).

Truth
-----
Each style is the model's own descriptor (:mod:`riskstrata.factors.descriptors`) computed from
the published data at the close of the previous trading day, z-scored. The fundamentals are the
latest snapshot with available_date ≤ the previous trading day (what ``fundamentals_panel``
gives on that day); ``close`` is that day's adjusted close (:meth:`SyntheticMarket.prices`, NaN on
a day with no row); cap = shares_outstanding × close (``market_cap_panel``):

    SIZE            ln(cap)                                (``log_size``)
    VALUE           book_value_per_share / close           (``value_descriptors``' book_to_price)
    EARNINGS_YIELD  eps / close                            (its earnings_yield)
    DIVIDEND_YIELD  dividend_yield
    GROWTH          ln(sales / sales_1y)                   sales_1y: the same point-in-time sales as
                    of the last trading day on or before (previous trading day − 365 calendar days);
                    NaN where both were the same snapshot (never, for a listed stock: it reports quarterly)
    QUALITY         ebitda / sales
    LEVERAGE        total_debt / cap                       (z-score = that of USE4's (ME + D)/ME)
    LIQUIDITY       ``descriptors.liquidity``: USE4's 0.35·STOM + 0.35·STOQ + 0.30·STOA, the logs of
                    the monthly share turnover over the last 21, 63 and 252 trading days up to the
                    previous day (volume / the point-in-time share count, known from the first
                    report's availability on; a window needs half its days; weights renormalised
                    over the windows available)

``style_truth[k].loc[d]`` is the exposure that multiplies the return **on d** (data through the
close of the trading day before d): the z-score of descriptor k over the day's universe — the
stocks listed on d (list_date ≤ d ≤ delist_date) that have all eight descriptors (so not the day
after a missing return: no close) — with cap-weighted mean 0 (weights: the daily cap of the
previous trading day, as the model's) and equal-weighted standard deviation 1 (population sd,
ddof = 0, about the equal-weighted mean). Outside the universe it is NaN (every style alike),
and such a stock gets no style return. A stock joins the universe only once it had a report out
a year before (GROWTH is one-year sales growth): 1 year + 35–55 days after its first quarter end
in the sample, so for stocks alive at the start 1.1–1.4 years into the sample (depending on
where the first quarter ends), filling over about 3 weeks. SIZE, VALUE, EARNINGS_YIELD, LEVERAGE
and the weights depend on the close of d − 1, which depends on the style returns through d − 1,
so the returns are generated forward day by day. DIVIDEND_YIELD, QUALITY and GROWTH equal the
latent characteristics up to floating-point rounding (~1e-15); GROWTH is the sum of the quarterly
sales growths g/4 of the snapshots after the year-ago one up to the current one: four quarters,
or three or five (each ~4 % of name-days) where the report lags straddle the year's ends. Because
of the cap weighting, SIZE's z-scores are skewed (about −5 … +2): large caps sit near 0, small
caps far below.

``style_returns`` (T × 11): the true daily returns g_k of the eight styles (independent t(5)
shocks, 0.2–0.5 % daily vol, zero mean, scaled by the market's volatility regime like every
other shock), then MOMENTUM, VOLATILITY and BETA at exactly 0: those styles are derived from
prices, no term drives them, and their estimates should be noise around zero. Each stock's
return gains Σ_k style_truth[k].loc[d, i] · style_returns.loc[d, k]. Exposures have zero mean
under the previous day's caps, so the term adds nothing (up to rounding) to the cap-weighted
return of the day's universe; to Model A it is extra (cross-sectionally correlated) residual, so
``truth`` still gives the betas on m, s*, u*.

Industries
----------
``model_b_industry`` maps GICS sectors to the 10 Model B industries (:data:`MODEL_B_INDUSTRY`;
Real Estate joins FINANCIALS). No new industry shocks are added: a stock's return is
α_i + β_m,i·m + β_s,i·s*_k + β_u,i·u*_j + styles + ε_i, so Model B's market and industry factors
estimate the Model A components. With regression weights w_i and the industry constraint
Σ_K W_K f_K = 0 (cap weights), and exposures drawn independently of the betas,

    f_MARKET ≈ Σ_K W_K·ā_K / Σ_K W_K,    f_K ≈ ā_K − f_MARKET,
    ā_K = the w-weighted mean over industry K's names of β_m,i·m + β_s,i·s*_k + β_u,i·u*_j,

i.e. an industry's return is its names' average sector (s*) and subsector (u*) shock plus its
average excess market beta times m. FINANCIALS mixes the Financials and Real Estate sector
shocks. The relation is not exact (betas differ within an industry), unlike the style truth.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from riskstrata.data.synthetic import _T_SCALE, T_DF, SyntheticMarket
from riskstrata.factors import descriptors as D

STYLE_STREAM = 0x5717E5                      # second seed word: the styles' own random stream

# Styles with a true return, in ``style_truth`` / ``style_returns`` order.
STYLE_FACTORS: tuple[str, ...] = (
    "SIZE", "VALUE", "EARNINGS_YIELD", "DIVIDEND_YIELD", "GROWTH", "QUALITY", "LEVERAGE", "LIQUIDITY",
)
# Price-derived styles: no true return (their column in ``style_returns`` is 0).
PRICE_STYLES: tuple[str, ...] = ("MOMENTUM", "VOLATILITY", "BETA")

MODEL_B_INDUSTRY: dict[str, str] = {
    "Information Technology": "TECHNOLOGY", "Financials": "FINANCIALS", "Real Estate": "FINANCIALS",
    "Health Care": "HEALTHCARE", "Energy": "ENERGY", "Consumer Discretionary": "CONSUMER_DISCRETIONARY",
    "Consumer Staples": "CONSUMER_STAPLES", "Industrials": "INDUSTRIALS", "Materials": "MATERIALS",
    "Utilities": "UTILITIES", "Communication Services": "COMMUNICATION",
    "Telecommunication Services": "COMMUNICATION",
}

FUNDAMENTAL_COLUMNS: tuple[str, ...] = (
    "available_date", "ticker", "period_end", "price_date", "market_cap", "price", "book_value_per_share",
    "price_to_book", "eps", "pe", "dividend_yield", "ebitda", "sales", "total_debt", "shares_outstanding",
)

REPORT_LAG_DAYS = 45                         # calendar days from quarter end to availability ...
REPORT_LAG_JITTER = 10                       # ... ± this, uniform per stock and quarter
GROWTH_LAG_DAYS = 365                        # calendar days back to the year-ago sales in GROWTH
AR_RHO = 0.9                                 # quarterly persistence of the characteristics
BOUND = 2.5                                  # characteristics are clipped at ±BOUND sd

# Characteristics: (mean, sd of the bounded standard normal driver, floor or None).
_CHARS: dict[str, tuple[float, float, float | None]] = {
    "book_to_price": (0.50, 0.18, None),
    "earnings_yield": (0.05, 0.035, None),
    "dividend_yield": (0.015, 0.012, 0.0),
    "growth": (0.06, 0.10, None),
    "margin": (0.18, 0.07, None),
    "leverage": (0.40, 0.22, 0.0),
}


def model_b_industries(classifications: pd.DataFrame) -> pd.Series:
    """Index ticker → Model B industry of the stock's GICS sector (NaN for an unknown sector)."""
    return pd.Series(classifications["gics_sector"].map(MODEL_B_INDUSTRY).to_numpy(),
                     index=pd.Index(classifications["ticker"], name="ticker", dtype=object), name="industry")


def _bounded(z: np.ndarray) -> np.ndarray:
    return np.clip(z, -BOUND, BOUND)


def _standardise_row(raw: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """(n, K) raw descriptors of one day's universe → z-scores with cap-weighted mean 0 (weights
    ``cap``, (n,)) and equal-weighted sd 1 (ddof 0); NaN with < 2 names or no dispersion."""
    n = raw.shape[0]
    if n < 2:
        return np.full(raw.shape, np.nan)
    mu_cw = cap @ raw / cap.sum()
    mu_ew = raw.sum(axis=0) / n
    sd = np.sqrt(((raw - mu_ew) ** 2).sum(axis=0) / n)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (raw - mu_cw) / sd
    return np.where(sd > 0, x, np.nan)


def add_styles(market: SyntheticMarket, *, seed: int, regime: np.ndarray | None = None,
               style_vol: tuple[float, float] = (0.002, 0.005)) -> SyntheticMarket:
    """The market with Model B's data and truth added (see the module docstring).

    ``regime``: (T,) relative volatility of the market's regime (1 = average) scaling the style
    shocks, as for every other shock; ones if None. ``style_vol``: range of the styles' daily
    vols (decimal); raise it for a high-signal market where recovery is limited by the truth,
    not by estimation noise.
    """
    dates = market.returns.index
    tickers = market.returns.columns
    n_days, n_stocks = market.returns.shape
    n_style = len(STYLE_FACTORS)
    rng = np.random.default_rng([seed, STYLE_STREAM])
    reg = np.ones(n_days) if regime is None else np.asarray(regime, dtype=np.float64).reshape(n_days)
    r = market.returns.to_numpy(dtype=np.float64, copy=True)
    cols = np.arange(n_stocks)

    # --- life of each stock (from Model A's truth) ---------------------------------------------
    list_idx = dates.get_indexer(pd.DatetimeIndex(market.truth["list_date"]))
    delist = pd.DatetimeIndex(market.truth["delist_date"])
    delisted = ~delist.isna()
    delist_idx = np.where(delisted, dates.get_indexer(delist.fillna(dates[-1])), n_days - 1)
    day = np.arange(n_days)[:, None]
    listed = (day >= list_idx) & (day <= delist_idx)

    # --- draws, in a fixed order ------------------------------------------------------------------
    shares = np.round(np.exp(np.log(5e7) + 1.4 * _bounded(rng.standard_normal(n_stocks))))
    turnover = np.exp(np.log(0.006) + 0.5 * np.clip(rng.standard_normal(n_stocks), -2.0, 2.0))
    sales_to_cap = np.exp(np.log(0.6) + 0.35 * _bounded(rng.standard_normal(n_stocks)))
    style_vol = rng.uniform(style_vol[0], style_vol[1], n_style)
    g = style_vol * reg[:, None] * rng.standard_t(T_DF, size=(n_days, n_style)) * _T_SCALE

    base_day = dates[0] - pd.offsets.BDay(1)
    quarter_ends = pd.date_range(base_day.normalize(), dates[-1], freq="QE")
    n_q = len(quarter_ends)
    z = np.empty((n_q, n_stocks, len(_CHARS)))
    if n_q:
        z[0] = rng.standard_normal((n_stocks, len(_CHARS)))
        innov = np.sqrt(1.0 - AR_RHO ** 2)
        for q in range(1, n_q):              # Q quarterly steps, each vectorised over stocks
            z[q] = AR_RHO * z[q - 1] + innov * rng.standard_normal((n_stocks, len(_CHARS)))
    chars = {}
    for j, (name, (mean, sd, floor)) in enumerate(_CHARS.items()):
        v = mean + sd * _bounded(z[:, :, j])
        chars[name] = v if floor is None else np.maximum(v, floor)
    lag = REPORT_LAG_DAYS + rng.integers(-REPORT_LAG_JITTER, REPORT_LAG_JITTER + 1, size=(n_q, n_stocks))
    noise_sd = 0.3
    vol_noise = np.exp(noise_sd * rng.standard_normal((n_days, n_stocks)) - 0.5 * noise_sd ** 2)

    # --- volume (independent of returns) ---------------------------------------------------------
    has_ret = np.isfinite(r)
    volume = np.where(has_ret, np.round(shares * turnover * vol_noise), np.nan)
    del vol_noise

    # --- the publication schedule -----------------------------------------------------------------
    qe_row = dates.searchsorted(quarter_ends, side="right") - 1          # -1: the base day
    avail = quarter_ends.to_numpy()[:, None] + lag.astype("timedelta64[D]")
    last_ok = np.where(delisted, delist.fillna(dates[-1]).to_numpy(), dates[-1].to_numpy())
    published = ((qe_row[:, None] >= list_idx - 1) & (qe_row[:, None] <= delist_idx)
                 & (avail <= last_ok[None, :]))
    # first row whose previous trading day is on or after the availability date
    avail_row = dates.searchsorted(avail.ravel(), side="left").reshape(n_q, n_stocks) + 1
    has_prev = published.copy()
    has_prev[:1] = False
    has_prev[1:] &= published[:-1]
    qi, ii = np.nonzero(published)
    event = np.full((n_days + 1, n_stocks), -1, dtype=np.int64)
    np.maximum.at(event, (np.minimum(avail_row[qi, ii], n_days), ii), qi)
    cur = np.maximum.accumulate(event, axis=0)[:n_days]                  # latest usable snapshot
    # ln(sales) of snapshot q is ln(sales at the first report) + cum_g[q] − cum_g[first]
    cum_g = np.cumsum(np.where(has_prev, chars["growth"] / 4.0, 0.0), axis=0)

    # --- GROWTH: ln(sales / sales a year before), both point in time -------------------------------
    # Row t sees the snapshots out by day t−1 (``cur[t]``); a year before means those out by the
    # last trading day j ≤ day t−1 − 365 calendar days, i.e. ``cur[j + 1]``. Only cum_g enters (the
    # first report's sales cancel), so GROWTH is known before any price is.
    year_ago = dates.searchsorted(dates - pd.Timedelta(days=GROWTH_LAG_DAYS), side="right") - 1
    then_row = np.full(n_days, -1)
    then_row[1:] = year_ago[:-1]                                          # for row t: j of day t−1
    cur_then = np.full((n_days, n_stocks), -1, dtype=np.int64)
    cur_then[then_row >= 0] = cur[then_row[then_row >= 0] + 1]
    growth_day = np.full((n_days, n_stocks), np.nan)
    if n_q:
        # Two different snapshots, as the model's ``descriptors.value_descriptors`` requires: with
        # the same one at both ends growth is not measurable (NaN, not 0). Quarterly reports make
        # this never bind for a listed stock, so the returns are what they were without it.
        both = (cur >= 0) & (cur_then >= 0) & (cur != cur_then)
        growth_day[both] = (cum_g[np.maximum(cur, 0), cols] - cum_g[np.maximum(cur_then, 0), cols])[both]

    # --- LIQUIDITY: the model's USE4 turnover blend (``descriptors.liquidity``), point in time -----
    # Turnover divides by the share count a model knows on the day: from the first report's
    # availability on (the same count ``fundamentals_panel`` carries forward), NaN before it.
    known_from = np.full(n_stocks, n_days)
    np.minimum.at(known_from, ii, avail_row[qi, ii] - 1)                # first row dated ≥ availability
    shares_pit = np.where(day >= known_from, shares, np.nan)
    liq = D.liquidity(pd.DataFrame(volume, index=dates, columns=tickers),
                      pd.DataFrame(shares_pit, index=dates, columns=tickers)).to_numpy()
    liq_prev = np.full((n_days, n_stocks), np.nan)                      # row t: volume through t−1
    liq_prev[1:] = liq[:-1]

    # --- the universe's price-free part -----------------------------------------------------------
    # A model has a price on the days :meth:`SyntheticMarket.prices` has a row: those with a return
    # and the base day before the first return. Row t needs the close of t−1.
    has_price = has_ret.copy()
    base_in = (list_idx >= 1)
    has_price[list_idx[base_in] - 1, cols[base_in]] = True
    candidate = np.zeros((n_days, n_stocks), dtype=bool)
    candidate[1:] = has_price[:-1]
    candidate &= listed & (cur >= 0) & np.isfinite(growth_day) & np.isfinite(liq_prev)

    # --- returns, prices and exposures, day by day --------------------------------------------------
    # SIZE, VALUE, EARNINGS_YIELD, LEVERAGE and the cap weights divide by the close of t−1, which
    # depends on the style returns through t−1: a forward loop over days, vectorised over stocks.
    # The formulas are the model's (``descriptors.market_cap_panel``, ``log_size``,
    # ``value_descriptors``) on the published numbers: cap = shares × close, VALUE =
    # book_value_per_share / close, EARNINGS_YIELD = eps / close, LEVERAGE = total_debt / cap.
    price_q = np.full((n_q, n_stocks), np.nan)                          # close at the quarter end
    price_q[qe_row < 0] = 100.0
    quarters_ending = {}                                                # row → quarters ending on it
    for q in np.flatnonzero(qe_row >= 0):
        quarters_ending.setdefault(int(qe_row[q]), []).append(q)
    growth_c = np.empty((n_days, n_stocks))                             # Π(1 + r), r missing → 0
    exposures = np.full((n_days, n_stocks, n_style), np.nan)
    bp_q, ep_q, dy_q, margin_q, lev_q = (chars[k] for k in ("book_to_price", "earnings_yield", "dividend_yield",
                                                            "margin", "leverage"))
    c = np.ones(n_stocks)
    for t in range(n_days):
        idx = np.flatnonzero(candidate[t])
        if idx.size:
            q = cur[t, idx]
            pq = price_q[q, idx]                                        # the snapshot's price
            assert np.isfinite(pq).all(), "a snapshot was used before its quarter-end price"
            px = 100.0 * growth_c[t - 1, idx]                           # close of t−1
            cap = shares[idx] * px
            with np.errstate(invalid="ignore", divide="ignore"):
                raw = np.column_stack([
                    np.log(cap),                                        # SIZE
                    (bp_q[q, idx] * pq) / px,                           # VALUE
                    (ep_q[q, idx] * pq) / px,                           # EARNINGS_YIELD
                    dy_q[q, idx],                                       # DIVIDEND_YIELD
                    growth_day[t, idx],                                 # GROWTH
                    margin_q[q, idx],                                   # QUALITY
                    (lev_q[q, idx] * (pq * shares[idx])) / cap,         # LEVERAGE
                    liq_prev[t, idx],                                   # LIQUIDITY
                ])
            ok = np.isfinite(raw).all(axis=1) & (px > 0)
            idx, raw, cap = idx[ok], raw[ok], cap[ok]
            x = _standardise_row(raw, cap)
            exposures[t, idx] = x
            r[t, idx] += np.nan_to_num(x) @ g[t]
        c = c * (1.0 + np.where(np.isfinite(r[t]), r[t], 0.0))
        growth_c[t] = c
        for q in quarters_ending.get(t, ()):
            price_q[q] = 100.0 * c

    # --- frames -------------------------------------------------------------------------------------
    returns = pd.DataFrame(r, index=dates, columns=tickers)
    level = 100.0 * growth_c                                            # as SyntheticMarket.prices
    market_cap = pd.DataFrame(np.where(has_price, level * shares, np.nan), index=dates, columns=tickers)

    price = price_q[qi, ii]
    mcap = price * shares[ii]
    first_day = np.where(list_idx >= 1, dates[np.maximum(list_idx - 1, 0)], dates[0] - pd.offsets.BDay(1))
    first_close = pd.DatetimeIndex(first_day).to_numpy("datetime64[ns]")  # as SyntheticMarket.prices
    sales = np.empty(0)
    if len(qi):
        first_q = np.argmax(published, axis=0)                          # valid where the stock publishes
        sales0 = sales_to_cap * price_q[first_q, cols] * shares         # sales / cap at the first report
        sales = sales0[ii] * np.exp(cum_g[qi, ii] - cum_g[first_q[ii], ii])
    bp, ep = chars["book_to_price"][qi, ii], chars["earnings_yield"][qi, ii]
    eps = ep * price
    bvps = bp * price
    with np.errstate(invalid="ignore", divide="ignore"):
        pe = np.where(eps > 0, price / eps, np.nan)
    fundamentals = pd.DataFrame({
        "available_date": pd.DatetimeIndex(avail[qi, ii]),
        "ticker": tickers.to_numpy()[ii],
        "period_end": quarter_ends[qi],
        # The day the snapshot's price and cap were observed (the quarter end, or the first close
        # of a stock listed after it): Model B rolls caps and ratios from that day's close.
        "price_date": np.maximum(quarter_ends[qi], first_close[ii]),
        "market_cap": mcap, "price": price, "book_value_per_share": bvps, "price_to_book": price / bvps,
        "eps": eps, "pe": pe, "dividend_yield": chars["dividend_yield"][qi, ii],
        "ebitda": chars["margin"][qi, ii] * sales, "sales": sales,
        "total_debt": chars["leverage"][qi, ii] * mcap, "shares_outstanding": shares[ii],
    }, columns=list(FUNDAMENTAL_COLUMNS))
    fundamentals = fundamentals.sort_values(["available_date", "ticker"], kind="stable").reset_index(drop=True)

    style_truth = {k: pd.DataFrame(exposures[:, :, j], index=dates, columns=tickers)
                   for j, k in enumerate(STYLE_FACTORS)}
    style_returns = pd.DataFrame(np.column_stack([g, np.zeros((n_days, len(PRICE_STYLES)))]), index=dates,
                                 columns=pd.Index([*STYLE_FACTORS, *PRICE_STYLES], name="factor"))
    return dataclasses.replace(
        market, returns=returns,
        shares_outstanding=pd.Series(shares, index=tickers, name="shares_outstanding"),
        fundamentals=fundamentals,
        volume=pd.DataFrame(volume, index=dates, columns=tickers),
        market_cap=market_cap, style_truth=style_truth, style_returns=style_returns,
        model_b_industry=model_b_industries(market.classifications),
    )
