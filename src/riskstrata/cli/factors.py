"""`riskstrata factors …`: Model B — build, summary, correlation, exposures, risk, validate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from riskstrata.cli.common import JsonOpt, StoreOpt, fmt, open_store, out, parse_date, print_json, progress_bar

factors_app = typer.Typer(no_args_is_help=True, help="Model B: the fundamental factor model (market, styles, industries).")
ModelOpt = Annotated[str, typer.Option("--model", help="Spec name (US21, US_CORE) or a .toml path.")]


def _with_progress(fn, *args, **kwargs):
    """Run a service call that may auto-build, showing its stages."""
    with progress_bar() as bar:
        task = bar.add_task("factor model", total=None)
        return fn(*args, **kwargs, progress=lambda stage: bar.update(task, description=f"factor model: {stage}"))


@factors_app.command("models")
def models(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """The model specs and which are built."""
    from riskstrata.services.factors import list_models

    frame = list_models(open_store(store, create=True))
    if as_json:
        print_json(frame.astype(object).where(frame.notna(), None).to_dict(orient="records"))
        return
    table = Table()
    for col in frame.columns:
        table.add_column(col)
    for row in frame.itertuples(index=False):
        table.add_row(*(fmt(v) for v in row))
    out.print(table)


@factors_app.command("build")
def build(store: StoreOpt = None, model: ModelOpt = "US21",
          start: Annotated[Optional[str], typer.Option()] = None, end: Annotated[Optional[str], typer.Option()] = None,
          as_json: JsonOpt = False) -> None:
    """Fit a spec on the store's prices, classifications and fundamentals; publish a version."""
    from riskstrata.services.factors import build_factor_model

    info = _with_progress(build_factor_model, open_store(store), model, parse_date(start), parse_date(end))
    if as_json:
        print_json(info)
        return
    out.print(f"published {info['model']} version {info['version']}: {info['factors']} factors, {info['names']} names, "
              f"{info['dates']} dates", highlight=False)
    for note in info["notes"]:
        out.print(f"note: {note}", highlight=False)


@factors_app.command("summary")
def summary(store: StoreOpt = None, model: ModelOpt = "US21", as_json: JsonOpt = False) -> None:
    """Per factor: CAGR, cumulative return, annualised vol, Sharpe, latest return, max drawdown."""
    import pandas as pd

    from riskstrata.services.factors import summary as get_summary

    frame = _with_progress(get_summary, open_store(store), model)
    if as_json:
        print_json(frame.reset_index().astype(object).where(frame.reset_index().notna(), None).to_dict(orient="records"))
        return
    table = Table(title=f"{model} factor summary")
    table.add_column("factor")
    for col in frame.columns:
        table.add_column(col, justify="right")
    for name, row in frame.iterrows():
        table.add_row(str(name), *(fmt(v if not isinstance(v, pd.Timestamp) else str(v.date())) for v in row))
    out.print(table)


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
    """Portfolio risk from the factor model: X'FX + specific, shares by factor group."""
    import pandas as pd

    from riskstrata.portfolio.holdings import read_holdings
    from riskstrata.services.factors import portfolio_factor_risk

    lines = read_holdings(holdings).lines
    lines = lines[lines["kind"] == "security"]
    qty = lines["weight"].where(lines["weight"].notna(), lines["market_value"])
    weights = pd.Series(qty.to_numpy(dtype=float), index=lines["ticker"].fillna("?").to_numpy())
    weights = weights[weights.notna()]
    weights = weights / weights.sum()
    r = portfolio_factor_risk(open_store(store), weights, parse_date(date), model)
    if as_json:
        print_json(r)
        return
    out.print(f"{model} on {r['date']}: annualised vol {100 * r['vol_ann']:.1f}%; "
              + ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["shares"].items()), highlight=False)
    if r["unknown"]:
        out.print(f"note: not in the model: {', '.join(r['unknown'])}", highlight=False)


@factors_app.command("validate")
def validate(store: StoreOpt = None, model: ModelOpt = "US21", as_json: JsonOpt = False) -> None:
    """Bias statistics, MRAD, QLIKE, stability, VIF, R² — eigen adjustment on and off."""
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
