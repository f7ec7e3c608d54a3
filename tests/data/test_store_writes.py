"""How the store writes parts and prunes: the same values as pandas' own conversion, and no more work.

- A frame of plain numpy columns goes to Arrow column by column from numpy (no per-column pandas
  conversion); its values must be exactly those of ``pa.Table.from_pandas`` — NaN and NaT as
  nulls, so SQL over a part sees NULL where pandas had NaN.
- A part of a few rows is written uncompressed; it reads back the same.
- A prune with nothing to remove reads no version's meta.json.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from riskstrata.data.store import Store, _arrow_table


def _wide(rows: int) -> pd.DataFrame:
    """A daily factor_cov-like part: a date column and many float columns, some NaN."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=(rows, 40))
    values[::3, 5] = np.nan
    frame = pd.DataFrame(values, columns=[f"F{i}|F{j}" for i in range(8) for j in range(5)])
    frame.insert(0, "date", pd.date_range("2026-01-02", periods=rows, freq="B"))
    return frame


def _mixed() -> pd.DataFrame:
    return pd.DataFrame({"date": pd.to_datetime(["2026-01-02", None, "2026-01-06"]),
                         "x": [1.5, np.nan, -2.0], "n": np.array([1, 2, 3], dtype=np.int64),
                         "flag": [True, False, True], "label": np.array(["a", None, "c"], dtype=object),
                         "ticker": ["AAA", "BBB", None]})


@pytest.mark.parametrize("frame", [_wide(1), _wide(300), _mixed(), _mixed().iloc[:, [1, 2, 3]]],
                         ids=["wide-one-row", "wide-300-rows", "mixed-dtypes", "numeric-only"])
def test_arrow_table_holds_exactly_what_from_pandas_does(frame: pd.DataFrame) -> None:
    expected = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    got = _arrow_table(frame).replace_schema_metadata(None)
    assert got.schema == expected.schema, f"schema differs:\n{got.schema}\nvs\n{expected.schema}"
    assert got.equals(expected), "the Arrow values differ from pandas' own conversion"


def test_nan_is_null_in_sql_and_nan_again_in_pandas(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    frame = _wide(10)
    with store.begin_version("m") as writer:
        writer.write_part(frame)
        writer.commit()
    nulls = store.query('SELECT count(*) - count("F1|F0") AS n FROM model_m')["n"].iloc[0]
    assert nulls == frame["F1|F0"].isna().sum(), "a NaN of the frame must be a NULL in SQL, as before"
    back = store.read_model("m").sort_values("date").reset_index(drop=True)
    pd.testing.assert_frame_equal(back[frame.columns[1:]], frame[frame.columns[1:]])
    assert (pd.DatetimeIndex(back["date"]) == pd.DatetimeIndex(frame["date"])).all()


def test_a_part_of_a_few_rows_is_uncompressed_and_reads_back_the_same(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    with store.begin_version("m") as writer:
        writer.write_part(_wide(1), "small")
        writer.write_part(_wide(300), "large")
        writer.commit()
    codec = {path.name: pq.ParquetFile(path).metadata.row_group(0).column(1).compression
             for path in store.model_files("m")}
    assert codec == {"part-small.parquet": "UNCOMPRESSED", "part-large.parquet": "ZSTD"}, codec
    assert len(store.read_model("m")) == 301


def test_a_prune_with_nothing_to_remove_reads_no_meta(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "store", keep_versions=3)
    for _ in range(2):
        with store.begin_version("m") as writer:
            writer.write_part(_wide(1))
            writer.commit(prune=False)

    def no_reads() -> set[str]:
        raise AssertionError("prune read every meta.json with nothing to prune")

    monkeypatch.setattr(store, "pinned", no_reads)
    assert store.prune_all() == {}
    assert store.prune("m") == []


def test_a_prune_with_candidates_still_keeps_pinned_versions(tmp_path: Path) -> None:
    store = Store(tmp_path / "store", keep_versions=1)
    with store.begin_version("companion") as writer:
        writer.write_part(_wide(1))
        pinned = writer.commit(prune=False)
    with store.begin_version("companion") as writer:
        writer.write_part(_wide(1))
        writer.commit(prune=False)
    with store.begin_version("model") as writer:
        writer.write_part(_wide(1))
        writer.commit({"companions": {"companion": pinned}}, prune=False)
    store.prune_all()
    assert pinned in store.versions("companion"), "a version another model's meta.json names must stay"
