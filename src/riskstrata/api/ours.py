"""riskstrata's own endpoints, beside the wire-compatible ones: Model B and the portfolio layer."""

from __future__ import annotations

from fastapi import APIRouter

from riskstrata.api import ours_factors, ours_portfolio, ours_update

router = APIRouter()
router.include_router(ours_factors.router)
router.include_router(ours_portfolio.router)
router.include_router(ours_update.router)
