"""The dashboard's charts as Plotly figure specs, built in Python from the services' numbers.

Each function takes numbers (decimals for returns and shares) and returns a plain Plotly figure
dict ``{"data": [...], "layout": {...}}``: the browser draws it with the plotly.js that ships in
the ``plotly`` package, and a notebook or a report gets the same chart with
``plotly.graph_objects.Figure(spec)`` (:func:`as_figure`). Plain dicts rather than
``go.Figure`` objects because building a validated figure costs tens of milliseconds per chart
and the pages are served in well under that; the tests validate every spec with ``go.Figure``.

Every chart has a title, axis titles with units and no external resource (fonts are the
browser's system fonts; no map tiles, no MathJax).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

Figure = dict[str, Any]

# One colour per risk layer everywhere (walkthrough, shares, attribution, portfolio).
COLORS = {"gross": "#374151", "market": "#2563eb", "sector": "#f59e0b", "subsector": "#10b981",
          "residual": "#a855f7", "specific": "#a855f7", "styles": "#f59e0b", "industries": "#10b981",
          "positive": "#16a34a", "negative": "#dc2626"}
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
# Diverging, red (−1) → white (0) → green (+1): the factor correlation heatmap.
RED_WHITE_GREEN = [[0.0, "#b91c1c"], [0.25, "#f87171"], [0.5, "#ffffff"], [0.75, "#4ade80"], [1.0, "#15803d"]]


def as_figure(spec: Figure):
    """The spec as a ``plotly.graph_objects.Figure`` (validated), for notebooks and reports."""
    import plotly.graph_objects as go

    return go.Figure(spec)


def _layout(title: str, x_title: str | None, y_title: str | None, height: int = 340, **extra: Any) -> dict:
    """A layout with a title, axis titles (units in them) and, when shown, the legend along the
    figure's bottom edge (below the x axis title, so the two never overlap)."""
    legend = extra.pop("showlegend", True)
    layout = {"title": {"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
              "font": {"family": FONT, "size": 12}, "height": height + (40 if legend else 0), "autosize": True,
              "margin": {"l": 60, "r": 16, "t": 48, "b": 100 if legend else 56}, "paper_bgcolor": "white",
              "plot_bgcolor": "white", "showlegend": legend, "hovermode": "x unified",
              "legend": {"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0,
                         "traceorder": "normal"}}
    layout["xaxis"] = {"title": {"text": x_title} if x_title else None, "gridcolor": "#e5e7eb", "automargin": True}
    layout["yaxis"] = {"title": {"text": y_title} if y_title else None, "gridcolor": "#e5e7eb", "automargin": True,
                       "zerolinecolor": "#9ca3af"}
    tick = extra.pop("yaxis_tickformat", None)
    if tick:
        layout["yaxis"]["tickformat"] = tick
    layout.update(extra)
    return layout


def _dates(index: pd.Index) -> list[str]:
    """YYYY-MM-DD strings (numpy's vectorised formatting: a per-date strftime costs ms per chart)."""
    return np.datetime_as_string(pd.DatetimeIndex(index).to_numpy(dtype="datetime64[D]"), unit="D").tolist()


def _values(series: pd.Series | np.ndarray, digits: int = 6) -> list[float | None]:
    """Floats rounded for the page (NaN → None: a gap in the line)."""
    arr = np.round(np.asarray(series, dtype=float), digits)
    return [None if not np.isfinite(v) else float(v) for v in arr]


# ----------------------------------------------------------------------------- stock


WALK_LABELS = {"gross": "1 · gross return", "market_hedged": "2 · market-hedged (L1 residual)",
               "sector_hedged": "3 · sector-hedged (L2 residual)",
               "subsector_residual": "4 · subsector residual (L3)"}
WALK_COLORS = {"gross": COLORS["gross"], "market_hedged": COLORS["market"], "sector_hedged": COLORS["sector"],
               "subsector_residual": COLORS["residual"]}


def walkthrough(ticker: str, walk: pd.DataFrame) -> Figure:
    """Four cumulative return lines (decimals, drawn as %): gross, then after each hedge."""
    x = _dates(walk.index)
    data = [{"type": "scatter", "mode": "lines", "name": WALK_LABELS[c], "x": x, "y": _values(walk[c]),
             "line": {"color": WALK_COLORS[c], "width": 2.2 if c in ("gross", "subsector_residual") else 1.6},
             "hovertemplate": "%{y:.2%}"} for c in WALK_LABELS]
    return {"data": data, "layout": _layout(f"{ticker}: cumulative return, hedged level by level", "date",
                                            "cumulative return (%)", 380, yaxis_tickformat=".0%")}


def risk_breakdown(ticker: str, shares: dict[str, dict[str, float | None]]) -> Figure:
    """Explained-risk shares per level as stacked horizontal bars (each level sums to 100 %)."""
    levels = list(shares)[::-1]  # L3 at the top
    parts = ["market", "sector", "subsector", "residual"]
    data = []
    for part in parts:
        xs = [shares[lvl].get(part) for lvl in levels]
        if all(v is None for v in xs):
            continue
        data.append({"type": "bar", "orientation": "h", "name": part, "y": levels,
                     "x": [None if v is None else round(float(v), 6) for v in xs],
                     "marker": {"color": COLORS[part]}, "hovertemplate": f"{part}: %{{x:.1%}}<extra></extra>",
                     "text": [None if v is None else f"{v:.0%}" for v in xs], "textposition": "inside"})
    layout = _layout(f"{ticker}: share of variance explained, by hedge level", "share of the stock's variance (%)",
                     "hedge level", 260, barmode="stack", hovermode="closest")
    layout["xaxis"].update({"tickformat": ".0%", "range": [0, 1]})
    return {"data": data, "layout": layout}


def attribution_bars(ticker: str, bars: dict[str, float], start: str, end: str) -> Figure:
    """The geometric bridge as a waterfall: market, sector, subsector and residual add to gross."""
    parts = ["market", "sector", "subsector", "residual"]
    data = [{"type": "waterfall", "orientation": "v", "x": [*parts, "gross"],
             "measure": ["relative"] * 4 + ["total"], "y": [round(float(bars[p]), 8) for p in parts] + [0.0],
             "text": [f"{bars[p]:+.1%}" for p in [*parts, "gross"]], "textposition": "outside",
             "increasing": {"marker": {"color": COLORS["positive"]}},
             "decreasing": {"marker": {"color": COLORS["negative"]}},
             "totals": {"marker": {"color": COLORS["gross"]}}, "hovertemplate": "%{x}: %{y:+.2%}<extra></extra>",
             "connector": {"line": {"color": "#9ca3af"}}}]
    layout = _layout(f"{ticker}: return attribution {start} → {end}", "component", "contribution to return (%)", 320,
                     hovermode="closest", showlegend=False)
    layout["yaxis"]["tickformat"] = ".0%"
    return {"data": data, "layout": layout}


def lstar_history(ticker: str, lstar: pd.DataFrame) -> Figure:
    """The hedge depth L* chosen each day (1 = market only … 3 = down to the subsector ETF)."""
    level = lstar["lstar_level"].astype(float).where(lstar["lstar_level"] > 0)
    data = [{"type": "scatter", "mode": "lines", "line": {"shape": "hv", "color": COLORS["market"]}, "name": "L*",
             "x": _dates(lstar.index), "y": _values(level, 0), "hovertemplate": "L%{y}<extra></extra>"}]
    layout = _layout(f"{ticker}: recommended hedge depth L* per day", "date", "hedge level", 240, showlegend=False)
    layout["yaxis"].update({"tickvals": [1, 2, 3], "ticktext": ["L1 market", "L2 sector", "L3 subsector"],
                            "range": [0.7, 3.3]})
    return {"data": data, "layout": layout}


def exposures_bar(ticker: str, exposures: pd.Series, model: str) -> Figure:
    """A stock's z-score exposure to every factor of a Model B spec (0 = the cap-weighted average)."""
    values = exposures.astype(float)
    data = [{"type": "bar", "orientation": "h", "y": [str(f) for f in values.index][::-1],
             "x": _values(values, 4)[::-1],
             "marker": {"color": [COLORS["positive"] if v >= 0 else COLORS["negative"] for v in values][::-1]},
             "hovertemplate": "%{y}: %{x:.2f}σ<extra></extra>"}]
    layout = _layout(f"{ticker}: exposure to each {model} factor", "exposure (z-score, σ)", None,
                     max(300, 22 * len(values) + 90), hovermode="closest", showlegend=False)
    return {"data": data, "layout": layout}


# ----------------------------------------------------------------------------- factors


def correlation_heatmap(corr: pd.DataFrame, model: str) -> Figure:
    """The K × K correlation matrix of daily factor returns: green positive, red negative."""
    names = [str(c) for c in corr.columns]
    z = [[None if not np.isfinite(v) else float(v) for v in row] for row in corr.to_numpy(dtype=float)]
    data = [{"type": "heatmap", "x": names, "y": names, "z": z, "zmin": -1, "zmax": 1, "zmid": 0,
             "colorscale": RED_WHITE_GREEN, "colorbar": {"title": {"text": "ρ"}, "thickness": 12},
             "hovertemplate": "%{y} × %{x}: %{z:.3f}<extra></extra>", "xgap": 1, "ygap": 1}]
    layout = _layout(f"{model}: correlation of daily factor returns", "factor", "factor", 560, hovermode="closest",
                     showlegend=False)
    layout["yaxis"].update({"autorange": "reversed", "tickfont": {"size": 10}})
    layout["xaxis"].update({"tickangle": -45, "tickfont": {"size": 10}})
    layout["margin"] = {"l": 150, "r": 16, "t": 48, "b": 130}
    layout["xaxis"]["title"] = None  # the factor names say it; a title would collide with the slanted names
    return {"data": data, "layout": layout}


def cumulative_chart(cumulative: pd.DataFrame, shown: list[str], model: str) -> Figure:
    """Compounded return of each factor (decimals as %); the ``shown`` ones visible, the rest one
    legend click (or the selector) away."""
    x = _dates(cumulative.index)
    data = [{"type": "scatter", "mode": "lines", "name": str(f), "x": x, "y": _values(cumulative[f]),
             "visible": True if f in shown else "legendonly", "hovertemplate": "%{y:.1%}"}
            for f in cumulative.columns]
    layout = _layout(f"{model}: cumulative factor returns", "date", "cumulative return (%)", 400,
                     yaxis_tickformat=".0%")
    layout["legend"] = {"orientation": "v", "x": 1.01, "y": 1, "font": {"size": 10}}
    layout["margin"].update({"r": 10, "b": 56})
    layout["height"] = 440
    return {"data": data, "layout": layout}


def rolling_pair(pair: dict) -> Figure:
    """The rolling correlation of two factors (63 trading days)."""
    rolling = pair["rolling"]
    data = [{"type": "scatter", "mode": "lines", "name": "rolling correlation", "x": _dates(rolling.index),
             "y": _values(rolling, 4), "line": {"color": COLORS["market"]}, "hovertemplate": "%{y:.2f}"}]
    layout = _layout(f"{pair['a']} × {pair['b']}: rolling 63-day correlation", "date", "correlation (ρ)", 280,
                     showlegend=False)
    layout["yaxis"]["range"] = [-1, 1]
    return {"data": data, "layout": layout}


def bias_chart(validation: pd.DataFrame, model: str) -> Figure:
    """Bias statistic per factor (target 1) with its ≈ 95 % band 1 ± √(2/T)."""
    names = [str(f) for f in validation.index]
    inside = validation["inside_band"].to_numpy(dtype=bool)
    data = [
        {"type": "scatter", "mode": "lines", "name": "band low", "x": names, "y": _values(validation["band_lo"], 4),
         "line": {"color": "#9ca3af", "dash": "dot", "shape": "hvh"}, "hoverinfo": "skip"},
        {"type": "scatter", "mode": "lines", "name": "band high", "x": names, "y": _values(validation["band_hi"], 4),
         "line": {"color": "#9ca3af", "dash": "dot", "shape": "hvh"}, "fill": "tonexty",
         "fillcolor": "rgba(156,163,175,0.15)", "hoverinfo": "skip"},
        {"type": "scatter", "mode": "markers", "name": "bias statistic", "x": names, "y": _values(validation["bias"], 4),
         "marker": {"size": 9, "color": [COLORS["positive"] if ok else COLORS["negative"] for ok in inside]},
         "hovertemplate": "%{x}: %{y:.3f}<extra></extra>"},
    ]
    layout = _layout(f"{model}: bias statistic of one-day factor risk forecasts", "factor",
                     "bias statistic (1 = forecast right)", 340, hovermode="closest")
    layout["xaxis"].update({"tickangle": -45, "tickfont": {"size": 10}})
    layout["xaxis"]["title"] = None  # the slanted factor names say it
    layout["margin"]["b"] = 170
    layout["height"] += 70
    return {"data": data, "layout": layout}


# ----------------------------------------------------------------------------- portfolio


def variance_shares(shares: dict[str, float], title: str) -> Figure:
    """Euler shares of a portfolio's variance (decimals; negative = that part diversifies)."""
    parts = list(shares)
    data = [{"type": "bar", "x": parts, "y": [round(float(shares[p]), 6) for p in parts],
             "marker": {"color": [COLORS.get(p, "#6b7280") for p in parts]},
             "text": [f"{shares[p]:.1%}" for p in parts], "textposition": "outside",
             "hovertemplate": "%{x}: %{y:.1%}<extra></extra>"}]
    layout = _layout(title, "component", "share of variance (%)", 300, hovermode="closest", showlegend=False)
    layout["yaxis"]["tickformat"] = ".0%"
    return {"data": data, "layout": layout}


def position_contributions(by_position: pd.DataFrame, top: int = 20) -> Figure:
    """Each position's Euler share of portfolio variance, largest first (``top`` shown)."""
    rows = by_position.reindex(by_position["share"].abs().sort_values(ascending=False).index[:top])
    data = [{"type": "bar", "orientation": "h", "y": [str(t) for t in rows.index][::-1],
             "x": _values(rows["share"], 6)[::-1],
             "marker": {"color": [COLORS["negative"] if v < 0 else COLORS["market"] for v in rows["share"]][::-1]},
             "hovertemplate": "%{y}: %{x:.1%}<extra></extra>"}]
    layout = _layout("Contribution of each position to portfolio variance", "share of variance (%)", None,
                     max(260, 22 * len(rows) + 100), hovermode="closest", showlegend=False)
    layout["xaxis"]["tickformat"] = ".0%"
    return {"data": data, "layout": layout}
