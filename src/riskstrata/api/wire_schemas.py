"""Request bodies of the wire-compatible routes, as riskmodels-py 0.5.0 sends them (api-contract §5).

Declared once here so the OpenAPI document describes them, and the document is the truth:
types are strict (``"threshold": false`` or ``"timeSeries": "yes"`` are refused, not coerced to
0.0 or True; a date is a ``YYYY-MM-DD`` string, never a number), the ticker pattern is declared,
and the cost of one request is bounded (names × years). Unknown extra fields are ignored, as the
commercial service does; a body that breaks these rules gets 422 ``{"error","message"}`` (400
"Malformed ticker" for a ticker that is not one).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

MAX_BATCH = 100   # tickers (or positions) per request, as the commercial service allows
MAX_YEARS = 27    # calendar years of history (the newest contract's bound)
# One request's history: names × years (100 names × 10 years, or 37 names × 27 years): about
# 250,000 rows, a second or two of reading; more is a bulk export, not a request.
MAX_NAME_YEARS = 1000
# What clean_ticker accepts once trimmed and upper-cased, declared so the schema says it.
TICKER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._^=-]{0,11}$"
STRICT = ConfigDict(strict=True)


def _date_text(value: Any) -> Any:
    if isinstance(value, (str, date)):
        return value
    raise ValueError("a date is a string YYYY-MM-DD")


def _whole(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number")
        return int(value)
    return value


# A date as the schema says (string, format date): lax parsing of the text, but never a number.
IsoDate = Annotated[date, Field(strict=False), BeforeValidator(_date_text)]
# An integer as JSON Schema means it: 3 and 3.0, never "3" or true.
WholeInt = Annotated[int, BeforeValidator(_whole)]
MAX_QUANTITY = 1e15  # riskstrata.portfolio.holdings.MAX_QUANTITY: beyond it sums of positions overflow
Ticker = Annotated[str, Field(min_length=1, max_length=12, pattern=TICKER_PATTERN, examples=["NVDA"])]


def check_cost(names: int, years: int, what: str = "tickers") -> None:
    """names × years ≤ MAX_NAME_YEARS, else a ValueError (422) saying how to split the request."""
    if names * years > MAX_NAME_YEARS:
        raise ValueError(f"{names} {what} × {years} years is over this server's {MAX_NAME_YEARS} name-years per "
                         "request: ask for fewer years or split the names")

Format = Literal["json", "parquet", "csv"]
BatchMetric = Literal["returns", "l3_decomposition", "hedge_ratios", "full_metrics"]
Segment = Literal["retail", "family_office", "ls_equity", "stat_arb"]


class DecomposeRequest(BaseModel):
    """POST /decompose: one ticker, optionally pinned to a date (default: the model's last)."""

    model_config = STRICT

    ticker: Ticker
    as_of: IsoDate | None = Field(default=None, description="YYYY-MM-DD; the latest row on or before it")


class BatchAnalyzeRequest(BaseModel):
    """POST /batch/analyze: metric blocks for up to 100 tickers (tickers × years ≤ 1,000)."""

    model_config = STRICT

    tickers: list[str] = Field(min_length=1, max_length=MAX_BATCH, examples=[["NVDA", "AAPL"]])
    metrics: list[BatchMetric] = Field(default=["full_metrics", "hedge_ratios"], min_length=1)
    years: WholeInt = Field(default=1, ge=1, le=MAX_YEARS, description="calendar years of the returns / l3 blocks")
    format: Format = "json"

    @model_validator(mode="after")
    def _cost(self) -> BatchAnalyzeRequest:
        if "returns" in self.metrics or "l3_decomposition" in self.metrics or self.format != "json":
            check_cost(len(set(self.tickers)), self.years)
        return self


class BatchLstarRequest(BaseModel):
    """POST /batch/lstar: the L* series of up to 100 tickers.

    Leave ``threshold`` out for the level the build published; any value (0.01 included)
    recomputes the rule with that θ. Tickers × years ≤ 1,000.
    """

    model_config = STRICT

    tickers: list[str] = Field(min_length=1, max_length=MAX_BATCH)
    market_factor_etf: str | None = None
    years: WholeInt = Field(default=1, ge=1, le=MAX_YEARS)
    threshold: float | None = Field(default=None, ge=0.0, le=0.5)
    format: Format = "json"

    @model_validator(mode="after")
    def _cost(self) -> BatchLstarRequest:
        check_cost(len(set(self.tickers)), self.years)
        return self


class Position(BaseModel):
    """One holding: a weight or a dollar notional (only the ratios between positions matter)."""

    model_config = STRICT

    ticker: str = Field(min_length=1, max_length=12)
    weight: float = Field(gt=0, le=MAX_QUANTITY, allow_inf_nan=False)


class RiskIndexRequest(BaseModel):
    """POST /portfolio/risk-index. ``timeSeries`` adds the daily weighted L3 ER history."""

    model_config = ConfigDict(populate_by_name=True, strict=True)

    positions: list[Position] = Field(default_factory=list, max_length=MAX_BATCH)
    time_series: bool = Field(default=False, alias="timeSeries")
    years: WholeInt = Field(default=1, ge=1, le=MAX_YEARS)

    @model_validator(mode="after")
    def _cost(self) -> RiskIndexRequest:
        if self.time_series:
            check_cost(len({p.ticker for p in self.positions}), self.years, "positions")
        return self
