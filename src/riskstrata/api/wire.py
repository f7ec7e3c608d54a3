"""Wire-compatible routes for the riskmodels-py client (../shared/api-contract.md §5)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()


@router.get("/health")
def health() -> dict:
    return {"status": "ok"}
