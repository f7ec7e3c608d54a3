"""JSON for every face (CLI, REST): JSON has no NaN or inf, so they become null.

One encoder, orjson: it writes NaN/±inf as null, numpy scalars and numeric arrays as numbers,
dates as ISO strings, and is several times faster than the standard library on the large
bodies the API sends (a 100-ticker batch is ~250 kB).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import orjson
import pandas as pd

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _fallback(value: Any) -> Any:
    """What orjson cannot write itself: pandas timestamps and nulls, object arrays, sets, others as text."""
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat() if value == value.normalize() else value.isoformat()
    if isinstance(value, np.ndarray):  # object or string dtype: element by element
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return str(value)


def _text_keys(value: Any) -> Any:
    """A copy whose dict keys are all text (numpy scalars as their value, anything else as str)."""
    if isinstance(value, dict):
        return {(k.item() if isinstance(k, np.generic) else k) if isinstance(k, (str, int, float, bool, np.generic))
                else str(k): _text_keys(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_text_keys(v) for v in value]
    return value


def dumps_json(value: Any, indent: bool = False) -> bytes:
    """UTF-8 JSON of ``value`` with NaN/inf as null (never an invalid JSON number)."""
    option = _OPTIONS | (orjson.OPT_INDENT_2 if indent else 0)
    try:
        return orjson.dumps(value, default=_fallback, option=option)
    except orjson.JSONEncodeError:  # a dict key orjson cannot write (a numpy integer, a tuple): as text
        return orjson.dumps(_text_keys(value), default=_fallback, option=option)
