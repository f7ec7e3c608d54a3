"""Research commands: ``riskstrata research lstar-study`` (issue 16). A thin face: no math here."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from riskstrata.cli.common import JsonOpt, StoreOpt, open_store, out, parse_date, print_json
from riskstrata.errors import DataValidationError

research_app = typer.Typer(no_args_is_help=True, help="Reproducible studies on the built models.")


def _thetas(text: str) -> tuple[float, ...]:
    """'0,0.25,0.5,1,2,5,inf' (percent) → decimals; 'inf' = always L1."""
    try:
        values = tuple(float("inf") if p.strip().lower() in ("inf", "∞") else float(p) / 100
                       for p in text.split(",") if p.strip())
    except ValueError:
        raise DataValidationError(f"--thetas must be percentages separated by commas (e.g. 0,0.5,1,inf), got {text!r}") from None
    if not values:
        raise DataValidationError("--thetas is empty")
    return values


@research_app.command("lstar-study")
def lstar_study_cmd(
    store: StoreOpt = None,
    universe: Annotated[str, typer.Option(
        help="'sample' (stratified seeded sample over the sectors), 'all', or tickers separated by commas.")] = "sample",
    n: Annotated[int, typer.Option("--n", help="Sample size for --universe sample.")] = 275,
    seed: Annotated[int, typer.Option(help="Seed of the sample and the bootstrap.")] = 0,
    start: Annotated[Optional[str], typer.Option(help="First date studied (YYYY-MM-DD).")] = None,
    end: Annotated[Optional[str], typer.Option(help="Last date studied (YYYY-MM-DD).")] = None,
    thetas: Annotated[str, typer.Option(help="θ grid in percent, 'inf' = always L1.")] = "0,0.25,0.5,1,2,5,inf",
    cost_bps: Annotated[float, typer.Option(help="Trading cost, basis points per dollar of ETF traded.")] = 5.0,
    n_boot: Annotated[int, typer.Option(help="Bootstrap replicates (blocks of dates).")] = 1000,
    block_days: Annotated[int, typer.Option(help="Bootstrap block length in trading days.")] = 63,
    as_json: JsonOpt = False,
) -> None:
    """Which hedge-depth bar θ works out of sample? Effectiveness, leverage, turnover per rule and sector."""
    from riskstrata.research import run_lstar_study

    chosen = universe if universe in ("sample", "all") else [t.strip() for t in universe.split(",") if t.strip()]
    study = run_lstar_study(open_store(store), universe=chosen, n=n, seed=seed, start=parse_date(start),
                            end=parse_date(end), thetas=_thetas(thetas), cost_bps=cost_bps, n_boot=n_boot,
                            block_days=block_days)
    if as_json:
        print_json(study.to_dict())
        return
    h = study.params["primary_horizon"]
    table = Table(title=f"L* study: {study.params['stocks']} names, {study.params['start']} … {study.params['end']}")
    held = f"hold_eff_{h}" in study.rules.columns
    for col in ("rule", f"eff {h}d %", "95% CI", "net %", *(["held %"] if held else []), "added var %", "Σ|HR|",
                "turnover/yr", "depth chg/yr"):
        table.add_column(col, justify="left" if col in ("rule", "95% CI") else "right")
    for name, x in study.rules.iterrows():
        table.add_row(name, f"{x[f'eff_{h}'] * 100:.2f}", f"{x[f'eff_{h}_lo'] * 100:.2f} … {x[f'eff_{h}_hi'] * 100:.2f}",
                      f"{x[f'net_eff_{h}'] * 100:.2f}", *([f"{x[f'hold_eff_{h}'] * 100:.2f}"] if held else []),
                      f"{x[f'added_{h}'] * 100:.1f}", f"{x['gross_leverage']:.2f}",
                      f"{x['turnover_per_year']:.1f}", f"{x['depth_changes_per_year']:.1f}")
    out.print(table)
    out.print(study.summary)
