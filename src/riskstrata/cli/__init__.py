"""The ``riskstrata`` command line: a thin face over :mod:`riskstrata.services`.

Human tables by default, ``--json`` for machines (keys are the wire names). Every expected
problem (unknown ticker, bad file, date outside the data) is one ``error:`` line and a non-zero
exit; set RISKSTRATA_DEBUG=1 to see a traceback for anything unexpected.
"""

from __future__ import annotations

import os
import sys

import typer

from riskstrata.cli import mcp, model, report, serve, store, update
from riskstrata.cli.common import err
from riskstrata.cli.factors import factors_app
from riskstrata.cli.ingest import ingest_app
from riskstrata.cli.portfolio import portfolio_app
from riskstrata.cli.research import research_app
from riskstrata.errors import RiskstrataError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="riskstrata: open, self-hosted equity risk models (ETF cascade, factor model).")
app.add_typer(ingest_app, name="ingest")
app.add_typer(model.build_app, name="build")
app.add_typer(portfolio_app, name="portfolio")
app.add_typer(factors_app, name="factors")
app.add_typer(store.store_app, name="store")
app.add_typer(research_app, name="research")
model.register(app)
serve.register(app)
mcp.register(app)
report.register(app)
update.register(app)


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
