"""JSON-safe values for every face: JSON has no NaN or inf, so they become null."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def clean_json(value: Any) -> Any:
    """NaN/inf → None, numpy scalars → Python, recursively (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        return clean_json(value.item())
    if isinstance(value, np.ndarray):
        return clean_json(value.tolist())
    return value
