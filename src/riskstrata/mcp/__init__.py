"""The MCP face: riskstrata's services as tools for AI agents (Model Context Protocol).

``riskstrata mcp`` serves a store on stdio (for a desktop agent); ``riskstrata serve`` mounts the
same server at ``/mcp`` (streamable HTTP) behind the API keys and rate limits of ``/api``.
This package is ``riskstrata.mcp``; the SDK it uses is the top-level ``mcp`` package (absolute
imports keep the two apart).
"""
