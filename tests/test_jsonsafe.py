"""riskstrata.jsonsafe: the one JSON writer of the CLI and the API never writes NaN or Infinity."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd

from riskstrata.jsonsafe import dumps_json


def _strict(raw: bytes):
    def refuse(token: str):
        raise AssertionError(f"{token} written")
    return json.loads(raw, parse_constant=refuse)


def test_non_finite_numbers_become_null_wherever_they_are():
    value = {"nan": float("nan"), "inf": float("inf"), "np": np.float64("-inf"), "f32": np.float32("nan"),
             "array": np.array([1.5, np.nan, np.inf]), "nested": [{"x": float("nan")}, (float("inf"), 2.0)]}
    assert _strict(dumps_json(value)) == {"nan": None, "inf": None, "np": None, "f32": None,
                                          "array": [1.5, None, None], "nested": [{"x": None}, [None, 2.0]]}


def test_numbers_round_trip_exactly():
    values = [0.1 + 0.2, 1e-300, -2.5e17, 123456789.123456789, np.float64(1 / 3), np.int64(2**62)]
    assert _strict(dumps_json(values)) == [float(v) if isinstance(v, (float, np.floating)) else int(v) for v in values]


def test_dates_pandas_nulls_and_other_objects():
    value = {"day": dt.date(2024, 1, 2), "midnight": pd.Timestamp("2024-01-02"),
             "intraday": pd.Timestamp("2024-01-02 15:30"), "nat": pd.NaT, "na": pd.NA,
             "objects": np.array(["a", None], dtype=object), "set": {"b", "a"}, "other": Exception("why")}
    assert _strict(dumps_json(value)) == {"day": "2024-01-02", "midnight": "2024-01-02",
                                          "intraday": "2024-01-02T15:30:00", "nat": None, "na": None,
                                          "objects": ["a", None], "set": ["a", "b"], "other": "why"}


def test_keys_of_any_type_are_written_as_text():
    value = {np.int64(3): "numpy", 4: "int", ("a", 1): "tuple", dt.date(2024, 1, 2): "date",
             "inner": {np.float64(0.5): float("nan")}}
    assert _strict(dumps_json(value)) == {"3": "numpy", "4": "int", "('a', 1)": "tuple", "2024-01-02": "date",
                                          "inner": {"0.5": None}}


def test_indent_for_people():
    assert dumps_json({"a": [1]}, indent=True).decode() == '{\n  "a": [\n    1\n  ]\n}'
