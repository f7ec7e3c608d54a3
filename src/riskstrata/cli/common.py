"""Shared pieces of the command line: consoles, common options, output helpers."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from riskstrata.errors import DataValidationError

# Pipes and CI have no terminal width; wide tables should not be squeezed to 80 columns there.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

# Text, not a Path: a Path would fold the "//" of an fsspec URL (file:///srv/store, s3://bucket/store).
StoreOpt = Annotated[Optional[str], typer.Option("--store", envvar="RISKSTRATA_STORE",
                                                 help="Store directory or fsspec URL (file://, s3://…; "
                                                      "default ~/.riskstrata/store).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def open_store(path: Optional[str | Path], create: bool = False):
    from riskstrata.data.store import Store

    return Store(path, create=create)


def parse_date(text: Optional[str]) -> Optional[str]:
    """Validate a YYYY-MM-DD option at the boundary (None passes through)."""
    if text is None:
        return None
    import pandas as pd

    try:
        return str(pd.Timestamp(text).date())
    except (ValueError, TypeError):
        raise DataValidationError(f"{text!r} is not a date; use YYYY-MM-DD") from None


def print_json(obj: Any) -> None:
    """JSON with NaN/inf as null (never invalid JSON)."""
    from riskstrata.jsonsafe import dumps_json

    print(dumps_json(obj, indent=True).decode())


def fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, float):
        return f"{v + 0.0:.4f}"  # + 0.0 turns −0.0 into 0.0
    return str(v)


def progress_bar() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True)
