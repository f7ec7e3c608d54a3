"""Request dependencies shared by the routers."""

from __future__ import annotations

from fastapi import Request

from riskstrata.api.state import AppState


def get_state(request: Request) -> AppState:
    return request.app.state.riskstrata
