"""The ``riskstrata`` command line: a thin face over :mod:`riskstrata.services`.

Human tables by default, ``--json`` for machines (keys are the wire names). Every expected
problem (unknown ticker, bad file, date outside the data) is one ``error:`` line and a non-zero
exit; set RISKSTRATA_DEBUG=1 to see a traceback for anything unexpected.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from riskstrata.errors import DataValidationError, RiskstrataError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="riskstrata: open, self-hosted equity risk models (ETF cascade, factor model).")
ingest_app = typer.Typer(no_args_is_help=True, help="Load prices, classifications and securities into the store.")
build_app = typer.Typer(no_args_is_help=True, help="Build model versions in the store.")
app.add_typer(ingest_app, name="ingest")
app.add_typer(build_app, name="build")

# Pipes and CI have no terminal width; wide tables should not be squeezed to 80 columns there.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

StoreOpt = Annotated[Optional[Path], typer.Option("--store", envvar="RISKSTRATA_STORE",
                                                  help="Store directory (default ~/.riskstrata/store).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _store(path: Optional[Path], create: bool = False):
    from riskstrata.data.store import Store

    return Store(path, create=create)


def _date(text: Optional[str]) -> Optional[str]:
    """Validate a YYYY-MM-DD option at the boundary (None passes through)."""
    if text is None:
        return None
    import pandas as pd

    try:
        return str(pd.Timestamp(text).date())
    except (ValueError, TypeError):
        raise DataValidationError(f"{text!r} is not a date; use YYYY-MM-DD") from None


def _json(obj: Any) -> None:
    """JSON with NaN/inf as null (never invalid JSON)."""
    def clean(x: Any) -> Any:
        if isinstance(x, float):
            return x if math.isfinite(x) else None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x
    print(json.dumps(clean(obj), indent=2, default=str))


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, float):
        return f"{v + 0.0:.4f}"  # + 0.0 turns −0.0 into 0.0
    return str(v)


# ----------------------------------------------------------------------------------- ingest
@ingest_app.command("prices")
def ingest_prices_cmd(files: Annotated[list[Path], typer.Argument(help="CSV or Parquet, long or wide.")],
                      store: StoreOpt = None, max_move: Annotated[float, typer.Option(
                          help="Flag one-day moves larger than this (decimal).")] = 0.75) -> None:
    """Ingest daily prices or returns; prints what was rejected or repaired and why."""
    from riskstrata.data.ingest import ingest_prices
    from riskstrata.data.registry import EtfRegistry

    report = ingest_prices(_store(store, create=True), files, max_abs_return=max_move,
                           etf_tickers=set(EtfRegistry.default().etfs()))
    _print_report(report)


@ingest_app.command("classifications")
def ingest_classifications_cmd(file: Path, store: StoreOpt = None) -> None:
    """Ingest (ticker, gics_sector, gics_sub_industry) or (ticker, sector_etf, subsector_etf), optionally dated."""
    from riskstrata.data.ingest import ingest_classifications

    _print_report(ingest_classifications(_store(store, create=True), file))


@ingest_app.command("securities")
def ingest_securities_cmd(file: Path, store: StoreOpt = None) -> None:
    """Ingest dated security records (figi/isin, ticker, name, asset_type, valid_from, valid_to)."""
    from riskstrata.data.master import SecurityMaster, read_securities_file

    s = _store(store, create=True)
    master = SecurityMaster.from_store(s).upsert(read_securities_file(file))
    master.to_store(s)
    out.print(f"security master: {len(master)} securities")


def _print_report(report: Any) -> None:
    out.print(report.summary())
    issues = report.issues
    if len(issues):
        table = Table(title=f"{len(issues)} rows rejected, repaired or flagged (first 20)")
        for col in ("file", "source_row", "date", "ticker", "action", "reason"):
            table.add_column(col)
        for row in issues.head(20).itertuples(index=False):
            table.add_row(*(_fmt(getattr(row, c)) for c in ("file", "source_row", "date", "ticker", "action", "reason")))
        out.print(table)


# ----------------------------------------------------------------------------------- build
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
    as_json: JsonOpt = False,
) -> None:
    """Fit Model A (L1/L2/L3 ETF cascade) on the store's data and publish a new version."""
    from riskstrata.data.registry import EtfRegistry
    from riskstrata.services.cascade import build_cascade

    etf_registry = EtfRegistry.from_csv(registry) if registry else None

    with _progress() as bar:
        task = bar.add_task("cascade", total=None)
        summary = build_cascade(_store(store), window=window, halflife=halflife, min_obs=min_obs,
                                start=_date(start), end=_date(end), registry=etf_registry,
                                progress=lambda done, total: bar.update(task, completed=done, total=total))
    if as_json:
        _json(summary.__dict__)
        return
    out.print(f"published cascade version [bold]{summary.version}[/]: {summary.securities} securities, "
              f"{summary.rows:,} rows, {summary.dates[0]} … {summary.dates[1]} in {summary.seconds:.1f}s")
    for note in summary.notes:
        out.print(f"  note: {note}")


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True)


# ----------------------------------------------------------------------------------- queries
@app.command()
def metrics(ticker: str, store: StoreOpt = None,
            date: Annotated[Optional[str], typer.Option(help="As of this date (default: latest).")] = None,
            as_json: JsonOpt = False) -> None:
    """Every Model A field for one ticker on one date (wire names)."""
    from riskstrata.services.cascade import metrics as get_metrics

    m = get_metrics(_store(store), ticker, _date(date))
    if as_json:
        _json(m)
        return
    out.print(f"{m['ticker']} on {m['date']}  (sector {m['sector_etf'] or '—'}, subsector {m['subsector_etf'] or '—'})")
    table = Table()
    table.add_column("field")
    table.add_column("value", justify="right")
    for key, value in m.items():
        if key not in ("ticker", "date", "notes"):
            table.add_row(key, _fmt(value))
    out.print(table)
    for note in m["notes"]:
        out.print(f"note: {note}")


@app.command()
def decompose(ticker: str, store: StoreOpt = None, date: Annotated[Optional[str], typer.Option()] = None,
              as_json: JsonOpt = False) -> None:
    """Four-bet view: market / sector / subsector / residual explained risk, hedge ratio and ETF."""
    from riskstrata.services.cascade import decompose as get_decompose

    d = get_decompose(_store(store), ticker, _date(date))
    if as_json:
        _json(d)
        return
    table = Table(title=f"{d['ticker']} on {d['date']}: where the risk is, and the L3 hedge")
    for col in ("bet", "explained risk", "hedge ratio ($ per $1 long)", "hedge ETF"):
        table.add_column(col, justify="right" if col != "bet" else "left")
    for bet, v in d["bets"].items():
        er = "—" if v["er"] is None else f"{100 * v['er']:.1f}%"
        table.add_row(bet, er, _fmt(v["hr"]), v["hedge_etf"] or "—")
    out.print(table)


@app.command()
def lstar(ticker: str, store: StoreOpt = None,
          threshold: Annotated[Optional[float], typer.Option(help="θ; absent → the stored L* (θ = 0.01).")] = None,
          start: Annotated[Optional[str], typer.Option()] = None, end: Annotated[Optional[str], typer.Option()] = None,
          tail: Annotated[int, typer.Option(help="Rows to show in the table (all with --json).")] = 10,
          as_json: JsonOpt = False) -> None:
    """L* hedge depth per date: the simplest level whose marginal explained risk clears θ."""
    from riskstrata.services.cascade import lstar_history

    h = lstar_history(_store(store), ticker, threshold, _date(start), _date(end))
    if as_json:
        rows = h.reset_index()
        rows["date"] = rows["date"].dt.strftime("%Y-%m-%d")
        rows["lstar_level"] = [int(v) or None for v in rows["lstar_level"]]
        _json({"ticker": ticker.upper(), "threshold": float(h["threshold"].iloc[0]) if len(h) else threshold,
               "history": rows.drop(columns="threshold").to_dict(orient="records")})
        return
    table = Table(title=f"{ticker.upper()} L* (θ = {h['threshold'].iloc[0] if len(h) else threshold})")
    for col in ("date", "lstar_level", "lstar_rr", "l2_sec_er", "l3_sub_er"):
        table.add_column(col, justify="right")
    for date, row in h.tail(tail).iterrows():
        table.add_row(str(date.date()), f"L{int(row.lstar_level)}" if row.lstar_level else "—", _fmt(row.lstar_rr),
                      _fmt(row.l2_sec_er), _fmt(row.l3_sub_er))
    out.print(table)


@app.command()
def attribution(ticker: str, start: Annotated[str, typer.Option(help="YYYY-MM-DD")],
                end: Annotated[str, typer.Option(help="YYYY-MM-DD")], store: StoreOpt = None,
                as_json: JsonOpt = False) -> None:
    """Geometric multi-period attribution: market, sector, subsector and residual bars."""
    from riskstrata.services.cascade import attribution as get_attribution

    a = get_attribution(_store(store), ticker, _date(start), _date(end))
    if as_json:
        _json({"ticker": ticker.upper(), "start": start, "end": end, **a.bars(), "days": a.days,
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


@app.command()
def demo(store: StoreOpt = None,
         stocks: Annotated[int, typer.Option(help="Synthetic stocks.")] = 300,
         years: Annotated[int, typer.Option(help="Years of daily data.")] = 6,
         seed: Annotated[int, typer.Option()] = 7) -> None:
    """Synthetic market → ingest → build → a short report of a few names."""
    from riskstrata.services.demo import run_demo

    store_path = store or Path(os.environ.get("RISKSTRATA_DEMO_STORE", ".riskstrata-store/demo"))
    report = run_demo(_store(store_path, create=True), n_stocks=stocks, years=years, seed=seed,
                      progress=_progress)
    for line in report.header:
        out.print(line, highlight=False)
    table = Table(title="estimated L3 hedge ratios next to the generator's truth (last date)")
    table.add_column("ticker")
    for col in report.names.columns:
        table.add_column("(true)" if col.startswith("true_") else col, justify="right")
    for ticker, row in report.names.iterrows():
        table.add_row(str(ticker), *(_fmt(v) for v in row))
    out.print(table)
    out.print("try:")
    for hint in report.hints:
        out.print(f"  {hint}", highlight=False)


def main() -> None:
    """Console-script entry: expected errors become one line; unexpected ones too, unless debugging."""
    try:
        app(standalone_mode=False)
    except RiskstrataError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except (typer.Exit, SystemExit) as exc:
        raise exc
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # a usage error from the parser
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            sys.exit(130)
        if os.environ.get("RISKSTRATA_DEBUG"):
            raise
        err.print(f"[red]error:[/] unexpected {type(exc).__name__}: {exc} (set RISKSTRATA_DEBUG=1 for a traceback)",
                  highlight=False)
        sys.exit(1)

if __name__ == "__main__":
    main()
