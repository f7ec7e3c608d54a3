"""Lineage on the wire: the ``_metadata`` block, the ``X-*`` headers, and JSON/table responses.

riskmodels-py reads ``X-Risk-Model-Version``, ``X-Data-As-Of``, ``X-Factor-Set-Id``,
``X-Universe-Size`` (digits only), ``X-Request-ID`` and ``X-API-Cost-USD``, then lets
``body["_metadata"]`` override them; ``universe_size`` must be an integer or the client raises
(api-contract §2.3, §3). Parquet/CSV bodies carry the headers only.

Every JSON body goes through :func:`jsonable` (NaN, ±inf, NaT → null; numpy scalars → numbers;
timestamps → ISO dates) and then the app's ``CleanJSONResponse``, which refuses anything
non-finite that slipped through.
"""

from __future__ import annotations

import io
import math
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
from fastapi import Request
from fastapi.responses import Response

from riskstrata.api.errors import CleanJSONResponse
from riskstrata.api.state import AppState
from riskstrata.api.wire_lookup import universe

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


def lineage(state: AppState, request: Request) -> Lineage:
    """Lineage of the current cascade version (raises ModelNotBuilt when none was built)."""
    meta = state.meta()
    uni = universe(state)
    params = meta["params"]
    factor_set = f"{params['market_etf']}_cascade_w{params['window']}"
    if params.get("halflife"):
        factor_set += f"_hl{params['halflife']:g}"
    return Lineage(model_version=str(meta.get("version") or state.version), data_as_of=str(meta["end"]),
                   factor_set_id=factor_set, universe_size=uni.stock_count, market_etf=str(params["market_etf"]),
                   factors=(str(params["market_etf"]), *uni.sector_etfs), request_id=request_id(request))


def jsonable(value: Any) -> Any:
    """JSON-safe copy: NaN/inf → None, numpy scalars → Python, dates → ISO, tuples → lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat() if value == value.normalize() else value.isoformat()
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def json_response(body: dict, lin: Lineage | None = None, status: int = 200) -> Response:
    """200 (or ``status``) with a JSON object body and the lineage headers."""
    return CleanJSONResponse(jsonable(body), status_code=status, headers=lin.headers() if lin is not None else None)


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
