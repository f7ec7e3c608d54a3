"""The point-in-time security master.

A *security* has a stable ``security_id`` and one or more dated *records*
``[valid_from, valid_to]`` (both inclusive, ``valid_to`` NaT = still valid) carrying the ticker,
name, asset type, issuer and shares outstanding of that period. Tickers change (renames) and get
recycled by unrelated companies, so every lookup takes an ``as_of`` date and a ticker never
merges two securities into one history.

Stable id, strongest available: FIGI, else ISIN, else ``TKR:<ticker>``; a later, different
security on a recycled ticker gets ``TKR:<ticker>:<valid_from YYYYMMDD>``. Ids never change once
assigned.

Table ``securities`` in the store holds the records, one row each, columns
:data:`SECURITY_COLUMNS`.

Issuers: ``issuer_id`` groups the share classes of one company (GOOG and GOOGL, FOX and FOXA,
BRK-A and BRK-B): any stable text, e.g. the SEC CIK. Empty means the security is its own issuer
(:meth:`SecurityMaster.issuers`). A securities file may carry it (``issuer_id`` or ``cik``), and an
issuer mapping (ticker → issuer, e.g. the SEC's ``company_tickers``) sets it on the securities
already known (:meth:`SecurityMaster.with_issuers`, :func:`ingest_issuers`). Model B counts an
issuer's market cap once (see docs/model_b.md, "Prices, caps and share classes").

Asset types: tickers first seen in data are typed by :func:`guess_asset_type` unless the caller
says otherwise: Yahoo ``^`` symbols are rates or indices, the funds of :data:`KNOWN_FUNDS` (broad,
sector, industry, style, bond and commodity ETFs) are ``etf``, everything else a ``stock``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskstrata.data.store import Store
from riskstrata.data.readers import parse_dates
from riskstrata.data.validation import RATE_TICKERS
from riskstrata.errors import DataValidationError, UnknownTicker

__all__ = [
    "ASSET_TYPES",
    "MIN_DATE",
    "SECURITY_COLUMNS",
    "KNOWN_FUNDS",
    "SecurityMaster",
    "clip_intervals",
    "guess_asset_type",
    "ingest_issuers",
    "read_issuer_file",
    "read_securities_file",
]

SECURITY_COLUMNS = [
    "security_id", "figi", "isin", "cusip", "ticker", "name", "asset_type",
    "valid_from", "valid_to", "shares_outstanding", "issuer_id",
]  # fmt: skip
ASSET_TYPES = ("stock", "etf", "index", "rate")
# "Since forever": the valid_from of records whose start is unknown (undated files).
MIN_DATE = pd.Timestamp("1900-01-01")
_FAR_FUTURE = pd.Timestamp("2262-01-01")  # stands in for an open valid_to in comparisons
_FAR_PAST = pd.Timestamp("1678-01-01")
_DAY = pd.Timedelta(days=1)
# Prices that run up to within this many calendar days of a ticker-based security's first record
# are the same listing seen earlier (a backfill), not a recycled ticker: a week-long holiday
# closure plus a weekend is the longest normal pause in trading.
CONTIGUOUS_DAYS = 10
_STR_COLUMNS = ["security_id", "figi", "isin", "cusip", "ticker", "name", "asset_type", "issuer_id"]
# Exchange-traded funds that are not in the default ETF registry but are common in price files
# (the reference data's broad, style, bond and commodity funds): typed ``etf`` on first sight, so
# a fund never enters Model B's stock universe. A user's own list goes through ``etf_tickers``.
KNOWN_FUNDS = frozenset("""
    SPY IVV VOO VTI QQQ IWM IWB IWD IWF IWN IWO IJH IJR VTV VUG RSP DIA IWV SPYG SPYV MDY
    XLK XLF XLV XLE XLY XLP XLI XLB XLU XLC XLRE
    SOXX SMH XSD XBI IBB XPH IHI XHE XHS KRE KBE KIE IAI IAT IGV XSW SKYY HACK CIBR FDN ITB XHB
    XOP OIH XES XME COPX GDX SIL LIT URA XRT PBJ IYT XTN JETS XAR ITA TAN ICLN IYR VNQ REM
    IYW IYF IYH IYE XTL MTUM QUAL USMV VLUE SIZE SPLV SPHB
    EFA EEM VEA VWO TLT IEF SHY AGG BND LQD HYG TIP GLD IAU SLV DBC USO
""".split())

AssetTypeHint = str | Mapping[str, str] | Callable[[str], str] | None
# Masters parsed by from_store: table path → (file stamp, master). Racing threads may both parse: harmless.
_FROM_STORE: dict[str, tuple[tuple[Any, ...], SecurityMaster]] = {}
_FROM_STORE_MAX = 16


def guess_asset_type(ticker: str) -> str:
    """Default asset type from a ticker alone: Yahoo ``^`` symbols are yields or indices, the
    funds of :data:`KNOWN_FUNDS` ETFs, anything else a stock."""
    if "^" in ticker:
        return "rate" if ticker in RATE_TICKERS else "index"
    return "etf" if str(ticker).strip().upper() in KNOWN_FUNDS else "stock"


def _asset_types(tickers: pd.Series, hint: AssetTypeHint) -> pd.Series:
    if isinstance(hint, str):
        return pd.Series(hint, index=tickers.index, dtype="str")
    if hint is None:
        return tickers.map(guess_asset_type).astype("str")
    if isinstance(hint, Mapping):
        return tickers.map(lambda t: hint.get(t) or guess_asset_type(t)).astype("str")
    return tickers.map(hint).astype("str")


def _clean_str(s: pd.Series) -> pd.Series:
    return s.astype("str").str.strip().replace("", np.nan)


def _to_dates(s: pd.Series) -> pd.Series:
    """Dates at midnight as ``datetime64[ns]`` (unparsable → NaT)."""
    return parse_dates(pd.Series(s))


def _open_end(valid_to: pd.Series) -> pd.Series:
    return valid_to.fillna(_FAR_FUTURE)


def clip_intervals(df: pd.DataFrame, by: str | list[str], *, clip_explicit: bool) -> pd.DataFrame:
    """Chain dated records within each ``by`` group so they do not overlap.

    Sorted by ``valid_from``, an open record (``valid_to`` NaT) followed by another is closed
    the day before the next one starts. With ``clip_explicit`` an explicit ``valid_to`` that
    runs into the next record is cut too (a newer record wins), and records left empty are
    dropped. Returns a new frame sorted by ``by`` then ``valid_from``.
    """
    by = [by] if isinstance(by, str) else list(by)
    out = df.sort_values([*by, "valid_from"], kind="stable").reset_index(drop=True)
    next_from = out.groupby(by, sort=False, dropna=False)["valid_from"].shift(-1)
    cut = next_from - _DAY
    has_next = next_from.notna()
    if clip_explicit:
        clip = has_next & (_open_end(out["valid_to"]) > cut)
    else:
        clip = has_next & out["valid_to"].isna()
    out.loc[clip, "valid_to"] = cut[clip]
    keep = out["valid_to"].isna() | (out["valid_to"] >= out["valid_from"])
    return out.loc[keep].reset_index(drop=True)


def _describe_spans(rows: pd.DataFrame) -> str:
    spans = []
    for sid, vf, vt in rows[["security_id", "valid_from", "valid_to"]].itertuples(index=False):
        end = "open" if pd.isna(vt) else f"{vt:%Y-%m-%d}"
        spans.append(f"{sid} {vf:%Y-%m-%d}..{end}")
    return "; ".join(spans)


class SecurityMaster:
    """Securities and their dated records; immutable (``upsert``/``ensure_tickers`` return new masters).

    Parameters
    ----------
    records:
        One row per dated record with at least ``ticker`` and ``valid_from``; the other columns
        of :data:`SECURITY_COLUMNS` are optional. Rows without ``security_id`` get one from FIGI,
        ISIN or the ticker (ticker-only rows of one ticker form one security while their dates
        are contiguous; a gap starts a new security, i.e. a recycled ticker).

    Raises
    ------
    DataValidationError
        Missing ticker/valid_from, unknown asset type, ``valid_to`` before ``valid_from``,
        overlapping records of one security, or two securities holding a ticker on the same day.
    """

    def __init__(self, records: pd.DataFrame) -> None:
        recs = _normalize(records)
        recs = _assign_ids(recs, existing=None)
        recs = clip_intervals(recs, "security_id", clip_explicit=False)
        _check_overlaps(recs)
        self._index(recs)

    def _index(self, recs: pd.DataFrame) -> None:
        """Hold valid, normalised records (sorted here) and their positions by ticker and by id."""
        self._records = recs.sort_values(["ticker", "valid_from"], kind="stable").reset_index(drop=True)
        self._by_ticker: dict[str, np.ndarray] = _positions(self._records["ticker"])
        self._by_id: dict[str, np.ndarray] = _positions(self._records["security_id"])
        self._latest: dict[str, pd.Series] = {}  # :meth:`latest`'s lookups, made on first use

    @classmethod
    def _from_stored(cls, table: pd.DataFrame) -> SecurityMaster:
        """The master of table ``securities`` as :meth:`to_store` wrote it, without validating again.

        The table's only writer is :meth:`to_store`, which writes the records of a constructed
        master: normalised, every id assigned, intervals clipped and checked for overlaps. Running
        those steps again on them changes nothing (the same records in the same order: two records
        of one ticker never start on the same day, so the final sort has no ties) and costs ~30 ms
        of every new process's first lookup (a daily update's included). A table not in exactly
        that form (other columns or dtypes, a missing id or ticker or start: written by hand or by
        older code) takes the full constructor.
        """
        if not _is_stored_form(table):
            return cls(table)
        master = cls.__new__(cls)
        master._index(table)
        return master

    # ------------------------------------------------------------------ construction / storage

    @classmethod
    def empty(cls) -> SecurityMaster:
        return cls(pd.DataFrame(columns=SECURITY_COLUMNS))

    @classmethod
    def from_store(cls, store: Store) -> SecurityMaster:
        """The master in table ``securities`` of ``store``; an empty master if there is none.

        Parsed once per version of the table file and shared (a master never changes: updates
        return a new one), so a server resolving a ticker per request pays a ``stat``, not a parse.
        """
        where = store.location(store.table_path("securities"))
        stamp = store.table_stamp("securities")
        if stamp is None:
            return cls.empty()
        held = _FROM_STORE.get(where)
        if held is not None and held[0] == stamp:
            return held[1]
        master = cls._from_stored(store.read_table("securities"))
        if len(_FROM_STORE) >= _FROM_STORE_MAX:  # many stores in one process (tests): forget the oldest
            _FROM_STORE.pop(next(iter(_FROM_STORE)))
        _FROM_STORE[where] = (stamp, master)
        return master

    def to_store(self, store: Store) -> None:
        """Replace table ``securities`` with this master (atomically)."""
        store.write_table("securities", self.records)

    @property
    def records(self) -> pd.DataFrame:
        """A copy of all records, columns :data:`SECURITY_COLUMNS`, sorted by ticker, valid_from."""
        return self._records.copy()

    def __len__(self) -> int:
        return int(self._records["security_id"].nunique())

    def __repr__(self) -> str:
        return f"SecurityMaster({len(self)} securities, {len(self._records)} records)"

    # ------------------------------------------------------------------ point-in-time lookups

    def resolve(self, ticker: str, as_of: Any) -> str:
        """The security holding ``ticker`` on ``as_of``; raises :class:`UnknownTicker` otherwise,
        saying on which dates the ticker is known, if any."""
        ticker = str(ticker).strip().upper()
        day = pd.Timestamp(as_of).normalize()
        rows = self._rows(self._by_ticker.get(ticker))
        hit = rows[(rows["valid_from"] <= day) & (_open_end(rows["valid_to"]) >= day)]
        if len(hit):
            return str(hit["security_id"].iloc[0])
        if rows.empty:
            raise UnknownTicker(ticker, "not in the security master")
        raise UnknownTicker(
            ticker, f"no security holds it on {day:%Y-%m-%d}; it is held by {_describe_spans(rows)}"
        )

    def resolve_many(self, tickers: Sequence[str], as_of: Any) -> pd.Series:
        """``tickers`` → security id on ``as_of`` (NaN where unknown); indexed by the tickers given."""
        tickers = list(tickers)
        day = pd.Timestamp(as_of).normalize()
        upper = pd.Series(tickers, dtype="str").str.strip().str.upper()
        ids = self.resolve_rows(upper, pd.Series(day, index=range(len(tickers))))
        return pd.Series(ids.to_numpy(), index=pd.Index(tickers, name="ticker"), name="security_id")

    def resolve_rows(self, tickers: pd.Series, dates: pd.Series) -> pd.Series:
        """Row-wise point-in-time resolution, vectorised.

        tickers, dates: (n,) aligned (tickers already upper-case). Returns an (n,) str Series
        (RangeIndex) of security ids, NaN where no security holds the ticker on that row's date.
        """
        n = len(tickers)
        ids = pd.array(self._records["security_id"].unique(), dtype="str")
        code = np.full(n, -1, dtype=np.int64)  # row → position in ids, -1 = unresolved
        if n and len(self._records):
            tick = pd.Series(tickers).reset_index(drop=True).astype("str")
            day = _to_dates(pd.Series(dates).reset_index(drop=True)).to_numpy("datetime64[ns]")
            recs = self._records
            rec_id = pd.Index(ids).get_indexer(recs["security_id"])
            n_recs = recs.groupby("ticker")["ticker"].transform("size").to_numpy()
            # Look tickers up once per distinct ticker, not once per row.
            tcode, uniq = pd.factorize(tick)
            # Fast path: a ticker with a single record (nearly all of them) maps by lookup.
            single = recs[n_recs == 1]
            slot = np.append(pd.Index(single["ticker"]).get_indexer(uniq), -1)[tcode]  # code -1 (NaN) → -1
            hit = slot >= 0
            s_from = single["valid_from"].to_numpy("datetime64[ns]")[slot[hit]]
            s_to = _open_end(single["valid_to"]).to_numpy("datetime64[ns]")[slot[hit]]
            ok = (day[hit] >= s_from) & (day[hit] <= s_to)
            code[np.flatnonzero(hit)[ok]] = rec_id[n_recs == 1][slot[hit]][ok]
            # Tickers with several records (renames, recycling): latest record starting on or
            # before the date; records of one ticker never overlap, so it is the only candidate.
            multi = recs[n_recs > 1]
            is_multi = np.append(pd.Index(uniq).isin(multi["ticker"].unique()), False)[tcode]
            todo = np.flatnonzero(is_multi & ~np.isnat(day))
            if len(todo):
                left = pd.DataFrame({"ticker": tick.iloc[todo].to_numpy(), "date": day[todo], "pos": todo})
                right = multi[["ticker", "valid_from", "valid_to"]].assign(rid=rec_id[n_recs > 1])
                m = pd.merge_asof(
                    left.sort_values("date"), right.sort_values("valid_from"),
                    left_on="date", right_on="valid_from", by="ticker", direction="backward",
                )  # fmt: skip
                ok = m["rid"].notna() & (m["date"] <= _open_end(m["valid_to"]))
                code[m.loc[ok, "pos"].to_numpy()] = m.loc[ok, "rid"].to_numpy(dtype=np.int64)
        return pd.Series(ids.take(code, allow_fill=True), name="security_id")

    def latest_holders(self, tickers: Sequence[str]) -> pd.Series:
        """ticker → the security of its most recent record (NaN if unknown), for undated data."""
        last = self._records.sort_values("valid_from").groupby("ticker")["security_id"].last()
        idx = pd.Index([str(t).strip().upper() for t in tickers], name="ticker")
        return last.reindex(idx).rename("security_id")

    def record(self, security_id: str, as_of: Any) -> pd.Series:
        """The record of ``security_id`` valid on ``as_of`` (a row of :data:`SECURITY_COLUMNS`)."""
        day = pd.Timestamp(as_of).normalize()
        rows = self._rows(self._by_id.get(security_id))
        hit = rows[(rows["valid_from"] <= day) & (_open_end(rows["valid_to"]) >= day)]
        if hit.empty:
            detail = "not in the security master" if rows.empty else (
                f"security has no record on {day:%Y-%m-%d}; records: {_describe_spans(rows)}"
            )
            raise UnknownTicker(security_id, detail)
        return hit.iloc[0].copy()

    def ticker_of(self, security_id: str, as_of: Any) -> str:
        """The ticker ``security_id`` traded under on ``as_of``."""
        return str(self.record(security_id, as_of)["ticker"])

    def snapshot(self, as_of: Any) -> pd.DataFrame:
        """All records valid on ``as_of``, one per security, sorted by ticker."""
        day = pd.Timestamp(as_of).normalize()
        r = self._records
        return r[(r["valid_from"] <= day) & (_open_end(r["valid_to"]) >= day)].reset_index(drop=True)

    def latest(self, column: str) -> pd.Series:
        """security id → the latest value of ``column`` among its records (by ``valid_from``,
        skipping records without one; NaN: none has one). Made once per master and column: a
        master's records never change."""
        if column not in self._latest:
            self._latest[column] = self._records.sort_values("valid_from").groupby("security_id")[column].last()
        return self._latest[column].copy()  # copy on write: the held lookup stays as it is

    def issuers(self, security_ids: Sequence[str]) -> pd.Series:
        """security id → issuer id (the latest record's ``issuer_id``; a security without one, or
        not in the master, is its own issuer: its security id). Indexed by the ids given."""
        ids = pd.Index([str(s) for s in security_ids], name="security_id")
        out = self.latest("issuer_id").reindex(ids)
        return out.fillna(pd.Series(ids, index=ids)).astype("str").rename("issuer_id")

    def with_issuers(self, mapping: pd.DataFrame) -> tuple[SecurityMaster, pd.Series]:
        """Set ``issuer_id`` from a ticker → issuer mapping (columns ``ticker, issuer_id``).

        Every record holding a mapped ticker gets its issuer (a mapping of today's tickers, such
        as the SEC's, names the company behind each symbol); other records are left alone.
        Returns the new master and, per mapping row, whether it matched a record (bool Series
        aligned to ``mapping``). A ticker mapped to two issuers is a DataValidationError.
        """
        m = pd.DataFrame({"ticker": _clean_str(mapping["ticker"]).str.upper(),
                          "issuer_id": _clean_str(mapping["issuer_id"])}).dropna()
        clash = m.drop_duplicates().groupby("ticker").size()
        if (clash > 1).any():
            raise DataValidationError(f"tickers mapped to more than one issuer: {sorted(clash[clash > 1].index)[:5]}")
        lookup = m.drop_duplicates("ticker").set_index("ticker")["issuer_id"]
        matched = pd.Series(mapping["ticker"].astype("str").str.strip().str.upper().isin(self._by_ticker.keys()).to_numpy(),
                            index=mapping.index)
        recs = self._records.copy()
        new = recs["ticker"].map(lookup)
        if new.notna().sum() == 0:
            return self, matched
        recs["issuer_id"] = new.fillna(recs["issuer_id"])
        return SecurityMaster(recs), matched

    def _rows(self, idx: np.ndarray | None) -> pd.DataFrame:
        return self._records.iloc[idx] if idx is not None else self._records.iloc[:0]

    # ------------------------------------------------------------------ updates

    def upsert(self, records: pd.DataFrame) -> SecurityMaster:
        """Merge new dated records; a record with the same (security_id, valid_from) replaces the
        old one and a newer record cuts short an older one it overlaps. Idempotent.

        Rows without ids are matched to the security holding their ticker on ``valid_from``;
        a rename is a record with the same FIGI/ISIN (or security_id) and the new ticker.
        """
        new = _assign_ids(_normalize(records), existing=self)
        if new.empty:
            return self
        old = self._records
        key_new = pd.MultiIndex.from_frame(new[["security_id", "valid_from"]])
        key_old = pd.MultiIndex.from_frame(old[["security_id", "valid_from"]])
        merged = clip_intervals(
            pd.concat([old[~key_old.isin(key_new)], new], ignore_index=True), "security_id", clip_explicit=True
        )
        # A record that leaves name/FIGI/ISIN empty carries them over from the security's previous record.
        carry = ["name", "figi", "isin", "issuer_id"]
        merged[carry] = merged.groupby("security_id", sort=False)[carry].ffill()
        return SecurityMaster(merged)

    def ensure_tickers(self, tickers_with_dates: pd.DataFrame, asset_type_hint: AssetTypeHint = None) -> SecurityMaster:
        """Make sure every ticker seen in data has a security for the dates it was seen.

        tickers_with_dates: columns ``ticker, first_date, last_date`` (dates seen in the data).
        The part of each span no record covers gets a new ticker-based security, open-ended if
        nothing follows it — except that data running up to (within ``CONTIGUOUS_DAYS``) the first
        record of a ticker-based security extends that security back (a backfill, not a new
        listing). Records that exist are left alone; calling it again changes nothing.
        asset_type_hint: one type for all, a ticker → type mapping, or a callable; default
        :func:`guess_asset_type`.
        """
        spans = tickers_with_dates.rename(columns=str.lower)
        missing = {"ticker", "first_date", "last_date"} - set(spans.columns)
        if missing:
            raise DataValidationError(
                f"ensure_tickers needs columns ticker, first_date, last_date; missing {sorted(missing)}"
            )
        spans = pd.DataFrame(
            {
                "ticker": _clean_str(spans["ticker"]).str.upper(),
                "first_date": _to_dates(spans["first_date"]),
                "last_date": _to_dates(spans["last_date"]),
            }
        ).dropna()
        if spans.empty:
            return self
        known = spans["ticker"].isin(self._by_ticker.keys())
        # Tickers never seen: one new open-ended security each.
        fresh = spans[~known].groupby("ticker", as_index=False)["first_date"].min()
        fresh = fresh.rename(columns={"first_date": "valid_from"}).assign(valid_to=pd.NaT)
        pieces, extend = self._uncovered(spans[known])
        new = pd.concat([fresh, pieces], ignore_index=True)
        if new.empty and extend.empty:
            return self
        recs = self._records.copy()
        recs.loc[extend.index, "valid_from"] = extend.to_numpy()
        if not new.empty:
            new = new.astype({"valid_from": "datetime64[ns]", "valid_to": "datetime64[ns]"})
            new["asset_type"] = _asset_types(new["ticker"], asset_type_hint).to_numpy()
            new["security_id"] = _ticker_ids(new, used=set(self._by_id))
            recs = pd.concat([recs, new], ignore_index=True)
        return SecurityMaster(recs)

    def _uncovered(self, spans: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
        """For spans of tickers that have records: new records for the parts no record covers
        (``ticker, valid_from, valid_to``), and backfill extensions (record row → new valid_from)."""
        r = self._records.sort_values(["ticker", "valid_from"])
        first_of_ticker = ~r["ticker"].duplicated()
        last_of_ticker = ~r["ticker"].duplicated(keep="last")
        prev_end = r.groupby("ticker")["valid_to"].shift(1)
        # Gaps between a ticker's records, each with the record that follows it (-1: none).
        gaps = pd.concat(
            [
                pd.DataFrame({"ticker": r["ticker"], "gap_start": np.where(first_of_ticker, _FAR_PAST, prev_end + _DAY),
                              "gap_end": r["valid_from"] - _DAY, "after": r.index}),
                pd.DataFrame({"ticker": r["ticker"], "gap_start": r["valid_to"] + _DAY,
                              "gap_end": _FAR_FUTURE, "after": -1})[last_of_ticker & r["valid_to"].notna()],
            ],
            ignore_index=True,
        )  # fmt: skip
        gaps = gaps.astype({"gap_start": "datetime64[ns]", "gap_end": "datetime64[ns]"})
        gaps = gaps[gaps["gap_start"] <= gaps["gap_end"]].reset_index(names="gap")
        hit = spans.merge(gaps, on="ticker")
        hit["lo"] = hit[["first_date", "gap_start"]].max(axis=1)
        hit["hi"] = hit[["last_date", "gap_end"]].min(axis=1)
        hit = hit[hit["lo"] <= hit["hi"]]
        pieces = hit.groupby("gap", as_index=False).agg(
            ticker=("ticker", "first"), lo=("lo", "min"), hi=("hi", "max"),
            gap_end=("gap_end", "first"), after=("after", "first"),
        )  # fmt: skip
        nxt = r.reindex(pieces["after"].to_numpy())  # NaN rows where nothing follows
        is_first = r["valid_from"] == r.groupby("security_id")["valid_from"].transform("min")
        first_of_sid = is_first.reindex(pieces["after"].to_numpy())
        backfill = (
            (pieces["after"].to_numpy() >= 0)
            & nxt["security_id"].str.startswith("TKR:").fillna(False).to_numpy(dtype=bool)
            & first_of_sid.fillna(False).to_numpy(dtype=bool)
            & ((nxt["valid_from"].to_numpy() - pieces["hi"].to_numpy()) <= np.timedelta64(CONTIGUOUS_DAYS, "D"))
        )
        extend = pd.Series(pieces.loc[backfill, "lo"].to_numpy(), index=pieces.loc[backfill, "after"].to_numpy())
        created = pieces[~backfill]
        new = pd.DataFrame(
            {
                "ticker": created["ticker"].to_numpy(),
                "valid_from": created["lo"].to_numpy(),
                "valid_to": np.where(created["after"] >= 0, created["gap_end"], np.datetime64("NaT")),
            }
        )
        return new, extend


# ---------------------------------------------------------------------- helpers


def _normalize(records: pd.DataFrame) -> pd.DataFrame:
    """Records with exactly :data:`SECURITY_COLUMNS`, typed, tickers upper-case; validated."""
    df = records.rename(columns=lambda c: str(c).strip().lower()).copy()
    for col in SECURITY_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    out = pd.DataFrame(index=df.index)
    for col in _STR_COLUMNS:
        out[col] = _clean_str(df[col])
    out["ticker"] = out["ticker"].str.upper()
    out["asset_type"] = out["asset_type"].str.lower().fillna("stock")
    out["valid_from"] = _to_dates(df["valid_from"])
    out["valid_to"] = _to_dates(df["valid_to"])
    out["shares_outstanding"] = pd.to_numeric(df["shares_outstanding"], errors="coerce").astype("float64")
    out = out[SECURITY_COLUMNS].reset_index(drop=True)

    problems = []
    for what, bad in [
        ("no ticker", out["ticker"].isna()),
        ("no or unparsable valid_from", out["valid_from"].isna()),
        ("valid_to before valid_from", out["valid_to"] < out["valid_from"]),
        (f"asset_type not one of {ASSET_TYPES}", ~out["asset_type"].isin(ASSET_TYPES)),
    ]:
        if bad.any():
            rows = (np.flatnonzero(bad.to_numpy()) + 1)[:5].tolist()
            problems.append(f"{int(bad.sum())} record(s) with {what} (rows {rows})")
    if problems:
        raise DataValidationError("invalid security records: " + "; ".join(problems))
    return out


def _positions(keys: pd.Series) -> dict[str, np.ndarray]:
    """{key: its rows' positions, ascending}, keys in order of first appearance: exactly
    ``groupby(keys, sort=False).indices``, which on text columns boxes every key (~3 ms per 1,000 rows)."""
    codes, uniques = pd.factorize(keys.to_numpy(dtype=object))
    if (codes < 0).any():  # a missing key (not in a valid master): groupby's own answer, which drops it
        return keys.groupby(keys, sort=False).indices
    order = np.argsort(codes, kind="stable")
    return dict(zip(uniques.tolist(), np.split(order, np.cumsum(np.bincount(codes))[:-1])))


def _is_stored_form(table: pd.DataFrame) -> bool:
    """Whether ``table`` has exactly the columns and dtypes of a master's records (what
    :func:`_normalize` makes) and every record its id, ticker and start."""
    str_dtype = pd.Series([], dtype="str").dtype
    wanted = {**{c: str_dtype for c in _STR_COLUMNS}, "valid_from": np.dtype("datetime64[ns]"),
              "valid_to": np.dtype("datetime64[ns]"), "shares_outstanding": np.dtype("float64")}
    if list(table.columns) != SECURITY_COLUMNS or any(table[c].dtype != d for c, d in wanted.items()):
        return False
    return not table[["security_id", "ticker", "valid_from"]].isna().any().any()


def _ticker_ids(new: pd.DataFrame, used: set[str]) -> np.ndarray:
    """Ticker-based ids for new securities: ``TKR:<t>`` for the earliest new one of a ticker if
    free, else ``TKR:<t>:<valid_from YYYYMMDD>`` (a recycled ticker)."""
    order = new.sort_values(["ticker", "valid_from"]).index
    ids = pd.Series(index=new.index, dtype=object)
    first = ~new.loc[order, "ticker"].duplicated()
    plain = "TKR:" + new.loc[order, "ticker"]
    dated = plain + ":" + new.loc[order, "valid_from"].dt.strftime("%Y%m%d")
    use_plain = first & ~plain.isin(used)
    ids.loc[order] = np.where(use_plain, plain, dated)
    return ids.to_numpy(dtype=object)


def _assign_ids(recs: pd.DataFrame, existing: SecurityMaster | None) -> pd.DataFrame:
    """Fill missing ``security_id``: FIGI, else ISIN, else ticker-based (see :class:`SecurityMaster`)."""
    recs = recs.copy()
    sid = recs["security_id"].fillna(recs["figi"]).fillna(recs["isin"])
    recs["security_id"] = sid
    bare = sid.isna()
    if not bare.any():
        return recs
    # Ticker-only rows: one security per run of contiguous records of a ticker.
    b = recs.loc[bare].sort_values(["ticker", "valid_from"])
    prev_end = b.groupby("ticker")["valid_to"].shift(1)
    prev_open = prev_end.isna() & b["ticker"].duplicated()
    new_run = ~b["ticker"].duplicated() | (~prev_open & (b["valid_from"] > prev_end + _DAY))
    run = new_run.cumsum()
    starts = b[new_run][["ticker", "valid_from"]].assign(run=run[new_run].to_numpy())
    run_id = pd.Series(np.nan, index=starts.index, dtype=object)
    used: set[str] = set(recs["security_id"].dropna())
    if existing is not None and len(existing._records):
        # A ticker-only update belongs to the security already holding the ticker on that date.
        run_id[:] = existing.resolve_rows(starts["ticker"], starts["valid_from"]).to_numpy(dtype=object)
        used |= set(existing._by_id)
    unmatched = run_id.isna()
    if unmatched.any():
        run_id[unmatched] = _ticker_ids(starts[unmatched], used)
    by_run = pd.Series(run_id.to_numpy(), index=starts["run"].to_numpy())
    recs.loc[b.index, "security_id"] = by_run.reindex(run.to_numpy()).to_numpy()
    return recs


def _check_overlaps(recs: pd.DataFrame) -> None:
    """Raise DataValidationError if one security has overlapping records or two securities hold
    the same ticker on the same day."""
    problems = []
    for key, label in [("security_id", "security"), ("ticker", "ticker")]:
        r = recs.sort_values([key, "valid_from"], kind="stable")
        end = _open_end(r["valid_to"])
        prev_max_end = end.groupby(r[key]).cummax().groupby(r[key]).shift(1)
        clash = r["valid_from"] <= prev_max_end
        if key == "ticker":
            # Consecutive records of one security never overlap once the first check passed.
            clash &= r["security_id"] != r.groupby(key)["security_id"].shift(1)
        for name in r.loc[clash, key].unique()[:5]:
            rows = r[r[key] == name]
            what = "has overlapping records" if label == "security" else "is held by two securities on the same day"
            problems.append(f"{label} {name!r} {what}: {_describe_spans(rows)}")
    if problems:
        raise DataValidationError("security master conflict: " + " | ".join(problems))


def _read_table_file(path: str | os.PathLike[str], what: str) -> pd.DataFrame:
    """A CSV (all text) or Parquet file as a frame; DataValidationError if it cannot be read."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=True)
    except Exception as exc:  # any reader failure is a bad file from the user's point of view
        raise DataValidationError(f"cannot read {what} file {path}: {exc}") from exc


def read_securities_file(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read security records from CSV or Parquet.

    Columns (case-insensitive): ``ticker`` (required), optional ``security_id``, ``figi``,
    ``isin``, ``cusip`` (joins 13F holdings), ``name``, ``asset_type`` (default stock), ``valid_from`` (default
    :data:`MIN_DATE`: valid since forever), ``valid_to`` (empty = open), ``shares_outstanding``,
    ``issuer_id`` (or ``cik``: groups share classes of one company).
    Returns a frame for :class:`SecurityMaster` / :meth:`SecurityMaster.upsert`.
    """
    df = _read_table_file(path, "securities")
    df = df.rename(columns=lambda c: str(c).strip().lower().replace(" ", "_"))
    if "ticker" not in df.columns and "symbol" in df.columns:
        df = df.rename(columns={"symbol": "ticker"})
    if "issuer_id" not in df.columns and "cik" in df.columns:
        df = df.rename(columns={"cik": "issuer_id"})
    if "ticker" not in df.columns:
        raise DataValidationError(f"securities file {path} has no ticker column (columns: {list(df.columns)})")
    if "valid_from" not in df.columns:
        df["valid_from"] = MIN_DATE
    df["valid_from"] = df["valid_from"].where(df["valid_from"].notna(), MIN_DATE)
    keep = [c for c in SECURITY_COLUMNS if c in df.columns]
    return df[keep].reset_index(drop=True)


def read_issuer_file(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ticker → issuer mapping (CSV or Parquet): columns ``ticker`` (or ``symbol``) and
    ``issuer_id`` (or ``cik``); other columns are ignored, so the SEC's ``company_tickers``
    (``cik, ticker, exchange, name``) reads as it is. Returns ``ticker, issuer_id, source_row``
    (str; 1-based data rows). Raises DataValidationError for an unreadable file or missing columns."""
    df = _read_table_file(path, "issuer")
    cols = {str(c).strip().lower(): c for c in df.columns}
    tick = cols.get("ticker", cols.get("symbol"))
    issuer = cols.get("issuer_id", cols.get("cik"))
    if tick is None or issuer is None:
        raise DataValidationError(f"issuer file {path} needs ticker and issuer_id (or cik) columns; has {list(df.columns)}")
    return pd.DataFrame({"ticker": _clean_str(df[tick]).str.upper(), "issuer_id": _clean_str(df[issuer]),
                         "source_row": np.arange(1, len(df) + 1)})


def ingest_issuers(store: Store, path: str | os.PathLike[str]) -> Any:
    """Set the issuer of the store's securities from a ticker → issuer file (see
    :func:`read_issuer_file` and :meth:`SecurityMaster.with_issuers`).

    Returns an :class:`~riskstrata.data.report.IngestReport`: rows without a ticker or issuer
    are rejected (``missing_ticker`` / ``missing_issuer``); a ticker given two issuers rejects all
    its rows (``duplicate_conflict``); rows whose ticker no security holds are flagged
    ``not_in_master`` (kept in no table: the mapping only annotates known securities; the
    report's counts say how many matched). Issues go to ``ingest_issues`` (kind ``issuers``).
    """
    from riskstrata.data.report import IngestReport, append_issues, concat_issues, issue_rows, new_run_id

    df = read_issuer_file(path)
    rows = df.assign(file=str(path), date=pd.NaT)
    alive = np.ones(len(df), dtype=bool)
    issues = []
    for reason, bad, text in [
        ("missing_ticker", df["ticker"].isna().to_numpy(), "no ticker"),
        ("missing_issuer", df["issuer_id"].isna().to_numpy(), "no issuer id"),
    ]:
        mask = bad & alive
        if mask.any():
            issues.append(issue_rows(rows, mask, "rejected", reason, text))
        alive &= ~mask
    live = df[alive]
    n_issuers = live.drop_duplicates(["ticker", "issuer_id"]).groupby("ticker").size()
    clash = (alive & df["ticker"].isin(n_issuers[n_issuers > 1].index).to_numpy())
    if clash.any():
        issues.append(issue_rows(rows, clash, "rejected", "duplicate_conflict", "ticker given two issuers; all rows rejected"))
    alive &= ~clash
    master, matched = SecurityMaster.from_store(store).with_issuers(df[alive])
    unknown = np.zeros(len(df), dtype=bool)
    unknown[np.flatnonzero(alive)[~matched.to_numpy()]] = True
    if unknown.any():
        issues.append(issue_rows(rows, unknown, "flagged", "not_in_master", "no security holds this ticker; not used"))
    report = IngestReport.from_issues(len(df), concat_issues(issues), [str(path)])
    report.run_id = new_run_id()
    master.to_store(store)
    append_issues(store, report, "issuers")
    return report
