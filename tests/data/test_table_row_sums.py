"""The per-date row sums a table's footer keeps (data/row_sums.py) are the SQL scan's, bit for bit.

Model B's input fingerprint is, per dated table, (rows, Σ DuckDB ``hash(columns)`` as HUGEINT)
over the rows dated in a span. A fingerprint recorded by a build must still match after the store
starts keeping the sums in the footer, so: footer sums == scan sums over random spans (synthetic
tables with nulls, NaN, every column type the store writes, and the real store where present);
a store whose tables were written without them falls back to the scan and fingerprints alike; a
model built on such a store and updated after its tables were rewritten with them updates (its
recorded fingerprint matches) to the digest a scan gives; a footer that does not match its file
or the declaration gives no sums.
"""

from __future__ import annotations

import dataclasses
import shutil

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from riskstrata.data.row_sums import DIGEST_BY, DigestBy, RowSums, _read_types, row_sums_of
from riskstrata.data.store import Store, _arrow_table, write_parquet_to
from riskstrata.data.synthetic import synthetic_market
from riskstrata.services import factors as svc
from riskstrata.services import factors_state as fs
from riskstrata.services.demo import load_synthetic_into_store

START = pd.Timestamp("2020-01-01")


def scan(store: Store, table: str, after: object | None, end: object) -> tuple[int, int]:
    """(rows, Σ row hashes) of ``table``'s rows dated in (after, end], by the fingerprint's SQL."""
    by = DIGEST_BY[table]
    listed = ", ".join(f'"{c}"' for c in by.resolve(store.table_columns(table)))
    where, params = f'"{by.date}" <= ?', [pd.Timestamp(end).to_pydatetime()]
    if after is not None:
        where += f' AND "{by.date}" > ?'
        params.append(pd.Timestamp(after).to_pydatetime())
    row = store.query(f'SELECT count(*) AS n, coalesce(sum(hash({listed})::HUGEINT), 0) AS h FROM "{table}" '
                      f"WHERE {where}", params, models=False).iloc[0]
    return int(row["n"]), int(row["h"])


def random_spans(days: pd.DatetimeIndex, n: int, seed: int) -> list[tuple[pd.Timestamp | None, pd.Timestamp]]:
    """(after, end) pairs: on priced days, between them (weekends), before the first and after
    the last, open below (None), empty (after ≥ end)."""
    rng = np.random.default_rng(seed)
    lo, hi = days[0] - pd.Timedelta(days=10), days[-1] + pd.Timedelta(days=10)
    span = (hi - lo).days

    def when() -> pd.Timestamp:
        return days[rng.integers(len(days))] if rng.random() < 0.6 else lo + pd.Timedelta(days=int(rng.integers(span)))

    spans = [(None, days[-1]), (None, hi), (None, lo), (days[0], days[-1]), (days[-1], days[-1])]
    for _ in range(n):
        a, b = when(), when()
        spans.append((None if rng.random() < 0.2 else min(a, b), max(a, b)))
    spans.append((days[len(days) // 2], days[len(days) // 3]))  # after > end: nothing
    return spans


def price_rows(n_secs: int = 40, n_days: int = 300, seed: int = 3) -> pd.DataFrame:
    """A prices table as ingest writes it: weekdays, missing returns and volumes, a -0.0, an inf."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(START, periods=n_days)
    df = pd.DataFrame({"security_id": np.repeat([f"S{i:03d}" for i in range(n_secs)], n_days),
                       "ticker": np.repeat([f"T{i}" for i in range(n_secs)], n_days),
                       "date": np.tile(days.to_numpy("datetime64[ns]"), n_secs)})
    df = df.sample(frac=0.9, random_state=seed).sort_values(["date", "security_id"]).reset_index(drop=True)
    n = len(df)
    df["adj_close"] = rng.lognormal(3, 0.2, n)
    df["ret"] = np.where(rng.random(n) < 0.05, np.nan, rng.normal(0, 0.02, n))
    df["volume"] = np.where(rng.random(n) < 0.05, np.nan, rng.integers(0, 10**7, n).astype(float))
    df.loc[3, "ret"], df.loc[4, "volume"] = -0.0, np.inf
    return df.astype({"security_id": "str", "ticker": "str", "date": "datetime64[ns]"})


def fundamentals_rows(seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 900
    return pd.DataFrame({"security_id": [f"S{i % 40:03d}" for i in range(n)],
                         "available_date": (START + pd.to_timedelta(rng.integers(0, 420, n), "D")).astype("datetime64[ns]"),
                         "market_cap": np.where(rng.random(n) < 0.1, np.nan, rng.lognormal(22, 1, n)),
                         "eps": rng.normal(2, 1, n), "price_date": pd.Timestamp("2019-12-31")}).astype({"security_id": "str"})


def without_sums(store: Store, table: str) -> None:
    """Rewrite ``table`` as a store did before the sums existed (same rows, no sums in the footer)."""
    df = store.read_table(table)
    with open(store.table_path(table), "wb") as fh:
        write_parquet_to(df, fh)
    assert store.table_row_sums(table) is None


@pytest.fixture
def dated_store(store: Store) -> Store:
    store.write_table("prices", price_rows())
    store.write_table("fundamentals", fundamentals_rows())
    return store


# ---------------------------------------------------------------------- the sums are the scan's


@pytest.mark.parametrize("table", sorted(DIGEST_BY))
def test_footer_sums_equal_the_scan_over_random_spans(dated_store: Store, table: str) -> None:
    kept = dated_store.table_row_sums(table)
    assert kept is not None, f"{table} was written without its row sums"
    days = pd.DatetimeIndex(dated_store.read_table(table, columns=[DIGEST_BY[table].date]).iloc[:, 0].unique()).sort_values()
    for after, end in random_spans(days, 60, seed=len(table)):
        assert kept.span(after, end) == scan(dated_store, table, after, end), f"{table} over ({after}, {end}]"


def test_the_fingerprint_reads_no_dated_table_when_its_footer_keeps_the_sums(dated_store: Store,
                                                                               monkeypatch) -> None:
    asked: list[str] = []
    query = Store.query

    def spy(self, sql, params=None, **kw):
        asked.append(sql)
        return query(self, sql, params, **kw)

    monkeypatch.setattr(Store, "query", spy)
    end, new_end = START + pd.Timedelta(days=200), START + pd.Timedelta(days=260)
    sums = fs._sums(dated_store, None, [end, new_end])
    assert asked == []  # nothing but the dated tables asked for: no query at all
    for table in DIGEST_BY:
        assert sums[table, 0] == scan(dated_store, table, None, end)
        assert sums[table, 1] == scan(dated_store, table, end, new_end)


def test_a_store_written_before_the_sums_fingerprints_as_one_written_after(dated_store: Store, tmp_path) -> None:
    old = Store(shutil.copytree(dated_store.root, tmp_path / "old"))
    for table in DIGEST_BY:
        without_sums(old, table)
    names = pd.Index([f"S{i:03d}" for i in range(0, 40, 3)])
    end, new_end = START + pd.Timedelta(days=150), START + pd.Timedelta(days=300)
    assert fs.input_digest(old, end, names) == fs.input_digest(dated_store, end, names)
    now_old, rows_old = fs.input_digest_and_new_rows(old, end, new_end, names)
    now_new, rows_new = fs.input_digest_and_new_rows(dated_store, end, new_end, names)
    assert (now_old, rows_old) == (now_new, rows_new)
    # Recorded by the old store, extended on the new one (and the other way round): the same.
    assert fs.extended_digest(dated_store, now_old, end, new_end, names) == \
        fs.extended_digest(old, now_new, end, new_end, names) == fs.input_digest(old, new_end, names)


# ---------------------------------------------------------------------- types


def every_type() -> pd.DataFrame:
    """One column of each kind a table of the store holds, with missing values in each."""
    n = 50
    rng = np.random.default_rng(7)
    days = pd.Series(pd.bdate_range(START, periods=n)).to_numpy("datetime64[ns]")
    out = pd.DataFrame({
        "when_ns": days, "when_us": days.astype("datetime64[us]"),
        "day": [d.date() for d in pd.DatetimeIndex(days)],
        "label": [None if i % 7 == 0 else f"L{i % 5}" for i in range(n)],
        "label_str": pd.Series([f"x{i % 3}" for i in range(n)], dtype="str"),
        "category": pd.Categorical([f"c{i % 4}" for i in range(n)]),
        "count": np.arange(n, dtype=np.int64), "maybe_count": pd.array([None if i % 6 == 0 else i for i in range(n)],
                                                                        dtype="Int64"),
        "flag": rng.random(n) < 0.5, "value": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
    })
    out.loc[2, "when_ns"], out.loc[3, "value"] = pd.NaT, -0.0
    return out


@pytest.mark.parametrize("date", ["when_ns", "when_us", "day"])
@pytest.mark.parametrize("rows", [50, 10])  # 10: below the compression threshold (uncompressed file)
def test_sums_hash_the_types_a_read_of_the_file_gives(tmp_path, date: str, rows: int) -> None:
    df = every_type().iloc[:rows]
    by = DigestBy(date)
    path = tmp_path / "t.parquet"
    with open(path, "wb") as fh:
        write_parquet_to(df, fh, by)
    con = duckdb.connect()
    read = {r[0]: r[1] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()}
    assert _read_types(_arrow_table(df).schema.remove_metadata().serialize().to_pybytes()) == read
    kept = RowSums.from_footer(pq.read_metadata(path), by)
    assert kept is not None and kept.rows == rows
    listed = ", ".join(f'"{c}"' for c in df.columns)
    for after, end in [(None, START + pd.Timedelta(days=400)), (None, START + pd.Timedelta(days=20)),
                       (START + pd.Timedelta(days=3), START + pd.Timedelta(days=30)), (None, START - pd.Timedelta(days=1))]:
        where, params = f'"{date}" <= ?', [end.to_pydatetime()]
        if after is not None:
            where, params = where + f' AND "{date}" > ?', [*params, after.to_pydatetime()]
        n, h = con.execute(f"SELECT count(*), coalesce(sum(hash({listed})::HUGEINT), 0) FROM read_parquet(?) "
                           f"WHERE {where}", [str(path), *params]).fetchone()
        assert kept.span(after, end) == (int(n), int(h)), f"by {date} over ({after}, {end}]"
    undated = int(df[date].isna().sum())
    assert kept.undated[0] == undated and int(kept.counts.sum()) + undated == rows


# ---------------------------------------------------------------------- guards


def rewrite_with(store: Store, table: str, sums: RowSums) -> None:
    """Write ``table``'s rows again with the given footer sums (a footer that lies)."""
    frame = _arrow_table(store.read_table(table))
    with pq.ParquetWriter(store.table_path(table), frame.schema, compression="zstd") as writer:
        writer.write_table(frame)
        writer.add_key_value_metadata(sums.to_metadata())


def test_a_footer_whose_rows_are_not_the_files_gives_no_sums_and_the_fingerprint_scans(dated_store: Store) -> None:
    kept = dated_store.table_row_sums("prices")
    end = START + pd.Timedelta(days=100)
    truth = scan(dated_store, "prices", None, end)
    lie = dataclasses.replace(kept, rows=kept.rows + 1, counts=kept.counts + (np.arange(len(kept.counts)) == 0))
    rewrite_with(dated_store, "prices", lie)
    assert dated_store.table_row_sums("prices") is None
    assert fs._sums(dated_store, None, [end])["prices", 0] == truth


def test_sums_kept_over_other_columns_or_another_date_are_not_used(dated_store: Store) -> None:
    frame = _arrow_table(dated_store.read_table("prices"))
    for other in (DigestBy("date", ("security_id", "date", "ret")), DigestBy("date", ("security_id", "ret", "date", "volume")),
                  DigestBy("date")):
        rewrite_with(dated_store, "prices", row_sums_of(frame, other))
        assert dated_store.table_row_sums("prices") is None, other


def test_sums_hashed_by_another_duckdb_are_not_used(dated_store: Store, monkeypatch) -> None:
    assert dated_store.table_row_sums("prices") is not None
    monkeypatch.setattr(duckdb, "__version__", "0.0.0-other")
    assert dated_store.table_row_sums("prices") is None


def test_tables_not_declared_keep_no_sums(store: Store) -> None:
    store.write_table("classifications", pd.DataFrame({"security_id": ["A"], "valid_from": [START]}))
    assert store.table_row_sums("classifications") is None
    assert not any(k.startswith(b"riskstrata") for k in pq.read_metadata(store.table_path("classifications")).metadata)
    assert store.table_row_sums("prices") is None  # absent


def test_an_fsspec_store_keeps_the_same_sums(dated_store: Store) -> None:
    remote = Store(f"memory://row-sums-{id(dated_store)}")
    try:
        for table in DIGEST_BY:
            remote.write_table(table, dated_store.read_table(table))
            a, b = remote.table_row_sums(table), dated_store.table_row_sums(table)
            assert a is not None and b is not None
            assert (a.rows, a.columns, a.undated) == (b.rows, b.columns, b.undated)
            for field in ("days", "counts", "lo", "hi"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        end = START + pd.Timedelta(days=222)
        assert fs._sums(remote, None, [end]) == fs._sums(dated_store, None, [end])
    finally:
        remote.fs.rm(str(remote.path()), recursive=True)


# ---------------------------------------------------------------------- the real store


@pytest.mark.realdata
def test_footer_sums_equal_the_scan_on_the_real_store(real_store: Store) -> None:
    kept = real_store.table_row_sums("prices")
    assert kept is not None
    days = pd.DatetimeIndex(np.unique(kept.days))
    assert kept.rows == pq.read_metadata(real_store.table_path("prices")).num_rows
    for after, end in random_spans(days, 12, seed=13):
        assert kept.span(after, end) == scan(real_store, "prices", after, end), f"({after}, {end}]"


@pytest.mark.realdata
def test_the_real_prices_row_groups_are_successive_date_ranges(real_store: Store) -> None:
    """Stored by date: a filter on recent dates skips every row group but the last ones."""
    footer = pq.read_metadata(real_store.table_path("prices"))
    at = footer.schema.names.index("date")
    ranges = [(footer.row_group(i).column(at).statistics.min, footer.row_group(i).column(at).statistics.max)
              for i in range(footer.num_row_groups)]
    assert len(ranges) > 2
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:])), ranges


# ---------------------------------------------------------------------- a model built before, updated after


def test_a_model_built_on_a_store_without_sums_updates_after_they_are_written(tmp_path) -> None:
    """The fingerprint a build recorded by scanning matches the footer sums of the same rows: the
    update goes the short way, and records the digest a scan of its inputs gives."""
    store = Store(tmp_path / "store")
    load_synthetic_into_store(store, synthetic_market(n_stocks=40, n_days=300, seed=31, styles=True))
    for table in DIGEST_BY:
        without_sums(store, table)
    days = pd.DatetimeIndex(store.read_table("prices", columns=["date"])["date"].unique()).sort_values()
    built = svc.build_factor_model(store, "US21", end=days[-3])["version"]
    for table in DIGEST_BY:  # a later ingest rewrites the tables: the same rows, now with their sums
        store.write_table(table, store.read_table(table))
        assert store.table_row_sums(table) is not None
    out = svc.update_factor_model(store, "US21")  # refused (DataValidationError) had the fingerprint changed
    assert out["previous"] == built and out["path"] == "state"
    assert pd.Timestamp(out["new_dates"][-1]) == days[-1]
    recorded = store.model_meta("factors_US21")["input_digest"]
    scanned = Store(shutil.copytree(store.root, tmp_path / "scanned"))
    for table in DIGEST_BY:
        without_sums(scanned, table)
    now = fs.input_digest(scanned, days[-1], pd.Index([]))
    assert {t: recorded[t] for t in DIGEST_BY} == {t: now[t] for t in DIGEST_BY}
