"""The riskmodels-py 0.5.0 methods riskstrata does not serve: a clear 404, never a bare one or a 5xx.

Each route answers ``404 {"error": "Not Served", "message": "…"}``: the message names the client
method(s) that call the path and says why a self-hosted store cannot answer it (the client shows
``message`` in its ``APIError``). 404 rather than 501: the server works as designed, the resource
does not exist here, and no 5xx ever means "by design". :data:`UNSERVED` is also the source of
the README's table of client methods.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from riskstrata.api.errors import ApiError

router = APIRouter(tags=["riskmodels-py methods not served"])

_NO_DATA = "are not in a self-hosted store"
# (client methods, HTTP method, path under /api, why not served)
UNSERVED: list[tuple[tuple[str, ...], str, str, str]] = [
    (("get_plaid_holdings",), "GET", "/plaid/holdings",
     "brokerage linking (Plaid) is a hosted-service integration; send holdings in the request body instead"),
    (("get_top_rankings",), "GET", "/rankings/top", f"cross-sectional rankings {_NO_DATA} (ranking tables)"),
    (("get_rankings",), "GET", "/rankings/{ticker}", f"cross-sectional rankings {_NO_DATA} (ranking tables)"),
    (("screen_rankings", "filter_universe_by_ranking", "filter_universe"), "POST", "/rankings/screen",
     f"ranking screens {_NO_DATA} (ranking tables)"),
    (("get_universe_members",), "GET", "/universe/{name}/members",
     "the service's named universes are not modelled; riskstrata's universe is GET /api/tickers"),
    (("get_residual_signal_basket",), "POST", "/signals/residual-reversion/basket",
     "residual-reversion trading signals are not computed"),
    (("residual_signal_latest",), "GET", "/residual-signal/latest", "residual-reversion trading signals are not computed"),
    (("residual_signal",), "GET", "/residual-signal/{ticker}", "residual-reversion trading signals are not computed"),
    (("get_etf_factor_returns",), "GET", "/etf/factor-returns",
     "not served yet; the ETF returns are in the store (riskstrata Python API: load_returns)"),
    (("get_industry_panel",), "GET", "/industry-panel", "the service's industry panel is not in a self-hosted store"),
    (("get_macro_factor_series", "get_metrics_with_macro_correlation"), "GET", "/macro-factors",
     f"macro factor series (rates, oil, VIX, …) {_NO_DATA}; factor correlations use the factor ETFs"),
    (("exposure_history",), "POST", "/portfolio/exposure/history",
     "not served; POST /api/portfolio/exposure gives the signed book's exposure on the model's last date"),
    (("get_fund_snapshot",), "GET", "/funds/snapshot/{fund_id}", f"mutual-fund data {_NO_DATA}"),
    (("get_style",), "GET", "/funds/style/{slug}", f"fund style cohorts {_NO_DATA}"),
    (("get_style_rankings",), "GET", "/funds/style/{slug}/rankings/{cohort_type}", f"fund style cohorts {_NO_DATA}"),
    (("get_style_portfolio",), "GET", "/funds/style/{slug}/portfolio", f"fund style cohorts {_NO_DATA}"),
    (("get_style_holdings",), "GET", "/funds/style/{slug}/holdings", f"fund style cohorts {_NO_DATA}"),
    (("get_style_snapshot",), "GET", "/funds/style/{slug}/snapshot", f"fund style cohorts {_NO_DATA}"),
    (("get_fund",), "GET", "/funds/{fund_id}", f"mutual-fund data {_NO_DATA}"),
    (("get_fund_portfolio",), "GET", "/funds/{fund_id}/portfolio", f"mutual-fund data {_NO_DATA}"),
    (("get_fund_holdings",), "GET", "/funds/{fund_id}/holdings", f"mutual-fund data {_NO_DATA}"),
    (("get_fund_hedge",), "GET", "/funds/{fund_id}/hedge", f"mutual-fund data {_NO_DATA}"),
    (("get_fund_nav",), "GET", "/funds/{fund_id}/nav", f"mutual-fund data {_NO_DATA}"),
    (("get_benchmark_fit",), "GET", "/data/benchmark-fit", "the service's benchmark registry is not in a self-hosted store"),
    (("search_filers",), "GET", "/13f/filers/search",
     "13F filers are not indexed; import a 13F information table with `riskstrata portfolio import-13f`"),
    (("get_filer",), "GET", "/13f/filers/{filer_id}", "13F filers are not indexed; use `riskstrata portfolio import-13f`"),
    (("get_filer_holdings",), "GET", "/13f/filers/{filer_id}/holdings",
     "13F filers are not indexed; use `riskstrata portfolio import-13f`"),
    (("get_filer_portfolio",), "GET", "/13f/filers/{filer_id}/portfolio",
     "13F filers are not indexed; use `riskstrata portfolio import-13f`"),
    (("get_filer_concentration",), "GET", "/13f/filers/{filer_id}/concentration",
     "13F filers are not indexed; use `riskstrata portfolio import-13f`"),
    (("get_filer_snapshot",), "GET", "/13f/filers/{filer_id}/snapshot",
     "13F filers are not indexed; use `riskstrata portfolio import-13f`"),
    (("get_filer_snapshot_pdf",), "GET", "/13f/filers/{filer_id}/snapshot.pdf",
     "13F filers are not indexed; use `riskstrata portfolio import-13f` and POST /api/portfolio/risk-snapshot"),
    (("get_fundamentals", "get_fundamentals_sensitivity_grid", "next_earnings"), "GET", "/fundamentals/{ticker}",
     "company fundamentals and earnings dates are not served over the wire (Model B reads them at build time)"),
    (("snapshot_panel",), "GET", "/snapshot/{kind}/{subject_id}/panels/{slug}",
     "pre-rendered PNG panels are not served; GET /api/metrics/{T}/snapshot.pdf is the one-page report"),
    (("riskmodels.cohorts",), "GET", "/cohorts/{rest:path}", f"cohort rosters {_NO_DATA}"),
    (("riskmodels.cohorts",), "POST", "/cohorts/{rest:path}", f"cohort rosters {_NO_DATA}"),
]


def _responder(methods: tuple[str, ...], http: str, path: str, why: str):
    names = " / ".join(methods)

    async def not_served(request: Request) -> None:  # noqa: ARG001 - the request is not read
        raise ApiError(404, "Not Served",
                       f"{names} ({http} /api{path}) is not served by riskstrata: {why}")

    not_served.__name__ = f"not_served_{methods[0].replace('.', '_')}_{http.lower()}"
    not_served.__doc__ = f"Answers 404 (Not Served) for riskmodels-py's {names}: {why}."
    return not_served


for _methods, _http, _path, _why in UNSERVED:
    router.add_api_route(_path, _responder(_methods, _http, _path, _why), methods=[_http],
                         summary=f"Not served: {' / '.join(_methods)}", status_code=404,
                         responses={404: {"description": _why}}, include_in_schema=True)
