"""``riskstrata mcp``: the store as an MCP server on stdio, for a desktop agent's config.

stdout carries the protocol, so nothing else may be printed there: warnings go to stderr.
"""

from __future__ import annotations

import logging

import typer

from riskstrata.cli.common import StoreOpt, err, open_store


def register(app: typer.Typer) -> None:
    """Attach ``mcp`` to the main app."""
    app.command("mcp")(mcp)


def mcp(store: StoreOpt = None) -> None:
    """Serve the store to an AI agent over MCP on stdio (tools: metrics, hedges, portfolios, factors)."""
    from riskstrata.api.state import AppState
    from riskstrata.mcp.server import build_server

    opened = open_store(store, create=False)  # a typo in --store should not serve an empty new store
    logging.basicConfig(level=logging.WARNING, format="riskstrata mcp: %(levelname)s %(message)s")
    if opened.current_version("cascade") is None:
        err.print(f"riskstrata mcp: warning: no cascade model in {opened.root}; tools will answer "
                  "'not built' until `riskstrata build cascade` runs", highlight=False)
    build_server(AppState(opened)).run("stdio")
