"""A seeded synthetic market with known truth: the demo's default data and the tests' ground truth.

The market is built the way Model A reads it (SPEC §2), so that every estimate has a true value:

    m        market (SPY): t(5) shocks with GARCH(1,1) volatility, about 16 %/yr
    s_k      = λ_sm,k·m + s*_k                       sector ETF k, s*_k independent
    u_j      = λ_um,j·m + λ_us,j·s*_{k(j)} + u*_j    industry ETF j of sector k(j), u*_j independent
    r_i      = α_i + β_m,i·m + β_s,i·s*_k + β_u,i·u*_j + ε_i    stock i, ε_i t(5)

All shocks share the market's volatility regime (dampened), as real crises lift every volatility.
Stocks are spread over the real GICS sectors and sub-industries of the ETF registry; a stock
whose sub-industry maps to its sector SPDR has no subsector factor (β_u = 0, subsector_etf ==
sector_etf). Sub-industries whose industry ETF belongs to another sector in the registry (XRT for
food retail, FDN for interactive media, ITB for building products) are left out: their true
orthogonal factor would differ from the ETF's own and the "truth" would no longer be exact.

With ``styles=True`` the market also carries what Model B reads — shares outstanding, quarterly
point-in-time fundamentals, daily volume — and its truth: style exposures and style factor
returns, whose term is added to the stock returns (see :mod:`riskstrata.data.synthetic_styles`).
It draws from a separate generator, so the default (``styles=False``) output never changes.

Price conventions (see :meth:`SyntheticMarket.prices`): a stock's first close (100) is the day
before its first return (its ``list_date``); a missing day has no price, and its return is 0 in
the price path, so returns recomputed from the prices equal ``returns`` wherever both exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from riskstrata.data.registry import EtfRegistry

TRADING_DAYS = 252
T_DF = 5.0                                    # Student-t degrees of freedom for every shock
_T_SCALE = np.sqrt((T_DF - 2.0) / T_DF)       # makes a t(5) draw unit-variance

# Relative frequency of sectors among stocks: tech, financials and health care are the most
# common, as in US broad-market indices. Unknown (user-registry) sectors get weight 1.
SECTOR_WEIGHTS: dict[str, float] = {
    "Information Technology": 16, "Financials": 15, "Health Care": 14, "Industrials": 13,
    "Consumer Discretionary": 11, "Real Estate": 6, "Consumer Staples": 6, "Energy": 5,
    "Materials": 5, "Communication Services": 5, "Utilities": 4,
}

# Centre of each sector's market beta λ_sm (drawn ±0.1 around it, kept in [0.6, 1.3]):
# defensives below 1, cyclicals above, roughly as the Select Sector SPDRs trade. Unknown
# sectors draw anywhere in the range.
SECTOR_LAMBDA: dict[str, float] = {
    "Information Technology": 1.15, "Consumer Discretionary": 1.1, "Financials": 1.05,
    "Industrials": 1.0, "Materials": 1.0, "Communication Services": 1.0, "Energy": 0.95,
    "Real Estate": 0.85, "Health Care": 0.75, "Consumer Staples": 0.65, "Utilities": 0.65,
}

# Tickers a synthetic stock may never take, beyond the registry's ETFs.
_RESERVED = {"SPY", "IVV", "VOO", "VTI", "QQQ", "IWM", "DIA", "RSP", "EFA", "EEM", "TLT", "GLD"}
_SUFFIXES = np.array(["Inc", "Corp", "Holdings", "Group", "Co", "Ltd", "Industries", "Systems", "Partners"])


@dataclass
class SyntheticMarket:
    """A generated market and its truth.

    returns: (T, N) simple daily stock returns, index ``date`` (business days), columns
        ``ticker``; NaN before listing, after delisting and on missing days.
    etf_returns: (T, E) the market, sector and used subsector ETFs; NaN before an ETF exists.
    classifications: ticker, name, gics_sector, gics_sub_industry.
    assignments: index ticker; sector_etf, subsector_etf (EtfRegistry.assign of the above).
    truth: index ticker; beta_mkt, beta_sec, beta_sub (on the orthogonal m, s*, u*), alpha and
        resid_vol (daily, decimal), list_date (first valid return), delist_date (last, NaT if alive).
    link_betas: index etf; level ('sector'|'subsector'), sector_etf (own / parent), lambda_sm,
        lambda_um, lambda_us (NaN on sector rows for the last two).
    securities: ticker, name, asset_type ('stock'|'etf'), valid_from (first price), valid_to
        (last price of a delisted stock, NaT otherwise).

    Model B fields, None unless ``synthetic_market(..., styles=True)`` (details in
    :mod:`riskstrata.data.synthetic_styles`):
    shares_outstanding: index ticker, shares (constant per stock).
    fundamentals: long, one row per (ticker, quarter end): available_date, ticker, period_end,
        market_cap, price, book_value_per_share, price_to_book, eps, pe, dividend_yield, ebitda,
        sales, total_debt, shares_outstanding (USD; ratios decimal), sorted by available_date.
    volume: (T, N) shares traded per day; NaN where ``returns`` is.
    market_cap: (T, N) adjusted close × shares outstanding, USD.
    style_truth: style name → (T, N) true exposures; row d explains the return on d (data
        through the previous trading day); NaN outside the day's universe.
    style_returns: (T, K) true daily style factor returns (0 for MOMENTUM, VOLATILITY, BETA).
    model_b_industry: index ticker, the Model B industry of the stock's GICS sector.
    """

    returns: pd.DataFrame
    etf_returns: pd.DataFrame
    classifications: pd.DataFrame
    assignments: pd.DataFrame
    truth: pd.DataFrame
    link_betas: pd.DataFrame
    securities: pd.DataFrame
    shares_outstanding: pd.Series | None = None
    fundamentals: pd.DataFrame | None = None
    volume: pd.DataFrame | None = None
    market_cap: pd.DataFrame | None = None
    style_truth: dict[str, pd.DataFrame] | None = None
    style_returns: pd.DataFrame | None = None
    model_b_industry: pd.Series | None = None

    def __repr__(self) -> str:
        r = self.returns
        span = f"{r.index[0].date()}..{r.index[-1].date()}" if len(r) else "empty"
        return (f"SyntheticMarket({r.shape[1]} stocks x {r.shape[0]} days {span}, "
                f"{self.etf_returns.shape[1]} ETFs{', styles' if self.style_truth is not None else ''})")

    @property
    def market_etf(self) -> str:
        """The market ETF: always the first column of ``etf_returns``."""
        return str(self.etf_returns.columns[0])

    def prices(self) -> pd.DataFrame:
        """Long (date, ticker, adj_close) for stocks then ETFs, sorted by (ticker, date).

        Each series starts at 100 on the business day before its first valid return, so the
        first return is recoverable; missing days have no row.
        """
        frames = [_long_prices(self.returns), _long_prices(self.etf_returns)]
        return pd.concat(frames, ignore_index=True)

    def orthogonal_factors(self) -> pd.DataFrame:
        """(T, E) the orthogonal factors behind the ETFs: m for the market column, s* = s − λ_sm·m
        for sector ETFs, u* = u − λ_um·m − λ_us·s* for subsector ETFs (columns keep ETF names)."""
        mkt = self.market_etf
        m = self.etf_returns[mkt]
        out = {mkt: m}
        lb = self.link_betas
        for etf, row in lb[lb["level"] == "sector"].iterrows():
            out[etf] = self.etf_returns[etf] - row["lambda_sm"] * m
        for etf, row in lb[lb["level"] == "subsector"].iterrows():
            out[etf] = (self.etf_returns[etf] - row["lambda_um"] * m
                        - row["lambda_us"] * out[row["sector_etf"]])
        return pd.DataFrame(out)[list(self.etf_returns.columns)]

    def true_hedge_ratios(self) -> pd.DataFrame:
        """Index ticker; l1_mkt_hr, l2_mkt_hr, l2_sec_hr, l3_mkt_hr, l3_sec_hr, l3_sub_hr.

        SPEC §2 formulas applied to the true betas and link betas: the population values the
        cascade's estimates should converge to. Stocks with no subsector factor have
        l3_sub_hr = 0 and L3 = L2.
        """
        t = self.truth
        a = self.assignments.reindex(t.index)
        lb = self.link_betas
        lam_sm = lb["lambda_sm"].reindex(a["sector_etf"]).to_numpy()
        has_sub = (a["subsector_etf"] != a["sector_etf"]).to_numpy()
        lam_um = np.where(has_sub, lb["lambda_um"].reindex(a["subsector_etf"]).to_numpy(), 0.0)
        lam_us = np.where(has_sub, lb["lambda_us"].reindex(a["subsector_etf"]).to_numpy(), 0.0)
        bm, bs = t["beta_mkt"].to_numpy(), t["beta_sec"].to_numpy()
        bu = np.where(has_sub, t["beta_sub"].to_numpy(), 0.0)
        return pd.DataFrame({
            "l1_mkt_hr": -bm,
            "l2_mkt_hr": -bm + bs * lam_sm,
            "l2_sec_hr": -bs,
            "l3_mkt_hr": -bm + bs * lam_sm + bu * lam_um - bu * lam_us * lam_sm,
            "l3_sec_hr": -bs + bu * lam_us,
            "l3_sub_hr": -bu,
        }, index=t.index)


def _long_prices(returns: pd.DataFrame) -> pd.DataFrame:
    """Long adjusted closes from wide returns: 100 the day before the first return, then
    100·Π(1 + r) with missing days' returns taken as 0 (and their rows left out)."""
    r = returns.to_numpy(dtype=np.float64)
    valid = np.isfinite(r)
    level = 100.0 * np.cumprod(1.0 + np.where(valid, r, 0.0), axis=0)
    level = np.vstack([np.full((1, r.shape[1]), 100.0), level])          # row 0 = base day
    dates = returns.index.insert(0, returns.index[0] - pd.offsets.BDay(1))
    first = np.where(valid.any(axis=0), valid.argmax(axis=0), -1)
    keep = np.vstack([np.zeros((1, r.shape[1]), dtype=bool), valid])
    has = first >= 0
    keep[first[has], np.flatnonzero(has)] = True                          # the base close
    col, row = np.nonzero(keep.T)                                         # ticker-major order
    return pd.DataFrame({
        "date": dates[row],
        "ticker": returns.columns.to_numpy()[col],
        "adj_close": level[row, col],
    })


def _tickers(rng: np.random.Generator, n: int, reserved: set[str]) -> np.ndarray:
    """n unique 3–4 letter tickers, deterministic from the generator, none in ``reserved``."""
    out: list[str] = []
    seen = set(reserved)
    while len(out) < n:
        k = 2 * (n - len(out)) + 16
        codes = rng.integers(65, 91, size=(k, 4), dtype=np.uint8)
        codes[rng.random(k) < 0.4, 3] = 0                     # numpy 'S' drops the trailing NUL
        for t in codes.view("S4").ravel():
            s = t.decode()
            if s not in seen:
                seen.add(s)
                out.append(s)
                if len(out) == n:
                    break
    return np.array(out, dtype=object)


def _garch_vol(rng: np.random.Generator, n_days: int, annual_vol: float) -> tuple[np.ndarray, np.ndarray]:
    """Market shocks z (unit t(5)) and GARCH(1,1) daily vol σ_t with unconditional annual_vol.

    α = 0.08, β = 0.90: the usual equity-index persistence (half-life of a shock ≈ 35 days).
    """
    alpha, beta = 0.08, 0.90
    var_bar = (annual_vol / np.sqrt(TRADING_DAYS)) ** 2
    omega = var_bar * (1.0 - alpha - beta)
    z = rng.standard_t(T_DF, size=n_days) * _T_SCALE
    h = np.empty(n_days)
    h_t = var_bar
    for t in range(n_days):                  # a recursion: T scalar steps, cheap
        h[t] = h_t
        h_t = omega + alpha * h_t * z[t] ** 2 + beta * h_t
    return z, np.sqrt(h)


def synthetic_market(n_stocks: int = 300, n_days: int = TRADING_DAYS * 6, *, seed: int = 7,
                     start: str = "2015-01-02", listing_fraction: float = 0.1,
                     delisting_fraction: float = 0.05, missing_day_rate: float = 0.001,
                     include_late_etf: bool = True, registry: EtfRegistry | None = None,
                     styles: bool = False, style_vol: tuple[float, float] = (0.002, 0.005)) -> SyntheticMarket:
    """Generate a market of ``n_stocks`` stocks over ``n_days`` business days from ``start``.

    listing_fraction: share of stocks listing inside the sample (between 5 % and 80 % of it);
    delisting_fraction: share delisting, at least min(252, n_days/4) days after listing;
    missing_day_rate: isolated missing returns inside a stock's life (never its first or last day);
    include_late_etf: the Communication Services sector ETF (XLC) starts 40 % into the sample,
    as the real XLC started in 2018. One generator (``np.random.default_rng(seed)``) drives
    everything, so the same arguments give identical output.
    styles: add Model B's fundamentals, volume and style truth, and the style term to the
    returns (:func:`riskstrata.data.synthetic_styles.add_styles`, its own seeded generator);
    everything else is identical to ``styles=False``. style_vol: range of the style factors'
    daily vols (decimal) when styles=True.
    """
    if n_stocks < 1 or n_days < 2:
        raise ValueError("synthetic_market needs n_stocks >= 1 and n_days >= 2")
    reg = registry if registry is not None else EtfRegistry.default()
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start=start, periods=n_days, name="date")
    sqrt_year = np.sqrt(TRADING_DAYS)

    # --- universe: eligible (sector, sub-industry) rows and their ETFs --------------------------
    tab = reg.table
    sectors = tab[tab["level"] == "sector"].reset_index(drop=True)
    subs = tab[tab["level"] == "subsector"].copy()
    subs["sector_etf"] = subs["gics_sector"].map(dict(zip(sectors["gics_sector"], sectors["etf"])))
    own = subs["etf"] == subs["sector_etf"]
    known = reg.known_etfs()
    parent = subs["etf"].map(lambda e: reg.parent_of(e)["sector_etf"] if e in known else None)
    subs = subs[own | (parent == subs["sector_etf"])].reset_index(drop=True)
    sec_w = sectors["gics_sector"].map(SECTOR_WEIGHTS).fillna(1.0).to_numpy(dtype=float)
    # Uneven sub-industry sizes within a sector (gamma weights), each sector summing to its weight.
    raw_w = rng.gamma(2.0, size=len(subs))
    sec_of_sub = subs["gics_sector"].map({s: i for i, s in enumerate(sectors["gics_sector"])}).to_numpy()
    w = raw_w / np.bincount(sec_of_sub, weights=raw_w)[sec_of_sub] * sec_w[sec_of_sub]
    pick = rng.choice(len(subs), size=n_stocks, p=w / w.sum())
    stock_sec = sec_of_sub[pick]                                   # (N,) sector row index
    stock_sub_etf = subs["etf"].to_numpy()[pick]
    has_sub = stock_sub_etf != sectors["etf"].to_numpy()[stock_sec]
    sub_etfs = [e for e in dict.fromkeys(subs["etf"]) if e in set(stock_sub_etf[has_sub])]
    sub_col = {e: i for i, e in enumerate(sub_etfs)}
    n_sec, n_sub = len(sectors), len(sub_etfs)

    # --- factors ------------------------------------------------------------------------------
    z_m, sig_m = _garch_vol(rng, n_days, 0.16)
    m = 0.08 / TRADING_DAYS + sig_m * z_m
    # Other shocks follow the market's regime, dampened (√ of the relative vol), mean-one in
    # variance over the sample so that the stated vols are the realised ones.
    regime = np.sqrt(sig_m / sig_m.mean())[:, None]
    sec_vol = rng.uniform(0.08, 0.15, n_sec) / sqrt_year
    centre = sectors["gics_sector"].map(SECTOR_LAMBDA).to_numpy(dtype=float)
    lam_sm = np.clip(np.where(np.isnan(centre), rng.uniform(0.6, 1.3, n_sec),
                              centre + rng.uniform(-0.1, 0.1, n_sec)), 0.6, 1.3)
    s_star = rng.normal(0.0, 0.01, n_sec) / TRADING_DAYS + \
        regime * sec_vol * rng.standard_t(T_DF, size=(n_days, n_sec)) * _T_SCALE
    sub_vol = rng.uniform(0.08, 0.20, n_sub) / sqrt_year
    lam_um = rng.uniform(0.8, 1.4, n_sub)
    lam_us = rng.uniform(0.6, 1.5, n_sub)
    u_star = rng.normal(0.0, 0.01, n_sub) / TRADING_DAYS + \
        regime * sub_vol * rng.standard_t(T_DF, size=(n_days, n_sub)) * _T_SCALE
    sub_parent = np.array([int(np.flatnonzero(sectors["etf"].to_numpy() == reg.parent_of(e)["sector_etf"])[0])
                           for e in sub_etfs], dtype=np.int64)
    s = lam_sm * m[:, None] + s_star
    u = lam_um * m[:, None] + lam_us * s_star[:, sub_parent] + u_star

    # --- stocks -------------------------------------------------------------------------------
    beta_m = rng.normal(1.0, 0.3, n_stocks)
    beta_s = rng.normal(0.8, 0.4, n_stocks)
    beta_u = np.where(has_sub, rng.normal(0.6, 0.4, n_stocks), 0.0)
    resid_vol = rng.uniform(0.15, 0.45, n_stocks) / sqrt_year
    alpha = rng.normal(0.0, 0.02, n_stocks) / TRADING_DAYS
    # r = F @ B: one (T, K) x (K, N) product with K = 1 + sectors + subsectors (sparse loadings).
    factors = np.column_stack([m, s_star, u_star])
    loadings = np.zeros((1 + n_sec + n_sub, n_stocks))
    cols = np.arange(n_stocks)
    loadings[0] = beta_m
    loadings[1 + stock_sec, cols] = beta_s
    sub_idx = np.array([sub_col.get(e, -1) for e in stock_sub_etf], dtype=np.int64)
    loadings[1 + n_sec + sub_idx[has_sub], cols[has_sub]] = beta_u[has_sub]
    eps = rng.standard_t(T_DF, size=(n_days, n_stocks))
    eps *= resid_vol * _T_SCALE
    eps *= regime
    r = factors @ loadings
    r += alpha
    r += eps
    del eps

    # --- listings, delistings, missing days -----------------------------------------------------
    list_idx = np.zeros(n_stocks, dtype=np.int64)
    n_list = int(round(listing_fraction * n_stocks))
    listed = rng.choice(n_stocks, size=n_list, replace=False)
    list_idx[listed] = rng.integers(int(0.05 * n_days), max(int(0.8 * n_days), int(0.05 * n_days) + 1), n_list)
    delist_idx = np.full(n_stocks, n_days - 1, dtype=np.int64)
    n_delist = int(round(delisting_fraction * n_stocks))
    gone = rng.choice(n_stocks, size=n_delist, replace=False)
    min_life = min(TRADING_DAYS, n_days // 4)
    lo = list_idx[gone] + min_life
    ok = lo < n_days - 1                        # no room for a delisting: the stock survives
    delist_idx[gone[ok]] = rng.integers(lo[ok], n_days - 1)
    is_delisted = np.zeros(n_stocks, dtype=bool)
    is_delisted[gone[ok]] = True
    day = np.arange(n_days)[:, None]
    r[(day < list_idx) | (day > delist_idx)] = np.nan
    n_missing = rng.binomial(n_days * n_stocks, missing_day_rate) if missing_day_rate > 0 else 0
    flat = rng.integers(0, n_days * n_stocks, n_missing)
    t_miss, i_miss = np.divmod(flat, n_stocks)
    inside = (t_miss > list_idx[i_miss]) & (t_miss < delist_idx[i_miss])   # life's ends stay valid
    r[t_miss[inside], i_miss[inside]] = np.nan

    # --- frames -------------------------------------------------------------------------------
    mkt = reg.market_etf
    reserved = reg.known_etfs() | _RESERVED | {mkt}
    tickers = _tickers(rng, n_stocks, reserved)
    names = np.char.add(np.char.add(np.array([t.title() for t in tickers], dtype=str), " "),
                        _SUFFIXES[rng.integers(0, len(_SUFFIXES), n_stocks)])
    ticker_index = pd.Index(tickers, name="ticker", dtype=object)
    returns = pd.DataFrame(r, index=dates, columns=ticker_index)

    sector_etfs = sectors["etf"].tolist()
    etf_returns = pd.DataFrame(np.column_stack([m, s, u]), index=dates,
                               columns=pd.Index([mkt, *sector_etfs, *sub_etfs], name="ticker", dtype=object))
    late_etf = reg.sector_etf("Communication Services")
    if include_late_etf and late_etf in etf_returns.columns:
        etf_returns.iloc[: int(0.4 * n_days), etf_returns.columns.get_loc(late_etf)] = np.nan

    classifications = pd.DataFrame({
        "ticker": tickers, "name": names.astype(object),
        "gics_sector": sectors["gics_sector"].to_numpy()[stock_sec],
        "gics_sub_industry": subs["gics_sub_industry"].to_numpy()[pick],
    })
    assignments = reg.assign(classifications).set_index("ticker")[["sector_etf", "subsector_etf"]]

    truth = pd.DataFrame({
        "beta_mkt": beta_m, "beta_sec": beta_s, "beta_sub": beta_u, "alpha": alpha,
        "resid_vol": resid_vol, "list_date": dates[list_idx],
        "delist_date": pd.DatetimeIndex(np.where(is_delisted, dates.to_numpy()[delist_idx], np.datetime64("NaT"))),
    }, index=ticker_index)

    link_betas = pd.DataFrame({
        "level": ["sector"] * n_sec + ["subsector"] * n_sub,
        "sector_etf": sector_etfs + [sector_etfs[k] for k in sub_parent],
        "lambda_sm": np.concatenate([lam_sm, lam_sm[sub_parent]]),
        "lambda_um": np.concatenate([np.full(n_sec, np.nan), lam_um]),
        "lambda_us": np.concatenate([np.full(n_sec, np.nan), lam_us]),
    }, index=pd.Index(sector_etfs + sub_etfs, name="etf"))

    base_day = dates[0] - pd.offsets.BDay(1)
    first_etf = etf_returns.notna().idxmax()
    stock_from = pd.DatetimeIndex([base_day if i == 0 else dates[i - 1] for i in list_idx])
    securities = pd.concat([
        pd.DataFrame({"ticker": tickers, "name": names.astype(object), "asset_type": "stock",
                      "valid_from": stock_from, "valid_to": truth["delist_date"].to_numpy()}),
        pd.DataFrame({"ticker": etf_returns.columns.to_numpy(), "name": [f"{e} (synthetic)" for e in etf_returns.columns],
                      "asset_type": "etf",
                      "valid_from": [base_day if d == dates[0] else dates[dates.get_loc(d) - 1] for d in first_etf],
                      "valid_to": pd.NaT}),
    ], ignore_index=True)
    market = SyntheticMarket(returns=returns, etf_returns=etf_returns, classifications=classifications,
                             assignments=assignments, truth=truth, link_betas=link_betas, securities=securities)
    if styles:
        from riskstrata.data.synthetic_styles import add_styles  # imports this module
        market = add_styles(market, seed=seed, regime=regime[:, 0], style_vol=style_vol)
    return market
