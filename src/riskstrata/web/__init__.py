"""The web dashboard: server-rendered pages at ``/`` beside the REST API at ``/api``.

Pages are Jinja2 templates (``templates/``) with Plotly charts built in Python
(:mod:`riskstrata.web.figures`) and drawn by the plotly.js that ships inside the ``plotly``
package; a little plain JavaScript (``static/app.js``) adds sorting, selectors, uploads and the
build progress bar. Nothing is fetched from outside the server. The numbers come from
:mod:`riskstrata.services.dashboard`; routes only choose what to show.

:func:`install` adds the page routes to an app. They sit outside ``/api`` and its API-key
dependency, with their own access rule (:mod:`riskstrata.web.access`), so the API's hot path is
unchanged.
"""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """Serve the dashboard's pages and assets from ``app`` (at ``/``, ``/stock/…``, ``/static/…``)."""
    from riskstrata.web import access, routes

    access.install(app)
    app.include_router(routes.router, include_in_schema=False)
