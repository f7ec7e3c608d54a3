"""The demo: a synthetic market taken through the real path (files → ingest → build → queries).

It exercises exactly what a user with their own data runs, on the embedded seeded market, and
prints a short report comparing a few estimates with the generator's known truth.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from riskstrata.data.fundamentals import ingest_fundamentals
from riskstrata.data.ingest import ingest_classifications, ingest_prices
from riskstrata.data.registry import EtfRegistry
from riskstrata.data.store import Store
from riskstrata.data.synthetic import SyntheticMarket, synthetic_market
from riskstrata.errors import RiskstrataError
from riskstrata.services import factors
from riskstrata.services.cascade import build_cascade, metrics
from riskstrata.services.portfolio import analyze_portfolio, hedge_portfolio

TRADING_DAYS_PER_YEAR = 252


def load_synthetic_into_store(store: Store, market: SyntheticMarket) -> None:
    """Write the market as ordinary files and ingest them, so the demo uses the user's path."""
    with tempfile.TemporaryDirectory() as tmp:
        prices = Path(tmp) / "prices.parquet"
        long = market.prices()
        if market.volume is not None:  # the styles market also trades: volume for LIQUIDITY
            vol = market.volume.rename_axis("date").reset_index().melt(id_vars="date", var_name="ticker",
                                                                         value_name="volume")
            long = long.merge(vol, on=["date", "ticker"], how="left")
        long.to_parquet(prices, index=False)
        classes = Path(tmp) / "classifications.csv"
        market.classifications[["ticker", "gics_sector", "gics_sub_industry"]].to_csv(classes, index=False)
        ingest_prices(store, [prices], etf_tickers=set(EtfRegistry.default().etfs()))
        ingest_classifications(store, classes)
        if market.fundamentals is not None:
            fundamentals = Path(tmp) / "fundamentals.parquet"
            market.fundamentals.to_parquet(fundamentals, index=False)
            ingest_fundamentals(store, fundamentals)


@dataclass
class DemoReport:
    """What the demo did and a few names next to the generator's truth."""

    header: list[str]
    names: pd.DataFrame  # index ticker: ETFs, L*, estimated vs true L3 hedge ratios, residual share
    portfolio: list[str]  # a sample portfolio: X/Y analyzed, Risk Index, decomposition, L3 hedge trades
    factor_summary: pd.DataFrame  # Model B (US21): per-factor CAGR, vol, Sharpe, drawdown
    hints: list[str]


def run_demo(store: Store, *, n_stocks: int = 300, years: int = 6, seed: int = 7,
             progress: Callable | None = None) -> DemoReport:
    """Generate, ingest, build, and compare a few estimates with the truth."""
    market = synthetic_market(n_stocks=n_stocks, n_days=years * TRADING_DAYS_PER_YEAR, seed=seed, styles=True)
    load_synthetic_into_store(store, market)
    if progress is not None:
        with progress() as bar:
            task = bar.add_task("cascade", total=None)
            summary = build_cascade(store, progress=lambda d, t: bar.update(task, completed=d, total=t))
    else:
        summary = build_cascade(store)
    truth = market.true_hedge_ratios()
    # Show names with a subsector ETF first (all three legs), then sector-only ones.
    has_sub = market.assignments["subsector_etf"] != market.assignments["sector_etf"]
    order = list(truth.index[has_sub.reindex(truth.index).to_numpy()][:5]) + list(
        truth.index[~has_sub.reindex(truth.index).to_numpy()][:3])
    rows = []
    for ticker in order:
        try:
            m = metrics(store, ticker)
        except RiskstrataError:  # delisted names have no row on the last date; show others
            continue
        if m["l3_mkt_hr"] is None:
            continue
        t = truth.loc[ticker]
        rows.append({"ticker": ticker, "sector_etf": m["sector_etf"], "subsector_etf": m["subsector_etf"],
                     "lstar": f"L{m['lstar_level']}", "l3_mkt_hr": m["l3_mkt_hr"], "true_l3_mkt_hr": t["l3_mkt_hr"],
                     "l3_sec_hr": m["l3_sec_hr"], "true_l3_sec_hr": t["l3_sec_hr"], "l3_sub_hr": m["l3_sub_hr"],
                     "true_l3_sub_hr": t["l3_sub_hr"], "l3_res_er": m["l3_res_er"]})
    header = [
        f"synthetic market (seed {seed}): {n_stocks} stocks, {len(market.etf_returns.columns)} ETFs, "
        f"{len(market.returns)} trading days",
        f"store: {store.root}",
        f"cascade version {summary.version}: {summary.rows:,} stock-days built in {summary.seconds:.1f}s; "
        "identities (shares sum to 1, replication) checked",
    ]
    first = rows[0]["ticker"] if rows else truth.index[0]
    factor_summary = factors.summary(store, "US21")  # builds Model B on the same store
    portfolio = _sample_portfolio(store, [r["ticker"] for r in rows])
    hints = [f"riskstrata metrics {first} --store {store.root}",
             f"riskstrata decompose {first} --store {store.root}",
             f"riskstrata lstar {first} --threshold 0.05 --store {store.root}"]
    hints.append("riskstrata portfolio analyze HOLDINGS.csv --store " + str(store.root))
    hints.append("riskstrata factors summary --store " + str(store.root))
    if store.in_process:  # the commands above would open an empty store
        hints = [f"(store {store.root} lives in this process only: demo into a directory or a file:// URL "
                 "to query it afterwards)"]
    names = pd.DataFrame(rows).set_index("ticker") if rows else pd.DataFrame()
    return DemoReport(header, names, portfolio, factor_summary, hints)


def _sample_portfolio(store: Store, names: list[str]) -> list[str]:
    """An equal-weight book of the shown names plus a cash line and a typo, to show every step."""
    holdings = {**{n: 1.0 / (len(names) + 2) for n in names}, "CASH": 0.5 / (len(names) + 2),
                "NOTATICKER": 0.5 / (len(names) + 2)}
    hedge = hedge_portfolio(store, holdings, "L3", 1_000_000)
    analysis = analyze_portfolio(store, holdings)
    roles = ", ".join(f"{k} {100 * v:.0f}%" for k, v in analysis.risk.by_role.items())
    return [f"sample $1,000,000 portfolio: {analysis.match.summary()}",
            f"Risk Index {analysis.risk.risk_index:.1f} (variance: {roles})",
            f"L3 hedge: {hedge.description}; Risk Index after {hedge.after.risk_index:.1f}"]
