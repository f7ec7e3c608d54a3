"""The demo: a synthetic market taken through the real path (files → ingest → build → queries).

It exercises exactly what a user with their own data runs, on the embedded seeded market, and
prints a short report comparing a few estimates with the generator's known truth.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from riskstrata.data.ingest import ingest_classifications, ingest_prices
from riskstrata.data.registry import EtfRegistry
from riskstrata.data.store import Store
from riskstrata.data.synthetic import SyntheticMarket, synthetic_market
from riskstrata.errors import RiskstrataError
from riskstrata.services.cascade import build_cascade, metrics

TRADING_DAYS_PER_YEAR = 252


def load_synthetic_into_store(store: Store, market: SyntheticMarket) -> None:
    """Write the market as ordinary files and ingest them, so the demo uses the user's path."""
    with tempfile.TemporaryDirectory() as tmp:
        prices = Path(tmp) / "prices.parquet"
        market.prices().to_parquet(prices, index=False)
        classes = Path(tmp) / "classifications.csv"
        market.classifications[["ticker", "gics_sector", "gics_sub_industry"]].to_csv(classes, index=False)
        ingest_prices(store, [prices], etf_tickers=set(EtfRegistry.default().etfs()))
        ingest_classifications(store, classes)


def run_demo(store: Store, *, n_stocks: int = 300, years: int = 6, seed: int = 7,
             progress: Callable | None = None) -> str:
    """Generate, ingest, build and report; returns the report text."""
    market = synthetic_market(n_stocks=n_stocks, n_days=years * TRADING_DAYS_PER_YEAR, seed=seed)
    load_synthetic_into_store(store, market)
    if progress is not None:
        with progress() as bar:
            task = bar.add_task("cascade", total=None)
            summary = build_cascade(store, progress=lambda d, t: bar.update(task, completed=d, total=t))
    else:
        summary = build_cascade(store)
    truth = market.true_hedge_ratios()
    lines = [
        f"riskstrata demo — synthetic market, seed {seed}: {n_stocks} stocks, {len(market.etf_returns.columns)} ETFs, "
        f"{len(market.returns)} trading days",
        f"store: {store.root}",
        f"cascade version {summary.version}: {summary.rows:,} stock-days in {summary.seconds:.1f}s; "
        "identities (shares sum to 1, replication) checked",
        "",
        f"{'ticker':<7}{'sector':>7}{'sub':>6}{'L*':>4}{'l3_mkt_hr':>11}{'(true)':>9}{'l3_sec_hr':>11}{'(true)':>9}"
        f"{'l3_sub_hr':>11}{'(true)':>9}{'l3_res_er':>11}",
    ]
    shown = 0
    for ticker in truth.index:
        try:
            m = metrics(store, ticker)
        except RiskstrataError:  # delisted names have no row on the last date; show others
            continue
        if m["l3_mkt_hr"] is None:
            continue
        t = truth.loc[ticker]
        lines.append(
            f"{ticker:<7}{m['sector_etf'] or '—':>7}{m['subsector_etf'] or '—':>6}{'L' + str(m['lstar_level']):>4}"
            f"{m['l3_mkt_hr']:>11.3f}{t['l3_mkt_hr']:>9.3f}{m['l3_sec_hr']:>11.3f}{t['l3_sec_hr']:>9.3f}"
            f"{m['l3_sub_hr']:>11.3f}{t['l3_sub_hr']:>9.3f}{m['l3_res_er']:>11.3f}")
        shown += 1
        if shown == 8:
            break
    lines += ["", f"try: riskstrata metrics {truth.index[0]} --store {store.root}",
              f"     riskstrata decompose {truth.index[0]} --store {store.root}",
              f"     riskstrata lstar {truth.index[0]} --threshold 0.05 --store {store.root}"]
    return "\n".join(lines)

