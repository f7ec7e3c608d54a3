"""`riskstrata factors …`: Model B — build, summary, correlation, exposures, risk, validate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from riskstrata.cli.common import JsonOpt, StoreOpt, fmt, open_store, out, parse_date, print_json

factors_app = typer.Typer(no_args_is_help=True, help="Model B: the fundamental factor model (market, styles, industries).")
ModelOpt = Annotated[str, typer.Option("--model", help="Spec name (US21, US_CORE) or a .toml path.")]


class _StageBar:
    """A build's progress on stderr: one line per stage with its count, elapsed time and ETA.

    Called with a stage name as it starts; its ``tick(stage, done, total)`` moves the count
    (the service passes it down to the build, see ``build_factor_model``).
    """

    def __init__(self, bar) -> None:
        self.bar, self.task, self.stage = bar, None, None

    def __call__(self, stage: str) -> None:
        if self.task is not None:  # the previous stage is done: show it full
            total = self.bar.tasks[-1].total or 1
            self.bar.update(self.task, total=total, completed=total)
        self.stage, self.task = stage, self.bar.add_task(f"factor model: {stage}", total=None)

    def tick(self, stage: str, done: int, total: int) -> None:
        if stage == self.stage and self.task is not None:
            self.bar.update(self.task, completed=done, total=total)


def _with_progress(fn, *args, **kwargs):
    """Run a service call that may auto-build, showing each stage's count and ETA."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    from riskstrata.cli.common import err

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        return fn(*args, **kwargs, progress=_StageBar(bar))


def _status_lines(status: list[dict], n_spec: int) -> list[str]:
    """'19 of 21 spec factors estimated' and one line per factor not estimated on some dates."""
    lines = [f"{sum(s['estimated'] for s in status)} of {n_spec} spec factors estimated"]
    for s in status:
        if s["reason"]:
            tag = "not estimated" if not s["estimated"] else f"estimated on {s['dates_estimated']} of {s['dates']} dates"
            why = s["reason"] if not s["estimated"] else "; ".join(
                f"{g['first']} … {g['last']}" for g in s["gaps"][:4]) + (" …" if len(s["gaps"]) > 4 else "")
            lines.append(f"  {s['factor']}: {tag} — {why}")
    return lines


@factors_app.command("models")
def models(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """The model specs and which are built."""
    from riskstrata.services.factors import list_models

    frame = list_models(open_store(store, create=True))
    if as_json:
        print_json(frame.astype(object).where(frame.notna(), None).to_dict(orient="records"))
        return
    table = Table()
    shown = ["model", "factors", "estimated", "description", "built", "version", "start", "end"]
    for col in shown:
        table.add_column(col)
    for row in frame.itertuples(index=False):
        table.add_row(*(fmt(getattr(row, c)) if c != "estimated" or row.built else "-" for c in shown))
    out.print(table)
    for row in frame.itertuples(index=False):
        for line in row.not_estimated:
            out.print(f"{row.model}: not estimated: {line}", highlight=False)
        partial = {f: c for f, c in row.coverage.items() if 0 < c < 1}
        if partial:
            out.print(f"{row.model}: estimated on part of the dates: "
                      + ", ".join(f"{f} {100 * c:.0f}%" for f, c in partial.items()), highlight=False)


@factors_app.command("build")
def build(store: StoreOpt = None, model: ModelOpt = "US21",
          start: Annotated[Optional[str], typer.Option()] = None, end: Annotated[Optional[str], typer.Option()] = None,
          cluster: Annotated[Optional[str], typer.Option(
              help="Make the date blocks on dask.distributed: a scheduler address (tcp://host:8786) or local:N "
                   "for N local worker processes; covariance, validation and publishing stay here.")] = None,
          as_json: JsonOpt = False) -> None:
    """Fit a spec on the store's prices, classifications and fundamentals; publish a version."""
    from riskstrata.services.factors import build_factor_model

    args = (open_store(store), model, parse_date(start), parse_date(end))
    if cluster:
        from riskstrata.services.factors_cluster import build_factor_model_on_cluster

        info = _with_progress(build_factor_model_on_cluster, *args, cluster=cluster)
    else:
        info = _with_progress(build_factor_model, *args)
    if as_json:
        print_json(info)
        return
    out.print(f"published {info['model']} version {info['version']}: {info['estimated']} of {info['spec_factors']} "
              f"spec factors estimated, {info['names']} names, {info['dates']} dates", highlight=False)
    for note in info["notes"]:
        out.print(f"note: {note}", highlight=False)


@factors_app.command("summary")
def summary(store: StoreOpt = None, model: ModelOpt = "US21", as_json: JsonOpt = False) -> None:
    """Per factor: CAGR, cumulative return, annualised vol, Sharpe, latest return, max drawdown."""
    import pandas as pd

    from riskstrata.services.factors import summary as get_summary

    frame = _with_progress(get_summary, open_store(store), model)
    if as_json:
        flat = frame.rename_axis("factor").reset_index()
        print_json(flat.astype(object).where(flat.notna(), None).to_dict(orient="records"))
        return
    table = Table(title=f"{model} factor summary")
    table.add_column("factor")
    numbers = [c for c in frame.columns if c not in ("status", "dates_estimated", "dates", "coverage_last", "reason")]
    for col in [*numbers, "estimated", "coverage"]:
        table.add_column(col, justify="right")
    for name, row in frame.iterrows():
        est = "no" if row["status"] == "not estimated" else f"{row['dates_estimated']}/{row['dates']}"
        covered = "-" if pd.isna(row["coverage_last"]) else f"{100 * row['coverage_last']:.0f}%"
        table.add_row(str(name), *(fmt(None if pd.isna(row[c]) else str(row[c].date())
                                       if isinstance(row[c], pd.Timestamp) else row[c]) for c in numbers), est, covered)
    out.print(table)
    out.print("coverage: the share of the estimation universe's cap with fresh, non-imputed data behind the last "
              "return", highlight=False)
    for name, row in frame.iterrows():
        if isinstance(row["reason"], str):
            out.print(f"{name}: {row['reason']}", highlight=False)


@factors_app.command("correlation")
def correlation(store: StoreOpt = None, model: ModelOpt = "US21",
                pair: Annotated[Optional[tuple[str, str]], typer.Option(help="Two factors, e.g. --pair SIZE VALUE")] = None,
                window: Annotated[Optional[int], typer.Option(help="Trailing days (default: all).")] = None,
                as_json: JsonOpt = False) -> None:
    """The factor correlation matrix, or one pair's correlation."""
    from riskstrata.services.factors import correlation as get_corr

    result = get_corr(open_store(store), model, tuple(p.upper() for p in pair) if pair else None, window)
    if isinstance(result, dict):
        data = {k: v for k, v in result.items() if k != "rolling"}
        if as_json:
            print_json(data)
        else:
            out.print(f"corr({data['a']}, {data['b']}) = {data['correlation']:.3f} over {data['n_days']} days")
        return
    if as_json:
        print_json(result.round(6).to_dict())
        return
    table = Table(title=f"{model} factor correlations")
    table.add_column("")
    for col in result.columns:
        table.add_column(col[:6], justify="right")
    for name, row in result.iterrows():
        table.add_row(str(name), *(f"{v:.2f}" for v in row))
    out.print(table)


@factors_app.command("exposures")
def exposures(ticker: str, store: StoreOpt = None, model: ModelOpt = "US21",
              date: Annotated[Optional[str], typer.Option()] = None, as_json: JsonOpt = False) -> None:
    """A stock's z-score exposure to every factor on a date."""
    from riskstrata.services.factors import stock_exposures

    s = stock_exposures(open_store(store), ticker, parse_date(date), model)
    if as_json:
        print_json({"ticker": ticker.upper(), "as_of": s.name.split(" ")[-1], "exposures": s.to_dict()})
        return
    table = Table(title=f"{s.name}: exposures ({model})")
    table.add_column("factor")
    table.add_column("exposure", justify="right")
    for name, value in s.items():
        table.add_row(name, fmt(float(value)))
    out.print(table)


@factors_app.command("risk")
def risk(holdings: Path, store: StoreOpt = None, model: ModelOpt = "US21",
         date: Annotated[Optional[str], typer.Option()] = None, as_json: JsonOpt = False) -> None:
    """Portfolio risk from the factor model: X'FX + specific, shares by factor group.

    Lines are matched as `portfolio analyze` matches them (shares, market values or weights;
    mixed dollar and weight-only lines are refused); weights are relative to gross."""
    from riskstrata.services.factors import holdings_factor_risk

    r = holdings_factor_risk(open_store(store), holdings, parse_date(date), model)
    if as_json:
        print_json(r)
        return
    out.print(f"{model} on {r['date']}: {r['analyzed']}", highlight=False)
    out.print(f"annualised vol {100 * r['vol_ann']:.1f}% per $ of gross (net {100 * r['net']:.0f}%); "
              + ", ".join(f"{k} {100 * v:.1f}%" for k, v in r["shares"].items()), highlight=False)
    for line in r["excluded"]:
        out.print(f"excluded: line {line['line']} {line['ticker'] or ''}: {line['reason']}", highlight=False)
    for note in r["notes"]:
        out.print(f"note: {note}", highlight=False)


@factors_app.command("validate")
def validate(store: StoreOpt = None, model: ModelOpt = "US21", as_json: JsonOpt = False) -> None:
    """Bias statistics, MRAD, QLIKE, stability, VIF — eigen adjustment on and off (from the stored build)."""
    from riskstrata.services.factors import validate_model

    report = _with_progress(validate_model, open_store(store), model)
    if as_json:
        print_json(report.astype(object).where(report.notna(), None).to_dict(orient="records"))
        return
    table = Table(title=f"{model} validation")
    for col in report.columns:
        table.add_column(str(col), justify="right")
    for row in report.itertuples(index=False):
        table.add_row(*(fmt(v) for v in row))
    out.print(table)
