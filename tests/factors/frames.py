"""Comparing two stored parts of a built model, column by column."""

from __future__ import annotations

import numpy as np
import pandas as pd


def assert_same_frames(x: pd.DataFrame, y: pd.DataFrame, what: str, tol: float = 1e-12,
                       relative_above_one: bool = False) -> None:
    """Same columns and rows in the same order; floats within ``tol`` (NaN where NaN), the rest
    exactly. ``relative_above_one``: the float error is divided by max(|y|, 1)."""
    assert list(x.columns) == list(y.columns) and len(x) == len(y), what
    for col in y.columns:
        a, b = x[col], y[col]
        if pd.api.types.is_float_dtype(b):
            a, b = a.to_numpy(np.float64), b.to_numpy(np.float64)
            assert (np.isnan(a) == np.isnan(b)).all(), f"{what}.{col}: NaN pattern"
            scale = np.maximum(np.abs(b), 1.0) if relative_above_one else 1.0
            assert np.nanmax(np.abs(a - b) / scale, initial=0.0) <= tol, f"{what}.{col}"
        else:
            assert a.astype(str).tolist() == b.astype(str).tolist(), f"{what}.{col}"
