"""Model A commands: build, metrics, decompose, lstar, attribution, demo."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from riskstrata.cli.common import JsonOpt, StoreOpt, fmt, open_store, out, parse_date, print_json, progress_bar

build_app = typer.Typer(no_args_is_help=True, help="Build model versions in the store.")


def register(app: typer.Typer) -> None:
    """Attach the query commands (metrics, decompose, lstar, attribution, demo) to the main app."""
    for command in (metrics, decompose, lstar, attribution, demo):
        app.command()(command)


@build_app.command("cascade")
def build_cascade_cmd(
    store: StoreOpt = None,
    window: Annotated[int, typer.Option(help="Rolling window in trading days.")] = 252,
    halflife: Annotated[Optional[float], typer.Option(help="Exponential weights with this half-life (days).")] = None,
    min_obs: Annotated[Optional[int], typer.Option(help="Valid days needed for an estimate.")] = None,
    start: Annotated[Optional[str], typer.Option(help="First date to store (YYYY-MM-DD).")] = None,
    end: Annotated[Optional[str], typer.Option(help="Last date (YYYY-MM-DD).")] = None,
    registry: Annotated[Optional[Path], typer.Option(
        help="Your edited copy of the ETF registry CSV (default: the packaged etf_map.csv).")] = None,
    cluster: Annotated[Optional[str], typer.Option(
        help="Run on dask.distributed: a scheduler address (tcp://host:8786) or local:N for N local worker "
             "processes. Workers must see the store at the same path.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit Model A (L1/L2/L3 ETF cascade) on the store's data and publish a new version."""
    from riskstrata.data.registry import EtfRegistry
    from riskstrata.services.cascade import build_cascade

    etf_registry = EtfRegistry.from_csv(registry) if registry else None

    with progress_bar() as bar:
        task = bar.add_task("cascade", total=None)
        summary = build_cascade(open_store(store), window=window, halflife=halflife, min_obs=min_obs,
                                start=parse_date(start), end=parse_date(end), registry=etf_registry,
                                progress=lambda done, total: bar.update(task, completed=done, total=total),
                                cluster=cluster)
    if as_json:
        print_json(summary.__dict__)
        return
    out.print(f"published cascade version [bold]{summary.version}[/]: {summary.securities} securities, "
              f"{summary.rows:,} rows, {summary.dates[0]} … {summary.dates[1]} in {summary.seconds:.1f}s")
    for note in summary.notes:
        out.print(f"  note: {note}")


def metrics(ticker: str, store: StoreOpt = None,
            date: Annotated[Optional[str], typer.Option(help="As of this date (default: latest).")] = None,
            as_json: JsonOpt = False) -> None:
    """Every Model A field for one ticker on one date (wire names)."""
    from riskstrata.services.cascade import metrics as get_metrics

    m = get_metrics(open_store(store), ticker, parse_date(date))
    if as_json:
        print_json(m)
        return
    out.print(f"{m['ticker']} on {m['date']}  (sector {m['sector_etf'] or '—'}, subsector {m['subsector_etf'] or '—'})")
    table = Table()
    table.add_column("field")
    table.add_column("value", justify="right")
    for key, value in m.items():
        if key not in ("ticker", "date", "notes"):
            table.add_row(key, fmt(value))
    out.print(table)
    for note in m["notes"]:
        out.print(f"note: {note}")


def decompose(ticker: str, store: StoreOpt = None, date: Annotated[Optional[str], typer.Option()] = None,
              as_json: JsonOpt = False) -> None:
    """Four-bet view: market / sector / subsector / residual explained risk, hedge ratio and ETF."""
    from riskstrata.services.cascade import decompose as get_decompose

    d = get_decompose(open_store(store), ticker, parse_date(date))
    if as_json:
        print_json(d)
        return
    table = Table(title=f"{d['ticker']} on {d['date']}: where the risk is, and the L3 hedge")
    for col in ("bet", "explained risk", "hedge ratio ($ per $1 long)", "hedge ETF"):
        table.add_column(col, justify="right" if col != "bet" else "left")
    for bet, v in d["bets"].items():
        er = "—" if v["er"] is None else f"{100 * v['er']:.1f}%"
        table.add_row(bet, er, fmt(v["hr"]), v["hedge_etf"] or "—")
    out.print(table)


def lstar(ticker: str, store: StoreOpt = None,
          threshold: Annotated[Optional[float], typer.Option(help="θ; absent → the stored L* (θ = 0.01).")] = None,
          start: Annotated[Optional[str], typer.Option()] = None, end: Annotated[Optional[str], typer.Option()] = None,
          tail: Annotated[int, typer.Option(help="Rows to show in the table (all with --json).")] = 10,
          as_json: JsonOpt = False) -> None:
    """L* hedge depth per date: the simplest level whose marginal explained risk clears θ."""
    from riskstrata.services.cascade import lstar_history

    h = lstar_history(open_store(store), ticker, threshold, parse_date(start), parse_date(end))
    if as_json:
        rows = h.reset_index()
        rows["date"] = rows["date"].dt.strftime("%Y-%m-%d")
        rows["lstar_level"] = [int(v) or None for v in rows["lstar_level"]]
        print_json({"ticker": ticker.upper(), "threshold": float(h["threshold"].iloc[0]) if len(h) else threshold,
               "history": rows.drop(columns="threshold").to_dict(orient="records")})
        return
    table = Table(title=f"{ticker.upper()} L* (θ = {h['threshold'].iloc[0] if len(h) else threshold})")
    for col in ("date", "lstar_level", "lstar_rr", "l2_sec_er", "l3_sub_er"):
        table.add_column(col, justify="right")
    for date, row in h.tail(tail).iterrows():
        table.add_row(str(date.date()), f"L{int(row.lstar_level)}" if row.lstar_level else "—", fmt(row.lstar_rr),
                      fmt(row.l2_sec_er), fmt(row.l3_sub_er))
    out.print(table)


def attribution(ticker: str, start: Annotated[str, typer.Option(help="YYYY-MM-DD")],
                end: Annotated[str, typer.Option(help="YYYY-MM-DD")], store: StoreOpt = None,
                as_json: JsonOpt = False) -> None:
    """Geometric multi-period attribution: market, sector, subsector and residual bars."""
    from riskstrata.services.cascade import attribution as get_attribution

    a = get_attribution(open_store(store), ticker, parse_date(start), parse_date(end))
    if as_json:
        print_json({"ticker": ticker.upper(), "start": start, "end": end, **a.bars(), "days": a.days,
               "days_skipped": a.days_skipped,
               "cum_residual": {str(k.date()): v for k, v in a.lines["cum_residual"].items()}})
        return
    out.print(f"{ticker.upper()} {start} … {end}: compound return {100 * a.gross:+.2f}% over {a.days} days")
    table = Table()
    table.add_column("bar")
    table.add_column("contribution", justify="right")
    for name, value in a.bars().items():
        table.add_row(name, f"{100 * value:+.2f}%")
    out.print(table)
    if a.days_skipped:
        out.print(f"note: {a.days_skipped} days without a return or a fitted hedge were skipped")


def demo(store: StoreOpt = None,
         stocks: Annotated[int, typer.Option(help="Synthetic stocks.")] = 300,
         years: Annotated[int, typer.Option(help="Years of daily data.")] = 6,
         seed: Annotated[int, typer.Option()] = 7) -> None:
    """Synthetic market → ingest → build → a short report of a few names."""
    from riskstrata.services.demo import run_demo

    store_path = store or Path(os.environ.get("RISKSTRATA_DEMO_STORE", ".riskstrata-store/demo"))
    report = run_demo(open_store(store_path, create=True), n_stocks=stocks, years=years, seed=seed,
                      progress=progress_bar)
    for line in report.header:
        out.print(line, highlight=False)
    table = Table(title="estimated L3 hedge ratios next to the generator's truth (last date)")
    table.add_column("ticker")
    for col in report.names.columns:
        table.add_column("(true)" if col.startswith("true_") else col, justify="right")
    for ticker, row in report.names.iterrows():
        table.add_row(str(ticker), *(fmt(v) for v in row))
    out.print(table)
    summary = Table(title="Model B (US21) factor returns on the same market")
    for col in ("factor", "cagr", "ann_vol", "sharpe", "max_drawdown"):
        summary.add_column(col, justify="left" if col == "factor" else "right")
    for name, row in report.factor_summary.iterrows():
        summary.add_row(str(name), *(fmt(float(row[c])) for c in ("cagr", "ann_vol", "sharpe", "max_drawdown")))
    out.print(summary)
    for line in report.portfolio:
        out.print(line, highlight=False)
    out.print("try:")
    for hint in report.hints:
        out.print(f"  {hint}", highlight=False)


