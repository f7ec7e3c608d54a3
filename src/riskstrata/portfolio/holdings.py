"""Holdings in: a broker export (CSV or Parquet), a DataFrame or a dict, read into one table of lines.

Reading interprets what the user gave but does not judge it: whether a line is in the model
universe is decided by :mod:`riskstrata.portfolio.matching`. Holdings stay in memory: nothing here
writes or logs them.

``Holdings.lines`` has the columns :data:`HOLDING_COLUMNS`, one row per source line:

- ``line``: int, 1-based data row of the source (the first row under the header is 1; a dict or a
  frame: its order). A merged duplicate keeps the first line's number.
- ``ticker``: str, upper case, share classes Yahoo-style (``BRK.B`` → ``BRK-B``); None where the
  line has only a CUSIP or nothing.
- ``cusip``: str (9 characters as given) or None.
- ``shares``: float, number of shares, negative = short; NaN = not given.
- ``market_value``: float, USD, negative = short; NaN = not given.
- ``weight``: float, decimal fraction of the account (0.05 = 5 %), negative = short; NaN = not given.
- ``currency``: str as given (ISO code) or None.
- ``kind``: ``'security'`` | ``'cash'`` | ``'currency'``.
- ``note``: str, what was assumed or repaired on that line ("" when nothing).

Decisions, so that nothing is dropped silently:

- A line whose every quantity is missing, NaN or infinite is kept and noted ``no quantity``;
  matching excludes it with that reason. Only blank rows, total rows ("Account Total") and footer
  text after a blank row are skipped, and each skip is noted.
- Weights are read as percent when the header or a cell says so (``%``, "percent", "pct") or, with
  no marker, when they are too large for decimals (gross Σ|w| > 3) and plausible as percent (gross ≤ 300,
  0 < net Σw ≤ 150, and net ≥ 50 when some are short). Other large 'weights' are refused: values
  such as -100, 250 are share counts under the wrong label.
- Lines for one security (same ticker, CUSIP, kind and currency, same kinds of quantity) are merged
  by summing, with a note naming the lines: two lots or two accounts are one holding.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from riskstrata.errors import DataValidationError, ValueOverflow

__all__ = [
    "HOLDING_COLUMNS",
    "KINDS",
    "MAX_QUANTITY",
    "QUANTITIES",
    "Holdings",
    "is_cusip",
    "map_cusips",
    "normalize_ticker",
    "read_cusip_map",
    "read_holdings",
]

HOLDING_COLUMNS = ["line", "ticker", "cusip", "shares", "market_value", "weight", "currency", "kind", "note"]
KINDS = ("security", "cash", "currency")
QUANTITIES = ("shares", "market_value", "weight")
# Beyond 1e15 (shares, USD or a weight) a number is no portfolio: all the world's equity is ~1e14 USD,
# and sums of such values lose every cent or overflow float64 (1e308 + 1e308 = inf).
MAX_QUANTITY = 1e15
_TEXT_COLUMNS = ("ticker", "cusip", "currency")

# Header names as brokers export them, compared without case, spaces or punctuation; a header
# "Qty (Quantity)" is tried whole, without the brackets and as the bracketed text. Within a field
# the first alias present wins, so a file with both "Market Value" and "Value" uses the former.
_ALIASES: dict[str, tuple[str, ...]] = {
    "ticker": ("ticker", "symbol", "security id", "ticker symbol", "stock symbol", "sym",
               "financial instrument", "instrument", "holding ticker"),
    "cusip": ("cusip", "cusip number", "cusip no", "security cusip"),
    "shares": ("shares", "quantity", "qty", "position", "units", "share count", "shares held",
               "quantity held", "number of shares", "no of shares", "sshprnamt"),
    "market_value": ("market value", "mkt val", "mkt value", "current value", "total value",
                     "position value", "market value usd", "value usd", "value", "mv"),
    "weight": ("weight", "% of account", "% of acct", "percent of account", "% of portfolio",
               "percent of portfolio", "portfolio %", "portfolio weight", "% of total", "% of assets",
               "% of net assets", "allocation", "% allocation", "weight %", "pct"),
    "currency": ("currency", "ccy", "curr", "currency code"),
    "description": ("description", "name", "security name", "security description", "investment name",
                    "security", "company", "company name", "name of issuer", "issuer"),
    "asset_type": ("asset type", "security type", "asset class", "investment type", "asset category",
                   "sec type", "product type", "kind"),
}  # fmt: skip
_EMPTY_TEXT = {"", "-", "--", "—", "–", "n/a", "na", "nan", "none", "null"}
_DECIMAL_COMMA = re.compile(r"(?<![\w.,])\d{1,3}(?:\.\d{3})*,\d+(?![\w.,])|(?<![\w.,])\d+,\d+(?![\w.,])")
_TOTAL_ROW = re.compile(r"(?:(?:account|grand|portfolio|positions?|sub)[\s-]*)?totals?\b.*", re.IGNORECASE)
_CLASS_SHARE = re.compile(r"([A-Z]{1,6})[./ _]([A-Z]{1,2})")
# Money-market funds: NASDAQ fund symbols ending in XX (SPAXX, FDRXX, SWVXX, VMFXX, ...).
_MONEY_MARKET = re.compile(r"[A-Z]{3}XX")
_CASH_LABELS = {"CASH", "$", "USD", "CORE", "FCASH", "SWEEP", "PENDING ACTIVITY", "MONEY MARKET"}
_CASH_WORDS = re.compile(r"\bCASH\b|MONEY MARKET|\bSWEEP\b", re.IGNORECASE)
# Non-USD currencies that a position line can be (a bare code, "EUR CASH", "EUR.USD"). Kept to the
# majors, less those that are also US tickers (NOK Nokia, HKD, INR, SAR, TRY, PHP).
_CURRENCIES = {"USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "NZD", "SGD", "CNY", "CNH", "SEK", "DKK",
               "MXN", "ZAR", "KRW", "BRL", "TWD", "PLN"}  # fmt: skip
_CURRENCY_LINE = re.compile(r"(?:CASH[ _-]?)?([A-Z]{3})(?:[ _-]?CASH|[./ ]?([A-Z]{3}))?")


@dataclass
class Holdings:
    """Parsed input lines, one row per source line (after merging duplicates, noted).

    lines: columns :data:`HOLDING_COLUMNS` (see the module docstring for units: shares, USD, decimal
    weights); source: the file name, or "dict" / "DataFrame"; notes: merges, unit conversions
    (weights given in percent), skipped rows, anything repaired.
    """

    lines: pd.DataFrame
    source: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.lines)


# ----------------------------------------------------------------------------- entry point


def read_holdings(
    source: str | os.PathLike[str] | pd.DataFrame | Mapping[str, object] | pd.Series,
    *,
    cusip_map: str | os.PathLike[str] | pd.DataFrame | None = None,
) -> Holdings:
    """Read holdings from a CSV/Parquet file, a DataFrame, or a dict.

    A dict is ``{ticker: weight}`` (decimals or percent) or ``{ticker: {"shares": n}}`` (also
    ``"market_value"`` in USD or ``"weight"``). ``cusip_map`` (columns cusip, ticker) gives tickers
    to lines identified by CUSIP only. Raises :class:`DataValidationError` for an empty input, no
    identifier or quantity column, unreadable numbers, or 'weights' that are share counts.
    """
    if isinstance(source, pd.Series):
        source = source.to_dict()
    if isinstance(source, pd.DataFrame):
        holdings = _from_table(_frame_cells(source), "DataFrame", None)
    elif isinstance(source, Mapping):
        holdings = _from_table(_dict_cells(source), "dict", None)
    elif isinstance(source, (str, os.PathLike)):
        cells, file_lines, notes = _file_cells(Path(source))
        holdings = _from_table(cells, Path(source).name, file_lines, notes)
    else:
        raise DataValidationError(
            f"cannot read holdings from a {type(source).__name__}: give a file, a DataFrame or a dict")
    return holdings if cusip_map is None else map_cusips(holdings, cusip_map)


# ----------------------------------------------------------------------------- sources → cells


def _file_cells(path: Path) -> tuple[pd.DataFrame, list[int] | None, list[str]]:
    """Raw cells of a holdings file (object strings), each data row's line in the file, notes."""
    if not path.is_file():
        raise DataValidationError(f"holdings file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(path)
        if frame.empty:
            raise DataValidationError(f"holdings file {path.name!r} has no rows")
        return _frame_cells(frame), None, []
    if suffix in (".xlsx", ".xls"):
        raise DataValidationError(f"{path.name!r}: spreadsheets are not read; save it as CSV")
    if suffix == ".xml":
        raise DataValidationError(f"{path.name!r} is XML: read a 13F information table with read_13f()")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")  # Windows exports
    if not text.strip():
        raise DataValidationError(f"holdings file {path.name!r} is empty")
    return _csv_cells(text, path.name)


def _csv_cells(text: str, name: str) -> tuple[pd.DataFrame, list[int], list[str]]:
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    rows: list[list[str]] = []
    ends: list[int] = []
    for row in reader:
        rows.append(row)
        ends.append(reader.line_num)
    # Brokers put account titles above the header: the header is the first row naming an
    # identifier and a quantity.
    header_at = next((i for i, row in enumerate(rows[:30]) if _has_id_and_quantity(_map_columns(row))), None)
    if header_at is None:
        first = next((row for row in rows if any(c.strip() for c in row)), [])
        _map_or_raise(first, name)  # raises, naming what is missing
        header_at = 0
    header = [c.strip() or f"column {j + 1}" for j, c in enumerate(rows[header_at])]
    width = len(header)
    for row, end in zip(rows[header_at + 1:], ends[header_at + 1:]):
        if any(c.strip() for c in row[width:]):
            raise DataValidationError(
                f"{name}, file line {end}: more fields than the header has columns (an unquoted "
                "thousands separator such as 1,234?): quote such numbers or remove the commas")
    body = [(row + [""] * width)[:width] for row in rows[header_at + 1:]]
    if not body:
        raise DataValidationError(f"holdings file {name!r} has a header but no holdings rows")
    notes = []
    if getattr(dialect, "delimiter", ",") == ";":
        # Semicolon files come from locales that write 1.234,56: swap to 1234.56 before parsing.
        body = [[_DECIMAL_COMMA.sub(lambda m: m[0].replace(".", "").replace(",", "."), c) for c in row] for row in body]
        notes.append("semicolon-separated file: numbers read with a decimal comma (1.234,56 = 1234.56)")
    cells = pd.DataFrame(body, columns=pd.Index(_unique(header)), dtype=object)
    return cells, ends[header_at + 1:], notes


def _frame_cells(frame: pd.DataFrame) -> pd.DataFrame:
    cells = frame.copy()
    cells.columns = pd.Index(_unique([str(c) for c in cells.columns]))
    cols = _map_columns(list(cells.columns))
    if "ticker" not in cols and "cusip" not in cols and not isinstance(cells.index, pd.RangeIndex):
        # Tickers as the index (a frame built as {"weight": [...]}, index=[tickers]).
        name = str(cells.index.name) if cells.index.name is not None else "ticker"
        cells = cells.reset_index(names=name if name not in cells.columns else f"{name} (index)")
        if not _map_columns(list(cells.columns)).keys() & {"ticker", "cusip"}:
            cells = cells.rename(columns={cells.columns[0]: "ticker"})
    if cells.empty:
        raise DataValidationError("the holdings frame has no rows")
    return cells.reset_index(drop=True)


def _dict_cells(source: Mapping[str, object]) -> pd.DataFrame:
    if not source:
        raise DataValidationError("the holdings dict is empty")
    records: list[dict[str, object]] = []
    for ticker, value in source.items():
        if isinstance(value, Mapping):
            records.append({"ticker": ticker, **value})
        elif isinstance(value, (int, float, np.number)) or value is None:
            records.append({"ticker": ticker, "weight": value})
        else:
            raise DataValidationError(
                f"holdings dict: the value for {ticker!r} is a {type(value).__name__}; give a weight "
                f"or a dict such as {{'shares': 100}}")
    return pd.DataFrame.from_records(records).astype(object)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


# ----------------------------------------------------------------------------- column names


def _header_keys(header: object) -> list[str]:
    text = str(header).lower()
    variants = [text, re.sub(r"\(.*?\)", "", text), *re.findall(r"\((.*?)\)", text)]
    return [re.sub(r"[\s_.\-/]+", "", v) for v in variants if v.strip()]


def _map_columns(columns: list[str]) -> dict[str, str]:
    """{field: column} for the fields of :data:`_ALIASES` found among ``columns``."""
    keys = {c: _header_keys(c) for c in columns}
    out: dict[str, str] = {}
    for fld, aliases in _ALIASES.items():
        for alias in aliases:
            a = re.sub(r"[\s_.\-/]+", "", alias)
            hit = next((c for c in columns if a in keys[c] and c not in out.values()), None)
            if hit is not None:
                out[fld] = hit
                break
    return out


def _has_id_and_quantity(cols: dict[str, str]) -> bool:
    return bool(cols.keys() & {"ticker", "cusip"}) and bool(cols.keys() & set(QUANTITIES))


def _map_or_raise(columns: list[str], name: str) -> dict[str, str]:
    cols = _map_columns(columns)
    found = ", ".join(repr(c) for c in columns if str(c).strip()) or "none"
    if not cols.keys() & {"ticker", "cusip"}:
        raise DataValidationError(
            f"{name}: no identifier column: expected a ticker (Symbol, Ticker, Security ID) or a CUSIP "
            f"column; found columns {found}")
    if not cols.keys() & set(QUANTITIES):
        raise DataValidationError(
            f"{name}: no quantity column: expected shares (Quantity, Qty, Shares, Position), a market "
            f"value (Market Value, Mkt Val, Value, Current Value) or a weight (Weight, % of Account, "
            f"Allocation); found columns {found}")
    return cols


# ----------------------------------------------------------------------------- cells → lines


def _text(cell: object) -> str | None:
    if cell is None or (isinstance(cell, float) and math.isnan(cell)) or cell is pd.NA:
        return None
    text = str(cell).strip()
    return None if text.lower() in _EMPTY_TEXT else text


def _number(cell: object) -> tuple[float, bool] | None:
    """(value, written with %) of one cell; NaN for an empty cell; None if it is not a number.
    Accepts ``$1,234.50``, ``12.5%``, ``(300)`` (accounting negative) and a Unicode minus."""
    if isinstance(cell, (bool, np.bool_)):
        return None
    if isinstance(cell, (int, float, np.integer, np.floating)):
        return float(cell), False
    text = _text(cell)
    if text is None:
        return math.nan, False
    negative = text.startswith("(") and text.endswith(")")
    text = text.strip("()").replace("\u2212", "-")
    percent = "%" in text
    text = re.sub(r"[$€£¥,%\s]|USD", "", text)
    try:
        value = float(text)
    except ValueError:
        return None
    return (-value if negative else value), percent


def _currency_code(label: str) -> str | None:
    m = _CURRENCY_LINE.fullmatch(label)
    if m is None or m[1] not in _CURRENCIES or (m[2] is not None and m[2] not in _CURRENCIES):
        return None
    return m[1]


def _kind(label: str, description: str | None, asset_type: str | None, currency: str | None) -> str:
    """'security' | 'cash' | 'currency' of one line from its ticker label and optional columns."""
    kind_text = (asset_type or "").lower()
    non_usd = currency is not None and currency.upper() not in ("USD", "US$", "$")
    if re.search(r"\b(currency|currencies|forex|fx)\b", kind_text):
        return "currency"
    code = _currency_code(label)
    if code is not None and code != "USD":
        return "currency"
    cash = (
        label in _CASH_LABELS
        or code == "USD"
        or _MONEY_MARKET.fullmatch(label) is not None
        or (" " in label and _CASH_WORDS.search(label) is not None)
        or re.search(r"\b(cash|money market|sweep)\b", kind_text) is not None
        or (not label and description is not None and _CASH_WORDS.search(description) is not None)
    )
    if cash:
        return "currency" if non_usd else "cash"
    return "security"


def normalize_ticker(raw: object) -> str | None:
    """Upper case, Fidelity's trailing ``*`` dropped, share classes Yahoo-style: ``brk.b``,
    ``BRK/B``, ``BRK B`` → ``BRK-B``. None for an empty cell."""
    text = _text(raw)
    if text is None:
        return None
    t = re.sub(r"\s+", " ", text.upper().rstrip("*").strip())
    m = _CLASS_SHARE.fullmatch(t)
    return f"{m[1]}-{m[2]}" if m else (t or None)


def is_cusip(text: str) -> bool:
    """True for a 9-character CUSIP with a valid check digit (the modulus-10 double-add-double)."""
    if len(text) != 9 or not text[8].isdigit():
        return False
    total = 0
    for i, ch in enumerate(text[:8]):
        if ch.isdigit():
            v = int(ch)
        elif "A" <= ch <= "Z":
            v = ord(ch) - 55
        elif ch in "*@#":
            v = 36 + "*@#".index(ch)
        else:
            return False
        v = v * 2 if i % 2 else v
        total += v // 10 + v % 10
    return (10 - total % 10) % 10 == int(text[8])


def _clean_cusip(cell: object) -> str | None:
    text = _text(cell)
    if text is None:
        return None
    text = text.upper().replace(" ", "")
    return text.zfill(9) if text.isdigit() and len(text) < 9 else text  # leading zeros lost as numbers


def _from_table(cells: pd.DataFrame, name: str, file_lines: list[int] | None,
                file_notes: list[str] | None = None) -> Holdings:
    """Interpret raw cells (one row per data row) as holdings lines."""
    cols = _map_or_raise(list(cells.columns), name)
    read = ", ".join(f"{cols[f]!r} as {f.replace('_', ' ')}" for f in cols)
    notes = ([] if name == "dict" else [f"read columns: {read}"]) + (file_notes or [])

    def column(fld: str) -> list[object]:
        return list(cells[cols[fld]]) if fld in cols else [None] * len(cells)

    parsed = {q: [_number(c) for c in cells[cols[q]]] for q in QUANTITIES if q in cols}
    keep = _data_rows(cells, column("ticker"), column("cusip"), column("description"), parsed, name, notes)
    where = [f"{name}, line {i + 1}" + (f" (file line {file_lines[i]})" if file_lines else "") for i in keep]
    values, line_notes = _quantities(cells, cols, parsed, keep, where, name, notes)

    records = []
    moved = 0
    tickers, cusips, descriptions = column("ticker"), column("cusip"), column("description")
    currencies, asset_types = column("currency"), column("asset_type")
    for k, i in enumerate(keep):
        raw_ticker, cusip = _text(tickers[i]), _clean_cusip(cusips[i])
        if raw_ticker and cusip is None and is_cusip(raw_ticker.upper()):
            raw_ticker, cusip, moved = None, raw_ticker.upper(), moved + 1
        currency = _text(currencies[i])
        label = (raw_ticker or "").upper().rstrip("*").strip()
        kind = _kind(label, _text(descriptions[i]), _text(asset_types[i]), currency)
        ticker = normalize_ticker(raw_ticker) if kind == "security" else (label or None)
        qty = {q: float(values[q][k]) if q in values else math.nan for q in QUANTITIES}
        if all(math.isnan(v) for v in qty.values()):
            line_notes[k].append("no quantity")
        if ticker is None and cusip is None and kind == "security":
            line_notes[k].append("no identifier")
        records.append({"line": i + 1, "ticker": ticker, "cusip": cusip, **qty,
                        "currency": currency.upper() if currency else None, "kind": kind,
                        "note": "; ".join(line_notes[k])})
    if moved:
        notes.append(f"{moved} identifiers in column {cols.get('ticker')!r} are CUSIPs (valid check digit): "
                     "read as CUSIPs")
    return Holdings(lines=_merge_duplicates(_lines_frame(records), notes), source=name, notes=notes)


def _data_rows(cells: pd.DataFrame, tickers: list[object], cusips: list[object], descriptions: list[object],
               parsed: dict[str, list[tuple[float, bool] | None]], name: str, notes: list[str]) -> list[int]:
    """Positions of the holdings rows: not blank, not a total, not footer text (skips noted)."""
    keep: list[int] = []
    totals: list[int] = []
    footer: list[int] = []
    after_blank = False
    rows = cells.to_numpy(dtype=object)
    for i in range(len(cells)):
        has_qty = any(p[i] is None or not math.isnan(p[i][0]) for p in parsed.values())
        label = _text(tickers[i]) or _text(cusips[i])
        if all(_text(c) is None for c in rows[i]):
            after_blank = after_blank or bool(keep)
        elif _TOTAL_ROW.fullmatch(label or _text(descriptions[i]) or ""):
            totals.append(i + 1)
        elif not has_qty and (after_blank or label is None):
            footer.append(i + 1)  # disclaimers and "Date downloaded" lines under the table
        else:
            keep.append(i)
    if totals:
        notes.append(f"skipped total rows (not holdings): {_join(totals)}")
    if footer:
        notes.append(f"skipped {len(footer)} rows with neither a quantity nor a ticker "
                     f"(headings or footer text): {_join(footer)}")
    if not keep:
        raise DataValidationError(f"{name}: no holdings rows (only blank, total or text rows)")
    return keep


def _quantities(cells: pd.DataFrame, cols: dict[str, str], parsed: dict[str, list[tuple[float, bool] | None]],
                keep: list[int], where: list[str], name: str,
                notes: list[str]) -> tuple[dict[str, np.ndarray], list[list[str]]]:
    """Quantity arrays over the kept rows (non-finite → NaN, noted per line; weights as decimals)."""
    values: dict[str, np.ndarray] = {}
    percent_cells = False
    for q, cells_parsed in parsed.items():
        out = np.full(len(keep), np.nan)
        for k, i in enumerate(keep):
            got = cells_parsed[i]
            if got is None:
                raise DataValidationError(
                    f"{where[k]}: cannot read {cells[cols[q]].iloc[i]!r} in column {cols[q]!r} as a number")
            out[k] = got[0]
            percent_cells |= q == "weight" and got[1]
        values[q] = out
    line_notes: list[list[str]] = [[] for _ in keep]
    for q, arr in values.items():
        huge = np.flatnonzero(np.isfinite(arr) & (np.abs(arr) > MAX_QUANTITY))
        if len(huge):
            k = int(huge[0])
            raise ValueOverflow(f"{where[k]}: {q.replace('_', ' ')} {arr[k]:.4g} is beyond {MAX_QUANTITY:.0e}: "
                                "too large to be a position (and sums of such values overflow)")
        for k in np.flatnonzero(np.isinf(arr)):
            line_notes[k].append(f"infinite {q.replace('_', ' ')} treated as missing")
        arr[np.isinf(arr)] = np.nan
    if "weight" in values:
        header_percent = re.search(r"%|percent|pct", cols["weight"], re.IGNORECASE) is not None
        values["weight"] = _decimal_weights(
            values["weight"], header_percent, percent_cells, name, cols["weight"], notes)
    return values, line_notes


def _decimal_weights(w: np.ndarray, header_percent: bool, cell_percent: bool, name: str, column: str,
                     notes: list[str]) -> np.ndarray:
    """Weights as decimal fractions, converting percent (noted) and refusing share counts."""
    finite = w[np.isfinite(w)]
    if not len(finite):
        return w
    net, gross = float(finite.sum()), float(np.abs(finite).sum())
    decimal_like = float(np.abs(finite).max()) <= 1.0 and 0.9 <= net <= 1.1
    if cell_percent or (header_percent and not decimal_like):
        notes.append(f"weights in {column!r} are percent (sum {net:.4g}%): divided by 100")
        return w / 100.0
    if header_percent:
        notes.append(f"weights in {column!r} sum to {net:.4g}: read as decimal fractions although the "
                     "header says percent")
        return w
    if gross <= 3.0:
        return w  # decimals, leverage up to 300 % gross
    shorts = bool((finite < 0).any())
    if gross <= 300.0 and 0.0 < net <= 150.0 and (not shorts or net >= 50.0):
        notes.append(f"weights in {column!r} sum to {net:.4g}, too much for decimal fractions: read as percent "
                     "and divided by 100")
        return w / 100.0
    examples = ", ".join(f"{v:g}" for v in finite[:4])
    raise DataValidationError(
        f"{name}: column {column!r} does not read as weights: they sum to {net:,.4g} (gross {gross:,.4g}), "
        f"while weights sum to about 1 as decimals or 100 as percent. Values such as {examples} look like "
        f"share counts: label the column 'Shares' or 'Quantity'")


def _lines_frame(records: list[dict[str, object]]) -> pd.DataFrame:
    """The lines table from one dict per line, column by column (a request's holdings pay for no
    per-cell pandas work): line int64, quantities float64, text columns object with None."""
    columns: dict[str, object] = {"line": np.array([r["line"] for r in records], dtype=np.int64)}
    for c in HOLDING_COLUMNS[1:]:
        if c in QUANTITIES:
            columns[c] = np.array([r[c] for r in records], dtype=np.float64)
        elif c == "note":
            columns[c] = pd.Series([r[c] or "" for r in records], dtype=object)
        else:  # text: str or None (never NaN)
            columns[c] = pd.Series([r[c] if isinstance(r[c], str) else None for r in records], dtype=object)
    return pd.DataFrame(columns)


def _join(numbers: list[int], limit: int = 12) -> str:
    """"line 4" or "lines 3, 7": line numbers for a note, the first ``limit`` of them."""
    shown = ", ".join(str(n) for n in numbers[:limit])
    more = f" and {len(numbers) - limit} more" if len(numbers) > limit else ""
    return f"line{'s' if len(numbers) > 1 else ''} {shown}{more}"


def _merge_duplicates(lines: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Sum lines of one security given with the same kinds of quantity; note every merge."""
    idents = [f"{t if isinstance(t, str) else ''}|{c if isinstance(c, str) else ''}"
              for t, c in zip(lines["ticker"], lines["cusip"])]
    named = [i for i in idents if i != "|"]
    if len(set(named)) == len(named):  # the usual case: no security on two lines, nothing to merge or note
        return lines
    ident = lines["ticker"].fillna("") + "|" + lines["cusip"].fillna("")
    # Which quantities a line gives, e.g. "001" (a row-wise agg costs ~100 µs a line; this ~1 µs).
    pattern = pd.Series(["".join("1" if f else "0" for f in row) for row in lines[list(QUANTITIES)].notna().to_numpy()],
                        index=lines.index, dtype=object)
    key = ident + "|" + lines["kind"] + "|" + lines["currency"].fillna("") + "|" + pattern
    groups = []
    if key.duplicated().any():  # the usual case, no line repeating another, needs no grouping
        groups = [idx for k, idx in lines.groupby(key, sort=False).groups.items()
                  if len(idx) > 1 and ident[idx[0]] != "|"]
    if not groups:
        _note_split_duplicates(lines, ident, notes)
        return lines
    lines = lines.copy()
    drop: list[int] = []
    for idx in groups:
        first, rest = idx[0], list(idx[1:])
        numbers = lines.loc[idx, "line"].tolist()
        label = lines.at[first, "ticker"] or lines.at[first, "cusip"]
        identical = (lines.loc[idx, list(QUANTITIES)].nunique(dropna=False) <= 1).all()
        for q in QUANTITIES:
            lines.at[first, q] = lines.loc[idx, q].sum(min_count=1)
        how = "identical" if identical else "same holding on"
        extra = "; remove one if it is a copy" if identical else ""
        notes.append(f"{how} {_join(numbers)} ({label}) merged into line {numbers[0]} by summing quantities{extra}")
        lines.at[first, "note"] = "; ".join(filter(None, [lines.at[first, "note"], f"merged {_join(numbers)}"]))
        drop.extend(rest)
    lines = lines.drop(index=drop).reset_index(drop=True)
    _note_split_duplicates(lines, ident.drop(index=drop).reset_index(drop=True), notes)
    return lines


def _note_split_duplicates(lines: pd.DataFrame, ident: pd.Series, notes: list[str]) -> None:
    dup = lines[(ident != "|") & ident.duplicated(keep=False)]
    for _, group in dup.groupby(ident[dup.index], sort=False):
        notes.append(f"{_join(group['line'].tolist())} ({group['ticker'].iloc[0] or group['cusip'].iloc[0]}) "
                     "give different kinds of quantity: kept as separate lines")


# ----------------------------------------------------------------------------- CUSIP → ticker


def read_cusip_map(source: str | os.PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    """A CUSIP → ticker map as one row per CUSIP: ``cusip``, ``ticker`` (normalised) and
    ``alternatives`` (other tickers mapped to that CUSIP, comma-separated, "" if none).

    Accepts a CSV/Parquet file or a frame with columns named like cusip and ticker/symbol (any case).
    Where several tickers share a CUSIP the shortest, then alphabetically first, is chosen, so the
    choice does not depend on the file's row order.
    """
    if isinstance(source, pd.DataFrame):
        frame, name = source, "CUSIP map"
    else:
        path = Path(source)
        if not path.is_file():
            raise DataValidationError(f"CUSIP map not found: {path}")
        name = path.name
        suffix = path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    lower = {str(c).strip().lower(): c for c in frame.columns}
    cusip_col = lower.get("cusip")
    ticker_col = next((lower[c] for c in ("ticker", "symbol", "tic") if c in lower), None)
    if cusip_col is None or ticker_col is None:
        raise DataValidationError(
            f"{name}: a CUSIP map needs columns 'cusip' and 'ticker'; found {list(frame.columns)}")
    table = pd.DataFrame({
        "cusip": [_clean_cusip(c) for c in frame[cusip_col]],
        "ticker": [normalize_ticker(t) for t in frame[ticker_col]],
    }).dropna().drop_duplicates()
    if table.empty:
        raise DataValidationError(f"{name}: the CUSIP map has no rows with both a CUSIP and a ticker")
    table = table.assign(length=table["ticker"].str.len()).sort_values(["cusip", "length", "ticker"])
    shared = table[table["cusip"].duplicated(keep=False)]
    others = shared.groupby("cusip", sort=False)["ticker"].agg(lambda s: ", ".join(s.iloc[1:]))
    out = table.drop_duplicates("cusip")[["cusip", "ticker"]].reset_index(drop=True)
    alternatives = others.to_dict()
    out["alternatives"] = [alternatives.get(c, "") for c in out["cusip"]]
    return out


def map_cusips(holdings: Holdings, cusip_map: str | os.PathLike[str] | pd.DataFrame) -> Holdings:
    """Give a ticker to each line that has a CUSIP but no ticker, from ``cusip_map``
    (see :func:`read_cusip_map`). A 9-character CUSIP is tried whole, then by its first 8
    characters (maps keyed by CUSIP-8, as CRSP's). Unmapped lines keep ticker None."""
    table = read_cusip_map(cusip_map)
    by9 = table.set_index("cusip")
    by8 = table.assign(c8=table["cusip"].str[:8]).drop_duplicates("c8").set_index("c8")
    lines = holdings.lines.copy()
    notes = list(holdings.notes)
    todo = lines.index[lines["ticker"].isna() & lines["cusip"].notna()]
    unmapped: list[int] = []
    for i in todo:
        cusip = lines.at[i, "cusip"]
        hit = by9.loc[cusip] if cusip in by9.index else by8.loc[cusip[:8]] if cusip[:8] in by8.index else None
        if hit is None:
            unmapped.append(int(lines.at[i, "line"]))
            continue
        lines.at[i, "ticker"] = hit["ticker"]
        if hit["alternatives"]:
            extra = f"CUSIP {cusip} maps to {hit['ticker']}, {hit['alternatives']}: used {hit['ticker']}"
            lines.at[i, "note"] = "; ".join(filter(None, [lines.at[i, "note"], extra]))
    name = "the CUSIP map" if isinstance(cusip_map, pd.DataFrame) else repr(Path(cusip_map).name)
    notes.append(f"{len(todo) - len(unmapped)}/{len(todo)} CUSIPs mapped to tickers with {name}")
    if unmapped:
        notes.append(f"{len(unmapped)} CUSIPs have no ticker in {name} ({_join(unmapped)}): "
                     "they stay without a ticker and are excluded as unknown symbols")
    return Holdings(lines=lines, source=holdings.source, notes=notes)
