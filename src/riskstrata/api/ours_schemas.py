"""The wire shapes of riskstrata's own endpoints (Model B and the portfolio layer).

Request bodies are declared once here so the OpenAPI document describes them; responses are
plain JSON built with :func:`records` / :func:`respond` (dates as ISO strings, NaN as null).
Holdings arrive only in a request body: they become a DataFrame for
:func:`riskstrata.portfolio.holdings.read_holdings` and are never written anywhere.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from riskstrata.api.errors import CleanJSONResponse
from riskstrata.api.wire_schemas import MAX_QUANTITY, IsoDate

MAX_HOLDINGS = 20_000  # lines per request: a large fund's 13F is a few thousand

# Strict types: the schema is the truth (no "1" for 1, no false for 0.0, no 0 for a date).
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


Quantity = Annotated[float, Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY)]


class Holding(BaseModel):
    """One position: an identifier (a ticker or a CUSIP: the schema requires one of them) and a
    quantity (shares, market value in USD, or weight)."""

    model_config = ConfigDict(**_STRICT, json_schema_extra={"examples": [{"ticker": "AAPL", "shares": 100}],
                                                            "anyOf": [{"required": ["ticker"]},
                                                                      {"required": ["cusip"]}]})

    # Strings when present (never null): the schema's "one of ticker or cusip" is then exactly the rule.
    ticker: str = Field(None, min_length=1, max_length=32, description="Ticker, or CASH / a currency code.")
    cusip: str = Field(None, min_length=1, max_length=12, description="CUSIP, when there is no ticker.")
    shares: Quantity | None = Field(None, description="Number of shares; negative = short.")
    market_value: Quantity | None = Field(None, description="Market value in USD; negative = short.")
    weight: Quantity | None = Field(None, description="Decimal weight (0.05 = 5%) or percent; negative = short.")
    currency: str | None = Field(None, max_length=8)

    @model_validator(mode="after")
    def _identified(self) -> Holding:
        if not (self.ticker or self.cusip):
            raise ValueError("each holding needs a ticker or a cusip")
        return self


class HoldingsBody(BaseModel):
    """Holdings in the body; never persisted or logged."""

    model_config = _STRICT

    holdings: list[Holding] = Field(..., min_length=1, max_length=MAX_HOLDINGS)
    date: IsoDate | None = Field(None, description="Analysis date (default: the model's last).")

    def frame(self) -> pd.DataFrame:
        """The holdings as the table read_holdings() takes (columns nobody filled are left out)."""
        rows = [h.model_dump() for h in self.holdings]
        frame = pd.DataFrame.from_records(rows, columns=list(Holding.model_fields))
        return frame.dropna(axis=1, how="all")

    def day(self) -> str | None:
        return None if self.date is None else self.date.isoformat()


class BuildRequest(BaseModel):
    model_config = _STRICT

    start: IsoDate | None = Field(None, description="First date to fit (default: all history).")
    end: IsoDate | None = Field(None, description="Last date to fit (default: all history).")


class WeightedHolding(Holding):
    """A ticker and its weight (what Model B's portfolio risk takes)."""

    model_config = ConfigDict(**_STRICT, json_schema_extra={"examples": [{"ticker": "AAPL", "weight": 0.5}]})

    ticker: str = Field(..., min_length=1, max_length=32)
    weight: Quantity = Field(..., description="Decimal weight; negative = short.")


class FactorRiskRequest(HoldingsBody):
    """Holdings for Model B's portfolio risk as [{ticker, weight}]."""

    holdings: list[WeightedHolding] = Field(..., min_length=1, max_length=MAX_HOLDINGS)


class AnalyzeRequest(HoldingsBody):
    value: float | None = Field(None, gt=0, description="Portfolio value in USD (for weight-only holdings).")


class HedgeRequest(HoldingsBody):
    level: Literal["L1", "L2", "L3", "lstar"] = "L3"
    value: float = Field(1_000_000.0, gt=0, description="Portfolio value in USD; trades are in dollars of it.")


class ScaleRequest(HoldingsBody):
    exposure: str = Field("market", min_length=1, max_length=16,
                          description="'market' or an ETF ticker (sector or subsector) to cut.")
    reduce: float = Field(0.5, gt=0, le=1, description="Fraction of the exposure to remove.")
    value: float = Field(1_000_000.0, gt=0, description="Portfolio value in USD.")


class LookthroughRequest(HoldingsBody):
    benchmark: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9.\-]{0,11}$",
                                  description="Active share against this ETF (with holdings data loaded).")


# ----------------------------------------------------------------------------- responses


def iso(day: object) -> str | None:
    """A date as YYYY-MM-DD (None for a missing one)."""
    return None if day is None or pd.isna(day) else pd.Timestamp(day).strftime("%Y-%m-%d")


def _native(value: Any) -> Any:
    if isinstance(value, (pd.Timestamp, dt.date, np.datetime64)):
        return iso(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def records(frame: pd.DataFrame, index: str | None = None) -> list[dict]:
    """Rows as dicts of JSON scalars; the index becomes the column ``index`` when named."""
    if index is not None:
        frame = frame.rename_axis(index).reset_index()
    cols = list(frame.columns)
    return [{c: _native(v) for c, v in zip(cols, row, strict=True)} for row in frame.itertuples(index=False, name=None)]


def respond(payload: Any, status: int = 200, headers: dict | None = None) -> CleanJSONResponse:
    """JSON with NaN/inf as null (JSON has no NaN)."""
    return CleanJSONResponse(payload, status_code=status, headers=headers)
