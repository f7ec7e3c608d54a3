"""`riskstrata portfolio …`: analyze, hedge, scale, look through, import a 13F.

Holdings files are read into memory and never written to the store or logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from riskstrata.cli.common import JsonOpt, StoreOpt, fmt, open_store, out, parse_date, print_json

portfolio_app = typer.Typer(no_args_is_help=True, help="Portfolio risk: Risk Index, hedges, scaling, look-through.")

HoldingsArg = Annotated[Path, typer.Argument(help="Holdings CSV/Parquet (ticker or CUSIP; shares, value or weight).")]
DateOpt = Annotated[Optional[str], typer.Option("--date", help="Analysis date (default: the model's last).")]
ValueOpt = Annotated[Optional[float], typer.Option("--value", help="Portfolio value in USD (for weights and trades).")]


def _pct(x: float) -> str:
    import pandas as pd

    return "—" if x is None or pd.isna(x) else f"{100 * x:.1f}%"


def _records(frame: pd.DataFrame) -> list[dict]:
    return frame.reset_index().astype(object).where(frame.reset_index().notna(), None).to_dict(orient="records")


@portfolio_app.command("analyze")
def analyze(holdings: HoldingsArg, store: StoreOpt = None, date: DateOpt = None, value: ValueOpt = None,
            as_json: JsonOpt = False) -> None:
    """Matching (X/Y analyzed), Risk Index, its decomposition, the book (long, short, gross, net,
    beta-dollars) and hedge ratios per level."""
    from riskstrata.portfolio.risk import NEGATIVE_SHARE_NOTE
    from riskstrata.services.portfolio import analyze_portfolio

    a = analyze_portfolio(open_store(store), holdings, parse_date(date), value)
    r = a.risk
    if as_json:
        print_json({
            "as_of": str(a.match.as_of.date()), "holdings_analyzed": a.match.summary(),
            "analyzed": a.match.analyzed, "total": a.match.total_lines,
            "excluded": _records(a.match.excluded), "risk_index": r.risk_index, "vol_ann": r.vol_ann,
            "market_vol_ann": r.market_vol_ann, "decomposition": r.by_role.to_dict(),
            "by_position": _records(r.by_position), "by_etf": _records(r.by_etf),
            "hedge_ratios": {lvl: a.hedge_ratios[lvl][a.hedge_ratios[lvl] != 0].to_dict() for lvl in a.hedge_ratios},
            "book": a.book.as_dict(), "share_note": NEGATIVE_SHARE_NOTE,
            "factor_model": None if a.factor_risk is None else {k: a.factor_risk[k] for k in ("date", "vol_ann", "shares")},
            "notes": a.notes})
        return
    out.print(f"{a.match.summary()} on {a.match.as_of.date()}", highlight=False)
    out.print(f"Risk Index [bold]{r.risk_index:.1f}[/] (portfolio vol {100 * r.vol_ann:.1f}% vs SPY "
              f"{100 * r.market_vol_ann:.1f}%, annualised)")
    out.print("variance: " + ", ".join(f"{k} {_pct(v)}" for k, v in r.by_role.items()))
    _print_book(a.book)
    if a.factor_risk is not None:
        out.print("factor model: " + ", ".join(f"{k} {_pct(v)}" for k, v in a.factor_risk["shares"].items()))
    table = Table(title="hedge ratios by level ($ of ETF per $1 of gross; − = short)")
    table.add_column("ETF")
    for lvl in a.hedge_ratios.columns:
        table.add_column(lvl, justify="right")
    for etf, row in a.hedge_ratios.iterrows():
        table.add_row(str(etf), *(fmt(float(v)) for v in row))
    out.print(table)
    positions = Table(title="contributions to variance by position (Euler)", caption=NEGATIVE_SHARE_NOTE)
    for col in ("ticker", "weight", "share of variance"):
        positions.add_column(col, justify="left" if col == "ticker" else "right")
    for ticker, row in r.by_position.sort_values("share", ascending=False).iterrows():
        positions.add_row(str(ticker), _pct(row["weight"]), _pct(row["share"]))
    out.print(positions)
    for row in a.match.excluded.itertuples():
        out.print(f"excluded line {row.line}: {row.ticker if isinstance(row.ticker, str) else row.cusip} — {row.reason}",
                  highlight=False)
    for note in a.notes:
        out.print(f"note: {note}", highlight=False)


def _print_book(book) -> None:
    """Long, short, gross, net and beta-dollars of the matched book (weights are value / gross)."""
    money = (lambda x: f"${x:,.0f}") if book.unit == "USD" else (lambda x: f"{x:.4g} (weight)")
    out.print(f"book: long {money(book.long)}, short {money(-book.short)}, gross {money(book.gross)}, "
              f"net {money(book.net)}; beta-dollars {money(book.beta_dollars)} "
              f"(beta {book.beta:+.3f} per $1 of gross); weights are value / gross", highlight=False, soft_wrap=True)


@portfolio_app.command("hedge")
def hedge(holdings: HoldingsArg, store: StoreOpt = None,
          level: Annotated[str, typer.Option(help="L1, L2, L3 or lstar.")] = "L3",
          value: Annotated[float, typer.Option(help="Portfolio value in USD.")] = 1_000_000.0,
          date: DateOpt = None, as_json: JsonOpt = False) -> None:
    """Hedge trade list in dollars at a level, and the risk left after it."""
    from riskstrata.services.portfolio import hedge_portfolio

    h = hedge_portfolio(open_store(store), holdings, level, value, parse_date(date))
    if as_json:
        print_json({"level": h.level, "value": h.value, "trades": h.trades.to_dict(orient="records"),
                    "description": h.description, "risk_index_before": h.before.risk_index,
                    "risk_index_after": h.after.risk_index, "residual_share_after": float(h.after.by_role["residual"]),
                    "market_beta_after": h.market_beta_after, "hedged_value": h.hedged_value,
                    "hedge_basis": h.hedge_basis, "book": h.book.as_dict()})
        return
    out.print(f"{h.level} hedge of ${h.hedged_value:,.0f}: {h.description}", highlight=False)
    out.print(f"  {h.hedge_basis}", highlight=False, soft_wrap=True)
    out.print(f"Risk Index {h.before.risk_index:.1f} → {h.after.risk_index:.1f}; residual share after "
              f"{_pct(h.after.by_role['residual'])}; market beta after {h.market_beta_after:+.3f}")


@portfolio_app.command("scale")
def scale(holdings: HoldingsArg, store: StoreOpt = None,
          exposure: Annotated[str, typer.Option(help="'market' or an ETF ticker (sector or subsector).")] = "market",
          reduce: Annotated[float, typer.Option(help="Fraction of the exposure to remove (0–1].")] = 0.5,
          value: Annotated[float, typer.Option(help="Portfolio value in USD.")] = 1_000_000.0,
          date: DateOpt = None, as_json: JsonOpt = False) -> None:
    """Cut one exposure by a fraction with ETF positions only (no holdings sold)."""
    from riskstrata.services.portfolio import scale_portfolio

    s = scale_portfolio(open_store(store), holdings, exposure, reduce, value, parse_date(date))
    if as_json:
        print_json({"exposure": s.exposure, "reduce": s.reduce, "trade": s.trade.to_dict(orient="records"),
                    "exposure_before": s.before_exposure, "exposure_after": s.after_exposure,
                    "risk_index_before": s.before.risk_index, "risk_index_after": s.after.risk_index})
        return
    row = s.trade.iloc[0]
    what = "market beta" if exposure.lower() == "market" else f"{s.exposure} exposure"
    out.print(f"{row.side} ${row.notional_usd:,.0f} {row.etf}: {what} {s.before_exposure:+.3f} → {s.after_exposure:+.3f}; "
              f"Risk Index {s.before.risk_index:.1f} → {s.after.risk_index:.1f}", highlight=False)


@portfolio_app.command("lookthrough")
def lookthrough(holdings: HoldingsArg, store: StoreOpt = None, date: DateOpt = None,
                benchmark: Annotated[Optional[str], typer.Option(
                    help="Active share against this ETF (with holdings data) or a weights file.")] = None,
                top: Annotated[int, typer.Option(help="Names to show.")] = 15, as_json: JsonOpt = False) -> None:
    """Expand ETF positions into their holdings: hidden concentration and fund/direct overlap."""
    from riskstrata.services.portfolio import lookthrough_portfolio

    r = lookthrough_portfolio(open_store(store), holdings, parse_date(date), benchmark)
    lt = r.look
    if as_json:
        print_json({"holdings_analyzed": r.match.summary(), "exposures": _records(lt.exposures),
                    "overlap": _records(lt.overlap), "unexpanded": _records(lt.unexpanded),
                    "residual_weight": lt.residual_weight, "active_share": r.active_share,
                    "benchmark": r.benchmark, "notes": r.notes})
        return
    out.print(r.match.summary(), highlight=False)
    table = Table(title="combined exposure per name (direct + through ETFs)")
    for col in ("name", "direct", "via ETFs", "combined", "sources"):
        table.add_column(col, justify="left" if col in ("name", "sources") else "right")
    for name, row in lt.exposures.head(top).iterrows():
        table.add_row(str(name), _pct(row["direct_weight"]), _pct(row["via_etfs_weight"]), _pct(row["combined_weight"]),
                      str(row["sources"]))
    out.print(table)
    if len(lt.overlap):
        ov = Table(title="overlap of each fund with the direct picks")
        for col in ("ETF", "fund weight", "coverage", "overlap with direct", "names in common"):
            ov.add_column(col, justify="left" if col == "ETF" else "right")
        for etf, row in lt.overlap.iterrows():
            ov.add_row(str(etf), _pct(row["fund_weight"]), _pct(row["coverage"]), _pct(row["overlap_with_direct"]),
                       str(row["names_in_common"]))
        out.print(ov)
    out.print(f"weight through ETFs not covered by their listed holdings: {_pct(lt.residual_weight)}")
    if r.active_share is not None:
        out.print(f"active share vs {r.benchmark}: {_pct(r.active_share)}", highlight=False)
    for note in r.notes:
        out.print(f"note: {note}", highlight=False)


@portfolio_app.command("import-13f")
def import_13f(file: Path, cusip_map: Annotated[Optional[Path], typer.Option(
                   help="CSV/Parquet with columns cusip, ticker.")] = None,
               output: Annotated[Optional[Path], typer.Option("--out", help="Write the holdings as CSV here.")] = None,
               as_json: JsonOpt = False) -> None:
    """Read a SEC Form 13F information table into holdings (CUSIPs mapped to tickers)."""
    from riskstrata.portfolio.thirteenf import read_13f

    h = read_13f(file, cusip_map)
    lines = h.lines
    mapped = int(lines["ticker"].notna().sum())
    if output is not None:
        lines.to_csv(output, index=False)  # the user asked to save them
    if as_json:
        print_json({"lines": len(lines), "mapped": mapped, "notes": h.notes, "holdings": _records(lines.set_index("line"))})
        return
    out.print(f"{len(lines)} holdings read, {mapped} mapped to tickers" + (f"; written to {output}" if output else ""))
    for note in h.notes:
        out.print(f"note: {note}", highlight=False)
