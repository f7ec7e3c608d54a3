"""ETF holdings: read a holdings file, ingest it into table ``etf_holdings``, pick a snapshot.

Shapes: a *holdings frame* has one row per (date, etf, holding): ``date`` (datetime64[ns],
midnight), ``etf`` (str, upper case), ``holding`` (str, a label normalised by
:func:`normalise_tickers`: a ticker, or descriptive text for bonds, cash and futures) and
``weight`` (float64, a **decimal** of the fund's net assets, 0.05 = 5%; negative for short or
cash-borrowing lines). A *snapshot* is the rows of one (date, etf). Published lists are often
top-N only, so a snapshot's weights sum to its *coverage*, not to 1; leveraged or futures
funds can list more than 100%.

Table ``etf_holdings``: ``date, etf, holding, weight, source``, one row per
(date, etf, holding), sorted by etf, date, weight descending. Labels are stored as the source
gives them (normalised in case and class-share punctuation only); symbol renames
(:data:`RENAMES`) are applied by readers that match holdings to today's tickers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd

from riskstrata.data.readers import parse_date_column
from riskstrata.data.report import IngestReport, append_issues, concat_issues, issue_rows, new_run_id
from riskstrata.data.store import Store
from riskstrata.errors import DataValidationError

__all__ = [
    "ETF_HOLDINGS_REASONS",
    "HOLDINGS_COLUMNS",
    "RENAMES",
    "HoldingsIngestReport",
    "apply_renames",
    "etf_holdings_as_of",
    "ingest_etf_holdings",
    "normalise_tickers",
    "read_etf_holdings_file",
]

PathLike = str | os.PathLike[str]
WeightUnit = Literal["decimal", "percent"]
HOLDINGS_COLUMNS = ["date", "etf", "holding", "weight"]
TABLE = "etf_holdings"
_DTYPES = ["datetime64[ns]", "str", "str", "float64"]

# Old symbol → today's symbol, for names the 2021–22 holdings lists give under a symbol that has
# since changed (the price data and users' portfolios use today's). Same company in every case.
# Two targets were another company's symbol in 2021: COR (CoreSite Realty, acquired 2021-12) and
# DOC (Physicians Realty, merged into Healthpeak 2024-03); a snapshot listing both old labels
# gets their weights summed under the new one, and says so.
RENAMES: dict[str, str] = {
    "FB": "META",  # Meta Platforms, 2022-06
    "ANTM": "ELV",  # Elevance Health, 2022-06
    "BK": "BNY",  # Bank of New York Mellon
    "MMC": "MRSH",  # Marsh & McLennan
    "FLT": "CPAY",  # Fleetcor → Corpay, 2024-03
    "RE": "EG",  # Everest Group, 2023-07
    "WLTW": "WTW",  # Willis Towers Watson, 2022-01
    "PEAK": "DOC",  # Healthpeak, 2024-03
    "PKI": "RVTY",  # PerkinElmer → Revvity, 2023-05
    "ABC": "COR",  # AmerisourceBergen → Cencora, 2023-08
    "BLL": "BALL",  # Ball Corp, 2022-05
}

# Reason codes of this ingest beyond those in riskstrata.data.report.REASONS (which it also uses:
# bad_date, missing_ticker (no holding label), non_finite, duplicate_identical).
ETF_HOLDINGS_REASONS: dict[str, str] = {
    "missing_etf": "row has no ETF ticker",
    "duplicate_summed": "same date, ETF and holding listed more than once with different weights; summed",
    "negative_weight": "weight below zero (a short, cash-borrowing or hedge line); kept",
    "implausible_weight": "a single holding above 100% of the fund; kept, please check the unit",
}

_ALIASES: dict[str, tuple[str, ...]] = {
    "date": ("date", "as_of", "asof", "holdings_date", "snapshot_date"),
    "etf": ("etf", "fund", "etf_ticker", "fund_ticker"),
    "holding": ("holding", "holding_ticker", "ticker", "symbol"),
    "weight_pct": ("weight_pct", "weight_percent", "pct_weight"),
    "weight": ("weight",),
}
# A US class share: letters, then '.', '/' or '-' and one class letter (BRK.B, BF/B). Foreign
# exchange suffixes (HO.PA, 4704.T) have longer or numeric parts and keep their dots.
_CLASS_SHARE = re.compile(r"^([A-Z]{1,5})[./]([A-Z])$")
_NOT_SYMBOLS = {"N/A"}
# Decimal snapshots sum to at most ~2 (DBC's futures book lists 205%); percent ones to tens.
_PERCENT_IF_MEDIAN_SUM_ABOVE = 5.0


# ---------------------------------------------------------------------- labels


def normalise_tickers(labels: pd.Series) -> pd.Series:
    """Holding or portfolio labels in one spelling: stripped, upper case, US class shares with
    '-' (``brk.b``, ``BRK/B`` → ``BRK-B``); blank → NaN. Descriptive text ("US Dollar") is only
    upper-cased. Work is done once per distinct label (millions of rows, thousands of labels)."""
    codes, uniques = pd.factorize(pd.Series(labels, dtype="object"), use_na_sentinel=True)
    text = pd.Series(uniques, dtype="object").astype("str").str.strip().str.upper()
    symbol = ~text.isin(_NOT_SYMBOLS)
    text[symbol] = text[symbol].str.replace(_CLASS_SHARE, r"\1-\2", regex=True)
    text = text.replace("", np.nan)
    out = np.append(text.to_numpy(dtype=object), np.nan)[np.where(codes < 0, len(text), codes)]
    return pd.Series(out, index=getattr(labels, "index", None), dtype="object")


def apply_renames(labels: pd.Series, renames: Mapping[str, str] = RENAMES) -> tuple[pd.Series, dict[str, str]]:
    """Map old symbols to today's (:data:`RENAMES`); returns the labels and the renames that
    occurred (old → new), for the caller's note."""
    hit = labels.isin(list(renames))
    if not hit.any():
        return labels, {}
    used = {old: renames[old] for old in sorted(labels[hit].unique())}
    return labels.where(~hit, labels.map(renames)), used


# ---------------------------------------------------------------------- reading


def _canonical(columns: Iterable[Any]) -> dict[Any, str]:
    mapping: dict[Any, str] = {}
    for col in columns:
        norm = str(col).strip().lower().replace(" ", "_").replace("-", "_")
        for canon, names in _ALIASES.items():
            if norm in names and canon not in mapping.values():
                mapping[col] = canon
                break
    return mapping


def read_etf_holdings_file(path: PathLike, *, weight_unit: WeightUnit | None = None) -> pd.DataFrame:
    """Read a long holdings file (CSV or Parquet) into a holdings frame.

    Columns (case-insensitive): ``date``; ``etf`` (or ``fund``); the holding as ``holding``,
    ``holding_ticker``, ``ticker`` or ``symbol``; the weight as ``weight_pct`` /
    ``weight_percent`` (percent, divided by 100) or ``weight`` (a decimal, unless the file's
    median snapshot sums to more than 5, i.e. 500% as a decimal: then percent). ``weight_unit``
    overrides the guess for ``weight``. Other columns (``coverage_pct`` …) are ignored.

    Returns ``date, etf, holding, weight, source_row`` (``source_row``: 1-based data row).
    Reading only reshapes: unparsable dates and weights become NaT/NaN and blank labels NaN, for
    :func:`ingest_etf_holdings` to reject. ``attrs["weight_unit"]`` is the unit found and
    ``attrs["notes"]`` says what was converted.

    Raises DataValidationError for a missing, empty or unreadable file or a missing column.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise DataValidationError(f"ETF holdings file {path} is missing or empty")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            raw = pd.read_parquet(path)
        else:  # labels such as "NA" or "n/a" are holdings, not missing values
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as exc:  # any reader failure means the file is not what it claims to be
        raise DataValidationError(f"cannot read ETF holdings file {path}: {type(exc).__name__}: {exc}") from exc
    names = _canonical(raw.columns)
    found = set(names.values())
    missing = [c for c in ("date", "etf", "holding") if c not in found]
    if "weight" not in found and "weight_pct" not in found:
        missing.append("weight (or weight_pct)")
    if missing:
        raise DataValidationError(f"ETF holdings file {path} lacks column(s) {missing} (columns: {list(raw.columns)})")
    df = raw[list(names)].rename(columns=names)
    notes: list[str] = []
    if "weight_pct" in df.columns:
        unit: WeightUnit = "percent"
        weight = pd.to_numeric(df["weight_pct"], errors="coerce").astype("float64") / 100.0
        col = next(c for c, canon in names.items() if canon == "weight_pct")
        notes.append(f"weights read from {col!r} in percent and divided by 100")
    else:
        weight = pd.to_numeric(df["weight"], errors="coerce").astype("float64")
        unit = weight_unit or _guess_unit(df, weight, notes)
        if unit == "percent":
            weight = weight / 100.0
            if weight_unit:
                notes.append("weights given as percent (weight_unit='percent') and divided by 100")
    dates = parse_date_column(df["date"], what=f"date column of {path}")  # one format per file, 1900…tomorrow
    out = pd.DataFrame(
        {
            "date": dates.dates.to_numpy(),
            "etf": normalise_tickers(df["etf"]),
            "holding": normalise_tickers(df["holding"]),
            "weight": weight.to_numpy(),
            "source_row": np.arange(1, len(df) + 1),
            "date_reason": dates.reason.to_numpy(),
            "date_detail": dates.detail.to_numpy(),
        }
    )
    out.attrs = {"weight_unit": unit, "notes": notes}
    return out


def _guess_unit(df: pd.DataFrame, weight: pd.Series, notes: list[str]) -> WeightUnit:
    """Percent when the median snapshot's weights sum above 5 (see the module constant)."""
    ok = np.isfinite(weight.to_numpy())
    if not ok.any():
        return "decimal"
    keys = df.loc[ok, ["date", "etf"]].astype("str")
    sums = weight[ok].groupby([keys["date"], keys["etf"]]).sum()
    median = float(sums.median())
    if median > _PERCENT_IF_MEDIAN_SUM_ABOVE:
        notes.append(
            f"column 'weight' read as percent (a snapshot's weights sum to {median:.4g} at the median, "
            "about 100 for a full list) and divided by 100"
        )
        return "percent"
    return "decimal"


# ---------------------------------------------------------------------- ingest


@dataclass
class HoldingsIngestReport(IngestReport):
    """An :class:`IngestReport` that also carries the reader's notes (units converted)."""

    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        head = super().summary()
        return head + ("" if not self.notes else " — " + "; ".join(self.notes))


def _screen(df: pd.DataFrame) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Reject bad rows, resolve repeated (date, etf, holding) keys, flag odd weights.

    Rules, first match wins: bad_date, missing_etf, missing_ticker (no holding label),
    non_finite (rejected). A key listed more than once: identical copies are merged into the
    first (duplicate_identical); copies with different weights are summed into the first
    (duplicate_summed), as the source does with repeated labels (several bond lines under one
    description). Kept rows with weight < 0 (negative_weight) or > 1 (implausible_weight) are
    flagged. Returns ``(clean, issues)``, clean one row per key, original order.
    """
    rows = df.assign(ticker=df["holding"])
    n = len(rows)
    alive = np.ones(n, dtype=bool)
    issues: list[pd.DataFrame] = []

    def ident(sel: pd.DataFrame) -> pd.Series:
        return sel["etf"].astype("str") + " " + sel["date"].dt.strftime("%Y-%m-%d").fillna("?")

    why = rows["date_detail"].to_numpy(dtype=object) if "date_detail" in rows else np.full(n, None, dtype=object)
    far = (rows["date_reason"] == "date_out_of_range").to_numpy(dtype=bool) if "date_reason" in rows else np.zeros(n, bool)
    for reason, bad, detail in [
        ("date_out_of_range", far, lambda s, p: why[p]),
        ("bad_date", rows["date"].isna().to_numpy(),
         lambda s, p: np.where(pd.notna(why[p]), why[p], "date missing or not parseable")),
        ("missing_etf", rows["etf"].isna().to_numpy(), "no ETF ticker"),
        ("missing_ticker", rows["holding"].isna().to_numpy(), lambda s, p: ident(s) + ": no holding label"),
        (
            "non_finite",
            ~np.isfinite(rows["weight"].to_numpy()),
            lambda s, p: ident(s) + ": weight missing, infinite or not a number",
        ),
    ]:
        mask = bad & alive
        if mask.any():
            issues.append(issue_rows(rows, mask, "rejected", reason, detail))
            alive &= ~mask

    live = rows[alive]
    key = ["date", "etf", "holding"]
    dup = live.duplicated(key, keep=False).to_numpy()
    clean = live
    if dup.any():
        g = live[dup].groupby(key, sort=False)
        d = live[dup].assign(
            copies=g["weight"].transform("size").astype("str"),
            identical=g["weight"].transform("nunique").eq(1),
            total=g["weight"].transform("sum"),
            into=g["source_row"].transform("first").astype("str"),
        )
        extra = d.duplicated(key, keep="first").to_numpy()
        same = d["identical"].to_numpy()
        for reason, sel, what in [
            ("duplicate_identical", extra & same, lambda s: "identical copy of row " + s["into"] + "; merged"),
            ("duplicate_summed", extra & ~same, lambda s: "listed " + s["copies"] + " times with different weights; "
             "summed into row " + s["into"] + " (total " + s["total"].map("{:.6g}".format) + ")"),
        ]:  # fmt: skip
            if sel.any():
                issues.append(issue_rows(d, sel, "repaired", reason, lambda s, p, what=what: ident(s) + ": " + what(s)))
        clean = live.copy()
        clean.loc[d.index, "weight"] = d["total"].where(~d["identical"], d["weight"])
        clean = clean[~clean.duplicated(key, keep="first")]

    w = clean["weight"].to_numpy()
    for reason, bad, detail in [
        ("negative_weight", w < 0, lambda s, p: ident(s) + ": weight " + s["weight"].map("{:.4%}".format)),
        ("implausible_weight", w > 1, lambda s, p: ident(s) + ": weight " + s["weight"].map("{:.4%}".format)),
    ]:
        if bad.any():
            issues.append(issue_rows(clean, bad, "flagged", reason, detail))
    return clean[["date", "etf", "holding", "weight"]], issues


def ingest_etf_holdings(store: Store, path: PathLike, *, weight_unit: WeightUnit | None = None) -> HoldingsIngestReport:
    """Read, validate and upsert a holdings file into table ``etf_holdings``.

    See :func:`read_etf_holdings_file` for the file and :func:`_screen` for the rules; every
    rejected, merged or flagged row is an issue row with a reason code (also appended to table
    ``ingest_issues`` with kind ``etf_holdings``). A snapshot is a unit: each (date, etf) in the
    file replaces the stored snapshot of that (date, etf) whole, so a name that left the fund
    does not linger; other snapshots are kept. Ingesting the same file again leaves the table
    unchanged. Weights are stored as decimals; ``source`` is the file's name.
    """
    df = read_etf_holdings_file(path, weight_unit=weight_unit)
    notes = list(df.attrs.get("notes", []))
    df.attrs = {}
    df["file"] = str(path)
    clean, issues = _screen(df)
    new = clean.assign(source=Path(path).name)
    new = new.astype({"date": "datetime64[ns]", "etf": "str", "holding": "str", "weight": "float64", "source": "str"})
    if store.has_table(TABLE):
        old = store.read_table(TABLE)
        old = old.astype(
            {"date": "datetime64[ns]", "etf": "str", "holding": "str", "weight": "float64", "source": "str"}
        )
        snaps = new[["date", "etf"]].drop_duplicates().assign(_replaced=True)
        hit = old[["date", "etf"]].merge(snaps, on=["date", "etf"], how="left")["_replaced"].notna().to_numpy()
        new = pd.concat([old[~hit], new], ignore_index=True)
    order = np.lexsort(
        (new["holding"].to_numpy(), -new["weight"].to_numpy(), new["date"].to_numpy(), new["etf"].to_numpy())
    )
    table = new.take(order).reset_index(drop=True)[[*HOLDINGS_COLUMNS, "source"]]

    report = cast(HoldingsIngestReport, HoldingsIngestReport.from_issues(len(df), concat_issues(issues), [str(path)]))
    report.notes = notes
    report.run_id = new_run_id()
    store.write_table(TABLE, table)
    append_issues(store, report, TABLE)
    return report


# ---------------------------------------------------------------------- reading back


def etf_holdings_as_of(source: Store | pd.DataFrame, etfs: Iterable[str], as_of: Any) -> pd.DataFrame:
    """Each ETF's latest holdings snapshot dated on or before ``as_of``.

    source: a store (table ``etf_holdings``) or a holdings frame. Returns ``date, etf, holding,
    weight`` (weight a decimal of the fund), sorted by etf then weight descending;
    ``attrs["missing"]`` lists the requested ETFs with no snapshot on or before ``as_of`` (none
    at all, or only later ones) and ``attrs["snapshot_dates"]`` maps each found ETF to its date.
    """
    wanted = sorted({t for t in normalise_tickers(pd.Series(list(etfs), dtype="object")).dropna()})
    when = pd.Timestamp(as_of).normalize()
    if isinstance(source, Store):
        if not source.has_table(TABLE) or not wanted:
            rows = pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(HOLDINGS_COLUMNS, _DTYPES, strict=True)})
        else:
            rows = source.read_table(
                TABLE,
                columns=HOLDINGS_COLUMNS,
                where=f"etf IN ({', '.join('?' * len(wanted))}) AND date <= ?",
                params=[*wanted, when.to_pydatetime()],
            )
    else:
        lacking = set(HOLDINGS_COLUMNS) - set(source.columns)
        if lacking:
            raise DataValidationError(f"holdings frame lacks column(s) {sorted(lacking)} (has {list(source.columns)})")
        rows = source.loc[source["etf"].isin(wanted) & (source["date"] <= when), HOLDINGS_COLUMNS]
    rows = rows.astype({"date": "datetime64[ns]"})
    latest = rows.groupby("etf")["date"].transform("max")
    out = rows[rows["date"] == latest]
    out = out.sort_values(["etf", "weight", "holding"], ascending=[True, False, True], kind="stable").reset_index(
        drop=True
    )
    dates = out.groupby("etf")["date"].first()
    out.attrs = {
        "missing": [t for t in wanted if t not in dates.index],
        "snapshot_dates": {str(k): pd.Timestamp(v) for k, v in dates.items()},
    }
    return out
