"""What each MCP tool answers: a thin call of the services, shaped as one JSON object.

:class:`Tools` holds the worker's :class:`~riskstrata.api.state.AppState` (the store, and the
published cascade version in memory for ticker search) and has one method per tool. A method's
signature is the tool's input schema and its docstring is the tool's description, written for
a model that reads it before calling: units, signs, what a field means. The server module
turns a method into a tool and a :class:`~riskstrata.errors.RiskstrataError` into a tool error.

Every answer carries its lineage: ``model`` (``cascade`` for Model A, a spec such as ``US21``
for Model B), ``model_version`` (the published version the numbers come from) and
``data_date`` (YYYY-MM-DD, the date the numbers describe). Holdings arrive in the arguments,
become a DataFrame for the portfolio services and are dropped with the call: nothing here
writes or logs them. Keys are the CLI's ``--json`` and the REST API's keys (one vocabulary).
"""

from __future__ import annotations

import datetime as dt
import difflib
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import Field

from riskstrata.api.ours_schemas import MAX_HOLDINGS, Holding, HoldingsBody, records
from riskstrata.api.state import AppState
from riskstrata.api.wire_lookup import search
from riskstrata.errors import DataValidationError, InsufficientHistory, ModelNotBuilt, UnknownTicker
from riskstrata.factors.spec import packaged_specs
from riskstrata.portfolio.risk import PortfolioRisk
from riskstrata.services import cascade, factors, portfolio

MAX_COMPARE = 25
SUGGESTIONS = 5

Ticker = Annotated[str, Field(min_length=1, max_length=32, description="A ticker as traded, e.g. 'AAPL' (case-insensitive).")]
Model = Annotated[str, Field(min_length=1, max_length=64,
                             description="A factor-model spec: 'US21' (market + 10 styles + 10 industries) or 'US_CORE'.")]
Holdings = Annotated[list[Holding], Field(
    min_length=1, max_length=MAX_HOLDINGS,
    description="Positions: each {ticker or cusip, and one of shares, market_value (USD) or weight "
                "(decimal: 0.05 = 5%)}; negative = short. A line such as {ticker: 'CASH', market_value: 1000} is "
                "reported as excluded, not an error.")]
Level = Literal["L1", "L2", "L3", "lstar"]

# Fields of one name worth putting side by side (compare): the L3 view, L*, vol.
COMPARE_FIELDS = ("date", "sector_etf", "subsector_etf", "l3_mkt_er", "l3_sec_er", "l3_sub_er", "l3_res_er",
                  "l3_mkt_hr", "l3_sec_hr", "l3_sub_hr", "l1_mkt_beta", "vol_252d_ann", "lstar_level",
                  "recommended_hedge_level")


def _risk(r: PortfolioRisk) -> dict[str, Any]:
    return {"risk_index": r.risk_index, "vol_ann": r.vol_ann, "market_vol_ann": r.market_vol_ann,
            "decomposition": {k: float(v) for k, v in r.by_role.items()}}


def _frame(holdings: list[Holding]) -> pd.DataFrame:
    """The holdings as the table the portfolio services read (never a path: nothing is read from disk)."""
    return HoldingsBody(holdings=holdings).frame()


class Tools:
    """The MCP tools over one worker's state (see the module docstring)."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    @property
    def store(self):
        return self.state.store

    # ------------------------------------------------------------------ lineage and errors

    def _cascade(self, data_date: str | None = None) -> dict[str, Any]:
        """Lineage of Model A's current version; ModelNotBuilt when there is none."""
        version = self.store.current_version(cascade.MODEL)
        if version is None:
            raise ModelNotBuilt(f"model {cascade.MODEL!r} has not been built yet in this store: "
                                "run `riskstrata build cascade`")
        end = self.store.model_meta(cascade.MODEL, version)["end"]
        return {"model": cascade.MODEL, "model_version": version, "data_date": data_date or end}

    def _factor_model(self, model: str) -> dict[str, Any]:
        """Lineage of a built factor model. Only packaged specs: a path would read the server's files."""
        specs = packaged_specs()
        if model not in specs:
            raise DataValidationError(f"unknown model {model!r}; models are: {', '.join(sorted(specs))}")
        name = factors.model_names(model)["factors"]
        version = self.store.current_version(name)
        if version is None:
            raise ModelNotBuilt(f"model {model!r} is not built in this store: run "
                                f"`riskstrata factors build --model {model}` (the resource "
                                "riskstrata://models lists what is built)")
        return {"model": model, "model_version": version, "data_date": self.store.model_meta(name, version)["end"]}

    def suggestions(self, query: str) -> list[str]:
        """Tickers close to ``query`` for an unknown one: the most similar spellings first (a
        transposition: APPL → AAPL), then the ticker-search's matches of its longest known prefix."""
        try:
            universe = self.state.current().universe
        except Exception:  # noqa: BLE001 - suggestions are a courtesy: the error stands without them
            return []
        q = query.strip().upper()
        near = difflib.get_close_matches(q, list(universe.rows.index), n=SUGGESTIONS, cutoff=0.6)
        for n in range(len(q), 0, -1):  # 'NVDX' finds nothing: try 'NVD', then 'NV', …
            found = search(universe, q[:n]).get("suggestions", [])
            if found:
                near += [s["ticker"] for s in found]
                break
        return list(dict.fromkeys(near))[:SUGGESTIONS]

    def explain_unknown(self, exc: UnknownTicker) -> str:
        """The CLI's message, plus the closest tickers this store knows."""
        near = self.suggestions(exc.ticker)
        return f"{exc}; did you mean: {', '.join(near)}?" if near else f"{exc}; search_tickers lists what exists"

    # ------------------------------------------------------------------ Model A: one name

    def get_metrics(self, ticker: Ticker) -> dict[str, Any]:
        """Every Model A (hierarchical ETF cascade) field for one stock or ETF on the latest model date.

        Levels: L1 hedges with the market ETF (SPY); L2 adds the stock's sector ETF; L3 adds its
        subsector ETF, each factor orthogonal to the ones above it, over a rolling 252-day window.
        - `l{k}_*_hr` hedge ratios: dollars of the raw ETF per $1 long of the stock; negative = sell
          short. Holding them makes the stock's return the residual `l{k}_rr`.
        - `l{k}_*_er` explained risk: share of the window's return variance explained by each
          factor (decimal, 0.25 = 25%); at each level the shares plus `l{k}_res_er` sum to 1.
        - `l1_mkt_beta`, `l2_sec_beta`, `l3_sub_beta`: orthogonal-factor betas (positive for a name
          that moves with the factor). They are not hedge ratios.
        - `lstar_level` (L*, hedge depth): the simplest level whose marginal explained risk is at
          least 1% (L3 if l3_sub_er >= 0.01, else L2 if l2_sec_er >= 0.01, else L1); `lstar_rr` the
          residual return at that level. `recommended_hedge_level`: L* stepped down while the gross
          hedge sum|HR| is over the leverage cap (2.0) or the level adds too little.
        - `vol_23d`, `vol_252d_ann`: vol of the last 23 / 252 days, annualised (decimal); `stock_var`:
          daily variance; returns are daily decimals. `notes` explain null fields (too little history, an ETF that did not exist).
        """
        m = cascade.metrics(self.store, ticker)
        return {**self._cascade(m["date"]), **m}

    def decompose(self, ticker: Ticker) -> dict[str, Any]:
        """Where one name's risk comes from, as four bets at L3: market, sector, subsector, residual.

        Per bet: `er` = share of return variance explained (decimal; the four sum to 1), `hr` = the
        hedge ratio in dollars of `hedge_etf` per $1 long of the stock (negative = sell short; the
        residual cannot be hedged with ETFs, so its hr is null).
        """
        d = cascade.decompose(self.store, ticker)
        return {**self._cascade(d["date"]), **d}

    def get_lstar(self, ticker: Ticker, threshold: Annotated[float | None, Field(
            gt=0, lt=1, description="θ, the marginal explained-risk share a level must add (default 0.01 = 1%).")] = None
                  ) -> dict[str, Any]:
        """L* (hedge depth) of one name: the simplest hedge level (1 = market only, 2 = + sector ETF,
        3 = + subsector ETF) whose marginal explained risk clears θ, today and over the last year.

        Returns the latest `lstar_level`, the count of days at each level over the last 252 model
        days, and the last 20 days (`lstar_rr` = that day's residual return at the level chosen the
        day before: daily decimal). A null level means too little history to fit.
        """
        h = cascade.lstar_history(self.store, ticker, threshold)
        if h.empty:
            raise InsufficientHistory(f"{ticker.strip().upper()} has no model rows")
        year = h.iloc[-252:]
        counts = year["lstar_level"].fillna(0).astype(int).value_counts()
        tail = h.iloc[-20:].reset_index()
        tail["lstar_level"] = [int(v) or None for v in tail["lstar_level"].fillna(0)]
        last = h.iloc[-1]
        return {**self._cascade(str(h.index[-1].date())), "ticker": ticker.strip().upper(),
                "threshold": float(last["threshold"]), "lstar_level": int(last["lstar_level"]) or None,
                "l2_sec_er": last["l2_sec_er"], "l3_sub_er": last["l3_sub_er"],
                "days_at_level_last_year": {f"L{k}": int(counts.get(k, 0)) for k in (1, 2, 3)}
                | {"none": int(counts.get(0, 0))},
                "recent": records(tail.drop(columns="threshold"))}

    def hedge_position(self, ticker: Ticker,
                       dollars: Annotated[float, Field(description="Position size in USD; negative = a short position.")],
                       level: Annotated[Level | None, Field(description=(
                           "L1 (market ETF only), L2 (+ sector ETF), L3 (+ subsector ETF) or lstar; default: the "
                           "name's recommended_hedge_level."))] = None) -> dict[str, Any]:
        """ETF trades in dollars that hedge one stock position, and the risk left after them.

        `trades`: one row per ETF — `side` (short/long), `notional_usd` (positive dollars to trade),
        `hedge_ratio` (dollars of ETF per $1 long of the stock; negative = short). For a long
        position the hedge is mostly short; for a short position (negative dollars) it flips.
        `risk_index_before/after`: 100 x position vol / SPY vol (100 = as risky as the market);
        `market_beta_after`: the market beta left (0 after an L1 or L3 hedge).
        """
        if dollars == 0 or not pd.notna(dollars):
            raise DataValidationError("dollars must be a non-zero number of USD (negative = short)")
        m = cascade.metrics(self.store, ticker)
        recommended = str(m["recommended_hedge_level"])
        chosen = level or (recommended if recommended.startswith("L") else f"L{recommended}")
        h = portfolio.hedge_portfolio(self.store, {m["ticker"]: {"market_value": float(dollars)}}, chosen,
                                      abs(float(dollars)))
        return {**self._cascade(m["date"]), "ticker": m["ticker"], "dollars": float(dollars), "level": h.level,
                "recommended_hedge_level": m["recommended_hedge_level"], "lstar_level": m["lstar_level"],
                "trades": records(h.trades), "description": h.description,
                "risk_index_before": h.before.risk_index, "risk_index_after": h.after.risk_index,
                "residual_share_after": float(h.after.by_role["residual"]), "market_beta_after": h.market_beta_after}

    def compare(self, tickers: Annotated[list[Ticker], Field(min_length=1, max_length=MAX_COMPARE,
                                                             description="Tickers to put side by side.")]
                ) -> dict[str, Any]:
        """Several names side by side on Model A's latest date: L3 explained-risk shares (decimals,
        summing to 1 with l3_res_er), L3 hedge ratios ($ of ETF per $1 long; negative = short), market
        beta, annualised vol, L* and the recommended hedge level. Unknown tickers are listed under
        `errors` (with suggestions; a name without history says so) instead of failing the whole call."""
        rows, errors = [], {}
        for raw in dict.fromkeys(t.strip().upper() for t in tickers):
            try:
                m = cascade.metrics(self.store, raw)
            except UnknownTicker as exc:
                errors[raw] = self.explain_unknown(exc)
                continue
            except InsufficientHistory as exc:
                errors[raw] = str(exc)
                continue
            rows.append({"ticker": m["ticker"], **{f: m[f] for f in COMPARE_FIELDS}})
        if not rows:
            raise DataValidationError("none of the tickers is known: " + "; ".join(errors.values()))
        return {**self._cascade(max(r["date"] for r in rows)), "rows": rows, "errors": errors}

    def search_tickers(self, query: Annotated[str, Field(min_length=1, max_length=64,
                                                         description="Part of a ticker or a company name.")]
                       ) -> dict[str, Any]:
        """Find tickers this store models on its latest date. `exact`: the query is a ticker (or its
        share-class alias, GOOG/GOOGL); otherwise `matches` holds up to 10 tickers ranked
        ticker-prefix, ticker-contains, company-name-contains, each with company name and GICS sector
        where known. An empty `matches` list means nothing matched."""
        pub = self.state.current()
        found = search(pub.universe, query)
        rows = pub.universe.rows
        exact = "suggestions" not in found
        matches = ([{"ticker": found["ticker"], "company_name": rows.at[found["ticker"], "name"],
                     "sector": rows.at[found["ticker"], "sector"]}] if exact else found["suggestions"])
        return {"model": cascade.MODEL, "model_version": pub.version, "data_date": pub.end, "query": query,
                "exact": exact, "matches": matches}

    # ------------------------------------------------------------------ portfolios on Model A

    def analyze_portfolio(self, holdings: Holdings) -> dict[str, Any]:
        """A portfolio's risk on Model A: which lines were analysed ("X/Y holdings analyzed", each
        excluded line with its reason), the Risk Index = 100 x portfolio vol / SPY vol (100 = as risky
        as the market; from the model covariance, correlations included), the Euler shares of
        variance by market / sector / subsector / residual (decimals summing to 1), by position and by
        ETF, and hedge ratios per level (`hedge_ratios[level][etf]`: dollars of ETF per $1 of portfolio,
        negative = short). `factor_model`: Model B's shares (market / styles / industries / specific)
        when US21 is built. Vols are annualised decimals."""
        a = portfolio.analyze_portfolio(self.store, _frame(holdings))
        hrs = a.hedge_ratios
        return {**self._cascade(str(a.match.as_of.date())), "holdings_analyzed": a.match.summary(),
                "analyzed": a.match.analyzed, "total": a.match.total_lines, "excluded": records(a.match.excluded),
                **_risk(a.risk), "by_position": records(a.risk.by_position, index="ticker"),
                "by_etf": records(a.risk.by_etf, index="etf"),
                "hedge_ratios": {lvl: {str(k): float(v) for k, v in hrs[lvl][hrs[lvl] != 0].items()} for lvl in hrs},
                "factor_model": None if a.factor_risk is None else {k: a.factor_risk[k] for k in
                                                                    ("date", "vol_ann", "shares")},
                "notes": a.notes}

    def hedge_portfolio(self, holdings: Holdings,
                        value: Annotated[float, Field(gt=0, description="Portfolio value in USD; trades are dollars of it.")],
                        level: Annotated[Level, Field(description="L1, L2, L3 or lstar (each name at its own L*).")]
                        ) -> dict[str, Any]:
        """The hedge trade list for a portfolio worth `value` USD at one level: position-weighted hedge
        ratios netted by ETF, as trades (`side` short/long, `notional_usd` positive dollars,
        `hedge_ratio` dollars of ETF per $1 of portfolio, negative = short) and a one-line
        `description` ("short $X SPY, short $Y XLK"); the Risk Index (100 x vol / SPY vol) and the
        shares of variance before and after, and the market beta left (0 after an L1 hedge; an L3
        hedge leaves no exposure to any ETF)."""
        h = portfolio.hedge_portfolio(self.store, _frame(holdings), level, value)
        return {**self._cascade(), "level": h.level, "value": h.value, "trades": records(h.trades),
                "description": h.description, "risk_index_before": h.before.risk_index,
                "risk_index_after": h.after.risk_index, "residual_share_after": float(h.after.by_role["residual"]),
                "market_beta_after": h.market_beta_after, "before": _risk(h.before), "after": _risk(h.after)}

    def scale_exposure(self, holdings: Holdings,
                       exposure: Annotated[str, Field(min_length=1, max_length=16, description=(
                           "'market' (market beta) or an ETF ticker (a sector or subsector ETF the portfolio is "
                           "exposed to, e.g. 'XLK').")) ],
                       reduce: Annotated[float, Field(gt=0, le=1, description="Fraction of the exposure to remove (0.5 = halve it).")],
                       value: Annotated[float, Field(gt=0, description="Portfolio value in USD (default 1,000,000).")]
                       = 1_000_000.0) -> dict[str, Any]:
        """Cut one exposure by a fraction with a single ETF trade, selling no holding (tax-efficient).

        `trade`: the ETF, side, `notional_usd` and `hedge_ratio` (dollars of ETF per $1 of portfolio,
        negative = short). `exposure_before/after`: market beta, or the net dollars of that ETF per $1
        of portfolio; after = before x (1 - reduce). Risk Index before and after (100 x vol / SPY vol).
        """
        s = portfolio.scale_portfolio(self.store, _frame(holdings), exposure, reduce, value)
        return {**self._cascade(), "exposure": s.exposure, "reduce": s.reduce, "value": value,
                "trade": records(s.trade), "exposure_before": s.before_exposure, "exposure_after": s.after_exposure,
                "risk_index_before": s.before.risk_index, "risk_index_after": s.after.risk_index}

    # ------------------------------------------------------------------ Model B

    def factor_summary(self, model: Model = "US21") -> dict[str, Any]:
        """Performance of every factor of a built factor model (Model B) over its whole history:
        `cagr`, `cumulative_return`, `ann_vol`, `sharpe` (no risk-free rate), `latest_return` (daily),
        `max_drawdown` (negative) — decimals, not percent. Style factors (SIZE, MOMENTUM, VALUE, …)
        are long-short returns per 1 standard deviation of exposure; industries are relative to the market."""
        lineage = self._factor_model(model)
        return {**lineage, "factors": records(factors.summary(self.store, model), index="factor")}

    def stock_exposures(self, ticker: Ticker, model: Model = "US21",
                        date: Annotated[dt.date | None, Field(description="YYYY-MM-DD (default: the model's last date).")]
                        = None) -> dict[str, Any]:
        """One stock's exposure to every factor of a factor model (Model B) on a date: z-scores (0 =
        the cap-weighted average stock, 1 = one cross-sectional standard deviation above it); the
        market factor's exposure is 1 for every stock and industries are 0/1 memberships."""
        lineage = self._factor_model(model)
        s = factors.stock_exposures(self.store, ticker, None if date is None else date.isoformat(), model)
        as_of = str(s.name).split(" ")[-1]
        return {**lineage, "data_date": as_of, "ticker": ticker.strip().upper(),
                "exposures": {str(k): float(v) for k, v in s.items()}}

    def portfolio_factor_risk(self, holdings: Holdings, model: Model = "US21") -> dict[str, Any]:
        """A portfolio's risk from a factor model (Model B): annualised vol (decimal) from X'FX plus
        specific variance, the Euler shares of variance by group (market / styles / industries /
        specific, summing to 1), the portfolio's exposure to each factor (weight-summed z-scores) and
        the tickers the model does not hold. Takes each holding's `weight` (decimal fraction of the
        portfolio, negative = short) and its ticker."""
        lineage = self._factor_model(model)
        missing = [h.ticker or h.cusip for h in holdings if h.weight is None or not h.ticker]
        if missing:
            raise DataValidationError("portfolio_factor_risk takes holdings as [{ticker, weight}]; "
                                      f"{len(missing)} line(s) lack a ticker or a weight")
        weights = pd.Series([h.weight for h in holdings], index=[h.ticker.strip() for h in holdings], dtype=float)
        r = factors.portfolio_factor_risk(self.store, weights, None, model)
        return {**lineage, "data_date": r["date"], **r}
