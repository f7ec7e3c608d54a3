"""`riskstrata ingest …`: load prices, classifications and securities into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from riskstrata.cli.common import StoreOpt, fmt, open_store, out
from riskstrata.errors import DataValidationError

DateFormatOpt = Annotated[Optional[str], typer.Option(
    "--date-format", help="strptime format of the file's dates, e.g. %d/%m/%Y. Default: ISO (YYYY-MM-DD) as is; "
                          "a day/month order only when the file proves it (a field above 12), else an error.")]

ingest_app = typer.Typer(no_args_is_help=True, help="Load prices, classifications and securities into the store.")


@ingest_app.command("prices")
def ingest_prices_cmd(files: Annotated[list[Path], typer.Argument(help="CSV or Parquet, long or wide.")],
                      store: StoreOpt = None, max_move: Annotated[float, typer.Option(
                          help="Flag one-day moves larger than this (decimal).")] = 0.75,
                      date_format: DateFormatOpt = None) -> None:
    """Ingest daily prices or returns; prints what was rejected or repaired and why."""
    from riskstrata.data.ingest import ingest_prices
    from riskstrata.data.registry import EtfRegistry

    report = ingest_prices(open_store(store, create=True), files, max_abs_return=max_move,
                           etf_tickers=set(EtfRegistry.default().etfs()), date_format=date_format)
    _print_report(report)


@ingest_app.command("classifications")
def ingest_classifications_cmd(file: Path, store: StoreOpt = None, date_format: DateFormatOpt = None) -> None:
    """Ingest (ticker, gics_sector, gics_sub_industry) or (ticker, sector_etf, subsector_etf), optionally dated."""
    from riskstrata.data.ingest import ingest_classifications

    _print_report(ingest_classifications(open_store(store, create=True), file, date_format))


@ingest_app.command("securities")
def ingest_securities_cmd(file: Path, store: StoreOpt = None, date_format: DateFormatOpt = None) -> None:
    """Ingest dated security records (figi/isin, ticker, name, asset_type, valid_from, valid_to)."""
    from riskstrata.data.master import SecurityMaster, read_securities_file
    from riskstrata.data.readers import date_format as dates_as

    s = open_store(store, create=True)
    with dates_as(date_format):
        records = read_securities_file(file)
    master = SecurityMaster.from_store(s).upsert(records)
    master.to_store(s)
    out.print(f"security master: {len(master)} securities")


@ingest_app.command("issuers")
def ingest_issuers_cmd(file: Path, store: StoreOpt = None) -> None:
    """Group share classes by issuer from a (ticker, issuer_id or cik) file, e.g. the SEC's company_tickers."""
    from riskstrata.data.master import ingest_issuers

    _print_report(ingest_issuers(open_store(store, create=True), file))


@ingest_app.command("etf-holdings")
def ingest_etf_holdings_cmd(file: Path, store: StoreOpt = None, date_format: DateFormatOpt = None) -> None:
    """Ingest ETF constituents, long (date, etf, holding, weight), for look-through and active share."""
    from riskstrata.data.etf_holdings import ingest_etf_holdings
    from riskstrata.data.readers import date_format as dates_as

    with dates_as(date_format):  # the reader takes no format argument: it reads the one set here
        report = ingest_etf_holdings(open_store(store, create=True), file)
    _print_report(report)


@ingest_app.command("fundamentals")
def ingest_fundamentals_cmd(file: Path, store: StoreOpt = None, date_format: DateFormatOpt = None) -> None:
    """Ingest fundamentals snapshots (available date, ticker, market cap, book, EPS, …) for Model B."""
    from riskstrata.data.fundamentals import ingest_fundamentals
    from riskstrata.data.readers import date_format as dates_as

    with dates_as(date_format):  # the reader takes no format argument: it reads the one set here
        report = ingest_fundamentals(open_store(store, create=True), file)
    _print_report(report)


def _print_report(report: Any) -> None:
    out.print(report.summary())
    issues = report.issues
    if len(issues):
        table = Table(title=f"{len(issues)} rows rejected, repaired or flagged (first 20)")
        for col in ("file", "source_row", "date", "ticker", "action", "reason"):
            table.add_column(col)
        for row in issues.head(20).itertuples(index=False):
            table.add_row(*(fmt(getattr(row, c)) for c in ("file", "source_row", "date", "ticker", "action", "reason")))
        out.print(table)
    if report.rows_read and not report.rows_accepted:
        # Nothing usable in the file is a failed run, whatever the reasons: scripts must see it.
        reasons = report.issues.loc[report.issues["action"] == "rejected", "reason"].value_counts()
        why = ", ".join(f"{reason} {n:,}" for reason, n in reasons.items()) or "no row accepted"
        raise DataValidationError(f"no row of {', '.join(report.files) or 'the file'} was accepted ({why})")


