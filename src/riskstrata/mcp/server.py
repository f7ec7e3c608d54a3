"""The MCP server: the tools of :mod:`riskstrata.mcp.tools`, two resources and two prompts.

``build_server(state)`` returns an SDK ``MCPServer`` over one worker's state; ``riskstrata mcp``
runs it on stdio and the REST app serves it at ``/mcp`` (:mod:`riskstrata.mcp.http`).

Errors: a :class:`~riskstrata.errors.RiskstrataError` becomes a tool error (``isError`` with the
CLI's message; an unknown ticker adds the closest known ones); arguments that fail the input
schema are tool errors too (the SDK's validation). Anything else is logged as one line — its
type and where, like the REST API — and answered as a tool error: the server never crashes on a
call, and no argument (holdings included) reaches a log.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from importlib import resources
from typing import Any

import orjson
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import ValidationError

from riskstrata import __version__
from riskstrata.api.errors import log_unexpected
from riskstrata.api.state import AppState
from riskstrata.errors import RiskstrataError, UnknownTicker
from riskstrata.jsonsafe import dumps_json
from riskstrata.mcp.tools import Tools
from riskstrata.services import cascade, factors

NAME = "riskstrata"
TOOLS = ("get_metrics", "decompose", "get_lstar", "hedge_position", "compare", "search_tickers",
         "analyze_portfolio", "hedge_portfolio", "scale_exposure",
         "factor_summary", "stock_exposures", "portfolio_factor_risk")
INSTRUCTIONS = """\
riskstrata answers equity-risk questions from a self-hosted store of two risk models.
Model A (the hierarchical ETF cascade): per stock, hedge ratios on the market ETF (SPY), its
sector ETF and its subsector ETF (L1/L2/L3), the share of risk each explains, and L* (the
hedge depth worth using). Model B (a fundamental factor model such as US21): exposures to
style and industry factors and factor-based portfolio risk. Hedge ratios are dollars of ETF per
$1 long (negative = short); shares of risk are decimals that sum to 1; every answer carries its
model_version and data_date. Unsure of a ticker? search_tickers. How a number is computed:
read the resource riskstrata://methodology."""

# The SDK logs each tool error's message at INFO; a portfolio tool's message can name a holding.
_SDK_TOOL_LOG = "mcp.server.mcpserver.server"


def _as_result(payload: dict[str, Any]) -> CallToolResult:
    """One JSON text block (NaN/inf → null, numpy → numbers) and the same object as structured content."""
    body = dumps_json(payload)
    return CallToolResult(content=[TextContent(type="text", text=body.decode())], structured_content=orjson.loads(body))


def _guarded(tools: Tools, method: Callable[..., dict[str, Any]]) -> Callable[..., CallToolResult]:
    """The tool as the SDK calls it (same signature and docstring): errors become tool errors."""

    @functools.wraps(method)
    def call(**kwargs: Any) -> CallToolResult:
        try:
            return _as_result(method(**kwargs))
        except UnknownTicker as exc:
            raise ToolError(tools.explain_unknown(exc)) from None
        except RiskstrataError as exc:
            raise ToolError(str(exc)) from None
        except ValidationError as exc:  # a value checked inside the tool (e.g. a holding): fields, not values
            fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
            raise ToolError(f"invalid {', '.join(fields) or 'arguments'}: {exc.errors()[0]['msg']}") from None
        except Exception as exc:  # noqa: BLE001 - a bug must not take the server down or leak the arguments
            log_unexpected(exc, {"path": f"mcp:{method.__name__}"})
            raise ToolError(f"unexpected {type(exc).__name__} in {method.__name__} (logged on the server "
                            "without your data)") from None

    return call


def models_listing(state: AppState) -> dict[str, Any]:
    """What is built in the store: Model A's version and span, and each factor-model spec."""
    store = state.store
    version = store.current_version(cascade.MODEL)
    meta = store.model_meta(cascade.MODEL, version) if version else {}
    built = factors.list_models(store)
    return {
        "cascade": {"built": version is not None, "version": version, "start": meta.get("start"),
                    "end": meta.get("end"), "params": meta.get("params")},
        "factor_models": built.astype(object).where(built.notna(), None).to_dict(orient="records"),
    }


def methodology() -> str:
    """The methodology resource: how each field is computed and which identities are checked."""
    return resources.files("riskstrata.mcp").joinpath("methodology.md").read_text(encoding="utf-8")


def hedge_prompt(ticker: str, dollars: str) -> str:
    return (f"I hold ${dollars} of {ticker.upper()}. Using the riskstrata tools: call decompose to see where "
            f"its risk comes from (market, sector, subsector, residual), then hedge_position with "
            f"dollars={dollars} (its recommended level unless I say otherwise). Tell me the ETF trades in "
            "dollars (negative hedge ratio = sell short), what share of the risk they remove, what is left "
            "(the residual is the stock-specific bet I keep), and the model_version and data_date you used.")


def portfolio_prompt(holdings: str) -> str:
    return ("Explain this portfolio's risk with the riskstrata tools. Holdings (ticker and weight, market "
            f"value or shares; negative = short):\n{holdings}\n\nCall analyze_portfolio with them as a list of "
            "{ticker, weight|market_value|shares}. Report how many lines were analysed and why others were "
            "not, the Risk Index (100 = as volatile as SPY), which bets dominate (market, sector, subsector, "
            "residual) and which positions contribute most, then the L3 hedge from hedge_portfolio and, if "
            "the factor model is built, portfolio_factor_risk's style and industry shares. Quote the "
            "model_version and data_date.")


def build_server(state: AppState) -> MCPServer:
    """The MCP server over one worker's state: 12 tools, 2 resources, 2 prompts."""
    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    server = MCPServer(NAME, title="riskstrata risk models", version=__version__, instructions=INSTRUCTIONS,
                       log_level="WARNING")
    # The SDK configures the root logger when built; the host process (uvicorn, the CLI) owns it.
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    logging.getLogger(_SDK_TOOL_LOG).setLevel(logging.WARNING)

    tools = Tools(state)
    read_only = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                                open_world_hint=False)
    for name in TOOLS:
        server.add_tool(_guarded(tools, getattr(tools, name)), name=name, annotations=read_only,
                        structured_output=False)

    server.resource("riskstrata://methodology", name="methodology", title="How riskstrata computes its numbers",
                    mime_type="text/markdown")(methodology)

    @server.resource("riskstrata://models", name="models", title="Built models", mime_type="application/json",
                     description="Model A's published version and date span; each factor-model spec and "
                                 "whether it is built (version, start, end).")
    def models() -> str:
        return dumps_json(models_listing(state)).decode()

    server.prompt(name="hedge_position", title="Hedge this position",
                  description="Decompose one stock's risk and size its ETF hedge.")(hedge_prompt)
    server.prompt(name="explain_portfolio_risk", title="Explain this portfolio's risk",
                  description="Risk Index, where the risk comes from, the hedge, and the factor view.")(portfolio_prompt)
    return server
