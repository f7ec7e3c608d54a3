"""Rendering: the Jinja2 environment, number formats for people, and compressed HTML responses."""

from __future__ import annotations

import gzip
import math
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from riskstrata import __version__
from riskstrata.jsonsafe import dumps_json

GZIP_MIN_BYTES = 1400  # below one packet compression saves nothing
GZIP_LEVEL = 5         # ~4× smaller pages for a few ms on the largest one


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def pct(x: Any, digits: int = 1, signed: bool = False) -> str:
    """0.1234 → '12.3%' ('—' for a missing number)."""
    v = _finite(x)
    if v is None:
        return "—"
    return f"{v:+.{digits}%}" if signed else f"{v:.{digits}%}"


def usd(x: Any, digits: int = 0) -> str:
    """1234567 → '$1,234,567'; negatives as '−$1,234'."""
    v = _finite(x)
    if v is None:
        return "—"
    return f"{'−' if v < 0 else ''}${abs(v):,.{digits}f}"


def num(x: Any, digits: int = 2) -> str:
    v = _finite(x)
    return "—" if v is None else f"{v:,.{digits}f}"


def figure(spec: dict, fig_id: str, caption: str) -> Markup:
    """A chart: the Plotly spec as inert JSON beside its container (drawn by static/app.js), and
    its plain-language caption. ``</`` is escaped so the JSON cannot close the script element."""
    body = dumps_json(spec).decode().replace("</", "<\\/")
    return Markup(f'<figure class="chart"><div class="plot" id="{fig_id}" data-figure="{fig_id}-spec"></div>'
                  f'<script type="application/json" id="{fig_id}-spec">{body}</script>'
                  f'<figcaption>{Markup.escape(caption)}</figcaption></figure>')


env = Environment(loader=PackageLoader("riskstrata.web", "templates"), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)
env.filters.update(pct=pct, usd=usd, num=num)
env.globals.update(figure=figure, version=__version__)


def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    """The template rendered as an HTML response, gzip-compressed when the client accepts it."""
    html = env.get_template(template).render(request=request, **context).encode()
    return html_response(request, html, status)


# Pages are never cached by the browser (a portfolio page holds holdings; a model page changes
# with the next build), never sniffed as another type, and send no referrer off the site.
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


def html_response(request: Request, html: bytes, status: int = 200, headers: dict | None = None) -> Response:
    headers = {**PAGE_HEADERS, **(headers or {})}
    if len(html) >= GZIP_MIN_BYTES and "gzip" in request.headers.get("accept-encoding", ""):
        html = gzip.compress(html, GZIP_LEVEL)
        headers.update({"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    return Response(html, status_code=status, media_type="text/html; charset=utf-8", headers=headers)
