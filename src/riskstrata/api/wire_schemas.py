"""Request bodies of the wire-compatible routes, as riskmodels-py 0.5.0 sends them (api-contract §5).

Declared once here so the OpenAPI document describes them. Unknown extra fields are ignored,
as the commercial service does; a body that breaks these rules gets 422 ``{"error","message"}``.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_BATCH = 100   # tickers (or positions) per request, as the commercial service allows
MAX_YEARS = 27    # calendar years of history (the newest contract's bound)

Format = Literal["json", "parquet", "csv"]
BatchMetric = Literal["returns", "l3_decomposition", "hedge_ratios", "full_metrics"]
Segment = Literal["retail", "family_office", "ls_equity", "stat_arb"]


class DecomposeRequest(BaseModel):
    """POST /decompose: one ticker, optionally pinned to a date (default: the model's last)."""

    ticker: str = Field(min_length=1, max_length=12, examples=["NVDA"])
    as_of: date | None = Field(default=None, description="YYYY-MM-DD; the latest row on or before it")


class BatchAnalyzeRequest(BaseModel):
    """POST /batch/analyze: metric blocks for up to 100 tickers."""

    tickers: list[str] = Field(min_length=1, max_length=MAX_BATCH, examples=[["NVDA", "AAPL"]])
    metrics: list[BatchMetric] = Field(default=["full_metrics", "hedge_ratios"], min_length=1)
    years: int = Field(default=1, ge=1, le=MAX_YEARS, description="calendar years of the returns / l3 blocks")
    format: Format = "json"


class BatchLstarRequest(BaseModel):
    """POST /batch/lstar: the L* series of up to 100 tickers.

    Leave ``threshold`` out for the level the build published; any value (0.01 included)
    recomputes the rule with that θ.
    """

    tickers: list[str] = Field(min_length=1, max_length=MAX_BATCH)
    market_factor_etf: str | None = None
    years: int = Field(default=1, ge=1, le=MAX_YEARS)
    threshold: float | None = Field(default=None, ge=0.0, le=0.5)
    format: Format = "json"


class Position(BaseModel):
    """One holding: a weight or a dollar notional (only the ratios between positions matter)."""

    ticker: str = Field(min_length=1, max_length=12)
    weight: float = Field(gt=0, allow_inf_nan=False)


class RiskIndexRequest(BaseModel):
    """POST /portfolio/risk-index. ``timeSeries`` adds the daily weighted L3 ER history."""

    model_config = ConfigDict(populate_by_name=True)

    positions: list[Position] = Field(default_factory=list, max_length=MAX_BATCH)
    time_series: bool = Field(default=False, alias="timeSeries")
    years: int = Field(default=1, ge=1, le=MAX_YEARS)
