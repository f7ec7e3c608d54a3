"""Per-date row sums of a dated table, kept in its Parquet footer: a fingerprint without a scan.

A published Model B version records a fingerprint of every input row it read
(:func:`~riskstrata.services.factors_state.input_digest`): per table, the number of rows dated on
or before the model's end and the sum of their row hashes (DuckDB ``hash(columns)``, summed as a
HUGEINT, so the order of the rows does not matter and the sum over a span of dates is the sum of
the sums of its dates). A daily update checks that fingerprint again; hashing the 1.65 M price
rows of the real store costs ~0.08 s of CPU, a tenth of the whole update.

So when the store writes a table :data:`DIGEST_BY` declares, it computes — with DuckDB, over the
very types a read of the written file gives — for each distinct date: (rows, Σ hash(columns)),
and keeps them in the file's key-value metadata, written in the same atomic replace as the rows.
:meth:`~riskstrata.data.store.Store.table_row_sums` reads them back from the footer alone, and
:meth:`RowSums.span` adds them up over any span of dates: the same two integers the SQL scan of
the file gives, bit for bit (``tests/data/test_table_row_sums.py`` holds them to it).

Why they can be trusted: the store is the only writer of its tables, and a table is always
replaced whole, footer and rows together, so the sums describe exactly the rows beside them. The
footer records the date column, the hashed columns, the file's row count and the DuckDB version
that hashed; a footer that does not match the declaration, the file or the DuckDB in use (or a
table written before the sums existed) gives no sums, and the fingerprint falls back to hashing
the rows.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from riskstrata.data import process_database

__all__ = ["DIGEST_BY", "DigestBy", "RowSums", "row_sums_of"]


@dataclass(frozen=True)
class DigestBy:
    """Which rows of a table a model ending on a date has read (those whose ``date`` column is on
    or before it), and the columns whose change means the model no longer follows (None: all,
    in the table's order)."""

    date: str
    columns: tuple[str, ...] | None = None

    def resolve(self, table_columns: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """The hashed columns of a table with these columns, in hashing order."""
        return tuple(table_columns) if self.columns is None else self.columns


# Prices: not the adjusted close (a vendor re-bases the whole series on each dividend; the model
# uses it only as a price relative, which re-basing leaves as it is) but the return and the volume.
# Fundamentals: a snapshot counts from the day it became available, every field of it.
DIGEST_BY: dict[str, DigestBy] = {
    "prices": DigestBy("date", ("security_id", "date", "ret", "volume")),
    "fundamentals": DigestBy("available_date"),
}

_KEY = "riskstrata.row_sums"            # JSON: what was summed, the file's rows, the rows without a date
_DAYS_KEY = "riskstrata.row_sums.days"  # base64 of _DAY records, one per distinct date, ascending
_FORMAT = 1
# One record per date: the date (ns since the epoch, as DuckDB's epoch_ns gives it), its rows, and
# the HUGEINT sum of its row hashes as (low 64 bits, high 64 bits): a date of ~3,000 rows sums
# beyond 2^64.
_DAY = np.dtype([("day", "<i8"), ("rows", "<i8"), ("lo", "<u8"), ("hi", "<i8")])
_TWO_64 = 1 << 64
# Date types whose values DuckDB compares with a timestamp parameter exactly as their nanoseconds.
_DATE_TYPES = {"DATE", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP", "TIMESTAMP_NS"}


def _ns(when: object) -> int:
    """A span bound as the fingerprint's SQL binds it (a ``datetime``: whole microseconds), in ns."""
    return pd.Timestamp(pd.Timestamp(when).to_pydatetime()).value


@dataclass(frozen=True)
class RowSums:
    """(rows, Σ row hashes) per distinct date of a table, as DuckDB hashes a read of its file.

    date: the date column; columns: the hashed columns, in order; rows: the file's rows;
    days: (D,) int64 ns, ascending; counts: (D,) int64 rows per day; lo, hi: (D,) the low
    (uint64) and high (int64) 64 bits of each day's sum; undated: (rows, sum) of the rows
    whose date is null (in no span, but counted in ``rows``).
    """

    date: str
    columns: tuple[str, ...]
    rows: int
    days: np.ndarray
    counts: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    undated: tuple[int, int] = (0, 0)

    def span(self, after: object | None, end: object) -> tuple[int, int]:
        """(rows, Σ row hashes) of the rows dated in (after, end] (after None: from the first):
        what ``SELECT count(*), sum(hash(columns))::HUGEINT … WHERE date <= end AND date > after``
        gives, (0, 0) for no rows."""
        hi_at = int(np.searchsorted(self.days, _ns(end), side="right"))
        lo_at = 0 if after is None else int(np.searchsorted(self.days, _ns(after), side="right"))
        if hi_at <= lo_at:
            return 0, 0
        lo = self.lo[lo_at:hi_at]
        # Σ of uint64 halves in 32-bit pieces: exact in uint64 for fewer than 2^32 days.
        low = int((lo & 0xFFFFFFFF).sum()) + (int((lo >> np.uint64(32)).sum()) << 32)
        return int(self.counts[lo_at:hi_at].sum()), (int(self.hi[lo_at:hi_at].sum()) << 64) + low

    def to_metadata(self) -> dict[str, str]:
        """The footer's key-value entries."""
        days = np.empty(len(self.days), dtype=_DAY)
        days["day"], days["rows"], days["lo"], days["hi"] = self.days, self.counts, self.lo, self.hi
        head = {"format": _FORMAT, "duckdb": duckdb.__version__, "date": self.date, "columns": list(self.columns),
                "rows": self.rows, "undated_rows": self.undated[0], "undated_sum": str(self.undated[1])}
        return {_KEY: json.dumps(head), _DAYS_KEY: base64.b64encode(days.tobytes()).decode("ascii")}

    @classmethod
    def from_footer(cls, footer: pq.FileMetaData, by: DigestBy) -> RowSums | None:
        """The sums a file's footer keeps, or None: none kept (a table written before them), kept
        by another DuckDB version, over another date or other columns than ``by`` declares for
        the file's columns, or not adding up to the file's rows."""
        kv = footer.metadata or {}
        head_text, days_text = kv.get(_KEY.encode()), kv.get(_DAYS_KEY.encode())
        if head_text is None or days_text is None:
            return None
        try:
            head = json.loads(head_text)
            days = np.frombuffer(base64.b64decode(days_text, validate=True), dtype=_DAY)
            columns = tuple(head["columns"])
            sums = cls(head["date"], columns, int(head["rows"]), days["day"], days["rows"], days["lo"], days["hi"],
                       (int(head["undated_rows"]), int(head["undated_sum"])))
        except (ValueError, KeyError, TypeError):
            return None
        # Another DuckDB may hash otherwise: its sums would not be what a scan gives now.
        if head.get("format") != _FORMAT or head.get("duckdb") != duckdb.__version__:
            return None
        if sums.date != by.date or columns != by.resolve(footer.schema.names):
            return None
        if sums.rows != footer.num_rows or int(sums.counts.sum()) + sums.undated[0] != footer.num_rows:
            return None
        if (np.diff(sums.days) <= 0).any():  # a span is found by bisection
            return None
        return sums


_COMPRESS_FROM_ROWS = 64  # fewer rows than this: a Parquet file is written uncompressed


def parquet_options(table: pa.Table) -> dict[str, Any]:
    """How the store writes ``table`` as Parquet (``pq.ParquetWriter`` keywords; the sums are
    computed for the types a file written so reads back as).

    zstd, except below ``_COMPRESS_FROM_ROWS`` rows: a part of a few rows (a daily update's
    factor_cov row: 382 columns) is stored uncompressed, zstd's set-up per column costing more
    than the bytes it would save (half the write's CPU there). Labels only are dictionary-encoded:
    trying it on float columns (nearly all values distinct) costs more than the compression
    itself and gains nothing."""
    labels = [f.name for f in table.schema if not pa.types.is_floating(f.type)]
    return {"compression": "zstd" if table.num_rows >= _COMPRESS_FROM_ROWS else "none", "use_dictionary": labels}


@functools.lru_cache(maxsize=32)
def _read_types(schema_bytes: bytes) -> dict[str, str]:
    """{column: the DuckDB type a read of a Parquet file of this (serialised Arrow) schema gives},
    from DuckDB reading an empty file written the same way."""
    schema = pa.ipc.read_schema(pa.py_buffer(schema_bytes))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "empty.parquet")
        empty = schema.empty_table()
        pq.write_table(empty, path, **parquet_options(empty))
        con = process_database.cursor()
        try:
            described = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [path]).fetchall()
        finally:
            con.close()
    return {str(row[0]): str(row[1]) for row in described}


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def row_sums_of(table: pa.Table, by: DigestBy) -> RowSums | None:
    """The per-date sums of ``table`` as a read of it written to Parquet by the store hashes it
    (None when the declared columns are missing or the date column is not a date).

    Each hashed column is cast to the DuckDB type the read gives (a nanosecond timestamp hashes
    differently from a microsecond one), so the sums are the scan's."""
    names = table.column_names
    columns = by.resolve(names)
    if by.date not in names or any(c not in names for c in columns):
        return None
    types = _read_types(table.schema.remove_metadata().serialize().to_pybytes())
    if types.get(by.date) not in _DATE_TYPES:
        return None
    hashed = ", ".join(f"CAST({_quoted(c)} AS {types[c]})" for c in columns)
    day = f"epoch_ns(CAST(CAST({_quoted(by.date)} AS {types[by.date]}) AS TIMESTAMP_NS))"
    con = process_database.cursor()
    try:
        con.register("rows_to_sum", table)
        found = con.execute(f"SELECT {day} AS day, count(*) AS n, sum(hash({hashed}))::HUGEINT AS h "
                            f"FROM rows_to_sum GROUP BY 1 ORDER BY 1 NULLS LAST").fetchall()
    finally:
        con.close()
    undated = (0, 0)
    if found and found[-1][0] is None:
        undated = (int(found[-1][1]), int(found[-1][2]))
        found = found[:-1]
    days = np.array([r[0] for r in found], dtype=np.int64)
    if (days % 1000).any():  # sub-microsecond dates: the SQL's microsecond bounds might split them otherwise
        return None
    sums = [int(r[2]) for r in found]
    return RowSums(by.date, columns, table.num_rows, days, np.array([r[1] for r in found], dtype=np.int64),
                   np.array([s % _TWO_64 for s in sums], dtype=np.uint64),
                   np.array([s // _TWO_64 for s in sums], dtype=np.int64), undated)
