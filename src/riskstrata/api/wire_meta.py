"""Lineage on the wire: the ``_metadata`` block, the ``X-*`` headers, and JSON/table responses.

riskmodels-py reads ``X-Risk-Model-Version``, ``X-Data-As-Of``, ``X-Factor-Set-Id``,
``X-Universe-Size`` (digits only), ``X-Request-ID`` and ``X-API-Cost-USD``, then lets
``body["_metadata"]`` override them; ``universe_size`` must be an integer or the client raises
(api-contract §2.3, §3). Parquet/CSV bodies carry the headers only.

Every JSON body is written by :func:`riskstrata.jsonsafe.dumps_json` (the app's
``CleanJSONResponse``): NaN, ±inf, NaT → null; numpy scalars → numbers; timestamps → ISO dates.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from typing import Any

import pandas as pd
from fastapi import Request
from fastapi.responses import Response

from riskstrata.api.errors import CleanJSONResponse
from riskstrata.api.published import Published

UNIVERSE_NAME = "US_EQUITY"
DATA_SOURCE = "riskstrata-store"
MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv; charset=utf-8"}


@dataclass(frozen=True)
class Lineage:
    """Which model answered: the cascade version, its last date, its factor set and universe."""

    model_version: str
    data_as_of: str        # YYYY-MM-DD, the model's last date
    factor_set_id: str     # e.g. "SPY_cascade_w252"
    universe_size: int     # stocks modelled on data_as_of
    market_etf: str
    factors: tuple[str, ...]  # the market ETF and the sector ETFs in use
    request_id: str

    def metadata(self, factors: list[str | None] | None = None, **extra: Any) -> dict:
        """The ``_metadata`` block; ``factors`` overrides the default list (None entries dropped)."""
        chosen = list(dict.fromkeys(f for f in factors if f)) if factors is not None else list(self.factors)
        return {"model_version": self.model_version, "data_as_of": self.data_as_of,
                "factor_set_id": self.factor_set_id, "universe_size": int(self.universe_size),
                "factors": chosen, **extra}

    def headers(self) -> dict[str, str]:
        return {"X-Risk-Model-Version": self.model_version, "X-Data-As-Of": self.data_as_of,
                "X-Factor-Set-Id": self.factor_set_id, "X-Universe-Size": str(int(self.universe_size)),
                "X-Request-ID": self.request_id, "X-API-Cost-USD": "0"}

    def agent(self) -> dict:
        """The ``_agent`` block of batch and portfolio bodies (nothing is billed locally)."""
        return {"cost_usd": 0.0, "request_id": self.request_id}


def request_id(request: Request) -> str:
    """The id another layer (e.g. a middleware) already gave this request, else a new one."""
    given = getattr(request.state, "request_id", None)
    return str(given) if given else f"req_{uuid.uuid4().hex[:20]}"


def lineage(pub: Published, request: Request) -> Lineage:
    """Lineage of one published cascade version, for one request."""
    uni = pub.universe
    return Lineage(model_version=str(pub.meta.get("version") or pub.version), data_as_of=pub.end,
                   factor_set_id=pub.factor_set_id, universe_size=uni.stock_count, market_etf=pub.market_etf,
                   factors=(pub.market_etf, *uni.sector_etfs), request_id=request_id(request))


def json_response(body: dict, lin: Lineage | None = None, status: int = 200) -> Response:
    """200 (or ``status``) with a JSON object body and the lineage headers."""
    return CleanJSONResponse(body, status_code=status, headers=lin.headers() if lin is not None else None)


def table_response(frame: pd.DataFrame, fmt: str, lin: Lineage) -> Response:
    """A flat table as Parquet or CSV bytes (nulls stay null; no index column)."""
    frame = frame.reset_index(drop=True)
    if fmt == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        content = buffer.getvalue()
    else:
        content = frame.to_csv(index=False).encode("utf-8")
    return Response(content, media_type=MEDIA_TYPES[fmt], headers=lin.headers())
