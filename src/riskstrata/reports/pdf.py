"""The one-page PDF report of a snapshot (:mod:`riskstrata.reports.snapshot`).

Drawn with matplotlib's PDF backend, so the charts are vector paths and the text is real text
(TrueType fonts embedded, ``pdf.fonttype`` 42): ``pdftotext`` finds the ticker, the Risk Index
and the dates. The page (US Letter, portrait) holds what the dashboard's stock and portfolio
views show:

1. a header: the name, the data date, the model version and the lookback;
2. the numbers: Risk Index, volatility vs the market ETF, systematic share, L* and the
   recommended hedge level (a ticker) or "X/Y holdings analyzed" and the book (a portfolio);
3. the four-stage walkthrough of cumulative returns over the lookback: gross → market-hedged →
   sector-hedged → subsector residual (each stage removes one strip of the geometric bridge);
4. the risk breakdown: Euler shares of variance by role (a negative bar diversifies);
5. per position (portfolio) its share of variance, or per level (ticker) the explained risk;
6. the hedge trades per level, in $ of ETF per $1 (or in dollars where the book has a value).

Every number comes from the snapshot dict; the only arithmetic here compounds the daily strips
into the walkthrough's lines.
"""

from __future__ import annotations

import io

import numpy as np

ROLE_COLORS = {"market": "#1f4e79", "sector": "#2e86c1", "subsector": "#85c1e9", "residual": "#b0b0b0"}
PAGE_INCHES = (8.5, 11.0)


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def _stages(attribution: dict) -> dict[str, np.ndarray]:
    """Cumulative return of each walkthrough stage: gross, then without the market strip, then
    without market and sector, then the residual alone (daily strips compounded)."""
    g = np.asarray(attribution["gross"], dtype=float)
    m, s, u = (np.asarray(attribution[k], dtype=float) for k in ("market", "sector", "subsector"))
    daily = {"gross": g, "market-hedged": g - m, "sector-hedged": g - m - s, "subsector residual": g - m - s - u}
    return {k: np.cumprod(1.0 + v) - 1.0 for k, v in daily.items()}


def _header(fig, snap: dict) -> None:
    s, meta = snap["snapshot"], snap["metadata"]
    name = s["ticker_meta"]["ticker"] if s.get("ticker_meta") else (s.get("title") or "Portfolio")
    kind = "Stock" if s["type"] == "ticker" else "Portfolio"
    fig.text(0.06, 0.965, f"{kind} risk snapshot: {name}", fontsize=17, weight="bold", va="top")
    fig.text(0.06, 0.935, f"Data as of {meta['data_as_of']}   |   analysis date {meta['as_of']}   |   "
                          f"lookback {meta['lookback_days']} trading days", fontsize=8.5, va="top")
    fig.text(0.06, 0.918, f"Model: {meta['model']}, version {meta['model_version']}", fontsize=8.5, va="top",
             color="#444444")


def _numbers(fig, snap: dict) -> None:
    s, rs = snap["snapshot"], snap["risk_summary"]
    ri = s["risk_index"]
    lines = [f"Risk Index {ri['value']:.1f}   (100 = the volatility of {ri['market_etf']})",
             f"Volatility {_pct(ri['volatility_ann'])} a year vs {ri['market_etf']} {_pct(ri['market_volatility_ann'])}",
             f"Systematic share of variance {_pct(rs['systematic_risk_share'])}; dominant: "
             f"{', '.join(rs['dominant_drivers'])}"]
    if s["type"] == "ticker":
        m, tm = s["metrics"], s["ticker_meta"]
        lines.append(f"ETFs: market {tm['factors'][0]}, sector {tm['sector_etf'] or 'n/a'}, "
                     f"subsector {tm['subsector_etf'] or 'n/a'}")
        lines.append(f"L* (statistical hedge depth) {m['lstar'] or 'n/a'}; recommended hedge level "
                     f"{m['recommended_hedge_level'] or 'n/a'}")
    else:
        lines.append(s["holdings_analyzed"])
        b = s.get("book")
        if b:
            money = (lambda x: f"${x:,.0f}") if b["unit"] == "USD" else (lambda x: f"{x:.3g}")
            lines.append(f"Book: long {money(b['long'])}, short {money(-b['short'])}, gross {money(b['gross'])}, "
                         f"net {money(b['net'])}; beta-dollars {money(b['beta_dollars'])}")
    period = snap["attribution"].get("period")
    if period:
        lines.append("Over the lookback: gross " + _pct(period["gross"]) + " = market " + _pct(period["market"])
                     + " + sector " + _pct(period["sector"]) + " + subsector " + _pct(period["subsector"])
                     + " + residual " + _pct(period["residual"]))
    for i, line in enumerate(lines):
        fig.text(0.06, 0.885 - 0.019 * i, line, fontsize=9.5 if i else 12, weight="bold" if i == 0 else "normal",
                 va="top")


def _walkthrough(ax, snap: dict) -> None:
    att = snap["attribution"]
    dates = np.asarray(att["teo"], dtype="datetime64[D]")
    if len(dates) == 0:
        ax.text(0.5, 0.5, "no days with returns and fitted hedges in the lookback", ha="center", transform=ax.transAxes)
        return
    styles = {"gross": ("#111111", 1.6), "market-hedged": ("#1f4e79", 1.1), "sector-hedged": ("#2e86c1", 1.1),
              "subsector residual": ("#c0392b", 1.3)}
    for name, line in _stages(att).items():
        color, width = styles[name]
        ax.plot(dates, 100 * line, color=color, lw=width, label=name)
    tb = snap["time_behavior"]
    if "benchmark_cumulative_return" in tb:
        ax.plot(dates, 100 * np.asarray(tb["benchmark_cumulative_return"]), color="#7f7f7f", lw=1, ls="--",
                label=tb["benchmark"])
    ax.axhline(0, color="#999999", lw=0.6)
    ax.set_title("Cumulative return: gross → market-hedged → sector-hedged → subsector residual", fontsize=9.5)
    ax.set_ylabel("%", fontsize=8)
    ax.legend(fontsize=7, loc="best", frameon=False)
    ax.tick_params(labelsize=7)


def _breakdown(ax, snap: dict) -> None:
    shares = snap["snapshot"]["variance_decomposition"]
    roles = ["market", "sector", "subsector", "residual"]
    values = [100 * shares[r] for r in roles]
    bars = ax.barh(roles[::-1], values[::-1], color=[ROLE_COLORS[r] for r in roles[::-1]])
    for bar, v in zip(bars, values[::-1]):
        bar.set_hatch("//" if v < 0 else "")
        ax.text(max(bar.get_width(), 0.0), bar.get_y() + bar.get_height() / 2, f" {v:.1f}%", va="center",
                fontsize=7.5)
    ax.axvline(0, color="#666666", lw=0.6)
    ax.set_title("Risk breakdown: share of variance (Euler)", fontsize=9.5)
    ax.set_xlabel("negative = diversifies (lowers the variance)", fontsize=7)
    ax.tick_params(labelsize=7.5)


def _detail(ax, snap: dict) -> None:
    s = snap["snapshot"]
    if s["type"] == "ticker":
        m = s["metrics"]
        levels = {"L1": [m["l1_mkt_er"], 0, 0], "L2": [m["l2_mkt_er"], m["l2_sec_er"], 0],
                  "L3": [m["l3_mkt_er"], m["l3_sec_er"], m["l3_sub_er"]]}
        left = np.zeros(3)
        for i, role in enumerate(("market", "sector", "subsector")):
            v = np.array([100 * (levels[k][i] or 0.0) for k in levels])
            ax.barh(list(levels), v, left=left, color=ROLE_COLORS[role], label=role)
            left += v
        ax.set_title("Explained risk by hedge level (% of variance)", fontsize=9.5)
        ax.set_xlabel("%", fontsize=7)
        ax.legend(fontsize=7, frameon=False, loc="lower right")
    else:
        pos = sorted(s["positions"], key=lambda p: -abs(p["share_of_variance"] or 0.0))[:12][::-1]
        names = [p["ticker"] for p in pos]
        values = [100 * (p["share_of_variance"] or 0.0) for p in pos]
        ax.barh(names, values, color=["#c0392b" if v < 0 else "#2e86c1" for v in values])
        ax.axvline(0, color="#666666", lw=0.6)
        ax.set_title("Contribution to variance by position (red = diversifies)", fontsize=9.5)
        ax.set_xlabel("% of the portfolio's variance", fontsize=7)
    ax.tick_params(labelsize=7.5)


def _hedges(fig, snap: dict) -> None:
    s = snap["snapshot"]
    book = s.get("book") or {}
    in_dollars = book.get("unit") == "USD"
    unit = "USD" if in_dollars else "$ per $1 of gross"
    fig.text(0.06, 0.215, f"Hedge trades per level ({unit}; negative = short the ETF)", fontsize=10, weight="bold")
    source = book.get("hedge_dollars") if in_dollars else s["hedge_ratios"]
    for i, level in enumerate(("L1", "L2", "L3", "lstar")):
        legs = sorted((source or {}).get(level, {}).items(), key=lambda kv: -abs(kv[1]))
        text = ", ".join((f"{e} {v:+,.0f}" if in_dollars else f"{e} {v:+.3f}") for e, v in legs) or "none"
        fig.text(0.06, 0.195 - 0.017 * i, f"{'L*' if level == 'lstar' else level}: {text}", fontsize=8.5,
                 family="monospace")
    notes = list(dict.fromkeys([s["variance_decomposition_note"], *s.get("notes", [])]))[:4]
    for i, note in enumerate(notes):
        fig.text(0.06, 0.108 - 0.014 * i, ("note: " + note)[:150], fontsize=7, color="#444444")
    fig.text(0.06, 0.035, "riskstrata: open, self-hosted equity risk models. Hedge ratios are $ of ETF per $1 long "
                          "(the commercial service's sign); Risk Index = 100 x portfolio vol / market ETF vol.",
             fontsize=6.5, color="#666666")


def render_pdf(snap: dict) -> bytes:
    """One US Letter page as PDF bytes (vector charts, embedded TrueType text)."""
    import matplotlib
    from matplotlib.backends.backend_pdf import FigureCanvasPdf
    from matplotlib.figure import Figure

    # text.parse_math off: "$ per $1" is money here, not TeX.
    with matplotlib.rc_context({"pdf.fonttype": 42, "font.family": "DejaVu Sans", "text.parse_math": False,
                                "axes.spines.top": False,
                                "axes.spines.right": False}):
        fig = Figure(figsize=PAGE_INCHES)
        FigureCanvasPdf(fig)
        _header(fig, snap)
        _numbers(fig, snap)
        _walkthrough(fig.add_axes((0.08, 0.49, 0.86, 0.23)), snap)
        _breakdown(fig.add_axes((0.12, 0.265, 0.33, 0.16)), snap)
        _detail(fig.add_axes((0.60, 0.265, 0.34, 0.16)), snap)
        _hedges(fig, snap)
        buf = io.BytesIO()
        meta = snap["metadata"]
        fig.savefig(buf, format="pdf", metadata={"Title": f"riskstrata risk snapshot ({meta['as_of']})",
                                                 "Subject": f"model {meta['model_version']}, data as of "
                                                            f"{meta['data_as_of']}", "Creator": "riskstrata"})
    return buf.getvalue()
