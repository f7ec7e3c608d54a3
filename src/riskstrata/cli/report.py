"""`riskstrata report TICKER|HOLDINGS.csv --out file.pdf`: the one-page PDF risk report.

The same report as ``GET /api/metrics/{T}/snapshot.pdf`` (a ticker) and
``POST /api/portfolio/risk-snapshot`` with ``format=pdf`` (a holdings file); ``--json`` prints
the snapshot it draws instead. Holdings files are read in memory and never stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from riskstrata.cli.common import JsonOpt, StoreOpt, open_store, out, parse_date, print_json


def report(subject: Annotated[str, typer.Argument(help="A ticker, or a holdings CSV/Parquet file.")],
           output: Annotated[Optional[Path], typer.Option("--out", help="Write the PDF here.")] = None,
           store: StoreOpt = None,
           date: Annotated[Optional[str], typer.Option("--date", help="Analysis date (default: the model's last).")] = None,
           lookback: Annotated[int, typer.Option(help="Trading days of returns and attribution (20-2000).")] = 252,
           value: Annotated[Optional[float], typer.Option(help="Portfolio value in USD (weight-only holdings).")] = None,
           title: Annotated[Optional[str], typer.Option(help="Title of a portfolio report.")] = None,
           as_json: JsonOpt = False) -> None:
    """One-page PDF risk report of a stock or a portfolio: charts, numbers, data date, model version."""
    from riskstrata.errors import DataValidationError
    from riskstrata.reports.snapshot import portfolio_snapshot, ticker_snapshot

    st = open_store(store)
    day = parse_date(date)
    if Path(subject).is_file():
        snap = portfolio_snapshot(st, Path(subject), lookback_days=lookback, as_of=day, value=value,
                                  title=title or Path(subject).stem)
    else:
        snap = ticker_snapshot(st, subject, lookback_days=lookback, as_of=day)
    if as_json:
        print_json(snap)
        return
    if output is None:
        raise DataValidationError("give --out FILE.pdf (or --json to print the snapshot)")
    from riskstrata.reports.pdf import render_pdf

    output.write_bytes(render_pdf(snap))
    s = snap["snapshot"]
    out.print(f"wrote {output}: Risk Index {s['risk_index']['value']:.1f}, data as of "
              f"{snap['metadata']['data_as_of']}, model {snap['metadata']['model_version']}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
